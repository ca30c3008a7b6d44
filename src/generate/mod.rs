//! The generation engine: one entry point, greedy / sampling / beam search over the model's
//! graphs, logits processors as composable pieces, streaming through an observer.

mod batcher;
mod beam;
pub mod control;
pub mod output;
pub mod params;
pub mod processors;
pub mod scoring;
mod search;

pub use batcher::Batcher;
pub use output::{FinishReason, Flow, GenerationOutput, Observer, Sequence};
pub use params::{new_generation_settings, EarlyStopping, GenerationParams, GENERATION_SPECS};

use crate::error::{Error, Result};
use crate::model::Model;
use crate::settings::Settings;
use crate::text::{Encoded, StopMatcher};

/// Everything a search strategy works with.
pub(crate) struct Request<'a> {
    pub model: &'a Model,
    pub params: &'a GenerationParams,
    pub pipeline: processors::Pipeline,
    pub stops: StopMatcher,
    pub observer: &'a mut dyn Observer,
}

/// Generates for a batch of texts; `settings` are the caller's, over the model's defaults.
pub fn generate(model: &Model, texts: &[&str], settings: &Settings, observer: Option<&mut dyn Observer>) -> Result<Vec<GenerationOutput>> {
    let params = resolve_params(model, settings)?;
    let limit = params.max_input_tokens.or(model.config.max_input_tokens);
    let encoded =
        texts.iter().enumerate().map(|(i, t)| model.tokenizer.encode(t, limit, params.truncate_input, i)).collect::<Result<Vec<_>>>()?;
    match (model.batcher(), observer) {
        (Some(batcher), None) if !params.do_sample => batcher.run(model, &encoded, &params),
        (_, observer) => generate_encoded(model, &encoded, &params, observer),
    }
}

/// Every token is forbidden (suppress_tokens, bad_words_ids, forced tokens together): there is
/// nothing to generate, which is the caller's error, not an empty success.
pub(crate) fn nothing_to_generate(input: usize, step: usize) -> Error {
    Error::InvalidArgument(format!(
        "input {input}: every token is forbidden at step {step} (suppress_tokens, bad_words_ids and the forced tokens leave nothing to generate)"
    ))
}

pub fn resolve_params(model: &Model, settings: &Settings) -> Result<GenerationParams> {
    model.decoder()?;
    GenerationParams::resolve(&model.config.generation, settings, model.vocab_size())
}

/// Generates for inputs already tokenized (special tokens included).
pub fn generate_encoded(
    model: &Model,
    inputs: &[Encoded],
    params: &GenerationParams,
    observer: Option<&mut dyn Observer>,
) -> Result<Vec<GenerationOutput>> {
    if inputs.is_empty() {
        return Err(Error::InvalidArgument("no inputs to generate for".into()));
    }
    if let Some((i, _)) = inputs.iter().enumerate().find(|(_, e)| e.ids.is_empty()) {
        return Err(Error::InvalidArgument(format!("input {i} encodes to no tokens")));
    }
    let mut silent = output::Silent;
    let mut request = Request {
        model,
        params,
        pipeline: processors::Pipeline::new(params),
        stops: StopMatcher::new(&params.stop_strings),
        observer: observer.unwrap_or(&mut silent),
    };
    let ids: Vec<Vec<u32>> = inputs.iter().map(|e| e.ids.clone()).collect();
    let encoder_output = model.encoder.run(&ids, params.pad_token_id)?;
    let sequences =
        if params.num_beams > 1 { beam::run(&mut request, encoder_output)? } else { search::run(&mut request, encoder_output)? };
    Ok(sequences
        .into_iter()
        .zip(inputs)
        .map(|(sequences, e)| GenerationOutput { sequences, input_tokens: e.ids.len(), input_truncated: e.truncated })
        .collect())
}

impl Request<'_> {
    /// Text of a finished sequence, cut before a stop string.
    pub(crate) fn final_text(&self, token_ids: &[u32]) -> Result<(String, bool)> {
        let text = self.model.tokenizer.decode(token_ids)?;
        Ok(match self.stops.find(&text) {
            Some(at) => (text[..at].to_string(), true),
            None => (text, false),
        })
    }

    pub(crate) fn is_eos(&self, token: u32) -> bool {
        self.params.is_eos(token)
    }
}
