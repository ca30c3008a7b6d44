//! What the commands share: the model and params arguments (parsed once into typed values, keys
//! checked against the command they are given to), input from files or standard input, output
//! modes and progress bars.

use std::io::{IsTerminal, Read, Write};

use clap::Args;
use duet::generate::GENERATION_SPECS;
use duet::model::MODEL_OPTION_SPECS;
use duet::settings::Spec;
use duet::{Model, Settings};

pub enum Failure {
    Usage(String),
    Duet(duet::Error),
}

impl From<duet::Error> for Failure {
    fn from(e: duet::Error) -> Self {
        Failure::Duet(e)
    }
}

/// The commands, as the params table names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Generate,
    Summarize,
    Translate,
    Chat,
    Assist,
    Embed,
    Rerank,
    Index,
    Search,
}

impl Cmd {
    pub const ALL: [Cmd; 9] =
        [Cmd::Generate, Cmd::Summarize, Cmd::Translate, Cmd::Chat, Cmd::Assist, Cmd::Embed, Cmd::Rerank, Cmd::Index, Cmd::Search];

    pub fn name(self) -> &'static str {
        match self {
            Cmd::Generate => "generate",
            Cmd::Summarize => "summarize",
            Cmd::Translate => "translate",
            Cmd::Chat => "chat",
            Cmd::Assist => "assist",
            Cmd::Embed => "embed",
            Cmd::Rerank => "rerank",
            Cmd::Index => "index",
            Cmd::Search => "search",
        }
    }
}

/// Generation keys drive the decoder: the generating commands take them all; the input limits
/// apply wherever text is encoded.
const EVERYWHERE: &[&str] = &["max_input_tokens", "truncate_input"];
const GENERATING: [Cmd; 5] = [Cmd::Generate, Cmd::Summarize, Cmd::Translate, Cmd::Chat, Cmd::Assist];

/// The commands a params key applies to: generation keys as above; task keys by the `[...]` tag
/// their help starts with (`[all]` or command names).
pub fn commands_of(spec: &Spec) -> Vec<Cmd> {
    if GENERATION_SPECS.iter().any(|g| g.key == spec.key) {
        return if EVERYWHERE.contains(&spec.key) { Cmd::ALL.to_vec() } else { GENERATING.to_vec() };
    }
    let tag = spec.help.strip_prefix('[').and_then(|h| h.split_once(']')).map_or("", |(t, _)| t);
    if tag == "all" {
        return Cmd::ALL.to_vec();
    }
    let names: Vec<&str> = tag.split(',').map(str::trim).collect();
    Cmd::ALL.into_iter().filter(|c| names.contains(&c.name())).collect()
}

fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.to_string()))
}

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// The model directory (an Optimum export, or an embedding model)
    #[arg(long, short)]
    pub model: String,
    /// A model option, KEY=VALUE (`duet options` lists them); repeatable
    #[arg(long = "option", short = 'o', value_name = "KEY=VALUE", value_parser = key_value)]
    pub options: Vec<(String, String)>,
}

impl ModelArgs {
    pub fn open(&self) -> Result<Model, Failure> {
        Ok(Model::open_with(&self.model, &self.options()?)?)
    }

    /// The `--option`s over the defaults.
    pub fn options(&self) -> Result<Settings, Failure> {
        let mut options = duet::new_model_options();
        for (k, v) in &self.options {
            options.set_str(k, v)?;
        }
        Ok(options)
    }
}

/// Refuses a params key that does not apply to `cmd` (a key of another command); `caller` names
/// the front end's call (`duet generate`, `POST /generate`).
pub fn check_applies(cmd: Cmd, caller: &str, key: &str, params: &Settings) -> Result<(), Failure> {
    let spec = params.specs().iter().find(|s| s.key == key);
    if let Some(spec) = spec.filter(|s| !commands_of(s).contains(&cmd)) {
        let names: Vec<&str> = commands_of(spec).iter().map(|c| c.name()).collect();
        return Err(Failure::Usage(format!(
            "`{key}` does not apply to `{caller}` (it applies to: {}; `duet params {}` lists its keys)",
            names.join(", "),
            cmd.name()
        )));
    }
    Ok(())
}

#[derive(Args, Clone, Debug)]
pub struct ParamArgs {
    /// A parameter, KEY=VALUE (`duet params COMMAND` lists this command's); repeatable
    #[arg(long = "set", short = 's', value_name = "KEY=VALUE", value_parser = key_value)]
    pub sets: Vec<(String, String)>,
}

impl ParamArgs {
    /// The params, each key checked for `cmd`: a key of another command is refused.
    pub fn resolve(&self, cmd: Cmd) -> Result<Settings, Failure> {
        let mut params = duet::new_generation_settings();
        for (k, v) in &self.sets {
            params.set_str(k, v)?;
            check_applies(cmd, &format!("duet {}", cmd.name()), k, &params)?;
        }
        Ok(params)
    }
}

#[derive(Args, Clone, Debug, Default)]
pub struct OutputArgs {
    /// One JSON document
    #[arg(long, conflicts_with = "jsonl")]
    pub json: bool,
    /// One JSON object per line, one per result (for pipelines and big inputs)
    #[arg(long)]
    pub jsonl: bool,
}

#[derive(Args, Clone, Debug, Default)]
pub struct ProgressArgs {
    /// Show a progress bar on stderr even when it is not a terminal
    #[arg(long, conflicts_with = "quiet")]
    pub progress: bool,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
}

impl ProgressArgs {
    /// Progress of `total` steps on stderr: a live bar at a terminal, one line per tenth of the
    /// work with --progress elsewhere, nothing with --quiet or when stderr is not a terminal.
    pub fn bar(&self, total: u64, what: &str) -> Bar {
        if self.quiet {
            return Bar::Hidden;
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
            if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta} left)") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what.to_string());
            return Bar::Live(bar);
        }
        if self.progress {
            return Bar::Lines(std::cell::RefCell::new(LineProgress { what: what.to_string(), total, done: 0, told: 0 }));
        }
        Bar::Hidden
    }
}

pub struct LineProgress {
    what: String,
    total: u64,
    done: u64,
    /// Tenths of the work already reported.
    told: u64,
}

pub enum Bar {
    Live(indicatif::ProgressBar),
    Lines(std::cell::RefCell<LineProgress>),
    Hidden,
}

impl Bar {
    pub fn set_message(&self, what: &str) {
        match self {
            Bar::Live(b) => b.set_message(what.to_string()),
            Bar::Lines(l) => l.borrow_mut().what = what.to_string(),
            Bar::Hidden => {}
        }
    }

    /// `done` of `total` steps.
    pub fn set(&self, done: u64, total: u64) {
        match self {
            Bar::Live(b) => {
                b.set_length(total);
                b.set_position(done);
            }
            Bar::Lines(l) => {
                let mut l = l.borrow_mut();
                if total != l.total {
                    l.told = 0;
                }
                (l.done, l.total) = (done, total.max(1));
                let tenths = l.done * 10 / l.total;
                if tenths > l.told || l.done == l.total {
                    l.told = tenths;
                    eprintln!("duet: {}: {}/{}", l.what, l.done, l.total);
                    if l.done == l.total {
                        l.told = 11;
                    }
                }
            }
            Bar::Hidden => {}
        }
    }

    pub fn inc(&self, n: u64) {
        match self {
            Bar::Live(b) => b.inc(n),
            Bar::Lines(l) => {
                let (done, total) = {
                    let l = l.borrow();
                    (l.done + n, l.total)
                };
                self.set(done, total);
            }
            Bar::Hidden => {}
        }
    }

    pub fn finish(&self) {
        if let Bar::Live(b) = self {
            b.finish_and_clear();
        }
    }
}

pub fn read_stdin() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| Failure::Usage(format!("reading standard input: {e}")))?;
    Ok(text)
}

/// The text of each named file, standard input for `-`, or standard input alone for no names.
/// Standard input is read once, whatever the number of `-`.
pub fn read_inputs(files: &[String]) -> Result<Vec<(String, String)>, Failure> {
    if files.is_empty() {
        return Ok(vec![("-".into(), read_stdin()?)]);
    }
    let stdin = if files.iter().any(|f| f == "-") { read_stdin()? } else { String::new() };
    files
        .iter()
        .map(|f| {
            let text = if f == "-" {
                stdin.clone()
            } else {
                std::fs::read_to_string(f).map_err(|e| Failure::Usage(format!("reading {f}: {e}")))?
            };
            Ok((f.clone(), text))
        })
        .collect()
}

/// Non-blank lines.
pub fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Writes one line to stdout (a closed pipe ends the process through SIGPIPE).
pub fn print_line(s: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}").map_err(|e| Failure::Usage(format!("writing the output: {e}")))
}

pub fn list_params(command: Option<&str>) -> Result<(), Failure> {
    let only = match command {
        None => None,
        Some(name) => Some(Cmd::ALL.into_iter().find(|c| c.name() == name).ok_or_else(|| {
            Failure::Usage(format!("no command `{name}` takes params (commands: {})", Cmd::ALL.map(Cmd::name).join(", ")))
        })?),
    };
    let settings = duet::new_generation_settings();
    for spec in settings.specs() {
        let cmds = commands_of(spec);
        if only.is_some_and(|c| !cmds.contains(&c)) {
            continue;
        }
        let names =
            if cmds.len() == Cmd::ALL.len() { "all".to_string() } else { cmds.iter().map(|c| c.name()).collect::<Vec<_>>().join(",") };
        let help = spec.help.strip_prefix('[').and_then(|h| h.split_once("] ")).map_or(spec.help, |(_, rest)| rest);
        print_line(&format!("{:<24} {:<9} {:<32} {}{}", spec.key, kind_name(spec), names, help, default_note(spec)))?;
    }
    Ok(())
}

pub fn list_options() -> Result<(), Failure> {
    for spec in MODEL_OPTION_SPECS {
        print_line(&format!("{:<30} {:<6} {}{}", spec.key, kind_name(spec), spec.help, default_note(spec)))?;
    }
    Ok(())
}

fn kind_name(spec: &Spec) -> &'static str {
    use duet::settings::Kind;
    match spec.kind {
        Kind::Int => "int",
        Kind::Float => "float",
        Kind::Bool => "bool",
        Kind::Str => "string",
        Kind::IntList => "ints",
        Kind::IntLists => "int lists",
        Kind::StrList => "strings",
        Kind::BoolOrWord(_) => "bool|word",
    }
}

/// " (default X)" for a key whose default is one fixed value in its table; control characters shown escaped.
fn default_note(spec: &duet::settings::Spec) -> String {
    spec.default.map_or(String::new(), |d| format!(" (default {})", d.replace('\n', "\\n")))
}
