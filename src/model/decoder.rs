//! The decoder graphs, merged (`decoder_model_merged.onnx`) or split (`decoder_model.onnx` for
//! the first step, `decoder_with_past_model.onnx` after it), behind one `step` call.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorElementType};

use super::encoder::EncoderOutput;
use super::graph::{past_name, present_name, CacheShape, GraphIo};
use super::kv_cache::KvCache;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Merged,
    Split,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Merged => "merged",
            Layout::Split => "split",
        }
    }
}

struct Graph {
    session: Mutex<Session>,
    path: PathBuf,
    takes_hidden_states: bool,
}

impl Graph {
    fn new(path: &Path, session: Session, needs_hidden_states: bool) -> Result<Self> {
        let io = GraphIo::new(path, &session);
        io.require_input("input_ids", TensorElementType::Int64)?;
        io.require_input("encoder_attention_mask", TensorElementType::Int64)?;
        if needs_hidden_states {
            io.require_input("encoder_hidden_states", TensorElementType::Float32)?;
        }
        io.require_output("logits")?;
        let takes_hidden_states = io.has_input("encoder_hidden_states");
        Ok(Self { session: Mutex::new(session), path: path.to_path_buf(), takes_hidden_states })
    }
}

pub struct Decoder {
    layout: Layout,
    /// The merged graph, or the first-step graph of the split pair.
    first: Graph,
    /// The split pair's with-past graph.
    with_past: Option<Graph>,
    pub cache: CacheShape,
}

/// Next-token logits of each row, `[rows, vocab]`.
pub struct Logits {
    pub data: Vec<f32>,
    pub vocab: usize,
}

impl Logits {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.vocab..(r + 1) * self.vocab]
    }
}

impl Decoder {
    pub fn merged(path: &Path, session: Session, heads: Option<usize>, head_dim: Option<usize>) -> Result<Self> {
        let io = GraphIo::new(path, &session);
        io.require_input("use_cache_branch", TensorElementType::Bool)?;
        let cache = CacheShape::discover(&io, heads, head_dim)?;
        check_presents(&io, cache.layers, true)?;
        Ok(Self { layout: Layout::Merged, first: Graph::new(path, session, true)?, with_past: None, cache })
    }

    pub fn split(
        first_path: &Path,
        first: Session,
        past_path: &Path,
        with_past: Session,
        heads: Option<usize>,
        head_dim: Option<usize>,
    ) -> Result<Self> {
        let past_io = GraphIo::new(past_path, &with_past);
        let cache = CacheShape::discover(&past_io, heads, head_dim)?;
        check_presents(&past_io, cache.layers, false)?;
        check_presents(&GraphIo::new(first_path, &first), cache.layers, true)?;
        Ok(Self {
            layout: Layout::Split,
            first: Graph::new(first_path, first, true)?,
            with_past: Some(Graph::new(past_path, with_past, false)?),
            cache,
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// One decoding step: `tokens` holds one new token per row.
    pub fn step(&self, tokens: &[u32], encoder: &EncoderOutput, cache: &mut KvCache) -> Result<Logits> {
        let rows = tokens.len();
        if rows != encoder.rows {
            return Err(Error::Internal(format!("{rows} decoder rows for {} encoder rows", encoder.rows)));
        }
        let first_step = cache.is_empty();
        let graph = match (&self.with_past, first_step) {
            (Some(past), false) => past,
            _ => &self.first,
        };
        let ids = Tensor::from_array(([rows, 1], tokens.iter().map(|&t| t as i64).collect::<Vec<_>>()))?;
        let mut inputs: Vec<(Cow<'static, str>, SessionInputValue<'_>)> = vec![
            ("input_ids".into(), ids.into()),
            ("encoder_attention_mask".into(), (&encoder.mask).into()),
        ];
        if graph.takes_hidden_states {
            inputs.push(("encoder_hidden_states".into(), (&encoder.hidden).into()));
        }
        let takes_pasts = self.layout == Layout::Merged || !first_step;
        if self.layout == Layout::Merged {
            inputs.push(("use_cache_branch".into(), Tensor::from_array(([1usize], vec![!first_step]))?.into()));
        }
        if takes_pasts {
            let c = self.cache;
            for layer in 0..c.layers {
                for (k, kv) in ["key", "value"].into_iter().enumerate() {
                    let (own, cross) = if first_step {
                        let empty = || -> Result<SessionInputValue<'_>> {
                            Ok(Tensor::from_array(([rows, c.heads, 0, c.head_dim], Vec::<f32>::new()))?.into())
                        };
                        (empty()?, empty()?)
                    } else {
                        (
                            (&cache.self_attention[layer][k]).into(),
                            (&cache.cross_attention[layer][k]).into(),
                        )
                    };
                    inputs.push((past_name(layer, "decoder", kv).into(), own));
                    inputs.push((past_name(layer, "encoder", kv).into(), cross));
                }
            }
        }

        let mut session = graph.session.lock().map_err(|_| Error::Internal("decoder lock poisoned".into()))?;
        let mut outputs = session.run(inputs).map_err(|e| Error::Onnx(format!("{}: {e}", graph.path.display())))?;
        let logits = {
            let value = outputs.get("logits").ok_or_else(|| Error::invalid_model(&graph.path, "no `logits` output"))?;
            let (shape, data) = value.try_extract_tensor::<f32>()?;
            let (seq, vocab) = (shape[1] as usize, shape[2] as usize);
            let mut last = Vec::with_capacity(rows * vocab);
            for r in 0..rows {
                let start = (r * seq + seq - 1) * vocab;
                last.extend_from_slice(&data[start..start + vocab]);
            }
            Logits { data: last, vocab }
        };
        let mut take = |name: String| -> Result<DynValue> {
            outputs.remove(&name).ok_or_else(|| Error::invalid_model(&graph.path, format!("no `{name}` output")))
        };
        let mut self_attention = Vec::with_capacity(self.cache.layers);
        let mut cross_attention = Vec::new();
        for layer in 0..self.cache.layers {
            self_attention.push([take(present_name(layer, "decoder", "key"))?, take(present_name(layer, "decoder", "value"))?]);
            if first_step {
                cross_attention
                    .push([take(present_name(layer, "encoder", "key"))?, take(present_name(layer, "encoder", "value"))?]);
            }
        }
        drop(outputs);
        drop(session);
        cache.self_attention = self_attention;
        if first_step {
            cache.cross_attention = cross_attention;
        }
        Ok(logits)
    }
}

fn check_presents(io: &GraphIo, layers: usize, with_encoder: bool) -> Result<()> {
    for layer in 0..layers {
        for kv in ["key", "value"] {
            io.require_output(&present_name(layer, "decoder", kv))?;
            if with_encoder {
                io.require_output(&present_name(layer, "encoder", kv))?;
            }
        }
    }
    Ok(())
}
