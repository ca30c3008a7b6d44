//! Hostile model directories: config.json, generation_config.json and tokenizer_config.json of a
//! fixture with keys set to values the input picks (ids past the vocabulary, negative or huge
//! numbers, wrong types, nested junk, the ByT5 tokenizer's added tokens), or replaced by the raw
//! input. Opening must end in a model or an error, never a panic, an abort or a hang; an opened
//! model must generate (or refuse) two tokens.
#![no_main]
use std::path::{Path, PathBuf};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use once_cell::sync::Lazy;
use serde_json::{json, Value};

const FIXTURES: [&str; 3] = ["t5-tiny", "bart-tiny", "byt5-tiny"];
const FILES: [&str; 3] = ["config.json", "generation_config.json", "tokenizer_config.json"];
const KEYS: [&str; 24] = [
    "vocab_size",
    "model_type",
    "d_model",
    "d_kv",
    "num_heads",
    "num_layers",
    "num_decoder_layers",
    "decoder_layers",
    "n_positions",
    "max_position_embeddings",
    "eos_token_id",
    "pad_token_id",
    "bos_token_id",
    "decoder_start_token_id",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "bad_words_ids",
    "suppress_tokens",
    "begin_suppress_tokens",
    "max_length",
    "num_beams",
    "task_specific_params",
    "added_tokens_decoder",
    "tokenizer_class",
];

static ROOT: Lazy<PathBuf> = Lazy::new(|| {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ort = std::env::var("DUET_ORT_LIBRARY").map(PathBuf::from).unwrap_or_else(|_| root.join(".ort/lib/libonnxruntime.so.1.31.1"));
    duet::runtime::init_runtime(Some(&ort)).unwrap();
    root
});

fn value(u: &mut Unstructured) -> Result<Value> {
    Ok(match u.int_in_range(0..=9)? {
        0 => json!(u.arbitrary::<i64>()?),
        1 => json!(u.int_in_range(-2i64..=900)?),
        2 => json!(u.arbitrary::<f64>()?),
        3 => json!(u.arbitrary::<String>()?),
        4 => json!(null),
        5 => json!(u.arbitrary::<bool>()?),
        6 => json!([u.int_in_range(-2i64..=900)?, u.arbitrary::<i64>()?]),
        7 => json!([[u.int_in_range(-2i64..=900)?], [u.arbitrary::<i64>()?, 3]]),
        8 => json!({ "259": {"content": u.arbitrary::<String>()?, "special": u.arbitrary::<bool>()?},
                     u.arbitrary::<u16>()?.to_string(): {"content": "</s>", "lstrip": true} }),
        _ => json!({ "summarization": {"prefix": u.arbitrary::<String>()?}, "rerank": {"template": u.arbitrary::<String>()?} }),
    })
}

fn scratch(fixture: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("duet-fuzz-model-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(ROOT.join("tests/fixtures").join(fixture)).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), dir.join(e.file_name())).unwrap();
    }
    dir
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let fixture = FIXTURES[u.int_in_range(0..=2)?];
    let dir = scratch(fixture);
    for _ in 0..u.int_in_range(1..=4)? {
        let file = FILES[u.int_in_range(0..=2)?];
        let path = dir.join(file);
        let mut doc: Value = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(json!({}));
        let _ = std::fs::remove_file(&path);
        if u.ratio(1, 8)? {
            std::fs::write(&path, u.bytes(u.len().min(256))?).unwrap(); // not JSON, or any JSON
            continue;
        }
        for _ in 0..u.int_in_range(1..=3)? {
            let key = KEYS[u.int_in_range(0..=KEYS.len() - 1)?];
            if let Some(o) = doc.as_object_mut() {
                o.insert(key.to_string(), value(&mut u)?);
            }
        }
        std::fs::write(&path, doc.to_string()).unwrap();
    }
    if let Ok(model) = duet::Model::open(&dir) {
        let mut s = duet::new_generation_settings();
        let _ = s.set_int("max_new_tokens", 2);
        let _ = duet::generate(&model, &["hello 你好 🙂"], &s, None);
        let _ = model.info_json();
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = &*ROOT;
    let _ = run(data);
});
