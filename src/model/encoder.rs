//! The encoder graph: token ids in, hidden states out, once per request.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::value::{DynTensor, Tensor, TensorElementType};

use super::graph::{present_name, GraphIo};
use super::row_gather::{CacheDevice, RowGather};
use super::tensors;
use crate::error::{Error, Result};

pub struct Encoder {
    session: Mutex<Session>,
    path: PathBuf,
    /// Where the outputs are kept between steps (host memory, or the GPU under IoBinding).
    outputs_on: CacheDevice,
    /// `present.{i}.encoder.{key,value}` outputs, when the export computes the decoder's
    /// cross-attention cache in the encoder (tools/export_model.py does).
    cross_outputs: Vec<[String; 2]>,
    /// Whether to run them: only the `with_past` layout reads them.
    run_cross: bool,
    /// BERT-style exports take `token_type_ids` (all 0 for one segment, as sentence-transformers feeds).
    token_types: bool,
    /// Most tokens (rows x longest input) one run takes when the outputs stay on the host; 0: no limit.
    tokens_per_run: usize,
}

/// Encoder hidden states and the padding mask of a batch, row-aligned with the decoder.
pub struct EncoderOutput {
    pub(crate) hidden: DynTensor,
    pub(crate) mask: DynTensor,
    /// The decoder's cross-attention `[key, value]` per layer, when the encoder computed them:
    /// `rows / cross_share` rows, row `r` of the output reading row `r / cross_share`.
    pub(crate) cross: Vec<[DynTensor; 2]>,
    /// Consecutive output rows per cross-attention row: 1, or the beams of each input where the
    /// decoder graph reads one row for several (tools/share_cross_cache.py).
    pub cross_share: usize,
    pub rows: usize,
    pub len: usize,
}

impl Encoder {
    pub fn new(path: &Path, session: Session) -> Result<Self> {
        let io = GraphIo::new(path, &session);
        io.require_input("input_ids", TensorElementType::Int64)?;
        io.require_input("attention_mask", TensorElementType::Int64)?;
        io.require_output("last_hidden_state")?;
        let token_types = io.has_input("token_type_ids");
        if token_types {
            io.require_input("token_type_ids", TensorElementType::Int64)?;
        }
        let mut cross_outputs = Vec::new();
        while io.has_output(&present_name(cross_outputs.len(), "encoder", "key")) {
            let layer = cross_outputs.len();
            io.require_output(&present_name(layer, "encoder", "value"))?;
            cross_outputs.push([present_name(layer, "encoder", "key"), present_name(layer, "encoder", "value")]);
        }
        Ok(Self {
            session: Mutex::new(session),
            path: path.to_path_buf(),
            outputs_on: CacheDevice::Host,
            cross_outputs,
            run_cross: false,
            token_types,
            tokens_per_run: 0,
        })
    }

    /// Keeps the outputs on `device` for the decoder to read there.
    pub fn bind_output_to(&mut self, device: CacheDevice) {
        self.outputs_on = device;
    }

    /// Runs batches of more than `tokens` tokens (rows x longest input) in parts of whole rows,
    /// when the outputs stay on the host; 0: one run whatever the batch.
    pub fn limit_tokens_per_run(&mut self, tokens: usize) {
        self.tokens_per_run = tokens;
    }

    /// Rows of `rows` inputs of up to `len` tokens that one run takes.
    pub fn rows_per_run(&self, rows: usize, len: usize) -> usize {
        match (self.tokens_per_run, self.outputs_on) {
            (0, _) | (_, CacheDevice::Cuda(_)) => rows,
            (tokens, CacheDevice::Host) => (tokens / len.max(1)).clamp(1, rows.max(1)),
        }
    }

    /// Layers of cross-attention cache the graph can return (0: it returns hidden states only).
    pub fn cross_layers(&self) -> usize {
        self.cross_outputs.len()
    }

    /// Returns the cross-attention cache with the hidden states from now on.
    pub(crate) fn run_cross_outputs(&mut self) {
        self.run_cross = true;
    }

    /// Runs a right-padded batch: in parts of [`Encoder::rows_per_run`] rows, each padded to the
    /// batch's longest input and copied into one output, so that a long batch's intermediate
    /// activations (its attention scores grow with rows x length^2) exist for one part at a time.
    pub fn run(&self, inputs: &[Vec<u32>], pad_token_id: u32) -> Result<EncoderOutput> {
        let len = inputs.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let per_run = self.rows_per_run(inputs.len(), len);
        let mut parts = inputs.chunks(per_run.max(1));
        let first = self.run_part(parts.next().unwrap_or_default(), len, pad_token_id)?;
        if parts.len() == 0 {
            return Ok(first);
        }
        let mut whole = first.allocate_like(inputs.len(), padding_mask(inputs, len))?;
        let mut at = 0;
        for part in std::iter::once(Ok(first)).chain(parts.map(|part| self.run_part(part, len, pad_token_id))) {
            let part = part?;
            whole.write_rows(at, &part)?;
            at += part.rows;
        }
        Ok(whole)
    }

    fn run_part(&self, inputs: &[Vec<u32>], len: usize, pad_token_id: u32) -> Result<EncoderOutput> {
        let rows = inputs.len();
        let mut ids = vec![pad_token_id as i64; rows * len];
        for (r, input) in inputs.iter().enumerate() {
            for (c, &id) in input.iter().enumerate() {
                ids[r * len + c] = id as i64;
            }
        }
        let mask = padding_mask(inputs, len);
        let ids = Tensor::from_array(([rows, len], ids))?.upcast();
        let mask = Tensor::from_array(([rows, len], mask))?.upcast();
        let token_types = if self.token_types { Some(Tensor::from_array(([rows, len], vec![0i64; rows * len]))?.upcast()) } else { None };
        let onnx = |e: ort::Error| Error::Onnx(format!("{}: {e}", self.path.display()));
        let missing = |name: &str| Error::invalid_model(&self.path, format!("no `{name}` output"));
        let mut session = self.session.lock().map_err(|_| Error::Internal("encoder lock poisoned".into()))?;
        // Through IoBinding even on the host: it runs only the outputs asked for.
        let mut binding = session.create_binding().map_err(onnx)?;
        binding.bind_input("input_ids", &ids).map_err(onnx)?;
        binding.bind_input("attention_mask", &mask).map_err(onnx)?;
        if let Some(types) = &token_types {
            binding.bind_input("token_type_ids", types).map_err(onnx)?;
        }
        let memory = self.outputs_on.memory_info()?;
        binding.bind_output_to_device("last_hidden_state", &memory).map_err(onnx)?;
        let cross_names: &[[String; 2]] = if self.run_cross { &self.cross_outputs } else { &[] };
        for pair in cross_names {
            for name in pair {
                binding.bind_output_to_device(name.as_str(), &memory).map_err(onnx)?;
            }
        }
        let mut outputs = session.run_binding(&binding).map_err(onnx)?;
        let mut take = |name: &str| -> Result<DynTensor> { tensors::into_tensor(outputs.remove(name).ok_or_else(|| missing(name))?, name) };
        let hidden = take("last_hidden_state")?;
        let cross = cross_names.iter().map(|[k, v]| Ok([take(k)?, take(v)?])).collect::<Result<Vec<_>>>()?;
        drop(outputs);
        Ok(EncoderOutput { hidden, mask, cross, cross_share: 1, rows, len })
    }
}

/// The attention mask `[rows, len]` of inputs each at the start of its row: 1 on their tokens.
fn padding_mask(inputs: &[Vec<u32>], len: usize) -> Vec<i64> {
    inputs.iter().flat_map(|input| (0..len).map(move |c| i64::from(c < input.len()))).collect()
}

impl EncoderOutput {
    /// An output of `rows` rows shaped as this one, whose padding mask is `mask`; its states are
    /// what [`EncoderOutput::write_rows`] puts there.
    fn allocate_like(&self, rows: usize, mask: Vec<i64>) -> Result<Self> {
        let cross =
            self.cross.iter().map(|[k, v]| Ok([tensors::with_rows(k, rows)?, tensors::with_rows(v, rows)?])).collect::<Result<_>>()?;
        Ok(Self {
            hidden: tensors::with_rows(&self.hidden, rows)?,
            mask: Tensor::from_array(([rows, self.len], mask))?.upcast(),
            cross,
            cross_share: self.cross_share,
            rows,
            len: self.len,
        })
    }

    /// Rows `at..` become `part`'s (one run over the same padded length).
    fn write_rows(&mut self, at: usize, part: &Self) -> Result<()> {
        if part.len != self.len || part.cross.len() != self.cross.len() || at + part.rows > self.rows {
            return Err(Error::Internal(format!("encoder rows {at}.. of {} do not take a part of {} rows", self.rows, part.rows)));
        }
        tensors::write_rows(&mut self.hidden, at, &part.hidden)?;
        for (whole, part) in self.cross.iter_mut().zip(&part.cross) {
            for (w, p) in whole.iter_mut().zip(part) {
                tensors::write_rows(w, at, p)?;
            }
        }
        Ok(())
    }

    /// `last_hidden_state` as `[rows, len, width]` `f32` data on the host, and `width`.
    pub fn hidden_states(&self) -> Result<(Vec<f32>, usize)> {
        let (shape, data) = tensors::to_host_f32(&self.hidden)?;
        Ok((data, shape.get(2).copied().unwrap_or(0) as usize))
    }

    /// The padding mask, `[rows, len]`, 1 for real tokens.
    pub fn mask(&self) -> Result<&[i64]> {
        Ok(self.mask.try_extract_tensor::<i64>()?.1)
    }

    /// Several batches' outputs stacked (rows in order), each right-padded to the longest input
    /// (the padding masked out), on the host.
    pub fn concat(parts: &[&EncoderOutput]) -> Result<Self> {
        let len = parts.iter().map(|p| p.len).max().unwrap_or(0);
        let rows = parts.iter().map(|p| p.rows).sum();
        let mut mask = Vec::with_capacity(rows * len);
        for part in parts {
            for row in part.mask()?.chunks(part.len.max(1)) {
                mask.extend_from_slice(row);
                mask.extend(std::iter::repeat_n(0, len - row.len()));
            }
        }
        let hidden: Vec<&DynTensor> = parts.iter().map(|p| &p.hidden).collect();
        let layers = parts.first().map_or(0, |p| p.cross.len());
        if parts.iter().any(|p| p.cross.len() != layers) {
            return Err(Error::Internal("encoder outputs of different layouts do not stack".into()));
        }
        // Parts that share their cross-attention rows differently stack at the largest sharing
        // that divides them all, each part's rows repeated to it.
        let share = if layers == 0 { 1 } else { parts.iter().fold(0, |g, p| gcd(g, p.cross_share)).max(1) };
        let spread: Vec<Option<Vec<usize>>> = parts
            .iter()
            .map(|p| (p.cross_share != share).then(|| (0..p.rows / share).map(|m| m * share / p.cross_share).collect()))
            .collect();
        let cross = (0..layers)
            .map(|layer| {
                let side = |k: usize| -> Result<DynTensor> {
                    let spread_parts = parts
                        .iter()
                        .zip(&spread)
                        .map(|(p, index)| index.as_ref().map(|index| tensors::gather_rows_on_host(&p.cross[layer][k], index)).transpose())
                        .collect::<Result<Vec<_>>>()?;
                    let tensors: Vec<&DynTensor> =
                        parts.iter().zip(&spread_parts).map(|(p, spread)| spread.as_ref().unwrap_or(&p.cross[layer][k])).collect();
                    tensors::concat_padded(&tensors, 2, len, false)
                };
                Ok([side(0)?, side(1)?])
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            hidden: tensors::concat_padded(&hidden, 1, len, false)?,
            mask: Tensor::from_array(([rows, len], mask))?.upcast(),
            cross,
            cross_share: share,
            rows,
            len,
        })
    }

    /// The rows `index`, in that order. With `share_cross`, each run of consecutive rows that
    /// read one cross-attention row keeps reading one copy of it (the beams of an input);
    /// otherwise every row gets its own.
    pub fn select_rows(&self, index: &[usize], gather: &RowGather, share_cross: bool) -> Result<Self> {
        let mask = self.mask()?;
        let mask: Vec<i64> = index.iter().flat_map(|&r| mask[r * self.len..(r + 1) * self.len].iter().copied()).collect();
        let cross_rows: Vec<usize> = index.iter().map(|&r| r / self.cross_share).collect();
        let share = if share_cross && !self.cross.is_empty() { common_run(&cross_rows) } else { 1 };
        let cross_index: Vec<usize> = cross_rows.iter().step_by(share).copied().collect();
        let cross = self
            .cross
            .iter()
            .map(|[k, v]| Ok([gather.gather(k, &cross_index)?, gather.gather(v, &cross_index)?]))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            hidden: gather.gather(&self.hidden, index)?,
            mask: Tensor::from_array(([index.len(), self.len], mask))?.upcast(),
            cross,
            cross_share: share,
            rows: index.len(),
            len: self.len,
        })
    }
}

/// The longest length `g` such that `rows` splits into groups of `g` equal values (1 when none longer).
fn common_run(rows: &[usize]) -> usize {
    let mut g = 0;
    let mut run = 0;
    for (i, &r) in rows.iter().enumerate() {
        run += 1;
        if rows.get(i + 1) != Some(&r) {
            g = gcd(g, run);
            run = 0;
        }
    }
    g.max(1)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::common_run;

    #[test]
    fn rows_share_in_the_largest_even_groups() {
        assert_eq!(common_run(&[0, 0, 0, 0, 1, 1, 1, 1]), 4);
        assert_eq!(common_run(&[0, 0, 1, 1, 1, 1]), 2);
        assert_eq!(common_run(&[0, 0, 0, 1, 1]), 1);
        assert_eq!(common_run(&[0, 1, 2]), 1);
        assert_eq!(common_run(&[3, 3, 3]), 3);
        assert_eq!(common_run(&[0, 0, 1, 1, 0, 0]), 2);
        assert_eq!(common_run(&[]), 1);
    }
}
