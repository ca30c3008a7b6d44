//! A small in-memory vector index for hosts without their own: embeddings for recall, optional
//! decoder reranking of the best hits, and a one-file format with a version and a checksum.
//! Any number of threads may search while others add or remove (a read-write lock).

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::settings::Settings;
use crate::tasks::{embed, rerank};

const MAGIC: &[u8; 8] = b"DUETIDX\0";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Default)]
struct Entries {
    ids: Vec<i64>,
    texts: Vec<String>,
    vectors: Vec<f32>,
    position: HashMap<i64, usize>,
}

pub struct Index {
    dim: usize,
    entries: RwLock<Entries>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub id: i64,
    /// Cosine similarity, or the rerank score for reranked hits.
    pub score: f32,
}

impl Index {
    pub fn new(dim: usize) -> Self {
        Self { dim, entries: RwLock::new(Entries::default()) }
    }

    pub fn for_model(model: &Model) -> Result<Self> {
        Ok(Self::new(embed::embedding_dim(model)?))
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.read().ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Embeds and adds `text` under `id`; an id already present is an error.
    pub fn add(&self, model: &Model, id: i64, text: &str, params: &Settings) -> Result<()> {
        if self.read().position.contains_key(&id) {
            return Err(Error::InvalidArgument(format!("id {id} is already in the index")));
        }
        let vector = embed::embed(model, &[text], params)?.remove(0);
        self.insert(id, text.to_string(), vector)
    }

    fn insert(&self, id: i64, text: String, vector: Vec<f32>) -> Result<()> {
        if vector.len() != self.dim {
            return Err(Error::InvalidArgument(format!("a {}-wide vector for a {}-wide index", vector.len(), self.dim)));
        }
        let mut e = self.write();
        if e.position.contains_key(&id) {
            return Err(Error::InvalidArgument(format!("id {id} is already in the index")));
        }
        let at = e.ids.len();
        e.position.insert(id, at);
        e.ids.push(id);
        e.texts.push(text);
        e.vectors.extend(vector);
        Ok(())
    }

    pub fn remove(&self, id: i64) -> Result<()> {
        let mut e = self.write();
        let at = e.position.remove(&id).ok_or_else(|| Error::InvalidArgument(format!("id {id} is not in the index")))?;
        let last = e.ids.len() - 1;
        e.ids.swap_remove(at);
        e.texts.swap_remove(at);
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

    /// The `k` best entries for `query`. With `rerank_top_n > 0` the best `rerank_top_n` by
    /// embedding are rescored by the decoder (`rerank_mode` in `params`) before the cut to `k`.
    pub fn search(&self, model: &Model, query: &str, k: usize, rerank_top_n: usize, params: &Settings) -> Result<Vec<Hit>> {
        if k == 0 {
            return Err(Error::InvalidArgument("k is 0".into()));
        }
        let q = embed::embed(model, &[query], params)?.remove(0);
        let (mut hits, texts) = {
            let e = self.read();
            let mut hits: Vec<(usize, f32)> = e
                .vectors
                .chunks_exact(self.dim)
                .map(|v| v.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>())
                .enumerate()
                .collect();
            hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            hits.truncate(k.max(rerank_top_n));
            let texts: Vec<String> = hits.iter().take(rerank_top_n).map(|&(i, _)| e.texts[i].clone()).collect();
            (hits.into_iter().map(|(i, s)| Hit { id: e.ids[i], score: s }).collect::<Vec<_>>(), texts)
        };
        if !texts.is_empty() {
            let passages: Vec<&str> = texts.iter().map(String::as_str).collect();
            let scores = rerank::rerank(model, query, &passages, params)?;
            hits.truncate(scores.len());
            for (h, s) in hits.iter_mut().zip(scores) {
                h.score = s;
            }
            hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        }
        hits.truncate(k);
        Ok(hits)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let e = self.read();
        let mut out = Vec::with_capacity(32 + e.vectors.len() * 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&(e.ids.len() as u64).to_le_bytes());
        for (i, id) in e.ids.iter().enumerate() {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(e.texts[i].len() as u32).to_le_bytes());
            out.extend_from_slice(e.texts[i].as_bytes());
            for v in &e.vectors[i * self.dim..(i + 1) * self.dim] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        let sum = fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        std::fs::write(path, out).map_err(|source| Error::Io { path: path.to_path_buf(), source })
    }

    /// Reads an index file; every declared size is checked against the bytes actually there
    /// before anything is allocated.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
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
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(bad(format!("format version {version}, this duet reads version {FORMAT_VERSION}")));
        }
        if u64::from_le_bytes(trailer.try_into().unwrap_or_default()) != fnv1a(body) {
            return Err(bad("checksum mismatch: the file is corrupt or truncated".into()));
        }
        let dim = r.u32()? as usize;
        let count = r.u64()?;
        let min_entry = 12u64 + 4 * dim as u64;
        if dim == 0 || count.saturating_mul(min_entry) > r.remaining() as u64 {
            return Err(bad(format!("declares {count} entries of width {dim}, more than the file holds")));
        }
        let index = Index::new(dim);
        for _ in 0..count {
            let id = r.u64()? as i64;
            let len = r.u32()? as usize;
            let text = String::from_utf8(r.take(len)?.to_vec()).map_err(|_| bad(format!("text of id {id} is not UTF-8")))?;
            let vector = r.take(4 * dim)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            index.insert(id, text, vector).map_err(|e| bad(e.to_string()))?;
        }
        if r.remaining() != 0 {
            return Err(bad(format!("{} unexpected bytes after the entries", r.remaining())));
        }
        Ok(index)
    }
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
