//! Execution providers on a machine without a GPU: strict mode fails with ONNX Runtime's reason,
//! fallback reports the CPU, TensorRT gets the split decoders, GPU options are validated.

mod common;

use duet::Error;

fn open(pairs: &[(&str, &str)]) -> Result<duet::Model, Error> {
    common::init_ort();
    let mut options = duet::new_model_options();
    for (k, v) in pairs {
        options.set_str(k, v)?;
    }
    duet::Model::open_with(common::fixture("t5-tiny"), &options)
}

#[test]
fn strict_mode_says_why_the_provider_is_unavailable() {
    for p in ["cuda", "tensorrt"] {
        let e = open(&[("providers", p), ("strict_providers", "true")]).err().expect("no GPU provider here");
        assert!(matches!(e, Error::ProviderUnavailable(_)), "{e}");
        assert!(e.to_string().contains(p) && e.to_string().contains("not enabled in this build"), "{e}");
    }
}

#[test]
fn fallback_reports_the_cpu_and_what_was_skipped() {
    let m = open(&[("providers", "tensorrt,cuda,cpu")]).unwrap();
    assert_eq!(m.execution_provider(), duet::runtime::ExecutionProviderKind::Cpu);
    let info = m.info_json();
    assert_eq!(info["execution_provider"], "CPUExecutionProvider");
    let skipped = info["providers_skipped"].as_array().unwrap();
    assert!(skipped.iter().any(|s| s.as_str().unwrap().starts_with("tensorrt:")));
    assert!(skipped.iter().any(|s| s.as_str().unwrap().starts_with("cuda:")));
    for g in info["graphs"].as_array().unwrap() {
        assert_eq!(g["execution_provider"], "CPUExecutionProvider");
    }
    // It still generates.
    let out = duet::generate(&m, &["hello"], &duet::new_generation_settings(), None).unwrap();
    assert!(!out[0].sequences[0].token_ids.is_empty());
}

#[test]
fn tensorrt_gets_the_split_decoders() {
    let m = open(&[("providers", "tensorrt,cpu"), ("trt_fp16", "true"), ("trt_max_new_tokens", "64")]).unwrap();
    assert_eq!(m.layout(), Some(duet::Layout::Split));
    assert!(m.info_json()["layout_note"].as_str().unwrap().contains("If"));
    // An explicit layout is respected.
    let m = open(&[("providers", "tensorrt,cpu"), ("layout", "merged")]).unwrap();
    assert_eq!(m.layout(), Some(duet::Layout::Merged));
    // Without TensorRT, merged is preferred.
    assert_eq!(open(&[("providers", "cuda,cpu")]).unwrap().layout(), Some(duet::Layout::Merged));
}

#[test]
fn gpu_options_are_validated() {
    let invalid = |pairs: &[(&str, &str)], key: &str| {
        let e = open(pairs).err().expect("must be refused");
        assert!(matches!(e, Error::InvalidParam { .. } | Error::UnknownParam { .. }), "{e}");
        assert!(e.to_string().contains(key), "{e}");
    };
    invalid(&[("providers", "cpu"), ("trt_fp16", "true")], "trt_fp16");
    invalid(&[("providers", "cuda"), ("trt_max_batch", "4")], "trt_max_batch");
    invalid(&[("providers", "tensorrt"), ("cuda_memory_limit", "1000")], "cuda_memory_limit");
    invalid(&[("providers", "cuda"), ("cuda_arena_strategy", "greedy")], "cuda_arena_strategy");
    invalid(&[("providers", "tensorrt"), ("trt_builder_optimization_level", "9")], "trt_builder_optimization_level");
    invalid(&[("providers", "cuda,npu")], "providers");
    invalid(&[("providers", "cuda"), ("cuda_memory_limit", "-5")], "cuda_memory_limit");
    assert!(open(&[("providers", "cuda,cpu"), ("cuda_memory_limit", "1073741824"), ("cuda_arena_strategy", "same_as_requested")]).is_ok());
}

#[test]
fn io_binding_is_reported_and_follows_the_decoder_device() {
    let auto = open(&[("providers", "cuda,cpu")]).unwrap().info_json();
    assert_eq!(auto["io_binding"], false, "auto binds only when the decoder runs on a GPU");
    assert_eq!(auto["kv_cache_device"], "cpu");
    assert_eq!(auto["cache_dtype"], "float32");
    let on = open(&[("io_binding", "on")]).unwrap().info_json();
    assert_eq!(on["io_binding"], true);
    assert_eq!(on["kv_cache_device"], "cpu");
    let e = open(&[("io_binding", "gpu")]).err().unwrap();
    assert!(matches!(e, Error::InvalidParam { .. }), "{e}");
}
