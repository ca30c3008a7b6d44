//! The keys the tasks add to a params object (beside the generation keys).

use crate::settings::{any, check, Kind, Spec, Value};

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
    Spec { key: "timeout_ms", kind: Kind::Int, check: |v| check::int_in(v, 1, i64::MAX), help: "[all] the call ends with a deadline-exceeded error after this many milliseconds" },
    Spec { key: "summary_length", kind: Kind::Str, check: |v| check::one_of(v, &["short", "medium", "long"]), help: "[summarize] short, medium (default) or long" },
    Spec { key: "prompt_template", kind: Kind::Str, check: |v| has_placeholders(v, &["{text}"]), help: "[summarize] encoder input around {text} (default: the model's summarization prefix)" },
    Spec { key: "chunk_tokens", kind: Kind::Int, check: |v| check::int_in(v, 16, 1 << 20), help: "[summarize] most tokens per chunk (default: the input limit)" },
    Spec { key: "chunk_overlap_tokens", kind: Kind::Int, check: |v| check::int_in(v, 0, 1 << 20), help: "[summarize] sentences repeated from the previous chunk, up to this many tokens (default 32)" },
    Spec { key: "batch_size", kind: Kind::Int, check: |v| check::int_in(v, 1, 1024), help: "[summarize, embed, index, search, rerank] inputs run together (default 8)" },
    Spec { key: "system_prompt", kind: Kind::Str, check: any, help: "[chat, assist] the system instruction (default: You are a helpful assistant.)" },
    Spec { key: "chat_template", kind: Kind::Str, check: |v| has_placeholders(v, &["{history}", "{user}"]), help: "[chat, assist] the prompt: {system}, {history} (past turns) and {user}" },
    Spec { key: "chat_turn_template", kind: Kind::Str, check: |v| has_placeholders(v, &["{user}", "{assistant}"]), help: "[chat, assist] one past turn: {user} and {assistant}" },
    Spec { key: "input_kind", kind: Kind::Str, check: |v| check::one_of(v, &["query", "document"]), help: "[embed] the texts are queries or documents: picks the model's query_prefix or document_prefix (default document; index searches embed the query as a query)" },
    Spec { key: "search_mode", kind: Kind::Str, check: |v| check::one_of(v, &["vector", "keyword", "hybrid"]), help: "[search] vector (embedding cosine, the default), keyword (BM25 over the stored texts) or hybrid (reciprocal rank fusion of both)" },
    Spec { key: "rerank_top_n", kind: Kind::Int, check: |v| check::int_in(v, 0, 1 << 20), help: "[search] rescore this many of the best hits with the decoder (duet_index_search_with; default 0: none)" },
    Spec { key: "rrf_k", kind: Kind::Int, check: |v| check::int_in(v, 1, 1 << 20), help: "[search] the constant k of reciprocal rank fusion, score = sum of 1 / (k + rank) (default 60)" },
    Spec { key: "hybrid_candidates", kind: Kind::Int, check: |v| check::int_in(v, 1, 1 << 20), help: "[search] hits taken from each of BM25 and the embeddings before fusing (default 100, at least k)" },
    Spec { key: "rerank_mode", kind: Kind::Str, check: |v| check::one_of(v, &["likelihood", "relevance"]), help: "[rerank, search] likelihood: mean log p(query | passage); relevance: log p(yes) - log p(no)" },
    Spec { key: "rerank_template", kind: Kind::Str, check: |v| has_placeholders(v, &["{passage}"]), help: "[rerank, search] encoder input; {passage} and (relevance mode) {query} (default: the model's task_specific_params.rerank.template, else a question-writing prompt)" },
    Spec { key: "relevance_tokens", kind: Kind::StrList, check: |v| match v {
        Value::StrList(l) if l.len() != 2 => Err("give exactly two words: the relevant and the irrelevant one".into()),
        _ => Ok(()),
    }, help: "[rerank, search] the two target words of relevance mode (default [\"yes\", \"no\"])" },
];

/// Every key a params object accepts: the generation keys, then those of the tasks.
pub static PARAM_SPECS: once_cell::sync::Lazy<Vec<Spec>> =
    once_cell::sync::Lazy::new(|| crate::model::GENERATION_SPECS.iter().chain(TASK_SPECS.iter()).copied().collect());

/// An empty params object: every key at its default.
pub fn new_generation_settings() -> crate::settings::Settings {
    crate::settings::Settings::new(PARAM_SPECS.as_slice())
}
