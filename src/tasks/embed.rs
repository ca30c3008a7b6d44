//! Sentence embeddings: the encoder's last hidden state pooled as the model says (mean, cls, max,
//! last token; sentence-transformers' files or the options), L2-normalised unless the model says
//! otherwise, with the model's query or document prefix. Inputs are batched in length order so
//! padding costs little; the call's limits (cancel, deadline) are checked between batches.

use crate::error::{Error, Result};
use crate::generate::control::Limits;
use crate::model::Model;
use crate::settings::Settings;
use crate::tasks::nonblank;

/// Whether texts are queries or documents: picks the model's prefix (E5, BGE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Query,
    Document,
}

impl InputKind {
    /// The `input_kind` param (default: document).
    pub fn from_params(params: &Settings) -> Self {
        if crate::tasks::TaskSettings::parse(params).embed_as_query {
            InputKind::Query
        } else {
            InputKind::Document
        }
    }
}

/// Vectors row-aligned with the texts, and which texts were cut to the input limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub truncated: Vec<bool>,
}

/// Width of the vectors `embed` returns (the encoder's hidden size).
pub fn embedding_dim(model: &Model) -> Result<usize> {
    model.hidden_width()
}

/// Embeds `texts` as `input_kind` in `params` says (documents by default).
pub fn embed(model: &Model, texts: &[&str], params: &Settings) -> Result<Vec<Vec<f32>>> {
    Ok(embed_with(model, texts, params, InputKind::from_params(params), &Limits::default())?.vectors)
}

pub fn embed_with(model: &Model, texts: &[&str], params: &Settings, kind: InputKind, limits: &Limits) -> Result<Embeddings> {
    limits.within(|| embed_limited(model, texts, params, kind, limits))
}

fn embed_limited(model: &Model, texts: &[&str], params: &Settings, kind: InputKind, limits: &Limits) -> Result<Embeddings> {
    let spec = &model.embedding;
    let task = crate::tasks::TaskSettings::parse(params);
    let limit = task.max_input_tokens.or(spec.max_seq_length).or(model.config.max_input_tokens);
    let (truncate, batch) = (task.truncate_input, task.batch_size);
    let pad = model.config.generation.int("pad_token_id").unwrap_or(0) as u32;
    let prefix = match kind {
        InputKind::Query => &spec.query_prefix,
        InputKind::Document => &spec.document_prefix,
    };
    let mut truncated = vec![false; texts.len()];
    let mut encoded = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        nonblank(t, &format!("text {i}"))?;
        if i % 64 == 0 {
            limits.check()?;
        }
        let text = if prefix.is_empty() { std::borrow::Cow::Borrowed(*t) } else { std::borrow::Cow::Owned(format!("{prefix}{t}")) };
        let e = model.tokenizer.encode(&text, limit, truncate, i)?;
        if e.ids.is_empty() {
            return Err(Error::InvalidArgument(format!("text {i} encodes to no tokens")));
        }
        truncated[i] = e.truncated;
        encoded.push(e.ids);
    }
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| encoded[i].len());
    let mut vectors = vec![Vec::new(); texts.len()];
    for group in order.chunks(batch) {
        limits.check()?;
        let longest = group.iter().map(|&i| encoded[i].len()).max().unwrap_or(0);
        crate::generate::budget::check_encoder_budget(model, group.len(), longest, 0, "embed")?;
        let inputs: Vec<Vec<u32>> = group.iter().map(|&i| std::mem::take(&mut encoded[i])).collect();
        let enc = model.encoder.run(&inputs, pad)?;
        let (hidden, width) = enc.hidden_states()?;
        let mask = enc.mask()?;
        let len = enc.len;
        for (row, &i) in group.iter().enumerate() {
            let states = &hidden[row * len * width..(row + 1) * len * width];
            vectors[i] = spec.pool(states, &mask[row * len..(row + 1) * len], width);
        }
    }
    Ok(Embeddings { vectors, truncated })
}
