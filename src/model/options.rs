//! Options for opening a model: where ONNX Runtime is, which providers, which layout.

use crate::settings::{any, check, Kind, Settings, Spec};

pub static MODEL_OPTION_SPECS: &[Spec] = &[
    Spec { key: "ort_library", kind: Kind::Str, check: any, help: "path of libonnxruntime to load (first place tried)" },
    Spec { key: "providers", kind: Kind::Str, check: any, help: "execution providers in order of preference, e.g. `cuda,cpu`" },
    Spec { key: "strict_providers", kind: Kind::Bool, check: any, help: "fail instead of falling back when the first provider is unavailable" },
    Spec { key: "device_id", kind: Kind::Int, check: |v| check::int_in(v, 0, 1024), help: "GPU ordinal for cuda/tensorrt" },
    Spec { key: "layout", kind: Kind::Str, check: |v| check::one_of(v, &["auto", "merged", "split", "with_past"]), help: "decoder graphs to use: auto (with_past when the encoder returns the cross-attention cache, else merged, else split), merged, split or with_past" },
    Spec { key: "io_binding", kind: Kind::Str, check: |v| check::one_of(v, &["auto", "on", "off"]), help: "keep encoder outputs and KV caches where the decoder runs, through IoBinding: auto (on a GPU, the default), on, off" },
    Spec { key: "graph_optimization", kind: Kind::Str, check: |v| check::one_of(v, &["disable", "basic", "extended", "all"]), help: "ONNX Runtime graph optimization level: disable, basic, extended or all (default)" },
    Spec { key: "intra_op_spinning", kind: Kind::Bool, check: any, help: "let ONNX Runtime's threads spin between operators (default true: lower latency, more CPU)" },
    Spec { key: "memory_arena", kind: Kind::Bool, check: any, help: "ONNX Runtime's CPU memory arena (default true; false: less memory held)" },
    Spec { key: "memory_pattern", kind: Kind::Bool, check: any, help: "plan allocations from the first run's shapes (default true)" },
    Spec { key: "prepacking", kind: Kind::Bool, check: any, help: "prepack weights for faster MatMul (default true; false: less memory)" },
    Spec { key: "scheduling", kind: Kind::Str, check: |v| check::one_of(v, &["continuous", "off"]), help: "how concurrent generate calls of the C API share the model: continuous (the default: one scheduler thread decodes every request's rows, a step at a time, requests joining and leaving at step boundaries) or off (each call decodes alone on its own thread)" },
    Spec { key: "max_batch_rows", kind: Kind::Int, check: |v| check::int_in(v, 1, 4096), help: "[scheduling] most decoder rows (inputs x beams) one decoder run serves: requests start, and batches merge, up to it (default 32)" },
    Spec { key: "max_requests", kind: Kind::Int, check: |v| check::int_in(v, 1, 1 << 20), help: "[scheduling] most requests waiting or running at once; more are refused with DUET_STATUS_BUSY (default 256)" },
    Spec { key: "cuda_memory_limit", kind: Kind::Int, check: |v| check::int_in(v, 1, i64::MAX), help: "[cuda] bytes the CUDA arena may hold" },
    Spec { key: "cuda_arena_strategy", kind: Kind::Str, check: |v| check::one_of(v, &["next_power_of_two", "same_as_requested"]), help: "[cuda] how the arena grows: next_power_of_two or same_as_requested" },
    Spec { key: "cuda_copy_in_default_stream", kind: Kind::Bool, check: any, help: "[cuda] copy on the default stream" },
    Spec { key: "trt_fp16", kind: Kind::Bool, check: any, help: "[tensorrt] allow fp16 kernels" },
    Spec { key: "trt_bf16", kind: Kind::Bool, check: any, help: "[tensorrt] allow bf16 kernels" },
    Spec { key: "trt_engine_cache", kind: Kind::Bool, check: any, help: "[tensorrt] keep built engines on disk" },
    Spec { key: "trt_engine_cache_path", kind: Kind::Str, check: any, help: "[tensorrt] folder of the engine cache" },
    Spec { key: "trt_timing_cache", kind: Kind::Bool, check: any, help: "[tensorrt] keep the timing cache" },
    Spec { key: "trt_timing_cache_path", kind: Kind::Str, check: any, help: "[tensorrt] folder of the timing cache" },
    Spec { key: "trt_builder_optimization_level", kind: Kind::Int, check: |v| check::int_in(v, 0, 5), help: "[tensorrt] builder optimization level 0-5" },
    Spec { key: "trt_max_workspace_size", kind: Kind::Int, check: |v| check::int_in(v, 1, i64::MAX), help: "[tensorrt] builder workspace in bytes" },
    Spec { key: "trt_max_batch", kind: Kind::Int, check: |v| check::int_in(v, 1, 1024), help: "[tensorrt] largest batch of the optimization profiles (default 8)" },
    Spec { key: "trt_max_input_tokens", kind: Kind::Int, check: |v| check::int_in(v, 1, 1 << 20), help: "[tensorrt] longest input of the profiles (default: the model's limit)" },
    Spec { key: "trt_max_new_tokens", kind: Kind::Int, check: |v| check::int_in(v, 1, 1 << 20), help: "[tensorrt] longest output of the profiles (default 256)" },
    Spec { key: "profiling_prefix", kind: Kind::Str, check: any, help: "write ONNX Runtime's per-operator profile of each graph to files starting with this path (for performance work)" },
    Spec { key: "pooling", kind: Kind::Str, check: |v| check::one_of(v, &["mean", "cls", "max", "last_token", "mean_sqrt_len"]), help: "[embed] how token states become one vector: mean, cls, max, last_token or mean_sqrt_len (default: 1_Pooling/config.json, else mean)" },
    Spec { key: "normalize", kind: Kind::Bool, check: any, help: "[embed] L2-normalise vectors (default: true, or what modules.json says)" },
    Spec { key: "query_prefix", kind: Kind::Str, check: any, help: "[embed] text put before every query (E5: `query: `; default: the prompts of config_sentence_transformers.json, else none)" },
    Spec { key: "document_prefix", kind: Kind::Str, check: any, help: "[embed] text put before every document (E5: `passage: `; default as query_prefix)" },
    Spec { key: "intra_threads", kind: Kind::Int, check: check::thread_count, help: "threads per operator, at most the usable cores; 0 = ONNX Runtime's choice" },
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

/// The scheduler bounds the options ask for (`max_batch_rows`, `max_requests`), or `None` when
/// `scheduling=off`: parsed once where a model is opened for many callers (the C API, `duet bench`).
pub fn scheduler_bounds(options: &Settings) -> Option<(Option<usize>, Option<usize>)> {
    if options.str("scheduling") == Some("off") {
        return None;
    }
    Some((options.int("max_batch_rows").map(|v| v as usize), options.int("max_requests").map(|v| v as usize)))
}
