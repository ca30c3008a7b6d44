//! The attention cache of one request: decoder self-attention keys/values, which grow a step at
//! a time, and cross-attention keys/values, computed on the first step and reused after it.
//! It belongs to the request, not to the model, so that one model serves many requests at once.

use ort::value::{DynValue, Tensor};

use crate::error::{Error, Result};

#[derive(Default)]
pub struct KvCache {
    /// `[key, value]` per decoder layer, each `[rows, heads, past_len, head_dim]`.
    pub(crate) self_attention: Vec<[DynValue; 2]>,
    /// `[key, value]` per decoder layer, each `[rows, heads, encoder_len, head_dim]`.
    pub(crate) cross_attention: Vec<[DynValue; 2]>,
}

impl KvCache {
    pub fn is_empty(&self) -> bool {
        self.self_attention.is_empty()
    }

    /// Replaces each row `i` of the self-attention cache by row `index[i]` (beam search keeps
    /// the cache of the beams it continues). Cross-attention rows of one input are all equal, so
    /// they only move when rows change input, which beam search never does.
    pub fn reorder_rows(&mut self, index: &[usize]) -> Result<()> {
        if index.iter().enumerate().all(|(i, &j)| i == j) {
            return Ok(());
        }
        for pair in &mut self.self_attention {
            for value in pair.iter_mut() {
                *value = gather_rows(value, index)?;
            }
        }
        Ok(())
    }
}

impl KvCache {
    /// Keeps only the rows `index` of both caches (rows that finished leave the batch).
    pub fn select_rows(&mut self, index: &[usize]) -> Result<()> {
        for pair in self.self_attention.iter_mut().chain(self.cross_attention.iter_mut()) {
            for value in pair.iter_mut() {
                *value = gather_rows(value, index)?;
            }
        }
        Ok(())
    }
}

/// A copy of `value` made of the rows `index` of its first dimension.
pub(crate) fn gather_rows(value: &DynValue, index: &[usize]) -> Result<DynValue> {
    let (shape, data) = value.try_extract_tensor::<f32>()?;
    let rows = shape[0] as usize;
    let row_len = if rows == 0 { 0 } else { data.len() / rows };
    let mut out = Vec::with_capacity(index.len() * row_len);
    for &r in index {
        if r >= rows {
            return Err(Error::Internal(format!("row {r} out of {rows}")));
        }
        out.extend_from_slice(&data[r * row_len..(r + 1) * row_len]);
    }
    let mut dims: Vec<i64> = shape.iter().copied().collect();
    dims[0] = index.len() as i64;
    Ok(Tensor::from_array((dims, out))?.into_dyn())
}
