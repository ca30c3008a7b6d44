//! Session options and the creation of one ONNX Runtime session per graph file.

use std::path::Path;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use super::providers::{ExecutionProviderKind, ProviderSelection};
use crate::error::{Error, Result};

/// How sessions are built. Defaults suit a CPU host that runs other work too.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub providers: ProviderSelection,
    /// Threads inside one operator; 0 lets ONNX Runtime decide (one per physical core).
    pub intra_threads: usize,
    pub optimization: GraphOptimizationLevel,
    pub intra_op_spinning: Option<bool>,
    pub memory_arena: Option<bool>,
    pub memory_pattern: Option<bool>,
    pub prepacking: Option<bool>,
    /// ONNX Runtime profiling output, `<prefix>_<graph>`, when the host asks for it.
    pub profiling_prefix: Option<String>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            providers: ProviderSelection::default(),
            intra_threads: 0,
            optimization: GraphOptimizationLevel::All,
            intra_op_spinning: None,
            memory_arena: None,
            memory_pattern: None,
            prepacking: None,
            profiling_prefix: None,
        }
    }
}

/// A session and the provider it runs on.
pub struct OpenedSession {
    pub session: Session,
    pub provider: ExecutionProviderKind,
    pub skipped_providers: Vec<String>,
}

/// Opens one graph; `trt_profile` is its TensorRT optimization profile (empty without TensorRT).
pub fn open_session(path: &Path, options: &SessionOptions, trt_profile: &[(String, String)]) -> Result<OpenedSession> {
    let runtime = super::runtime()?;
    super::confinement::check_external_data(path)?;
    let onnx = |e: ort::Error| Error::invalid_model(path, format!("ONNX Runtime could not load it: {e}"));
    let mut builder = Session::builder(&runtime.env).map_err(onnx)?;
    builder = builder.with_optimization_level(options.optimization).map_err(|e| onnx(e.into()))?;
    if options.intra_threads > 0 {
        builder = builder.with_intra_threads(options.intra_threads).map_err(|e| onnx(e.into()))?;
    }
    if let Some(spin) = options.intra_op_spinning {
        builder = builder.with_intra_op_spinning(spin).map_err(|e| onnx(e.into()))?;
    }
    if let Some(pattern) = options.memory_pattern {
        builder = builder.with_memory_pattern(pattern).map_err(|e| onnx(e.into()))?;
    }
    if let Some(prepack) = options.prepacking {
        builder = builder.with_prepacking(prepack).map_err(|e| onnx(e.into()))?;
    }
    if let Some(prefix) = &options.profiling_prefix {
        let graph = path.file_stem().map_or(String::new(), |s| s.to_string_lossy().into_owned());
        builder = builder.with_profiling(format!("{prefix}_{graph}")).map_err(|e| onnx(e.into()))?;
    }
    // Off unless asked for: ONNX Runtime's arena keeps its largest blocks, and a generation's
    // shapes change every step (bench/RESULTS.md, workloads: a beam-4 batch of 8 over 512 tokens
    // peaked ~530 MiB higher with it, its speed within the machine's noise).
    let arena = options.memory_arena.unwrap_or(false);
    builder =
        builder.with_execution_providers([ort::ep::CPU::default().with_arena_allocator(arena).build()]).map_err(|e| onnx(e.into()))?;
    let (mut builder, provider, skipped_providers) = options.providers.register(builder, trt_profile)?;
    let session = builder.commit_from_file(path).map_err(onnx)?;
    Ok(OpenedSession { session, provider, skipped_providers })
}
