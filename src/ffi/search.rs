//! Embeddings, reranking and the in-memory index over the C ABI.

use std::ffi::c_char;
use std::path::Path;
use std::sync::Arc;

use super::boundary::{boundary, out_arg, str_arg};
use super::handles::{free_handle, handle, new_handle};
use super::generate::{call_params, str_array};
use super::model::duet_model;
use super::params::duet_params;
use super::status::duet_status;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::settings::Settings;
use crate::tasks::{embed, index::Index, rerank};

/// Width of the vectors `duet_embed` writes. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_model_embedding_dim(model: *const duet_model, out: *mut usize) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        *out = embed::embedding_dim(&handle(model, "model")?.model)?;
        Ok(())
    })
}

/// Writes `n` L2-normalized embeddings (encoder mean pooling), row after row, into `out`, which
/// holds `out_len` floats and must hold `n * duet_model_embedding_dim()`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_embed(
    model: *const duet_model,
    texts: *const *const c_char,
    n: usize,
    params: *const duet_params,
    out: *mut f32,
    out_len: usize,
) -> duet_status {
    boundary(|| {
        let out = out_arg(out, "out")?;
        let model = &handle(model, "model")?.model;
        let texts = str_array(texts, n, "texts")?;
        let (settings, limits) = call_params(params)?;
        limits.check()?;
        let vectors = embed::embed(model, &texts, &settings)?;
        let needed: usize = vectors.iter().map(Vec::len).sum();
        if out_len < needed {
            return Err(Error::InvalidArgument(format!("out holds {out_len} floats, {needed} are needed")));
        }
        let flat: Vec<f32> = vectors.into_iter().flatten().collect();
        std::ptr::copy_nonoverlapping(flat.as_ptr(), out, flat.len());
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
        limits.check()?;
        let scores = rerank::rerank(model, query, &passages, &settings)?;
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

/// Adds `text` under `id`; an id already present is DUET_STATUS_INVALID_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_index_add(index: *const duet_index, id: i64, text: *const c_char) -> duet_status {
    boundary(|| {
        let ix = handle(index, "index")?;
        ix.index.add(&ix.model, id, str_arg(text, "text")?, &ix.params)
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
        let hits = ix.index.search(&ix.model, str_arg(query, "query")?, k, rerank_top_n, &ix.params)?;
        for (i, h) in hits.iter().enumerate() {
            *ids.add(i) = h.id;
            *scores.add(i) = h.score as f64;
        }
        *n_found = hits.len();
        Ok(())
    })
}

/// Writes the index to `path` (one file, with a format version and a checksum). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn duet_index_save(index: *const duet_index, path: *const c_char) -> duet_status {
    boundary(|| handle(index, "index")?.index.save(Path::new(str_arg(path, "path")?)))
}

/// Reads an index saved by `duet_index_save` for use with `model`. A damaged file, another
/// format version, or vectors of another width than the model's give DUET_STATUS_INDEX_FILE.
/// Thread-safe.
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
        let index = Index::load(path)?;
        let dim = embed::embedding_dim(&model)?;
        if index.dim() != dim {
            return Err(Error::IndexFile {
                path: path.to_path_buf(),
                reason: format!("vectors are {} wide, this model's are {dim}", index.dim()),
            });
        }
        *out = new_handle(duet_index { model, params, index });
        Ok(())
    })
}

/// Frees an index; NULL is a no-op.
/// Thread safety: call once, when no other thread uses the object.
#[no_mangle]
pub unsafe extern "C" fn duet_index_free(index: *mut duet_index) {
    free_handle(index, "index")
}
