//! `POST /summarize`, `POST /embed` and `POST /rerank` (text-embeddings-inference's shapes), and
//! `POST /translate`. Each runs on a blocking thread under the server's task gate; summaries and
//! translations generate through the scheduler, so concurrent ones share decoder runs (they share
//! the `--max-summaries` places).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use duet::generate::control::guarded;
use duet::tasks::embed::{embed_with, InputKind};
use duet::tasks::rerank::rerank_with;
use duet::tasks::{summarize as summarizing, translate as translating, Progress, RerankMode, TaskSettings};
use duet::Flow;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::request::{parse, settings, Inputs};
use super::state::App;
use crate::common::Cmd;

type Answer = Result<Json<Value>, ApiError>;

#[derive(Deserialize)]
pub struct SummarizeRequest {
    inputs: Inputs,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

pub async fn summarize(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Answer {
    app.admit()?;
    let request: SummarizeRequest = parse(body)?;
    app.check_inputs(request.inputs.texts().len())?;
    let mut settings = settings(Cmd::Summarize, "/summarize", request.parameters.as_ref())?;
    let (limits, guard) = app.limits(&mut settings)?;
    let scheduler = app.scheduler.clone();
    let one = request.inputs.is_one();
    let texts: Vec<String> = request.inputs.texts().into_iter().map(str::to_string).collect();
    let answers = app
        .summaries
        .run(move || {
            let mut answers = Vec::with_capacity(texts.len());
            for text in &texts {
                let mut on_progress = |_: Progress| if limits.check().is_err() { Flow::Stop } else { Flow::Continue };
                let s = guarded(&limits, None, |obs| summarizing::summarize(&*scheduler, text, &settings, Some(&mut on_progress), obs))?;
                limits.check()?;
                answers.push(json!({"summary_text": s.text, "chunks": s.chunks, "levels": s.levels, "summaries": s.summaries, "finish_reason": s.finish_reason.as_str()}));
            }
            Ok(answers)
        })
        .await;
    guard.answered();
    let answers = answers?;
    Ok(Json(if one { answers.into_iter().next().unwrap_or(Value::Null) } else { Value::Array(answers) }))
}

#[derive(Deserialize)]
pub struct EmbedRequest {
    inputs: Inputs,
    /// Unit-length vectors (text-embeddings-inference's default); unset: as the model says.
    #[serde(default)]
    normalize: Option<bool>,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

pub async fn embed(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Answer {
    app.admit()?;
    let request: EmbedRequest = parse(body)?;
    app.check_inputs(request.inputs.texts().len())?;
    let mut settings = settings(Cmd::Embed, "/embed", request.parameters.as_ref())?;
    if let Some(truncate) = request.truncate {
        settings.set_bool("truncate_input", truncate)?;
    }
    if request.normalize == Some(false) && app.model.embedding.normalize {
        return Err(ApiError::bad_request(
            "`normalize: false` is not available: this model's pooling config normalizes its vectors (see GET /info, embedding.normalize)",
        ));
    }
    let renormalize = request.normalize == Some(true) && !app.model.embedding.normalize;
    let (limits, guard) = app.limits(&mut settings)?;
    let model = app.model.clone();
    let texts: Vec<String> = request.inputs.texts().into_iter().map(str::to_string).collect();
    let vectors = app
        .tasks
        .run(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let mut vectors = embed_with(&model, &refs, &settings, InputKind::from_params(&settings), &limits)?.vectors;
            if renormalize {
                for v in &mut vectors {
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    v.iter_mut().for_each(|x| *x /= norm);
                }
            }
            Ok(vectors)
        })
        .await;
    guard.answered();
    let vectors = vectors?;
    Ok(Json(json!(vectors)))
}

#[derive(Deserialize)]
pub struct RerankRequest {
    query: String,
    texts: Vec<String>,
    /// The model's own scores (mean log-probability, or the log-odds of relevance) instead of
    /// probabilities in [0, 1].
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    return_text: bool,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// Scores by decoder likelihood: `[{"index", "score"}]`, best first. Not raw, a likelihood score
/// is the geometric mean of the query tokens' probabilities, a relevance score p(yes) over
/// p(yes) + p(no).
pub async fn rerank(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Answer {
    app.admit()?;
    let request: RerankRequest = parse(body)?;
    app.check_inputs(request.texts.len())?;
    let mut settings = settings(Cmd::Rerank, "/rerank", request.parameters.as_ref())?;
    if let Some(truncate) = request.truncate {
        settings.set_bool("truncate_input", truncate)?;
    }
    let relevance = TaskSettings::parse(&settings).rerank_mode == RerankMode::Relevance;
    let (limits, guard) = app.limits(&mut settings)?;
    let model = app.model.clone();
    let (query, texts) = (request.query.clone(), request.texts.clone());
    let scores = app
        .tasks
        .run(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            Ok(rerank_with(&model, &query, &refs, &settings, &limits)?)
        })
        .await;
    guard.answered();
    let scores = scores?;
    let mut ranked: Vec<(usize, f32)> = scores.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let answers: Vec<Value> = ranked
        .into_iter()
        .map(|(index, raw)| {
            let score = match (request.raw_scores, relevance) {
                (true, _) => raw,
                (false, false) => raw.exp(),
                (false, true) => 1.0 / (1.0 + (-raw).exp()),
            };
            let mut v = json!({"index": index, "score": score});
            if request.return_text {
                v["text"] = json!(request.texts[index]);
            }
            v
        })
        .collect();
    Ok(Json(Value::Array(answers)))
}

#[derive(Deserialize)]
pub struct TranslateRequest {
    inputs: Inputs,
    /// The target language; `parameters.tgt_lang` (the Hugging Face Inference API's name) also works.
    #[serde(default)]
    to: Option<String>,
    /// The source language; or `parameters.src_lang`.
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// Takes a language out of `parameters` under the Inference API's name.
fn language_param(parameters: &mut Option<Map<String, Value>>, key: &str) -> Result<Option<String>, ApiError> {
    match parameters.as_mut().and_then(|p| p.remove(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::bad_request(format!("`parameters.{key}` must be a string, not {other}"))),
    }
}

pub async fn translate(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Answer {
    app.admit()?;
    let mut request: TranslateRequest = parse(body)?;
    app.check_inputs(request.inputs.texts().len())?;
    let tgt_lang = language_param(&mut request.parameters, "tgt_lang")?;
    let src_lang = language_param(&mut request.parameters, "src_lang")?;
    let either = |a: Option<String>, b: Option<String>, what: &str| match (a, b) {
        (Some(a), Some(b)) if a != b => Err(ApiError::bad_request(format!("two different {what} languages: `{a}` and `{b}`"))),
        (a, b) => Ok(a.or(b)),
    };
    let to = either(request.to.take(), tgt_lang, "target")?;
    let from = either(request.from.take(), src_lang, "source")?;
    let mut settings = settings(Cmd::Translate, "/translate", request.parameters.as_ref())?;
    let (limits, guard) = app.limits(&mut settings)?;
    let scheduler = app.scheduler.clone();
    let one = request.inputs.is_one();
    let texts: Vec<String> = request.inputs.texts().into_iter().map(str::to_string).collect();
    let answers = app
        .summaries
        .run(move || {
            let mut answers = Vec::with_capacity(texts.len());
            for text in &texts {
                let mut on_progress = |_: Progress| if limits.check().is_err() { Flow::Stop } else { Flow::Continue };
                let t = guarded(&limits, None, |obs| {
                    translating::translate(&*scheduler, text, (to.as_deref(), from.as_deref()), &settings, Some(&mut on_progress), obs)
                })?;
                limits.check()?;
                answers.push(json!({"translation_text": t.text, "to": t.target_language, "from": t.source_language,
                                    "chunks": t.chunks, "finish_reason": t.finish_reason.as_str()}));
            }
            Ok(answers)
        })
        .await;
    guard.answered();
    let answers = answers?;
    Ok(Json(if one { answers.into_iter().next().unwrap_or(Value::Null) } else { Value::Array(answers) }))
}
