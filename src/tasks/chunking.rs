//! Splitting long text into sentences (Latin and CJK punctuation) and packing them into chunks
//! that fit a token budget, with a few sentences of overlap between neighbours.

use crate::error::{Error, Result};
use crate::text::{Encoded, Tokenizer};

/// Sentences of `text`, trimmed, in order. A sentence ends after `.!?;…` followed by white
/// space, after CJK `。！？；`, or at a line break. Nothing is dropped but white space.
pub fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let end = match c {
            '。' | '！' | '？' | '；' | '\n' => true,
            '.' | '!' | '?' | ';' | '…' => next.is_none_or(char::is_whitespace),
            _ => false,
        };
        if end {
            let stop = i + c.len_utf8();
            push_trimmed(&mut out, &text[start..stop]);
            start = stop;
        }
    }
    push_trimmed(&mut out, &text[start..]);
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let t = s.trim();
    if !t.is_empty() {
        out.push(t);
    }
}

/// A run of sentences that fits the budget; `first..last+1` indexes the sentence list.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub text: String,
    pub first: usize,
    pub last: usize,
    pub tokens: usize,
}

/// Token count of `text` without special tokens.
pub fn count_tokens(tokenizer: &Tokenizer, text: &str) -> Result<usize> {
    Ok(tokenizer.encode_plain(text)?.len())
}

/// Pieces of one over-long sentence, each at most `budget` tokens when tokenized alone, cut at
/// token boundaries. A piece re-tokenized alone can take a token more than its window did (a
/// merge at its edge), so over-budget pieces are cut again with a smaller window.
fn split_long(tokenizer: &Tokenizer, sentence: &str, budget: usize) -> Result<Vec<String>> {
    fn cut(tokenizer: &Tokenizer, text: &str, budget: usize, window: usize, out: &mut Vec<String>) -> Result<()> {
        for piece in cut_at_tokens(tokenizer, text, window)? {
            if window > 1 && count_tokens(tokenizer, &piece)? > budget {
                cut(tokenizer, &piece, budget, window / 2, out)?;
            } else {
                out.push(piece);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    cut(tokenizer, sentence, budget, budget.max(1), &mut out)?;
    Ok(out)
}

/// `text` cut into runs of `window` tokens.
fn cut_at_tokens(tokenizer: &Tokenizer, text: &str, window: usize) -> Result<Vec<String>> {
    let (_, offsets) = tokenizer.encode_plain_with_offsets(text)?;
    let mut pieces = Vec::new();
    let mut start_byte = 0;
    for run in offsets.chunks(window) {
        let mut end = run.last().map_or(text.len(), |o| o.1).min(text.len());
        while end < text.len() && !text.is_char_boundary(end) {
            end += 1;
        }
        if end > start_byte {
            pieces.push(text[start_byte..end].trim().to_string());
            start_byte = end;
        }
    }
    if start_byte < text.len() && !text[start_byte..].trim().is_empty() {
        pieces.push(text[start_byte..].trim().to_string());
    }
    Ok(pieces.into_iter().filter(|p| !p.is_empty()).collect())
}

/// The sentences of `text` (long ones cut to fit) and the chunks covering all of them in order.
/// Every chunk's text is at most `budget` tokens (a sentence that does not fit alone even after
/// cutting is the only exception: it becomes a chunk by itself). A chunk starts with up to
/// `overlap_tokens` of the previous chunk's last sentences, fewer when they would leave no room
/// for its first new sentence.
pub fn plan_chunks(tokenizer: &Tokenizer, text: &str, budget: usize, overlap_tokens: usize) -> Result<(Vec<String>, Vec<Chunk>)> {
    let mut sentences = Vec::new();
    for s in split_sentences(text) {
        if count_tokens(tokenizer, s)? > budget {
            sentences.extend(split_long(tokenizer, s, budget)?);
        } else {
            sentences.push(s.to_string());
        }
    }
    let counts = sentences.iter().map(|s| count_tokens(tokenizer, s)).collect::<Result<Vec<_>>>()?;
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut first = 0;
    let mut next = 0;
    while next < sentences.len() {
        // The first new sentence must fit beside the overlap: drop overlap sentences until it does.
        let (mut text, mut tokens) = loop {
            let text = sentences[first..=next].join(" ");
            let n = count_tokens(tokenizer, &text)?;
            if n <= budget || first == next {
                break (text, n);
            }
            first += 1;
        };
        let mut i = next + 1;
        while i < sentences.len() {
            let candidate = format!("{text} {}", sentences[i]);
            let n = count_tokens(tokenizer, &candidate)?;
            if n > budget {
                break;
            }
            text = candidate;
            tokens = n;
            i += 1;
        }
        chunks.push(Chunk { text, first, last: i - 1, tokens });
        next = i;
        // Overlap: the previous chunk's last sentences, within the overlap budget, never all of it.
        let mut back = next;
        let mut kept = 0;
        while back > first + 1 && kept + counts[back - 1] <= overlap_tokens {
            kept += counts[back - 1];
            back -= 1;
        }
        first = back;
    }
    Ok((sentences, chunks))
}

/// The chunks of `text`, each made into a model input by `encode` (a template, language tokens)
/// and refused by it with `InputTooLong` past `limit`. The budget counts the chunk text alone;
/// where an input still runs past the limit (a merge where text meets template), the chunks are
/// planned again with the budget cut by the excess.
pub fn encoded_chunks(
    tokenizer: &Tokenizer,
    text: &str,
    (limit, budget, overlap): (usize, usize, usize),
    mut encode: impl FnMut(&str) -> Result<Encoded>,
) -> Result<Vec<Encoded>> {
    let mut budget = budget;
    for _ in 0..8 {
        let (_, chunks) = plan_chunks(tokenizer, text, budget, overlap)?;
        let mut excess = 0;
        let mut inputs = Vec::with_capacity(chunks.len());
        for c in &chunks {
            match encode(&c.text) {
                Ok(e) => inputs.push(e),
                Err(Error::InputTooLong { tokens, limit, .. }) => excess = excess.max(tokens - limit),
                Err(e) => return Err(e),
            }
        }
        if excess == 0 {
            return Ok(inputs);
        }
        if budget <= excess + 1 {
            break;
        }
        budget -= excess + 1;
    }
    Err(Error::Internal(format!("chunks of the text do not fit the {limit}-token input limit")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_latin_and_cjk_sentences() {
        let s = split_sentences("Hello there. How are you?I am fine 3.5 times!\n今天很好。明天呢？好 ok");
        assert_eq!(s, vec!["Hello there.", "How are you?I am fine 3.5 times!", "今天很好。", "明天呢？", "好 ok"]);
        assert!(split_sentences("   \n ").is_empty());
    }
}
