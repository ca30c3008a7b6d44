//! The languages a model translates between, and how it is told which: read once from
//! config.json, tokenizer.json and tokenizer_config.json when the model opens.

use std::path::Path;

use serde_json::Value as Json;

use super::config::ModelConfig;
use crate::text::Tokenizer;

/// One language code of the model's own spelling (`fra_Latn`, `__fr__`, `fr_XX`, `>>fra<<`,
/// `de`) and the token that stands for it, where one does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanguageCode {
    pub code: String,
    pub token_id: Option<u32>,
}

/// Where the source-language token goes when the tokenizer did not put it in the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceTokenPlace {
    /// `[src] text </s>`: NLLB-200, M2M100, mBART-50.
    First,
    /// `text </s> [src]`: mBART (cc25) and NLLB's `legacy_behaviour`.
    Last,
}

/// How the target language reaches the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetTokenPlace {
    /// The first generated token is forced (`forced_bos_token_id`): NLLB-200, M2M100, mBART-50.
    ForcedFirst,
    /// The decoder starts from it (`decoder_start_token_id`): mBART (cc25).
    DecoderStart,
}

/// A T5-style task prefix: `translate English to German: ` for `translation_en_to_de`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPrefix {
    pub source: String,
    pub target: String,
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Languages {
    /// Language tokens on both sides (NLLB-200, M2M100, mBART).
    Tokens { codes: Vec<LanguageCode>, source: SourceTokenPlace, target: TargetTokenPlace, default_source: Option<String> },
    /// Multilingual Marian: a `>>fra<<` token before the source text names the target.
    TargetToken { codes: Vec<LanguageCode> },
    /// One pair (single-pair Marian); either side unnamed when the tokenizer config does not say.
    Pair { source: Option<String>, target: Option<String> },
    /// T5's `task_specific_params.translation_<src>_to_<tgt>.prefix`.
    TaskPrefixes(Vec<TaskPrefix>),
    /// Not a translation model.
    None,
}

impl Languages {
    pub fn read(dir: &Path, config: &ModelConfig, tokenizer: &Tokenizer) -> Self {
        let tokenizer_config = read_tokenizer_config(dir);
        let field = |k: &str| tokenizer_config.get(k).and_then(Json::as_str).map(str::to_string);
        match config.model_type.as_str() {
            "m2m_100" | "nllb-moe" => {
                let codes = added_codes(tokenizer, |t| is_flores_code(t) || is_m2m_code(t));
                if codes.is_empty() {
                    return Self::None;
                }
                let legacy = tokenizer_config.get("legacy_behaviour").and_then(Json::as_bool) == Some(true);
                let source = if legacy { SourceTokenPlace::Last } else { SourceTokenPlace::First };
                Self::Tokens { codes, source, target: TargetTokenPlace::ForcedFirst, default_source: field("src_lang") }
            }
            "mbart" => {
                let codes = added_codes(tokenizer, is_mbart_code);
                if codes.is_empty() {
                    return Self::None;
                }
                // mBART-cc25 has 25 codes; mBART-50 52 (`language_codes: "ML50"` in older configs).
                let fifty = field("tokenizer_class").is_some_and(|c| c.starts_with("MBart50"))
                    || field("language_codes").is_some_and(|c| c == "ML50")
                    || codes.len() > 25;
                let (source, target) = if fifty {
                    (SourceTokenPlace::First, TargetTokenPlace::ForcedFirst)
                } else {
                    (SourceTokenPlace::Last, TargetTokenPlace::DecoderStart)
                };
                Self::Tokens { codes, source, target, default_source: field("src_lang") }
            }
            "marian" => {
                let mut codes: Vec<LanguageCode> = tokenizer
                    .vocab()
                    .into_iter()
                    .filter(|(t, _)| is_marian_code(t))
                    .map(|(code, id)| LanguageCode { code, token_id: Some(id) })
                    .collect();
                codes.sort_by(|a, b| a.code.cmp(&b.code));
                if codes.is_empty() {
                    Self::Pair { source: field("source_lang"), target: field("target_lang") }
                } else {
                    Self::TargetToken { codes }
                }
            }
            _ if !config.translation_prefixes.is_empty() => Self::TaskPrefixes(
                config
                    .translation_prefixes
                    .iter()
                    .map(|(source, target, prefix)| TaskPrefix { source: source.clone(), target: target.clone(), prefix: prefix.clone() })
                    .collect(),
            ),
            _ => match (field("source_lang"), field("target_lang")) {
                (None, None) => Self::None,
                (source, target) => Self::Pair { source, target },
            },
        }
    }

    /// What `info` shows: the scheme, and the codes a caller may name.
    pub fn info_json(&self) -> Json {
        let list = |codes: &[LanguageCode]| codes.iter().map(|c| c.code.clone()).collect::<Vec<_>>();
        match self {
            Self::Tokens { codes, source, target, default_source } => serde_json::json!({
                "scheme": "language tokens",
                "languages": list(codes),
                "source_token": match source { SourceTokenPlace::First => "first", SourceTokenPlace::Last => "last" },
                "target_token": match target { TargetTokenPlace::ForcedFirst => "forced first token", TargetTokenPlace::DecoderStart => "decoder start" },
                "default_source": default_source,
            }),
            Self::TargetToken { codes } => serde_json::json!({"scheme": "target token before the source text", "languages": list(codes)}),
            Self::Pair { source, target } => serde_json::json!({"scheme": "one pair", "source": source, "target": target}),
            Self::TaskPrefixes(p) => serde_json::json!({
                "scheme": "task prefix",
                "pairs": p.iter().map(|p| serde_json::json!({"from": p.source, "to": p.target, "prefix": p.prefix})).collect::<Vec<_>>(),
            }),
            Self::None => Json::Null,
        }
    }
}

fn read_tokenizer_config(dir: &Path) -> Json {
    crate::files::read_text_limited(&dir.join("tokenizer_config.json"), crate::files::CONFIG_LIMIT)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Json::Null)
}

/// The tokenizer's added tokens that `is_code` accepts, in id order.
fn added_codes(tokenizer: &Tokenizer, is_code: impl Fn(&str) -> bool) -> Vec<LanguageCode> {
    let mut codes: Vec<LanguageCode> = tokenizer
        .added_tokens()
        .into_iter()
        .filter(|(_, t)| is_code(t))
        .map(|(id, code)| LanguageCode { code, token_id: Some(id) })
        .collect();
    codes.sort_by_key(|c| c.token_id);
    codes
}

fn all(s: &str, f: fn(&char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(|c| f(&c))
}

/// FLORES-200, as NLLB-200 spells it: `fra_Latn`, `zho_Hans`.
pub fn is_flores_code(t: &str) -> bool {
    let Some((lang, script)) = t.split_once('_') else { return false };
    lang.len() == 3
        && all(lang, char::is_ascii_lowercase)
        && script.len() == 4
        && script.starts_with(|c: char| c.is_ascii_uppercase())
        && all(&script[1..], char::is_ascii_lowercase)
}

/// M2M100: `__fr__`, `__ast__`.
pub fn is_m2m_code(t: &str) -> bool {
    t.strip_prefix("__").and_then(|r| r.strip_suffix("__")).is_some_and(|l| (2..=3).contains(&l.len()) && all(l, char::is_ascii_lowercase))
}

/// mBART: `fr_XX`, `zh_CN`.
pub fn is_mbart_code(t: &str) -> bool {
    let Some((lang, region)) = t.split_once('_') else { return false };
    lang.len() == 2 && all(lang, char::is_ascii_lowercase) && region.len() == 2 && all(region, char::is_ascii_uppercase)
}

/// Marian: `>>fra<<`, `>>zho_Hans<<`.
pub fn is_marian_code(t: &str) -> bool {
    t.strip_prefix(">>")
        .and_then(|r| r.strip_suffix("<<"))
        .is_some_and(|l| (2..=12).contains(&l.len()) && all(l, |c| c.is_ascii_alphanumeric() || *c == '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_shapes_of_each_family() {
        assert!(is_flores_code("fra_Latn") && is_flores_code("zho_Hant") && !is_flores_code("fr_XX") && !is_flores_code("fra_latn"));
        assert!(is_m2m_code("__fr__") && is_m2m_code("__ast__") && !is_m2m_code("__FR__") && !is_m2m_code("fr"));
        assert!(is_mbart_code("fr_XX") && is_mbart_code("zh_CN") && !is_mbart_code("fra_Latn") && !is_mbart_code("fr"));
        assert!(is_marian_code(">>fra<<") && is_marian_code(">>zho_Hans<<") && !is_marian_code(">><<") && !is_marian_code("fra"));
    }
}
