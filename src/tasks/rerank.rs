//! Relevance of passages to a query by decoder scoring, with teacher forcing:
//! - likelihood: mean log p(query | template(passage)), unsupervised passage reranking (UPR);
//! - relevance: log p(yes) - log p(no) after template(query, passage), as monoT5.

use crate::error::{Error, Result};
use crate::generate::control::Limits;
use crate::generate::processors::log_prob;
use crate::generate::GenerationParams;
use crate::model::Model;
use crate::settings::Settings;
use crate::tasks::nonblank;

pub const LIKELIHOOD_TEMPLATE: &str = "Passage: {passage} Please write a question based on this passage.";
pub const RELEVANCE_TEMPLATE: &str = "Query: {query} Document: {passage} Relevant:";

/// One score per passage, in order; higher is more relevant.
pub fn rerank(model: &Model, query: &str, passages: &[&str], params: &Settings) -> Result<Vec<f32>> {
    rerank_with(model, query, passages, params, &Limits::default())
}

/// As [`rerank`], the call's limits (cancel, deadline) checked before every batch.
pub fn rerank_with(model: &Model, query: &str, passages: &[&str], params: &Settings, limits: &Limits) -> Result<Vec<f32>> {
    limits.within(|| rerank_limited(model, query, passages, params, limits))
}

fn rerank_limited(model: &Model, query: &str, passages: &[&str], params: &Settings, limits: &Limits) -> Result<Vec<f32>> {
    nonblank(query, "the query")?;
    for (i, p) in passages.iter().enumerate() {
        nonblank(p, &format!("passage {i}"))?;
    }
    model.decoder()?;
    let gen = GenerationParams::resolve(&model.config.generation, params, model.vocab_size())?;
    let task = crate::tasks::TaskSettings::parse(params);
    let relevance = task.rerank_mode == crate::tasks::RerankMode::Relevance;
    let model_default = if relevance { None } else { model.config.rerank_template.as_deref() };
    let template =
        task.rerank_template.as_deref().or(model_default).unwrap_or(if relevance { RELEVANCE_TEMPLATE } else { LIKELIHOOD_TEMPLATE });
    let limit = gen.max_input_tokens.or(model.config.max_input_tokens);
    let batch = task.batch_size;

    let targets = if relevance {
        task.relevance_tokens.iter().map(|w| first_token(model, w)).collect::<Result<Vec<_>>>()?
    } else {
        model.tokenizer.encode(query, None, false, 0)?.ids
    };
    if targets.is_empty() {
        return Err(Error::invalid_param("query", "it encodes to no token"));
    }
    let mut scores = Vec::with_capacity(passages.len());
    for (b, group) in passages.chunks(batch).enumerate() {
        limits.check()?;
        let inputs = group
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let text = template.replace("{query}", query).replace("{passage}", p);
                Ok(model.tokenizer.encode(&text, limit, gen.truncate_input, b * batch + i)?.ids)
            })
            .collect::<Result<Vec<_>>>()?;
        let longest = inputs.iter().map(Vec::len).max().unwrap_or(0);
        crate::generate::budget::check_encoder_budget(model, inputs.len(), longest, if relevance { 1 } else { targets.len() }, "rerank")?;
        let encoder = model.encoder.run(&inputs, gen.pad_token_id)?;
        let steps = if relevance { 1 } else { targets.len() };
        let decoder_input: Vec<u32> = std::iter::once(gen.decoder_start_token_id).chain(targets[..steps - 1].iter().copied()).collect();
        let logits = model.decoder()?.teacher_forced(&decoder_input, &encoder)?;
        let mut totals = vec![0f64; inputs.len()];
        for (r, total) in totals.iter_mut().enumerate() {
            for step in 0..steps {
                let row = logits.row(r * steps + step);
                *total += if relevance {
                    (log_prob(row, targets[0] as usize) - log_prob(row, targets[1] as usize)) as f64
                } else {
                    log_prob(row, targets[step] as usize) as f64
                };
            }
        }
        scores.extend(totals.into_iter().map(|t| (t / steps as f64) as f32));
    }
    Ok(scores)
}

fn first_token(model: &Model, word: &str) -> Result<u32> {
    let ids = model.tokenizer.encode_plain(word)?;
    ids.first().copied().ok_or_else(|| Error::invalid_param("relevance_tokens", format!("`{word}` encodes to no token")))
}
