//! `duet` — the command-line face of the library: one subcommand per call (`duet --help`,
//! `duet <command> --help`). Errors are one line on stderr and a non-zero exit (2: usage,
//! 1: the call failed).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod common;
mod serve;
mod tasks;

use common::{Failure, ModelArgs, OutputArgs, ParamArgs};

#[derive(Parser)]
#[command(
    name = "duet",
    version,
    about = "Run exported encoder-decoder Transformers (T5, BART, Marian, ...) and embedding models on ONNX Runtime",
    after_help = "Every command that takes text reads standard input when given `-` or nothing.\n\
                  `duet params` lists the --set keys (and the commands each applies to), `duet options` the --option keys."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text for each input; several inputs are decoded as one batch
    #[command(
        after_help = "Examples:\n  duet generate --model models/flan-t5-small --set num_beams=4 \"summarize: The river flooded...\"\n  \
                            echo 'translate English to German: Hello.' | duet generate --model models/flan-t5-small -"
    )]
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        params: ParamArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Print text as it is decided (one input only)
        #[arg(long)]
        stream: bool,
        /// Each sequence with its input number, finish reason and score
        #[arg(long)]
        scores: bool,
        /// Inputs; `-` (or none) reads one from standard input
        texts: Vec<String>,
    },
    /// Summarize documents of any length (map-reduce over sentence chunks when too long)
    #[command(after_help = "Examples:\n  duet summarize --model models/bart-summarizer README.md\n  \
                            cat report.txt | duet summarize --model models/bart-summarizer --set summary_length=short")]
    Summarize {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        params: ParamArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        progress: common::ProgressArgs,
        /// Files to summarize, each on its own; `-` (or none) reads standard input
        files: Vec<String>,
    },
    /// Translate documents of any length into a language the model knows (`duet info` lists them)
    #[command(after_help = "Examples:\n  duet translate --model models/nllb-200-distilled-600M --to fra_Latn README.md\n  \
                            echo 'The house is wonderful.' | duet translate --model models/opus-mt-en-ROMANCE --to fr\n\n\
                            Codes: the model's own (fra_Latn, __fr__, fr_XX, >>fra<<) or ISO 639 (fr, fra, fre).")]
    Translate {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        params: ParamArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        progress: common::ProgressArgs,
        /// The target language (needed unless the model translates one pair)
        #[arg(long)]
        to: Option<String>,
        /// The source language, where the model takes one (NLLB, M2M100, mBART; default: its tokenizer's)
        #[arg(long)]
        from: Option<String>,
        /// Files to translate, each on its own; `-` (or none) reads standard input
        files: Vec<String>,
    },
    /// Chat: one turn per line (line editing and history at a terminal; /help, /reset, /quit)
    #[command(
        after_help = "Examples:\n  duet chat --model models/flan-t5-small\n  printf 'hello\\nwhat is a frog?\\n' | duet chat --model models/flan-t5-small"
    )]
    Chat {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        params: ParamArgs,
    },
    /// Answer one question, streamed
    #[command(after_help = "Example:\n  duet assist --model models/flan-t5-small \"Why is the sky blue?\"")]
    Assist {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        params: ParamArgs,
        /// The question (words are joined); `-` (or none) reads standard input
        question: Vec<String>,
    },
    /// Embed texts: one vector per text (one line of numbers each, or JSON)
    #[command(after_help = "Examples:\n  duet embed --model models/all-MiniLM-L6-v2 \"a text editor\" \"an image viewer\"\n  \
                            duet embed --model models/all-MiniLM-L6-v2 --jsonl --set truncate_input=true - < passages.txt")]
    Embed {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        params: ParamArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        progress: common::ProgressArgs,
        /// Texts; `-` (or none) reads one text per line of standard input
        texts: Vec<String>,
    },
    /// Score passages (one per line) against a query with the decoder, higher is more relevant
    #[command(after_help = "Example:\n  duet rerank --model models/flan-t5-small --query \"where do frogs live\" passages.txt")]
    Rerank {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        params: ParamArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[arg(long, short)]
        query: String,
        /// Files of passages, one per line; `-` (or none) reads standard input
        files: Vec<String>,
    },
    /// Add every non-blank line of the files to an index file (created when missing)
    #[command(after_help = "Ids: line L of the first file gets id N + L - 1, where N is --first-id (default: 1 for a new\n\
                            index, else one past the largest id in it); each further file starts one past the previous\n\
                            file's last id. So the ids of a new index built from one file are its line numbers, blank\n\
                            lines counted. The index records the model; another model is refused.\n\n\
                            Example:\n  duet index --model models/all-MiniLM-L6-v2 --index packages.idx --set truncate_input=true packages.txt")]
    Index {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        params: ParamArgs,
        #[command(flatten)]
        progress: common::ProgressArgs,
        /// The index file
        #[arg(long)]
        index: String,
        /// Id of the first line (see below)
        #[arg(long)]
        first_id: Option<i64>,
        /// Files, one passage per line; `-` (or none) reads standard input
        files: Vec<String>,
    },
    /// Search an index: id, score and stored text of the best hits
    #[command(
        after_help = "Examples:\n  duet search --model models/all-MiniLM-L6-v2 --index packages.idx --query \"disk usage per folder\"\n  \
                            duet search --model models/all-MiniLM-L6-v2 --index packages.idx --mode hybrid --k 10 --json --query \"png library\""
    )]
    Search {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        params: ParamArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[arg(long)]
        index: String,
        #[arg(long, short)]
        query: String,
        /// How many hits
        #[arg(long, short, default_value_t = 5)]
        k: usize,
        /// Rescore this many of the best hits with the decoder (a seq2seq model)
        #[arg(long, default_value_t = 0)]
        rerank: usize,
        /// vector (embeddings), keyword (BM25) or hybrid (both, fused by reciprocal rank)
        #[arg(long, value_parser = ["vector", "keyword", "hybrid"])]
        mode: Option<String>,
    },
    /// What was detected in a model directory, as JSON
    #[command(after_help = "Example:\n  duet info --model models/all-MiniLM-L6-v2")]
    Info {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// The --set keys: type, the commands each applies to, meaning and default
    #[command(after_help = "Example:\n  duet params summarize")]
    Params {
        /// Only the keys of this command
        command: Option<String>,
    },
    /// The --option keys (how a model is opened)
    #[command(
        after_help = "Example:\n  duet options\n  duet info --model models/all-MiniLM-L6-v2 --option pooling=cls --option intra_threads=2"
    )]
    Options,
    /// Serve one model over HTTP (generate, generate_stream, summarize, embed, rerank, metrics)
    #[command(after_help = "Examples:\n  duet serve --model models/debian-summarizer --port 8080\n  \
                            curl -s localhost:8080/generate -d '{\"inputs\": \"...\", \"parameters\": {\"max_new_tokens\": 32}}'\n\n\
                            Endpoints: POST /generate, /generate_stream (server-sent events), /summarize, /translate,\n\
                            /embed, /rerank; GET /health, /info, /metrics. Errors are JSON: {\"error\", \"error_type\", \"status\"}.")]
    Serve(serve::ServeArgs),
    /// One benchmark configuration, printed as one JSON line (tools/bench/run_bench.py runs many)
    #[command(after_help = "Example:\n  duet bench --model target/bench-models/fp32 --input-file target/bench-models/input.txt --batch 8")]
    Bench(bench::BenchArgs),
}

fn run(cli: Cli) -> Result<(), Failure> {
    use common::Cmd;
    match cli.command {
        Command::Generate { model, params, output, stream, scores, texts } => {
            tasks::generate(&model, &params.resolve(Cmd::Generate)?, &output, stream, scores, &texts)
        }
        Command::Summarize { model, params, output, progress, files } => {
            tasks::summarize(&model, &params.resolve(Cmd::Summarize)?, &output, &progress, &files)
        }
        Command::Translate { model, params, output, progress, to, from, files } => {
            tasks::translate(&model, &params.resolve(Cmd::Translate)?, &output, &progress, (to.as_deref(), from.as_deref()), &files)
        }
        Command::Chat { model, params } => tasks::chat(&model, &params.resolve(Cmd::Chat)?),
        Command::Assist { model, params, question } => tasks::assist(&model, &params.resolve(Cmd::Assist)?, &question),
        Command::Embed { model, params, output, progress, texts } => {
            tasks::embed(&model, &params.resolve(Cmd::Embed)?, &output, &progress, &texts)
        }
        Command::Rerank { model, params, output, query, files } => {
            tasks::rerank(&model, &params.resolve(Cmd::Rerank)?, &output, &query, &files)
        }
        Command::Index { model, params, progress, index, first_id, files } => {
            tasks::index(&model, &params.resolve(Cmd::Index)?, &progress, &index, first_id, &files)
        }
        Command::Search { model, params, output, index, query, k, rerank, mode } => {
            let mut p = params.resolve(Cmd::Search)?;
            if let Some(mode) = mode {
                p.set_str("search_mode", &mode)?;
            }
            tasks::search(&model, &p, &output, &index, &query, k, rerank)
        }
        Command::Info { model } => {
            let model = model.open()?;
            common::print_line(&serde_json::to_string_pretty(&model.info_json()).unwrap_or_default())
        }
        Command::Params { command } => common::list_params(command.as_deref()),
        Command::Options => common::list_options(),
        Command::Bench(args) => bench::run(&args),
        Command::Serve(args) => serve::run(&args),
    }
}

fn main() -> ExitCode {
    // A closed pipe (`duet search ... | head -1`) ends the process quietly, as for other Unix
    // tools, instead of a failed write. SAFETY: done first, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version: a stdout that cannot take them is a failure like any other write
            use std::io::{IsTerminal, Write};
            let mut out = std::io::stdout().lock();
            let text = if out.is_terminal() { e.render().ansi().to_string() } else { e.render().to_string() };
            return match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("duet: writing the output: {err}");
                    ExitCode::from(2)
                }
            };
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments").trim_start_matches("error: ");
            eprintln!("duet: {first} (see `duet --help` or `duet <command> --help`)");
            return ExitCode::from(2);
        }
    };
    // A bug must not end the CLI with Rust's panic message and exit 101: one line, exit 1. The
    // hook only keeps the message: a panic that the library catches (and reports as an error)
    // prints nothing.
    static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    std::panic::set_hook(Box::new(|info| {
        let what = duet::error::panic_message(info.payload());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let line = format!(
            "duet: internal error: {}{at} (a bug in duet; please report it)",
            what.unwrap_or_else(|| "panic".into()).replace('\n', " ")
        );
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(line);
        }
    }));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli)));
    let Ok(outcome) = outcome else {
        let line = LAST_PANIC.lock().ok().and_then(|mut l| l.take());
        eprintln!("{}", line.unwrap_or_else(|| "duet: internal error (a bug in duet; please report it)".into()));
        return ExitCode::from(1);
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("duet: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Duet(e)) => {
            eprintln!("duet: error: {}", e.to_string().replace('\n', " "));
            ExitCode::from(1)
        }
    }
}
