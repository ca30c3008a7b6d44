//! `POST /generate` and `POST /generate_stream` (text-generation-inference's shapes), and `POST /`
//! (either, by the body's `stream`). Every request goes through the model's scheduler: its rows
//! join the shared decoder runs at the next step boundary, and no thread waits per request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use duet::generate::Message;
use duet::{encode_inputs, resolve_params, Event, FinishReason, GenerationOutput};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::error::ApiError;
use super::request::{parse, settings, wants_details, Inputs};
use super::state::{App, CancelOnDrop};
use crate::common::Cmd;

#[derive(Deserialize)]
pub struct GenerateRequest {
    inputs: Inputs,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    stream: bool,
}

/// A request in the scheduler: its messages, and the guard that cancels it when dropped.
struct Submitted {
    messages: UnboundedReceiver<Message>,
    guard: CancelOnDrop,
}

/// Tokenizes (on a blocking thread) and queues the request in the scheduler.
async fn submit(app: &Arc<App>, request: &GenerateRequest, endpoint: &str) -> Result<Submitted, ApiError> {
    app.admit()?;
    let texts: Vec<String> = request.inputs.texts().into_iter().map(str::to_string).collect();
    app.check_inputs(texts.len())?;
    let mut settings = settings(Cmd::Generate, endpoint, request.parameters.as_ref())?;
    let (limits, guard) = app.limits(&mut settings)?;
    let model = app.model.clone();
    let for_encoding = texts.clone();
    let encode_limits = limits.clone();
    // Tokenizing is short, bounded by the body size (and the request's deadline): it skips the
    // task gate, so that generation never waits behind long embeddings or summaries.
    let encoded = tokio::task::spawn_blocking(move || -> duet::Result<_> {
        let params = resolve_params(&model, &settings)?;
        let refs: Vec<&str> = for_encoding.iter().map(String::as_str).collect();
        Ok((encode_limits.within(|| encode_inputs(&model, &refs, &params))?, params))
    })
    .await
    .map_err(|_| ApiError::from(duet::Error::Internal("tokenizing a request panicked (a bug in duet; please report it)".into())));
    let (tx, messages) = unbounded_channel();
    let sink = move |m: Message| tx.send(m).is_ok();
    let queued =
        encoded.and_then(|r| Ok(r?)).and_then(|(inputs, params)| Ok(app.scheduler.submit_to(inputs, &params, limits, Arc::new(sink))?));
    if let Err(e) = queued {
        guard.answered();
        return Err(e);
    }
    Ok(Submitted { messages, guard })
}

/// text-generation-inference's finish reasons.
fn finish_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Eos => "eos_token",
        FinishReason::Length => "length",
        FinishReason::StopString => "stop_sequence",
        FinishReason::Cancelled => "cancelled",
    }
}

fn generated_tokens(outputs: &[GenerationOutput]) -> u64 {
    outputs.iter().filter_map(|o| o.sequences.first()).map(|s| s.token_ids.len() as u64).sum()
}

fn details(output: &GenerationOutput) -> Value {
    let best = &output.sequences[0];
    let sequences: Vec<Value> = output
        .sequences
        .iter()
        .map(|s| json!({"generated_text": s.text, "token_ids": s.token_ids, "score": s.score, "finish_reason": finish_name(s.finish_reason)}))
        .collect();
    json!({
        "finish_reason": finish_name(best.finish_reason),
        "generated_tokens": best.token_ids.len(),
        "input_tokens": output.input_tokens,
        "input_truncated": output.input_truncated,
        "score": best.score,
        "sequences": sequences,
    })
}

fn answer(output: &GenerationOutput, with_details: bool) -> Value {
    let mut v = json!({"generated_text": output.sequences[0].text});
    if with_details {
        v["details"] = details(output);
    }
    v
}

pub async fn root(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let request: GenerateRequest = match parse(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if request.stream {
        stream_request(app, request, "/").await
    } else {
        generate_request(app, request, "/").await
    }
}

pub async fn generate(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    match parse(body) {
        Ok(request) => generate_request(app, request, "/generate").await,
        Err(e) => e.into_response(),
    }
}

pub async fn generate_stream(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    match parse(body) {
        Ok(request) => stream_request(app, request, "/generate_stream").await,
        Err(e) => e.into_response(),
    }
}

async fn generate_request(app: Arc<App>, request: GenerateRequest, endpoint: &str) -> Response {
    let with_details = wants_details(request.parameters.as_ref());
    let mut submitted = match submit(&app, &request, endpoint).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let outputs = loop {
        match submitted.messages.recv().await {
            Some(Message::Step(_)) => {}
            Some(Message::Done(result)) => break result,
            None => break Err(duet::Error::Internal("the scheduler dropped a request".into())),
        }
    };
    submitted.guard.answered();
    match outputs {
        Ok(outputs) => {
            app.metrics.tokens(generated_tokens(&outputs));
            let answers: Vec<Value> = outputs.iter().map(|o| answer(o, with_details)).collect();
            if request.inputs.is_one() {
                Json(answers.into_iter().next().unwrap_or(Value::Null)).into_response()
            } else {
                Json(answers).into_response()
            }
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// One event per decided piece (`token`: its id and text); the last piece's event also carries
/// `generated_text` and `details`. A failure after the stream began is an event with `error`.
async fn stream_request(app: Arc<App>, request: GenerateRequest, endpoint: &str) -> Response {
    if request.inputs.texts().len() != 1 {
        return ApiError::bad_request("a stream takes one input (the pieces of several would interleave)").into_response();
    }
    let submitted = match submit(&app, &request, endpoint).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let (events, rx) = unbounded_channel::<Result<SseEvent, Infallible>>();
    let started = Instant::now();
    tokio::spawn(async move {
        let Submitted { mut messages, guard } = submitted;
        let mut held: Option<Value> = None;
        let mut index = 0u64;
        let mut first_piece = true;
        while let Some(message) = messages.recv().await {
            // A client gone: dropping the request (its guard) cancels it at the next step.
            if events.is_closed() {
                return;
            }
            match message {
                Message::Step(step) => {
                    for event in step {
                        let Event::Text { piece, token, .. } = event else { continue };
                        if first_piece {
                            first_piece = false;
                            app.metrics.first_token(started.elapsed());
                        }
                        index += 1;
                        let next = json!({"index": index, "token": {"id": token, "text": piece, "logprob": null, "special": false}, "generated_text": null, "details": null});
                        if let Some(previous) = held.replace(next) {
                            let _ = events.send(Ok(SseEvent::default().data(previous.to_string())));
                        }
                    }
                }
                Message::Done(Ok(outputs)) => {
                    app.metrics.tokens(generated_tokens(&outputs));
                    let output = &outputs[0];
                    let mut last = held.take().unwrap_or_else(
                        || json!({"index": index + 1, "token": {"id": null, "text": "", "logprob": null, "special": true}}),
                    );
                    last["generated_text"] = json!(output.sequences[0].text);
                    last["details"] = details(output);
                    let _ = events.send(Ok(SseEvent::default().data(last.to_string())));
                    app.metrics.stream_done(started.elapsed());
                    guard.answered();
                    return;
                }
                Message::Done(Err(e)) => {
                    if let Some(previous) = held.take() {
                        let _ = events.send(Ok(SseEvent::default().data(previous.to_string())));
                    }
                    let error = ApiError::from(e);
                    app.metrics.stream_failed(&error);
                    let _ = events.send(Ok(SseEvent::default().data(error.body().to_string())));
                    guard.answered();
                    return;
                }
            }
        }
    });
    Sse::new(UnboundedReceiverStream::new(rx)).keep_alive(KeepAlive::default()).into_response()
}
