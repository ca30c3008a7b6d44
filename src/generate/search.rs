//! Greedy decoding and sampling: one token per row per step, rows decoded together.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::output::{FinishReason, Flow, Sequence};
use super::processors::{log_softmax, softmax, RowContext};
use super::Request;
use crate::error::Result;
use crate::model::{EncoderOutput, KvCache};
use crate::text::TextStream;

struct Row {
    /// Decoder start token, then the generated tokens.
    ids: Vec<u32>,
    token_scores: Vec<f32>,
    finished: Option<FinishReason>,
    stream: TextStream,
}

pub(crate) fn run(req: &mut Request, mut encoder: EncoderOutput) -> Result<Vec<Vec<Sequence>>> {
    let p = req.params;
    let tokenizer = &req.model.tokenizer;
    let mut rng = StdRng::seed_from_u64(p.seed.unwrap_or_else(rand::random));
    let mut rows: Vec<Row> = (0..encoder.rows)
        .map(|_| Row { ids: vec![p.decoder_start_token_id], token_scores: Vec::new(), finished: None, stream: TextStream::new() })
        .collect();
    let mut cache = KvCache::default();
    let mut cancelled = false;
    // The rows still decoding, in batch order: finished rows leave the batch (transformers keeps
    // them, fed with padding; every row's own computation is the same either way).
    let mut active: Vec<usize> = (0..rows.len()).collect();

    for _ in 0..p.max_new_tokens {
        if req.observer.on_step() == Flow::Stop {
            cancelled = true;
            break;
        }
        let next: Vec<u32> = active.iter().map(|&r| *rows[r].ids.last().unwrap_or(&p.decoder_start_token_id)).collect();
        let logits = req.model.decoder()?.step(&next, &encoder, &mut cache)?;
        for (j, &i) in active.iter().enumerate() {
            let row = &mut rows[i];
            let mut scores = logits.row(j).to_vec();
            let ctx = RowContext { decoder_ids: &row.ids, generated: row.ids.len() - 1 };
            req.pipeline.process(&ctx, &mut scores);
            if scores.iter().all(|s| *s == f32::NEG_INFINITY) {
                return Err(super::nothing_to_generate(i, row.ids.len() - 1));
            }
            let token = if p.do_sample {
                req.pipeline.warp(&ctx, &mut scores);
                sample(&scores, &mut rng)
            } else {
                argmax(&scores)
            };
            row.token_scores.push(log_softmax(&scores)[token as usize]);
            row.ids.push(token);
            let stop = row.stream.push(tokenizer, token, &req.stops)?;
            if req.is_eos(token) {
                row.finished = Some(FinishReason::Eos);
            } else if stop.is_some() {
                row.finished = Some(FinishReason::StopString);
            }
            if let Some(piece) = row.stream.take_piece(&req.stops) {
                if req.observer.on_text(i, &piece, Some(token)) == Flow::Stop {
                    cancelled = true;
                    break;
                }
            }
        }
        let keep: Vec<usize> = (0..active.len()).filter(|&j| rows[active[j]].finished.is_none()).collect();
        if cancelled || keep.is_empty() {
            break;
        }
        if keep.len() < active.len() {
            encoder = encoder.select_rows(&keep, &req.model.decoder()?.rows)?;
            cache.select_rows(&keep, &req.model.decoder()?.rows)?;
            active = keep.iter().map(|&j| active[j]).collect();
        }
    }

    let mut out = Vec::with_capacity(rows.len());
    for (i, mut row) in rows.into_iter().enumerate() {
        let reason = row.finished.unwrap_or(if cancelled { FinishReason::Cancelled } else { FinishReason::Length });
        let generated = row.token_scores.len();
        let token_ids = row.ids[1..=generated].to_vec();
        let (text, _) = req.final_text(&token_ids)?;
        if !cancelled {
            if let Some(piece) = row.stream.finish(&text) {
                req.observer.on_text(i, &piece, None);
            }
        }
        out.push(vec![Sequence {
            score: row.token_scores.iter().sum(),
            token_ids,
            text,
            token_scores: row.token_scores,
            finish_reason: reason,
        }]);
    }
    Ok(out)
}

/// The first index of the largest score, as `torch.argmax`.
pub(crate) fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best as u32
}

fn sample(scores: &[f32], rng: &mut StdRng) -> u32 {
    let probs = softmax(scores);
    let mut target: f32 = rng.random::<f32>();
    let mut last_possible = 0;
    for (i, &pr) in probs.iter().enumerate() {
        if pr > 0.0 {
            last_possible = i;
            if target < pr {
                return i as u32;
            }
            target -= pr;
        }
    }
    last_possible as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    }

    #[test]
    fn sampling_never_picks_masked_tokens_and_is_seeded() {
        let scores = [f32::NEG_INFINITY, 0.0, 1.0, f32::NEG_INFINITY];
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..200).map(|_| sample(&scores, &mut rng)).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert!(a.iter().all(|&t| t == 1 || t == 2));
        let twos = a.iter().filter(|&&t| t == 2).count() as f32 / 200.0;
        assert!((twos - 0.731).abs() < 0.1, "{twos}");
    }
}
