//! The attention cache of one request: decoder self-attention keys/values, which grow a step at
//! a time, and cross-attention keys/values, computed on the first step and reused after it.
//! It belongs to the request, not to the model, so that one model serves many requests at once.
//! Its tensors live where the decoder left them (host memory, or the GPU under IoBinding).

use std::borrow::Cow;

use ort::value::DynTensor;

use super::row_gather::RowGather;
use super::tensors::{cache_buffer, concat_padded, positions};
use crate::error::{Error, Result};

#[derive(Default)]
pub struct KvCache {
    /// `[key, value]` per decoder layer, each `[rows, heads, past_len, head_dim]`.
    pub(crate) self_attention: Vec<[DynTensor; 2]>,
    /// `[key, value]` per decoder layer, each `[rows, heads, encoder_len, head_dim]`.
    pub(crate) cross_attention: Vec<[DynTensor; 2]>,
    /// `Some(used)`: the self-attention tensors are buffers `[rows, heads, capacity, head_dim]`
    /// that a graph appends to in place (tools/in_place_cache.py), allocated by ONNX Runtime so that
    /// it may write into them; only their first `used` positions hold anything.
    pub(crate) in_place: Option<usize>,
}

impl KvCache {
    pub fn is_empty(&self) -> bool {
        self.self_attention.is_empty()
    }

    /// Positions in the self-attention cache (0 before the first step).
    pub fn self_len(&self) -> usize {
        self.in_place.unwrap_or_else(|| self.self_attention.first().and_then(|[k, _]| k.shape().get(2).copied()).unwrap_or(0) as usize)
    }

    /// Positions the self-attention tensors have room for.
    pub fn self_capacity(&self) -> usize {
        self.self_attention.first().and_then(|[k, _]| k.shape().get(2).copied()).unwrap_or(0) as usize
    }

    /// The self-attention cache as in-place buffers of `capacity` positions (copied when it is not
    /// such buffers yet, or smaller).
    pub fn reserve_in_place(&mut self, capacity: usize) -> Result<()> {
        if self.in_place.is_some() && self.self_capacity() >= capacity {
            return Ok(());
        }
        let used = self.self_len();
        let buffers = self
            .self_attention
            .iter()
            .map(|[k, v]| Ok([cache_buffer(k, used, capacity)?, cache_buffer(v, used, capacity)?]))
            .collect::<Result<_>>()?;
        self.self_attention = buffers;
        self.in_place = Some(used);
        Ok(())
    }

    /// The caches of several batches stacked (rows in order), each self-attention cache
    /// left-padded to `self_len` positions and each cross-attention cache right-padded to
    /// `encoder_len` (on the host; padding is zeros, for the caller to mask).
    pub fn concat(parts: &[&KvCache], self_len: usize, encoder_len: usize) -> Result<Self> {
        if parts
            .iter()
            .any(|p| p.self_attention.len() != parts[0].self_attention.len() || p.cross_attention.len() != parts[0].cross_attention.len())
        {
            return Err(Error::Internal("caches of different layouts do not stack".into()));
        }
        let stack = |caches: &[&[[DynTensor; 2]]], len: usize, at_end: bool| -> Result<Vec<[DynTensor; 2]>> {
            let layers = caches.first().map_or(0, |c| c.len());
            (0..layers)
                .map(|layer| {
                    let side = |k: usize| {
                        let tensors: Vec<&DynTensor> = caches.iter().map(|c| &c[layer][k]).collect();
                        concat_padded(&tensors, 2, len, at_end)
                    };
                    Ok([side(0)?, side(1)?])
                })
                .collect()
        };
        let own = parts.iter().map(|p| p.used_self_attention()).collect::<Result<Vec<_>>>()?;
        let own: Vec<&[[DynTensor; 2]]> = own.iter().map(|c| c.as_ref()).collect();
        let cross: Vec<&[[DynTensor; 2]]> = parts.iter().map(|p| p.cross_attention.as_slice()).collect();
        Ok(Self { self_attention: stack(&own, self_len, true)?, cross_attention: stack(&cross, encoder_len, false)?, in_place: None })
    }

    /// The self-attention cache's used positions: itself, or copies of an in-place buffer's.
    fn used_self_attention(&self) -> Result<Cow<'_, [[DynTensor; 2]]>> {
        let Some(used) = self.in_place else { return Ok(Cow::Borrowed(self.self_attention.as_slice())) };
        let copies =
            self.self_attention.iter().map(|[k, v]| Ok([positions(k, 2, 0..used)?, positions(v, 2, 0..used)?])).collect::<Result<_>>()?;
        Ok(Cow::Owned(copies))
    }

    /// Drops the first `count` self-attention positions (padding no row reads any more).
    /// An in-place cache becomes tensors of exactly its remaining positions.
    pub fn drop_leading(&mut self, count: usize) -> Result<()> {
        let used = self.self_len();
        if count > used {
            return Err(Error::Internal(format!("cannot drop {count} of {used} positions")));
        }
        let kept = self
            .self_attention
            .iter()
            .map(|[k, v]| Ok([positions(k, 2, count..used)?, positions(v, 2, count..used)?]))
            .collect::<Result<_>>()?;
        self.self_attention = kept;
        self.in_place = None;
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
                rows.reorder(value, index, self.in_place)?;
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
