//! Loading ONNX Runtime and opening models.

use std::ffi::c_char;
use std::path::Path;

use super::boundary::{boundary, c_string, out_arg, str_arg};
use super::handles::{free_handle, handle, new_handle, new_string};
use super::params::duet_model_options;
use super::status::duet_status;
use crate::generate::{Scheduler, SchedulerOptions};
use crate::model::{new_model_options, Model, ModelKind};

/// A loaded model (opaque). Thread-safe: one `const duet_model *` may be used by any number of
/// threads at once. With `scheduling` on (the default) its scheduler thread decodes every
/// caller's request, batched a step at a time; with it off, requests interleave step by step.
pub struct duet_model {
    pub(crate) model: std::sync::Arc<Model>,
    /// Batches every generate call and generator on the model (option `scheduling`, on by default).
    pub(crate) scheduler: Option<Scheduler>,
}

/// The scheduler the options ask for, if any (`scheduling`, `max_batch_rows`, `max_requests`).
fn scheduler_for(model: &std::sync::Arc<Model>, options: &crate::Settings) -> Option<Scheduler> {
    let bounds = SchedulerOptions::from_model_options(options)?;
    (model.kind == ModelKind::Seq2Seq).then(|| Scheduler::new(model.clone(), bounds))
}

/// Loads libonnxruntime once for the process, from `ort_library` when not NULL, else from
/// `$DUET_ORT_LIBRARY`, `$ORT_DYLIB_PATH`, the folder of libduet, then the system loader.
/// Optional: `duet_model_open` does it on first use. Later calls do nothing. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_runtime_init(ort_library: *const c_char) -> duet_status {
    boundary(|| {
        let path = if ort_library.is_null() { None } else { Some(Path::new(str_arg(ort_library, "ort_library")?)) };
        crate::runtime::init_runtime(path).map(|_| ())
    })
}

/// Opens the model directory `dir` (Optimum export: config.json, tokenizer.json,
/// encoder_model.onnx and the merged or split decoder). `options` may be NULL. On success
/// `*out` receives a model to free with `duet_model_free`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_model_open(dir: *const c_char, options: *const duet_model_options, out: *mut *mut duet_model) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let dir = str_arg(dir, "dir")?;
        let defaults = new_model_options();
        let options = if options.is_null() { &defaults } else { &handle(options, "options")?.settings };
        let model = std::sync::Arc::new(Model::open_with(dir, options)?);
        let scheduler = scheduler_for(&model, options);
        *out = new_handle(duet_model { model, scheduler });
        Ok(())
    })
}

/// Frees a model; NULL is a no-op. A call still inside it on another thread keeps it until that
/// call returns (new calls get DUET_STATUS_INVALID_HANDLE at once). Chats and indexes made
/// from it keep what they need alive until they are freed themselves; a generator still running
/// on its scheduler ends with DUET_STATUS_CANCELLED.
#[no_mangle]
pub unsafe extern "C" fn duet_model_free(model: *mut duet_model) {
    free_handle(model, "model")
}

/// What was detected, as a JSON object: architecture, layout ("merged"/"split"), vocab_size,
/// decoder_layers, execution_provider, onnxruntime_version, ... Free `*out` with
/// `duet_string_free`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_model_info_json(model: *const duet_model, out: *mut *mut c_char) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let info = handle(model, "model")?.model.info_json().to_string();
        *out = new_string(c_string(&info));
        Ok(())
    })
}

/// The ONNX Runtime execution provider the model runs on, e.g. "CPUExecutionProvider".
/// Static storage; do not free. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_model_execution_provider(model: *const duet_model, out: *mut *const c_char) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let name = match handle(model, "model")?.model.execution_provider() {
            crate::runtime::ExecutionProviderKind::Cpu => c"CPUExecutionProvider",
            crate::runtime::ExecutionProviderKind::Cuda => c"CUDAExecutionProvider",
            crate::runtime::ExecutionProviderKind::TensorRt => c"TensorrtExecutionProvider",
        };
        *out = name.as_ptr();
        Ok(())
    })
}
