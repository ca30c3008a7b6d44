//! A model directory: config files, tokenizer, the exported graphs and their sessions.
//!
//! Thread safety: a `Model` is `Send + Sync` and is meant to be shared. Each graph's session sits
//! behind its own lock (ONNX Runtime's `run` takes `&mut` in `ort`), taken for one graph run at a
//! time, so concurrent requests interleave step by step; all per-request state (KV cache,
//! encoder output) lives in the request.

pub mod config;
mod decoder;
mod encoder;
mod footprint;
mod generation_keys;
mod graph;
mod identity;
mod kv_cache;
pub mod languages;
mod options;
pub mod pooling;
mod row_gather;
pub mod tensors;

use std::path::{Path, PathBuf};

pub use config::ModelConfig;
pub use decoder::{Decoder, Layout, Logits};
pub use encoder::{Encoder, EncoderOutput};
pub use generation_keys::{generation_default, GENERATION_SPECS};
pub use kv_cache::KvCache;
pub use languages::{LanguageCode, Languages};
pub use options::{model_options_from, new_model_options, scheduler_bounds, OpenOptions, MODEL_OPTION_SPECS};
pub use pooling::{EmbeddingOverrides, EmbeddingSpec, PoolingMode};
pub use row_gather::CacheDevice;

use ort::session::builder::GraphOptimizationLevel;

use footprint::{resident_bytes, GraphFootprint};

use crate::error::{Error, Result};
use crate::runtime::gpu_options::{gpu_options, trt_profile, GraphKind, ProfileShape};
use crate::runtime::{self, open_session, ExecutionProviderKind, ProviderSelection, SessionOptions};
use crate::settings::Settings;
use crate::text::Tokenizer;

pub const ENCODER_FILE: &str = "encoder_model.onnx";
pub const MERGED_DECODER_FILE: &str = "decoder_model_merged.onnx";
pub const DECODER_FILE: &str = "decoder_model.onnx";
pub const DECODER_WITH_PAST_FILE: &str = "decoder_with_past_model.onnx";
/// Optimum's `feature-extraction` export of an encoder-only model (BERT, MiniLM, E5, ...).
pub const EMBEDDING_FILE: &str = "model.onnx";

/// What a model directory holds: an encoder–decoder, or an encoder-only embedding model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Seq2Seq,
    Embedding,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Seq2Seq => "seq2seq",
            ModelKind::Embedding => "embedding",
        }
    }
}

pub struct Model {
    dir: PathBuf,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    pub encoder: Encoder,
    /// `None` for an embedding model; see [`Model::decoder`].
    decoder: Option<Decoder>,
    pub kind: ModelKind,
    /// How `embed` pools and prefixes (sentence-transformers files, options, or the default).
    pub embedding: EmbeddingSpec,
    /// The languages it translates between, and how it is told which.
    pub languages: Languages,
    /// Computed on first use: hashing the weights takes a moment.
    identity: once_cell::sync::OnceCell<String>,
    /// Width of the encoder's hidden states, read from one probe run on first use.
    hidden_width: once_cell::sync::OnceCell<usize>,
    encoder_file: &'static str,
    provider: ExecutionProviderKind,
    provider_notes: Vec<String>,
    /// Width of the logits the decoder returns.
    logits_vocab: usize,
    /// The graph files in use, with their sizes on disk and the provider each runs on.
    graphs: Vec<(String, GraphFootprint, ExecutionProviderKind)>,
    /// Why the layout was chosen, when not plain preference (TensorRT and the merged `If`).
    layout_note: Option<String>,
    /// `duet_export.json`, written by tools/export_model.py (optimizations, quantization).
    export_manifest: Option<serde_json::Value>,
    /// Most bytes one generation request may need at worst (`memory_budget_mb`).
    memory_budget: u64,
}

impl Model {
    /// Opens a model directory with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, &new_model_options())
    }

    pub fn open_with(dir: impl AsRef<Path>, options: &Settings) -> Result<Self> {
        let dir = dir.as_ref();
        let opts = OpenOptions::parse(options);
        runtime::init_runtime(opts.ort_library.as_deref())?;
        if !dir.is_dir() {
            return Err(Error::ModelFileMissing { path: dir.to_path_buf(), reason: "not a directory".into() });
        }
        if !dir.join(ENCODER_FILE).is_file() && dir.join(EMBEDDING_FILE).is_file() {
            return Self::open_embedding(dir, options);
        }
        let config = ModelConfig::load(dir)?;
        if !config.is_supported_type() {
            return Err(Error::invalid_model(
                dir.join("config.json"),
                format!(
                    "model_type `{}` is not a supported encoder-decoder family (supported: {})",
                    config.model_type,
                    config::SUPPORTED_MODEL_TYPES.join(", ")
                ),
            ));
        }
        let tokenizer = tokenizer_within(dir, config.vocab_size)?;

        let session_options = session_options(options)?;
        let tensorrt_first = session_options.providers.order.first() == Some(&ExecutionProviderKind::TensorRt);
        let profile_shape =
            (tensorrt_first || session_options.providers.order.contains(&ExecutionProviderKind::TensorRt)).then(|| ProfileShape {
                max_batch: opts.trt_max_batch,
                max_input: opts.trt_max_input_tokens.or(config.max_input_tokens).unwrap_or(512),
                max_new: opts.trt_max_new_tokens,
                layers: config.decoder_layers.unwrap_or(1),
                heads: config.decoder_heads.unwrap_or(1),
                head_dim: config.head_dim.unwrap_or(1),
                d_model: config.d_model.unwrap_or(1),
            });
        let mut providers_used = Vec::new();
        let mut open = |file: &str, kind: GraphKind| -> Result<(PathBuf, runtime::OpenedSession)> {
            let path = dir.join(file);
            let profile = profile_shape.map(|s| trt_profile(kind, &s)).unwrap_or_default();
            let (opened, growth) = open_measured(&path, &session_options, &profile)?;
            providers_used.push((file.to_string(), opened.provider, growth));
            Ok((path, opened))
        };
        if !dir.join(ENCODER_FILE).exists() {
            return Err(Error::ModelFileMissing { path: dir.join(ENCODER_FILE), reason: "missing (every export has an encoder)".into() });
        }
        let (enc_path, enc) = open(ENCODER_FILE, GraphKind::Encoder)?;
        let provider = enc.provider;
        let provider_notes = enc.skipped_providers.clone();
        let mut encoder = Encoder::new(&enc_path, enc.session)?;
        encoder.limit_tokens_per_run(opts.encoder_batch_tokens);
        let encoder_cross = encoder.cross_layers() > 0;
        let (layout, layout_note) = choose_layout(dir, &opts.layout, tensorrt_first, encoder_cross)?;
        let (heads, head_dim) = (config.decoder_heads, config.head_dim);
        let mut decoder = match layout {
            Layout::Merged => {
                let (path, s) = open(MERGED_DECODER_FILE, GraphKind::DecoderMerged)?;
                Decoder::merged(&path, s.session, heads, head_dim)?
            }
            Layout::Split => {
                let (first_path, first) = open(DECODER_FILE, GraphKind::DecoderFirst)?;
                let (past_path, past) = open(DECODER_WITH_PAST_FILE, GraphKind::DecoderWithPast)?;
                Decoder::split(&first_path, first.session, &past_path, past.session, heads, head_dim)?
            }
            Layout::WithPast => {
                let (path, s) = open(DECODER_WITH_PAST_FILE, GraphKind::DecoderEveryStep)?;
                let decoder = Decoder::with_past_only(&path, s.session, heads, head_dim)?;
                if encoder.cross_layers() != decoder.cache.layers {
                    return Err(Error::invalid_model(
                        &enc_path,
                        format!(
                            "it returns the cross-attention cache of {} layers; the decoder has {}",
                            encoder.cross_layers(),
                            decoder.cache.layers
                        ),
                    ));
                }
                encoder.run_cross_outputs();
                decoder
            }
        };
        let decoder_provider = providers_used.last().map_or(provider, |(_, k, _)| *k);
        if let Some(device) = cache_device(&opts.io_binding, decoder_provider, session_options.providers.device_id) {
            encoder.bind_output_to(device);
            decoder.bind_cache_to(device)?;
        }
        let logits_vocab = config.vocab_size;
        decoder.expect_vocab(logits_vocab, &dir.join("config.json"))?;
        config.check_generation_tokens(dir)?;
        if tokenizer.id_bound() > logits_vocab {
            return Err(Error::invalid_model(dir.join(tokenizer.file_name()), "the tokenizer's vocabulary exceeds the model's logits"));
        }
        let files: &[&str] = match layout {
            Layout::Merged => &[ENCODER_FILE, MERGED_DECODER_FILE],
            Layout::Split => &[ENCODER_FILE, DECODER_FILE, DECODER_WITH_PAST_FILE],
            Layout::WithPast => &[ENCODER_FILE, DECODER_WITH_PAST_FILE],
        };
        let graphs = files
            .iter()
            .map(|f| {
                let used = providers_used.iter().find(|(p, _, _)| p == f);
                let footprint = GraphFootprint { rss_growth_bytes: used.map_or(0, |u| u.2), ..GraphFootprint::on_disk(&dir.join(f)) };
                (f.to_string(), footprint, used.map_or(provider, |u| u.1))
            })
            .collect();
        let export_manifest = read_export_manifest(dir);
        let embedding = EmbeddingSpec::read(dir, &embedding_overrides(options)?, false, config.max_input_tokens)?;
        let languages = Languages::read(dir, &config, &tokenizer);
        Ok(Self {
            languages,
            dir: dir.to_path_buf(),
            config,
            tokenizer,
            encoder,
            decoder: Some(decoder),
            kind: ModelKind::Seq2Seq,
            embedding,
            identity: Default::default(),
            hidden_width: Default::default(),
            encoder_file: ENCODER_FILE,
            provider,
            provider_notes,
            logits_vocab,
            graphs,
            layout_note,
            export_manifest,
            memory_budget: opts.memory_budget(),
        })
    }

    /// An encoder-only export (`model.onnx` → `last_hidden_state`) opened for embedding.
    fn open_embedding(dir: &Path, options: &Settings) -> Result<Self> {
        let config = ModelConfig::load_encoder_only(dir)?;
        let tokenizer = tokenizer_within(dir, config.vocab_size)?;
        let embedding = EmbeddingSpec::read(dir, &embedding_overrides(options)?, true, config.max_input_tokens)?;
        let session_options = session_options(options)?;
        let path = dir.join(EMBEDDING_FILE);
        let (opened, growth) = open_measured(&path, &session_options, &[])?;
        let provider = opened.provider;
        let provider_notes = opened.skipped_providers.clone();
        let mut encoder = Encoder::new(&path, opened.session)?;
        encoder.limit_tokens_per_run(OpenOptions::parse(options).encoder_batch_tokens);
        let footprint = GraphFootprint { rss_growth_bytes: growth, ..GraphFootprint::on_disk(&path) };
        Ok(Self {
            dir: dir.to_path_buf(),
            logits_vocab: config.vocab_size,
            config,
            tokenizer,
            encoder,
            decoder: None,
            kind: ModelKind::Embedding,
            embedding,
            languages: Languages::None,
            identity: Default::default(),
            hidden_width: Default::default(),
            encoder_file: EMBEDDING_FILE,
            provider,
            provider_notes,
            graphs: vec![(EMBEDDING_FILE.to_string(), footprint, provider)],
            layout_note: None,
            export_manifest: read_export_manifest(dir),
            memory_budget: OpenOptions::parse(options).memory_budget(),
        })
    }

    /// The decoder; an embedding model has none and says so with `DUET_STATUS_UNSUPPORTED`.
    pub fn decoder(&self) -> Result<&Decoder> {
        self.decoder.as_ref().ok_or_else(|| {
            Error::Unsupported(format!(
                "{} is an embedding model (encoder only): it embeds and searches, it cannot generate, summarize, chat or rerank",
                self.dir.display()
            ))
        })
    }

    /// What decides this model's vectors (encoder graph and weights, tokenizer, pooling), as
    /// `sha256:<hex>`; an index records it and refuses another model's.
    pub fn embedding_identity(&self) -> Result<&str> {
        self.identity
            .get_or_try_init(|| {
                identity::embedding_identity(
                    &self.dir.join(self.encoder_file),
                    &self.dir.join(self.tokenizer.file_name()),
                    &self.embedding.describe(),
                )
            })
            .map(String::as_str)
    }

    /// Width of the encoder's hidden states (what `embed` returns): one probe run, then cached.
    pub fn hidden_width(&self) -> Result<usize> {
        self.hidden_width.get_or_try_init(|| Ok(self.encoder.run(&[vec![0]], 0)?.hidden_states()?.1)).copied()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The decoder layout; `None` for an embedding model.
    pub fn layout(&self) -> Option<Layout> {
        self.decoder.as_ref().map(Decoder::layout)
    }

    pub fn execution_provider(&self) -> ExecutionProviderKind {
        self.provider
    }

    /// Most bytes one generation request may need at worst (`crate::generate::budget`).
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget
    }

    pub fn vocab_size(&self) -> usize {
        self.logits_vocab
    }

    /// What was detected, as JSON (the C API's and the CLI's `info`).
    pub fn info_json(&self) -> serde_json::Value {
        let rt = runtime::runtime().ok();
        let g = &self.config.generation;
        let e = &self.embedding;
        let embedding = serde_json::json!({
            "pooling": e.pooling.as_str(),
            "normalize": e.normalize,
            "query_prefix": e.query_prefix,
            "document_prefix": e.document_prefix,
            "max_seq_length": e.max_seq_length,
            "pooling_from": e.source,
        });
        let mut info = serde_json::json!({
            "model_dir": self.dir.display().to_string(),
            "kind": self.kind.as_str(),
            "architecture": self.config.model_type,
            "embedding": embedding,
            "vocab_size": self.logits_vocab,
            "memory_budget_bytes": self.memory_budget,
            "tokenizer_vocab_size": self.tokenizer.id_bound(),
            "tokenizer": self.tokenizer.kind(),
            "max_input_tokens": self.config.max_input_tokens,
            "execution_provider": self.provider.ort_name(),
            "providers_skipped": self.provider_notes,
            "onnxruntime_version": rt.map(|r| r.version.clone()),
            "onnxruntime_library": rt.map(|r| r.library.display().to_string()),
            "duet_version": crate::VERSION,
            "graphs": self.graphs_json(),
            "weights_bytes": self.graphs.iter().map(|(_, g, _)| g.bytes()).sum::<u64>(),
            "memory": {
                "loaded_rss_growth_bytes": self.graphs.iter().map(|(_, g, _)| g.rss_growth_bytes).sum::<u64>(),
                "weights_mapped_from_files": self.graphs.iter().any(|(_, g, _)| g.external_data_bytes > 0),
                "process_resident_bytes": resident_bytes(),
                "note": "rss_growth_bytes: resident memory the process gained while ONNX Runtime opened each graph (pre-packed weights, mapped pages touched); one copy per model, shared by every thread calling it",
            },
            "export": self.export_manifest,
            "translation": self.languages.info_json(),
        });
        let Some(decoder) = &self.decoder else {
            return info;
        };
        let seq2seq = serde_json::json!({
            "layout": decoder.layout().as_str(),
            "decoder_layers": decoder.cache.layers,
            "decoder_heads": decoder.cache.heads,
            "head_dim": decoder.cache.head_dim,
            "decoder_start_token_id": g.int("decoder_start_token_id"),
            "eos_token_id": g.int_list("eos_token_id"),
            "pad_token_id": g.int("pad_token_id"),
            "layout_note": self.layout_note,
            "cache_dtype": tensors::float_type_name(decoder.cache.dtype),
            "io_binding": decoder.cache_device().is_some(),
            "beams_share_cross_attention_cache": decoder.shares_cross_rows(),
            "self_attention_cache_in_place": decoder.appends_in_place(),
            "kv_cache_device": decoder.cache_device().unwrap_or(CacheDevice::Host).describe(),
        });
        if let (Some(info), Some(extra)) = (info.as_object_mut(), seq2seq.as_object()) {
            info.extend(extra.clone());
        }
        info
    }

    fn graphs_json(&self) -> Vec<serde_json::Value> {
        self.graphs
            .iter()
            .map(|(f, g, p)| {
                serde_json::json!({
                    "file": f,
                    "bytes": g.bytes(),
                    "external_data_bytes": g.external_data_bytes,
                    "rss_growth_bytes": g.rss_growth_bytes,
                    "execution_provider": p.ort_name(),
                })
            })
            .collect()
    }
}

/// Opens a graph's session, with the resident memory the process gained meanwhile.
fn open_measured(path: &Path, options: &SessionOptions, profile: &[(String, String)]) -> Result<(runtime::OpenedSession, u64)> {
    let before = resident_bytes();
    let opened = open_session(path, options, profile)?;
    let growth = match (before, resident_bytes()) {
        (Some(b), Some(a)) => a.saturating_sub(b),
        _ => 0,
    };
    Ok((opened, growth))
}

/// The directory's tokenizer, refused when it has ids past the model's vocabulary.
fn tokenizer_within(dir: &Path, vocab_size: usize) -> Result<Tokenizer> {
    let tokenizer = Tokenizer::from_dir(dir)?;
    if tokenizer.id_bound() > vocab_size {
        return Err(Error::invalid_model(
            dir.join(tokenizer.file_name()),
            format!(
                "the tokenizer has token ids up to {} but the model's vocabulary (config.json vocab_size) is {vocab_size}",
                tokenizer.id_bound() - 1
            ),
        ));
    }
    Ok(tokenizer)
}

fn read_export_manifest(dir: &Path) -> Option<serde_json::Value> {
    crate::files::read_text_limited(&dir.join("duet_export.json"), crate::files::CONFIG_LIMIT)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

fn embedding_overrides(options: &Settings) -> Result<EmbeddingOverrides> {
    let pooling = match options.str("pooling") {
        Some(name) => Some(
            PoolingMode::parse(name)
                .ok_or_else(|| Error::invalid_param("pooling", format!("`{name}` is not mean, cls, max, last_token or mean_sqrt_len")))?,
        ),
        None => None,
    };
    Ok(EmbeddingOverrides {
        pooling,
        normalize: options.bool("normalize"),
        query_prefix: options.str("query_prefix").map(str::to_string),
        document_prefix: options.str("document_prefix").map(str::to_string),
    })
}

fn session_options(options: &Settings) -> Result<SessionOptions> {
    let mut providers = ProviderSelection::default();
    if let Some(list) = options.str("providers") {
        providers.order = ProviderSelection::parse_list(list)?;
    }
    providers.strict = options.bool("strict_providers").unwrap_or(options::option_default("strict_providers") == Some("true"));
    providers.gpu = gpu_options(options, &providers.order)?;
    providers.device_id = options::option_int(options, "device_id") as i32;
    let optimization = match OpenOptions::graph_optimization(options).as_str() {
        "disable" => GraphOptimizationLevel::Disable,
        "basic" => GraphOptimizationLevel::Level1,
        "extended" => GraphOptimizationLevel::Level2,
        _ => GraphOptimizationLevel::All,
    };
    Ok(SessionOptions {
        providers,
        intra_threads: options::option_int(options, "intra_threads").max(0) as usize,
        optimization,
        intra_op_spinning: options.bool("intra_op_spinning"),
        memory_arena: options.bool("memory_arena"),
        memory_pattern: options.bool("memory_pattern"),
        prepacking: options.bool("prepacking"),
        profiling_prefix: options.str("profiling_prefix").map(str::to_string),
    })
}

/// Where encoder outputs and KV caches stay between steps under IoBinding (`None`: plain runs).
/// `auto` binds them to the GPU when the decoder runs on one; `on` also binds on the CPU.
fn cache_device(io_binding: &str, decoder_provider: ExecutionProviderKind, device_id: i32) -> Option<CacheDevice> {
    let on_gpu = decoder_provider != ExecutionProviderKind::Cpu;
    match io_binding {
        "off" => None,
        "on" | "auto" if on_gpu => Some(CacheDevice::Cuda(device_id)),
        "on" => Some(CacheDevice::Host),
        _ => None,
    }
}

/// The layout to use, and a note when TensorRT decided it. `encoder_cross`: the encoder graph returns
/// the cross-attention cache, so the with-past decoder can run every step.
fn choose_layout(dir: &Path, wanted: &str, tensorrt_first: bool, encoder_cross: bool) -> Result<(Layout, Option<String>)> {
    let with_past = encoder_cross && dir.join(DECODER_WITH_PAST_FILE).is_file();
    // TensorRT cannot build the merged decoder's `If`: prefer a layout without it.
    if tensorrt_first && wanted == "auto" {
        let split = dir.join(DECODER_FILE).is_file() && dir.join(DECODER_WITH_PAST_FILE).is_file();
        return Ok(if with_past {
            (Layout::WithPast, Some("with-past decoder for every step: TensorRT cannot build the merged decoder's If".into()))
        } else if split {
            (Layout::Split, Some("split decoders: TensorRT cannot build the merged decoder's If".into()))
        } else {
            (
                choose_layout_files(dir, wanted, false)?,
                Some("merged decoder with TensorRT: its If runs outside TensorRT (export the split decoders for full TensorRT)".into()),
            )
        });
    }
    Ok((choose_layout_files(dir, wanted, with_past)?, None))
}

fn choose_layout_files(dir: &Path, wanted: &str, with_past: bool) -> Result<Layout> {
    let has = |f: &str| dir.join(f).is_file();
    let merged = has(MERGED_DECODER_FILE);
    let split = has(DECODER_FILE) && has(DECODER_WITH_PAST_FILE);
    let missing_split = || {
        let f = if has(DECODER_FILE) { DECODER_WITH_PAST_FILE } else { DECODER_FILE };
        Error::ModelFileMissing {
            path: dir.join(f),
            reason: format!("missing: the split layout needs {DECODER_FILE} and {DECODER_WITH_PAST_FILE}"),
        }
    };
    match wanted {
        "auto" if with_past => Ok(Layout::WithPast),
        "auto" if merged => Ok(Layout::Merged),
        "auto" if split => Ok(Layout::Split),
        "auto" => Err(Error::ModelFileMissing {
            path: dir.join(MERGED_DECODER_FILE),
            reason: format!("missing, and so is the split pair {DECODER_FILE} + {DECODER_WITH_PAST_FILE}"),
        }),
        "merged" if merged => Ok(Layout::Merged),
        "merged" => {
            Err(Error::ModelFileMissing { path: dir.join(MERGED_DECODER_FILE), reason: "missing (layout=merged was asked for)".into() })
        }
        "split" if split => Ok(Layout::Split),
        "split" => Err(missing_split()),
        "with_past" if with_past => Ok(Layout::WithPast),
        "with_past" if !has(DECODER_WITH_PAST_FILE) => Err(Error::ModelFileMissing {
            path: dir.join(DECODER_WITH_PAST_FILE),
            reason: "missing (layout=with_past was asked for)".into(),
        }),
        "with_past" => Err(Error::invalid_model(
            dir.join(ENCODER_FILE),
            "layout=with_past needs an encoder that returns the cross-attention cache (present.*.encoder.*); tools/export_model.py adds it",
        )),
        other => Err(Error::invalid_param("layout", format!("`{other}` is not one of auto, merged, split, with_past"))),
    }
}
