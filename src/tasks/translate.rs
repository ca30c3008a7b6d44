//! Translation into a named language: the model family's way of naming it (a forced first token
//! and a source token for NLLB-200, M2M100 and mBART; a `>>fra<<` token before the text for
//! multilingual Marian; a task prefix for T5; nothing for a one-pair model), and documents of any
//! length split on lines and sentences, translated in batches, in order.

use crate::error::{Error, Result};
use crate::generate::{Engine, FinishReason, Flow, GenerationParams, Observer};
use crate::model::languages::{LanguageCode, Languages, SourceTokenPlace, TargetTokenPlace};
use crate::model::Model;
use crate::settings::Settings;
use crate::tasks::chunking::encoded_chunks;
use crate::tasks::language_match::{bare, match_code, same_code};
use crate::tasks::summarize::StepProgress;
use crate::tasks::{nonblank, with_progress, Progress, TaskSettings};
use crate::text::Encoded;

/// Most tokens of source text per chunk unless `chunk_tokens` says otherwise: translation models
/// are trained on sentences, and quality falls on long inputs.
const DEFAULT_CHUNK_TOKENS: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct TranslationOutput {
    pub text: String,
    /// The model's codes for the two languages; `None` where the model has no name for it (the
    /// source of a multilingual Marian model, which it recognizes itself).
    pub source_language: Option<String>,
    pub target_language: Option<String>,
    /// Chunks translated (1 for a sentence).
    pub chunks: usize,
    /// `Length` when some chunk's translation reached `max_new_tokens`; `Cancelled` when the
    /// progress callback stopped it (the text then holds the chunks done, in order).
    pub finish_reason: FinishReason,
}

/// How a call names its languages to the model, resolved once per call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Direction {
    /// Text before each chunk (`>>fra<< `, `translate English to German: `).
    pub text_prefix: String,
    /// The source-language token and where it goes.
    pub source_token: Option<(u32, SourceTokenPlace)>,
    /// Every language token id of the model (to find one the tokenizer put in the encoding).
    pub code_ids: Vec<u32>,
    pub forced_first_token: Option<u32>,
    pub decoder_start_token: Option<u32>,
    pub source_language: Option<String>,
    pub target_language: Option<String>,
}

fn names(codes: &[LanguageCode]) -> Vec<&str> {
    codes.iter().map(|c| c.code.as_str()).collect()
}

fn required<'a>(to: Option<&'a str>, known: &[&str]) -> Result<&'a str> {
    to.ok_or_else(|| {
        Error::InvalidArgument(format!("this model translates into several languages: name the target (`to`), one of {}", known.join(", ")))
    })
}

/// Resolves `to` and `from` against what the model knows.
pub fn direction(model: &Model, to: Option<&str>, from: Option<&str>) -> Result<Direction> {
    let blank = |c: Option<&str>, what: &str| match c {
        Some(c) if c.trim().is_empty() => Err(Error::InvalidArgument(format!("the {what} language is empty"))),
        _ => Ok(()),
    };
    blank(to, "target")?;
    blank(from, "source")?;
    match &model.languages {
        Languages::Tokens { codes, source, target, default_source } => {
            let known = names(codes);
            let to = &codes[match_code(required(to, &known)?, &known, "target")?];
            let from = match from {
                Some(f) => Some(&codes[match_code(f, &known, "source")?]),
                None => default_source.as_deref().and_then(|d| codes.iter().find(|c| c.code == d)),
            };
            let id = |c: &LanguageCode| c.token_id.ok_or_else(|| Error::Internal(format!("language code {} has no token", c.code)));
            let target_id = id(to)?;
            Ok(Direction {
                source_token: from.map(id).transpose()?.map(|i| (i, *source)),
                code_ids: codes.iter().filter_map(|c| c.token_id).collect(),
                forced_first_token: (*target == TargetTokenPlace::ForcedFirst).then_some(target_id),
                decoder_start_token: (*target == TargetTokenPlace::DecoderStart).then_some(target_id),
                source_language: from.map(|c| c.code.clone()),
                target_language: Some(to.code.clone()),
                ..Default::default()
            })
        }
        Languages::TargetToken { codes } => {
            let known = names(codes);
            let to = &codes[match_code(required(to, &known)?, &known, "target")?];
            Ok(Direction { text_prefix: format!("{} ", to.code), target_language: Some(bare(&to.code).to_string()), ..Default::default() })
        }
        Languages::Pair { source, target } => {
            // A group (`mul`, `ROMANCE`) names no one language to hold a caller to.
            let group = |o: &str| o == "mul" || o.chars().any(|c| c.is_ascii_uppercase());
            let check = |asked: Option<&str>, own: &Option<String>, what: &str| match (asked, own) {
                (Some(a), Some(o)) if !group(o) && !same_code(a, o) => Err(Error::UnknownLanguage {
                    code: a.to_string(),
                    reason: format!(
                        "this model translates one pair, {} to {}; its {what} language is {o}",
                        source.as_deref().unwrap_or("?"),
                        target.as_deref().unwrap_or("?")
                    ),
                }),
                _ => Ok(()),
            };
            check(to, target, "target")?;
            check(from, source, "source")?;
            Ok(Direction {
                source_language: source.clone().or(from.map(str::to_string)),
                target_language: target.clone().or(to.map(str::to_string)),
                ..Default::default()
            })
        }
        Languages::TaskPrefixes(pairs) => {
            let mut targets: Vec<&str> = pairs.iter().map(|p| p.target.as_str()).collect();
            targets.sort_unstable();
            targets.dedup();
            let mut fitting: Vec<usize> = (0..pairs.len()).collect();
            if pairs.len() > 1 || to.is_some() {
                let to = required(to, &targets)?;
                match_code(to, &targets, "target")?;
                fitting.retain(|&i| same_code(to, &pairs[i].target));
            }
            if let Some(from) = from {
                let mut sources: Vec<&str> = fitting.iter().map(|&i| pairs[i].source.as_str()).collect();
                sources.sort_unstable();
                sources.dedup();
                match_code(from, &sources, "source")?;
                fitting.retain(|&i| same_code(from, &pairs[i].source));
            }
            let [i] = fitting[..] else {
                let options: Vec<String> = fitting.iter().map(|&i| format!("{} to {}", pairs[i].source, pairs[i].target)).collect();
                return Err(Error::InvalidArgument(format!("several pairs fit; name the source (`from`): {}", options.join(", "))));
            };
            let p = &pairs[i];
            Ok(Direction {
                text_prefix: p.prefix.clone(),
                source_language: Some(p.source.clone()),
                target_language: Some(p.target.clone()),
                ..Default::default()
            })
        }
        Languages::None => Err(Error::Unsupported(format!(
            "this `{}` model does not translate: its tokenizer has no language codes, its tokenizer_config.json names no language pair and its config.json no translation prefix",
            model.config.model_type
        ))),
    }
}

/// The encoder input for one chunk: the prefix, the text, and the source-language token in its
/// place (replacing the one the tokenizer put there, as transformers' `src_lang` does).
pub fn encode_chunk(model: &Model, direction: &Direction, text: &str, limit: Option<usize>, index: usize) -> Result<Encoded> {
    let mut e = model.tokenizer.encode(&format!("{}{text}", direction.text_prefix), None, false, index)?;
    if let Some((id, place)) = direction.source_token {
        // The tokenizer's template may put a code at either end (a tokenizer.json saved under
        // the other `legacy_behaviour`): both go, and the source token takes its configured place.
        let is_code = |t: Option<&u32>| t.is_some_and(|t| direction.code_ids.contains(t));
        if is_code(e.ids.first()) {
            e.ids.remove(0);
        }
        if is_code(e.ids.last()) {
            e.ids.pop();
        }
        match place {
            SourceTokenPlace::First => e.ids.insert(0, id),
            SourceTokenPlace::Last => e.ids.push(id),
        }
    }
    e.original_len = e.ids.len();
    match limit {
        Some(limit) if e.ids.len() > limit => Err(Error::InputTooLong { index, tokens: e.ids.len(), limit }),
        _ => Ok(e),
    }
}

/// Generation settings for translating: the model's own, the caller's, and the language tokens.
pub fn translation_params(model: &Model, direction: &Direction, params: &Settings) -> Result<GenerationParams> {
    for (key, token) in [("forced_bos_token_id", direction.forced_first_token), ("decoder_start_token_id", direction.decoder_start_token)] {
        if token.is_some() && params.is_set(key) {
            return Err(Error::invalid_param(key, "translate sets it from the target language; leave it out"));
        }
    }
    model.decoder()?;
    let mut gen = GenerationParams::resolve(&model.config.generation, params, model.vocab_size())?;
    if gen.num_return_sequences > 1 {
        return Err(Error::invalid_param("num_return_sequences", "translate returns one translation per text; use generate for several"));
    }
    if let Some(t) = direction.forced_first_token {
        gen.forced_bos_token_id = Some(t);
        // A caller's decoder prefix follows the target language's token, which it would displace.
        if !gen.decoder_prefix.is_empty() {
            gen.decoder_prefix.insert(0, t);
        }
    }
    if let Some(t) = direction.decoder_start_token {
        gen.decoder_start_token_id = t;
    }
    Ok(gen)
}

/// A line's chunks, or a blank line kept as it was.
enum Line {
    Chunks(std::ops::Range<usize>),
    Blank,
}

/// Translates `text` into `to` (from `from`, where the model takes a source), through `engine`
/// (a [`Model`], or its scheduler). Lines stay lines; a line over the chunk budget is split on
/// sentences. `progress` hears (chunks done, chunks, 1) after each batch and at every decoding
/// step, and may cancel; `observer` hears every step and the pieces of each batch (its `input`
/// counts within the batch), for deadlines and cancellation.
pub fn translate<E: Engine + ?Sized>(
    engine: &E,
    text: &str,
    (to, from): (Option<&str>, Option<&str>),
    params: &Settings,
    progress: Option<&mut dyn FnMut(Progress) -> Flow>,
    observer: Option<&mut dyn Observer>,
) -> Result<TranslationOutput> {
    with_progress(progress, |progress| translate_with(engine, text, (to, from), params, progress, observer))
}

fn translate_with<E: Engine + ?Sized>(
    engine: &E,
    text: &str,
    (to, from): (Option<&str>, Option<&str>),
    params: &Settings,
    progress: &mut dyn FnMut(Progress) -> Flow,
    mut observer: Option<&mut dyn Observer>,
) -> Result<TranslationOutput> {
    let model = engine.model();
    nonblank(text, "text")?;
    let direction = direction(model, to, from)?;
    let gen = translation_params(model, &direction, params)?;
    let task = TaskSettings::parse(params);
    let limit = gen.max_input_tokens.or(model.config.max_input_tokens).unwrap_or(512);
    let overhead = encode_chunk(model, &direction, "", None, 0)?.ids.len();
    let budget = task.chunk_tokens.unwrap_or(DEFAULT_CHUNK_TOKENS).min(limit).saturating_sub(overhead);
    if budget < 4 {
        return Err(Error::InvalidArgument(format!(
            "the model's {overhead} special and prefix tokens leave {budget} of {limit} for the text"
        )));
    }
    let (lines, inputs) = plan(model, &direction, text, limit, budget)?;
    if inputs.len() > 1 {
        if let Some(key) = ["decoder_prefix", "forced_decoder_ids"].into_iter().find(|k| params.is_set(k)) {
            return Err(Error::invalid_param(
                key,
                format!("a decoder prefix starts one translation, and this text is {} chunks (lines, or chunk_tokens); translate the part it starts alone", inputs.len()),
            ));
        }
    }
    let caller_sets_length = task.sets_max_length;
    let total = inputs.len();
    let mut parts: Vec<String> = Vec::with_capacity(total);
    let mut finish_reason = FinishReason::Eos;
    for (b, batch) in inputs.chunks(task.batch_size).enumerate() {
        let mut batch_params = gen.clone();
        if !caller_sets_length {
            let longest = batch.iter().map(|e| e.ids.len()).max().unwrap_or(0);
            batch_params.max_new_tokens = 2 * longest + 10;
        }
        let done_before = b * task.batch_size;
        let at = Progress { done: done_before, total, level: 1 };
        let mut step = StepProgress::new(&mut *progress, at, observer.as_mut().map(|o| &mut **o as &mut dyn Observer));
        let out = engine.generate_encoded(batch, &batch_params, Some(&mut step))?;
        // A cancelled batch keeps its chunks up to the first one cut short (that one's text so
        // far included): the text stays a prefix of the document's translation.
        let mut cancelled = false;
        for o in &out {
            match o.finish_reason() {
                FinishReason::Length => finish_reason = FinishReason::Length,
                FinishReason::Cancelled => cancelled = true,
                _ => {}
            }
            parts.push(o.sequences[0].text.trim().to_string());
            if cancelled {
                break;
            }
        }
        let done = done_before + batch.len();
        let stop = progress(Progress { done, total, level: 1 }) == Flow::Stop;
        if cancelled || (stop && done < total) {
            finish_reason = FinishReason::Cancelled;
            break;
        }
    }
    let joiner = if direction.target_language.as_deref().is_some_and(writes_without_spaces) { "" } else { " " };
    let text = lines
        .iter()
        .map(|l| match l {
            Line::Chunks(r) => {
                let done = parts.get(r.start.min(parts.len())..r.end.min(parts.len())).unwrap_or_default();
                done.iter().filter(|p| !p.is_empty()).map(String::as_str).collect::<Vec<_>>().join(joiner)
            }
            Line::Blank => String::new(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(TranslationOutput {
        text: text.trim_end().to_string(),
        source_language: direction.source_language,
        target_language: direction.target_language,
        chunks: total,
        finish_reason,
    })
}

/// Lines of `text` and the encoded chunks of each, fitting `limit`.
fn plan(model: &Model, direction: &Direction, text: &str, limit: usize, budget: usize) -> Result<(Vec<Line>, Vec<Encoded>)> {
    let mut lines = Vec::new();
    let mut inputs: Vec<Encoded> = Vec::new();
    for line in text.trim().lines() {
        if line.trim().is_empty() {
            lines.push(Line::Blank);
            continue;
        }
        let start = inputs.len();
        inputs.extend(encoded_chunks(&model.tokenizer, line, (limit, budget, 0), |chunk| {
            encode_chunk(model, direction, chunk, Some(limit), start)
        })?);
        lines.push(Line::Chunks(start..inputs.len()));
    }
    Ok((lines, inputs))
}

/// Scripts written without spaces between words or sentences (chunks join without one).
fn writes_without_spaces(code: &str) -> bool {
    let (lang, _) = bare(code).split_once(['_', '-']).unwrap_or((bare(code), ""));
    ["zh", "zho", "ja", "jpn", "th", "tha", "my", "mya", "km", "khm", "lo", "lao", "yue"].contains(&lang.to_ascii_lowercase().as_str())
}
