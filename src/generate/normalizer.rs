//! The softmax normalizer of a row of logits (its maximum and log-sum-exp), the one pass over the
//! whole vocabulary that every step makes for every row. Written so that the compiler vectorizes
//! it: independent lanes, and an `exp` that is arithmetic (Cephes' `expf` polynomial, within
//! 2 ulp of `f32::exp`) instead of a libm call per score.

const LANES: usize = 16;
const BLOCK: usize = 1024;

/// The largest score, NaN ignored; -inf when there is none.
#[inline(always)]
pub fn max_score(scores: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = scores.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (m, &s) in lanes.iter_mut().zip(chunk) {
            *m = if s > *m { s } else { *m };
        }
    }
    lanes.iter().chain(rest).fold(f32::NEG_INFINITY, |m, &s| if s > m { s } else { m })
}

/// Greedy's choice: the first index of the largest score and its log-softmax, from one
/// normalizer pass; `None` when every score is -inf.
pub fn best_with_log_prob(scores: &[f32]) -> Option<(u32, f32)> {
    let (max, log_sum) = log_normalizer(scores)?;
    let token = scores.iter().position(|&s| s == max)?;
    Some((token as u32, scores[token] - max - log_sum))
}

/// The maximum and the log of the sum of `exp(s - max)`; `None` when every score is -inf.
pub fn log_normalizer(scores: &[f32]) -> Option<(f32, f32)> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, the one feature the function is compiled for. The same code
        // gives the same bits either way (no fused multiply-adds: Rust never contracts).
        return unsafe { log_normalizer_avx2(scores) };
    }
    log_normalizer_portable(scores)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn log_normalizer_avx2(scores: &[f32]) -> Option<(f32, f32)> {
    log_normalizer_portable(scores)
}

#[inline(always)]
fn log_normalizer_portable(scores: &[f32]) -> Option<(f32, f32)> {
    let max = max_score(scores);
    if max == f32::NEG_INFINITY {
        return None;
    }
    // Lanes of f32 sums over blocks of BLOCK scores (each lane adds BLOCK / LANES terms of at
    // most 1), flushed into an f64 total: f32 arithmetic in the loop, f64 accuracy across blocks.
    let mut total = 0f64;
    let blocks = scores.chunks(BLOCK);
    for block in blocks {
        let mut lanes = [0f32; LANES];
        let chunks = block.chunks_exact(LANES);
        let rest = chunks.remainder();
        for chunk in chunks {
            for (sum, &s) in lanes.iter_mut().zip(chunk) {
                *sum += exp_nonpositive(s - max);
            }
        }
        total += lanes.iter().map(|&l| l as f64).sum::<f64>() + rest.iter().map(|&s| exp_nonpositive(s - max) as f64).sum::<f64>();
    }
    Some((max, total.ln() as f32))
}

/// `exp(x)` for `x <= 0` (-inf and anything under f32's smallest normal give 0; NaN stays NaN).
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOWEST: f32 = -87.336_54; // ln(f32::MIN_POSITIVE)
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    const ROUNDER: f32 = 12_582_912.0;
    let under = x < LOWEST;
    let x = if under { LOWEST } else { x };
    let shifted = x * LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    let e = p * r * r + r + 1.0;
    let power = f32::from_bits(((shifted.to_bits() as i32 - ROUNDER.to_bits() as i32 + 127) << 23) as u32);
    if under {
        0.0
    } else {
        e * power
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (got, want) = (exp_nonpositive(x), x.exp());
            assert!((got - want).abs() <= 2.0 * f32::EPSILON * want, "exp({x}) = {got}, libm {want}");
            x += 0.0137;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-200.0), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn the_normalizer_matches_the_f64_reference() {
        let scores: Vec<f32> = (0..32_131).map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 0.037).collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let want = scores.iter().map(|&s| ((s - max) as f64).exp()).sum::<f64>().ln();
        let (got_max, got) = log_normalizer(&scores).unwrap();
        assert_eq!(got_max, max);
        assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        let mut masked = scores.clone();
        masked[..100].fill(f32::NEG_INFINITY);
        assert!(log_normalizer(&masked).is_some());
        assert_eq!(log_normalizer(&[f32::NEG_INFINITY; 40]), None);
    }

    #[test]
    fn greedy_picks_the_first_maximum_with_its_log_prob() {
        let scores = [0.5f32, 2.0, 2.0, -1.0, f32::NEG_INFINITY];
        let (token, score) = best_with_log_prob(&scores).unwrap();
        let want = 2.0 - scores.iter().map(|&s| (s as f64).exp()).sum::<f64>().ln();
        assert_eq!(token, 1);
        assert!((score as f64 - want).abs() < 1e-6);
        assert_eq!(best_with_log_prob(&[f32::NEG_INFINITY; 3]), None);
    }

    #[test]
    fn the_first_maximum_past_the_lanes() {
        let mut scores = vec![0.0f32; 100];
        scores[37] = 2.0;
        scores[90] = 2.0;
        assert_eq!(best_with_log_prob(&scores).unwrap().0, 37);
        scores[99] = 3.0;
        assert_eq!(best_with_log_prob(&scores).unwrap().0, 99);
        assert_eq!(best_with_log_prob(&[1.0, 3.0, 3.0, 2.0]).unwrap().0, 1);
        assert_eq!(max_score(&[f32::NAN, 1.0]), 1.0);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn both_paths_give_the_same_bits() {
        let scores: Vec<f32> = (0..5_003).map(|i| ((i * 31 % 977) as f32 - 400.0) * 0.05).collect();
        if std::is_x86_feature_detected!("avx2") {
            assert_eq!(unsafe { log_normalizer_avx2(&scores) }, log_normalizer_portable(&scores));
        }
    }
}
