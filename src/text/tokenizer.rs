//! The model's tokenizer (`tokenizer.json`, or ByT5's bytes), wrapped so that truncation is
//! explicit and reported.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tokenizers::TruncationDirection;

use super::bytes::ByteTokenizer;
use super::interrupt;
use crate::error::{Error, Result};

/// Each token's byte span in the text it came from.
pub type Offsets = Vec<(usize, usize)>;

/// Cheap to clone (the tokenizer itself is shared): an interruptible encode sends a clone to a
/// worker thread.
#[derive(Clone)]
pub struct Tokenizer {
    backend: Arc<Backend>,
    /// Largest token id the tokenizer can produce, plus one.
    id_bound: usize,
    clean_up_spaces: bool,
}

enum Backend {
    Json {
        inner: Box<tokenizers::Tokenizer>,
        /// Ids of byte-fallback tokens (`<0xE4>`), whose text depends on the bytes that follow.
        byte_tokens: Vec<bool>,
    },
    Bytes(Box<ByteTokenizer>),
}

/// One encoded input: its ids (special tokens included) and whether it was cut to fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Tokens counted (of a long prefix only, for inputs far over any limit).
    pub original_len: usize,
    pub truncated: bool,
}

impl Tokenizer {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.exists() && ByteTokenizer::is_byt5(dir) {
            let bytes = ByteTokenizer::from_dir(dir)?;
            return Ok(Self {
                id_bound: bytes.id_bound(),
                clean_up_spaces: read_clean_up_flag(dir),
                backend: Arc::new(Backend::Bytes(Box::new(bytes))),
            });
        }
        if !path.exists() {
            return Err(Error::ModelFileMissing {
                path,
                reason: "missing; export the tokenizer with the model (tools/export_model.py converts slow tokenizers)".into(),
            });
        }
        let bytes =
            crate::files::read_limited(&path, crate::files::TOKENIZER_LIMIT).map_err(|e| Error::invalid_model(&path, e.to_string()))?;
        let mut inner =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| Error::invalid_model(&path, format!("not a valid tokenizer: {e}")))?;
        drop(bytes);
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| Error::invalid_model(&path, format!("cannot disable truncation: {e}")))?;
        let id_bound = inner.get_vocab(true).values().max().map_or(0, |m| *m as usize + 1);
        let clean_up_spaces = read_clean_up_flag(dir);
        let mut byte_tokens = vec![false; id_bound];
        for (token, id) in inner.get_vocab(true) {
            let b = token.as_bytes();
            if b.len() == 6 && b.starts_with(b"<0x") && b[5] == b'>' && b[3..5].iter().all(u8::is_ascii_hexdigit) {
                byte_tokens[id as usize] = true;
            }
        }
        Ok(Self { backend: Arc::new(Backend::Json { inner: Box::new(inner), byte_tokens }), id_bound, clean_up_spaces })
    }

    /// What tokenizes: `tokenizer.json`, or `bytes` (ByT5's UTF-8 bytes, read by duet).
    pub fn kind(&self) -> &'static str {
        match &*self.backend {
            Backend::Json { .. } => "tokenizer.json",
            Backend::Bytes(_) => "bytes",
        }
    }

    /// The file the tokenizer was read from, for messages.
    pub fn file_name(&self) -> &'static str {
        match &*self.backend {
            Backend::Json { .. } => "tokenizer.json",
            Backend::Bytes(bytes) => bytes.source_file(),
        }
    }

    pub fn id_bound(&self) -> usize {
        self.id_bound
    }

    /// Token ids of `text` without the model's special tokens.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_plain_with_offsets(text)?.0)
    }

    /// Token ids of `text` without special tokens, and each one's byte span in `text`.
    pub fn encode_plain_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Offsets)> {
        self.under_limits(text, |t, text| t.plain_now(text))
    }

    /// `encode(self, text)` inline, or on the tokenizer pool under this thread's limits
    /// (`interrupt`); a panic in it is an error either way.
    fn under_limits<T: Send + 'static>(&self, text: &str, encode: impl Fn(&Tokenizer, &str) -> Result<T> + Send + 'static) -> Result<T> {
        match interrupt::current() {
            None => interrupt::caught(|| encode(self, text)),
            Some(check) => {
                let (this, text) = (self.clone(), text.to_owned());
                interrupt::interruptible(check, move || encode(&this, &text))
            }
        }
    }

    fn plain_now(&self, text: &str) -> Result<(Vec<u32>, Offsets)> {
        match &*self.backend {
            Backend::Json { inner, .. } => {
                let enc = inner.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
                Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
            }
            Backend::Bytes(bytes) => Ok(bytes.encode_plain(text)),
        }
    }

    /// Added tokens (special or not) by id.
    pub fn added_tokens(&self) -> Vec<(u32, String)> {
        match &*self.backend {
            Backend::Json { inner, .. } => inner.get_added_tokens_decoder().into_iter().map(|(id, t)| (id, t.content)).collect(),
            Backend::Bytes(bytes) => bytes.added_tokens().map(|(id, t)| (id, t.to_owned())).collect(),
        }
    }

    /// Every named token and its id (ByT5's bytes have no names: its added tokens only).
    pub fn vocab(&self) -> HashMap<String, u32> {
        match &*self.backend {
            Backend::Json { inner, .. } => inner.get_vocab(true),
            Backend::Bytes(bytes) => bytes.added_tokens().map(|(id, t)| (t.to_owned(), id)).collect(),
        }
    }

    /// The text of `ids` while they grow one at a time, or `None` while it can still change
    /// (inside a run of byte tokens, or ending in part of a character).
    pub fn decode_partial(&self, ids: &[u32]) -> Result<Option<String>> {
        match &*self.backend {
            Backend::Json { inner, byte_tokens } => {
                if ids.last().is_some_and(|&id| byte_tokens.get(id as usize).copied().unwrap_or(false)) {
                    return Ok(None);
                }
                let text = inner.decode(ids, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
                Ok((!text.ends_with('\u{FFFD}')).then_some(text))
            }
            Backend::Bytes(bytes) => Ok((!bytes.ends_mid_character(ids)).then(|| bytes.decode(ids))),
        }
    }

    /// Encodes with the model's special tokens. Inputs longer than `limit` are an error unless
    /// `truncate` is set; truncation keeps the special tokens, as `transformers` does. Under a
    /// call's limits ([`super::with_check`]) the encode stops early with their error.
    pub fn encode(&self, text: &str, limit: Option<usize>, truncate: bool, index: usize) -> Result<Encoded> {
        self.under_limits(text, move |t, text| t.encode_now(text, limit, truncate, index))
    }

    fn encode_now(&self, text: &str, limit: Option<usize>, truncate: bool, index: usize) -> Result<Encoded> {
        // ByT5's encoding is linear in the bytes: always the whole text.
        let inner = match &*self.backend {
            Backend::Json { inner, .. } => inner,
            Backend::Bytes(bytes) => return self.encode_bytes(bytes, text, limit, truncate, index),
        };
        let original = text;
        // Far longer than any limit: a prefix is tokenized first. When it still fits (a run of white
        // space, which makes no tokens, or very long tokens), the whole text is: nothing after the
        // prefix may be dropped without a word.
        let mut text = match limit {
            Some(limit) if text.len() > limit.saturating_mul(64).saturating_add(4096) => {
                prefix_at_space(text, limit.saturating_mul(64).saturating_add(4096))
            }
            _ => text,
        };
        let whole = |t: &str, special| inner.encode(t, special).map_err(|e| Error::Tokenizer(e.to_string()));
        let mut full = whole(text, true)?;
        if text.len() < original.len() && limit.is_some_and(|l| full.get_ids().len() <= l) {
            text = original;
            full = whole(text, true)?;
        }
        let encode = |special| whole(text, special);
        let original_len = full.get_ids().len();
        match limit {
            Some(limit) if original_len > limit => {
                if !truncate {
                    return Err(Error::InputTooLong { index, tokens: original_len, limit });
                }
                let mut plain = encode(false)?;
                let specials = original_len - plain.get_ids().len();
                plain.truncate(limit.saturating_sub(specials), 0, TruncationDirection::Right);
                let processed = inner.post_process(plain, None, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
                if processed.get_ids().len() > limit {
                    return Err(Error::invalid_param(
                        "max_input_tokens",
                        format!("{limit} tokens leave no room for the input beside the model's {specials} special tokens"),
                    ));
                }
                Ok(Encoded { ids: processed.get_ids().to_vec(), original_len, truncated: true })
            }
            _ => Ok(Encoded { ids: full.get_ids().to_vec(), original_len, truncated: false }),
        }
    }

    /// ByT5: one token per byte, `</s>` appended; truncation keeps it, as transformers does.
    fn encode_bytes(&self, bytes: &ByteTokenizer, text: &str, limit: Option<usize>, truncate: bool, index: usize) -> Result<Encoded> {
        let ids = bytes.encode(text);
        let original_len = ids.len();
        match limit {
            Some(limit) if original_len > limit => {
                if !truncate {
                    return Err(Error::InputTooLong { index, tokens: original_len, limit });
                }
                if limit == 0 {
                    return Err(Error::invalid_param("max_input_tokens", "0 tokens leave no room for the input beside </s>"));
                }
                let (mut plain, _) = bytes.encode_plain(text);
                plain.truncate(limit - 1);
                bytes.add_eos(&mut plain);
                Ok(Encoded { ids: plain, original_len, truncated: true })
            }
            _ => Ok(Encoded { ids, original_len, truncated: false }),
        }
    }

    /// Decodes without special tokens, as `tokenizer.decode(ids, skip_special_tokens=True)`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        interrupt::caught(|| self.decode_now(ids))
    }

    fn decode_now(&self, ids: &[u32]) -> Result<String> {
        let text = match &*self.backend {
            Backend::Json { inner, .. } => inner.decode(ids, true).map_err(|e| Error::Tokenizer(e.to_string()))?,
            Backend::Bytes(bytes) => bytes.decode(ids),
        };
        Ok(if self.clean_up_spaces { clean_up_tokenization(&text) } else { text })
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match &*self.backend {
            Backend::Json { inner, .. } => inner.token_to_id(token),
            Backend::Bytes(bytes) => bytes.token_to_id(token),
        }
    }
}

/// The longest prefix of at most `max` bytes that ends at white space (or a character boundary).
fn prefix_at_space(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match text[..end].rfind(char::is_whitespace) {
        Some(at) if at > max / 2 => &text[..at],
        _ => &text[..end],
    }
}

/// `clean_up_tokenization_spaces` from tokenizer_config.json (transformers applies it in Python).
fn read_clean_up_flag(dir: &Path) -> bool {
    crate::files::read_text_limited(&dir.join("tokenizer_config.json"), crate::files::CONFIG_LIMIT)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("clean_up_tokenization_spaces").and_then(|b| b.as_bool()))
        .unwrap_or(false)
}

/// transformers' `clean_up_tokenization`.
fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_up_matches_transformers() {
        assert_eq!(clean_up_tokenization("Hello , world ! I 'm here ."), "Hello, world! I'm here.");
    }
}
