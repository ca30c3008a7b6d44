//! The generation keys under their Hugging Face names (`generation_config.json`, and what a
//! caller may set): types, ranges and help. Resolving them is `generate::params`' work.

use crate::settings::{any, check, Kind, Spec};

macro_rules! spec {
    ($key:literal, $kind:expr, $check:expr, $help:literal) => {
        Spec { key: $key, kind: $kind, check: $check, default: None, help: $help }
    };
    ($key:literal, $kind:expr, $check:expr, $help:literal, default $default:literal) => {
        Spec { key: $key, kind: $kind, check: $check, default: Some($default), help: $help }
    };
}

/// The table's default of generation key `key`, when it has one fixed value.
pub fn generation_default(key: &str) -> Option<&'static str> {
    GENERATION_SPECS.iter().find(|s| s.key == key).and_then(|s| s.default)
}

/// Every key a generation params object accepts.
pub static GENERATION_SPECS: &[Spec] = &[
    spec!(
        "max_new_tokens",
        Kind::Int,
        |v| check::int_in(v, 1, 1 << 20),
        "most tokens to generate (default: the model's generation_config.json, else max_length)"
    ),
    spec!(
        "max_length",
        Kind::Int,
        |v| check::int_in(v, 2, 1 << 20),
        "most decoder tokens, start token and decoder_prefix included, when max_new_tokens is unset; at its default of 20, 20 new tokens (as transformers 4.57)", default "20"),
    spec!("min_new_tokens", Kind::Int, |v| check::int_in(v, 0, 1 << 20), "EOS is forbidden before this many tokens (replaces min_length where set)", default "0"),
    spec!(
        "min_length",
        Kind::Int,
        |v| check::int_in(v, 0, 1 << 20),
        "EOS is forbidden while the decoder sequence, start token included, is shorter", default "0"),
    spec!("num_beams", Kind::Int, |v| check::int_in(v, 1, 128), "beam width; 1 is greedy or sampling", default "1"),
    spec!("num_return_sequences", Kind::Int, |v| check::int_in(v, 1, 128), "sequences returned per input", default "1"),
    spec!("length_penalty", Kind::Float, check::finite, "beam score = sum log-probs / length^length_penalty", default "1.0"),
    spec!("early_stopping", Kind::BoolOrWord(&["never"]), any, "beam search stopping: true, false or never", default "false"),
    spec!("do_sample", Kind::Bool, any, "sample instead of taking the most likely token", default "false"),
    spec!("temperature", Kind::Float, check::positive_f32, "divides the logits before sampling", default "1.0"),
    spec!("top_k", Kind::Int, |v| check::int_in(v, 0, i64::MAX), "sample among the k most likely tokens; 0 disables", default "50"),
    spec!(
        "top_p",
        Kind::Float,
        |v| match v {
            crate::settings::Value::Float(p) if !(*p > 0.0 && *p <= 1.0) => Err(format!("{p} is outside (0, 1]")),
            _ => Ok(()),
        },
        "nucleus sampling mass", default "1.0"),
    spec!("seed", Kind::Int, |v| check::int_in(v, 0, i64::MAX), "random seed for sampling (default: a random one)"),
    spec!("repetition_penalty", Kind::Float, check::positive_f32, "divides the scores of tokens already present (1.0: off)", default "1.0"),
    spec!("no_repeat_ngram_size", Kind::Int, |v| check::int_in(v, 0, 1 << 16), "forbid repeating n-grams of this size (0: off)", default "0"),
    spec!("eos_token_id", Kind::IntList, check::token_ids, "end-of-sequence token id(s) (default: the model's)"),
    spec!("pad_token_id", Kind::Int, check::token_ids, "padding token id (default: the model's, else the first EOS)"),
    spec!("bos_token_id", Kind::Int, check::token_ids, "beginning-of-sequence token id (default: the model's)"),
    spec!("forced_bos_token_id", Kind::Int, check::token_ids, "token forced as the first generated one (default: the model's, else none)"),
    spec!(
        "forced_eos_token_id",
        Kind::IntList,
        check::token_ids,
        "token forced when the length limit is reached (default: the model's, else none)"
    ),
    spec!("suppress_tokens", Kind::IntList, check::token_ids, "tokens that are never generated (default: none)"),
    spec!(
        "bad_words_ids",
        Kind::IntLists,
        check::token_ids,
        "token sequences that are never generated, [[5, 6], [7]]: the last token of each is forbidden where the others precede it (a flat list: single tokens)"
    ),
    spec!(
        "begin_suppress_tokens",
        Kind::IntList,
        check::token_ids,
        "tokens that may not be the first generated one after the forced first token (default: the model's, else none)"
    ),
    spec!(
        "decoder_prefix",
        Kind::IntList,
        check::token_ids,
        "tokens every output starts with, after the decoder start token (transformers' decoder_input_ids); generated tokens follow them (default: none)"
    ),
    spec!(
        "forced_decoder_ids",
        Kind::IntLists,
        |v| match v {
            crate::settings::Value::IntLists(l) if l.iter().any(|p| p.len() != 2 || p.iter().any(|i| *i < 0)) => {
                Err("pairs [position, token id] of non-negative integers are expected".into())
            }
            _ => Ok(()),
        },
        "[[1, a], [2, b], ...]: the older spelling of decoder_prefix [a, b, ...]; positions 1, 2, ... in order only (ignored in a model's generation_config.json, as transformers 4.57 does)"
    ),
    spec!("decoder_start_token_id", Kind::Int, check::token_ids, "first decoder input token (default: the model's, else bos_token_id)"),
    spec!(
        "stop_strings",
        Kind::StrList,
        |v| match v {
            crate::settings::Value::StrList(l) if l.iter().any(String::is_empty) => Err("stop strings must not be empty".into()),
            _ => Ok(()),
        },
        "generation ends when the text contains one of these (default: none)"
    ),
    spec!("max_input_tokens", Kind::Int, |v| check::int_in(v, 1, 1 << 24), "encoder input limit (default: the model's)"),
    spec!("truncate_input", Kind::Bool, any, "truncate longer inputs (and report it) instead of failing", default "false"),
];
