//! ByT5's tokenizer: UTF-8 bytes shifted past the special tokens, as transformers' `ByT5Tokenizer`
//! (Python code; no `tokenizer.json` exists for it). Read from `tokenizer_config.json`'s
//! `added_tokens_decoder`, or from the older layout (`special_tokens_map.json`, `extra_ids`,
//! `added_tokens.json`).

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value as Json;

use crate::error::{Error, Result};

/// The 256 byte values follow the ids below this (`<pad>`, `</s>`, `<unk>`).
const OFFSET: u32 = 3;
const BYTE_END: u32 = OFFSET + 256;

#[derive(Debug, Clone)]
struct AddedToken {
    content: String,
    id: u32,
    lstrip: bool,
    rstrip: bool,
    special: bool,
}

#[derive(Debug)]
pub struct ByteTokenizer {
    /// Longest content first, so that matching takes the longest token at a position.
    added: Vec<AddedToken>,
    by_id: HashMap<u32, usize>,
    /// First bytes of the added tokens: only there can one start.
    starts: [bool; 256],
    eos: u32,
    id_bound: usize,
    /// The file that describes it: tokenizer_config.json, or config.json where that is missing.
    source_file: &'static str,
}

/// One piece of the input: an added token's id, or text to split into bytes.
enum Piece<'a> {
    Added(u32),
    Text(&'a str, usize),
}

impl ByteTokenizer {
    /// True when the directory's tokenizer is ByT5's (named in tokenizer_config.json or config.json).
    pub fn is_byt5(dir: &Path) -> bool {
        ["tokenizer_config.json", "config.json"].iter().any(|f| {
            read_json(&dir.join(f)).ok().and_then(|v| v.get("tokenizer_class").and_then(Json::as_str).map(str::to_owned))
                == Some("ByT5Tokenizer".into())
        })
    }

    pub fn from_dir(dir: &Path) -> Result<Self> {
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.exists() { read_json(&config_path)? } else { Json::Null };
        let added = match config.get("added_tokens_decoder").and_then(Json::as_object) {
            Some(decoder) => decoder
                .iter()
                .map(|(id, t)| {
                    let id = id
                        .parse::<u32>()
                        .map_err(|_| Error::invalid_model(&config_path, format!("added_tokens_decoder: `{id}` is not a token id")))?;
                    let content = t
                        .get("content")
                        .and_then(Json::as_str)
                        .ok_or_else(|| Error::invalid_model(&config_path, format!("added_tokens_decoder: token {id} has no content")))?;
                    let flag = |k: &str| t.get(k).and_then(Json::as_bool).unwrap_or(false);
                    Ok(AddedToken {
                        content: content.to_owned(),
                        id,
                        lstrip: flag("lstrip"),
                        rstrip: flag("rstrip"),
                        special: flag("special"),
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            None => legacy_added_tokens(dir, &config)?,
        };
        let eos = token_name(&config, "eos_token").unwrap_or_else(|| "</s>".into());
        let mut tokenizer = Self::new(added, &eos, &config_path)?;
        if !config_path.exists() {
            tokenizer.source_file = "config.json";
        }
        Ok(tokenizer)
    }

    fn new(mut added: Vec<AddedToken>, eos_name: &str, path: &Path) -> Result<Self> {
        for t in &added {
            if t.content.is_empty() {
                return Err(Error::invalid_model(path, format!("added token {} is empty", t.id)));
            }
            if (OFFSET..BYTE_END).contains(&t.id) {
                return Err(Error::invalid_model(
                    path,
                    format!("added token `{}` has id {}, which is a byte's ({OFFSET}..{BYTE_END})", t.content, t.id),
                ));
            }
        }
        let eos =
            added.iter().find(|t| t.content == eos_name).map(|t| t.id).ok_or_else(|| {
                Error::invalid_model(path, format!("the end-of-sequence token `{eos_name}` is not among the added tokens"))
            })?;
        added.sort_by(|a, b| b.content.len().cmp(&a.content.len()).then(a.id.cmp(&b.id)));
        let by_id = added.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
        let id_bound = added.iter().map(|t| t.id as usize + 1).max().unwrap_or(0).max(BYTE_END as usize);
        let mut starts = [false; 256];
        for t in &added {
            starts[usize::from(t.content.as_bytes()[0])] = true;
        }
        Ok(Self { added, by_id, starts, eos, id_bound, source_file: "tokenizer_config.json" })
    }

    pub fn id_bound(&self) -> usize {
        self.id_bound
    }

    pub fn source_file(&self) -> &'static str {
        self.source_file
    }

    pub fn is_byte_token(&self, id: u32) -> bool {
        (OFFSET..BYTE_END).contains(&id)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        if let Some(t) = self.added.iter().find(|t| t.content == token) {
            return Some(t.id);
        }
        // transformers names byte b by the character chr(b)
        let mut chars = token.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if (c as u32) < 256 => Some(OFFSET + c as u32),
            _ => None,
        }
    }

    /// Every token by name: the added tokens (bytes have no names of their own).
    pub fn added_tokens(&self) -> impl Iterator<Item = (u32, &str)> {
        self.added.iter().map(|t| (t.id, t.content.as_str()))
    }

    /// Ids without special tokens added, and each id's byte span in `text`.
    pub fn encode_plain(&self, text: &str) -> (Vec<u32>, super::tokenizer::Offsets) {
        let mut ids = Vec::with_capacity(text.len());
        let mut offsets = Vec::with_capacity(text.len());
        for piece in self.split(text) {
            match piece {
                Piece::Added(id) => {
                    ids.push(id);
                    let at = offsets.last().map_or(0, |o: &(usize, usize)| o.1);
                    offsets.push((at, at));
                }
                Piece::Text(t, start) => {
                    for (i, b) in t.bytes().enumerate() {
                        ids.push(OFFSET + u32::from(b));
                        offsets.push((start + i, start + i + 1));
                    }
                }
            }
        }
        (ids, offsets)
    }

    /// Ids with `</s>` appended unless the input already ends with it (transformers warns then).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let (mut ids, _) = self.encode_plain(text);
        self.add_eos(&mut ids);
        ids
    }

    pub fn add_eos(&self, ids: &mut Vec<u32>) {
        if ids.last() != Some(&self.eos) {
            ids.push(self.eos);
        }
    }

    /// `decode(ids, skip_special_tokens=True)`: bytes that are not valid UTF-8 are dropped
    /// (`errors="ignore"`); a non-special added token is its own piece, pieces joined by a space.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut pieces: Vec<String> = Vec::new();
        let mut bytes = Vec::new();
        for &id in ids {
            if self.is_byte_token(id) {
                bytes.push((id - OFFSET) as u8);
            } else if let Some(t) = self.by_id.get(&id).map(|&i| &self.added[i]) {
                if !t.special {
                    // transformers' _decode keeps the text before an added token only when it
                    // is not empty
                    let before = utf8_ignoring_errors(&std::mem::take(&mut bytes));
                    if !before.is_empty() {
                        pieces.push(before);
                    }
                    pieces.push(t.content.clone());
                }
            }
        }
        if !bytes.is_empty() || pieces.is_empty() {
            pieces.push(utf8_ignoring_errors(&bytes));
        }
        pieces.join(" ")
    }

    /// True when the ids end inside a character whose remaining bytes may still come.
    pub fn ends_mid_character(&self, ids: &[u32]) -> bool {
        let tail: Vec<u8> = ids.iter().rev().take_while(|&&id| self.is_byte_token(id)).take(3).map(|&id| (id - OFFSET) as u8).collect();
        let tail: Vec<u8> = tail.into_iter().rev().collect();
        (1..=tail.len()).any(|n| is_incomplete_character(&tail[tail.len() - n..]))
    }

    /// The text cut at added tokens (longest match first, earliest position), with the white space
    /// an `lstrip`/`rstrip` token takes from its neighbours.
    fn split<'a>(&self, text: &'a str) -> Vec<Piece<'a>> {
        let mut pieces = Vec::new();
        let mut rest_start = 0;
        let mut i = 0;
        let mut strip_left_of_next = false;
        while i < text.len() {
            let found = if self.starts[usize::from(text.as_bytes()[i])] {
                self.added.iter().find(|t| text[i..].starts_with(t.content.as_str()))
            } else {
                None
            };
            match found {
                Some(t) => {
                    let mut before = &text[rest_start..i];
                    if strip_left_of_next {
                        before = before.trim_start_matches(is_python_space);
                    }
                    if t.lstrip {
                        before = before.trim_end_matches(is_python_space);
                    }
                    if !before.is_empty() {
                        let start = before.as_ptr() as usize - text.as_ptr() as usize;
                        pieces.push(Piece::Text(before, start));
                    }
                    pieces.push(Piece::Added(t.id));
                    i += t.content.len();
                    rest_start = i;
                    strip_left_of_next = t.rstrip;
                }
                None => i += text[i..].chars().next().map_or(1, char::len_utf8),
            }
        }
        let mut last = &text[rest_start..];
        if strip_left_of_next {
            last = last.trim_start_matches(is_python_space);
        }
        if !last.is_empty() {
            let start = last.as_ptr() as usize - text.as_ptr() as usize;
            pieces.push(Piece::Text(last, start));
        }
        pieces
    }
}

/// Python's `str.isspace` (which also counts the ASCII separators U+001C..U+001F).
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn utf8_ignoring_errors(bytes: &[u8]) -> String {
    bytes.utf8_chunks().map(|chunk| chunk.valid()).collect()
}

/// `bytes` is the start of a multi-byte UTF-8 character that lacks its last bytes.
fn is_incomplete_character(bytes: &[u8]) -> bool {
    let need = match bytes.first() {
        Some(0xC2..=0xDF) => 2,
        Some(0xE0..=0xEF) => 3,
        Some(0xF0..=0xF4) => 4,
        _ => return false,
    };
    if bytes.len() >= need {
        return false;
    }
    // Every byte after the first must be a continuation that a valid character could have there.
    let mut padded = bytes.to_vec();
    padded.resize(need, 0x80);
    let second_ok = match bytes[0] {
        0xE0 => padded[1] >= 0xA0,
        0xED => padded[1] <= 0x9F,
        0xF0 => padded[1] >= 0x90,
        0xF4 => padded[1] <= 0x8F,
        _ => true,
    };
    let tail_ok = bytes[1..].iter().all(|b| (0x80..=0xBF).contains(b));
    second_ok && tail_ok
}

/// The added tokens of a tokenizer saved before `added_tokens_decoder` existed: `<pad>`, `</s>`,
/// `<unk>` at 0..3 (lstrip and rstrip), then `additional_special_tokens` (or `extra_ids`
/// `<extra_id_N>`) from 259 on, then `added_tokens.json`.
fn legacy_added_tokens(dir: &Path, config: &Json) -> Result<Vec<AddedToken>> {
    let map_path = dir.join("special_tokens_map.json");
    let map = if map_path.exists() { read_json(&map_path)? } else { Json::Null };
    let named = |key: &str, default: &str| -> String {
        token_name(config, key).or_else(|| token_name(&map, key)).unwrap_or_else(|| default.to_owned())
    };
    let mut added: Vec<AddedToken> = [("pad_token", "<pad>"), ("eos_token", "</s>"), ("unk_token", "<unk>")]
        .iter()
        .enumerate()
        .map(|(id, (key, default))| AddedToken { content: named(key, default), id: id as u32, lstrip: true, rstrip: true, special: true })
        .collect();
    let listed = config.get("additional_special_tokens").or_else(|| map.get("additional_special_tokens"));
    let extra: Vec<String> = match listed.and_then(Json::as_array) {
        Some(list) => list
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned).or_else(|| t.get("content").and_then(Json::as_str).map(str::to_owned)))
            .collect(),
        None => {
            let n = config.get("extra_ids").and_then(Json::as_u64).unwrap_or(125).min(100_000);
            (0..n).map(|i| format!("<extra_id_{i}>")).collect()
        }
    };
    let mut next = BYTE_END;
    for content in extra {
        if !added.iter().any(|t| t.content == content) {
            added.push(AddedToken { content, id: next, lstrip: false, rstrip: false, special: true });
            next += 1;
        }
    }
    let extra_path = dir.join("added_tokens.json");
    if extra_path.exists() {
        let tokens = read_json(&extra_path)?;
        for (content, id) in tokens.as_object().into_iter().flatten() {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| Error::invalid_model(&extra_path, format!("`{content}` has no token id")))?;
            if !added.iter().any(|t| t.content == *content || t.id == id) {
                added.push(AddedToken { content: content.clone(), id, lstrip: false, rstrip: false, special: false });
            }
        }
    }
    Ok(added)
}

/// A special token's text, given as a string or as `{"content": ...}`.
fn token_name(config: &Json, key: &str) -> Option<String> {
    match config.get(key) {
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Object(o)) => o.get("content").and_then(Json::as_str).map(str::to_owned),
        _ => None,
    }
}

fn read_json(path: &Path) -> Result<Json> {
    let text = crate::files::read_text_limited(path, crate::files::CONFIG_LIMIT).map_err(|e| Error::invalid_model(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| Error::invalid_model(path, format!("not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn byt5() -> ByteTokenizer {
        legacy_added_tokens(Path::new("/nonexistent"), &Json::Null)
            .and_then(|added| ByteTokenizer::new(added, "</s>", Path::new("tokenizer_config.json")))
            .unwrap()
    }

    #[test]
    fn encodes_as_transformers() {
        let t = byt5();
        // from transformers 4.57's ByT5Tokenizer
        assert_eq!(
            t.encode("héllo 😀 </s> <extra_id_0> x"),
            vec![107, 198, 172, 111, 111, 114, 35, 243, 162, 155, 131, 1, 259, 35, 123, 1]
        );
        assert_eq!(t.encode("a</s>"), vec![100, 1]);
        assert_eq!(t.encode("a <pad>b"), vec![100, 0, 101, 1]);
        assert_eq!(t.encode(" <unk> "), vec![2, 1]);
        assert_eq!(t.id_bound(), 384);
    }

    #[test]
    fn decodes_dropping_invalid_bytes() {
        let t = byt5();
        assert_eq!(t.decode(&[3 + 0xe4, 3 + 0xb8, 104 + 3, 3 + 0xff, 1, 260, 3 + 0x68]), "hh");
        assert_eq!(t.decode(&[]), "");
    }

    #[test]
    fn a_non_special_added_token_is_its_own_piece() {
        let mut added = legacy_added_tokens(Path::new("/nonexistent"), &Json::Null).unwrap();
        added.push(AddedToken { content: "<sep>".into(), id: 400, lstrip: false, rstrip: false, special: false });
        let t = ByteTokenizer::new(added, "</s>", Path::new("tokenizer_config.json")).unwrap();
        // as transformers' _decode: pieces joined by spaces, an empty piece before it left out
        assert_eq!(t.decode(&[3 + 0x61, 400, 3 + 0x62]), "a <sep> b");
        assert_eq!(t.decode(&[3 + 0xff, 400, 3 + 0x62]), "<sep> b");
        assert_eq!(t.token_to_id("é"), Some(3 + 0xe9));
        assert_eq!(t.token_to_id("<sep>"), Some(400));
    }

    #[test]
    fn tells_an_unfinished_character() {
        let t = byt5();
        let ids = |b: &[u8]| b.iter().map(|&b| OFFSET + u32::from(b)).collect::<Vec<_>>();
        assert!(t.ends_mid_character(&ids("a😀".as_bytes().split_last().unwrap().1)));
        assert!(t.ends_mid_character(&ids(&[0xe4])));
        assert!(!t.ends_mid_character(&ids("a😀".as_bytes())));
        assert!(!t.ends_mid_character(&ids(&[0xff])));
        assert!(!t.ends_mid_character(&ids(&[0xe4, 0x41])));
        assert!(!t.ends_mid_character(&ids(&[0xed, 0xa0]))); // a surrogate can never complete
    }
}
