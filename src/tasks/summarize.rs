//! Summaries of documents of any length: a prompt in the model family's style, and map-reduce
//! over sentence-aligned chunks when the document exceeds the encoder's input limit.

use crate::error::{Error, Result};
use crate::generate::{Engine, FinishReason, Flow, GenerationParams, Observer};
use crate::model::Model;
use crate::settings::Settings;
use crate::tasks::chunking::{count_tokens, encoded_chunks};
use crate::tasks::{nonblank, with_progress, Progress};
use crate::tasks::{SummaryLength, TaskSettings};
use crate::text::Encoded;

/// Levels of map-reduce after which a document that still does not fit is an error.
const MAX_LEVELS: usize = 40;

#[derive(Debug, Clone, PartialEq)]
pub struct SummaryOutput {
    pub text: String,
    /// Chunks the document was split into (1 when it fit whole).
    pub chunks: usize,
    /// Generation passes over the text: 1 when it fit, 2 for one map and one final reduce, ...
    pub levels: usize,
    /// Inputs summarized over all levels.
    pub summaries: usize,
    pub finish_reason: FinishReason,
}

/// The encoder input around `{text}`: the caller's template, else the model's summarization
/// prefix from config.json (T5's "summarize: "), else the text alone (BART style).
pub fn prompt_template(model: &Model, params: &Settings) -> String {
    TaskSettings::parse(params)
        .prompt_template
        .unwrap_or_else(|| format!("{}{{text}}", model.config.summarization_prefix.as_deref().unwrap_or("")))
}

/// Beam search with n-gram blocking, and a length preset, under the model's own
/// generation_config.json and the caller's settings.
pub fn summary_params(model: &Model, params: &Settings) -> Result<GenerationParams> {
    let mut defaults = crate::tasks::new_generation_settings();
    defaults.set_int("num_beams", 4)?;
    defaults.set_int("no_repeat_ngram_size", 3)?;
    defaults.set_bool("early_stopping", true)?;
    let task = TaskSettings::parse(params);
    let (max_new, min_new) = match task.summary_length {
        SummaryLength::Short => (48, 8),
        SummaryLength::Long => (256, 64),
        SummaryLength::Medium => (128, 24),
    };
    let mut caller = params.clone();
    let model_sets_length = ["max_length", "max_new_tokens"].iter().any(|k| model.config.generation.is_set(k));
    let preset_layer = if task.summary_length_set || !model_sets_length { &mut caller } else { &mut defaults };
    if !task.sets_max_length {
        preset_layer.set_int("max_new_tokens", max_new)?;
    }
    if !task.sets_min_length {
        preset_layer.set_int("min_new_tokens", min_new)?;
    }
    model.decoder()?;
    GenerationParams::resolve(&defaults.overlaid(&model.config.generation), &caller, model.vocab_size())
}

/// Summarizes `text`, generating through `engine` (a [`Model`], or its scheduler so that
/// concurrent calls share decoder runs). `progress` hears (done, total, level) after each batch
/// of chunks and at every decoding step, and may cancel; `observer` streams the final summary.
pub fn summarize<E: Engine + ?Sized>(
    engine: &E,
    text: &str,
    params: &Settings,
    progress: Option<&mut dyn FnMut(Progress) -> Flow>,
    observer: Option<&mut dyn Observer>,
) -> Result<SummaryOutput> {
    with_progress(progress, |progress| summarize_with(engine, text, params, progress, observer))
}

fn summarize_with<E: Engine + ?Sized>(
    engine: &E,
    text: &str,
    params: &Settings,
    progress: &mut dyn FnMut(Progress) -> Flow,
    mut observer: Option<&mut dyn Observer>,
) -> Result<SummaryOutput> {
    let model = engine.model();
    nonblank(text, "text")?;
    let template = prompt_template(model, params);
    let gen = summary_params(model, params)?;
    let limit = gen.max_input_tokens.or(model.config.max_input_tokens).unwrap_or(512);
    let overhead = model.tokenizer.encode(&template.replace("{text}", ""), None, false, 0)?.ids.len();
    let task = TaskSettings::parse(params);
    let budget = task.chunk_tokens.unwrap_or(limit).min(limit).saturating_sub(overhead);
    if budget < 8 {
        return Err(Error::InvalidArgument(format!("the prompt template leaves {budget} tokens of a {limit}-token input for the text")));
    }
    let overlap = task.chunk_overlap_tokens.min(budget / 2);
    let batch = task.batch_size;
    // Partial summaries must shrink the text, or reducing would never end. Greedy packing puts
    // more than `budget - overlap` new tokens in every two consecutive chunks, so a quarter of that
    // per summary at least halves the text at each level.
    let mut map_params = gen.clone();
    map_params.max_new_tokens = map_params.max_new_tokens.min((budget - overlap) / 4).max(1);
    map_params.min_new_tokens = map_params.min_new_tokens.min(map_params.max_new_tokens);

    let mut current = text.trim().to_string();
    let mut first_level_chunks = None;
    let mut summaries = 0;
    for level in 1..=MAX_LEVELS {
        let whole = model.tokenizer.encode(&template.replace("{text}", &current), Some(limit), false, 0);
        if let Ok(encoded) = whole {
            let mut step = StepProgress { progress: &mut *progress, at: Progress { done: 0, total: 1, level }, inner: observer.take() };
            let out = engine.generate_encoded(&[encoded], &gen, Some(&mut step))?;
            progress(Progress { done: 1, total: 1, level });
            let seq = &out[0].sequences[0];
            return Ok(SummaryOutput {
                text: seq.text.trim().to_string(),
                chunks: first_level_chunks.unwrap_or(1),
                levels: level,
                summaries: summaries + 1,
                finish_reason: seq.finish_reason,
            });
        }
        let prompts = chunk_prompts(model, &template, &current, limit, budget, overlap)?;
        first_level_chunks.get_or_insert(prompts.len());
        let mut parts = Vec::with_capacity(prompts.len());
        let total = prompts.len();
        for (b, inputs) in prompts.chunks(batch).enumerate() {
            let at = Progress { done: b * batch, total, level };
            let mut step = StepProgress { progress: &mut *progress, at, inner: None };
            let out = engine.generate_encoded(inputs, &map_params, Some(&mut step))?;
            if out.iter().any(|o| o.finish_reason() == FinishReason::Cancelled) {
                return Ok(cancelled(parts, first_level_chunks, level, summaries));
            }
            summaries += out.len();
            parts.extend(out.into_iter().map(|o| o.sequences[0].text.trim().to_string()));
            let done = Progress { done: (b * batch + inputs.len()).min(total), total, level };
            if progress(done) == Flow::Stop {
                return Ok(cancelled(parts, first_level_chunks, level, summaries));
            }
        }
        let next = parts.join("\n");
        if count_tokens(&model.tokenizer, &next)? >= count_tokens(&model.tokenizer, &current)? {
            return Err(Error::Internal(format!("level {level}: the partial summaries are no shorter than the text")));
        }
        current = next;
    }
    Err(Error::InvalidArgument(format!("the text still does not fit after {MAX_LEVELS} levels of summaries")))
}

/// The encoded prompts of the chunks of `text`.
fn chunk_prompts(model: &Model, template: &str, text: &str, limit: usize, budget: usize, overlap: usize) -> Result<Vec<Encoded>> {
    encoded_chunks(&model.tokenizer, text, (limit, budget, overlap), |chunk| {
        model.tokenizer.encode(&template.replace("{text}", chunk), Some(limit), false, 0)
    })
}

fn cancelled(parts: Vec<String>, chunks: Option<usize>, level: usize, summaries: usize) -> SummaryOutput {
    SummaryOutput { text: parts.join("\n"), chunks: chunks.unwrap_or(1), levels: level, summaries, finish_reason: FinishReason::Cancelled }
}

/// Passes decoding steps to the progress callback (so it can cancel mid-chunk) and text to the
/// inner observer.
pub(crate) struct StepProgress<'p, 'o> {
    progress: &'p mut dyn FnMut(Progress) -> Flow,
    at: Progress,
    inner: Option<&'o mut dyn Observer>,
}

impl<'p, 'o> StepProgress<'p, 'o> {
    /// Reports `at` at every step, and passes steps and text to `inner`.
    pub(crate) fn new(progress: &'p mut dyn FnMut(Progress) -> Flow, at: Progress, inner: Option<&'o mut dyn Observer>) -> Self {
        Self { progress, at, inner }
    }
}

impl Observer for StepProgress<'_, '_> {
    fn on_text(&mut self, input: usize, piece: &str, token_id: Option<u32>) -> Flow {
        self.inner.as_mut().map_or(Flow::Continue, |o| o.on_text(input, piece, token_id))
    }

    fn on_step(&mut self) -> Flow {
        let at = self.at;
        let inner = self.inner.as_mut().map_or(Flow::Continue, |o| o.on_step());
        if inner == Flow::Stop {
            return Flow::Stop;
        }
        (self.progress)(at)
    }
}
