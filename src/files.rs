//! Reading the files of a model directory and of an index: regular files only (opening a FIFO
//! blocks until a writer comes, `/dev/zero` never ends) and at most a size per kind, checked
//! before anything is opened or allocated and enforced while reading.

use std::io::Read;
use std::path::Path;

/// config.json, generation_config.json, tokenizer_config.json, the sentence-transformers files.
pub(crate) const CONFIG_LIMIT: u64 = 16 << 20;
/// tokenizer.json (NLLB-200's is about 30 MB).
pub(crate) const TOKENIZER_LIMIT: u64 = 1 << 30;
/// An ONNX graph file (protobuf caps one message at 2 GiB; weights beyond go to external data).
pub(crate) const GRAPH_LIMIT: u64 = 2 << 30;

/// Why a file could not be read, for the caller to turn into its own status.
#[derive(Debug)]
pub enum FileProblem {
    Missing(std::io::Error),
    NotRegular,
    TooLarge { bytes: u64, limit: u64 },
    Read(std::io::Error),
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::Missing(e) => write!(f, "cannot read it: {e}"),
            FileProblem::NotRegular => write!(f, "not a regular file (a FIFO, device or directory is never read)"),
            FileProblem::TooLarge { bytes, limit } => write!(f, "{bytes} bytes, more than the {limit} bytes such a file may have"),
            FileProblem::Read(e) => write!(f, "reading it failed: {e}"),
        }
    }
}

/// The size of `path` when it is a regular file of at most `limit` bytes (links are followed).
pub fn regular_file(path: &Path, limit: u64) -> Result<u64, FileProblem> {
    let meta = std::fs::metadata(path).map_err(FileProblem::Missing)?;
    if !meta.is_file() {
        return Err(FileProblem::NotRegular);
    }
    if meta.len() > limit {
        return Err(FileProblem::TooLarge { bytes: meta.len(), limit });
    }
    Ok(meta.len())
}

/// The bytes of a regular file of at most `limit` bytes; a file that grows past it while read is
/// refused too.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, FileProblem> {
    let len = regular_file(path, limit)?;
    let file = std::fs::File::open(path).map_err(FileProblem::Missing)?;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len as usize).map_err(|e| FileProblem::Read(std::io::Error::other(e.to_string())))?;
    file.take(limit + 1).read_to_end(&mut bytes).map_err(FileProblem::Read)?;
    if bytes.len() as u64 > limit {
        return Err(FileProblem::TooLarge { bytes: bytes.len() as u64, limit });
    }
    Ok(bytes)
}

/// As [`read_limited`], as UTF-8 text.
pub fn read_text_limited(path: &Path, limit: u64) -> Result<String, FileProblem> {
    String::from_utf8(read_limited(path, limit)?).map_err(|e| FileProblem::Read(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = std::env::temp_dir().join(format!("duet-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.json");
        std::fs::write(&f, b"{}").unwrap();
        assert_eq!(read_text_limited(&f, 10).unwrap(), "{}");
        assert!(matches!(read_limited(&f, 1), Err(FileProblem::TooLarge { bytes: 2, limit: 1 })));
        assert!(matches!(read_limited(&dir, 10), Err(FileProblem::NotRegular)));
        assert!(matches!(read_limited(Path::new("/dev/zero"), 10), Err(FileProblem::NotRegular)));
        assert!(matches!(read_limited(&dir.join("missing"), 10), Err(FileProblem::Missing(_))));
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(read_limited(&fifo, 10), Err(FileProblem::NotRegular)), "a FIFO is refused without opening it");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
