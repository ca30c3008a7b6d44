//! Shared by the integration tests: ONNX Runtime from `make fetch-ort`, the fixture models.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use once_cell::sync::Lazy;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// `DUET_ORT_LIBRARY`, or the copy `make fetch-ort` unpacked.
pub fn ort_library() -> PathBuf {
    std::env::var_os("DUET_ORT_LIBRARY").map(PathBuf::from).unwrap_or_else(|| root().join(".ort/lib/libonnxruntime.so.1.31.1"))
}

/// Loads ONNX Runtime from [`ort_library`].
pub fn init_ort() {
    duet::runtime::init_runtime(Some(&ort_library())).expect("ONNX Runtime (run `make fetch-ort`)");
}

/// The `duet` CLI with `args`, on the ONNX Runtime the tests use.
pub fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_duet")).args(args).env("DUET_ORT_LIBRARY", ort_library()).output().unwrap()
}

/// A copy of fixture `name` as tools/export_model.py leaves it: its encoder also returns the
/// cross-attention cache (`encoder_with_cross_cache.onnx`), so the `with_past` layout can run.
pub fn with_cross_cache(name: &str) -> PathBuf {
    variant(name, "with-cross-cache", &[("encoder_with_cross_cache.onnx", "encoder_model.onnx")])
}

/// `with_cross_cache`, and its with-past decoder takes a self-attention mask
/// (`decoder_with_past_masked.onnx`, tools/decoder_mask.py): rows at different positions can share
/// a decoder run.
pub fn with_decoder_mask(name: &str) -> PathBuf {
    variant(
        name,
        "with-decoder-mask",
        &[("encoder_with_cross_cache.onnx", "encoder_model.onnx"), ("decoder_with_past_masked.onnx", "decoder_with_past_model.onnx")],
    )
}

/// `with_decoder_mask`, and the beams of one input share one cross-attention cache row
/// (`decoder_with_past_shared.onnx`, tools/share_cross_cache.py), as tools/export_model.py leaves it.
pub fn with_shared_cross(name: &str) -> PathBuf {
    variant(
        name,
        "with-shared-cross",
        &[("encoder_with_cross_cache.onnx", "encoder_model.onnx"), ("decoder_with_past_shared.onnx", "decoder_with_past_model.onnx")],
    )
}

/// `with_shared_cross`, and the with-past decoder's self-attention fused into ONNX Runtime's
/// MultiHeadAttention (`decoder_with_past_fused.onnx`, tools/fuse_attention.py, export_model.py --fuse).
pub fn with_fused_attention(name: &str) -> PathBuf {
    variant(
        name,
        "with-fused-attention",
        &[("encoder_with_cross_cache.onnx", "encoder_model.onnx"), ("decoder_with_past_fused.onnx", "decoder_with_past_model.onnx")],
    )
}

/// `with_fused_attention`, appending the self-attention cache in place (`decoder_with_past_in_place.onnx`,
/// tools/in_place_cache.py, export_model.py --in-place-cache).
pub fn with_in_place_cache(name: &str) -> PathBuf {
    variant(
        name,
        "with-in-place-cache",
        &[("encoder_with_cross_cache.onnx", "encoder_model.onnx"), ("decoder_with_past_in_place.onnx", "decoder_with_past_model.onnx")],
    )
}

/// A copy of fixture `name` (made once per test process) with each `(from, to)` file of the fixture
/// in place of `to`, without the merged decoder.
fn variant(name: &str, tag: &str, swaps: &[(&str, &str)]) -> PathBuf {
    static MADE: Lazy<std::sync::Mutex<Vec<String>>> = Lazy::new(Default::default);
    let mut made = MADE.lock().unwrap();
    let src = fixture(name);
    let dir = root().join("target/test-models").join(format!("{name}-{tag}-{}", std::process::id()));
    let key = format!("{name}-{tag}");
    if made.contains(&key) {
        return dir;
    }
    made.push(key);
    // Copies left by test processes that have ended go first.
    let prefix = format!("{name}-{tag}-");
    for old in std::fs::read_dir(dir.parent().unwrap()).into_iter().flatten().flatten() {
        let file = old.file_name().to_string_lossy().into_owned();
        if let Some(pid) = file.strip_prefix(&prefix) {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
    }
    std::fs::create_dir_all(&dir).unwrap();
    let skipped = |file: &str| file == "decoder_model_merged.onnx" || swaps.iter().any(|(from, to)| file == *from || file == *to);
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        if !skipped(&file) {
            std::fs::copy(&path, dir.join(&file)).unwrap();
        }
    }
    for (from, to) in swaps {
        std::fs::copy(src.join(from), dir.join(to)).unwrap();
    }
    dir
}

/// `layout` is `merged`, `split` or `with_past` (the fixture with its cross-cache encoder),
/// optionally with `/bound`: caches kept through IoBinding; `split+mask` and `with_past+mask`:
/// the with-past decoder takes a self-attention mask (`with_decoder_mask`); `with_past+share`:
/// that mask, and beams share the cross-attention cache (`with_shared_cross`); `with_past+fuse`: that,
/// with the self-attention fused (`with_fused_attention`); `with_past+inplace`: that, appending the
/// self-attention cache in place (`with_in_place_cache`). A trailing `+parts` runs the encoder one
/// input at a time (`encoder_batch_tokens=1`), each part copied into one output.
pub fn open(name: &str, layout: &str) -> duet::Model {
    init_ort();
    let mut options = duet::new_model_options();
    let (layout, bound) = layout.split_once('/').map_or((layout, false), |(l, b)| (l, b == "bound"));
    let (layout, parts) = layout.strip_suffix("+parts").map_or((layout, false), |l| (l, true));
    if parts {
        options.set_int("encoder_batch_tokens", 1).unwrap();
    }
    let (layout, in_place) = layout.strip_suffix("+inplace").map_or((layout, false), |l| (l, true));
    let (layout, fused) = layout.strip_suffix("+fuse").map_or((layout, false), |l| (l, true));
    let (layout, shared) = layout.strip_suffix("+share").map_or((layout, false), |l| (l, true));
    let (layout, masked) = layout.strip_suffix("+mask").map_or((layout, false), |l| (l, true));
    options.set_str("layout", layout).unwrap();
    let dir = match (layout, masked, shared) {
        _ if in_place => with_in_place_cache(name),
        _ if fused => with_fused_attention(name),
        (_, _, true) => with_shared_cross(name),
        (_, true, _) => with_decoder_mask(name),
        ("with_past", false, _) => with_cross_cache(name),
        _ => fixture(name),
    };
    if bound {
        options.set_str("io_binding", "on").unwrap();
    }
    if let Ok(level) = std::env::var("DUET_TEST_GRAPH_OPT") {
        options.set_str("graph_optimization", &level).unwrap();
    }
    // tools/gpu_check.sh runs the golden parity on CUDA and TensorRT this way.
    if let Ok(providers) = std::env::var("DUET_TEST_PROVIDERS") {
        options.set_str("providers", &providers).unwrap();
        options.set_bool("strict_providers", true).unwrap();
        if providers.starts_with("tensorrt") && layout == "merged" {
            options.set_str("layout", "split").unwrap();
        }
    }
    duet::Model::open_with(dir, &options).unwrap_or_else(|e| panic!("opening {name}: {e}"))
}

type OpenModels = Vec<(String, Arc<duet::Model>)>;
static MODELS: Lazy<std::sync::Mutex<OpenModels>> = Lazy::new(Default::default);

/// One shared instance per (model, layout) for the whole test binary.
pub fn shared(name: &str, layout: &str) -> Arc<duet::Model> {
    let key = format!("{name}/{layout}");
    let mut models = MODELS.lock().unwrap();
    if let Some((_, m)) = models.iter().find(|(k, _)| *k == key) {
        return m.clone();
    }
    let m = Arc::new(open(name, layout));
    models.push((key, m.clone()));
    m
}
