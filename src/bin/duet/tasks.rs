//! The task commands: summarize, chat, assist, embed, rerank, index, search.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use duet::tasks::{assistant, embed as embedding, index::Index, rerank as reranking, summarize as summarizing, Progress};
use duet::Flow;

use super::{input_text, open_model, params, Args, Failure};

fn print_piece(_: usize, piece: &str, _: Option<u32>) -> Flow {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(piece.as_bytes());
    let _ = out.flush();
    Flow::Continue
}

pub fn summarize(args: &Args) -> Result<(), Failure> {
    let text = input_text(args)?;
    let params = params(args)?;
    let model = open_model(args)?;
    let mut progress = |p: Progress| {
        if p.done == p.total {
            eprintln!("duet: level {}: {} of {} chunks summarized", p.level, p.done, p.total);
        }
        Flow::Continue
    };
    let s = summarizing::summarize(&model, &text, &params, Some(&mut progress), None)?;
    if args.json {
        let v = serde_json::json!({"summary": s.text, "chunks": s.chunks, "levels": s.levels, "summaries": s.summaries, "finish_reason": s.finish_reason.as_str()});
        println!("{v}");
    } else {
        println!("{}", s.text);
    }
    Ok(())
}

pub fn chat(args: &Args) -> Result<(), Failure> {
    let params = params(args)?;
    let model = Arc::new(open_model(args)?);
    let mut chat = assistant::Chat::new(model, &params)?;
    let interactive = std::io::stdin().is_terminal();
    let prompt = || {
        if interactive {
            print!("> ");
            let _ = std::io::stdout().flush();
        }
    };
    prompt();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| Failure::Usage(format!("reading standard input: {e}")))?;
        match line.trim() {
            "" => {}
            "/quit" | "/exit" => break,
            "/reset" => {
                chat.reset();
                eprintln!("duet: conversation reset");
            }
            text => {
                let reply = chat.send(text, Some(&mut print_piece))?;
                println!();
                if reply.dropped_turns > 0 {
                    eprintln!("duet: note: {} old turn(s) dropped to fit the input limit", reply.dropped_turns);
                }
            }
        }
        prompt();
    }
    Ok(())
}

pub fn assist(args: &Args) -> Result<(), Failure> {
    let question = args.texts.join(" ");
    let params = params(args)?;
    let model = Arc::new(open_model(args)?);
    assistant::assist(model, &question, &params, Some(&mut print_piece))?;
    println!();
    Ok(())
}

pub fn embed(args: &Args) -> Result<(), Failure> {
    if args.texts.is_empty() {
        return Err(Failure::Usage("embed needs at least one TEXT".into()));
    }
    let params = params(args)?;
    let model = open_model(args)?;
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let vectors = embedding::embed(&model, &texts, &params)?;
    println!("{}", serde_json::json!({ "embeddings": vectors }));
    Ok(())
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

pub fn rerank(args: &Args) -> Result<(), Failure> {
    let query = args.query.as_deref().ok_or_else(|| Failure::Usage("rerank needs --query".into()))?;
    let text = input_text(args)?;
    let passages = lines(&text);
    if passages.is_empty() {
        return Err(Failure::Usage("no passages (one per line)".into()));
    }
    let params = params(args)?;
    let model = open_model(args)?;
    let scores = reranking::rerank(&model, query, &passages, &params)?;
    if args.json {
        println!("{}", serde_json::json!({ "scores": scores }));
    } else {
        for (s, p) in scores.iter().zip(&passages) {
            println!("{s:.6}\t{p}");
        }
    }
    Ok(())
}

fn index_path(args: &Args) -> Result<&Path, Failure> {
    args.index.as_deref().map(Path::new).ok_or_else(|| Failure::Usage("--index FILE is required".into()))
}

pub fn index(args: &Args) -> Result<(), Failure> {
    let path = index_path(args)?;
    let text = input_text(args)?;
    let params = params(args)?;
    let model = open_model(args)?;
    let index = if path.exists() { Index::load(path)? } else { Index::for_model(&model)? };
    let start = index.len() as i64;
    let passages = lines(&text);
    for (i, p) in passages.iter().enumerate() {
        index.add(&model, start + i as i64 + 1, p, &params)?;
    }
    index.save(path)?;
    eprintln!("duet: {} passages added, {} in {}", passages.len(), index.len(), path.display());
    Ok(())
}

pub fn search(args: &Args) -> Result<(), Failure> {
    let path = index_path(args)?;
    let query = args.query.as_deref().ok_or_else(|| Failure::Usage("search needs --query".into()))?;
    let params = params(args)?;
    let model = open_model(args)?;
    let index = Index::load(path)?;
    let hits = index.search(&model, query, args.k, args.rerank, &params)?;
    if args.json {
        let hits: Vec<_> = hits.iter().map(|h| serde_json::json!({"id": h.id, "score": h.score})).collect();
        println!("{}", serde_json::json!({ "hits": hits }));
    } else {
        for h in hits {
            println!("{}\t{:.6}", h.id, h.score);
        }
    }
    Ok(())
}
