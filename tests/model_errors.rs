//! A bad model directory is a clear error naming the file and what is wrong, never a crash.

mod common;

use std::path::{Path, PathBuf};

use duet::Error;

/// A scratch copy of a fixture model (files linked, not copied), removed on drop.
struct ScratchModel(PathBuf);

impl ScratchModel {
    fn of(name: &str, tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("duet-test-{}-{name}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(common::fixture(name)).unwrap() {
            let entry = entry.unwrap();
            std::os::unix::fs::symlink(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        Self(dir)
    }

    fn remove(&self, file: &str) -> &Self {
        std::fs::remove_file(self.0.join(file)).unwrap();
        self
    }

    fn write(&self, file: &str, content: &[u8]) -> &Self {
        let _ = std::fs::remove_file(self.0.join(file));
        std::fs::write(self.0.join(file), content).unwrap();
        self
    }

    fn replace_with(&self, file: &str, other: &str) -> &Self {
        let _ = std::fs::remove_file(self.0.join(file));
        std::fs::copy(self.0.join(other), self.0.join(file)).unwrap();
        self
    }

    fn edit_json(&self, file: &str, edit: impl FnOnce(&mut serde_json::Value)) -> &Self {
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(self.0.join(file)).unwrap()).unwrap();
        edit(&mut v);
        self.write(file, v.to_string().as_bytes())
    }

    fn open(&self) -> Result<duet::Model, Error> {
        common::init_ort();
        duet::Model::open(&self.0)
    }
}

impl Drop for ScratchModel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn expect_err(result: Result<duet::Model, Error>, file: &str, words: &str) -> Error {
    let e = result.err().expect("opening should fail");
    let msg = e.to_string();
    assert!(msg.contains(file), "error should name {file}: {msg}");
    assert!(msg.to_lowercase().contains(words), "error should say `{words}`: {msg}");
    e
}

#[test]
fn missing_directory_and_files() {
    common::init_ort();
    let e = duet::Model::open(Path::new("/nonexistent/duet-model")).err().unwrap();
    assert!(matches!(e, Error::ModelFileMissing { .. }), "{e}");

    let m = ScratchModel::of("t5-tiny", "no-config");
    m.remove("config.json");
    assert!(matches!(expect_err(m.open(), "config.json", "cannot read"), Error::ModelFileMissing { .. }));

    let m = ScratchModel::of("t5-tiny", "no-tokenizer");
    m.remove("tokenizer.json");
    assert!(matches!(expect_err(m.open(), "tokenizer.json", "missing"), Error::ModelFileMissing { .. }));

    let m = ScratchModel::of("t5-tiny", "no-encoder");
    m.remove("encoder_model.onnx");
    expect_err(m.open(), "encoder_model.onnx", "missing");

    let m = ScratchModel::of("t5-tiny", "no-decoders");
    m.remove("decoder_model_merged.onnx").remove("decoder_with_past_model.onnx");
    expect_err(m.open(), "decoder_model_merged.onnx", "missing");
}

#[test]
fn either_layout_alone_is_enough() {
    let m = ScratchModel::of("bart-tiny", "split-only");
    m.remove("decoder_model_merged.onnx");
    assert_eq!(m.open().unwrap().layout(), Some(duet::Layout::Split));
    let m = ScratchModel::of("bart-tiny", "merged-only");
    m.remove("decoder_model.onnx").remove("decoder_with_past_model.onnx");
    assert_eq!(m.open().unwrap().layout(), Some(duet::Layout::Merged));
    let m = ScratchModel::of("bart-tiny", "both");
    assert_eq!(m.open().unwrap().layout(), Some(duet::Layout::Merged), "merged is preferred");
}

#[test]
fn an_encoder_with_the_cross_cache_runs_the_with_past_decoder_alone() {
    common::init_ort();
    let dir = common::with_cross_cache("t5-tiny");
    let m = duet::Model::open(&dir).unwrap();
    assert_eq!(m.layout(), Some(duet::Layout::WithPast), "auto prefers one decoder graph");
    let graphs: Vec<String> = m.info_json()["graphs"].as_array().unwrap().iter().map(|g| g["file"].as_str().unwrap().to_string()).collect();
    assert_eq!(graphs, ["encoder_model.onnx", "decoder_with_past_model.onnx"]);
    let info = m.info_json();
    assert!(info["graphs"].as_array().unwrap().iter().all(|g| g["bytes"].as_u64().unwrap() > 10_000));
    assert!(info["memory"]["process_resident_bytes"].as_u64().unwrap() > 1 << 20, "{}", info["memory"]);
    assert_eq!(info["memory"]["weights_mapped_from_files"], false, "the fixtures keep their weights inside");
    let mut options = duet::new_model_options();
    options.set_str("layout", "split").unwrap();
    assert_eq!(duet::Model::open_with(&dir, &options).unwrap().layout(), Some(duet::Layout::Split));

    // Asked for with_past when the encoder cannot give the cache: a clear error.
    options.set_str("layout", "with_past").unwrap();
    let e = duet::Model::open_with(common::fixture("t5-tiny"), &options).err().unwrap();
    assert!(matches!(e, Error::ModelInvalid { .. }) && e.to_string().contains("cross-attention cache"), "{e}");
    // An encoder whose cache has fewer layers than the decoder: refused, not run.
    let m = ScratchModel::of("t5-tiny", "cross-of-another-model");
    m.write("encoder_model.onnx", &std::fs::read(common::fixture("bart-tiny").join("encoder_with_cross_cache.onnx")).unwrap());
    let e = duet::Model::open_with(&m.0, &options).err().unwrap();
    assert!(e.to_string().contains("layers"), "{e}");
}

#[test]
fn malformed_files() {
    let m = ScratchModel::of("t5-tiny", "bad-json");
    m.write("config.json", b"{ not json");
    assert!(matches!(expect_err(m.open(), "config.json", "not valid json"), Error::ModelInvalid { .. }));

    let m = ScratchModel::of("t5-tiny", "bad-tokenizer");
    m.write("tokenizer.json", b"{\"version\": \"1.0\"}");
    expect_err(m.open(), "tokenizer.json", "not a valid tokenizer");

    let m = ScratchModel::of("t5-tiny", "truncated-onnx");
    let bytes = std::fs::read(common::fixture("t5-tiny").join("encoder_model.onnx")).unwrap();
    m.write("encoder_model.onnx", &bytes[..bytes.len() / 3]);
    expect_err(m.open(), "encoder_model.onnx", "not a valid onnx file");

    let m = ScratchModel::of("t5-tiny", "bit-flipped-onnx");
    let mut flipped = bytes.clone();
    for i in (100..flipped.len()).step_by(997) {
        flipped[i] ^= 0xa5;
    }
    m.write("encoder_model.onnx", &flipped);
    assert!(matches!(m.open(), Err(Error::ModelInvalid { .. })), "bit flips must give ModelInvalid");

    let m = ScratchModel::of("t5-tiny", "not-onnx");
    m.write("decoder_model_merged.onnx", b"hello");
    expect_err(m.open(), "decoder_model_merged.onnx", "not a valid onnx file");
}

#[test]
fn graphs_without_the_expected_inputs() {
    let m = ScratchModel::of("t5-tiny", "swapped");
    m.replace_with("encoder_model.onnx", "decoder_model.onnx");
    expect_err(m.open(), "encoder_model.onnx", "no input `attention_mask`");

    let m = ScratchModel::of("t5-tiny", "merged-is-plain");
    m.replace_with("decoder_model_merged.onnx", "decoder_model.onnx");
    expect_err(m.open(), "decoder_model_merged.onnx", "use_cache_branch");
}

/// A minimal ONNX ModelProto whose one initializer keeps its data in `location`.
fn onnx_with_external_data(location: &str) -> Vec<u8> {
    fn field(number: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8];
        out.push(payload.len() as u8);
        out.extend_from_slice(payload);
        out
    }
    let entry = [field(1, b"location"), field(2, location.as_bytes())].concat();
    let tensor = [vec![0x10, 0x01], field(8, b"w"), field(13, &entry), vec![0x70, 0x01]].concat();
    let graph = field(5, &tensor);
    [vec![0x08, 0x08], field(7, &graph)].concat()
}

#[test]
fn external_data_must_stay_inside_the_model_directory() {
    for (location, why) in [("../../etc/passwd", "climbs out"), ("/etc/passwd", "absolute"), ("a/../../b", "climbs out")] {
        let m = ScratchModel::of("t5-tiny", "escape");
        m.write("encoder_model.onnx", &onnx_with_external_data(location));
        let e = expect_err(m.open(), "encoder_model.onnx", why);
        assert!(e.to_string().contains(location), "{e}");
    }
    let m = ScratchModel::of("t5-tiny", "link-escape");
    std::os::unix::fs::symlink("/etc", m.0.join("weights")).unwrap();
    m.write("encoder_model.onnx", &onnx_with_external_data("weights/passwd"));
    expect_err(m.open(), "encoder_model.onnx", "through a link");
    // Inside the directory the check passes (and ONNX Runtime then judges the graph itself).
    let inside = duet::runtime::confinement::external_locations(&common::fixture("t5-tiny").join("encoder_model.onnx")).unwrap();
    assert!(inside.is_empty());
}

#[test]
fn config_that_does_not_fit() {
    let m = ScratchModel::of("t5-tiny", "small-vocab");
    m.edit_json("config.json", |v| v["vocab_size"] = 100.into());
    expect_err(m.open(), "tokenizer.json", "vocabulary");

    let m = ScratchModel::of("t5-tiny", "gpt2");
    m.edit_json("config.json", |v| v["model_type"] = "gpt2".into());
    expect_err(m.open(), "config.json", "not a supported");

    let m = ScratchModel::of("t5-tiny", "bad-generation-config");
    m.write("generation_config.json", br#"{"num_beams": 0}"#);
    expect_err(m.open(), "generation_config.json", "num_beams");
}

#[test]
fn generation_config_is_optional() {
    let m = ScratchModel::of("t5-tiny", "no-generation-config");
    m.remove("generation_config.json");
    let model = m.open().unwrap();
    let out = duet::generate(&model, &["hello"], &duet::new_generation_settings(), None).unwrap();
    // transformers 4.57 counts a max_length left at its default of 20 from the end of the
    // decoder input: 20 new tokens at most.
    let seq = &out[0].sequences[0];
    assert!(seq.token_ids.len() <= 20 && (seq.finish_reason != duet::FinishReason::Length || seq.token_ids.len() == 20), "{seq:?}");
}

/// Metadata is checked against the graphs at open: a vocab_size the logits contradict, token ids
/// outside the vocabulary, each refused naming the file and the field (C: MODEL_INVALID; the
/// CLI: one line, exit 1); a huge n_positions is read as a limit of 2^24 tokens, not overflowed.
#[test]
fn metadata_is_checked_against_the_graphs() {
    let wide = ScratchModel::of("t5-tiny", "wide-vocab");
    wide.edit_json("config.json", |v| v["vocab_size"] = 900.into());
    expect_err(wide.open(), "config.json", "vocab_size is 900, but the logits");
    let narrow = ScratchModel::of("t5-tiny", "narrow-vocab");
    let tokens = narrow.open().unwrap().tokenizer.id_bound();
    assert!(tokens < 800);
    narrow.edit_json("config.json", |v| v["vocab_size"] = tokens.into());
    expect_err(narrow.open(), "config.json", "but the logits of");

    for (file, key, value) in [
        ("generation_config.json", "eos_token_id", serde_json::json!(5000)),
        ("generation_config.json", "forced_eos_token_id", serde_json::json!([1, 800])),
        ("generation_config.json", "bad_words_ids", serde_json::json!([[5, 99999]])),
        ("generation_config.json", "decoder_start_token_id", serde_json::json!(801)),
    ] {
        let m = ScratchModel::of("t5-tiny", &format!("token-{key}"));
        m.edit_json(file, |v| v[key] = value.clone());
        expect_err(m.open(), file, &format!("{key}: token id"));
    }
    let m = ScratchModel::of("t5-tiny", "config-pad");
    m.remove("generation_config.json");
    m.edit_json("config.json", |v| v["pad_token_id"] = 800.into());
    expect_err(m.open(), "config.json", "pad_token_id: token id 800 is outside");

    let huge = ScratchModel::of("t5-tiny", "huge-positions");
    huge.edit_json("config.json", |v| v["n_positions"] = serde_json::json!(u64::MAX));
    let model = huge.open().unwrap();
    assert_eq!(model.config.max_input_tokens, Some(1 << 24));
    let long = "word ".repeat(3000);
    let mut s = duet::new_generation_settings();
    s.set_int("max_new_tokens", 2).unwrap();
    let out = duet::generate(&model, &[long.as_str()], &s, None).unwrap();
    assert!(!out[0].input_truncated && out[0].input_tokens > 3000, "{:?}", out[0].input_tokens);

    // through the C ABI and the CLI
    let dir = std::ffi::CString::new(wide.0.to_str().unwrap()).unwrap();
    let mut handle = std::ptr::null_mut();
    let status = unsafe { duet::ffi::duet_model_open(dir.as_ptr(), std::ptr::null(), &mut handle) };
    assert_eq!(status, duet::ffi::duet_status::ModelInvalid);
    assert!(handle.is_null());
    let out = common::cli(&["info", "--model", wide.0.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("vocab_size is 900") && !stderr.contains("panicked"), "{stderr}");
}
