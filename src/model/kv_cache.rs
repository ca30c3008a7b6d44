//! The attention cache of one request: decoder self-attention keys/values, which grow a step at
//! a time, and cross-attention keys/values, computed on the first step and reused after it.
//! It belongs to the request, not to the model, so that one model serves many requests at once.
//! Its tensors live where the decoder left them (host memory, or the GPU under IoBinding).

use ort::value::DynTensor;

use super::row_gather::RowGather;
use super::tensors::{concat_padded, drop_leading};
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

    /// Positions in the self-attention cache (0 before the first step).
    pub fn self_len(&self) -> usize {
        self.self_attention.first().and_then(|[k, _]| k.shape().get(2).copied()).unwrap_or(0) as usize
    }

    /// The caches of several batches stacked (rows in order), each self-attention cache
    /// left-padded to `self_len` positions and each cross-attention cache right-padded to
    /// `encoder_len` (on the host; padding is zeros, for the caller to mask).
    pub fn concat(parts: &[&KvCache], self_len: usize, encoder_len: usize) -> Result<Self> {
        let stack = |pick: fn(&KvCache) -> &Vec<[DynTensor; 2]>, len: usize, at_end: bool| -> Result<Vec<[DynTensor; 2]>> {
            let layers = parts.first().map_or(0, |p| pick(p).len());
            (0..layers)
                .map(|layer| {
                    let side = |k: usize| {
                        let tensors: Vec<&DynTensor> = parts.iter().map(|p| &pick(p)[layer][k]).collect();
                        concat_padded(&tensors, 2, len, at_end)
                    };
                    Ok([side(0)?, side(1)?])
                })
                .collect()
        };
        if parts
            .iter()
            .any(|p| p.self_attention.len() != parts[0].self_attention.len() || p.cross_attention.len() != parts[0].cross_attention.len())
        {
            return Err(crate::error::Error::Internal("caches of different layouts do not stack".into()));
        }
        Ok(Self {
            self_attention: stack(|c| &c.self_attention, self_len, true)?,
            cross_attention: stack(|c| &c.cross_attention, encoder_len, false)?,
        })
    }

    /// Drops the first `count` self-attention positions (padding no row reads any more).
    pub fn drop_leading(&mut self, count: usize) -> Result<()> {
        for pair in &mut self.self_attention {
            for value in pair.iter_mut() {
                *value = drop_leading(value, 2, count)?;
            }
        }
        Ok(())
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
                rows.reorder(value, index)?;
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
