//! The task commands: summarize, chat, assist, embed, rerank, index, search.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use duet::generate::control::{guarded, Limits};
use duet::tasks::index::{Index, SearchOptions};
use duet::tasks::{assistant, embed as embedding, rerank as reranking, summarize as summarizing, Progress};
use duet::Flow;

use super::{input_text, open_model, params, read_stdin, Args, Failure};

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
    let limits = Limits::start(&params, None);
    let s = guarded(&limits, None, |obs| summarizing::summarize(&model, &text, &params, Some(&mut progress), obs))?;
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
                let limits = Limits::start(&params, None);
                let mut printer = print_piece;
                let reply = guarded(&limits, Some(&mut printer), |obs| chat.send(text, obs))?;
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
    let limits = Limits::start(&params, None);
    let mut printer = print_piece;
    guarded(&limits, Some(&mut printer), |obs| assistant::assist(model, &question, &params, obs))?;
    println!();
    Ok(())
}

/// `{"embeddings": [[...], ...], "truncated": [false, ...]}`; TEXT `-` reads one text per line.
pub fn embed(args: &Args) -> Result<(), Failure> {
    if args.texts.is_empty() {
        return Err(Failure::Usage("embed needs at least one TEXT (or - for one text per line of standard input)".into()));
    }
    let params = params(args)?;
    let model = open_model(args)?;
    let stdin = if args.texts.iter().any(|t| t == "-") { read_stdin()? } else { String::new() };
    let texts: Vec<&str> = args.texts.iter().flat_map(|t| if t == "-" { lines(&stdin) } else { vec![t.as_str()] }).collect();
    let kind = embedding::InputKind::from_params(&params);
    let e = embedding::embed_with(&model, &texts, &params, kind, &Limits::start(&params, None))?;
    println!("{}", serde_json::json!({ "embeddings": e.vectors, "truncated": e.truncated }));
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

/// Adds each non-blank line under id `first + line - 1` (see the usage text).
pub fn index(args: &Args) -> Result<(), Failure> {
    let path = index_path(args)?;
    let text = input_text(args)?;
    let params = params(args)?;
    let model = open_model(args)?;
    let index = if path.exists() { Index::load_for(&model, path)? } else { Index::for_model(&model)? };
    let first = match args.first_id {
        Some(n) => n,
        None => index.ids().into_iter().max().map_or(Ok(1), |m| {
            m.checked_add(1).ok_or_else(|| Failure::Usage("the index's largest id is i64::MAX: give --first-id".into()))
        })?,
    };
    let mut ids = Vec::new();
    let mut passages = Vec::new();
    for (line, passage) in text.lines().enumerate() {
        if passage.trim().is_empty() {
            continue;
        }
        let id = i64::try_from(line)
            .ok()
            .and_then(|l| first.checked_add(l))
            .ok_or_else(|| Failure::Usage(format!("line {}: the id overflows", line + 1)))?;
        ids.push(id);
        passages.push(passage);
    }
    if passages.is_empty() {
        return Err(Failure::Usage("no passages (one per line)".into()));
    }
    index.add_batch(&model, &ids, &passages, &params, &Limits::start(&params, None))?;
    index.save(path)?;
    eprintln!("duet: {} passages added (ids {}..={}), {} in {}", passages.len(), ids[0], ids[ids.len() - 1], index.len(), path.display());
    Ok(())
}

pub fn search(args: &Args) -> Result<(), Failure> {
    let path = index_path(args)?;
    let query = args.query.as_deref().ok_or_else(|| Failure::Usage("search needs --query".into()))?;
    let params = params(args)?;
    let model = open_model(args)?;
    let index = Index::load_for(&model, path)?;
    let options = SearchOptions::from_params(&params, args.k, args.rerank);
    let hits = index.search_with(&model, query, &options, &params, &Limits::start(&params, None))?;
    if args.json {
        let hits: Vec<_> = hits
            .iter()
            .map(|h| serde_json::json!({"id": h.id, "score": h.score, "reranked": h.reranked, "text": index.text(h.id)}))
            .collect();
        println!("{}", serde_json::json!({ "hits": hits }));
    } else {
        for h in hits {
            println!("{}\t{:.6}\t{}", h.id, h.score, index.text(h.id).unwrap_or_default());
        }
    }
    Ok(())
}
