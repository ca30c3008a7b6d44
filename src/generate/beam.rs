//! Beam search, step for step as `transformers` 4.57 does it (`_beam_search`): processors act
//! on log-probabilities, the best `2 * num_beams` continuations are kept, a continuation that
//! ends (EOS, length limit, stop string) among the first `num_beams` becomes a finished
//! hypothesis scored `sum / generated_len ** length_penalty`, and `early_stopping` decides when
//! running beams can no longer beat the finished ones.

use super::best_continuations::best_continuations;
use super::output::{FinishReason, Sequence};
use super::params::EarlyStopping;
use super::processors::{log_softmax_in_place, RowContext};
use super::search::{Event, RowChange, Rules, Search};
use crate::error::Result;
use crate::model::Logits;
use crate::text::Tokenizer;

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

pub(crate) struct BeamSearch {
    rules: Rules,
    items: Vec<Item>,
    vocab: usize,
    /// Continuations looked at per item and step.
    keep: usize,
    /// Steps that generated (the decoder prefix's steps are not counted).
    step: usize,
    /// Decoder prefix tokens fed so far.
    fed: usize,
}

impl BeamSearch {
    pub fn new(rules: Rules, inputs: usize, vocab: usize) -> Self {
        let p = &rules.params;
        let nb = p.num_beams;
        let keep = (nb * 2.max(1 + p.eos_token_ids.len())).min(nb * vocab);
        let items = (0..inputs)
            .map(|_| Item {
                running: (0..nb)
                    .map(|j| Beam { ids: vec![p.decoder_start_token_id], token_scores: vec![], score: if j == 0 { 0.0 } else { NONE } })
                    .collect(),
                slots: vec![Slot { score: NONE, hypothesis: None }; nb],
                improvable: true,
            })
            .collect();
        Self { rules, items, vocab, keep, step: 0, fed: 0 }
    }

    fn ends_with_stop(&self, tokenizer: &Tokenizer, ids: &[u32], token: u32) -> Result<bool> {
        if self.rules.stops.is_empty() {
            return Ok(false);
        }
        let mut generated = ids[1..].to_vec();
        generated.push(token);
        Ok(self.rules.stops.find_ending_after(&tokenizer.decode(&generated)?, self.rules.prefix_text_len(tokenizer)?).is_some())
    }
}

impl Search for BeamSearch {
    fn encoder_rows(&self) -> Option<Vec<usize>> {
        let nb = self.rules.params.num_beams;
        Some((0..self.items.len()).flat_map(|r| std::iter::repeat_n(r, nb)).collect())
    }

    fn next_tokens(&self) -> Vec<u32> {
        self.items.iter().flat_map(|it| it.running.iter().map(|b| *b.ids.last().unwrap_or(&0))).collect()
    }

    fn advance(&mut self, tokenizer: &Tokenizer, logits: &mut Logits, first: usize, _: &mut Vec<Event>) -> Result<RowChange> {
        // The decoder prefix is fed to every beam alike; the scores stay as they were.
        if let Some(&token) = self.rules.params.decoder_prefix.get(self.fed) {
            for beam in self.items.iter_mut().flat_map(|it| it.running.iter_mut()) {
                beam.ids.push(token);
                beam.token_scores.push(0.0);
            }
            self.fed += 1;
            return Ok(RowChange::Same);
        }
        let p = &self.rules.params;
        let (nb, vocab, step) = (p.num_beams, self.vocab, self.step);
        let generated = step + 1;
        let at_limit = generated == p.max_new_tokens;
        let mut reorder = Vec::with_capacity(self.items.len() * nb);
        let mut any_continuation = false;

        for b in 0..self.items.len() {
            let item = &self.items[b];
            // The item's rows of the logits become its processed log-probabilities, in place;
            // a continuation's score (that plus its beam's) is computed where it is looked at.
            for (j, beam) in item.running.iter().enumerate() {
                let row = logits.row_mut(first + b * nb + j);
                log_softmax_in_place(row);
                self.rules.pipeline.process(&RowContext { decoder_ids: &beam.ids, generated: step }, row);
            }
            let processed = &logits.data[(first + b * nb) * vocab..(first + b * nb + nb) * vocab];
            if item.improvable && processed.iter().all(|l| *l == f32::NEG_INFINITY) {
                return Err(super::nothing_to_generate(b, step));
            }
            let beam_scores: Vec<f32> = item.running.iter().map(|beam| beam.score).collect();
            let mut candidates = Vec::with_capacity(self.keep);
            for idx in best_continuations(processed, vocab, &beam_scores, self.keep) {
                let (beam, token) = (idx / vocab, (idx % vocab) as u32);
                let hits_stop = p.is_eos(token) || at_limit || self.ends_with_stop(tokenizer, &item.running[beam].ids, token)?;
                any_continuation |= !hits_stop;
                let score = processed[idx] + beam_scores[beam];
                candidates.push(Candidate { beam, token, score, token_score: processed[idx], hits_stop });
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
            let item = &mut self.items[b];
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
        self.step += 1;

        let improvement_possible = self.items.iter().any(|it| it.improvable);
        let all_done = p.early_stopping == EarlyStopping::True && self.items.iter().all(Item::all_finished);
        if !improvement_possible || all_done || !any_continuation || self.step >= p.max_new_tokens {
            return Ok(RowChange::Done);
        }
        Ok(if reorder.iter().enumerate().all(|(i, &j)| i == j) { RowChange::Same } else { RowChange::Reorder(reorder) })
    }

    fn finish(self: Box<Self>, tokenizer: &Tokenizer, cancelled: bool, events: &mut Vec<Event>) -> Result<Vec<Vec<Sequence>>> {
        let p = &self.rules.params;
        let mut out = Vec::with_capacity(self.items.len());
        for (b, item) in self.items.into_iter().enumerate() {
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
                let (text, stopped) = self.rules.final_text(tokenizer, &token_ids)?;
                let finish_reason = match token_ids.last() {
                    _ if cancelled => FinishReason::Cancelled,
                    Some(&t) if p.is_eos(t) => FinishReason::Eos,
                    _ if stopped => FinishReason::StopString,
                    _ => FinishReason::Length,
                };
                sequences.push(Sequence { token_ids, text, score: slot.score, token_scores: beam.token_scores, finish_reason });
            }
            if let (Some(best), false) = (sequences.first(), cancelled) {
                events.push(Event::Text { input: b, piece: best.text.clone(), token: None });
                events.push(Event::Finished { input: b, reason: best.finish_reason });
            }
            out.push(sequences);
        }
        Ok(out)
    }
}
