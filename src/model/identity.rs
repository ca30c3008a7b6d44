//! A model's identity for what it embeds: a SHA-256 over the encoder graph, the external-data
//! files it names, the tokenizer and the pooling settings. Two copies of one model agree; any
//! change to weights, vocabulary or pooling gives another identity. An index records it.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::runtime::confinement::external_locations;

fn hash_file(hasher: &mut Sha256, path: &Path) -> Result<()> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buffer[..n]);
    }
}

/// `sha256:<hex>` of the graph at `graph`, its external data, `tokenizer` and `settings`.
pub fn embedding_identity(graph: &Path, tokenizer: &Path, settings: &str) -> Result<String> {
    let dir = graph.parent().unwrap_or(Path::new("."));
    let mut locations = external_locations(graph)?;
    locations.sort();
    locations.dedup();
    let mut hasher = Sha256::new();
    for path in std::iter::once(graph.to_path_buf()).chain(locations.iter().map(|l| dir.join(l))).chain([tokenizer.to_path_buf()]) {
        hash_file(&mut hasher, &path)?;
        hasher.update([0u8]);
    }
    hasher.update(settings.as_bytes());
    let digest = hasher.finalize();
    Ok(format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_follows_content_and_settings() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let t5 = |f: &str| fixtures.join("t5-tiny").join(f);
        let a = embedding_identity(&t5("encoder_model.onnx"), &t5("tokenizer.json"), "mean").unwrap();
        assert_eq!(a, embedding_identity(&t5("encoder_model.onnx"), &t5("tokenizer.json"), "mean").unwrap());
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
        assert_ne!(a, embedding_identity(&t5("encoder_model.onnx"), &t5("tokenizer.json"), "cls").unwrap());
        let bart = fixtures.join("bart-tiny");
        assert_ne!(a, embedding_identity(&bart.join("encoder_model.onnx"), &bart.join("tokenizer.json"), "mean").unwrap());
    }
}
