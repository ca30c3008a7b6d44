//! The decoder graphs, merged (`decoder_model_merged.onnx`) or split (`decoder_model.onnx` for
//! the first step, `decoder_with_past_model.onnx` after it), behind one `step` call.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::{Session, SessionInputValue};
use ort::value::{DynTensor, Tensor, TensorElementType};

use super::encoder::EncoderOutput;
use super::graph::{past_name, present_name, CacheShape, GraphIo};
use super::kv_cache::KvCache;
use super::row_gather::{CacheDevice, RowGather};
use super::tensors;
use crate::error::{Error, Result};

const SELF_MASK: &str = "decoder_attention_mask";
/// tools/in_place_cache.py: the self-attention caches are buffers the graph appends to in place,
/// this input saying how many positions they hold.
const PAST_LENGTH: &str = "past_sequence_length";
/// Positions an in-place cache buffer starts with; it doubles when full (powers of two).
const FIRST_CAPACITY: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Merged,
    Split,
    /// `decoder_with_past_model.onnx` for every step (an empty self-attention cache on the first),
    /// the cross-attention cache from the encoder graph.
    WithPast,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Merged => "merged",
            Layout::Split => "split",
            Layout::WithPast => "with_past",
        }
    }
}

struct Graph {
    session: Mutex<Session>,
    path: PathBuf,
    takes_hidden_states: bool,
    /// `decoder_attention_mask` `[rows, past + 1]` over the self-attention positions
    /// (tools/decoder_mask.py): rows at different positions can share a run, left-padded.
    takes_self_mask: bool,
    /// Width of `logits` when the graph fixes it.
    logits_width: Option<usize>,
    /// The cross-attention cache may hold one row for several consecutive decoder rows.
    shares_cross_rows: bool,
    /// Each present self-attention cache is its past's buffer, appended in place ([`PAST_LENGTH`]).
    in_place: bool,
}

impl Graph {
    fn new(path: &Path, session: Session, needs_hidden_states: bool) -> Result<Self> {
        let io = GraphIo::new(path, &session);
        io.require_input("input_ids", TensorElementType::Int64)?;
        io.require_input("encoder_attention_mask", TensorElementType::Int64)?;
        if needs_hidden_states {
            io.require_float_input("encoder_hidden_states")?;
        }
        let logits_width = io.require_logits()?;
        let takes_hidden_states = io.has_input("encoder_hidden_states");
        // tools/decoder_mask.py gives it a default of ones: an overridable initializer.
        let takes_self_mask = io.has_input(SELF_MASK) || io.has_overridable(SELF_MASK);
        if io.has_input(SELF_MASK) {
            io.require_input(SELF_MASK, TensorElementType::Int64)?;
        }
        let shares_cross_rows = io.shares_cross_rows();
        let in_place = io.has_input(PAST_LENGTH);
        if in_place {
            io.require_input(PAST_LENGTH, TensorElementType::Int64)?;
        }
        Ok(Self {
            in_place,
            session: Mutex::new(session),
            path: path.to_path_buf(),
            takes_hidden_states,
            takes_self_mask,
            logits_width,
            shares_cross_rows,
        })
    }
}

pub struct Decoder {
    layout: Layout,
    /// The merged graph, or the first-step graph of the split pair.
    first: Graph,
    /// The split pair's with-past graph.
    with_past: Option<Graph>,
    pub cache: CacheShape,
    /// Where presents stay between steps when run through IoBinding; `None`: plain runs, host memory.
    bind_cache_to: Option<CacheDevice>,
    /// Row selection for the caches, on the device they live on.
    pub rows: RowGather,
    /// The vocabulary every run's logits must span (config.json's `vocab_size`, checked at open).
    vocab: usize,
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

    pub fn row_mut(&mut self, r: usize) -> &mut [f32] {
        &mut self.data[r * self.vocab..(r + 1) * self.vocab]
    }
}

impl Decoder {
    pub fn merged(path: &Path, session: Session, heads: Option<usize>, head_dim: Option<usize>) -> Result<Self> {
        let io = GraphIo::new(path, &session);
        io.require_input("use_cache_branch", TensorElementType::Bool)?;
        let cache = CacheShape::discover(&io, heads, head_dim)?;
        check_presents(&io, cache.layers, true)?;
        Ok(Self::unbound(Layout::Merged, Graph::new(path, session, true)?, None, cache))
    }

    fn unbound(layout: Layout, first: Graph, with_past: Option<Graph>, cache: CacheShape) -> Self {
        Self { layout, first, with_past, cache, bind_cache_to: None, rows: RowGather::new(CacheDevice::Host, false), vocab: 0 }
    }

    /// Refuses a `vocab_size` that a graph's static logits width contradicts; every run's logits
    /// are then checked against it.
    pub fn expect_vocab(&mut self, vocab_size: usize, config_path: &Path) -> Result<()> {
        for graph in std::iter::once(&self.first).chain(self.with_past.as_ref()) {
            if let Some(width) = graph.logits_width.filter(|w| *w != vocab_size) {
                return Err(Error::invalid_model(
                    config_path,
                    format!("vocab_size is {vocab_size}, but the logits of {} are {width} wide", graph.path.display()),
                ));
            }
        }
        self.vocab = vocab_size;
        Ok(())
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
        let past = Graph::new(past_path, with_past, false)?;
        Ok(Self::unbound(Layout::Split, Graph::new(first_path, first, true)?, Some(past), cache))
    }

    /// Keeps the caches on `device` between steps through IoBinding; only logits come to the host.
    /// A graph that appends its cache in place does so in host memory only.
    pub fn bind_cache_to(&mut self, device: CacheDevice) -> Result<()> {
        if device != CacheDevice::Host {
            if let Some(graph) = self.in_place_graph() {
                return Err(Error::Unsupported(format!(
                    "{} appends its cache in place in host memory, and this model keeps its cache on {}; export it without --in-place-cache for a GPU",
                    graph.path.display(),
                    device.describe()
                )));
            }
        }
        self.bind_cache_to = Some(device);
        self.rows = RowGather::new(device, true);
        Ok(())
    }

    /// The graph that appends the self-attention cache in place (tools/in_place_cache.py), if any.
    fn in_place_graph(&self) -> Option<&Graph> {
        std::iter::once(&self.first).chain(self.with_past.as_ref()).find(|g| g.in_place)
    }

    pub fn appends_in_place(&self) -> bool {
        self.in_place_graph().is_some()
    }

    /// Positions the self-attention cache takes to hold `positions`: as many, or the in-place
    /// buffers' capacity.
    pub fn self_cache_positions(&self, positions: usize) -> usize {
        if self.appends_in_place() {
            buffer_capacity(positions).unwrap_or(usize::MAX)
        } else {
            positions
        }
    }

    /// Where the caches live between steps, when bound.
    pub fn cache_device(&self) -> Option<CacheDevice> {
        self.bind_cache_to
    }

    /// The with-past graph alone; the encoder must return the cross-attention cache.
    pub fn with_past_only(path: &Path, session: Session, heads: Option<usize>, head_dim: Option<usize>) -> Result<Self> {
        let io = GraphIo::new(path, &session);
        let cache = CacheShape::discover(&io, heads, head_dim)?;
        check_presents(&io, cache.layers, false)?;
        Ok(Self::unbound(Layout::WithPast, Graph::new(path, session, false)?, None, cache))
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Whether the decoder rows of one input (its beams) can share one row of the
    /// cross-attention cache the encoder returned (see [`EncoderOutput::cross_share`]).
    pub fn shares_cross_rows(&self) -> bool {
        self.layout == Layout::WithPast && self.first.shares_cross_rows
    }

    /// `encoder`'s rows `index`, in that order, the cross-attention cache shared between
    /// consecutive rows of one input where the graph allows it.
    pub fn select_encoder_rows(&self, encoder: &EncoderOutput, index: &[usize]) -> Result<EncoderOutput> {
        encoder.select_rows(index, &self.rows, self.shares_cross_rows())
    }

    /// Whether steps after the first take a self-attention mask (see [`Decoder::step_masked`]),
    /// with the caches on the host, where they can be padded.
    pub fn takes_self_mask(&self) -> bool {
        let graph = match self.layout {
            Layout::Merged => return false,
            Layout::Split => self.with_past.as_ref(),
            Layout::WithPast => Some(&self.first),
        };
        graph.is_some_and(|g| g.takes_self_mask) && self.bind_cache_to.is_none()
    }

    /// One decoding step: `tokens` holds one new token per row.
    pub fn step(&self, tokens: &[u32], encoder: &EncoderOutput, cache: &mut KvCache) -> Result<Logits> {
        self.step_masked(tokens, encoder, cache, None)
    }

    /// A step whose rows may sit at different positions: `self_mask` is `[rows, past + 1]`, 0 at
    /// the self-attention cache's padding (only where [`Decoder::takes_self_mask`], never on a
    /// first step).
    pub fn step_masked(&self, tokens: &[u32], encoder: &EncoderOutput, cache: &mut KvCache, self_mask: Option<&[i64]>) -> Result<Logits> {
        self.run(tokens, 1, encoder, cache, self_mask)
    }

    /// Teacher forcing in one run: every row's decoder input is `decoder_input` (the start token
    /// first), fed at once over an empty cache. The logits of every position, row-major: row `r`,
    /// position `t` is `Logits::row(r * decoder_input.len() + t)`.
    pub fn teacher_forced(&self, decoder_input: &[u32], encoder: &EncoderOutput) -> Result<Logits> {
        let tokens: Vec<u32> = (0..encoder.rows).flat_map(|_| decoder_input.iter().copied()).collect();
        let logits = self.run(&tokens, decoder_input.len(), encoder, &mut KvCache::default(), None)?;
        // Over an empty cache every layout runs `first`.
        if logits.data.len() != tokens.len() * logits.vocab {
            return Err(Error::invalid_model(&self.first.path, "it returned the logits of fewer positions than it was fed"));
        }
        Ok(logits)
    }

    /// `tokens` holds `width` new tokens per row (more than one only over an empty cache).
    fn run(&self, tokens: &[u32], width: usize, encoder: &EncoderOutput, cache: &mut KvCache, self_mask: Option<&[i64]>) -> Result<Logits> {
        let rows = tokens.len().checked_div(width).unwrap_or(0);
        if width == 0 || rows * width != tokens.len() || (width > 1 && (!cache.is_empty() || self_mask.is_some())) {
            return Err(Error::Internal(format!("{} decoder tokens in rows of {width}", tokens.len())));
        }
        if rows != encoder.rows {
            return Err(Error::Internal(format!("{rows} decoder rows for {} encoder rows", encoder.rows)));
        }
        let first_step = cache.is_empty();
        let graph = match (&self.with_past, first_step) {
            (Some(past), false) => past,
            _ => &self.first,
        };
        let c = self.cache;
        let past_length = if graph.in_place { Some(self.reserve_in_place(cache, rows, width)?) } else { None };
        let ids = Tensor::from_array(([rows, width], tokens.iter().map(|&t| t as i64).collect::<Vec<_>>()))?.upcast();
        let branch = match self.layout {
            Layout::Merged => Some(Tensor::from_array(([1usize], vec![!first_step]))?.upcast()),
            _ => None,
        };
        let empty = if first_step && !graph.in_place { Some(tensors::empty(c.dtype, &[rows, c.heads, 0, c.head_dim])?) } else { None };
        let mask = match self_mask {
            None => None,
            Some(_) if first_step || !graph.takes_self_mask => {
                return Err(Error::Internal(format!("{} takes no self-attention mask on this step", graph.path.display())))
            }
            Some(m) => {
                let width = m.len().checked_div(rows).unwrap_or(0);
                if width * rows != m.len() || width != cache.self_len() + 1 {
                    return Err(Error::Internal(format!("a self-attention mask of {} values for {rows} rows", m.len())));
                }
                Some(Tensor::from_array(([rows, width], m.to_vec()))?.upcast())
            }
        };
        let mut inputs: Vec<(Cow<'static, str>, &DynTensor)> =
            vec![("input_ids".into(), &ids), ("encoder_attention_mask".into(), &encoder.mask)];
        if let Some(mask) = &mask {
            inputs.push((SELF_MASK.into(), mask));
        }
        if graph.takes_hidden_states {
            inputs.push(("encoder_hidden_states".into(), &encoder.hidden));
        }
        if let Some(branch) = &branch {
            inputs.push(("use_cache_branch".into(), branch));
        }
        if let Some(past_length) = &past_length {
            inputs.push((PAST_LENGTH.into(), past_length));
        }
        let cross_from_encoder = self.layout == Layout::WithPast;
        if cross_from_encoder && encoder.cross.len() != c.layers {
            return Err(Error::Internal(format!("{} cross-attention layers from the encoder, {} wanted", encoder.cross.len(), c.layers)));
        }
        if encoder.cross_share > 1 && !self.shares_cross_rows() {
            return Err(Error::Internal(format!("{} takes one cross-attention row per decoder row", graph.path.display())));
        }
        if self.layout != Layout::Split || !first_step {
            for layer in 0..c.layers {
                for (k, kv) in ["key", "value"].into_iter().enumerate() {
                    let own = empty.as_ref().unwrap_or_else(|| &cache.self_attention[layer][k]);
                    let cross = if cross_from_encoder {
                        &encoder.cross[layer][k]
                    } else if first_step {
                        empty
                            .as_ref()
                            .ok_or_else(|| Error::Internal("a first step of an in-place graph without the encoder's cache".into()))?
                    } else {
                        &cache.cross_attention[layer][k]
                    };
                    inputs.push((past_name(layer, "decoder", kv).into(), own));
                    inputs.push((past_name(layer, "encoder", kv).into(), cross));
                }
            }
        }
        let mut wanted = Vec::with_capacity(c.layers * 4);
        for layer in 0..c.layers {
            for kv in ["key", "value"] {
                if !graph.in_place {
                    wanted.push(present_name(layer, "decoder", kv));
                }
                if first_step && !cross_from_encoder {
                    wanted.push(present_name(layer, "encoder", kv));
                }
            }
        }

        let onnx = |e: ort::Error| Error::Onnx(format!("{}: {e}", graph.path.display()));
        let mut session = graph.session.lock().map_err(|_| Error::Internal("decoder lock poisoned".into()))?;
        let (logits, mut presents) = match self.bind_cache_to {
            // Host memory (bind_cache_to refuses any other for such a graph).
            _ if graph.in_place => {
                let mut binding = session.create_binding().map_err(onnx)?;
                for (name, value) in &inputs {
                    binding.bind_input(name.as_ref(), *value).map_err(onnx)?;
                }
                drop(inputs);
                let host = CacheDevice::Host.memory_info()?;
                for name in std::iter::once("logits").chain(wanted.iter().map(String::as_str)) {
                    binding.bind_output_to_device(name, &host).map_err(onnx)?;
                }
                for (layer, pair) in cache.self_attention.iter_mut().enumerate() {
                    let [key, value] = pair;
                    binding.bind_output(present_name(layer, "decoder", "key"), key).map_err(onnx)?;
                    binding.bind_output(present_name(layer, "decoder", "value"), value).map_err(onnx)?;
                }
                let collected = collect(session.run_binding(&binding).map_err(onnx)?, &graph.path, &wanted, self.vocab, width > 1)?;
                collected
            }
            None => {
                let feed: Vec<(Cow<'static, str>, SessionInputValue<'_>)> =
                    inputs.into_iter().map(|(n, v)| (n, SessionInputValue::from(v))).collect();
                collect(session.run(feed).map_err(onnx)?, &graph.path, &wanted, self.vocab, width > 1)?
            }
            Some(device) => {
                let mut binding = session.create_binding().map_err(onnx)?;
                for (name, value) in &inputs {
                    binding.bind_input(name.as_ref(), *value).map_err(onnx)?;
                }
                binding.bind_output_to_device("logits", &CacheDevice::Host.memory_info()?).map_err(onnx)?;
                let cache_memory = device.memory_info()?;
                for name in &wanted {
                    binding.bind_output_to_device(name.as_str(), &cache_memory).map_err(onnx)?;
                }
                let collected = collect(session.run_binding(&binding).map_err(onnx)?, &graph.path, &wanted, self.vocab, width > 1)?;
                collected
            }
        };
        drop(session);
        if graph.in_place {
            cache.in_place = Some(cache.self_len() + width);
            return Ok(logits);
        }
        let mut self_attention = Vec::with_capacity(c.layers);
        let mut cross_attention = Vec::new();
        let mut next = || presents.next().expect("one present per wanted name");
        for _ in 0..c.layers {
            if first_step && !cross_from_encoder {
                let (sk, ck, sv, cv) = (next(), next(), next(), next());
                self_attention.push([sk, sv]);
                cross_attention.push([ck, cv]);
            } else {
                self_attention.push([next(), next()]);
            }
        }
        cache.self_attention = self_attention;
        if first_step && !cross_from_encoder {
            cache.cross_attention = cross_attention;
        }
        Ok(logits)
    }
}

impl Decoder {
    /// Makes `cache` in-place buffers with room for `width` more positions (allocated on the first
    /// step, copied into when they came from elsewhere, doubled when full: `KvCache::reserve_in_place`
    /// keeps buffers that are large enough); the `past_sequence_length` input for the step.
    fn reserve_in_place(&self, cache: &mut KvCache, rows: usize, width: usize) -> Result<DynTensor> {
        if cache.self_attention.is_empty() {
            let empty = tensors::empty(self.cache.dtype, &[rows, self.cache.heads, 0, self.cache.head_dim])?;
            cache.self_attention = (0..self.cache.layers).map(|_| [empty.clone(), empty.clone()]).collect();
            cache.in_place = None;
        }
        let past = cache.self_len();
        let needed = past + width;
        let capacity = buffer_capacity(needed).ok_or_else(|| Error::OverBudget(format!("a self-attention cache of {needed} positions")))?;
        cache.reserve_in_place(capacity)?;
        Ok(Tensor::from_array(([1usize], vec![past as i64]))?.upcast())
    }
}

/// The capacity of an in-place cache buffer holding `positions`: they start at [`FIRST_CAPACITY`]
/// and double (`None` past `usize`).
fn buffer_capacity(positions: usize) -> Option<usize> {
    positions.max(FIRST_CAPACITY).checked_next_power_of_two()
}

/// The last position's logits (every position's with `all_positions`) on the host as `f32`, and
/// the `wanted` outputs in order.
fn collect(
    mut outputs: ort::session::SessionOutputs<'_>,
    path: &Path,
    wanted: &[String],
    expected_vocab: usize,
    all_positions: bool,
) -> Result<(Logits, std::vec::IntoIter<DynTensor>)> {
    let value = outputs.remove("logits").ok_or_else(|| Error::invalid_model(path, "no `logits` output"))?;
    let (shape, data) = tensors::to_host_f32(&tensors::into_tensor(value, "logits")?)?;
    let &[rows, seq, vocab] = shape.as_slice() else {
        return Err(Error::invalid_model(path, format!("the logits it returned are {shape:?}, not [rows, positions, vocabulary]")));
    };
    let (rows, seq, vocab) = (rows as usize, seq as usize, vocab as usize);
    if vocab != expected_vocab || seq == 0 || data.len() != rows * seq * vocab {
        return Err(Error::invalid_model(
            path,
            format!("the logits it returned are {shape:?}; config.json's vocab_size is {expected_vocab}"),
        ));
    }
    let data = if seq == 1 || all_positions {
        data
    } else {
        (0..rows).flat_map(|r| data[(r * seq + seq - 1) * vocab..(r * seq + seq) * vocab].iter().copied()).collect()
    };
    let presents = wanted
        .iter()
        .map(|name| {
            let value = outputs.remove(name).ok_or_else(|| Error::invalid_model(path, format!("no `{name}` output")))?;
            tensors::into_tensor(value, name)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((Logits { data, vocab }, presents.into_iter()))
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
