//! summarize, chat and assist over the C ABI, and the reply object they share.

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use super::boundary::{boundary, c_string, out_arg, str_arg};
use super::generate::{call_params, duet_finish_reason, duet_token_callback, CallbackObserver};
use super::handles::{free_handle, handle, handle_mut, new_handle};
use super::model::duet_model;
use super::params::duet_params;
use super::status::duet_status;
use crate::error::Error;
use crate::generate::control::guarded;
use crate::generate::{Flow, Observer};
use crate::model::Model;
use crate::tasks::{assistant, summarize, translate, Progress};

/// Hears how far a long task is: `done` of `total` chunks at map-reduce `level` (from 1).
/// Called after every batch of chunks and at every decoding step (then with unchanged counts),
/// so that returning non-zero cancels within one step.
pub type duet_progress_callback = Option<unsafe extern "C" fn(user_data: *mut c_void, done: usize, total: usize, level: usize) -> i32>;

/// Callbacks of summarize, chat and assist; any member may be NULL, and so may the pointer.
#[repr(C)]
pub struct duet_callbacks {
    /// Streams the text of the answer (the final summary for summarize).
    pub on_token: duet_token_callback,
    pub on_progress: duet_progress_callback,
    /// Passed back to both callbacks.
    pub user_data: *mut c_void,
}

/// The answer of summarize, chat or assist (opaque).
pub struct duet_reply {
    text: CString,
    finish_reason: duet_finish_reason,
    stats: Vec<(&'static str, i64)>,
}

struct Hooks {
    token: Option<CallbackObserver>,
    progress: duet_progress_callback,
    user_data: *mut c_void,
}

impl Hooks {
    unsafe fn from(callbacks: *const duet_callbacks) -> Self {
        match callbacks.as_ref() {
            None => Self { token: None, progress: None, user_data: std::ptr::null_mut() },
            Some(c) => Self {
                token: c.on_token.map(|callback| CallbackObserver { callback, user_data: c.user_data }),
                progress: c.on_progress,
                user_data: c.user_data,
            },
        }
    }

    fn observer(&mut self) -> Option<&mut dyn Observer> {
        self.token.as_mut().map(|o| o as &mut dyn Observer)
    }
}

fn reply(text: &str, finish_reason: duet_finish_reason, stats: Vec<(&'static str, i64)>) -> duet_reply {
    duet_reply { text: c_string(text), finish_reason, stats }
}

/// Summarizes `text` of any length: T5-style prompt prefix from config.json (or
/// `prompt_template`), beam search with n-gram blocking, `summary_length` short/medium/long;
/// documents over the input limit go through map-reduce over sentence chunks. The reply's stats
/// say "chunks", "levels" and "summaries". Thread-safe; with the model's scheduler on,
/// concurrent calls share decoder runs.
#[no_mangle]
pub unsafe extern "C" fn duet_summarize(
    model: *const duet_model,
    text: *const c_char,
    params: *const duet_params,
    callbacks: *const duet_callbacks,
    out: *mut *mut duet_reply,
) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let model = handle(model, "model")?;
        let text = str_arg(text, "text")?;
        let (params, limits) = call_params(params)?;
        let mut hooks = Hooks::from(callbacks);
        let (progress_cb, user_data) = (hooks.progress, hooks.user_data);
        let mut stopped_by = None;
        let mut on_progress = |p: Progress| {
            if let Err(e) = limits.check() {
                stopped_by = Some(e);
                return Flow::Stop;
            }
            match progress_cb {
                Some(f) if f(user_data, p.done, p.total, p.level) != 0 => Flow::Stop,
                _ => Flow::Continue,
            }
        };
        let s = guarded(&limits, hooks.observer(), |obs| match &model.scheduler {
            Some(scheduler) => summarize::summarize(scheduler, text, &params, Some(&mut on_progress), obs),
            None => summarize::summarize(&*model.model, text, &params, Some(&mut on_progress), obs),
        })?;
        if let Some(e) = stopped_by {
            return Err(e);
        }
        let stats = vec![("chunks", s.chunks as i64), ("levels", s.levels as i64), ("summaries", s.summaries as i64)];
        *out = new_handle(reply(&s.text, s.finish_reason.into(), stats));
        Ok(())
    })
}

/// Translates `text` of any length into `to` (from `from`): NULL `from` takes the model's
/// default source (or none, where the model recognizes the source itself); NULL `to` only for a
/// model that translates one pair. Codes are the model's own (`fra_Latn`, `__fr__`, `fr_XX`,
/// `>>fra<<`) or ISO 639 (`fr`, `fra`, `fre`); `duet_model_info` lists them under "translation".
/// An unknown code fails with `DUET_STATUS_UNKNOWN_LANGUAGE` and the known ones in the message; a
/// model that does not translate with `DUET_STATUS_UNSUPPORTED`. Lines stay lines; long lines are
/// split on sentences (`chunk_tokens`, default 256) and translated `batch_size` at a time, in
/// order; `callbacks->on_progress` hears (chunks done, chunks, 1); the translation is not
/// streamed (`on_token` is not called). The reply's stat "chunks" says how many. Thread-safe; with the model's scheduler on, concurrent calls share decoder runs.
#[no_mangle]
pub unsafe extern "C" fn duet_translate(
    model: *const duet_model,
    text: *const c_char,
    to: *const c_char,
    from: *const c_char,
    params: *const duet_params,
    callbacks: *const duet_callbacks,
    out: *mut *mut duet_reply,
) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let model = handle(model, "model")?;
        let text = str_arg(text, "text")?;
        let to = if to.is_null() { None } else { Some(str_arg(to, "to")?) };
        let from = if from.is_null() { None } else { Some(str_arg(from, "from")?) };
        let (params, limits) = call_params(params)?;
        let hooks = Hooks::from(callbacks);
        let (progress_cb, user_data) = (hooks.progress, hooks.user_data);
        let mut on_progress = |p: Progress| match progress_cb {
            Some(f) if f(user_data, p.done, p.total, p.level) != 0 => Flow::Stop,
            _ => Flow::Continue,
        };
        let t = guarded(&limits, None, |obs| match &model.scheduler {
            Some(scheduler) => translate::translate(scheduler, text, (to, from), &params, Some(&mut on_progress), obs),
            None => translate::translate(&*model.model, text, (to, from), &params, Some(&mut on_progress), obs),
        })?;
        *out = new_handle(reply(&t.text, t.finish_reason.into(), vec![("chunks", t.chunks as i64)]));
        Ok(())
    })
}

/// A conversation (opaque): the turns so far and the params it was made with. Used by one thread
/// at a time; it keeps its model alive.
pub struct duet_chat {
    chat: assistant::Chat,
    settings: crate::Settings,
    cancel: Option<crate::generate::control::CancelToken>,
}

/// Starts a conversation. Params: generation keys plus `system_prompt`, `chat_template`,
/// `chat_turn_template`; `stop_strings` defaults to ["\nUser:"]. Free with `duet_chat_free`.
/// Thread-safe; the chat it makes is used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn duet_chat_new(model: *const duet_model, params: *const duet_params, out: *mut *mut duet_chat) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let model: Arc<Model> = handle(model, "model")?.model.clone();
        let (settings, _) = call_params(params)?;
        let cancel = if params.is_null() { None } else { handle(params, "params")?.cancel.clone() };
        let chat = assistant::Chat::new(model, &settings)?;
        *out = new_handle(duet_chat { chat, settings, cancel });
        Ok(())
    })
}

fn chat_reply(r: &assistant::ChatReply) -> duet_reply {
    let stats = vec![
        ("dropped_turns", r.dropped_turns as i64),
        ("prompt_tokens", r.prompt_tokens as i64),
        ("input_truncated", r.input_truncated as i64),
    ];
    reply(&r.text, r.finish_reason.into(), stats)
}

/// Sends a user message and answers it, streaming through `callbacks->on_token` (non-zero
/// cancels; a cancelled turn is not kept). When the history no longer fits the input limit the
/// oldest turns are dropped; the reply's stat "dropped_turns" says how many.
/// Thread safety: one thread at a time per chat (different chats may run at once).
#[no_mangle]
pub unsafe extern "C" fn duet_chat_send(
    chat: *mut duet_chat,
    user_text: *const c_char,
    callbacks: *const duet_callbacks,
    out: *mut *mut duet_reply,
) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let mut c = handle_mut(chat, "chat")?;
        let text = str_arg(user_text, "user_text")?;
        let limits = crate::generate::control::Limits::start(&c.settings, c.cancel.clone());
        let mut hooks = Hooks::from(callbacks);
        let r = guarded(&limits, hooks.observer(), |obs| c.chat.send(text, obs))?;
        *out = new_handle(chat_reply(&r));
        Ok(())
    })
}

/// Forgets every turn.
/// Thread safety: one thread at a time per chat (different chats may run at once).
#[no_mangle]
pub unsafe extern "C" fn duet_chat_reset(chat: *mut duet_chat) -> duet_status {
    boundary(|| {
        handle_mut(chat, "chat")?.chat.reset();
        Ok(())
    })
}

/// Number of turns kept.
/// Thread safety: one thread at a time per chat (different chats may run at once).
#[no_mangle]
pub unsafe extern "C" fn duet_chat_num_turns(chat: *const duet_chat, out: *mut usize) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        *out = handle(chat, "chat")?.chat.history().len();
        Ok(())
    })
}

/// Frees a conversation; NULL is a no-op.
/// Thread safety: call once. A call still using the object on another thread keeps it until that
/// call returns; new calls get DUET_STATUS_INVALID_HANDLE at once.
#[no_mangle]
pub unsafe extern "C" fn duet_chat_free(chat: *mut duet_chat) {
    free_handle(chat, "chat")
}

/// One question, no history (a chat of one turn). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_assist(
    model: *const duet_model,
    question: *const c_char,
    params: *const duet_params,
    callbacks: *const duet_callbacks,
    out: *mut *mut duet_reply,
) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let model = handle(model, "model")?.model.clone();
        let question = str_arg(question, "question")?;
        let (settings, limits) = call_params(params)?;
        let mut hooks = Hooks::from(callbacks);
        let r = guarded(&limits, hooks.observer(), |obs| assistant::assist(model, question, &settings, obs))?;
        *out = new_handle(chat_reply(&r));
        Ok(())
    })
}

/// The reply's text, owned by the reply.
/// Thread-safe: results and replies are read-only. Pointers written are owned by the object and valid until it is freed.
#[no_mangle]
pub unsafe extern "C" fn duet_reply_text(reply: *const duet_reply, out: *mut *const c_char) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        *out = handle(reply, "reply")?.text.as_ptr();
        Ok(())
    })
}

/// Why the reply ended.
/// Thread-safe: results and replies are read-only. Pointers written are owned by the object and valid until it is freed.
#[no_mangle]
pub unsafe extern "C" fn duet_reply_finish_reason(reply: *const duet_reply, out: *mut duet_finish_reason) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        *out = handle(reply, "reply")?.finish_reason;
        Ok(())
    })
}

/// A number about the reply by name: "chunks", "levels", "summaries" (summarize);
/// "dropped_turns", "prompt_tokens", "input_truncated" (chat, assist).
/// Thread-safe: results and replies are read-only. Pointers written are owned by the object and valid until it is freed.
#[no_mangle]
pub unsafe extern "C" fn duet_reply_stat(reply: *const duet_reply, key: *const c_char, out: *mut i64) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let r = handle(reply, "reply")?;
        let key = str_arg(key, "key")?;
        let value = r.stats.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "this reply has no stat `{key}`; it has: {}",
                r.stats.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            ))
        })?;
        *out = value;
        Ok(())
    })
}

/// Frees a reply; NULL is a no-op.
/// Thread safety: call once. A call still using the object on another thread keeps it until that
/// call returns; new calls get DUET_STATUS_INVALID_HANDLE at once.
#[no_mangle]
pub unsafe extern "C" fn duet_reply_free(reply: *mut duet_reply) {
    free_handle(reply, "reply")
}
