//! `duet_generator_*`: generation the host drives, one event at a time (pull style).

use std::collections::VecDeque;
use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::boundary::{boundary, c_string, out_arg};
use super::generate::{call_params, duet_finish_reason, duet_result, str_array};
use super::handles::{free_handle, handle, new_handle};
use super::model::duet_model;
use super::params::duet_params;
use super::status::duet_status;
use crate::error::{Error, Result};
use crate::generate::control::Limits;
use crate::generate::{encode_inputs, resolve_params, Event, Generation, GenerationOutput, Message, Ticket};
use crate::model::Model;

/// What `duet_generator_next` returned.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum duet_event_kind {
    /// New text of input `input_index`: `piece` / `piece_len`, `token_id` the token that
    /// completed it (-1 for a final flush, and for beam search's one piece per input).
    Text = 0,
    /// Input `input_index` is finished, for `finish_reason`.
    Finished = 1,
    /// The generation is over: `duet_generator_result` has every input's sequences.
    Done = 2,
}

/// One event. `piece` is NUL-terminated UTF-8 owned by the generator, valid until the next
/// call on it (NULL when `kind` is not TEXT).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct duet_event {
    pub kind: duet_event_kind,
    pub input_index: usize,
    pub piece: *const c_char,
    pub piece_len: usize,
    pub token_id: i32,
    pub finish_reason: duet_finish_reason,
}

impl duet_event {
    fn done() -> Self {
        Self {
            kind: duet_event_kind::Done,
            input_index: 0,
            piece: std::ptr::null(),
            piece_len: 0,
            token_id: -1,
            finish_reason: duet_finish_reason::Length,
        }
    }
}

enum Source {
    /// On the model's scheduler, batched with every other request.
    Scheduled(Ticket),
    /// Alone: each `next` that finds no event waiting runs one decoder step on the calling thread.
    /// `None` once its outputs were taken.
    Alone(Option<Box<Generation<Arc<Model>>>>, Limits),
}

struct State {
    source: Source,
    events: VecDeque<Event>,
    outcome: Option<Result<Vec<GenerationOutput>>>,
    /// The piece the last TEXT event pointed to.
    piece: CString,
    /// A cancel was passed on: events still waiting are dropped, none are taken after it.
    cancel_applied: bool,
}

/// A generation in progress (opaque), from `duet_generator_new`.
pub struct duet_generator {
    state: Mutex<State>,
    cancelled: AtomicBool,
    texts: Vec<String>,
}

impl State {
    /// Passes a cancel on (once): the events not yet taken are dropped.
    fn apply_cancel(&mut self) {
        if !self.cancel_applied {
            self.cancel_applied = true;
            self.events.clear();
        }
    }

    /// Waits for (or computes) more events, or the outcome.
    fn refill(&mut self) {
        match &mut self.source {
            Source::Scheduled(ticket) => {
                if self.cancel_applied {
                    ticket.cancel();
                }
                match ticket.next() {
                    Some(Message::Step(events)) if !self.cancel_applied => self.events.extend(events),
                    Some(Message::Step(_)) => {}
                    Some(Message::Done(result)) => self.outcome = Some(result),
                    None => self.outcome = Some(Err(Error::Internal("the generation has no outcome".into()))),
                }
            }
            Source::Alone(slot, limits) => {
                let Some(generation) = slot.as_mut() else {
                    self.outcome = Some(Err(Error::Internal("the generation has no outcome".into())));
                    return;
                };
                let step =
                    limits
                        .check()
                        .and_then(|()| if self.cancel_applied { generation.cancel().map(|()| Vec::new()) } else { generation.step() });
                match step {
                    Err(e) => self.outcome = Some(Err(e)),
                    Ok(events) => self.events.extend(events),
                }
                if self.outcome.is_none() && generation.is_done() {
                    self.outcome = slot.take().map(|g| g.into_outputs());
                }
            }
        }
    }
}

impl duet_generator {
    fn next(&self, event: &mut duet_event) -> Result<()> {
        let mut state = self.state.lock().map_err(|_| Error::Internal("generator lock poisoned".into()))?;
        if self.cancelled.load(Ordering::SeqCst) && state.outcome.is_none() {
            state.apply_cancel();
        }
        loop {
            if let Some(next) = state.events.pop_front() {
                *event = match next {
                    Event::Text { input, piece, token } => {
                        state.piece = c_string(&piece);
                        duet_event {
                            kind: duet_event_kind::Text,
                            input_index: input,
                            piece: state.piece.as_ptr(),
                            piece_len: state.piece.as_bytes().len(),
                            token_id: token.map_or(-1, |t| t as i32),
                            finish_reason: duet_finish_reason::Length,
                        }
                    }
                    Event::Finished { input, reason } => duet_event {
                        kind: duet_event_kind::Finished,
                        input_index: input,
                        piece: std::ptr::null(),
                        piece_len: 0,
                        token_id: -1,
                        finish_reason: reason.into(),
                    },
                };
                return Ok(());
            }
            match &state.outcome {
                Some(Ok(_)) => {
                    *event = duet_event::done();
                    return Ok(());
                }
                Some(Err(e)) => return Err(e.clone()),
                None => {
                    if self.cancelled.load(Ordering::SeqCst) {
                        state.apply_cancel();
                    }
                    state.refill();
                }
            }
        }
    }
}

/// Starts generating for `n_inputs` UTF-8 texts (one batch, as `duet_generate`); `params` may
/// be NULL. Nothing is decoded yet: each `duet_generator_next` hands over the next event. On a
/// model opened with `scheduling` on (the default) the request joins the model's scheduler and
/// is decoded there, batched with other callers' requests, while the host is not looking; with
/// `scheduling=off` each `next` that finds no event waiting runs one decoder step on the calling
/// thread. `timeout_ms` and a cancel token in `params` apply. Free with `duet_generator_free`.
/// Thread-safe (many generators on one model at once).
#[no_mangle]
pub unsafe extern "C" fn duet_generator_new(
    model: *const duet_model,
    inputs: *const *const c_char,
    n_inputs: usize,
    params: *const duet_params,
    out: *mut *mut duet_generator,
) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let model = handle(model, "model")?;
        let texts = str_array(inputs, n_inputs, "inputs")?;
        let (settings, limits) = call_params(params)?;
        let params = resolve_params(&model.model, &settings)?;
        let encoded = limits.within(|| encode_inputs(&model.model, &texts, &params))?;
        let source = match &model.scheduler {
            Some(scheduler) => Source::Scheduled(scheduler.submit(encoded, &params, limits)?),
            None => {
                limits.check()?;
                Source::Alone(Some(Box::new(Generation::new(model.model.clone(), &encoded, &params)?)), limits)
            }
        };
        let state = State { source, events: VecDeque::new(), outcome: None, piece: CString::default(), cancel_applied: false };
        *out = new_handle(duet_generator {
            state: Mutex::new(state),
            cancelled: AtomicBool::new(false),
            texts: texts.iter().map(|t| t.to_string()).collect(),
        });
        Ok(())
    })
}

/// Writes the next event to `*event`, waiting for it (or decoding it) when none is ready:
/// TEXT and FINISHED events in the order they were decided, then DONE, then DONE again on
/// every later call. A generation that failed (a deadline, the cancel token of its params, a
/// model error) returns that status instead, on this call and every later one. After
/// `duet_generator_cancel` the events not yet taken are dropped and the next call says DONE.
/// One thread at a time per generator.
#[no_mangle]
pub unsafe extern "C" fn duet_generator_next(generator: *mut duet_generator, event: *mut duet_event) -> duet_status {
    boundary(|| {
        let event = out_arg(event, "event")?;
        let generator = handle(generator, "generator")?;
        let mut next = duet_event::done();
        generator.next(&mut next)?;
        *event = next;
        Ok(())
    })
}

/// Stops the generation at its next step boundary; other requests on the model go on
/// undisturbed. The result then says DUET_FINISH_REASON_CANCELLED for inputs not finished.
/// Thread-safe: may be called from any thread, also while another is in `duet_generator_next`.
#[no_mangle]
pub unsafe extern "C" fn duet_generator_cancel(generator: *const duet_generator) -> duet_status {
    boundary(|| {
        handle(generator, "generator")?.cancelled.store(true, Ordering::SeqCst);
        Ok(())
    })
}

/// Every input's sequences, once `duet_generator_next` said DONE (DUET_STATUS_INVALID_ARGUMENT
/// before). `*out` is a new result to free with `duet_result_free`. One thread at a time.
#[no_mangle]
pub unsafe extern "C" fn duet_generator_result(generator: *const duet_generator, out: *mut *mut duet_result) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let generator = handle(generator, "generator")?;
        let state = generator.state.lock().map_err(|_| Error::Internal("generator lock poisoned".into()))?;
        match &state.outcome {
            Some(Ok(outputs)) if state.events.is_empty() => {
                let texts: Vec<&str> = generator.texts.iter().map(String::as_str).collect();
                *out = new_handle(duet_result::new(outputs, &texts));
                Ok(())
            }
            Some(Err(e)) => Err(e.clone()),
            _ => Err(Error::InvalidArgument(
                "the generation is not done: call duet_generator_next until it says DUET_EVENT_KIND_DONE".into(),
            )),
        }
    })
}

/// Frees a generator; NULL is a no-op. A generation not done is cancelled: on the scheduler it
/// leaves at the next step boundary, and this returns once it has (its place is free). A
/// `duet_generator_next` still running on another thread is cancelled, and the generator is
/// freed when it returns.
#[no_mangle]
pub unsafe extern "C" fn duet_generator_free(generator: *mut duet_generator) {
    if let Ok(g) = handle(generator, "generator") {
        g.cancelled.store(true, Ordering::SeqCst);
    }
    free_handle(generator, "generator")
}
