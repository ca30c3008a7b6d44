//! The commands: generate, summarize, chat, assist, embed, rerank, index, search.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use duet::generate::control::{guarded, Limits};
use duet::tasks::embed::{embed_with, InputKind};
use duet::tasks::index::{Index, SearchOptions};
use duet::tasks::{assistant, rerank as reranking, summarize as summarizing, Progress};
use duet::{Flow, Settings};
use serde_json::json;

use crate::common::{lines, print_line, read_inputs, read_stdin, Failure, ModelArgs, OutputArgs, ProgressArgs};

/// Texts per embedding call when a progress bar counts them.
const EMBED_GROUP: usize = 256;

fn print_piece(_: usize, piece: &str, _: Option<u32>) -> Flow {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(piece.as_bytes());
    let _ = out.flush();
    Flow::Continue
}

pub fn generate(
    model: &ModelArgs,
    params: &Settings,
    output: &OutputArgs,
    stream: bool,
    scores: bool,
    texts: &[String],
) -> Result<(), Failure> {
    let stdin = if texts.is_empty() || texts.iter().any(|t| t == "-") { read_stdin()? } else { String::new() };
    let texts: Vec<&str> = if texts.is_empty() {
        vec![stdin.as_str()]
    } else {
        texts.iter().map(|t| if t == "-" { stdin.as_str() } else { t.as_str() }).collect()
    };
    if stream && texts.len() > 1 {
        return Err(Failure::Usage(
            "--stream takes one input (streamed pieces of several would interleave); use --jsonl for several".into(),
        ));
    }
    let model = model.open()?;
    let mut printer = print_piece;
    let observer: Option<&mut dyn duet::Observer> = if stream && !output.json && !output.jsonl { Some(&mut printer) } else { None };
    let limits = Limits::start(params, None);
    let outputs = guarded(&limits, observer, |obs| duet::generate(&model, &texts, params, obs))?;
    if output.json {
        return print_line(&duet::ffi::results_json(&outputs, &texts).to_string());
    }
    if output.jsonl {
        let all = duet::ffi::results_json(&outputs, &texts);
        for r in all["results"].as_array().into_iter().flatten() {
            print_line(&r.to_string())?;
        }
        return Ok(());
    }
    if stream {
        return print_line("");
    }
    for (i, o) in outputs.iter().enumerate() {
        for (j, s) in o.sequences.iter().enumerate() {
            if scores {
                let tag = if o.sequences.len() > 1 { format!("[{i}.{j}]") } else { format!("[{i}]") };
                print_line(&format!("{tag} {} ({}, score {:.4})", s.text, s.finish_reason.as_str(), s.score))?;
            } else {
                print_line(&s.text.replace('\n', " "))?;
            }
        }
        if o.input_truncated {
            eprintln!("duet: note: input {i} was truncated to the model's input limit");
        }
    }
    Ok(())
}

pub fn summarize(
    model: &ModelArgs,
    params: &Settings,
    output: &OutputArgs,
    progress: &ProgressArgs,
    files: &[String],
) -> Result<(), Failure> {
    let inputs = read_inputs(files)?;
    let model = model.open()?;
    let mut all = Vec::new();
    for (name, text) in &inputs {
        let bar = progress.bar(1, &format!("{name}: level 1"));
        let mut on_progress = |p: Progress| {
            bar.set_message(&format!("{name}: level {} chunks", p.level));
            bar.set(p.done as u64, p.total as u64);
            Flow::Continue
        };
        let limits = Limits::start(params, None);
        let s = guarded(&limits, None, |obs| summarizing::summarize(&model, text, params, Some(&mut on_progress), obs))?;
        bar.finish();
        let v = json!({"file": name, "summary": s.text, "chunks": s.chunks, "levels": s.levels, "summaries": s.summaries, "finish_reason": s.finish_reason.as_str()});
        emit_file(output, inputs.len() > 1, name, &s.text, v, &mut all)?;
    }
    finish_files(output, all)
}

/// One file's answer: its JSON line (--jsonl), kept for the document (--json), or its text (under
/// a `== name` header when there are several files).
fn emit_file(
    output: &OutputArgs,
    several: bool,
    name: &str,
    text: &str,
    v: serde_json::Value,
    all: &mut Vec<serde_json::Value>,
) -> Result<(), Failure> {
    if output.jsonl {
        print_line(&v.to_string())?;
    } else if output.json {
        all.push(v);
    } else {
        if several {
            print_line(&format!("== {name}"))?;
        }
        print_line(text)?;
    }
    Ok(())
}

/// --json: one file's object itself (as before several files were taken); several: an array.
fn finish_files(output: &OutputArgs, mut all: Vec<serde_json::Value>) -> Result<(), Failure> {
    if output.json {
        let doc = if all.len() == 1 { all.remove(0) } else { serde_json::Value::Array(all) };
        print_line(&doc.to_string())?;
    }
    Ok(())
}

pub fn translate(
    model: &ModelArgs,
    params: &Settings,
    output: &OutputArgs,
    progress: &ProgressArgs,
    (to, from): (Option<&str>, Option<&str>),
    files: &[String],
) -> Result<(), Failure> {
    let inputs = read_inputs(files)?;
    let model = model.open()?;
    let mut all = Vec::new();
    for (name, text) in &inputs {
        let bar = progress.bar(1, &format!("{name}: chunks"));
        let mut on_progress = |p: Progress| {
            bar.set(p.done as u64, p.total as u64);
            Flow::Continue
        };
        let limits = Limits::start(params, None);
        let t =
            guarded(&limits, None, |obs| duet::tasks::translate::translate(&model, text, (to, from), params, Some(&mut on_progress), obs))?;
        bar.finish();
        let v = json!({"file": name, "translation": t.text, "to": t.target_language, "from": t.source_language,
                       "chunks": t.chunks, "finish_reason": t.finish_reason.as_str()});
        emit_file(output, inputs.len() > 1, name, &t.text, v, &mut all)?;
    }
    finish_files(output, all)
}

/// Ctrl-C while a reply is being written stops that reply, not the chat.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Prints the reply and stops it at the next decoding step after Ctrl-C (beam search writes its
/// text only at the end, so the step is where it must be heard).
struct Interruptible;

impl duet::Observer for Interruptible {
    fn on_text(&mut self, input: usize, piece: &str, token_id: Option<u32>) -> Flow {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Flow::Stop;
        }
        print_piece(input, piece, token_id)
    }

    fn on_step(&mut self) -> Flow {
        if INTERRUPTED.load(Ordering::SeqCst) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

const CHAT_HELP: &str = "/help this text, /reset forget the conversation, /quit (or Ctrl-D) leave; Ctrl-C stops a reply";

pub fn chat(model: &ModelArgs, params: &Settings) -> Result<(), Failure> {
    let model = Arc::new(model.open()?);
    let mut chat = assistant::Chat::new(model, params)?;
    let interactive = std::io::stdin().is_terminal();
    let turn = |chat: &mut assistant::Chat, text: &str| -> Result<(), Failure> {
        INTERRUPTED.store(false, Ordering::SeqCst);
        let mut printer = Interruptible;
        let limits = Limits::start(params, None);
        match guarded(&limits, Some(&mut printer), |obs| chat.send(text, obs)) {
            Ok(reply) => {
                print_line("")?;
                if INTERRUPTED.load(Ordering::SeqCst) {
                    eprintln!("duet: reply stopped");
                }
                if reply.dropped_turns > 0 {
                    eprintln!("duet: note: {} old turn(s) dropped to fit the input limit", reply.dropped_turns);
                }
                Ok(())
            }
            // A message the model cannot take is reported; the chat goes on.
            Err(e @ (duet::Error::InputTooLong { .. } | duet::Error::InvalidArgument(_) | duet::Error::DeadlineExceeded(_))) => {
                eprintln!("duet: error: {e}");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    };
    let command = |chat: &mut assistant::Chat, line: &str| -> Result<bool, Failure> {
        match line.trim() {
            "" => {}
            "/quit" | "/exit" => return Ok(false),
            "/help" => eprintln!("{CHAT_HELP}"),
            "/reset" => {
                chat.reset();
                eprintln!("duet: conversation reset");
            }
            text => turn(chat, text)?,
        }
        Ok(true)
    };
    if !interactive {
        for line in read_stdin()?.lines() {
            if !command(&mut chat, line)? {
                break;
            }
        }
        return Ok(());
    }
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
    let mut editor = rustyline::DefaultEditor::new().map_err(|e| Failure::Usage(format!("line editor: {e}")))?;
    eprintln!("duet chat: {CHAT_HELP}");
    loop {
        match editor.readline("> ") {
            Ok(line) => {
                let _ = editor.add_history_entry(line.as_str());
                if !command(&mut chat, &line)? {
                    break;
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => eprintln!("(Ctrl-C stops a reply; /quit or Ctrl-D leaves)"),
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(Failure::Usage(format!("reading a line: {e}"))),
        }
    }
    Ok(())
}

pub fn assist(model: &ModelArgs, params: &Settings, question: &[String]) -> Result<(), Failure> {
    let question = if question.is_empty() || question == ["-"] { read_stdin()? } else { question.join(" ") };
    let model = Arc::new(model.open()?);
    let limits = Limits::start(params, None);
    let mut printer = print_piece;
    guarded(&limits, Some(&mut printer), |obs| assistant::assist(model, &question, params, obs))?;
    print_line("")
}

pub fn embed(model: &ModelArgs, params: &Settings, output: &OutputArgs, progress: &ProgressArgs, texts: &[String]) -> Result<(), Failure> {
    let stdin = if texts.is_empty() || texts.iter().any(|t| t == "-") { read_stdin()? } else { String::new() };
    let texts: Vec<&str> = if texts.is_empty() {
        lines(&stdin)
    } else {
        texts.iter().flat_map(|t| if t == "-" { lines(&stdin) } else { vec![t.as_str()] }).collect()
    };
    if texts.is_empty() {
        return Err(Failure::Usage("no text to embed".into()));
    }
    let model = model.open()?;
    let kind = InputKind::from_params(params);
    let limits = Limits::start(params, None);
    let bar = progress.bar(texts.len() as u64, "embedding");
    let (mut vectors, mut truncated) = (Vec::with_capacity(texts.len()), Vec::with_capacity(texts.len()));
    for group in texts.chunks(EMBED_GROUP) {
        let e = embed_with(&model, group, params, kind, &limits)?;
        bar.inc(group.len() as u64);
        vectors.extend(e.vectors);
        truncated.extend(e.truncated);
    }
    bar.finish();
    if output.json {
        return print_line(&json!({ "embeddings": vectors, "truncated": truncated }).to_string());
    }
    for (i, v) in vectors.iter().enumerate() {
        if output.jsonl {
            print_line(&json!({"text": texts[i], "embedding": v, "truncated": truncated[i]}).to_string())?;
        } else {
            print_line(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" "))?;
        }
    }
    Ok(())
}

pub fn rerank(model: &ModelArgs, params: &Settings, output: &OutputArgs, query: &str, files: &[String]) -> Result<(), Failure> {
    let inputs = read_inputs(files)?;
    let passages: Vec<&str> = inputs.iter().flat_map(|(_, t)| lines(t)).collect();
    if passages.is_empty() {
        return Err(Failure::Usage("no passages (one per line)".into()));
    }
    let model = model.open()?;
    let scores = reranking::rerank(&model, query, &passages, params)?;
    if output.json {
        return print_line(&json!({ "scores": scores }).to_string());
    }
    for (s, p) in scores.iter().zip(&passages) {
        if output.jsonl {
            print_line(&json!({"passage": p, "score": s}).to_string())?;
        } else {
            print_line(&format!("{s:.6}\t{p}"))?;
        }
    }
    Ok(())
}

/// Adds each non-blank line; ids as `duet index --help` says.
pub fn index(
    model: &ModelArgs,
    params: &Settings,
    progress: &ProgressArgs,
    path: &str,
    first_id: Option<i64>,
    files: &[String],
) -> Result<(), Failure> {
    let path = Path::new(path);
    let inputs = read_inputs(files)?;
    let model = model.open()?;
    let index = if path.exists() { Index::load_for(&model, path)? } else { Index::for_model(&model)? };
    let mut base = match first_id {
        Some(n) => n,
        None => index.ids().into_iter().max().map_or(Ok(1), |m| {
            m.checked_add(1).ok_or_else(|| Failure::Usage("the index's largest id is the largest int64: give --first-id".into()))
        })?,
    };
    let (mut ids, mut passages) = (Vec::new(), Vec::new());
    for (name, text) in &inputs {
        let mut last = None;
        for (line, passage) in text.lines().enumerate() {
            let id = i64::try_from(line)
                .ok()
                .and_then(|l| base.checked_add(l))
                .ok_or_else(|| Failure::Usage(format!("{name} line {}: the id overflows", line + 1)))?;
            last = Some(id);
            if !passage.trim().is_empty() {
                ids.push(id);
                passages.push(passage);
            }
        }
        if let Some(last) = last {
            base = last.checked_add(1).ok_or_else(|| Failure::Usage("ids overflow".into()))?;
        }
    }
    if passages.is_empty() {
        return Err(Failure::Usage("no passages (one per line)".into()));
    }
    let limits = Limits::start(params, None);
    let bar = progress.bar(passages.len() as u64, "indexing");
    for (group_ids, group) in ids.chunks(EMBED_GROUP).zip(passages.chunks(EMBED_GROUP)) {
        index.add_batch(&model, group_ids, group, params, &limits)?;
        bar.inc(group.len() as u64);
    }
    bar.finish();
    index.save(path)?;
    eprintln!("duet: {} passages added (ids {}..={}), {} in {}", passages.len(), ids[0], ids[ids.len() - 1], index.len(), path.display());
    Ok(())
}

pub fn search(
    model: &ModelArgs,
    params: &Settings,
    output: &OutputArgs,
    path: &str,
    query: &str,
    k: usize,
    rerank: usize,
) -> Result<(), Failure> {
    let path = Path::new(path);
    let model = model.open()?;
    let index = Index::load_for(&model, path)?;
    // --rerank, else the params' rerank_top_n.
    let rerank = if rerank > 0 { rerank } else { params.int("rerank_top_n").unwrap_or(0) as usize };
    let options = SearchOptions::from_params(params, k, rerank);
    let hits = index.search_with(&model, query, &options, params, &Limits::start(params, None))?;
    let as_json = |h: &duet::tasks::index::Hit| json!({"id": h.id, "score": h.score, "reranked": h.reranked, "text": index.text(h.id)});
    if output.json {
        return print_line(&json!({ "hits": hits.iter().map(as_json).collect::<Vec<_>>() }).to_string());
    }
    for h in &hits {
        if output.jsonl {
            print_line(&as_json(h).to_string())?;
        } else {
            print_line(&format!("{}\t{:.6}\t{}", h.id, h.score, index.text(h.id).unwrap_or_default()))?;
        }
    }
    Ok(())
}
