//! The encoder graph: token ids in, hidden states out, once per request.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::value::{DynTensor, Tensor, TensorElementType};

use super::graph::GraphIo;
use super::row_gather::{CacheDevice, RowGather};
use super::tensors;
use crate::error::{Error, Result};

pub struct Encoder {
    session: Mutex<Session>,
    path: PathBuf,
    /// Where the hidden states are kept when run through IoBinding; `None`: plain runs.
    bind_output_to: Option<CacheDevice>,
}

/// Encoder hidden states and the padding mask of a batch, row-aligned with the decoder.
pub struct EncoderOutput {
    pub(crate) hidden: DynTensor,
    pub(crate) mask: DynTensor,
    pub rows: usize,
    pub len: usize,
}

impl Encoder {
    pub fn new(path: &Path, session: Session) -> Result<Self> {
        let io = GraphIo::new(path, &session);
        io.require_input("input_ids", TensorElementType::Int64)?;
        io.require_input("attention_mask", TensorElementType::Int64)?;
        io.require_output("last_hidden_state")?;
        Ok(Self { session: Mutex::new(session), path: path.to_path_buf(), bind_output_to: None })
    }

    /// Keeps the hidden states on `device` (IoBinding) for the decoder to read there.
    pub fn bind_output_to(&mut self, device: CacheDevice) {
        self.bind_output_to = Some(device);
    }

    /// Runs a right-padded batch.
    pub fn run(&self, inputs: &[Vec<u32>], pad_token_id: u32) -> Result<EncoderOutput> {
        let rows = inputs.len();
        let len = inputs.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut ids = vec![pad_token_id as i64; rows * len];
        let mut mask = vec![0i64; rows * len];
        for (r, input) in inputs.iter().enumerate() {
            for (c, &id) in input.iter().enumerate() {
                ids[r * len + c] = id as i64;
                mask[r * len + c] = 1;
            }
        }
        let ids = Tensor::from_array(([rows, len], ids))?.upcast();
        let mask = Tensor::from_array(([rows, len], mask))?.upcast();
        let onnx = |e: ort::Error| Error::Onnx(format!("{}: {e}", self.path.display()));
        let mut session = self.session.lock().map_err(|_| Error::Internal("encoder lock poisoned".into()))?;
        let hidden = match self.bind_output_to {
            None => session
                .run(ort::inputs! { "input_ids" => &ids, "attention_mask" => &mask })
                .map_err(onnx)?
                .remove("last_hidden_state"),
            Some(device) => {
                let mut binding = session.create_binding().map_err(onnx)?;
                binding.bind_input("input_ids", &ids).map_err(onnx)?;
                binding.bind_input("attention_mask", &mask).map_err(onnx)?;
                binding.bind_output_to_device("last_hidden_state", &device.memory_info()?).map_err(onnx)?;
                let hidden = session.run_binding(&binding).map_err(onnx)?.remove("last_hidden_state");
                hidden
            }
        }
        .ok_or_else(|| Error::invalid_model(&self.path, "no `last_hidden_state` output"))?;
        Ok(EncoderOutput { hidden: tensors::into_tensor(hidden, "last_hidden_state")?, mask, rows, len })
    }
}

impl EncoderOutput {
    /// `last_hidden_state` as `[rows, len, width]` `f32` data on the host, and `width`.
    pub fn hidden_states(&self) -> Result<(Vec<f32>, usize)> {
        let (shape, data) = tensors::to_host_f32(&self.hidden)?;
        Ok((data, shape.get(2).copied().unwrap_or(0) as usize))
    }

    /// The padding mask, `[rows, len]`, 1 for real tokens.
    pub fn mask(&self) -> Result<&[i64]> {
        Ok(self.mask.try_extract_tensor::<i64>()?.1)
    }

    /// Each row repeated `n` times in place (row r becomes rows r*n .. r*n+n), for beam search.
    pub fn repeat_rows(&self, n: usize, gather: &RowGather) -> Result<Self> {
        let index: Vec<usize> = (0..self.rows).flat_map(|r| std::iter::repeat_n(r, n)).collect();
        self.select_rows(&index, gather)
    }

    /// The rows `index`, in that order.
    pub fn select_rows(&self, index: &[usize], gather: &RowGather) -> Result<Self> {
        let mask = self.mask()?;
        let mask: Vec<i64> = index.iter().flat_map(|&r| mask[r * self.len..(r + 1) * self.len].iter().copied()).collect();
        Ok(Self {
            hidden: gather.gather(&self.hidden, index)?,
            mask: Tensor::from_array(([index.len(), self.len], mask))?.upcast(),
            rows: index.len(),
            len: self.len,
        })
    }
}
