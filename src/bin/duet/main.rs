//! `duet` — the command-line face of the library.
//!
//!   duet generate --model DIR [--set KEY=VALUE ...] [--option KEY=VALUE ...] [--json] [--stream] TEXT...
//!   duet info --model DIR [--option KEY=VALUE ...]
//!   duet summarize --model DIR [--set ...] [FILE|-]
//!   duet chat --model DIR [--set ...]          (reads turns from standard input)
//!   duet assist --model DIR [--set ...] QUESTION
//!   duet embed --model DIR TEXT...|-
//!   duet rerank --model DIR --query Q [FILE|-]  (one passage per line)
//!   duet index --model DIR --index F [--first-id N] [FILE|-]   (one passage per non-blank line)
//!   duet search --model DIR --index F --query Q [--k N] [--rerank N] [--mode vector|keyword|hybrid]
//!   duet params        (every generation key with its meaning)

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::ExitCode;

use duet::generate::control::{guarded, Limits};
use duet::generate::GENERATION_SPECS;
use duet::model::MODEL_OPTION_SPECS;
use duet::{Flow, Model, Settings};

mod tasks;

const USAGE: &str = "usage:
  duet generate --model DIR [--set KEY=VALUE ...] [--option KEY=VALUE ...] [--json] [--stream] TEXT...
      several TEXTs are decoded as one batch; TEXT '-' reads standard input
  duet summarize --model DIR [--set KEY=VALUE ...] [--json] [FILE|-]
  duet chat --model DIR [--set KEY=VALUE ...]        one turn per line of standard input; /reset, /quit
  duet assist --model DIR [--set KEY=VALUE ...] QUESTION
  duet embed --model DIR [--set KEY=VALUE ...] [--json] TEXT...     TEXT '-': one text per line of standard input
  duet rerank --model DIR --query Q [--set KEY=VALUE ...] [FILE|-]     one passage per line
  duet index --model DIR --index F [--first-id N] [FILE|-]
      adds each non-blank line as an entry; its id is N + (line number - 1), so with the default N
      (1 for a new index, else one past the largest id in it) the ids of a new index are the line
      numbers of the file, blank lines counted. The index records the model; another is refused.
  duet search --model DIR --index F --query Q [--k N] [--rerank N] [--mode vector|keyword|hybrid] [--json]
      prints id, score and the stored text of each hit; --mode hybrid fuses BM25 and embeddings
  duet info --model DIR [--option KEY=VALUE ...]
  duet params     list the keys accepted by --set
  duet options    list the model options accepted by --option";

struct Args {
    command: String,
    model: Option<String>,
    sets: Vec<(String, String)>,
    options: Vec<(String, String)>,
    json: bool,
    stream: bool,
    texts: Vec<String>,
    query: Option<String>,
    index: Option<String>,
    k: usize,
    rerank: usize,
    mode: Option<String>,
    first_id: Option<i64>,
}

enum Failure {
    Usage(String),
    Duet(duet::Error),
}

impl From<duet::Error> for Failure {
    fn from(e: duet::Error) -> Self {
        Failure::Duet(e)
    }
}

fn parse_args(raw: Vec<OsString>) -> Result<Args, Failure> {
    let mut words = Vec::with_capacity(raw.len());
    for (i, w) in raw.into_iter().enumerate() {
        words.push(w.into_string().map_err(|_| Failure::Usage(format!("argument {} is not valid UTF-8", i + 1)))?);
    }
    let mut it = words.into_iter();
    let command = it.next().ok_or_else(|| Failure::Usage("no command given".into()))?;
    let mut args = Args {
        command,
        model: None,
        sets: vec![],
        options: vec![],
        json: false,
        stream: false,
        texts: vec![],
        query: None,
        index: None,
        k: 5,
        rerank: 0,
        mode: None,
        first_id: None,
    };
    let number = |flag: &str, v: Option<String>| -> Result<usize, Failure> {
        v.as_deref().and_then(|v| v.parse().ok()).ok_or_else(|| Failure::Usage(format!("{flag} needs a number")))
    };
    let key_value = |flag: &str, v: Option<String>| -> Result<(String, String), Failure> {
        let v = v.ok_or_else(|| Failure::Usage(format!("{flag} needs KEY=VALUE")))?;
        let (k, val) = v.split_once('=').ok_or_else(|| Failure::Usage(format!("{flag} {v}: expected KEY=VALUE")))?;
        Ok((k.trim().to_string(), val.to_string()))
    };
    while let Some(word) = it.next() {
        match word.as_str() {
            "--model" | "-m" => args.model = Some(it.next().ok_or_else(|| Failure::Usage("--model needs a directory".into()))?),
            "--set" | "-s" => args.sets.push(key_value("--set", it.next())?),
            "--option" | "-o" => args.options.push(key_value("--option", it.next())?),
            "--json" => args.json = true,
            "--query" | "-q" => args.query = Some(it.next().ok_or_else(|| Failure::Usage("--query needs a text".into()))?),
            "--index" => args.index = Some(it.next().ok_or_else(|| Failure::Usage("--index needs a file".into()))?),
            "--k" => args.k = number("--k", it.next())?,
            "--rerank" => args.rerank = number("--rerank", it.next())?,
            "--mode" => args.mode = Some(it.next().ok_or_else(|| Failure::Usage("--mode needs vector, keyword or hybrid".into()))?),
            "--first-id" => {
                let v = it.next();
                args.first_id =
                    Some(v.as_deref().and_then(|v| v.parse().ok()).ok_or_else(|| Failure::Usage("--first-id needs an integer".into()))?)
            }
            "--stream" => args.stream = true,
            "--" => args.texts.extend(it.by_ref()),
            flag if flag.starts_with("--") => return Err(Failure::Usage(format!("unknown flag {flag}"))),
            _ => args.texts.push(word),
        }
    }
    Ok(args)
}

fn read_stdin() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| Failure::Usage(format!("reading standard input: {e}")))?;
    Ok(text)
}

/// The text of FILE (or standard input for `-` or no FILE).
fn input_text(args: &Args) -> Result<String, Failure> {
    match args.texts.first().map(String::as_str) {
        None | Some("-") => read_stdin(),
        Some(path) => std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("reading {path}: {e}"))),
    }
}

fn params(args: &Args) -> Result<Settings, Failure> {
    let mut params: Settings = duet::new_generation_settings();
    for (k, v) in &args.sets {
        params.set_str(k, v)?;
    }
    if let Some(mode) = &args.mode {
        params.set_str("search_mode", mode)?;
    }
    Ok(params)
}

fn open_model(args: &Args) -> Result<Model, Failure> {
    let dir = args.model.as_deref().ok_or_else(|| Failure::Usage("--model DIR is required".into()))?;
    let mut options = duet::new_model_options();
    for (k, v) in &args.options {
        options.set_str(k, v)?;
    }
    Ok(Model::open_with(dir, &options)?)
}

fn generate(args: &Args) -> Result<(), Failure> {
    if args.texts.is_empty() {
        return Err(Failure::Usage("generate needs at least one TEXT".into()));
    }
    let params = params(args)?;
    let model = open_model(args)?;
    let stdin = if args.texts.iter().any(|t| t == "-") { read_stdin()? } else { String::new() };
    let texts: Vec<&str> = args.texts.iter().map(|t| if t == "-" { stdin.as_str() } else { t.as_str() }).collect();
    let stdout = std::io::stdout();
    let mut printer = |input: usize, piece: &str, _: Option<u32>| {
        let mut out = stdout.lock();
        if texts.len() > 1 {
            let _ = write!(out, "[{input}] ");
        }
        let _ = write!(out, "{piece}");
        let _ = out.flush();
        Flow::Continue
    };
    let observer: Option<&mut dyn duet::Observer> = if args.stream && !args.json { Some(&mut printer) } else { None };
    let limits = Limits::start(&params, None);
    let outputs = guarded(&limits, observer, |obs| duet::generate(&model, &texts, &params, obs))?;
    if args.json {
        println!("{}", duet::ffi::results_json(&outputs, &texts));
    } else if args.stream {
        println!();
    } else {
        for (i, o) in outputs.iter().enumerate() {
            for (j, s) in o.sequences.iter().enumerate() {
                let tag = if o.sequences.len() > 1 { format!("[{i}.{j}]") } else { format!("[{i}]") };
                println!("{tag} {} ({}, score {:.4})", s.text, s.finish_reason.as_str(), s.score);
            }
            if o.input_truncated {
                eprintln!("duet: note: input {i} was truncated to the model's input limit");
            }
        }
    }
    Ok(())
}

fn list(specs: &[duet::settings::Spec]) {
    for s in specs {
        println!("{:<24} {}", s.key, s.help);
    }
}

fn run(raw: Vec<OsString>) -> Result<(), Failure> {
    let args = parse_args(raw)?;
    match args.command.as_str() {
        "generate" => generate(&args),
        "summarize" => tasks::summarize(&args),
        "chat" => tasks::chat(&args),
        "assist" => tasks::assist(&args),
        "embed" => tasks::embed(&args),
        "rerank" => tasks::rerank(&args),
        "index" => tasks::index(&args),
        "search" => tasks::search(&args),
        "info" => {
            let model = open_model(&args)?;
            println!("{}", serde_json::to_string_pretty(&model.info_json()).unwrap_or_default());
            Ok(())
        }
        "params" => {
            list(GENERATION_SPECS);
            Ok(())
        }
        "options" => {
            list(MODEL_OPTION_SPECS);
            Ok(())
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        "version" | "--version" => {
            println!("duet {}", duet::VERSION);
            Ok(())
        }
        other => Err(Failure::Usage(format!("unknown command `{other}`"))),
    }
}

fn main() -> ExitCode {
    // A closed pipe (`duet search ... | head -1`) ends the process quietly, as for other Unix
    // tools, instead of a panic in println!. SAFETY: done first, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match run(std::env::args_os().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("duet: {m}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Duet(e)) => {
            eprintln!("duet: error: {e}");
            ExitCode::from(1)
        }
    }
}
