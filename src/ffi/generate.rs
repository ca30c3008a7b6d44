//! `duet_generate` and its result object.

use std::ffi::{c_char, c_void, CString};

use super::boundary::{boundary, c_string, out_arg, str_arg};
use super::handles::{free_handle, handle, new_handle, new_string};
use super::model::duet_model;
use super::params::duet_params;
use super::status::duet_status;
use super::tasks::{duet_callbacks, duet_progress_callback};
use crate::error::{Error, Result};
use crate::generate::control::{guarded, Limits};
use crate::generate::{encode_inputs, generate, resolve_params, FinishReason, Flow, GenerationOutput, Observer};
use crate::tasks::new_generation_settings;

/// Why a sequence ended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum duet_finish_reason {
    /// An end-of-sequence token was generated.
    Eos = 0,
    /// max_new_tokens was reached.
    Length = 1,
    /// The text reached one of stop_strings (the text stops before it).
    StopString = 2,
    /// The token callback returned non-zero.
    Cancelled = 3,
}

impl From<FinishReason> for duet_finish_reason {
    fn from(r: FinishReason) -> Self {
        match r {
            FinishReason::Eos => duet_finish_reason::Eos,
            FinishReason::Length => duet_finish_reason::Length,
            FinishReason::StopString => duet_finish_reason::StopString,
            FinishReason::Cancelled => duet_finish_reason::Cancelled,
        }
    }
}

/// Receives generated text as it is decided. `piece` is valid UTF-8 of `piece_len` bytes,
/// NUL-terminated, valid only during the call. Greedy/sampling: each new piece of input
/// `input_index`, `token_id` the token that completed it (-1 for the final flush). Beam search:
/// each input's best sequence once, when final (`token_id` -1). Return 0 to continue, non-zero
/// to cancel the whole call (the result then says DUET_FINISH_REASON_CANCELLED). Must not unwind
/// (no C++ exceptions through it).
pub type duet_token_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, input_index: usize, piece: *const c_char, piece_len: usize, token_id: i32) -> i32>;

pub(crate) struct CallbackObserver {
    pub(crate) callback: unsafe extern "C" fn(*mut c_void, usize, *const c_char, usize, i32) -> i32,
    pub(crate) user_data: *mut c_void,
}

impl Observer for CallbackObserver {
    fn on_text(&mut self, input: usize, piece: &str, token_id: Option<u32>) -> Flow {
        let c = CString::new(piece).unwrap_or_else(|_| c_string(piece));
        let token = token_id.map_or(-1, |t| t as i32);
        let verdict = unsafe { (self.callback)(self.user_data, input, c.as_ptr(), c.as_bytes().len(), token) };
        if verdict == 0 {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }
}

struct SequenceOut {
    text: CString,
    token_ids: Vec<i32>,
    score: f64,
    finish_reason: duet_finish_reason,
}

struct InputOut {
    sequences: Vec<SequenceOut>,
    input_tokens: usize,
    truncated: bool,
}

/// The outcome of `duet_generate` (opaque): per input, one or more sequences. Read it from any
/// number of threads; free it with `duet_result_free`.
pub struct duet_result {
    inputs: Vec<InputOut>,
    json: serde_json::Value,
}

impl duet_result {
    pub(crate) fn new(outputs: &[GenerationOutput], texts: &[&str]) -> Self {
        let json = results_json(outputs, texts);
        let inputs = outputs
            .iter()
            .map(|o| InputOut {
                input_tokens: o.input_tokens,
                truncated: o.input_truncated,
                sequences: o
                    .sequences
                    .iter()
                    .map(|s| SequenceOut {
                        text: c_string(&s.text),
                        token_ids: s.token_ids.iter().map(|&t| t as i32).collect(),
                        score: s.score as f64,
                        finish_reason: s.finish_reason.into(),
                    })
                    .collect(),
            })
            .collect();
        Self { inputs, json }
    }

    fn sequence(&self, input: usize, seq: usize) -> Result<&SequenceOut> {
        let i = self.input(input)?;
        i.sequences
            .get(seq)
            .ok_or_else(|| Error::InvalidArgument(format!("sequence {seq} out of range: input {input} has {}", i.sequences.len())))
    }

    fn input(&self, input: usize) -> Result<&InputOut> {
        self.inputs
            .get(input)
            .ok_or_else(|| Error::InvalidArgument(format!("input {input} out of range: the result has {}", self.inputs.len())))
    }
}

/// `{"results":[{"input":..., "sequences":[{"token_ids":[...], "text":..., "score":...}],
/// "finish_reason":...}]}`, the CLI's `--json` output.
pub fn results_json(outputs: &[GenerationOutput], texts: &[&str]) -> serde_json::Value {
    let results: Vec<_> = outputs
        .iter()
        .zip(texts)
        .map(|(o, text)| {
            serde_json::json!({
                "input": text,
                "input_tokens": o.input_tokens,
                "input_truncated": o.input_truncated,
                "sequences": o.sequences.iter().map(|s| serde_json::json!({
                    "token_ids": s.token_ids,
                    "text": s.text,
                    "score": if s.score.is_finite() { serde_json::json!(s.score) } else { serde_json::Value::Null },
                    "finish_reason": s.finish_reason.as_str(),
                })).collect::<Vec<_>>(),
                "finish_reason": o.finish_reason().as_str(),
            })
        })
        .collect();
    serde_json::json!({ "results": results })
}

/// Generates for `n_inputs` UTF-8 texts decoded together as one batch. `params` may be NULL
/// (the model's generation_config.json defaults); `callback` may be NULL. On success `*out`
/// receives a result to free with `duet_result_free`. Thread-safe: many threads may call this
/// on the same model at once; the model's scheduler batches their requests. The callback always
/// runs on the calling thread.
#[no_mangle]
pub unsafe extern "C" fn duet_generate(
    model: *const duet_model,
    inputs: *const *const c_char,
    n_inputs: usize,
    params: *const duet_params,
    callback: duet_token_callback,
    user_data: *mut c_void,
    out: *mut *mut duet_result,
) -> duet_status {
    let token = callback.map(|callback| CallbackObserver { callback, user_data });
    boundary(|| generate_call(model, inputs, n_inputs, params, GenerateHooks::new(token, None, user_data), out))
}

/// As `duet_generate`, with `callbacks` (may be NULL): `on_token` streams as duet_generate's
/// callback does, and `on_progress` hears (steps done, most new tokens, 1) before every decoding
/// step, beam search's included, so that returning non-zero from either cancels within one step
/// (the result then says DUET_FINISH_REASON_CANCELLED). Thread-safe, as `duet_generate`; the
/// callbacks run on the calling thread.
#[no_mangle]
pub unsafe extern "C" fn duet_generate_with(
    model: *const duet_model,
    inputs: *const *const c_char,
    n_inputs: usize,
    params: *const duet_params,
    callbacks: *const duet_callbacks,
    out: *mut *mut duet_result,
) -> duet_status {
    let hooks = match callbacks.as_ref() {
        None => GenerateHooks::new(None, None, std::ptr::null_mut()),
        Some(c) => {
            GenerateHooks::new(c.on_token.map(|callback| CallbackObserver { callback, user_data: c.user_data }), c.on_progress, c.user_data)
        }
    };
    boundary(|| generate_call(model, inputs, n_inputs, params, hooks, out))
}

/// A generate call's callbacks: the token stream, and progress before every step.
struct GenerateHooks {
    token: Option<CallbackObserver>,
    progress: duet_progress_callback,
    user_data: *mut c_void,
    steps: usize,
    total: usize,
}

impl GenerateHooks {
    fn new(token: Option<CallbackObserver>, progress: duet_progress_callback, user_data: *mut c_void) -> Self {
        Self { token, progress, user_data, steps: 0, total: 0 }
    }
}

impl Observer for GenerateHooks {
    fn on_text(&mut self, input: usize, piece: &str, token_id: Option<u32>) -> Flow {
        self.token.as_mut().map_or(Flow::Continue, |t| t.on_text(input, piece, token_id))
    }

    fn on_step(&mut self) -> Flow {
        if let Some(progress) = self.progress {
            if unsafe { progress(self.user_data, self.steps, self.total, 1) } != 0 {
                return Flow::Stop;
            }
        }
        self.steps += 1;
        Flow::Continue
    }
}

unsafe fn generate_call(
    model: *const duet_model,
    inputs: *const *const c_char,
    n_inputs: usize,
    params: *const duet_params,
    mut hooks: GenerateHooks,
    out: *mut *mut duet_result,
) -> Result<()> {
    let out = out_arg(out, "out")?;
    let model = handle(model, "model")?;
    if inputs.is_null() {
        return Err(Error::NullPointer("inputs"));
    }
    if n_inputs == 0 {
        return Err(Error::InvalidArgument("n_inputs is 0".into()));
    }
    let texts = str_array(inputs, n_inputs, "inputs")?;
    let (settings, limits) = call_params(params)?;
    let resolved = resolve_params(&model.model, &settings)?;
    hooks.total = resolved.max_new_tokens + resolved.decoder_prefix.len();
    let observer: Option<&mut dyn Observer> = if hooks.token.is_some() || hooks.progress.is_some() { Some(&mut hooks) } else { None };
    let outputs = match &model.scheduler {
        Some(scheduler) => {
            let encoded = limits.within(|| encode_inputs(&model.model, &texts, &resolved))?;
            scheduler.generate(encoded, &resolved, limits, observer)?
        }
        None => guarded(&limits, observer, |obs| generate(&model.model, &texts, &settings, obs))?,
    };
    *out = new_handle(duet_result::new(&outputs, &texts));
    Ok(())
}

/// The `n` strings of a C array, each checked for NULL and UTF-8.
pub(crate) unsafe fn str_array<'a>(array: *const *const c_char, n: usize, what: &'static str) -> Result<Vec<&'a str>> {
    if array.is_null() {
        return Err(Error::NullPointer(what));
    }
    if n == 0 {
        return Err(Error::InvalidArgument(format!("{what}: the count is 0")));
    }
    (0..n)
        .map(|i| {
            let p = *array.add(i);
            if p.is_null() {
                crate::ffi::status::set_last_error(&format!("{what}[{i}] is NULL"));
                return Err(Error::NullPointer("an element of the string array"));
            }
            str_arg(p, what).map_err(|e| match e {
                Error::InvalidUtf8(m) => Error::InvalidUtf8(format!("{what}[{i}]: {m}")),
                e => e,
            })
        })
        .collect()
}

/// The caller's params (defaults when NULL) and the limits of this call (cancel token,
/// `timeout_ms`), whose clock starts now.
pub(crate) unsafe fn call_params(params: *const duet_params) -> Result<(crate::Settings, Limits)> {
    if params.is_null() {
        return Ok((new_generation_settings(), Limits::default()));
    }
    let p = handle(params, "params")?;
    Ok((p.settings.clone(), Limits::start(&p.settings, p.cancel.clone())))
}

/// Frees a result; NULL is a no-op.
/// Thread safety: call once. A call still using the object on another thread keeps it until that
/// call returns; new calls get DUET_STATUS_INVALID_HANDLE at once.
#[no_mangle]
pub unsafe extern "C" fn duet_result_free(result: *mut duet_result) {
    free_handle(result, "result")
}

/// Number of inputs in the result (as given to duet_generate).
/// Thread-safe: results and replies are read-only. Pointers written are owned by the object and valid until it is freed.
#[no_mangle]
pub unsafe extern "C" fn duet_result_num_inputs(result: *const duet_result, out: *mut usize) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        *out = handle(result, "result")?.inputs.len();
        Ok(())
    })
}

/// Number of sequences for input `input` (num_return_sequences).
/// Thread-safe: results and replies are read-only. Pointers written are owned by the object and valid until it is freed.
#[no_mangle]
pub unsafe extern "C" fn duet_result_num_sequences(result: *const duet_result, input: usize, out: *mut usize) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        *out = handle(result, "result")?.input(input)?.sequences.len();
        Ok(())
    })
}

/// Text of sequence `seq` of input `input`, NUL-terminated UTF-8 owned by the result. A NUL
/// character in the generated text (models can emit byte 0) reads as U+FFFD here and in
/// streamed pieces; `duet_result_to_json` keeps it as \u0000.
/// Thread-safe: results and replies are read-only. Pointers written are owned by the object and valid until it is freed.
#[no_mangle]
pub unsafe extern "C" fn duet_result_text(result: *const duet_result, input: usize, seq: usize, out: *mut *const c_char) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        *out = handle(result, "result")?.sequence(input, seq)?.text.as_ptr();
        Ok(())
    })
}

/// Generated token ids (no decoder start token; EOS included when generated), owned by the result.
/// Thread-safe: results and replies are read-only. Pointers written are owned by the object and valid until it is freed.
#[no_mangle]
pub unsafe extern "C" fn duet_result_token_ids(
    result: *const duet_result,
    input: usize,
    seq: usize,
    ids: *mut *const i32,
    len: *mut usize,
) -> duet_status {
    boundary(|| {
        let (ids, len) = (out_arg(ids, "ids")?, out_arg(len, "len")?);
        let result = handle(result, "result")?;
        let s = result.sequence(input, seq)?;
        *ids = s.token_ids.as_ptr();
        *len = s.token_ids.len();
        Ok(())
    })
}

/// Score: beam search's length-penalized log-probability, or the sum of the chosen tokens'
/// log-probabilities for greedy and sampling.
/// Thread-safe: results and replies are read-only. Pointers written are owned by the object and valid until it is freed.
#[no_mangle]
pub unsafe extern "C" fn duet_result_score(result: *const duet_result, input: usize, seq: usize, out: *mut f64) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        *out = handle(result, "result")?.sequence(input, seq)?.score;
        Ok(())
    })
}

/// Why sequence `seq` of input `input` ended.
/// Thread-safe: results and replies are read-only. Pointers written are owned by the object and valid until it is freed.
#[no_mangle]
pub unsafe extern "C" fn duet_result_finish_reason(
    result: *const duet_result,
    input: usize,
    seq: usize,
    out: *mut duet_finish_reason,
) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        *out = handle(result, "result")?.sequence(input, seq)?.finish_reason;
        Ok(())
    })
}

/// Tokens of input `input` as encoded, and whether it was truncated (`truncate_input`).
/// Thread-safe: results and replies are read-only. Pointers written are owned by the object and valid until it is freed.
#[no_mangle]
pub unsafe extern "C" fn duet_result_input_info(
    result: *const duet_result,
    input: usize,
    input_tokens: *mut usize,
    truncated: *mut bool,
) -> duet_status {
    boundary(|| {
        let (tokens_out, truncated_out) = (out_arg(input_tokens, "input_tokens")?, out_arg(truncated, "truncated")?);
        let result = handle(result, "result")?;
        let i = result.input(input)?;
        *tokens_out = i.input_tokens;
        *truncated_out = i.truncated;
        Ok(())
    })
}

/// The whole result as JSON (the CLI's `--json` format). Free `*out` with `duet_string_free`.
/// Thread-safe: results and replies are read-only. Pointers written are owned by the object and valid until it is freed.
#[no_mangle]
pub unsafe extern "C" fn duet_result_to_json(result: *const duet_result, out: *mut *mut c_char) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        *out = new_string(c_string(&handle(result, "result")?.json.to_string()));
        Ok(())
    })
}
