//! Confinement of model files: an ONNX graph may keep its weights in external files, named by a
//! `location` relative to the graph. A location that leaves the model directory (absolute, `..`,
//! or a link pointing elsewhere) is refused before ONNX Runtime opens anything.
//!
//! This reads just enough of the protobuf encoding to find those locations, seeking past
//! everything else (weights included), so it costs little even on large graphs.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Messages that can hold tensors, and the fields leading to them.
#[derive(Clone, Copy)]
enum Message {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    SparseTensor,
    Entry,
}

fn child(parent: Message, field: u64) -> Option<Message> {
    use Message::*;
    match (parent, field) {
        (Model, 7) => Some(Graph),
        (Graph, 1) => Some(Node),
        (Graph, 5) => Some(Tensor),
        (Graph, 15) => Some(SparseTensor),
        (Node, 5) => Some(Attribute),
        (Attribute, 5 | 10) => Some(Tensor),
        (Attribute, 6 | 11) => Some(Graph),
        (Attribute, 22 | 23) => Some(SparseTensor),
        (SparseTensor, 1 | 2) => Some(Tensor),
        (Tensor, 13) => Some(Entry),
        _ => None,
    }
}

struct Scanner<R> {
    r: R,
    pos: u64,
    locations: Vec<String>,
}

impl<R: Read + Seek> Scanner<R> {
    fn byte(&mut self) -> std::io::Result<u8> {
        let mut b = [0u8];
        self.r.read_exact(&mut b)?;
        self.pos += 1;
        Ok(b[0])
    }

    fn varint(&mut self) -> std::io::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(std::io::Error::other("varint too long"))
    }

    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        self.r.seek(SeekFrom::Current(n as i64))?;
        self.pos += n;
        Ok(())
    }

    fn bytes(&mut self, n: u64) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n as usize];
        self.r.read_exact(&mut buf)?;
        self.pos += n;
        Ok(buf)
    }

    /// Walks one message up to `end`, collecting the `location` of every external tensor.
    fn message(&mut self, kind: Message, end: u64, depth: usize) -> std::io::Result<()> {
        if depth > 64 {
            return Err(std::io::Error::other("messages nested too deep"));
        }
        let (mut key, mut value) = (None, None);
        while self.pos < end {
            let tag = self.varint()?;
            let (field, wire) = (tag >> 3, tag & 7);
            match wire {
                0 => {
                    self.varint()?;
                }
                1 | 5 => {
                    let n = if wire == 1 { 8 } else { 4 };
                    if self.pos + n > end {
                        return Err(std::io::Error::other("a field runs past its message"));
                    }
                    self.skip(n)?
                }
                2 => {
                    let len = self.varint()?;
                    if self.pos.checked_add(len).is_none_or(|stop| stop > end) {
                        return Err(std::io::Error::other("a field runs past its message"));
                    }
                    match (kind, field, child(kind, field)) {
                        (Message::Entry, 1, _) if len < 64 => key = Some(self.bytes(len)?),
                        (Message::Entry, 2, _) if len < 1 << 16 => value = Some(self.bytes(len)?),
                        (_, _, Some(sub)) => self.message(sub, self.pos + len, depth + 1)?,
                        _ => self.skip(len)?,
                    }
                }
                _ => return Err(std::io::Error::other(format!("wire type {wire} is not valid protobuf"))),
            }
        }
        if let (Some(k), Some(v)) = (key, value) {
            if k == b"location" {
                self.locations.push(String::from_utf8_lossy(&v).into_owned());
            }
        }
        Ok(())
    }
}

/// Every external-data location named in the ONNX file at `path`.
pub fn external_locations(path: &Path) -> Result<Vec<String>> {
    let file = File::open(path).map_err(|e| Error::ModelFileMissing { path: path.to_path_buf(), reason: e.to_string() })?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut s = Scanner { r: BufReader::new(file), pos: 0, locations: Vec::new() };
    s.message(Message::Model, len, 0).map_err(|e| Error::invalid_model(path, format!("not a valid ONNX file: {e}")))?;
    Ok(s.locations)
}

/// External-data locations named in ONNX bytes already in memory.
pub fn external_locations_in(bytes: &[u8]) -> std::io::Result<Vec<String>> {
    let mut s = Scanner { r: std::io::Cursor::new(bytes), pos: 0, locations: Vec::new() };
    s.message(Message::Model, bytes.len() as u64, 0)?;
    Ok(s.locations)
}

/// Refuses external data outside the directory holding `path`.
pub fn check_external_data(path: &Path) -> Result<()> {
    use crate::files::{regular_file, FileProblem, GRAPH_LIMIT};
    regular_file(path, GRAPH_LIMIT).map_err(|e| match e {
        FileProblem::Missing(_) => Error::ModelFileMissing { path: path.to_path_buf(), reason: e.to_string() },
        other => Error::invalid_model(path, other.to_string()),
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    for location in external_locations(path)? {
        let refuse =
            |why: &str| Error::invalid_model(path, format!("external data `{location}` {why}; it must stay inside the model directory"));
        let rel = Path::new(&location);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::Prefix(_) | Component::RootDir)) {
            return Err(refuse("is an absolute path"));
        }
        let mut depth = 0i32;
        for c in rel.components() {
            match c {
                Component::ParentDir => depth -= 1,
                Component::Normal(_) => depth += 1,
                _ => {}
            }
            if depth < 0 {
                return Err(refuse("climbs out with `..`"));
            }
        }
        let full: PathBuf = dir.join(rel);
        if let Ok(real) = std::fs::canonicalize(&full) {
            if !real.starts_with(&root) {
                return Err(refuse(&format!("resolves to {} through a link", real.display())));
            }
        }
        if let Err(FileProblem::NotRegular) = regular_file(&full, u64::MAX) {
            return Err(Error::invalid_model(path, format!("external data `{location}` is not a regular file")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_past_the_end_are_errors_not_overflows() {
        // graph field (7), length 0xffff_ffff_ffff_ffff: used to overflow `pos + len`.
        let bytes = [0x3a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(external_locations_in(&bytes).is_err());
        // A fixed64 field cut short.
        assert!(external_locations_in(&[0x09, 0x01, 0x02]).is_err());
    }

    #[test]
    fn finds_locations_in_nested_graphs() {
        fn field(number: u8, payload: &[u8]) -> Vec<u8> {
            [vec![number << 3 | 2, payload.len() as u8], payload.to_vec()].concat()
        }
        let entry = [field(1, b"location"), field(2, b"w.bin")].concat();
        let tensor = field(13, &entry);
        // model.graph.node.attribute(g).graph.initializer
        let inner_graph = field(5, &tensor);
        let attribute = field(6, &inner_graph);
        let node = field(5, &attribute);
        let graph = field(1, &node);
        let model = field(7, &graph);
        assert_eq!(external_locations_in(&model).unwrap(), vec!["w.bin".to_string()]);
    }
}
