//! What the exported graphs take and give: names, layer counts and attention shapes, read from
//! the sessions themselves, never assumed.

use std::path::Path;

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use super::tensors::{float_type_name, is_float_type};
use crate::error::{Error, Result};

/// Inputs and outputs of one graph, with a path for error messages.
pub struct GraphIo<'a> {
    path: &'a Path,
    session: &'a Session,
}

impl<'a> GraphIo<'a> {
    pub fn new(path: &'a Path, session: &'a Session) -> Self {
        Self { path, session }
    }

    fn input_type(&self, name: &str) -> Option<&ValueType> {
        self.session.inputs().iter().find(|i| i.name() == name).map(|i| i.dtype())
    }

    pub fn has_input(&self, name: &str) -> bool {
        self.input_type(name).is_some()
    }

    /// An initializer the caller may override by feeding an input of its name (a graph input
    /// with a default value; ONNX Runtime does not list it among the inputs).
    pub fn has_overridable(&self, name: &str) -> bool {
        self.session.overridable_initializers().iter().any(|i| i.name() == name)
    }

    pub fn has_output(&self, name: &str) -> bool {
        self.session.outputs().iter().any(|o| o.name() == name)
    }

    /// Fails unless `name` is an input tensor of element type `ty`.
    pub fn require_input(&self, name: &str, ty: TensorElementType) -> Result<()> {
        match self.input_type(name) {
            None => {
                Err(Error::invalid_model(self.path, format!("the graph has no input `{name}` (inputs: {})", self.input_names().join(", "))))
            }
            Some(t) if t.tensor_type() != Some(ty) => {
                Err(Error::invalid_model(self.path, format!("input `{name}` is {t:?}, expected a tensor of {ty:?}")))
            }
            Some(_) => Ok(()),
        }
    }

    /// Fails unless `name` is an input tensor of float32, float16 or bfloat16; returns which.
    pub fn require_float_input(&self, name: &str) -> Result<TensorElementType> {
        match self.input_type(name).and_then(ValueType::tensor_type) {
            Some(ty) if is_float_type(ty) => Ok(ty),
            _ => self.require_input(name, TensorElementType::Float32).map(|()| TensorElementType::Float32),
        }
    }

    pub fn require_output(&self, name: &str) -> Result<()> {
        if self.has_output(name) {
            return Ok(());
        }
        let outputs: Vec<_> = self.session.outputs().iter().map(|o| o.name().to_string()).collect();
        Err(Error::invalid_model(self.path, format!("the graph has no output `{name}` (outputs: {})", outputs.join(", "))))
    }

    /// `logits` must be a float tensor `[rows, positions, vocab]`; returns its width when static.
    pub fn require_logits(&self) -> Result<Option<usize>> {
        self.require_output("logits")?;
        let ty = self.session.outputs().iter().find(|o| o.name() == "logits").map(|o| o.dtype());
        let element = ty.and_then(ValueType::tensor_type);
        if !element.is_some_and(is_float_type) {
            return Err(Error::invalid_model(
                self.path,
                format!("output `logits` is {ty:?}, expected a tensor of float32, float16 or bfloat16"),
            ));
        }
        let dims: Vec<i64> = ty.and_then(ValueType::tensor_shape).map(|s| s.iter().copied().collect()).unwrap_or_default();
        if dims.len() != 3 {
            return Err(Error::invalid_model(
                self.path,
                format!("output `logits` has {} dimensions {dims:?}, expected 3 (rows, positions, vocabulary)", dims.len()),
            ));
        }
        Ok((dims[2] > 0).then_some(dims[2] as usize))
    }

    pub fn input_names(&self) -> Vec<String> {
        self.session.inputs().iter().map(|i| i.name().to_string()).collect()
    }

    /// Static dimensions of an input; unknown ones are `None`.
    pub fn input_dims(&self, name: &str) -> Vec<Option<usize>> {
        self.input_type(name)
            .and_then(ValueType::tensor_shape)
            .map(|s| s.iter().map(|&d| (d > 0).then_some(d as usize)).collect())
            .unwrap_or_default()
    }

    /// The symbolic names of an input's dimensions (empty where static or unnamed).
    pub fn input_symbols(&self, name: &str) -> Vec<String> {
        match self.input_type(name) {
            Some(ValueType::Tensor { dimension_symbols, .. }) => dimension_symbols.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the cross-attention cache inputs take fewer rows than the decoder runs
    /// (tools/share_cross_cache.py): their batch dimension is named apart from `input_ids`'.
    pub fn shares_cross_rows(&self) -> bool {
        let batch = |name: &str| self.input_symbols(name).into_iter().next().filter(|s| !s.is_empty());
        match (batch(&past_name(0, "encoder", "key")), batch("input_ids")) {
            (Some(cross), Some(rows)) => cross != rows,
            _ => false,
        }
    }

    /// Decoder layers, counted from `past_key_values.{i}.decoder.key` inputs.
    pub fn past_layers(&self) -> usize {
        let mut n = 0;
        while self.has_input(&past_name(n, "decoder", "key")) {
            n += 1;
        }
        n
    }

    pub fn path(&self) -> &Path {
        self.path
    }
}

pub fn past_name(layer: usize, attention: &str, kv: &str) -> String {
    format!("past_key_values.{layer}.{attention}.{kv}")
}

pub fn present_name(layer: usize, attention: &str, kv: &str) -> String {
    format!("present.{layer}.{attention}.{kv}")
}

/// The attention cache layout of a decoder, shared by both layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheShape {
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Element type of every past and present (float32, float16 or bfloat16).
    pub dtype: TensorElementType,
}

impl CacheShape {
    /// Bytes one position of one row takes in the self-attention cache (keys and values, every
    /// layer).
    pub fn bytes_per_position(&self) -> u64 {
        let element = match self.dtype {
            TensorElementType::Float16 | TensorElementType::Bfloat16 => 2u64,
            _ => 4,
        };
        let width = (self.heads as u64).saturating_mul(self.head_dim as u64);
        (self.layers as u64).saturating_mul(2).saturating_mul(width).saturating_mul(element)
    }

    /// Reads layers from a graph that takes pasts, heads and width from its input shapes, or
    /// from config.json when the export left them symbolic.
    pub fn discover(io: &GraphIo, config_heads: Option<usize>, config_head_dim: Option<usize>) -> Result<Self> {
        let layers = io.past_layers();
        if layers == 0 {
            return Err(Error::invalid_model(io.path(), "the graph has no `past_key_values.*` inputs"));
        }
        let dtype = io
            .require_float_input(&past_name(0, "decoder", "key"))
            .map_err(|_| Error::invalid_model(io.path(), "`past_key_values.0.decoder.key` is not a float32, float16 or bfloat16 tensor"))?;
        for layer in 0..layers {
            for attention in ["decoder", "encoder"] {
                for kv in ["key", "value"] {
                    let name = past_name(layer, attention, kv);
                    if io.has_input(&name) {
                        io.require_input(&name, dtype).map_err(|_| {
                            Error::invalid_model(io.path(), format!("`{name}` is not {} like the other pasts", float_type_name(dtype)))
                        })?;
                    } else if attention == "decoder" || layer > 0 || io.has_input(&past_name(0, "encoder", "key")) {
                        return Err(Error::invalid_model(io.path(), format!("the graph has no input `{name}`")));
                    }
                }
            }
        }
        let dims = io.input_dims(&past_name(0, "decoder", "key"));
        let heads = dims.get(1).copied().flatten().or(config_heads);
        let head_dim = dims.get(3).copied().flatten().or(config_head_dim);
        match (heads, head_dim) {
            (Some(heads), Some(head_dim)) => Ok(Self { layers, heads, head_dim, dtype }),
            _ => Err(Error::invalid_model(
                io.path(),
                "cannot tell the attention heads and width: the graph leaves them symbolic and config.json does not give them",
            )),
        }
    }
}
