//! Shared by the integration tests: ONNX Runtime from `make fetch-ort`, the fixture models.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use once_cell::sync::Lazy;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// Loads ONNX Runtime from `DUET_ORT_LIBRARY` or the copy `make fetch-ort` unpacked.
pub fn init_ort() {
    let path = std::env::var_os("DUET_ORT_LIBRARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".ort/lib/libonnxruntime.so.1.31.1"));
    duet::runtime::init_runtime(Some(&path)).expect("ONNX Runtime (run `make fetch-ort`)");
}

/// `layout` is `merged` or `split`, optionally with `/bound`: caches kept through IoBinding.
pub fn open(name: &str, layout: &str) -> duet::Model {
    init_ort();
    let mut options = duet::new_model_options();
    let (layout, bound) = layout.split_once('/').map_or((layout, false), |(l, b)| (l, b == "bound"));
    options.set_str("layout", layout).unwrap();
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
    duet::Model::open_with(fixture(name), &options).unwrap_or_else(|e| panic!("opening {name}: {e}"))
}

static MODELS: Lazy<std::sync::Mutex<Vec<(String, Arc<duet::Model>)>>> = Lazy::new(Default::default);

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
