//! One request's generation, driven a step at a time by its caller (the way ONNX Runtime GenAI's
//! `Generator` and llama.cpp's host loop work): the encoder runs once at `new`, each `step` runs
//! the decoder once for every row still going and says what it decided.

use std::ops::Deref;

use super::output::{GenerationOutput, Sequence};
use super::params::GenerationParams;
use super::search::{new_search, Event, RowChange, Search};
use crate::error::{Error, Result};
use crate::model::{EncoderOutput, KvCache, Model};
use crate::text::Encoded;

/// The rows one decoder run serves: encoder output and KV cache, row-aligned.
pub(crate) struct Batch {
    pub encoder: EncoderOutput,
    pub cache: KvCache,
}

impl Batch {
    pub fn apply(&mut self, model: &Model, change: &RowChange) -> Result<()> {
        let decoder = model.decoder()?;
        match change {
            RowChange::Same | RowChange::Done => Ok(()),
            RowChange::Reorder(index) => self.cache.reorder_rows(index, &decoder.rows),
            RowChange::Select(index) => {
                self.encoder = decoder.select_encoder_rows(&self.encoder, index)?;
                self.cache.select_rows(index, &decoder.rows)
            }
        }
    }
}

/// Refuses what no strategy can generate for.
pub(crate) fn check_inputs(inputs: &[Encoded]) -> Result<()> {
    if inputs.is_empty() {
        return Err(Error::InvalidArgument("no inputs to generate for".into()));
    }
    if let Some((i, _)) = inputs.iter().enumerate().find(|(_, e)| e.ids.is_empty()) {
        return Err(Error::InvalidArgument(format!("input {i} encodes to no tokens")));
    }
    Ok(())
}

/// Outputs from each input's sequences and what its encoding said.
pub(crate) fn outputs(sequences: Vec<Vec<Sequence>>, inputs: &[(usize, bool)]) -> Vec<GenerationOutput> {
    sequences
        .into_iter()
        .zip(inputs)
        .map(|(sequences, &(input_tokens, input_truncated))| GenerationOutput { sequences, input_tokens, input_truncated })
        .collect()
}

/// `M` is how the generation holds its model: `&Model` for a call, `Arc<Model>` for a
/// generation that outlives the call that made it (the C API's generator).
pub struct Generation<M: Deref<Target = Model>> {
    model: M,
    search: Option<Box<dyn Search>>,
    batch: Batch,
    /// Tokens and truncation of each input.
    inputs: Vec<(usize, bool)>,
    sequences: Option<Vec<Vec<Sequence>>>,
    cancelled: bool,
}

impl<M: Deref<Target = Model>> Generation<M> {
    /// Runs the encoder over `inputs` (already tokenized, special tokens included).
    pub fn new(model: M, inputs: &[Encoded], params: &GenerationParams) -> Result<Self> {
        check_inputs(inputs)?;
        super::budget::check_budget(&model, inputs, params)?;
        let search = new_search(params, inputs.len(), model.vocab_size());
        let ids: Vec<Vec<u32>> = inputs.iter().map(|e| e.ids.clone()).collect();
        let mut encoder = model.encoder.run(&ids, params.pad_token_id)?;
        if let Some(rows) = search.encoder_rows() {
            encoder = model.decoder()?.select_encoder_rows(&encoder, &rows)?;
        }
        Ok(Self {
            model,
            search: Some(search),
            batch: Batch { encoder, cache: KvCache::default() },
            inputs: inputs.iter().map(|e| (e.ids.len(), e.truncated)).collect(),
            sequences: None,
            cancelled: false,
        })
    }

    pub fn is_done(&self) -> bool {
        self.search.is_none()
    }

    /// One decoder step for every row still going; nothing once done.
    pub fn step(&mut self) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        let Some(search) = self.search.as_mut() else { return Ok(events) };
        let tokens = search.next_tokens();
        let mut logits = self.model.decoder()?.step(&tokens, &self.batch.encoder, &mut self.batch.cache)?;
        let change = search.advance(&self.model.tokenizer, &mut logits, 0, &mut events)?;
        if change == RowChange::Done {
            self.conclude(&mut events)?;
        } else {
            self.batch.apply(&self.model, &change)?;
        }
        Ok(events)
    }

    /// Stops before the next step; the outputs keep what was generated (`FinishReason::Cancelled`).
    pub fn cancel(&mut self) -> Result<()> {
        if self.search.is_some() {
            self.cancelled = true;
            self.conclude(&mut Vec::new())?;
        }
        Ok(())
    }

    fn conclude(&mut self, events: &mut Vec<Event>) -> Result<()> {
        if let Some(search) = self.search.take() {
            self.sequences = Some(search.finish(&self.model.tokenizer, self.cancelled, events)?);
        }
        Ok(())
    }

    /// Every input's sequences; a generation not done is cancelled first.
    pub fn into_outputs(mut self) -> Result<Vec<GenerationOutput>> {
        self.cancel()?;
        Ok(outputs(self.sequences.take().unwrap_or_default(), &self.inputs))
    }
}
