//! The keys the tasks add to a params object (beside the generation keys).

use crate::settings::{any, check, Kind, Settings, Spec, Value};
use crate::tasks::assistant::{DEFAULT_CHAT_TEMPLATE, DEFAULT_SYSTEM_PROMPT, DEFAULT_TURN_TEMPLATE};
use crate::tasks::index::SearchMode;

fn has_placeholders(v: &Value, names: &[&str]) -> Result<(), String> {
    match v {
        Value::Str(s) => match names.iter().find(|n| !s.contains(*n)) {
            Some(missing) => Err(format!("the template must contain {missing}")),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

pub static TASK_SPECS: &[Spec] = &[
    Spec { key: "timeout_ms", kind: Kind::Int, check: |v| check::int_in(v, 1, i64::MAX), default: None, help: "[all] the call ends with a deadline-exceeded error after this many milliseconds" },
    Spec { key: "summary_length", kind: Kind::Str, check: |v| check::one_of(v, &["short", "medium", "long"]), default: Some("medium"), help: "[summarize] short, medium or long" },
    Spec { key: "prompt_template", kind: Kind::Str, check: |v| has_placeholders(v, &["{text}"]), default: None, help: "[summarize] encoder input around {text} (default: the model's summarization prefix)" },
    Spec { key: "chunk_tokens", kind: Kind::Int, check: |v| check::int_in(v, 16, 1 << 20), default: None, help: "[summarize, translate] most tokens per chunk (default: the input limit for summarize, 256 for translate)" },
    Spec { key: "chunk_overlap_tokens", kind: Kind::Int, check: |v| check::int_in(v, 0, 1 << 20), default: Some("32"), help: "[summarize] sentences repeated from the previous chunk, up to this many tokens" },
    Spec { key: "batch_size", kind: Kind::Int, check: |v| check::int_in(v, 1, 1024), default: Some("8"), help: "[summarize, translate, embed, index, search, rerank] inputs run together" },
    Spec { key: "system_prompt", kind: Kind::Str, check: any, default: Some(DEFAULT_SYSTEM_PROMPT), help: "[chat, assist] the system instruction" },
    Spec { key: "chat_template", kind: Kind::Str, check: |v| has_placeholders(v, &["{history}", "{user}"]), default: Some(DEFAULT_CHAT_TEMPLATE), help: "[chat, assist] the prompt: {system}, {history} (past turns) and {user}" },
    Spec { key: "chat_turn_template", kind: Kind::Str, check: |v| has_placeholders(v, &["{user}", "{assistant}"]), default: Some(DEFAULT_TURN_TEMPLATE), help: "[chat, assist] one past turn: {user} and {assistant}" },
    Spec { key: "input_kind", kind: Kind::Str, check: |v| check::one_of(v, &["query", "document"]), default: Some("document"), help: "[embed] the texts are queries or documents: picks the model's query_prefix or document_prefix (index searches embed the query as a query)" },
    Spec { key: "search_mode", kind: Kind::Str, check: |v| check::one_of(v, &["vector", "keyword", "hybrid"]), default: Some("vector"), help: "[search] vector (embedding cosine), keyword (BM25 over the stored texts) or hybrid (reciprocal rank fusion of both)" },
    Spec { key: "rerank_top_n", kind: Kind::Int, check: |v| check::int_in(v, 0, 1 << 20), default: Some("0"), help: "[search] rescore this many of the best hits with the decoder (duet_index_search_with; 0: none)" },
    Spec { key: "rrf_k", kind: Kind::Int, check: |v| check::int_in(v, 1, 1 << 20), default: Some("60"), help: "[search] the constant k of reciprocal rank fusion, score = sum of 1 / (k + rank)" },
    Spec { key: "hybrid_candidates", kind: Kind::Int, check: |v| check::int_in(v, 1, 1 << 20), default: Some("100"), help: "[search] hits taken from each of BM25 and the embeddings before fusing (at least k)" },
    Spec { key: "rerank_mode", kind: Kind::Str, check: |v| check::one_of(v, &["likelihood", "relevance"]), default: Some("likelihood"), help: "[rerank, search] likelihood: mean log p(query | passage); relevance: log p(yes) - log p(no)" },
    Spec { key: "rerank_template", kind: Kind::Str, check: |v| has_placeholders(v, &["{passage}"]), default: None, help: "[rerank, search] encoder input; {passage} and (relevance mode) {query} (default: the model's task_specific_params.rerank.template, else a question-writing prompt)" },
    Spec { key: "relevance_tokens", kind: Kind::StrList, check: |v| match v {
        Value::StrList(l) if l.len() != 2 => Err("give exactly two words: the relevant and the irrelevant one".into()),
        _ => Ok(()),
    }, default: Some("[\"yes\", \"no\"]"), help: "[rerank, search] the two target words of relevance mode" },
];

/// Every key a params object accepts: the generation keys, then those of the tasks.
pub static PARAM_SPECS: once_cell::sync::Lazy<Vec<Spec>> =
    once_cell::sync::Lazy::new(|| crate::model::GENERATION_SPECS.iter().chain(TASK_SPECS.iter()).copied().collect());

/// An empty params object: every key at its default.
pub fn new_generation_settings() -> crate::settings::Settings {
    crate::settings::Settings::new(PARAM_SPECS.as_slice())
}

/// How long a summary may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryLength {
    Short,
    Medium,
    Long,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerankMode {
    Likelihood,
    Relevance,
}

/// The task keys of one call, parsed once where the call comes in; a key not set takes its
/// default from `TASK_SPECS` (written there only). Model-dependent defaults stay `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSettings {
    pub summary_length: SummaryLength,
    /// `summary_length` was given (it then beats the model's own length settings).
    pub summary_length_set: bool,
    pub prompt_template: Option<String>,
    pub chunk_tokens: Option<usize>,
    pub chunk_overlap_tokens: usize,
    pub batch_size: usize,
    pub system_prompt: String,
    pub chat_template: String,
    pub chat_turn_template: String,
    pub embed_as_query: bool,
    pub search_mode: SearchMode,
    pub rerank_top_n: usize,
    pub rrf_k: usize,
    pub hybrid_candidates: usize,
    pub rerank_mode: RerankMode,
    pub rerank_template: Option<String>,
    pub relevance_tokens: Vec<String>,
    /// The generation keys some tasks read beside generating: the input limit, truncation, and
    /// whether the caller set a length (a summary length preset then stays out of the way).
    pub max_input_tokens: Option<usize>,
    pub truncate_input: bool,
    pub sets_max_length: bool,
    pub sets_min_length: bool,
}

/// `key`'s value in `s`, else its default from the spec table, as a settings value.
fn value_or_default(s: &Settings, key: &str) -> Option<Value> {
    if let Some(v) = s.get(key) {
        return Some(v.clone());
    }
    let spec = TASK_SPECS.iter().find(|spec| spec.key == key)?;
    let mut defaults = Settings::new(TASK_SPECS);
    defaults.set_str(spec.key, spec.default?).ok()?;
    defaults.get(key).cloned()
}

fn text(s: &Settings, key: &str) -> String {
    match value_or_default(s, key) {
        Some(Value::Str(v)) => v,
        _ => String::new(),
    }
}

fn count(s: &Settings, key: &str) -> usize {
    match value_or_default(s, key) {
        Some(Value::Int(v)) => v.max(0) as usize,
        _ => 0,
    }
}

impl TaskSettings {
    pub fn parse(s: &Settings) -> Self {
        Self {
            summary_length: match text(s, "summary_length").as_str() {
                "short" => SummaryLength::Short,
                "long" => SummaryLength::Long,
                _ => SummaryLength::Medium,
            },
            summary_length_set: s.is_set("summary_length"),
            prompt_template: s.str("prompt_template").map(str::to_string),
            chunk_tokens: s.int("chunk_tokens").map(|v| v as usize),
            chunk_overlap_tokens: count(s, "chunk_overlap_tokens"),
            batch_size: count(s, "batch_size").max(1),
            system_prompt: text(s, "system_prompt"),
            chat_template: text(s, "chat_template"),
            chat_turn_template: text(s, "chat_turn_template"),
            embed_as_query: text(s, "input_kind") == "query",
            search_mode: match text(s, "search_mode").as_str() {
                "keyword" => SearchMode::Keyword,
                "hybrid" => SearchMode::Hybrid,
                _ => SearchMode::Vector,
            },
            rerank_top_n: count(s, "rerank_top_n"),
            rrf_k: count(s, "rrf_k").max(1),
            hybrid_candidates: count(s, "hybrid_candidates").max(1),
            rerank_mode: if text(s, "rerank_mode") == "relevance" { RerankMode::Relevance } else { RerankMode::Likelihood },
            rerank_template: s.str("rerank_template").map(str::to_string),
            relevance_tokens: match value_or_default(s, "relevance_tokens") {
                Some(Value::StrList(words)) => words,
                _ => Vec::new(),
            },
            max_input_tokens: s.int("max_input_tokens").map(|v| v as usize),
            truncate_input: s.bool("truncate_input").unwrap_or(crate::model::generation_default("truncate_input") == Some("true")),
            sets_max_length: s.is_set("max_new_tokens") || s.is_set("max_length"),
            sets_min_length: s.is_set("min_new_tokens") || s.is_set("min_length"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_a_valid_value_of_its_key() {
        for spec in TASK_SPECS {
            if let Some(default) = spec.default {
                let mut s = Settings::new(TASK_SPECS);
                s.set_str(spec.key, default).unwrap_or_else(|e| panic!("{}: default {default:?}: {e}", spec.key));
            }
        }
        for spec in crate::model::GENERATION_SPECS {
            if let Some(default) = spec.default {
                let mut s = new_generation_settings();
                s.set_str(spec.key, default).unwrap_or_else(|e| panic!("{}: default {default:?}: {e}", spec.key));
            }
        }
        for spec in crate::model::MODEL_OPTION_SPECS {
            if let Some(default) = spec.default {
                let mut s = crate::model::new_model_options();
                s.set_str(spec.key, default).unwrap_or_else(|e| panic!("{}: default {default:?}: {e}", spec.key));
            }
        }
    }

    #[test]
    fn unset_keys_take_the_table_defaults() {
        let t = TaskSettings::parse(&new_generation_settings());
        assert_eq!((t.batch_size, t.chunk_overlap_tokens, t.rrf_k, t.hybrid_candidates, t.rerank_top_n), (8, 32, 60, 100, 0));
        assert_eq!(t.summary_length, SummaryLength::Medium);
        assert!(!t.summary_length_set && !t.embed_as_query);
        assert_eq!((t.search_mode, t.rerank_mode), (SearchMode::Vector, RerankMode::Likelihood));
        assert_eq!(t.relevance_tokens, vec!["yes".to_string(), "no".to_string()]);
        assert_eq!(t.system_prompt, DEFAULT_SYSTEM_PROMPT);
        let mut s = new_generation_settings();
        s.set_int("batch_size", 3).unwrap();
        s.set_str("search_mode", "hybrid").unwrap();
        let t = TaskSettings::parse(&s);
        assert_eq!((t.batch_size, t.search_mode), (3, SearchMode::Hybrid));
    }
}
