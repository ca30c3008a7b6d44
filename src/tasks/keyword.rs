//! Keyword search for the index: BM25 (Robertson–Spärck Jones weights, k1 = 1.2, b = 0.75, the
//! Lucene/FTS5 form of idf) over the stored texts, kept as an inverted index by entry id.
//! Terms: lower-cased runs of letters and digits, less Lucene's English stop words; each CJK
//! ideograph, kana or hangul syllable is a term of its own (those scripts put no spaces between
//! words).

use std::collections::HashMap;

/// Lucene's `EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of", "on", "or", "such",
    "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with",
];

const K1: f64 = 1.2;
const B: f64 = 0.75;

#[derive(Default, Debug)]
pub struct Bm25 {
    /// term -> (entry id -> term frequency)
    postings: HashMap<String, HashMap<i64, u32>>,
    /// entry id -> number of terms
    lengths: HashMap<i64, u32>,
    total_terms: u64,
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x2FA1F) // extensions B..
}

/// The terms of `text`, in order.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let end_word = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() && !STOP_WORDS.contains(&word.as_str()) {
            out.push(std::mem::take(word));
        }
        word.clear();
    };
    for c in text.chars() {
        if is_cjk(c) {
            end_word(&mut word, &mut out);
            out.push(c.to_string());
        } else if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else {
            end_word(&mut word, &mut out);
        }
    }
    end_word(&mut word, &mut out);
    out
}

impl Bm25 {
    pub fn add(&mut self, id: i64, text: &str) {
        let terms = terms(text);
        self.lengths.insert(id, terms.len() as u32);
        self.total_terms += terms.len() as u64;
        for t in terms {
            *self.postings.entry(t).or_default().entry(id).or_insert(0) += 1;
        }
    }

    pub fn remove(&mut self, id: i64, text: &str) {
        if let Some(len) = self.lengths.remove(&id) {
            self.total_terms -= len as u64;
        }
        for t in terms(text) {
            if let Some(p) = self.postings.get_mut(&t) {
                p.remove(&id);
                if p.is_empty() {
                    self.postings.remove(&t);
                }
            }
        }
    }

    /// Entries matching any term of `query`, with their BM25 scores, best first (ties by id), at
    /// most `limit`.
    pub fn search(&self, query: &str, limit: usize) -> Vec<(i64, f64)> {
        let n = self.lengths.len() as f64;
        if n == 0.0 {
            return Vec::new();
        }
        let average = (self.total_terms as f64 / n).max(1.0);
        let mut query_terms = terms(query);
        query_terms.sort();
        query_terms.dedup();
        let mut scores: HashMap<i64, f64> = HashMap::new();
        for t in &query_terms {
            let Some(postings) = self.postings.get(t) else { continue };
            let df = postings.len() as f64;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for (&id, &tf) in postings {
                let tf = tf as f64;
                let len = self.lengths.get(&id).copied().unwrap_or(0) as f64;
                *scores.entry(id).or_insert(0.0) += idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / average));
            }
        }
        let mut hits: Vec<(i64, f64)> = scores.into_iter().collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(limit);
        hits
    }
}

/// Reciprocal rank fusion of ranked id lists: score = sum over lists of 1 / (k + rank), rank from
/// 1. Best first; ties keep the order of first appearance.
pub fn reciprocal_rank_fusion(lists: &[Vec<i64>], k: usize) -> Vec<(i64, f64)> {
    let mut scores: Vec<(i64, f64)> = Vec::new();
    let mut at: HashMap<i64, usize> = HashMap::new();
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            let add = 1.0 / (k as f64 + rank as f64 + 1.0);
            match at.get(id) {
                Some(&i) => scores[i].1 += add,
                None => {
                    at.insert(*id, scores.len());
                    scores.push((*id, add));
                }
            }
        }
    }
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_split_words_and_cjk() {
        assert_eq!(terms("Hello, World! libfoo-dev 2.0"), ["hello", "world", "libfoo", "dev", "2", "0"]);
        assert_eq!(terms("The clock is in sync"), ["clock", "sync"], "stop words are left out");
        assert_eq!(terms("中文分词 tool"), ["中", "文", "分", "词", "tool"]);
        assert_eq!(terms("Ünïcode ÉTÉ"), ["ünïcode", "été"]);
        assert!(terms("  ... ").is_empty());
    }

    #[test]
    fn bm25_ranks_rare_terms_and_short_documents_higher() {
        let mut b = Bm25::default();
        b.add(1, "library png images");
        b.add(2, "library jpeg images and png images and gif images with many more words here");
        b.add(3, "text editor");
        let hits = b.search("png library", 10);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 2], "the shorter match first; 3 does not match");
        assert!(b.search("editor", 10)[0] == (3, b.search("editor", 10)[0].1));
        b.remove(3, "text editor");
        assert!(b.search("editor", 10).is_empty());
        assert_eq!(b.lengths.len(), 2);
        // idf: a term in every document still scores above zero (the +1 inside the log).
        assert!(b.search("library", 10).iter().all(|h| h.1 > 0.0));
    }

    #[test]
    fn fusion_rewards_agreement() {
        let fused = reciprocal_rank_fusion(&[vec![1, 2, 3], vec![3, 1, 4]], 60);
        let ids: Vec<i64> = fused.iter().map(|f| f.0).collect();
        assert_eq!(ids, [1, 3, 2, 4]);
        assert!((fused[0].1 - (1.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-12);
    }
}
