//! Options for opening a model: where ONNX Runtime is, which providers, which layout.

use crate::settings::{any, check, Kind, Settings, Spec};

pub static MODEL_OPTION_SPECS: &[Spec] = &[
    Spec { key: "ort_library", kind: Kind::Str, check: any, default: None, help: "path of libonnxruntime to load (first place tried)" },
    Spec { key: "providers", kind: Kind::Str, check: any, default: None, help: "execution providers in order of preference, e.g. `cuda,cpu`" },
    Spec { key: "strict_providers", kind: Kind::Bool, check: any, default: Some("false"), help: "fail instead of falling back when the first provider is unavailable" },
    Spec { key: "device_id", kind: Kind::Int, check: |v| check::int_in(v, 0, 1024), default: Some("0"), help: "GPU ordinal for cuda/tensorrt" },
    Spec { key: "layout", kind: Kind::Str, check: |v| check::one_of(v, &["auto", "merged", "split", "with_past"]), default: Some("auto"), help: "decoder graphs to use: auto (with_past when the encoder returns the cross-attention cache, else merged, else split), merged, split or with_past" },
    Spec { key: "io_binding", kind: Kind::Str, check: |v| check::one_of(v, &["auto", "on", "off"]), default: Some("auto"), help: "keep encoder outputs and KV caches where the decoder runs, through IoBinding: auto (on a GPU), on, off" },
    Spec { key: "graph_optimization", kind: Kind::Str, check: |v| check::one_of(v, &["disable", "basic", "extended", "all"]), default: Some("all"), help: "ONNX Runtime graph optimization level: disable, basic, extended or all" },
    Spec { key: "intra_op_spinning", kind: Kind::Bool, check: any, default: None, help: "let ONNX Runtime's threads spin between operators (default true: lower latency, more CPU)" },
    Spec { key: "memory_arena", kind: Kind::Bool, check: any, default: None, help: "ONNX Runtime's CPU memory arena (default false: blocks go back to the allocator; true: the arena keeps them, which peaked up to 530 MiB higher in the benchmarks, at a speed within their noise)" },
    Spec { key: "memory_pattern", kind: Kind::Bool, check: any, default: None, help: "plan allocations from the first run's shapes (default true)" },
    Spec { key: "encoder_batch_tokens", kind: Kind::Int, check: |v| check::int_in(v, 0, 1 << 30), default: Some("1024"), help: "most tokens (inputs x the longest input) one encoder run takes on the CPU: a larger batch runs in parts of whole inputs, copied into one output, so its attention scores (inputs x heads x length^2) exist for one part at a time (bench/RESULTS.md: a beam-4 batch of 8 x 512 tokens peaked ~100 MiB lower, its encoder ~10% faster); 0 = the whole batch in one run" },
    Spec { key: "prepacking", kind: Kind::Bool, check: any, default: None, help: "prepack weights for faster MatMul (default true; false: less memory)" },
    Spec { key: "scheduling", kind: Kind::Str, check: |v| check::one_of(v, &["continuous", "off"]), default: Some("continuous"), help: "how concurrent generate calls of the C API share the model: continuous (one scheduler thread decodes every request's rows, a step at a time, requests joining and leaving at step boundaries) or off (each call decodes alone on its own thread)" },
    Spec { key: "max_batch_rows", kind: Kind::Int, check: |v| check::int_in(v, 1, 4096), default: Some("32"), help: "[scheduling] most decoder rows (inputs x beams) one decoder run serves: requests start, and batches merge, up to it" },
    Spec { key: "max_requests", kind: Kind::Int, check: |v| check::int_in(v, 1, 1 << 20), default: Some("256"), help: "[scheduling] most requests waiting or running at once; more are refused with DUET_STATUS_BUSY" },
    Spec { key: "memory_budget_mb", kind: Kind::Int, check: |v| check::int_in(v, 1, 1 << 30), default: None, help: "most memory one generation request may need at worst (inputs x beams x length x cache per token, encoder states, vocabulary work), in MiB: a larger request is refused with DUET_STATUS_OVER_BUDGET before it starts, and the scheduler starts requests only while the running ones' worst cases fit (default: half the machine's memory, or of its cgroup limit)" },
    Spec { key: "cuda_memory_limit", kind: Kind::Int, check: |v| check::int_in(v, 1, i64::MAX), default: None, help: "[cuda] bytes the CUDA arena may hold" },
    Spec { key: "cuda_arena_strategy", kind: Kind::Str, check: |v| check::one_of(v, &["next_power_of_two", "same_as_requested"]), default: None, help: "[cuda] how the arena grows: next_power_of_two or same_as_requested" },
    Spec { key: "cuda_copy_in_default_stream", kind: Kind::Bool, check: any, default: None, help: "[cuda] copy on the default stream" },
    Spec { key: "trt_fp16", kind: Kind::Bool, check: any, default: None, help: "[tensorrt] allow fp16 kernels" },
    Spec { key: "trt_bf16", kind: Kind::Bool, check: any, default: None, help: "[tensorrt] allow bf16 kernels" },
    Spec { key: "trt_engine_cache", kind: Kind::Bool, check: any, default: None, help: "[tensorrt] keep built engines on disk" },
    Spec { key: "trt_engine_cache_path", kind: Kind::Str, check: any, default: None, help: "[tensorrt] folder of the engine cache" },
    Spec { key: "trt_timing_cache", kind: Kind::Bool, check: any, default: None, help: "[tensorrt] keep the timing cache" },
    Spec { key: "trt_timing_cache_path", kind: Kind::Str, check: any, default: None, help: "[tensorrt] folder of the timing cache" },
    Spec { key: "trt_builder_optimization_level", kind: Kind::Int, check: |v| check::int_in(v, 0, 5), default: None, help: "[tensorrt] builder optimization level 0-5" },
    Spec { key: "trt_max_workspace_size", kind: Kind::Int, check: |v| check::int_in(v, 1, i64::MAX), default: None, help: "[tensorrt] builder workspace in bytes" },
    Spec { key: "trt_max_batch", kind: Kind::Int, check: |v| check::int_in(v, 1, 1024), default: Some("8"), help: "[tensorrt] largest batch of the optimization profiles" },
    Spec { key: "trt_max_input_tokens", kind: Kind::Int, check: |v| check::int_in(v, 1, 1 << 20), default: None, help: "[tensorrt] longest input of the profiles (default: the model's limit)" },
    Spec { key: "trt_max_new_tokens", kind: Kind::Int, check: |v| check::int_in(v, 1, 1 << 20), default: Some("256"), help: "[tensorrt] longest output of the profiles" },
    Spec { key: "profiling_prefix", kind: Kind::Str, check: any, default: None, help: "write ONNX Runtime's per-operator profile of each graph to files starting with this path (for performance work)" },
    Spec { key: "pooling", kind: Kind::Str, check: |v| check::one_of(v, &["mean", "cls", "max", "last_token", "mean_sqrt_len"]), default: None, help: "[embed] how token states become one vector: mean, cls, max, last_token or mean_sqrt_len (default: 1_Pooling/config.json, else mean)" },
    Spec { key: "normalize", kind: Kind::Bool, check: any, default: None, help: "[embed] L2-normalise vectors (default: true, or what modules.json says)" },
    Spec { key: "query_prefix", kind: Kind::Str, check: any, default: None, help: "[embed] text put before every query (E5: `query: `; default: the prompts of config_sentence_transformers.json, else none)" },
    Spec { key: "document_prefix", kind: Kind::Str, check: any, default: None, help: "[embed] text put before every document (E5: `passage: `; default as query_prefix)" },
    Spec { key: "intra_threads", kind: Kind::Int, check: check::thread_count, default: Some("0"), help: "threads per operator, at most the usable cores; 0 = ONNX Runtime's choice" },
];

pub fn new_model_options() -> Settings {
    Settings::new(MODEL_OPTION_SPECS)
}

/// Model options from `KEY=VALUE` strings.
pub fn model_options_from<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> crate::Result<Settings> {
    let mut s = new_model_options();
    for (k, v) in pairs {
        s.set_str(k, v)?;
    }
    Ok(s)
}

/// What opening a model reads of its options beside the session options, parsed once; a key not
/// set takes its default from the table above.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenOptions {
    pub ort_library: Option<std::path::PathBuf>,
    pub layout: String,
    pub io_binding: String,
    pub trt_max_batch: usize,
    pub trt_max_input_tokens: Option<usize>,
    pub trt_max_new_tokens: usize,
    pub memory_budget_mb: Option<u64>,
    pub encoder_batch_tokens: usize,
}

/// The table's default of `key` (a model option with a fixed default).
pub fn option_default(key: &str) -> Option<&'static str> {
    MODEL_OPTION_SPECS.iter().find(|s| s.key == key).and_then(|s| s.default)
}

fn option_str(options: &Settings, key: &str) -> String {
    options.str(key).or_else(|| option_default(key)).unwrap_or_default().to_string()
}

/// An int option, else its default (0 if it has none: a table without one for an int key).
pub fn option_int(options: &Settings, key: &str) -> i64 {
    options.int(key).or_else(|| option_default(key).and_then(|d| d.parse().ok())).unwrap_or(0)
}

impl OpenOptions {
    pub fn parse(options: &Settings) -> Self {
        Self {
            ort_library: options.str("ort_library").map(std::path::PathBuf::from),
            layout: option_str(options, "layout"),
            io_binding: option_str(options, "io_binding"),
            trt_max_batch: option_int(options, "trt_max_batch").max(1) as usize,
            trt_max_input_tokens: options.int("trt_max_input_tokens").map(|v| v as usize),
            trt_max_new_tokens: option_int(options, "trt_max_new_tokens").max(1) as usize,
            memory_budget_mb: options.int("memory_budget_mb").map(|mb| mb as u64),
            encoder_batch_tokens: option_int(options, "encoder_batch_tokens").max(0) as usize,
        }
    }

    /// `memory_budget_mb` in bytes, else half the machine's memory.
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget_mb.map_or_else(super::footprint::default_memory_budget, |mb| mb << 20)
    }

    /// The graph optimization level's name (`graph_optimization`).
    pub fn graph_optimization(options: &Settings) -> String {
        option_str(options, "graph_optimization")
    }
}

/// The scheduler bounds the options ask for (`max_batch_rows`, `max_requests`; unset ones take
/// their defaults from the table above), or `None` when `scheduling=off`: parsed once where a
/// model is opened for many callers (the C API, `duet bench`).
pub fn scheduler_bounds(options: &Settings) -> Option<(usize, usize)> {
    if options.str("scheduling") == Some("off") {
        return None;
    }
    let bound = |key: &str| option_int(options, key).max(1) as usize;
    Some((bound("max_batch_rows"), bound("max_requests")))
}
