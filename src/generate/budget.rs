//! A generation request's worst-case memory, checked against the model's budget before the
//! request starts: a request that could not fit is refused with `Error::OverBudget` instead of
//! running into an allocation failure (which aborts the process) half-way.
//!
//! Per decoder row (inputs x beams, or x returned sequences when sampling): the self-attention
//! cache at full length (an in-place cache's buffers at the capacity that holds it), the
//! cross-attention cache (per input where beams share it) and encoder states over the longest
//! input, and the vocabulary work of a step (logits, log-probabilities, scores, candidates); twice
//! that, as a reorder or a merge of batches copies the caches. Plus the attention scores of one
//! encoder run (a part of the batch: `encoder_batch_tokens`).

use super::params::GenerationParams;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::text::Encoded;

/// The worst case of generating `params` for `inputs`, in bytes (saturating: an absurd request
/// is `u64::MAX`).
pub fn worst_case_bytes(model: &Model, inputs: &[Encoded], params: &GenerationParams) -> Result<u64> {
    let decoder = model.decoder()?;
    let cache = &decoder.cache;
    let width = (cache.heads as u64).saturating_mul(cache.head_dim as u64);
    let per_position = cache.bytes_per_position();
    let input_len = inputs.iter().map(|e| e.ids.len()).max().unwrap_or(0) as u64;
    let d_model = model.config.d_model.map_or(width, |d| d as u64);
    let steps = (params.max_new_tokens as u64).saturating_add(1).saturating_add(params.decoder_prefix.len() as u64);
    let cross = per_position.saturating_mul(input_len);
    let self_positions = decoder.self_cache_positions(usize::try_from(steps).unwrap_or(usize::MAX)) as u64;
    let per_row = per_position
        .saturating_mul(self_positions)
        .saturating_add(input_len.saturating_mul(d_model).saturating_mul(4))
        .saturating_add((model.vocab_size() as u64).saturating_mul(4 * 4))
        .saturating_add(steps.saturating_mul(8));
    let per_input = params.num_beams.max(if params.do_sample { params.num_return_sequences } else { 1 }).max(1) as u64;
    let rows = (inputs.len() as u64).saturating_mul(per_input);
    // Beams share one cross-attention row per input where the graph allows it; sampled rows do not.
    let cross_rows = if decoder.shares_cross_rows() && !params.do_sample { inputs.len() as u64 } else { rows };
    let encoder_rows = model.encoder.rows_per_run(inputs.len(), input_len as usize) as u64;
    let encoder = encoder_rows.saturating_mul(cache.heads as u64).saturating_mul(input_len.saturating_mul(input_len)).saturating_mul(4);
    Ok(rows.saturating_mul(per_row).saturating_add(cross_rows.saturating_mul(cross)).saturating_mul(2).saturating_add(encoder))
}

/// `worst_case_bytes`, refused when over the model's budget; otherwise the bytes.
pub fn check_budget(model: &Model, inputs: &[Encoded], params: &GenerationParams) -> Result<u64> {
    let bytes = worst_case_bytes(model, inputs, params)?;
    let budget = model.memory_budget();
    if bytes > budget {
        let rows = inputs.len() * params.num_beams.max(1);
        return Err(Error::OverBudget(format!(
            "this request could need {} at worst ({} input(s), {rows} decoder row(s), {} new tokens, inputs of up to {} tokens), over the model's memory budget of {} (the model option memory_budget_mb); ask for fewer inputs, beams or tokens, or raise the budget",
            human(bytes),
            inputs.len(),
            params.max_new_tokens,
            inputs.iter().map(|e| e.ids.len()).max().unwrap_or(0),
            human(budget)
        )));
    }
    Ok(bytes)
}

/// The worst case of one encoder run over `rows` inputs of up to `input_len` tokens (hidden
/// states, the intermediate activations, the attention scores), and `decoder_steps` of decoding
/// after it (rerank's teacher forcing: its cache and a step's logits); refused with
/// `Error::OverBudget` when over the model's budget, before anything is allocated.
pub fn check_encoder_budget(model: &Model, rows: usize, input_len: usize, decoder_steps: usize, call: &str) -> Result<u64> {
    let (rows, len) = (rows as u64, input_len as u64);
    let d_model = model.config.d_model.unwrap_or(1024) as u64;
    let heads = model.config.decoder_heads.unwrap_or(16) as u64;
    let states = rows.saturating_mul(len).saturating_mul(d_model).saturating_mul(4 * 8);
    let per_run = model.encoder.rows_per_run(rows as usize, input_len) as u64;
    let attention = per_run.saturating_mul(heads).saturating_mul(len.saturating_mul(len)).saturating_mul(4 * 2);
    let decoding = match model.decoder() {
        Ok(decoder) if decoder_steps > 0 => {
            let per_position = decoder.cache.bytes_per_position();
            let steps = decoder_steps as u64;
            rows.saturating_mul(
                per_position
                    .saturating_mul(steps.saturating_add(len))
                    .saturating_mul(2)
                    // rerank's teacher forcing returns every position's logits at once
                    .saturating_add((model.vocab_size() as u64).saturating_mul(4 * 2).saturating_mul(steps)),
            )
        }
        _ => 0,
    };
    let bytes = states.saturating_add(attention).saturating_add(decoding);
    let budget = model.memory_budget();
    if bytes > budget {
        return Err(Error::OverBudget(format!(
            "this {call} could need {} at worst ({rows} input(s) of up to {input_len} tokens at once{}), over the model's memory budget of {} (the model option memory_budget_mb); use a smaller batch_size or max_input_tokens, or raise the budget",
            human(bytes),
            if decoder_steps > 0 { format!(", {decoder_steps} decoding steps") } else { String::new() },
            human(budget)
        )));
    }
    Ok(bytes)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if bytes == u64::MAX {
        return "more than 16 EiB".into();
    }
    format!("{value:.1} {}", UNITS[unit])
}
