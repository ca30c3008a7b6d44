//! A small in-memory search index for hosts without their own: entries are (id, text, vector)
//! with caller-chosen ids; search by embedding, by keywords (BM25 over the stored texts), or both
//! fused by reciprocal rank; optional decoder reranking of the best hits; one file with a format
//! version, the identity of the model that embedded it, and a checksum. Any number of threads may
//! search while others add or remove (a read-write lock).

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

use super::keyword::{reciprocal_rank_fusion, Bm25};
use crate::error::{Error, Result};
use crate::generate::control::Limits;
use crate::model::Model;
use crate::settings::Settings;
use crate::tasks::embed::{self, InputKind};
use crate::tasks::rerank;

const MAGIC: &[u8; 8] = b"DUETIDX\0";
/// Version 2 added the model identity; version 1 files are refused with a reason.
const FORMAT_VERSION: u32 = 2;
/// The largest index file read (16 GiB: some 10 million 384-wide entries).
const INDEX_FILE_LIMIT: u64 = 16 << 30;

#[derive(Default)]
struct Entries {
    ids: Vec<i64>,
    texts: Vec<String>,
    vectors: Vec<f32>,
    position: HashMap<i64, usize>,
    keywords: Bm25,
}

/// Which model embedded the vectors: its identity hash, and a line for people.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStamp {
    pub identity: String,
    pub description: String,
}

impl ModelStamp {
    pub fn of(model: &Model) -> Result<Self> {
        Ok(Self {
            identity: model.embedding_identity()?.to_string(),
            description: format!("{} ({}; {})", model.dir().display(), model.config.model_type, model.embedding.describe()),
        })
    }
}

pub struct Index {
    dim: usize,
    stamp: ModelStamp,
    entries: RwLock<Entries>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub id: i64,
    /// Cosine similarity (vector; the dot product when the model's vectors are not normalised),
    /// BM25 (keyword), the fused reciprocal-rank score (hybrid), or the rerank score for reranked hits.
    pub score: f32,
    /// Whether `score` is a rerank score (the best `rerank_top_n` hits) or the first stage's.
    pub reranked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    Vector,
    Keyword,
    Hybrid,
}

/// What one search does, read from the call's params once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchOptions {
    pub k: usize,
    pub rerank_top_n: usize,
    pub mode: SearchMode,
    pub rrf_k: usize,
    pub hybrid_candidates: usize,
}

impl SearchOptions {
    pub fn from_params(params: &Settings, k: usize, rerank_top_n: usize) -> Self {
        let task = crate::tasks::TaskSettings::parse(params);
        Self { k, rerank_top_n, mode: task.search_mode, rrf_k: task.rrf_k, hybrid_candidates: task.hybrid_candidates }
    }
}

impl Index {
    pub fn new(dim: usize, stamp: ModelStamp) -> Self {
        Self { dim, stamp, entries: RwLock::new(Entries::default()) }
    }

    pub fn for_model(model: &Model) -> Result<Self> {
        Ok(Self::new(embed::embedding_dim(model)?, ModelStamp::of(model)?))
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn model_stamp(&self) -> &ModelStamp {
        &self.stamp
    }

    pub fn len(&self) -> usize {
        self.read().ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids, in the order they were added (removals move the last entry into the gap).
    pub fn ids(&self) -> Vec<i64> {
        self.read().ids.clone()
    }

    /// The stored text of `id`.
    pub fn text(&self, id: i64) -> Option<String> {
        let e = self.read();
        e.position.get(&id).map(|&at| e.texts[at].clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses a model other than the one whose vectors the index holds (`where_` names the index).
    pub fn check_model(&self, model: &Model, where_: &Path) -> Result<()> {
        // The identity is cached in the model: a search compares two strings.
        if model.embedding_identity()? != self.stamp.identity {
            let theirs = ModelStamp::of(model)?;
            return Err(Error::IndexModelMismatch {
                path: where_.to_path_buf(),
                reason: format!(
                    "built with another model: {} [{}]; this one is {} [{}]. Rebuild the index with this model, or use that one",
                    self.stamp.description,
                    short(&self.stamp.identity),
                    theirs.description,
                    short(&theirs.identity)
                ),
            });
        }
        Ok(())
    }

    /// Reads an index file and checks that `model` made it.
    pub fn load_for(model: &Model, path: &Path) -> Result<Self> {
        let index = Self::load(path)?;
        let dim = embed::embedding_dim(model)?;
        if index.dim != dim {
            return Err(Error::IndexModelMismatch {
                path: path.to_path_buf(),
                reason: format!("vectors are {} wide, this model's are {dim}", index.dim),
            });
        }
        index.check_model(model, path)?;
        Ok(index)
    }

    /// Embeds and adds `text` under `id`; an id already present is an error.
    pub fn add(&self, model: &Model, id: i64, text: &str, params: &Settings) -> Result<()> {
        self.add_batch(model, &[id], &[text], params, &Limits::default())
    }

    /// Embeds `texts` in batches and adds them under `ids`: all of them, or none when any fails
    /// (a repeated or present id, a bad text, the limits).
    pub fn add_batch(&self, model: &Model, ids: &[i64], texts: &[&str], params: &Settings, limits: &Limits) -> Result<()> {
        if ids.len() != texts.len() {
            return Err(Error::InvalidArgument(format!("{} ids for {} texts", ids.len(), texts.len())));
        }
        self.check_model(model, Path::new("(in memory)"))?;
        self.check_new_ids(ids)?;
        let vectors = embed::embed_with(model, texts, params, InputKind::Document, limits)?.vectors;
        let mut e = self.write();
        self.check_new_ids_in(&e, ids)?;
        for ((&id, text), vector) in ids.iter().zip(texts).zip(vectors) {
            self.insert_into(&mut e, id, text.to_string(), vector)?;
        }
        Ok(())
    }

    fn check_new_ids(&self, ids: &[i64]) -> Result<()> {
        self.check_new_ids_in(&self.read(), ids)
    }

    fn check_new_ids_in(&self, e: &Entries, ids: &[i64]) -> Result<()> {
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        for &id in ids {
            if e.position.contains_key(&id) {
                return Err(Error::InvalidArgument(format!("id {id} is already in the index")));
            }
            if !seen.insert(id) {
                return Err(Error::InvalidArgument(format!("id {id} is given twice")));
            }
        }
        Ok(())
    }

    fn insert_into(&self, e: &mut Entries, id: i64, text: String, vector: Vec<f32>) -> Result<()> {
        if vector.len() != self.dim {
            return Err(Error::InvalidArgument(format!("a {}-wide vector for a {}-wide index", vector.len(), self.dim)));
        }
        if e.position.contains_key(&id) {
            return Err(Error::InvalidArgument(format!("id {id} is already in the index")));
        }
        let at = e.ids.len();
        e.position.insert(id, at);
        e.ids.push(id);
        e.keywords.add(id, &text);
        e.texts.push(text);
        e.vectors.extend(vector);
        Ok(())
    }

    pub fn remove(&self, id: i64) -> Result<()> {
        let mut e = self.write();
        let at = e.position.remove(&id).ok_or_else(|| Error::InvalidArgument(format!("id {id} is not in the index")))?;
        let last = e.ids.len() - 1;
        let text = e.texts.swap_remove(at);
        e.keywords.remove(id, &text);
        e.ids.swap_remove(at);
        let dim = self.dim;
        if at != last {
            let (head, tail) = e.vectors.split_at_mut(last * dim);
            head[at * dim..(at + 1) * dim].copy_from_slice(&tail[..dim]);
            let moved = e.ids[at];
            e.position.insert(moved, at);
        }
        e.vectors.truncate(last * dim);
        Ok(())
    }

    /// The `k` best entries for `query` by embedding. With `rerank_top_n > 0` the best
    /// `rerank_top_n` are rescored by the decoder (`rerank_mode` in `params`); `search_mode` in
    /// `params` picks vector, keyword or hybrid retrieval.
    pub fn search(&self, model: &Model, query: &str, k: usize, rerank_top_n: usize, params: &Settings) -> Result<Vec<Hit>> {
        self.search_with(model, query, &SearchOptions::from_params(params, k, rerank_top_n), params, &Limits::default())
    }

    /// The best `o.k` entries, best first. Reranked hits (the first `o.rerank_top_n` of the first
    /// stage, rescored) come first in rerank order; the rest keep the first stage's order and score.
    pub fn search_with(&self, model: &Model, query: &str, o: &SearchOptions, params: &Settings, limits: &Limits) -> Result<Vec<Hit>> {
        limits.within(|| self.search_limited(model, query, o, params, limits))
    }

    fn search_limited(&self, model: &Model, query: &str, o: &SearchOptions, params: &Settings, limits: &Limits) -> Result<Vec<Hit>> {
        if o.k == 0 {
            return Err(Error::InvalidArgument("k is 0".into()));
        }
        super::nonblank(query, "the query")?;
        if o.mode != SearchMode::Keyword {
            self.check_model(model, Path::new("(in memory)"))?;
        }
        let depth = o.k.max(o.rerank_top_n);
        let vector_hits = |limit: usize| -> Result<Vec<(i64, f32)>> {
            let q = embed::embed_with(model, &[query], params, InputKind::Query, limits)?.vectors.remove(0);
            let e = self.read();
            let mut hits: Vec<(usize, f32)> =
                e.vectors.chunks_exact(self.dim).map(|v| v.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>()).enumerate().collect();
            let limit = limit.min(hits.len());
            if limit > 0 && limit < hits.len() {
                hits.select_nth_unstable_by(limit - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            }
            hits.truncate(limit);
            hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            Ok(hits.into_iter().map(|(i, s)| (e.ids[i], s)).collect())
        };
        let keyword_hits = |limit: usize| -> Vec<(i64, f32)> {
            self.read().keywords.search(query, limit).into_iter().map(|(id, s)| (id, s as f32)).collect()
        };
        let first: Vec<(i64, f32)> = match o.mode {
            SearchMode::Vector => vector_hits(depth)?,
            SearchMode::Keyword => keyword_hits(depth),
            SearchMode::Hybrid => {
                let c = o.hybrid_candidates.max(depth);
                let lists = [vector_hits(c)?.into_iter().map(|h| h.0).collect(), keyword_hits(c).into_iter().map(|h| h.0).collect()];
                reciprocal_rank_fusion(&lists, o.rrf_k).into_iter().take(depth).map(|(id, s)| (id, s as f32)).collect()
            }
        };
        limits.check()?;
        let hits: Vec<Hit> = first.into_iter().map(|(id, score)| Hit { id, score, reranked: false }).collect();
        // Entries removed by another thread since the first stage are left out.
        let texts: Vec<Option<String>> = {
            let e = self.read();
            hits.iter().map(|h| e.position.get(&h.id).map(|&at| e.texts[at].clone())).collect()
        };
        let mut hits: Vec<Hit> = hits.into_iter().zip(&texts).filter(|(_, t)| t.is_some()).map(|(h, _)| h).collect();
        let texts: Vec<String> = texts.into_iter().flatten().collect();
        let n = o.rerank_top_n.min(hits.len());
        if n > 0 {
            let texts = &texts[..n];
            let passages: Vec<&str> = texts.iter().map(String::as_str).collect();
            let scores = rerank::rerank(model, query, &passages, params)?;
            for (h, s) in hits.iter_mut().zip(scores) {
                *h = Hit { id: h.id, score: s, reranked: true };
            }
            hits[..n].sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        }
        hits.truncate(o.k);
        Ok(hits)
    }

    /// Writes the index to `path` through a temporary file in the same folder, renamed over
    /// `path` when complete: a failed save leaves the previous file as it was.
    pub fn save(&self, path: &Path) -> Result<()> {
        let e = self.read();
        let mut out = Vec::with_capacity(64 + e.vectors.len() * 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&(e.ids.len() as u64).to_le_bytes());
        for s in [&self.stamp.identity, &self.stamp.description] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        for (i, id) in e.ids.iter().enumerate() {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(e.texts[i].len() as u32).to_le_bytes());
            out.extend_from_slice(e.texts[i].as_bytes());
            for v in &e.vectors[i * self.dim..(i + 1) * self.dim] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        drop(e);
        let sum = fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let name = path.file_name().ok_or_else(|| Error::InvalidArgument(format!("{}: not a file path", path.display())))?;
        // A name of this save's own (concurrent saves to one path never share a temporary), made
        // durable before it replaces the old file.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id()));
        let written = (|| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }

    /// Reads an index file; every declared size is checked against the bytes actually there
    /// before anything is allocated. See [`Index::load_for`] to also check the model.
    pub fn load(path: &Path) -> Result<Self> {
        use crate::files::{read_limited, FileProblem};
        // An index is held in memory whole: no file larger than the memory it would take is read.
        let bytes = read_limited(path, INDEX_FILE_LIMIT).map_err(|e| match e {
            FileProblem::Missing(source) | FileProblem::Read(source) => Error::Io { path: path.to_path_buf(), source },
            other => Error::IndexFile { path: path.to_path_buf(), reason: other.to_string() },
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses the bytes of an index file; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::IndexFile { path: path.to_path_buf(), reason };
        if bytes.len() < 32 || &bytes[..8] != MAGIC {
            return Err(bad("not a duet index (bad magic or too short)".into()));
        }
        let (body, trailer) = bytes.split_at(bytes.len() - 8);
        let mut r = Reader { data: body, at: 8 };
        let version = r.u32().map_err(|e| bad(e.to_string()))?;
        if version == 1 {
            return Err(bad("format version 1 records no model identity: rebuild the index with this duet".into()));
        }
        if version != FORMAT_VERSION {
            return Err(bad(format!("format version {version}, this duet reads version {FORMAT_VERSION}")));
        }
        if u64::from_le_bytes(trailer.try_into().unwrap_or_default()) != fnv1a(body) {
            return Err(bad("checksum mismatch: the file is corrupt or truncated".into()));
        }
        let parse = |r: &mut Reader| -> Result<Index> {
            let dim = r.u32()? as usize;
            let count = r.u64()?;
            let mut string = |what: &str| -> Result<String> {
                let len = r.u32()? as usize;
                String::from_utf8(r.take(len)?.to_vec()).map_err(|_| Error::InvalidArgument(format!("the {what} is not UTF-8")))
            };
            let stamp = ModelStamp { identity: string("model identity")?, description: string("model description")? };
            let min_entry = 12u64 + 4 * dim as u64;
            if dim == 0 || count.saturating_mul(min_entry) > r.remaining() as u64 {
                return Err(Error::InvalidArgument(format!("declares {count} entries of width {dim}, more than the file holds")));
            }
            let index = Index::new(dim, stamp);
            {
                let mut e = index.write();
                for _ in 0..count {
                    let id = r.u64()? as i64;
                    let len = r.u32()? as usize;
                    let text = String::from_utf8(r.take(len)?.to_vec())
                        .map_err(|_| Error::InvalidArgument(format!("text of id {id} is not UTF-8")))?;
                    let vector = r.take(4 * dim)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                    index.insert_into(&mut e, id, text, vector)?;
                }
            }
            if r.remaining() != 0 {
                return Err(Error::InvalidArgument(format!("{} unexpected bytes after the entries", r.remaining())));
            }
            Ok(index)
        };
        parse(&mut r).map_err(|e| match e {
            Error::InvalidArgument(reason) => bad(reason),
            other => bad(other.to_string()),
        })
    }
}

/// The first 19 characters of an identity (`sha256:` and 12 hex digits), for messages.
fn short(identity: &str) -> &str {
    identity.char_indices().nth(19).map_or(identity, |(at, _)| &identity[..at])
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.data.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if n > self.remaining() {
            return Err(Error::InvalidArgument(format!("index file truncated: needs {n} more bytes, has {}", self.remaining())));
        }
        let s = &self.data[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
}

/// FNV-1a, 64 bits: enough to tell a damaged file from a good one.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_identities_cut_at_a_character() {
        assert_eq!(short("sha256:0123456789abcdef"), "sha256:0123456789ab");
        assert_eq!(short("sha256:0123456789ééé"), "sha256:0123456789éé", "a forged identity with multi-byte characters");
        assert_eq!(short("x"), "x");
    }

    #[test]
    fn concurrent_saves_to_one_path_leave_a_whole_file() {
        let stamp = ModelStamp { identity: "sha256:test".into(), description: "test".into() };
        let index = Index::new(2, stamp);
        {
            let mut e = index.write();
            for id in 0..50 {
                index.insert_into(&mut e, id, format!("entry {id}"), vec![id as f32, 1.0]).unwrap();
            }
        }
        let path = std::env::temp_dir().join(format!("duet-saves-{}.idx", std::process::id()));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..10).for_each(|_| index.save(&path).unwrap()));
            }
        });
        assert_eq!(Index::load(&path).unwrap().len(), 50);
        let leftovers = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!(".duet-saves-{}.idx.tmp", std::process::id())))
            .count();
        assert_eq!(leftovers, 0, "no temporary file is left behind");
        let _ = std::fs::remove_file(&path);
    }
}
