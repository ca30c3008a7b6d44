//! How a model's token states become one sentence vector: sentence-transformers' files
//! (`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`,
//! `config_sentence_transformers.json`) when present, else the model options.

use std::path::Path;

use serde_json::Value as Json;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolingMode {
    /// Mean over the attention mask.
    Mean,
    /// The first token's state (`[CLS]`).
    Cls,
    /// Element-wise maximum over the attention mask.
    Max,
    /// The last real token's state.
    LastToken,
    /// Sum over the mask divided by the square root of the token count.
    MeanSqrtLen,
}

impl PoolingMode {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "mean" => Self::Mean,
            "cls" => Self::Cls,
            "max" => Self::Max,
            "last_token" | "lasttoken" => Self::LastToken,
            "mean_sqrt_len" | "mean_sqrt_len_tokens" => Self::MeanSqrtLen,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Cls => "cls",
            Self::Max => "max",
            Self::LastToken => "last_token",
            Self::MeanSqrtLen => "mean_sqrt_len",
        }
    }
}

/// Everything that decides a model's vectors besides its weights.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingSpec {
    pub pooling: PoolingMode,
    pub normalize: bool,
    /// Prepended to queries (E5's `query: `, a BGE instruction) and to documents.
    pub query_prefix: String,
    pub document_prefix: String,
    /// Longest input in tokens (`max_seq_length`), special tokens included.
    pub max_seq_length: Option<usize>,
    /// Where the pooling came from, for `duet info`.
    pub source: String,
}

/// What the caller's options say; each `None` leaves the model's files (or the default) in force.
#[derive(Debug, Clone, Default)]
pub struct EmbeddingOverrides {
    pub pooling: Option<PoolingMode>,
    pub normalize: Option<bool>,
    pub query_prefix: Option<String>,
    pub document_prefix: Option<String>,
}

fn read_json(path: &Path) -> Result<Option<Json>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = crate::files::read_text_limited(path, crate::files::CONFIG_LIMIT).map_err(|e| Error::invalid_model(path, e.to_string()))?;
    serde_json::from_str(&text).map(Some).map_err(|e| Error::invalid_model(path, format!("not valid JSON: {e}")))
}

/// `pooling_mode_*` flags of `1_Pooling/config.json`: exactly one must be set.
fn pooling_from_config(json: &Json, path: &Path) -> Result<PoolingMode> {
    let flags = [
        ("pooling_mode_mean_tokens", PoolingMode::Mean),
        ("pooling_mode_cls_token", PoolingMode::Cls),
        ("pooling_mode_max_tokens", PoolingMode::Max),
        ("pooling_mode_lasttoken", PoolingMode::LastToken),
        ("pooling_mode_mean_sqrt_len_tokens", PoolingMode::MeanSqrtLen),
    ];
    if json.get("pooling_mode_weightedmean_tokens").and_then(Json::as_bool) == Some(true) {
        return Err(Error::invalid_model(path, "weighted-mean pooling is not supported (mean, cls, max, last-token, mean-sqrt-len are)"));
    }
    let set: Vec<PoolingMode> = flags.iter().filter(|(k, _)| json.get(*k).and_then(Json::as_bool) == Some(true)).map(|f| f.1).collect();
    match set.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::invalid_model(path, "sets no pooling_mode_* flag")),
        _ => Err(Error::invalid_model(path, "sets several pooling_mode_* flags; duet pools one way")),
    }
}

impl EmbeddingSpec {
    /// The default of a seq2seq model's encoder: mean pooling, L2-normalised, no prefixes.
    pub fn encoder_mean(max_seq_length: Option<usize>) -> Self {
        Self {
            pooling: PoolingMode::Mean,
            normalize: true,
            query_prefix: String::new(),
            document_prefix: String::new(),
            max_seq_length,
            source: "default (encoder mean, L2-normalised)".into(),
        }
    }

    /// An embedding model's spec. `required`: without sentence-transformers files, the pooling must
    /// come from `over` (an encoder-only export has no other way to say it).
    pub fn read(dir: &Path, over: &EmbeddingOverrides, required: bool, fallback_max: Option<usize>) -> Result<Self> {
        let modules_path = dir.join("modules.json");
        let modules = read_json(&modules_path)?;
        let module_path = |kind: &str| -> Option<String> {
            modules.as_ref()?.as_array()?.iter().find_map(|m| {
                let t = m.get("type")?.as_str()?;
                t.ends_with(kind).then(|| m.get("path").and_then(Json::as_str).unwrap_or("").to_string())
            })
        };
        let normalize_module = modules.is_some().then(|| module_path("models.Normalize").is_some());
        let pooling_dir = module_path("models.Pooling").unwrap_or_else(|| "1_Pooling".into());
        if pooling_dir.contains("..") || Path::new(&pooling_dir).is_absolute() {
            return Err(Error::invalid_model(&modules_path, format!("pooling path `{pooling_dir}` leaves the model directory")));
        }
        let pooling_path = dir.join(&pooling_dir).join("config.json");
        let from_file = match read_json(&pooling_path)? {
            Some(json) => Some(pooling_from_config(&json, &pooling_path)?),
            None if modules.is_some() && module_path("models.Pooling").is_some() => {
                return Err(Error::ModelFileMissing { path: pooling_path, reason: "missing: modules.json names a Pooling module".into() });
            }
            None => None,
        };
        let pooling = match (over.pooling, from_file) {
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) if required => {
                return Err(Error::ModelFileMissing {
                    path: pooling_path,
                    reason: "missing, and no `pooling` option was given: an embedding model must say how it pools (1_Pooling/config.json, or the option pooling=mean|cls|max|last_token)".into(),
                })
            }
            (None, None) => PoolingMode::Mean,
        };
        let st_config = read_json(&dir.join("sentence_bert_config.json"))?;
        let max_seq_length =
            st_config.as_ref().and_then(|c| c.get("max_seq_length")).and_then(Json::as_u64).map(|v| v as usize).or(fallback_max);
        let prompts = read_json(&dir.join("config_sentence_transformers.json"))?;
        let prompt =
            |name: &str| prompts.as_ref().and_then(|p| p.pointer(&format!("/prompts/{name}"))).and_then(Json::as_str).map(str::to_string);
        let source = match (over.pooling.is_some(), from_file.is_some()) {
            (true, _) => "model options".to_string(),
            (false, true) => format!("{}/config.json", pooling_dir),
            (false, false) => "default (mean)".to_string(),
        };
        Ok(Self {
            pooling,
            normalize: over.normalize.or(normalize_module).unwrap_or(true),
            query_prefix: over.query_prefix.clone().or_else(|| prompt("query")).unwrap_or_default(),
            document_prefix: over.document_prefix.clone().or_else(|| prompt("document")).unwrap_or_default(),
            max_seq_length,
            source,
        })
    }

    /// One line that changes whenever the vectors would: part of an index's model identity.
    pub fn describe(&self) -> String {
        format!(
            "pooling={} normalize={} query_prefix={:?} document_prefix={:?} max_seq_length={}",
            self.pooling.as_str(),
            self.normalize,
            self.query_prefix,
            self.document_prefix,
            self.max_seq_length.map_or("none".into(), |m| m.to_string())
        )
    }

    /// Pools one row of `[len, width]` states under its `mask` into a vector.
    pub fn pool(&self, states: &[f32], mask: &[i64], width: usize) -> Vec<f32> {
        let real: Vec<usize> = (0..mask.len()).filter(|&p| mask[p] != 0).collect();
        let row = |p: usize| &states[p * width..(p + 1) * width];
        let mut v = vec![0f64; width];
        match self.pooling {
            PoolingMode::Cls => v.iter_mut().zip(row(0)).for_each(|(a, &h)| *a = h as f64),
            PoolingMode::LastToken => {
                let last = real.last().copied().unwrap_or(0);
                v.iter_mut().zip(row(last)).for_each(|(a, &h)| *a = h as f64);
            }
            PoolingMode::Max => {
                v.iter_mut().for_each(|a| *a = f64::NEG_INFINITY);
                for &p in &real {
                    v.iter_mut().zip(row(p)).for_each(|(a, &h)| *a = a.max(h as f64));
                }
            }
            PoolingMode::Mean | PoolingMode::MeanSqrtLen => {
                for &p in &real {
                    v.iter_mut().zip(row(p)).for_each(|(a, &h)| *a += h as f64);
                }
                let count = (real.len() as f64).max(1.0);
                let divisor = if self.pooling == PoolingMode::Mean { count } else { count.sqrt() };
                v.iter_mut().for_each(|a| *a /= divisor);
            }
        }
        let norm = if self.normalize { v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12) } else { 1.0 };
        v.iter().map(|x| (x / norm) as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pooling: PoolingMode, normalize: bool) -> EmbeddingSpec {
        EmbeddingSpec { pooling, normalize, ..EmbeddingSpec::encoder_mean(None) }
    }

    #[test]
    fn pooling_modes_over_a_masked_row() {
        // Three positions of width 2; the last is padding.
        let states = [1.0, 2.0, 3.0, -4.0, 100.0, 100.0];
        let mask = [1, 1, 0];
        assert_eq!(spec(PoolingMode::Mean, false).pool(&states, &mask, 2), vec![2.0, -1.0]);
        assert_eq!(spec(PoolingMode::Cls, false).pool(&states, &mask, 2), vec![1.0, 2.0]);
        assert_eq!(spec(PoolingMode::Max, false).pool(&states, &mask, 2), vec![3.0, 2.0]);
        assert_eq!(spec(PoolingMode::LastToken, false).pool(&states, &mask, 2), vec![3.0, -4.0]);
        let s = spec(PoolingMode::MeanSqrtLen, false).pool(&states, &mask, 2);
        assert!((s[0] - 4.0 / 2f32.sqrt()).abs() < 1e-6 && (s[1] + 2.0 / 2f32.sqrt()).abs() < 1e-6);
        let n = spec(PoolingMode::Mean, true).pool(&states, &mask, 2);
        assert!((n[0] * n[0] + n[1] * n[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn pooling_config_flags() {
        let p = Path::new("1_Pooling/config.json");
        let one = serde_json::json!({"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false});
        assert_eq!(pooling_from_config(&one, p).unwrap(), PoolingMode::Cls);
        let none = serde_json::json!({"pooling_mode_mean_tokens": false});
        assert!(pooling_from_config(&none, p).unwrap_err().to_string().contains("no pooling_mode"));
        let two = serde_json::json!({"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true});
        assert!(pooling_from_config(&two, p).is_err());
        let weighted = serde_json::json!({"pooling_mode_weightedmean_tokens": true});
        assert!(pooling_from_config(&weighted, p).unwrap_err().to_string().contains("weighted"));
    }
}
