//! Logits processors and sampling warpers, each a small piece, chained in `transformers`' order:
//! repetition penalty, no-repeat n-gram, bad words, minimum length, forced BOS/EOS, suppressed
//! tokens; then, when sampling, temperature, top-k, top-p. A piece exists only when its setting is
//! not neutral.

use super::normalizer::log_normalizer;
use super::params::GenerationParams;

/// What a processor may look at for one row.
pub struct RowContext<'a> {
    /// Decoder input so far: the start token, the decoder prefix, then the generated tokens.
    pub decoder_ids: &'a [u32],
    /// Tokens generated so far, after the prefix (`decoder_ids.len() - 1 - prefix`).
    pub generated: usize,
}

pub trait LogitsProcessor: Send + Sync {
    fn process(&self, row: &RowContext, scores: &mut [f32]);
}

pub struct RepetitionPenalty(pub f32);

impl LogitsProcessor for RepetitionPenalty {
    fn process(&self, row: &RowContext, scores: &mut [f32]) {
        // Read every score before writing, as transformers' gather/scatter does.
        let penalized: Vec<(usize, f32)> = row
            .decoder_ids
            .iter()
            .filter_map(|&t| scores.get(t as usize).map(|&s| (t as usize, if s < 0.0 { s * self.0 } else { s / self.0 })))
            .collect();
        for (t, s) in penalized {
            scores[t] = s;
        }
    }
}

pub struct NoRepeatNGram(pub usize);

impl LogitsProcessor for NoRepeatNGram {
    fn process(&self, row: &RowContext, scores: &mut [f32]) {
        let n = self.0;
        let ids = row.decoder_ids;
        if ids.len() + 1 < n {
            return;
        }
        let prefix = &ids[ids.len() + 1 - n..];
        for gram in ids.windows(n) {
            if &gram[..n - 1] == prefix {
                if let Some(s) = scores.get_mut(gram[n - 1] as usize) {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// `bad_words_ids`: the last token of a sequence is forbidden where the decoder input ends with
/// the rest of it (always, for one-token sequences), as transformers' NoBadWordsLogitsProcessor.
pub struct BadWords {
    single: Vec<u32>,
    /// (prefix, last token) of the longer sequences.
    longer: Vec<(Vec<u32>, u32)>,
}

impl BadWords {
    pub fn new(words: &[Vec<u32>]) -> Self {
        let single = words.iter().filter(|w| w.len() == 1).map(|w| w[0]).collect();
        let longer = words.iter().filter(|w| w.len() > 1).map(|w| (w[..w.len() - 1].to_vec(), w[w.len() - 1])).collect();
        Self { single, longer }
    }
}

impl LogitsProcessor for BadWords {
    fn process(&self, row: &RowContext, scores: &mut [f32]) {
        let ended_by = |prefix: &[u32]| row.decoder_ids.ends_with(prefix);
        let banned = self.single.iter().copied().chain(self.longer.iter().filter(|(p, _)| ended_by(p)).map(|(_, t)| *t));
        for t in banned {
            if let Some(s) = scores.get_mut(t as usize) {
                *s = f32::NEG_INFINITY;
            }
        }
    }
}

/// `begin_suppress_tokens`: forbidden while the decoder input has `decoder_len` tokens.
pub struct SuppressAtBegin {
    tokens: SuppressTokens,
    decoder_len: usize,
}

impl LogitsProcessor for SuppressAtBegin {
    fn process(&self, row: &RowContext, scores: &mut [f32]) {
        if row.decoder_ids.len() == self.decoder_len {
            self.tokens.process(row, scores);
        }
    }
}

/// Tokens that may never be generated (`suppress_tokens`).
pub struct SuppressTokens(pub Vec<u32>);

impl LogitsProcessor for SuppressTokens {
    fn process(&self, _: &RowContext, scores: &mut [f32]) {
        for &t in &self.0 {
            if let Some(s) = scores.get_mut(t as usize) {
                *s = f32::NEG_INFINITY;
            }
        }
    }
}

/// EOS is forbidden until `min_new_tokens` tokens exist.
pub struct MinNewTokens {
    pub min_new_tokens: usize,
    pub eos: Vec<u32>,
}

impl LogitsProcessor for MinNewTokens {
    fn process(&self, row: &RowContext, scores: &mut [f32]) {
        if row.generated < self.min_new_tokens {
            SuppressTokens(self.eos.clone()).process(row, scores);
        }
    }
}

fn force(tokens: &[u32], scores: &mut [f32]) {
    scores.fill(f32::NEG_INFINITY);
    for &t in tokens {
        if let Some(s) = scores.get_mut(t as usize) {
            *s = 0.0;
        }
    }
}

pub struct ForcedBos(pub u32);

impl LogitsProcessor for ForcedBos {
    /// Only right after the start token: never after a decoder prefix, as transformers.
    fn process(&self, row: &RowContext, scores: &mut [f32]) {
        if row.decoder_ids.len() == 1 {
            force(&[self.0], scores);
        }
    }
}

/// Forces EOS as the last token allowed by `max_new_tokens`.
pub struct ForcedEos {
    pub eos: Vec<u32>,
    pub max_new_tokens: usize,
}

impl LogitsProcessor for ForcedEos {
    fn process(&self, row: &RowContext, scores: &mut [f32]) {
        if row.generated + 1 == self.max_new_tokens {
            force(&self.eos, scores);
        }
    }
}

pub struct Temperature(pub f32);

impl LogitsProcessor for Temperature {
    fn process(&self, _: &RowContext, scores: &mut [f32]) {
        scores.iter_mut().for_each(|s| *s /= self.0);
    }
}

/// Keeps the `k` best scores (and ties with the k-th).
pub struct TopK(pub usize);

impl LogitsProcessor for TopK {
    fn process(&self, _: &RowContext, scores: &mut [f32]) {
        let k = self.0.clamp(1, scores.len());
        if k == scores.len() {
            return;
        }
        // The k-th largest score, from a heap of the k largest (no vocabulary-sized copy).
        let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<Ordered>> = std::collections::BinaryHeap::with_capacity(k + 1);
        for &s in scores.iter() {
            if heap.len() < k {
                heap.push(std::cmp::Reverse(Ordered(s)));
            } else if heap.peek().is_some_and(|m| Ordered(s) > m.0) {
                heap.pop();
                heap.push(std::cmp::Reverse(Ordered(s)));
            }
        }
        let kth = heap.peek().map_or(f32::NEG_INFINITY, |m| m.0 .0);
        scores.iter_mut().filter(|s| **s < kth).for_each(|s| *s = f32::NEG_INFINITY);
    }
}

/// An f32 ordered by `total_cmp`.
#[derive(Clone, Copy, PartialEq)]
struct Ordered(f32);

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Keeps the smallest set of best tokens whose probability reaches `p`.
pub struct TopP(pub f32);

impl LogitsProcessor for TopP {
    /// Sorts token ids in a buffer kept per thread (top-p needs the whole order), so that a step
    /// allocates nothing vocabulary-sized once the thread has run one.
    fn process(&self, _: &RowContext, scores: &mut [f32]) {
        thread_local! {
            static ORDER: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        ORDER.with(|order| {
            let mut order = order.borrow_mut();
            order.clear();
            order.extend(0..scores.len() as u32);
            order.sort_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]));
            let Some((max, log_sum)) = log_normalizer(scores) else { return };
            let mut cumulative = 0.0f32;
            let threshold = 1.0 - self.0;
            let last = order.len().saturating_sub(1);
            // Removal waits until every probability was read, as the sorted mask does.
            let mut cut = 0;
            for (rank, &i) in order.iter().enumerate() {
                cumulative += (scores[i as usize] - max - log_sum).exp();
                if cumulative <= threshold && rank < last {
                    cut = rank + 1;
                } else {
                    break;
                }
            }
            for &i in &order[..cut] {
                scores[i as usize] = f32::NEG_INFINITY;
            }
        });
    }
}

/// The processors and warpers one request needs.
pub struct Pipeline {
    processors: Vec<Box<dyn LogitsProcessor>>,
    warpers: Vec<Box<dyn LogitsProcessor>>,
}

impl Pipeline {
    pub fn new(p: &GenerationParams) -> Self {
        let mut processors: Vec<Box<dyn LogitsProcessor>> = Vec::new();
        if p.repetition_penalty != 1.0 {
            processors.push(Box::new(RepetitionPenalty(p.repetition_penalty)));
        }
        if p.no_repeat_ngram_size > 0 {
            processors.push(Box::new(NoRepeatNGram(p.no_repeat_ngram_size)));
        }
        if !p.bad_words_ids.is_empty() {
            processors.push(Box::new(BadWords::new(&p.bad_words_ids)));
        }
        if p.min_new_tokens > 0 && !p.eos_token_ids.is_empty() {
            processors.push(Box::new(MinNewTokens { min_new_tokens: p.min_new_tokens, eos: p.eos_token_ids.clone() }));
        }
        if let Some(bos) = p.forced_bos_token_id {
            processors.push(Box::new(ForcedBos(bos)));
        }
        if !p.forced_eos_token_ids.is_empty() {
            processors.push(Box::new(ForcedEos { eos: p.forced_eos_token_ids.clone(), max_new_tokens: p.max_new_tokens }));
        }
        if !p.suppress_tokens.is_empty() {
            processors.push(Box::new(SuppressTokens(p.suppress_tokens.clone())));
        }
        if !p.begin_suppress_tokens.is_empty() {
            // transformers: the begin index is the decoder input's length (start token and
            // prefix), one more when a first token is forced after the start token alone.
            let prefix = p.decoder_prefix.len();
            let at = 1 + prefix + usize::from(prefix == 0 && p.forced_bos_token_id.is_some());
            processors.push(Box::new(SuppressAtBegin { tokens: SuppressTokens(p.begin_suppress_tokens.clone()), decoder_len: at }));
        }
        let mut warpers: Vec<Box<dyn LogitsProcessor>> = Vec::new();
        if p.do_sample {
            if p.temperature != 1.0 {
                warpers.push(Box::new(Temperature(p.temperature)));
            }
            if p.top_k != 0 {
                warpers.push(Box::new(TopK(p.top_k)));
            }
            if p.top_p < 1.0 {
                warpers.push(Box::new(TopP(p.top_p)));
            }
        }
        Self { processors, warpers }
    }

    pub fn process(&self, row: &RowContext, scores: &mut [f32]) {
        self.processors.iter().for_each(|p| p.process(row, scores));
    }

    pub fn warp(&self, row: &RowContext, scores: &mut [f32]) {
        self.warpers.iter().for_each(|p| p.process(row, scores));
    }
}

pub fn log_softmax(scores: &[f32]) -> Vec<f32> {
    match log_normalizer(scores) {
        None => vec![f32::NEG_INFINITY; scores.len()],
        Some((max, log_sum)) => scores.iter().map(|&s| s - max - log_sum).collect(),
    }
}

/// `log_softmax(scores)[token]` without a vocabulary-sized vector (the same arithmetic).
pub fn log_prob(scores: &[f32], token: usize) -> f32 {
    match (log_normalizer(scores), scores.get(token)) {
        (Some((max, log_sum)), Some(&s)) => s - max - log_sum,
        _ => f32::NEG_INFINITY,
    }
}

pub fn softmax(scores: &[f32]) -> Vec<f32> {
    probabilities(scores).collect()
}

/// `softmax(scores)`, one value at a time.
pub fn probabilities(scores: &[f32]) -> impl Iterator<Item = f32> + '_ {
    let normalizer = log_normalizer(scores);
    scores.iter().map(move |&s| match normalizer {
        None => 0.0,
        Some((max, log_sum)) => (s - max - log_sum).exp(),
    })
}

/// `log_softmax`, in place.
pub fn log_softmax_in_place(scores: &mut [f32]) {
    match log_normalizer(scores) {
        None => scores.fill(f32::NEG_INFINITY),
        Some((max, log_sum)) => scores.iter_mut().for_each(|s| *s = *s - max - log_sum),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ids: &[u32]) -> RowContext<'_> {
        RowContext { decoder_ids: ids, generated: ids.len() - 1 }
    }

    #[test]
    fn repetition_penalty_scales_by_sign() {
        let mut s = vec![2.0, -2.0, 1.0];
        RepetitionPenalty(2.0).process(&row(&[0, 1, 1]), &mut s);
        assert_eq!(s, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn no_repeat_ngram_bans_seen_continuations() {
        let mut s = vec![0.0; 5];
        // bigrams seen: (0,1) (1,2) (2,1); last token 1 -> 2 is banned
        NoRepeatNGram(2).process(&row(&[0, 1, 2, 1]), &mut s);
        assert_eq!(s[2], f32::NEG_INFINITY);
        assert_eq!(s.iter().filter(|v| v.is_infinite()).count(), 1);
    }

    #[test]
    fn bad_words_ban_a_last_token_only_after_the_rest() {
        let words = BadWords::new(&[vec![1, 2], vec![3], vec![1, 1, 4]]);
        let banned = |ids: &[u32]| {
            let mut s = vec![0.0; 5];
            words.process(&row(ids), &mut s);
            (0..5).filter(|&i| s[i] == f32::NEG_INFINITY).collect::<Vec<_>>()
        };
        assert_eq!(banned(&[0]), vec![3]);
        assert_eq!(banned(&[0, 1]), vec![2, 3]);
        assert_eq!(banned(&[0, 1, 1]), vec![2, 3, 4]);
        assert_eq!(banned(&[0, 1, 2]), vec![3]);
    }

    #[test]
    fn eos_alone_is_not_a_bad_word_and_begin_suppression_waits_for_the_forced_token() {
        let mut caller = crate::tasks::new_generation_settings();
        caller.set_str("bad_words_ids", "[[1], [5, 1], [6]]").unwrap();
        caller.set_str("begin_suppress_tokens", "[7]").unwrap();
        caller.set_int("eos_token_id", 1).unwrap();
        caller.set_int("forced_bos_token_id", 3).unwrap();
        caller.set_int("decoder_start_token_id", 0).unwrap();
        let p = GenerationParams::resolve(&crate::tasks::new_generation_settings(), &caller, 10).unwrap();
        assert_eq!(p.bad_words_ids, vec![vec![5, 1], vec![6]]);
        let pipeline = Pipeline::new(&p);
        let scores_at = |ids: &[u32]| {
            let mut s = vec![0.0; 10];
            pipeline.process(&row(ids), &mut s);
            s
        };
        assert_eq!(scores_at(&[0, 3])[7], f32::NEG_INFINITY);
        assert_eq!(scores_at(&[0, 3, 4])[7], 0.0);
    }

    #[test]
    fn forced_tokens_and_min_length() {
        let mut s = vec![1.0; 4];
        ForcedBos(3).process(&row(&[0]), &mut s);
        assert_eq!(s, vec![f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0]);
        let mut s = vec![1.0; 4];
        ForcedEos { eos: vec![2], max_new_tokens: 3 }.process(&row(&[0, 1, 1]), &mut s);
        assert_eq!(s[2], 0.0);
        assert!(s[1].is_infinite());
        let mut s = vec![1.0; 4];
        MinNewTokens { min_new_tokens: 2, eos: vec![2] }.process(&row(&[0, 1]), &mut s);
        assert!(s[2].is_infinite());
        let mut s = vec![1.0; 4];
        MinNewTokens { min_new_tokens: 2, eos: vec![2] }.process(&row(&[0, 1, 1]), &mut s);
        assert_eq!(s[2], 1.0);
    }

    #[test]
    fn top_k_keeps_ties_and_top_p_keeps_the_nucleus() {
        let mut s = vec![1.0, 3.0, 3.0, 0.0];
        TopK(2).process(&row(&[0]), &mut s);
        assert_eq!(s, vec![f32::NEG_INFINITY, 3.0, 3.0, f32::NEG_INFINITY]);
        // probabilities ~ [0.64, 0.24, 0.09, 0.03]
        let mut s = vec![3.0, 2.0, 1.0, 0.0];
        TopP(0.8).process(&row(&[0]), &mut s);
        assert_eq!(s.iter().filter(|v| v.is_finite()).count(), 2);
        let mut s = vec![3.0, 2.0, 1.0, 0.0];
        TopP(0.5).process(&row(&[0]), &mut s);
        assert_eq!(s.iter().filter(|v| v.is_finite()).count(), 1);
    }

    #[test]
    fn log_prob_is_log_softmax_at_the_token() {
        let s = [1.0, -2.5, 3.25, f32::NEG_INFINITY, 0.5];
        let all = log_softmax(&s);
        for (t, want) in all.iter().enumerate() {
            assert_eq!(log_prob(&s, t).to_bits(), want.to_bits());
        }
        assert_eq!(log_prob(&[f32::NEG_INFINITY; 3], 1), f32::NEG_INFINITY);
    }

    #[test]
    fn log_softmax_normalizes() {
        let l = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f32 = l.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
