//! Greedy decoding and sampling: one token per row per step, rows decoded together.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::normalizer::best_with_log_prob;
use super::output::{FinishReason, Sequence};
use super::processors::{log_prob, probabilities, RowContext};
use super::search::{Event, RowChange, Rules, Search};
use crate::error::Result;
use crate::model::Logits;
use crate::text::{TextStream, Tokenizer};

struct Row {
    /// Decoder start token, the decoder prefix as far as it was fed, then the generated tokens.
    ids: Vec<u32>,
    token_scores: Vec<f32>,
    finished: Option<FinishReason>,
    stream: TextStream,
    /// The final text, once finished.
    text: Option<String>,
}

pub(crate) struct Greedy {
    rules: Rules,
    rng: StdRng,
    rows: Vec<Row>,
    /// The rows still decoding, in batch order: finished rows leave the batch (transformers keeps
    /// them, fed with padding; every row's own computation is the same either way).
    active: Vec<usize>,
    /// Steps that generated (the decoder prefix's steps are not counted).
    steps: usize,
}

impl Greedy {
    pub fn new(rules: Rules, inputs: usize) -> Self {
        let p = &rules.params;
        let rng = StdRng::seed_from_u64(p.seed.unwrap_or_else(rand::random));
        let rows = (0..inputs)
            .map(|_| Row {
                ids: vec![p.decoder_start_token_id],
                token_scores: Vec::new(),
                finished: None,
                stream: TextStream::new(),
                text: None,
            })
            .collect();
        Self { rules, rng, rows, active: (0..inputs).collect(), steps: 0 }
    }

    /// Ends row `i` for `reason`: its final text, the rest of its stream, the event.
    fn end_row(&mut self, tokenizer: &Tokenizer, i: usize, reason: FinishReason, events: &mut Vec<Event>) -> Result<()> {
        let row = &mut self.rows[i];
        row.finished = Some(reason);
        let (text, _) = self.rules.final_text(tokenizer, &row.ids[1..])?;
        if let Some(piece) = row.stream.finish(&text) {
            events.push(Event::Text { input: i, piece, token: None });
        }
        row.text = Some(text);
        events.push(Event::Finished { input: i, reason });
        Ok(())
    }
}

impl Search for Greedy {
    fn encoder_rows(&self) -> Option<Vec<usize>> {
        None
    }

    fn next_tokens(&self) -> Vec<u32> {
        let start = self.rules.params.decoder_start_token_id;
        self.active.iter().map(|&r| *self.rows[r].ids.last().unwrap_or(&start)).collect()
    }

    fn advance(&mut self, tokenizer: &Tokenizer, logits: &mut Logits, first: usize, events: &mut Vec<Event>) -> Result<RowChange> {
        let prefix = self.rules.params.decoder_prefix.len();
        // Every row is at the same position while the prefix is fed: its next token is given.
        if let Some(&token) = self.active.first().and_then(|&r| self.rules.params.decoder_prefix.get(self.rows[r].ids.len() - 1)) {
            for &i in &self.active {
                let row = &mut self.rows[i];
                row.ids.push(token);
                row.token_scores.push(0.0);
                row.stream.push(tokenizer, token, &self.rules.stops)?;
                if row.ids.len() - 1 == prefix {
                    row.stream.protect_text_so_far();
                }
                if let Some(piece) = row.stream.take_piece(&self.rules.stops) {
                    events.push(Event::Text { input: i, piece, token: Some(token) });
                }
            }
            return Ok(RowChange::Same);
        }
        let active = std::mem::take(&mut self.active);
        let mut keep = Vec::with_capacity(active.len());
        for (j, &i) in active.iter().enumerate() {
            let (p, pipeline, stops) = (&self.rules.params, &self.rules.pipeline, &self.rules.stops);
            let row = &mut self.rows[i];
            let scores = logits.row_mut(first + j);
            let ctx = RowContext { decoder_ids: &row.ids, generated: row.ids.len() - 1 - prefix };
            pipeline.process(&ctx, scores);
            let nothing = || super::nothing_to_generate(i, ctx.generated);
            let (token, score) = if p.do_sample {
                if scores.iter().all(|s| *s == f32::NEG_INFINITY) {
                    return Err(nothing());
                }
                pipeline.warp(&ctx, scores);
                let token = sample(scores, &mut self.rng);
                (token, log_prob(scores, token as usize))
            } else {
                best_with_log_prob(scores).ok_or_else(nothing)?
            };
            row.token_scores.push(score);
            row.ids.push(token);
            let stop = row.stream.push(tokenizer, token, stops)?;
            let reason = if p.is_eos(token) {
                Some(FinishReason::Eos)
            } else if stop.is_some() {
                Some(FinishReason::StopString)
            } else {
                None
            };
            if let Some(piece) = row.stream.take_piece(stops) {
                events.push(Event::Text { input: i, piece, token: Some(token) });
            }
            match reason {
                Some(reason) => self.end_row(tokenizer, i, reason, events)?,
                None => keep.push(j),
            }
        }
        self.steps += 1;
        if self.steps >= self.rules.params.max_new_tokens || keep.is_empty() {
            for &j in &keep {
                self.end_row(tokenizer, active[j], FinishReason::Length, events)?;
            }
            return Ok(RowChange::Done);
        }
        self.active = keep.iter().map(|&j| active[j]).collect();
        Ok(if keep.len() < active.len() { RowChange::Select(keep) } else { RowChange::Same })
    }

    fn finish(self: Box<Self>, tokenizer: &Tokenizer, cancelled: bool, _: &mut Vec<Event>) -> Result<Vec<Vec<Sequence>>> {
        let rules = &self.rules;
        self.rows
            .into_iter()
            .map(|row| {
                let reason = row.finished.unwrap_or(if cancelled { FinishReason::Cancelled } else { FinishReason::Length });
                let token_ids = row.ids[1..].to_vec();
                let text = match row.text {
                    Some(text) => text,
                    None => rules.final_text(tokenizer, &token_ids)?.0,
                };
                Ok(vec![Sequence {
                    score: row.token_scores.iter().sum(),
                    token_ids,
                    text,
                    token_scores: row.token_scores,
                    finish_reason: reason,
                }])
            })
            .collect()
    }
}

/// A token drawn with probability softmax(scores), computed token by token (no vocabulary-sized
/// vector): the same probabilities as `softmax`, bit for bit.
fn sample(scores: &[f32], rng: &mut StdRng) -> u32 {
    let mut target: f32 = rng.random::<f32>();
    let mut last_possible = 0;
    for (i, pr) in probabilities(scores).enumerate() {
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
