//! Beam search, step for step as `transformers` 4.57 does it (`_beam_search`): processors act
//! on log-probabilities, the best `2 * num_beams` continuations are kept, a continuation that
//! ends (EOS, length limit, stop string) among the first `num_beams` becomes a finished
//! hypothesis scored `sum / generated_len ** length_penalty`, and `early_stopping` decides when
//! running beams can no longer beat the finished ones.

use super::output::{FinishReason, Flow, Sequence};
use super::params::EarlyStopping;
use super::processors::{log_softmax, RowContext};
use super::Request;
use crate::error::Result;
use crate::model::{EncoderOutput, KvCache};

/// transformers' stand-in for "no score".
const NONE: f32 = -1.0e9;

#[derive(Clone)]
struct Beam {
    /// Decoder start token, then the generated tokens.
    ids: Vec<u32>,
    token_scores: Vec<f32>,
    score: f32,
}

#[derive(Clone)]
struct Slot {
    score: f32,
    hypothesis: Option<Beam>,
}

struct Candidate {
    beam: usize,
    token: u32,
    score: f32,
    token_score: f32,
    hits_stop: bool,
}

struct Item {
    running: Vec<Beam>,
    /// Finished hypotheses, best first; unfilled slots score `NONE`.
    slots: Vec<Slot>,
    improvable: bool,
}

impl Item {
    fn all_finished(&self) -> bool {
        self.slots.iter().all(|s| s.hypothesis.is_some())
    }
}

pub(crate) fn run(req: &mut Request, encoder: EncoderOutput) -> Result<Vec<Vec<Sequence>>> {
    let p = req.params;
    let nb = p.num_beams;
    let items_count = encoder.rows;
    let encoder = encoder.repeat_rows(nb, &req.model.decoder()?.rows)?;
    let vocab = req.model.vocab_size();
    let keep = (nb * 2.max(1 + p.eos_token_ids.len())).min(nb * vocab);
    let mut items: Vec<Item> = (0..items_count)
        .map(|_| Item {
            running: (0..nb)
                .map(|j| Beam { ids: vec![p.decoder_start_token_id], token_scores: vec![], score: if j == 0 { 0.0 } else { NONE } })
                .collect(),
            slots: vec![Slot { score: NONE, hypothesis: None }; nb],
            improvable: true,
        })
        .collect();
    let mut cache = KvCache::default();
    let mut cancelled = false;

    for step in 0..p.max_new_tokens {
        if req.observer.on_step() == Flow::Stop {
            cancelled = true;
            break;
        }
        let tokens: Vec<u32> = items.iter().flat_map(|it| it.running.iter().map(|b| *b.ids.last().unwrap_or(&0))).collect();
        let logits = req.model.decoder()?.step(&tokens, &encoder, &mut cache)?;
        let generated = step + 1;
        let at_limit = generated == p.max_new_tokens;
        let mut reorder = Vec::with_capacity(items_count * nb);
        let mut any_continuation = false;

        for (b, item) in items.iter_mut().enumerate() {
            let mut scores = Vec::with_capacity(nb * vocab);
            let mut processed = Vec::with_capacity(nb);
            for (j, beam) in item.running.iter().enumerate() {
                let mut lp = log_softmax(logits.row(b * nb + j));
                req.pipeline.process(&RowContext { decoder_ids: &beam.ids, generated: step }, &mut lp);
                scores.extend(lp.iter().map(|&l| l + beam.score));
                processed.push(lp);
            }
            if item.improvable && processed.iter().all(|lp| lp.iter().all(|l| *l == f32::NEG_INFINITY)) {
                return Err(super::nothing_to_generate(b, step));
            }
            let mut candidates = Vec::with_capacity(keep);
            for idx in top_k(&scores, keep) {
                let (beam, token) = (idx / vocab, (idx % vocab) as u32);
                let hits_stop = req.is_eos(token) || at_limit || ends_with_stop(req, &item.running[beam].ids, token)?;
                any_continuation |= !hits_stop;
                candidates.push(Candidate { beam, token, score: scores[idx], token_score: processed[beam][token as usize], hits_stop });
            }
            let extend = |c: &Candidate, score: f32| {
                let src = &item.running[c.beam];
                let mut ids = src.ids.clone();
                ids.push(c.token);
                let mut token_scores = src.token_scores.clone();
                token_scores.push(c.token_score);
                Beam { ids, token_scores, score }
            };

            // Finished hypotheses: only the first num_beams continuations may enter.
            let full = item.all_finished() && p.early_stopping == EarlyStopping::True;
            let mut new_slots = item.slots.clone();
            if !full && item.improvable {
                let denom = (generated as f64).powf(p.length_penalty as f64);
                for c in candidates.iter().take(nb).filter(|c| c.hits_stop) {
                    let score = (c.score as f64 / denom) as f32;
                    new_slots.push(Slot { score, hypothesis: Some(extend(c, c.score)) });
                }
                new_slots.sort_by(|a, b| b.score.total_cmp(&a.score));
                new_slots.truncate(nb);
            }

            // Running beams: the best continuations that did not stop.
            let mut order: Vec<(usize, f32)> =
                candidates.iter().enumerate().map(|(k, c)| (k, c.score + if c.hits_stop { NONE } else { 0.0 })).collect();
            order.sort_by(|a, b| b.1.total_cmp(&a.1));
            let running: Vec<Beam> = order.iter().take(nb).map(|&(k, s)| extend(&candidates[k], s)).collect();
            reorder.extend(order.iter().take(nb).map(|&(k, _)| b * nb + candidates[k].beam));
            item.running = running;
            item.slots = new_slots;

            if item.improvable {
                let best_len =
                    if p.early_stopping == EarlyStopping::Never && p.length_penalty > 0.0 { p.max_new_tokens } else { generated };
                let best = item.running[0].score / (best_len as f32).powf(p.length_penalty);
                let worst = item.slots.iter().map(|s| s.score).fold(f32::INFINITY, f32::min);
                item.improvable = item.slots.iter().any(|s| best > if s.hypothesis.is_some() { worst } else { NONE });
            }
        }

        let improvement_possible = items.iter().any(|it| it.improvable);
        let all_done = p.early_stopping == EarlyStopping::True && items.iter().all(Item::all_finished);
        if !improvement_possible || all_done || !any_continuation {
            break;
        }
        cache.reorder_rows(&reorder, &req.model.decoder()?.rows)?;
    }

    let mut out = Vec::with_capacity(items_count);
    for (b, item) in items.into_iter().enumerate() {
        let mut sequences = Vec::with_capacity(p.num_return_sequences);
        let running = item.running.iter().map(|beam| Slot { score: beam.score, hypothesis: Some(beam.clone()) });
        let chosen: Vec<Slot> = if cancelled {
            item.slots.iter().filter(|s| s.hypothesis.is_some()).cloned().chain(running).take(p.num_return_sequences).collect()
        } else {
            item.slots.into_iter().take(p.num_return_sequences).collect()
        };
        for slot in chosen {
            let Some(beam) = slot.hypothesis else { continue };
            let token_ids = beam.ids[1..].to_vec();
            let (text, stopped) = req.final_text(&token_ids)?;
            let finish_reason = match token_ids.last() {
                _ if cancelled => FinishReason::Cancelled,
                Some(&t) if req.is_eos(t) => FinishReason::Eos,
                _ if stopped => FinishReason::StopString,
                _ => FinishReason::Length,
            };
            sequences.push(Sequence { token_ids, text, score: slot.score, token_scores: beam.token_scores, finish_reason });
        }
        if let Some(best) = sequences.first() {
            if !cancelled && req.observer.on_text(b, &best.text, None) == Flow::Stop {
                cancelled = true;
            }
        }
        out.push(sequences);
    }
    Ok(out)
}

fn ends_with_stop(req: &Request, ids: &[u32], token: u32) -> Result<bool> {
    if req.stops.is_empty() {
        return Ok(false);
    }
    let mut generated = ids[1..].to_vec();
    generated.push(token);
    Ok(req.stops.find(&req.model.tokenizer.decode(&generated)?).is_some())
}

/// Indices of the `k` largest scores, best first (lower index first among equals).
fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    let cmp = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx
}

#[cfg(test)]
mod tests {
    use super::top_k;

    #[test]
    fn top_k_orders_best_first() {
        assert_eq!(top_k(&[0.1, 0.5, -1.0, 0.5, 0.3], 3), vec![1, 3, 4]);
        assert_eq!(top_k(&[1.0, 2.0], 5), vec![1, 0]);
    }
}
