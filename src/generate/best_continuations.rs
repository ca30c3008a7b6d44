//! Beam search's candidate selection: of an input's beams, the `k` best continuations
//! (beam score plus token log-probability) over every beam's vocabulary, in one pass that skips
//! whole blocks of the vocabulary that cannot enter.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Scores tested at once against the worst kept continuation (a compare the compiler vectorizes).
const BLOCK: usize = 16;

/// Indices into `log_probs` (`beam_scores.len()` rows of `vocab`) of the `k` largest
/// `log_probs[i] + beam_scores[i / vocab]` (as `f32` sums), best first; among equal scores
/// (`f32::total_cmp`) the lower index first. Nothing of the vocabulary's size is allocated.
pub(crate) fn best_continuations(log_probs: &[f32], vocab: usize, beam_scores: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(log_probs.len());
    if k == 0 || vocab == 0 {
        return Vec::new();
    }
    let mut kept: BinaryHeap<Worst> = BinaryHeap::with_capacity(k + 1);
    for ((beam, row), &beam_score) in log_probs.chunks(vocab).enumerate().zip(beam_scores) {
        for (block, scores) in row.chunks(BLOCK).enumerate() {
            // Every index seen later is higher, so a continuation enters only with a score above
            // the worst kept one. `x + beam_score < worst` is false for NaN, which the slow path
            // then orders as `total_cmp` does.
            if let Some(worst) = kept.peek().filter(|_| kept.len() == k).map(|w| w.0) {
                if scores.iter().fold(true, |below, &x| below & (x + beam_score < worst)) {
                    continue;
                }
            }
            let first = beam * vocab + block * BLOCK;
            for (offset, &x) in scores.iter().enumerate() {
                let candidate = Worst(x + beam_score, first + offset);
                if kept.len() < k {
                    kept.push(candidate);
                } else if kept.peek().is_some_and(|w| candidate < *w) {
                    kept.pop();
                    kept.push(candidate);
                }
            }
        }
    }
    let mut best = kept.into_vec();
    best.sort();
    best.into_iter().map(|w| w.1).collect()
}

/// A continuation ordered worst first: lower score, then higher index.
#[derive(PartialEq)]
struct Worst(f32, usize);

impl Eq for Worst {}

impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

#[cfg(test)]
mod tests {
    use super::best_continuations;

    /// Every score computed and sorted: the definition the pass must equal.
    fn by_sorting(log_probs: &[f32], vocab: usize, beam_scores: &[f32], k: usize) -> Vec<usize> {
        let mut all: Vec<(f32, usize)> = log_probs.iter().enumerate().map(|(i, &x)| (x + beam_scores[i / vocab], i)).collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|(_, i)| i).collect()
    }

    #[test]
    fn orders_best_first_and_lower_index_among_equals() {
        assert_eq!(best_continuations(&[0.1, 0.5, -1.0, 0.5, 0.3], 5, &[0.0], 3), vec![1, 3, 4]);
        assert_eq!(best_continuations(&[1.0, 2.0], 2, &[0.0], 5), vec![1, 0]);
        assert_eq!(best_continuations(&[f32::NEG_INFINITY, 0.0, 0.0, f32::NEG_INFINITY], 4, &[0.0], 2), vec![1, 2]);
        // The beam's score counts: beam 1's worse token beats beam 0's best.
        assert_eq!(best_continuations(&[-1.0, -2.0, -3.0, -0.5], 2, &[-5.0, 0.0], 2), vec![3, 2]);
        assert!(best_continuations(&[], 4, &[], 3).is_empty());
    }

    #[test]
    fn equals_a_full_sort_over_many_shapes() {
        // A small deterministic generator: ties, -inf and blocks that straddle the rows.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..300 {
            let vocab = 1 + (next() % 70) as usize;
            let beams = 1 + (next() % 5) as usize;
            let k = 1 + (next() % 12) as usize;
            let log_probs: Vec<f32> = (0..vocab * beams)
                .map(|_| match next() % 10 {
                    0 => f32::NEG_INFINITY,
                    1 => -1.0,
                    _ => -((next() % 1000) as f32) / 97.0,
                })
                .collect();
            let beam_scores: Vec<f32> =
                (0..beams).map(|j| if j > 0 && case % 3 == 0 { -1.0e9 } else { -((next() % 50) as f32) / 7.0 }).collect();
            assert_eq!(
                best_continuations(&log_probs, vocab, &beam_scores, k),
                by_sorting(&log_probs, vocab, &beam_scores, k),
                "case {case}: {beams} beams of {vocab}, k {k}"
            );
        }
    }

    #[test]
    fn a_nan_is_ordered_as_total_cmp_orders_it() {
        let log_probs = [-1.0, f32::NAN, -0.5, -2.0, -3.0, -4.0, -5.0, -6.0];
        assert_eq!(best_continuations(&log_probs, 8, &[0.0], 2), by_sorting(&log_probs, 8, &[0.0], 2));
        let mut long = vec![-1.0f32; 40];
        long[33] = f32::NAN;
        assert_eq!(best_continuations(&long, 40, &[0.0], 3), by_sorting(&long, 40, &[0.0], 3));
    }
}
