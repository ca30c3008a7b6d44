//! The encoder graph: token ids in, hidden states out, once per request.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType};

use super::graph::GraphIo;
use super::kv_cache::gather_rows;
use crate::error::{Error, Result};

pub struct Encoder {
    session: Mutex<Session>,
    path: PathBuf,
}

/// Encoder hidden states and the padding mask of a batch, row-aligned with the decoder.
pub struct EncoderOutput {
    pub(crate) hidden: DynValue,
    pub(crate) mask: Tensor<i64>,
    pub rows: usize,
    pub len: usize,
}

impl Encoder {
    pub fn new(path: &Path, session: Session) -> Result<Self> {
        let io = GraphIo::new(path, &session);
        io.require_input("input_ids", TensorElementType::Int64)?;
        io.require_input("attention_mask", TensorElementType::Int64)?;
        io.require_output("last_hidden_state")?;
        Ok(Self { session: Mutex::new(session), path: path.to_path_buf() })
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
        let ids = Tensor::from_array(([rows, len], ids))?;
        let mask = Tensor::from_array(([rows, len], mask))?;
        let mut session = self.session.lock().map_err(|_| Error::Internal("encoder lock poisoned".into()))?;
        let mut outputs = session
            .run(ort::inputs! { "input_ids" => &ids, "attention_mask" => &mask })
            .map_err(|e| Error::Onnx(format!("{}: {e}", self.path.display())))?;
        let hidden = outputs
            .remove("last_hidden_state")
            .ok_or_else(|| Error::invalid_model(&self.path, "no `last_hidden_state` output"))?;
        Ok(EncoderOutput { hidden, mask, rows, len })
    }
}

impl EncoderOutput {
    /// `last_hidden_state` as `[rows, len, width]` data, and `width`.
    pub fn hidden_states(&self) -> Result<(&[f32], usize)> {
        let (shape, data) = self.hidden.try_extract_tensor::<f32>()?;
        Ok((data, shape.get(2).copied().unwrap_or(0) as usize))
    }

    /// The padding mask, `[rows, len]`, 1 for real tokens.
    pub fn mask(&self) -> &[i64] {
        self.mask.extract_tensor().1
    }

    /// Each row repeated `n` times in place (row r becomes rows r*n .. r*n+n), for beam search.
    pub fn repeat_rows(&self, n: usize) -> Result<Self> {
        let index: Vec<usize> = (0..self.rows).flat_map(|r| std::iter::repeat_n(r, n)).collect();
        self.select_rows(&index)
    }

    /// The rows `index`, in that order.
    pub fn select_rows(&self, index: &[usize]) -> Result<Self> {
        let (_, mask) = self.mask.extract_tensor();
        let mask: Vec<i64> = index.iter().flat_map(|&r| mask[r * self.len..(r + 1) * self.len].iter().copied()).collect();
        Ok(Self {
            hidden: gather_rows(&self.hidden, index)?,
            mask: Tensor::from_array(([index.len(), self.len], mask))?,
            rows: index.len(),
            len: self.len,
        })
    }
}
