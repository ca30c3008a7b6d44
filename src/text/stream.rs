//! Streaming detokenization: text pieces that are always valid UTF-8 (a character split over
//! several byte tokens comes out whole) and never show a stop string or a prefix of one.

use crate::error::Result;

/// Finds stop strings in generated text.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.to_vec() }
    }

    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// Byte offset of the earliest stop string in `text`.
    pub fn find(&self, text: &str) -> Option<usize> {
        self.find_ending_after(text, 0)
    }

    /// Byte offset of the earliest stop string in `text` that ends past byte `min_end` (what a
    /// decoder prefix wrote cannot stop a generation: transformers matches stop strings at the
    /// end of the sequence as it grows).
    pub fn find_ending_after(&self, text: &str, min_end: usize) -> Option<usize> {
        self.stops.iter().filter_map(|s| text.match_indices(s.as_str()).map(|(at, _)| at).find(|at| at + s.len() > min_end)).min()
    }

    /// Length of the longest prefix of `text` that cannot become part of a stop string.
    pub fn safe_len(&self, text: &str) -> usize {
        let mut safe = text.len();
        for stop in &self.stops {
            for (i, _) in text.char_indices().rev().take(stop.chars().count()) {
                if stop.starts_with(&text[i..]) {
                    safe = safe.min(i);
                }
            }
        }
        safe
    }
}

/// Text of one sequence, growing token by token.
pub struct TextStream {
    ids: Vec<u32>,
    /// Decoded text of `ids` up to the last point where it cannot change any more: not inside a
    /// run of byte-fallback tokens, not ending in an incomplete character.
    text: String,
    /// What was handed out so far (always a prefix of `text`).
    emitted: String,
    /// Bytes of `text` that a decoder prefix wrote: no stop string ends within them.
    protected: usize,
}

impl Default for TextStream {
    fn default() -> Self {
        Self::new()
    }
}

impl TextStream {
    pub fn new() -> Self {
        Self { ids: Vec::new(), text: String::new(), emitted: String::new(), protected: 0 }
    }

    /// Adds a token; returns the position of a stop string if the text now holds one.
    pub fn push(&mut self, tokenizer: &crate::text::Tokenizer, id: u32, stops: &StopMatcher) -> Result<Option<usize>> {
        self.ids.push(id);
        if let Some(text) = tokenizer.decode_partial(&self.ids)? {
            self.text = text;
        }
        Ok(if stops.is_empty() { None } else { stops.find_ending_after(&self.text, self.protected) })
    }

    /// The text so far came from a decoder prefix: stop strings must end after it.
    pub fn protect_text_so_far(&mut self) {
        self.protected = self.text.len();
    }

    /// The text not yet emitted that is safe to show now.
    pub fn take_piece(&mut self, stops: &StopMatcher) -> Option<String> {
        let end = stops.find_ending_after(&self.text, self.protected).unwrap_or(usize::MAX).min(stops.safe_len(&self.text));
        self.piece_until(end)
    }

    /// Everything left at the end of `final_text` (the sequence's decoded text).
    pub fn finish(&mut self, final_text: &str) -> Option<String> {
        self.text = final_text.to_string();
        self.piece_until(self.text.len())
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    fn piece_until(&mut self, end: usize) -> Option<String> {
        let start = self.emitted.len();
        if end <= start || !self.text.is_char_boundary(end) || !self.text.starts_with(self.emitted.as_str()) {
            return None;
        }
        let piece = self.text[start..end].to_string();
        self.emitted.push_str(&piece);
        Some(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_matcher_holds_back_prefixes() {
        let m = StopMatcher::new(&["###".to_string(), "\nUser:".to_string()]);
        assert_eq!(m.safe_len("hello #"), 6);
        assert_eq!(m.safe_len("hello ##"), 6);
        assert_eq!(m.safe_len("hello\nUs"), 5);
        assert_eq!(m.safe_len("hello"), 5);
        assert_eq!(m.find("a ### b"), Some(2));
        assert_eq!(m.find("abc"), None);
    }
}
