//! Options objects that grow without breaking the ABI: typed setters by key, unknown keys
//! rejected with the list of valid ones (as ONNX Runtime GenAI does).
//!
//! `duet_params` holds generation settings under their Hugging Face names (`num_beams`,
//! `max_new_tokens`, `temperature`, ...); `duet_model_options` holds the options of
//! `duet_model_open` (`ort_library`, `providers`, `layout`, `intra_threads`, ...).
//! An object may be read by many threads at once but changed by one thread at a time.

use std::ffi::c_char;

use super::boundary::{boundary, out_arg, str_arg};
use super::handles::{free_handle, handle, handle_mut, new_handle};
use super::status::duet_status;
use crate::generate::control::CancelToken;
use crate::settings::Settings;

/// Generation parameters (opaque).
pub struct duet_params {
    pub(crate) settings: Settings,
    pub(crate) cancel: Option<CancelToken>,
}

/// A flag that cancels every call whose params carry it, from any thread (opaque).
pub struct duet_cancel_token {
    pub(crate) token: CancelToken,
}

/// Options for opening a model (opaque).
pub struct duet_model_options {
    pub(crate) settings: Settings,
}

/// Both options objects are settings under another name; these make one setter serve both.
trait HasSettings {
    fn settings_mut(&mut self) -> &mut Settings;
}

impl HasSettings for duet_params {
    fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }
}

impl HasSettings for duet_model_options {
    fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }
}

unsafe fn set<T: HasSettings + 'static>(
    p: *mut T,
    key: *const c_char,
    f: impl FnOnce(&mut Settings, &str) -> crate::Result<()>,
) -> duet_status {
    boundary(|| f(handle_mut(p, "params")?.settings_mut(), str_arg(key, "key")?))
}

/// Creates generation parameters with every key at its default (the model's
/// generation_config.json, then transformers' defaults). Free with `duet_params_free`.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_params_new(out: *mut *mut duet_params) -> duet_status {
    boundary(|| {
        *out_arg(out, "out")? = new_handle(duet_params { settings: crate::tasks::new_generation_settings(), cancel: None });
        Ok(())
    })
}

/// Frees parameters; NULL is a no-op.
/// Thread safety: call once. A call still using the object on another thread keeps it until that
/// call returns; new calls get DUET_STATUS_INVALID_HANDLE at once.
#[no_mangle]
pub unsafe extern "C" fn duet_params_free(params: *mut duet_params) {
    free_handle(params, "params")
}

/// Sets an integer key (`max_new_tokens`, `num_beams`, ...; number keys and 0/1 for boolean
/// keys are accepted too). Unknown keys: DUET_STATUS_UNKNOWN_PARAM; bad values:
/// DUET_STATUS_INVALID_PARAM.
/// Thread safety: change an object from one thread at a time, and not while a call is reading it.
#[no_mangle]
pub unsafe extern "C" fn duet_params_set_int(params: *mut duet_params, key: *const c_char, value: i64) -> duet_status {
    set(params, key, |s, k| s.set_int(k, value))
}

/// Sets a number key (`temperature`, `top_p`, `length_penalty`, `repetition_penalty`).
/// Thread safety: change an object from one thread at a time, and not while a call is reading it.
#[no_mangle]
pub unsafe extern "C" fn duet_params_set_float(params: *mut duet_params, key: *const c_char, value: f64) -> duet_status {
    set(params, key, |s, k| s.set_float(k, value))
}

/// Sets a boolean key (`do_sample`, `early_stopping`, `truncate_input`).
/// Thread safety: change an object from one thread at a time, and not while a call is reading it.
#[no_mangle]
pub unsafe extern "C" fn duet_params_set_bool(params: *mut duet_params, key: *const c_char, value: bool) -> duet_status {
    set(params, key, |s, k| s.set_bool(k, value))
}

/// Sets any key from text: "4", "0.7", "true", "never", "[1,2]", "[\"###\",\"\\n\\n\"]".
/// Thread safety: change an object from one thread at a time, and not while a call is reading it.
#[no_mangle]
pub unsafe extern "C" fn duet_params_set_string(params: *mut duet_params, key: *const c_char, value: *const c_char) -> duet_status {
    set(params, key, |s, k| s.set_str(k, str_arg(value, "value")?))
}

/// Returns a key to its default.
/// Thread safety: change an object from one thread at a time, and not while a call is reading it.
#[no_mangle]
pub unsafe extern "C" fn duet_params_unset(params: *mut duet_params, key: *const c_char) -> duet_status {
    set(params, key, |s, k| s.unset(k))
}

/// Makes calls with these params watch `token` (NULL: none). A call whose token is cancelled
/// ends at its next decoding step with DUET_STATUS_CANCELLED. The params keep the token alive.
/// Thread safety: change an object from one thread at a time, and not while a call is reading it.
#[no_mangle]
pub unsafe extern "C" fn duet_params_set_cancel_token(params: *mut duet_params, token: *const duet_cancel_token) -> duet_status {
    boundary(|| {
        let mut params = handle_mut(params, "params")?;
        params.cancel = if token.is_null() { None } else { Some(handle(token, "token")?.token.clone()) };
        Ok(())
    })
}

/// A new, not cancelled token. Free with `duet_cancel_token_free`.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_cancel_token_new(out: *mut *mut duet_cancel_token) -> duet_status {
    boundary(|| {
        *out_arg(out, "out")? = new_handle(duet_cancel_token { token: CancelToken::new() });
        Ok(())
    })
}

/// Cancels every call watching the token. Thread-safe: meant to be called from another thread.
#[no_mangle]
pub unsafe extern "C" fn duet_cancel_token_cancel(token: *const duet_cancel_token) -> duet_status {
    boundary(|| {
        handle(token, "token")?.token.cancel();
        Ok(())
    })
}

/// Makes the token usable again.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_cancel_token_reset(token: *const duet_cancel_token) -> duet_status {
    boundary(|| {
        handle(token, "token")?.token.reset();
        Ok(())
    })
}

/// Frees a token; NULL is a no-op. Params holding it keep working.
/// Thread safety: call once. A call still using the object on another thread keeps it until that
/// call returns; new calls get DUET_STATUS_INVALID_HANDLE at once.
#[no_mangle]
pub unsafe extern "C" fn duet_cancel_token_free(token: *mut duet_cancel_token) {
    free_handle(token, "token")
}

/// Creates model options with every key at its default. Free with `duet_model_options_free`.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_model_options_new(out: *mut *mut duet_model_options) -> duet_status {
    boundary(|| {
        *out_arg(out, "out")? = new_handle(duet_model_options { settings: crate::model::new_model_options() });
        Ok(())
    })
}

/// Frees model options; NULL is a no-op.
/// Thread safety: call once. A call still using the object on another thread keeps it until that
/// call returns; new calls get DUET_STATUS_INVALID_HANDLE at once.
#[no_mangle]
pub unsafe extern "C" fn duet_model_options_free(options: *mut duet_model_options) {
    free_handle(options, "options")
}

/// Sets an integer option (`intra_threads`, `device_id`).
#[no_mangle]
pub unsafe extern "C" fn duet_model_options_set_int(options: *mut duet_model_options, key: *const c_char, value: i64) -> duet_status {
    set(options, key, |s, k| s.set_int(k, value))
}

/// Sets a boolean option (`strict_providers`).
/// Thread safety: change an object from one thread at a time, and not while a call is reading it.
#[no_mangle]
pub unsafe extern "C" fn duet_model_options_set_bool(options: *mut duet_model_options, key: *const c_char, value: bool) -> duet_status {
    set(options, key, |s, k| s.set_bool(k, value))
}

/// Sets any option from text (`ort_library`, `providers` = "cuda,cpu", `layout` = "auto" |
/// "merged" | "split", `graph_optimization`, ...).
/// Thread safety: change an object from one thread at a time, and not while a call is reading it.
#[no_mangle]
pub unsafe extern "C" fn duet_model_options_set_string(
    options: *mut duet_model_options,
    key: *const c_char,
    value: *const c_char,
) -> duet_status {
    set(options, key, |s, k| s.set_str(k, str_arg(value, "value")?))
}
