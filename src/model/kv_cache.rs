//! The attention cache of one request: decoder self-attention keys/values, which grow a step at
//! a time, and cross-attention keys/values, computed on the first step and reused after it.
//! It belongs to the request, not to the model, so that one model serves many requests at once.
//! Its tensors live where the decoder left them (host memory, or the GPU under IoBinding).

use ort::value::DynTensor;

use super::row_gather::RowGather;
use crate::error::Result;

#[derive(Default)]
pub struct KvCache {
    /// `[key, value]` per decoder layer, each `[rows, heads, past_len, head_dim]`.
    pub(crate) self_attention: Vec<[DynTensor; 2]>,
    /// `[key, value]` per decoder layer, each `[rows, heads, encoder_len, head_dim]`.
    pub(crate) cross_attention: Vec<[DynTensor; 2]>,
}

impl KvCache {
    pub fn is_empty(&self) -> bool {
        self.self_attention.is_empty()
    }

    /// Replaces each row `i` of the self-attention cache by row `index[i]` (beam search keeps
    /// the cache of the beams it continues). Cross-attention rows of one input are all equal, so
    /// they only move when rows change input, which beam search never does.
    pub fn reorder_rows(&mut self, index: &[usize], rows: &RowGather) -> Result<()> {
        if index.iter().enumerate().all(|(i, &j)| i == j) {
            return Ok(());
        }
        for pair in &mut self.self_attention {
            for value in pair.iter_mut() {
                *value = rows.gather(value, index)?;
            }
        }
        Ok(())
    }

    /// Keeps only the rows `index` of both caches (rows that finished leave the batch).
    pub fn select_rows(&mut self, index: &[usize], rows: &RowGather) -> Result<()> {
        for pair in self.self_attention.iter_mut().chain(self.cross_attention.iter_mut()) {
            for value in pair.iter_mut() {
                *value = rows.gather(value, index)?;
            }
        }
        Ok(())
    }
}
