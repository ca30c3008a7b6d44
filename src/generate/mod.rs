//! The generation engine: one entry point, greedy / sampling / beam search over the model's
//! graphs, logits processors as composable pieces, streaming through an observer.

mod beam;
mod best_continuations;
pub mod budget;
pub mod control;
mod engine;
mod generation;
mod greedy;
mod normalizer;
pub mod output;
pub mod params;
pub mod processors;
pub mod scheduler;
pub mod scoring;
mod search;

pub use crate::model::GENERATION_SPECS;
pub use engine::Engine;
pub use generation::Generation;
pub use output::{FinishReason, Flow, GenerationOutput, Observer, Sequence};
pub use params::{EarlyStopping, GenerationParams};
pub use scheduler::{Message, MessageSink, Scheduler, SchedulerLoad, SchedulerOptions, SchedulerStats, Stopper, Ticket};
pub use search::Event;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::settings::Settings;
use crate::text::Encoded;

/// Generates for a batch of texts; `settings` are the caller's, over the model's defaults.
pub fn generate(model: &Model, texts: &[&str], settings: &Settings, observer: Option<&mut dyn Observer>) -> Result<Vec<GenerationOutput>> {
    let params = resolve_params(model, settings)?;
    generate_encoded(model, &encode_inputs(model, texts, &params)?, &params, observer)
}

/// The texts tokenized as `params` say (input limit, truncation).
pub fn encode_inputs(model: &Model, texts: &[&str], params: &GenerationParams) -> Result<Vec<Encoded>> {
    let limit = params.max_input_tokens.or(model.config.max_input_tokens);
    texts.iter().enumerate().map(|(i, t)| model.tokenizer.encode(t, limit, params.truncate_input, i)).collect()
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

/// Generates for inputs already tokenized (special tokens included): a loop over
/// [`Generation::step`] that tells `observer` what each step decided.
pub fn generate_encoded(
    model: &Model,
    inputs: &[Encoded],
    params: &GenerationParams,
    observer: Option<&mut dyn Observer>,
) -> Result<Vec<GenerationOutput>> {
    let mut silent = output::Silent;
    let observer = observer.unwrap_or(&mut silent);
    let mut generation = Generation::new(model, inputs, params)?;
    'steps: while !generation.is_done() {
        if observer.on_step() == Flow::Stop {
            break;
        }
        for event in generation.step()? {
            if let Event::Text { input, piece, token } = event {
                if observer.on_text(input, &piece, token) == Flow::Stop {
                    break 'steps;
                }
            }
        }
    }
    generation.into_outputs()
}
