//! Generation parameters under their Hugging Face names, and their resolution:
//! built-in defaults (as `transformers`' `GenerationConfig`), then `generation_config.json`,
//! then the caller's settings.

use crate::error::{Error, Result};
use crate::model::generation_default;
use crate::settings::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyStopping {
    True,
    False,
    Never,
}

/// Everything one generation call needs, fully resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    pub max_new_tokens: usize,
    pub min_new_tokens: usize,
    pub num_beams: usize,
    pub num_return_sequences: usize,
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
    pub do_sample: bool,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    /// Sampling seed; a random one when unset.
    pub seed: Option<u64>,
    pub repetition_penalty: f32,
    pub no_repeat_ngram_size: usize,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: u32,
    pub forced_bos_token_id: Option<u32>,
    pub forced_eos_token_ids: Vec<u32>,
    pub decoder_start_token_id: u32,
    pub suppress_tokens: Vec<u32>,
    /// Token sequences never generated; a single token equal to an EOS is left out, as
    /// transformers does.
    pub bad_words_ids: Vec<Vec<u32>>,
    /// Not the first token generated after the forced first one (transformers' begin index).
    pub begin_suppress_tokens: Vec<u32>,
    /// Tokens every output starts with, fed to the decoder before anything is generated
    /// (transformers' `decoder_input_ids` after the start token). `max_new_tokens` and
    /// `min_new_tokens` count the tokens after them.
    pub decoder_prefix: Vec<u32>,
    pub stop_strings: Vec<String>,
    pub max_input_tokens: Option<usize>,
    pub truncate_input: bool,
}

impl GenerationParams {
    /// `defaults`: the model's generation config; `caller`: the request's settings.
    pub fn resolve(defaults: &Settings, caller: &Settings, vocab_size: usize) -> Result<Self> {
        let s = defaults.overlaid(caller);
        // Unset keys take the key table's default (crate::model::GENERATION_SPECS), written there only.
        let table = |k: &str| generation_default(k).unwrap_or_default();
        let int = |k: &str| s.int(k).unwrap_or_else(|| table(k).parse().unwrap_or(0));
        let float = |k: &str| s.float(k).unwrap_or_else(|| table(k).parse().unwrap_or(0.0)) as f32;
        let flag = |k: &str| s.bool(k).unwrap_or(table(k) == "true");
        let token = |k: &str| -> Result<Option<u32>> { s.int(k).map(|id| checked_token(k, id, vocab_size)).transpose() };
        let tokens =
            |k: &str| -> Result<Vec<u32>> { s.int_list(k).unwrap_or(&[]).iter().map(|&id| checked_token(k, id, vocab_size)).collect() };

        let decoder_prefix = decoder_prefix(caller, vocab_size)?;
        let prefix_len = decoder_prefix.len() as i64;
        // As in transformers: an explicit max_new_tokens wins over max_length (default 20), which
        // counts the decoder start token and the prefix. The caller's max_length also beats the
        // model's max_new_tokens.
        let max_length = |len: i64| -> Result<i64> {
            if len - 1 - prefix_len < 1 {
                return Err(Error::invalid_param(
                    "max_length",
                    format!("{len} leaves no room to generate after the start token and the {prefix_len}-token decoder_prefix"),
                ));
            }
            Ok(len - 1 - prefix_len)
        };
        let max_new_tokens = if let Some(n) = caller.int("max_new_tokens") {
            n
        } else if let Some(len) = caller.int("max_length") {
            max_length(len)?
        } else if let Some(n) = defaults.int("max_new_tokens") {
            n
        } else {
            let len = defaults.int("max_length").unwrap_or_else(|| table("max_length").parse().unwrap_or(20));
            // transformers 4.57 (`_prepare_generated_length`): a max_length left at its default
            // of 20 is counted from the end of the decoder input (start token and prefix): 20
            // new tokens.
            if len == 20 {
                20
            } else {
                max_length(len)?
            }
        };
        // A min_new_tokens, where set, replaces min_length (transformers: it takes precedence).
        let min_new_tokens = s.int("min_new_tokens").unwrap_or_else(|| int("min_length") - 1 - prefix_len).max(0);

        let num_beams = int("num_beams") as usize;
        let num_return_sequences = int("num_return_sequences") as usize;
        if num_return_sequences > num_beams && !flag("do_sample") {
            return Err(Error::invalid_param(
                "num_return_sequences",
                format!("{num_return_sequences} is more than num_beams ({num_beams}); greedy and beam search return at most num_beams sequences"),
            ));
        }
        let do_sample = flag("do_sample");
        if do_sample && num_beams > 1 {
            return Err(Error::invalid_param("do_sample", "beam sampling (do_sample with num_beams > 1) is not supported"));
        }
        if do_sample && num_return_sequences > 1 {
            return Err(Error::invalid_param(
                "num_return_sequences",
                "sampling returns one sequence per input; repeat the input to draw several",
            ));
        }
        let early_stopping = match (s.bool("early_stopping"), s.str("early_stopping")) {
            (Some(true), _) => EarlyStopping::True,
            (_, Some("never")) => EarlyStopping::Never,
            _ => EarlyStopping::False,
        };
        let eos_token_ids = tokens("eos_token_id")?;
        let pad_token_id = token("pad_token_id")?.or(eos_token_ids.first().copied()).unwrap_or(0);
        let decoder_start_token_id = token("decoder_start_token_id")?.or(token("bos_token_id")?).ok_or_else(|| {
            Error::invalid_param("decoder_start_token_id", "the model defines no decoder start token; set decoder_start_token_id")
        })?;

        let bad_words_ids = s
            .int_lists("bad_words_ids")
            .unwrap_or(&[])
            .iter()
            .map(|seq| seq.iter().map(|&id| checked_token("bad_words_ids", id, vocab_size)).collect::<Result<Vec<u32>>>())
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|seq| !(seq.len() == 1 && eos_token_ids.contains(&seq[0])))
            .collect();
        Ok(Self {
            max_new_tokens: max_new_tokens.max(1) as usize,
            min_new_tokens: min_new_tokens as usize,
            num_beams,
            num_return_sequences,
            length_penalty: float("length_penalty"),
            early_stopping,
            do_sample,
            temperature: float("temperature"),
            top_k: int("top_k") as usize,
            top_p: float("top_p"),
            seed: s.int("seed").map(|v| v as u64),
            repetition_penalty: float("repetition_penalty"),
            no_repeat_ngram_size: int("no_repeat_ngram_size") as usize,
            eos_token_ids,
            pad_token_id,
            forced_bos_token_id: token("forced_bos_token_id")?,
            forced_eos_token_ids: tokens("forced_eos_token_id")?,
            decoder_start_token_id,
            suppress_tokens: tokens("suppress_tokens")?,
            bad_words_ids,
            begin_suppress_tokens: tokens("begin_suppress_tokens")?,
            decoder_prefix,
            stop_strings: s.str_list("stop_strings").map(<[String]>::to_vec).unwrap_or_default(),
            max_input_tokens: s.int("max_input_tokens").map(|v| v as usize),
            truncate_input: flag("truncate_input"),
        })
    }

    pub fn is_eos(&self, token: u32) -> bool {
        self.eos_token_ids.contains(&token)
    }
}

/// `decoder_prefix`, or the caller's `forced_decoder_ids` when they force positions 1, 2, ... in
/// order (what the older transformers did with them; 4.57 reads neither from a model's config).
fn decoder_prefix(caller: &Settings, vocab_size: usize) -> Result<Vec<u32>> {
    let prefix = caller.int_list("decoder_prefix");
    let forced = caller.int_lists("forced_decoder_ids");
    let ids: Vec<i64> = match (prefix, forced) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_param("forced_decoder_ids", "set decoder_prefix or forced_decoder_ids, not both"));
        }
        (Some(p), None) => p.to_vec(),
        (None, Some(pairs)) => {
            for (i, pair) in pairs.iter().enumerate() {
                if pair[0] != i as i64 + 1 {
                    return Err(Error::invalid_param(
                        "forced_decoder_ids",
                        format!(
                            "entry {i} forces position {}; only positions 1, 2, ... in order (a decoder prefix) are supported, as transformers 4.57 supports decoder_input_ids only",
                            pair[0]
                        ),
                    ));
                }
            }
            pairs.iter().map(|p| p[1]).collect()
        }
        (None, None) => Vec::new(),
    };
    let key = if forced.is_some() { "forced_decoder_ids" } else { "decoder_prefix" };
    if ids.len() > 1 << 16 {
        return Err(Error::invalid_param(key, format!("{} tokens is longer than the 65536 allowed", ids.len())));
    }
    ids.iter().map(|&id| checked_token(key, id, vocab_size)).collect()
}

fn checked_token(key: &str, id: i64, vocab_size: usize) -> Result<u32> {
    if id < 0 || id as usize >= vocab_size {
        return Err(Error::invalid_param(key, format!("token id {id} is outside the vocabulary (0..{vocab_size})")));
    }
    Ok(id as u32)
}
