//! `config.json` and `generation_config.json`: what the model is and how it generates by default.

use std::path::Path;

use serde_json::Value as Json;

use super::generation_keys::GENERATION_SPECS;
use crate::error::{Error, Result};
use crate::settings::Settings;

/// The model families Optimum exports for `text2text-generation-with-past`.
pub const SUPPORTED_MODEL_TYPES: &[&str] =
    &["t5", "mt5", "umt5", "longt5", "bart", "mbart", "marian", "pegasus", "m2m_100", "blenderbot", "blenderbot-small", "nllb-moe"];

/// A position limit above this (2^24 tokens) is read as this: no input that long fits in memory,
/// and arithmetic on the limit stays far from overflow.
const MAX_POSITIONS: usize = 1 << 24;

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub model_type: String,
    pub vocab_size: usize,
    /// Heads and per-head width of decoder attention, when the graphs leave them symbolic.
    pub decoder_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub decoder_layers: Option<usize>,
    pub d_model: Option<usize>,
    /// Longest encoder input the model was built for (`max_position_embeddings`, `n_positions`).
    pub max_input_tokens: Option<usize>,
    /// `task_specific_params.summarization.prefix` ("summarize: " for T5).
    pub summarization_prefix: Option<String>,
    /// `task_specific_params.rerank.template`: the encoder input around `{passage}` that the model
    /// scores `log p(query | input)` on (likelihood reranking), when it was trained on another form
    /// than the generic question-writing prompt.
    pub rerank_template: Option<String>,
    /// `task_specific_params.translation_<source>_to_<target>.prefix` (T5): (source, target, prefix).
    pub translation_prefixes: Vec<(String, String, String)>,
    /// Generation defaults: `generation_config.json`, else the generation keys of `config.json`.
    pub generation: Settings,
}

/// T5's translation prompts: `translation_en_to_de` with prefix "translate English to German: ".
fn translation_prefixes(config: &Json) -> Vec<(String, String, String)> {
    let Some(tasks) = config.get("task_specific_params").and_then(Json::as_object) else { return Vec::new() };
    let mut out: Vec<_> = tasks
        .iter()
        .filter_map(|(task, v)| {
            let (source, target) = task.strip_prefix("translation_")?.split_once("_to_")?;
            let prefix = v.get("prefix").and_then(Json::as_str)?;
            (!source.is_empty() && !target.is_empty()).then(|| (source.to_string(), target.to_string(), prefix.to_string()))
        })
        .collect();
    out.sort();
    out
}

fn read_json(path: &Path) -> Result<Json> {
    use crate::files::{read_text_limited, FileProblem, CONFIG_LIMIT};
    let text = read_text_limited(path, CONFIG_LIMIT).map_err(|e| match e {
        FileProblem::Missing(_) => Error::ModelFileMissing { path: path.to_path_buf(), reason: e.to_string() },
        _ => Error::invalid_model(path, e.to_string()),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::invalid_model(path, format!("not valid JSON: {e}")))
}

fn usize_field(json: &Json, keys: &[&str]) -> Option<usize> {
    keys.iter().find_map(|k| json.get(*k).and_then(Json::as_u64)).map(|v| v as usize)
}

/// Copies the generation keys of a JSON object into settings, skipping unknown and null ones.
fn generation_settings(json: &Json, path: &Path) -> Result<Settings> {
    let mut s = Settings::new(GENERATION_SPECS);
    if let Some(obj) = json.as_object() {
        for spec in GENERATION_SPECS {
            if let Some(v) = obj.get(spec.key).filter(|v| !v.is_null()) {
                s.set_json(spec.key, v).map_err(|e| Error::invalid_model(path, format!("generation setting: {e}")))?;
            }
        }
    }
    Ok(s)
}

/// config.json: its path, its JSON and its `model_type`.
fn read_config(dir: &Path) -> Result<(std::path::PathBuf, Json, String)> {
    let config_path = dir.join("config.json");
    let config = read_json(&config_path)?;
    let model_type = config
        .get("model_type")
        .and_then(Json::as_str)
        .ok_or_else(|| Error::invalid_model(&config_path, "has no `model_type`"))?
        .to_string();
    Ok((config_path, config, model_type))
}

impl ModelConfig {
    /// An encoder-only (embedding) model's config.json: any `model_type`, a vocabulary, the
    /// position limit and the pad id; no generation settings.
    pub fn load_encoder_only(dir: &Path) -> Result<Self> {
        let (config_path, config, model_type) = read_config(dir)?;
        let vocab_size = usize_field(&config, &["vocab_size"]).ok_or_else(|| Error::invalid_model(&config_path, "has no `vocab_size`"))?;
        // RoBERTa's families count two positions for the padding offset (transformers: 514 → 512).
        let offset = if ["roberta", "xlm-roberta", "camembert", "longformer"].contains(&model_type.as_str()) { 2 } else { 0 };
        let max_input_tokens =
            usize_field(&config, &["max_position_embeddings", "n_positions"]).map(|m| m.saturating_sub(offset).min(MAX_POSITIONS));
        let mut generation = Settings::new(GENERATION_SPECS);
        if let Some(pad) = config.get("pad_token_id").and_then(Json::as_i64) {
            generation.set_int("pad_token_id", pad).map_err(|e| Error::invalid_model(&config_path, format!("pad_token_id: {e}")))?;
        }
        Ok(Self {
            model_type,
            vocab_size,
            decoder_heads: None,
            head_dim: None,
            decoder_layers: None,
            d_model: usize_field(&config, &["hidden_size", "d_model", "dim"]),
            max_input_tokens,
            summarization_prefix: None,
            rerank_template: None,
            translation_prefixes: Vec::new(),
            generation,
        })
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let (config_path, config, model_type) = read_config(dir)?;
        if config.get("is_encoder_decoder").and_then(Json::as_bool) == Some(false) {
            return Err(Error::invalid_model(&config_path, format!("`{model_type}` is not an encoder-decoder model")));
        }
        let vocab_size = usize_field(&config, &["vocab_size"]).ok_or_else(|| Error::invalid_model(&config_path, "has no `vocab_size`"))?;

        let decoder_heads = usize_field(&config, &["decoder_attention_heads", "num_heads", "num_attention_heads"]);
        let head_dim = usize_field(&config, &["d_kv", "head_dim"]).or_else(|| {
            let d_model = usize_field(&config, &["d_model", "hidden_size"])?;
            decoder_heads.filter(|h| *h > 0).map(|h| d_model / h)
        });
        let max_input_tokens = usize_field(&config, &["max_position_embeddings", "n_positions"]).map(|m| m.min(MAX_POSITIONS));
        let summarization_prefix = config.pointer("/task_specific_params/summarization/prefix").and_then(Json::as_str).map(str::to_string);
        let rerank_template = match config.pointer("/task_specific_params/rerank/template") {
            None => None,
            Some(Json::String(t)) if t.contains("{passage}") => Some(t.clone()),
            Some(_) => {
                return Err(Error::invalid_model(
                    &config_path,
                    "`task_specific_params.rerank.template` must be a string containing {passage}",
                ))
            }
        };

        // transformers falls back to the generation keys of config.json when there is no
        // generation_config.json; token ids missing from the latter also come from config.json.
        let gen_path = dir.join("generation_config.json");
        let from_config = generation_settings(&config, &config_path)?;
        let generation = if gen_path.exists() {
            let own = generation_settings(&read_json(&gen_path)?, &gen_path)?;
            let mut ids_only = Settings::new(GENERATION_SPECS);
            for key in ["eos_token_id", "pad_token_id", "bos_token_id", "decoder_start_token_id"] {
                if let Some(v) = from_config.get(key) {
                    set_value(&mut ids_only, key, v)?;
                }
            }
            ids_only.overlaid(&own)
        } else {
            from_config
        };

        let decoder_layers = usize_field(&config, &["num_decoder_layers", "decoder_layers", "num_layers"]);
        let d_model = usize_field(&config, &["d_model", "hidden_size"]);
        Ok(Self {
            model_type,
            vocab_size,
            decoder_heads,
            head_dim,
            decoder_layers,
            d_model,
            max_input_tokens,
            summarization_prefix,
            rerank_template,
            translation_prefixes: translation_prefixes(&config),
            generation,
        })
    }

    /// Every token id of the model's generation settings lies within `vocab_size`; otherwise the
    /// file that set it is refused, naming the field (a request would fail on it every time).
    pub fn check_generation_tokens(&self, dir: &Path) -> Result<()> {
        let g = &self.generation;
        for key in [
            "eos_token_id",
            "pad_token_id",
            "bos_token_id",
            "decoder_start_token_id",
            "forced_bos_token_id",
            "forced_eos_token_id",
            "suppress_tokens",
            "begin_suppress_tokens",
            "bad_words_ids",
        ] {
            let ids: Vec<i64> = match (g.int(key), g.int_list(key), g.int_lists(key)) {
                (Some(i), _, _) => vec![i],
                (_, Some(l), _) => l.to_vec(),
                (_, _, Some(ls)) => ls.iter().flatten().copied().collect(),
                _ => continue,
            };
            if let Some(bad) = ids.iter().find(|&&i| i < 0 || i as u64 >= self.vocab_size as u64) {
                let file = if dir.join("generation_config.json").exists() { "generation_config.json" } else { "config.json" };
                return Err(Error::invalid_model(
                    dir.join(file),
                    format!("{key}: token id {bad} is outside the vocabulary (0..{}, config.json vocab_size)", self.vocab_size),
                ));
            }
        }
        Ok(())
    }

    pub fn is_supported_type(&self) -> bool {
        SUPPORTED_MODEL_TYPES.contains(&self.model_type.as_str())
    }
}

fn set_value(s: &mut Settings, key: &str, v: &crate::settings::Value) -> Result<()> {
    use crate::settings::Value;
    match v {
        Value::Int(i) => s.set_int(key, *i),
        Value::IntList(l) => s.set_str(key, &format!("{l:?}")),
        _ => Ok(()),
    }
}
