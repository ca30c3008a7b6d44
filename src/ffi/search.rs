//! Embeddings, reranking and the in-memory index over the C ABI.

use std::ffi::c_char;
use std::path::Path;
use std::sync::Arc;

use super::boundary::c_string;
use super::boundary::{boundary, out_arg, str_arg};
use super::generate::{call_params, str_array};
use super::handles::{free_handle, handle, new_handle, new_string};
use super::model::duet_model;
use super::params::duet_params;
use super::status::duet_status;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::settings::Settings;
use crate::tasks::embed::{self, InputKind};
use crate::tasks::index::{Index, SearchOptions};
use crate::tasks::rerank;

/// Width of the vectors `duet_embed` writes. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_model_embedding_dim(model: *const duet_model, out: *mut usize) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        *out = embed::embedding_dim(&handle(model, "model")?.model)?;
        Ok(())
    })
}

/// Writes `n` embeddings, row after row, into `out`, which holds `out_len` floats and must hold
/// `n * duet_model_embedding_dim()`. Pooling and normalisation are the model's (an embedding
/// model's sentence-transformers files; mean and L2 for a seq2seq encoder). Params:
/// `input_kind` "query" or "document" (the model's prefixes), `truncate_input`,
/// `max_input_tokens`, `batch_size`, `timeout_ms`, a cancel token. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_embed(
    model: *const duet_model,
    texts: *const *const c_char,
    n: usize,
    params: *const duet_params,
    out: *mut f32,
    out_len: usize,
) -> duet_status {
    duet_embed_with_flags(model, texts, n, params, out, out_len, std::ptr::null_mut())
}

/// As `duet_embed`, and when `truncated_out` is not NULL it receives `n` flags: true where a text
/// was cut to the input limit (only with `truncate_input`; otherwise a long text is
/// DUET_STATUS_INPUT_TOO_LONG). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_embed_with_flags(
    model: *const duet_model,
    texts: *const *const c_char,
    n: usize,
    params: *const duet_params,
    out: *mut f32,
    out_len: usize,
    truncated_out: *mut bool,
) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let model = &handle(model, "model")?.model;
        let texts = str_array(texts, n, "texts")?;
        let (settings, limits) = call_params(params)?;
        limits.check()?;
        let embedded = embed::embed_with(model, &texts, &settings, InputKind::from_params(&settings), &limits)?;
        let needed: usize = embedded.vectors.iter().map(Vec::len).sum();
        if out_len < needed {
            return Err(Error::InvalidArgument(format!("out holds {out_len} floats, {needed} are needed")));
        }
        let flat: Vec<f32> = embedded.vectors.into_iter().flatten().collect();
        std::ptr::copy_nonoverlapping(flat.as_ptr(), out, flat.len());
        if !truncated_out.is_null() {
            for (i, t) in embedded.truncated.iter().enumerate() {
                *truncated_out.add(i) = *t;
            }
        }
        Ok(())
    })
}

/// Scores `n` passages against `query` by decoder teacher forcing and writes `n` scores (higher
/// is more relevant). Params: `rerank_mode` "likelihood" (mean log p(query | passage), default)
/// or "relevance" (log p(yes) - log p(no)), `rerank_template`, `relevance_tokens`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_rerank(
    model: *const duet_model,
    query: *const c_char,
    passages: *const *const c_char,
    n: usize,
    params: *const duet_params,
    scores_out: *mut f64,
) -> duet_status {
    boundary(|| {
        let scores_out = out_arg(scores_out, "scores_out")?;
        let model = &handle(model, "model")?.model;
        let query = str_arg(query, "query")?;
        let passages = str_array(passages, n, "passages")?;
        let (settings, limits) = call_params(params)?;
        let scores = rerank::rerank_with(model, query, &passages, &settings, &limits)?;
        for (i, s) in scores.iter().enumerate() {
            *scores_out.add(i) = *s as f64;
        }
        Ok(())
    })
}

/// An in-memory index (opaque): ids and texts with their embeddings. Searches may run on many
/// threads at once, also while others add or remove. It keeps its model alive.
pub struct duet_index {
    model: Arc<Model>,
    params: Settings,
    index: Index,
}

unsafe fn index_parts(model: *const duet_model, params: *const duet_params) -> Result<(Arc<Model>, Settings)> {
    let model = handle(model, "model")?.model.clone();
    Ok((model, call_params(params)?.0))
}

/// A new empty index embedding with `model`; `params` (may be NULL) are used for embedding and
/// reranking. Free with `duet_index_free`.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_index_new(model: *const duet_model, params: *const duet_params, out: *mut *mut duet_index) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let (model, params) = index_parts(model, params)?;
        let index = Index::for_model(&model)?;
        *out = new_handle(duet_index { model, params, index });
        Ok(())
    })
}

/// Adds `text` under `id`, an id of the caller's choosing; an id already present is
/// DUET_STATUS_INVALID_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_index_add(index: *const duet_index, id: i64, text: *const c_char) -> duet_status {
    boundary(|| {
        let ix = handle(index, "index")?;
        ix.index.add(&ix.model, id, str_arg(text, "text")?, &ix.params)
    })
}

/// Adds `n` texts under `ids`, embedded in batches (the index's `batch_size`): all of them, or
/// none when any fails (an id present or repeated, a bad text). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_index_add_batch(
    index: *const duet_index,
    ids: *const i64,
    texts: *const *const c_char,
    n: usize,
) -> duet_status {
    boundary(|| {
        let ix = handle(index, "index")?;
        let texts = str_array(texts, n, "texts")?;
        if ids.is_null() {
            return Err(Error::NullPointer("ids"));
        }
        let ids = std::slice::from_raw_parts(ids, n);
        ix.index.add_batch(&ix.model, ids, &texts, &ix.params, &Default::default())
    })
}

/// The stored text of `id` into `*out` (free with `duet_string_free`); an absent id is
/// DUET_STATUS_INVALID_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_index_text(index: *const duet_index, id: i64, out: *mut *mut c_char) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let text = handle(index, "index")?.index.text(id).ok_or_else(|| Error::InvalidArgument(format!("id {id} is not in the index")))?;
        *out = new_string(c_string(&text));
        Ok(())
    })
}

/// Removes `id`; an absent id is DUET_STATUS_INVALID_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_index_remove(index: *const duet_index, id: i64) -> duet_status {
    boundary(|| handle(index, "index")?.index.remove(id))
}

/// Number of entries. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_index_len(index: *const duet_index, out: *mut usize) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        *out = handle(index, "index")?.index.len();
        Ok(())
    })
}

/// The `k` best entries for `query`, best first: `ids` and `scores` must hold `k` values;
/// `*n_found` receives how many were written (fewer when the index is smaller). With
/// `rerank_top_n > 0` the best `rerank_top_n` by embedding are rescored by `duet_rerank`'s
/// method and the scores are rerank scores; otherwise they are cosine similarities. `k` = 0 is
/// DUET_STATUS_INVALID_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_index_search(
    index: *const duet_index,
    query: *const c_char,
    k: usize,
    rerank_top_n: usize,
    ids: *mut i64,
    scores: *mut f64,
    n_found: *mut usize,
) -> duet_status {
    boundary(|| {
        let (ids, scores, n_found) = (out_arg(ids, "ids")?, out_arg(scores, "scores")?, out_arg(n_found, "n_found")?);
        let ix = handle(index, "index")?;
        let options = SearchOptions::from_params(&ix.params, k, rerank_top_n);
        let hits = ix.index.search_with(&ix.model, str_arg(query, "query")?, &options, &ix.params, &Default::default())?;
        write_hits(&hits, ids, scores, n_found);
        Ok(())
    })
}

/// Writes `hits` into the caller's arrays (they hold at least `k` >= `hits.len()` values).
unsafe fn write_hits(hits: &[crate::tasks::index::Hit], ids: *mut i64, scores: *mut f64, n_found: *mut usize) {
    for (i, h) in hits.iter().enumerate() {
        *ids.add(i) = h.id;
        *scores.add(i) = h.score as f64;
    }
    *n_found = hits.len();
}

/// As `duet_index_search` with this call's `params` over the index's: `search_mode` "vector"
/// (cosine, the default), "keyword" (BM25 over the stored texts) or "hybrid" (reciprocal rank
/// fusion of both: `rrf_k`, `hybrid_candidates`), `rerank_top_n` (decoder rescoring of the best
/// hits, which then come first with rerank scores; the rest keep their first-stage scores),
/// `timeout_ms`, a cancel token. `params` may be NULL. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_index_search_with(
    index: *const duet_index,
    query: *const c_char,
    k: usize,
    params: *const duet_params,
    ids: *mut i64,
    scores: *mut f64,
    n_found: *mut usize,
) -> duet_status {
    boundary(|| {
        let (ids, scores, n_found) = (out_arg(ids, "ids")?, out_arg(scores, "scores")?, out_arg(n_found, "n_found")?);
        let ix = handle(index, "index")?;
        let (call, limits) = call_params(params)?;
        let settings = ix.params.overlaid(&call);
        let options = SearchOptions::from_params(&settings, k, settings.int("rerank_top_n").unwrap_or(0) as usize);
        let hits = ix.index.search_with(&ix.model, str_arg(query, "query")?, &options, &settings, &limits)?;
        write_hits(&hits, ids, scores, n_found);
        Ok(())
    })
}

/// Writes the index to `path` (one file, with a format version, the model's identity and a
/// checksum), through a temporary file renamed over `path`: a failed save leaves the old file.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_index_save(index: *const duet_index, path: *const c_char) -> duet_status {
    boundary(|| handle(index, "index")?.index.save(Path::new(str_arg(path, "path")?)))
}

/// Reads an index saved by `duet_index_save` for use with `model`. A damaged file or another
/// format version give DUET_STATUS_INDEX_FILE; an index another model embedded (its graph,
/// tokenizer, pooling or width differ) gives DUET_STATUS_INDEX_MODEL_MISMATCH. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_index_load(
    model: *const duet_model,
    path: *const c_char,
    params: *const duet_params,
    out: *mut *mut duet_index,
) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let (model, params) = index_parts(model, params)?;
        let path = Path::new(str_arg(path, "path")?);
        let index = Index::load_for(&model, path)?;
        *out = new_handle(duet_index { model, params, index });
        Ok(())
    })
}

/// Frees an index; NULL is a no-op.
/// Thread safety: call once. A call still using the object on another thread keeps it until that
/// call returns; new calls get DUET_STATUS_INVALID_HANDLE at once.
#[no_mangle]
pub unsafe extern "C" fn duet_index_free(index: *mut duet_index) {
    free_handle(index, "index")
}
