//! CUDA and TensorRT settings from model options, as ONNX Runtime provider keys, and TensorRT
//! optimization profiles derived from the largest inputs and outputs expected, so that engines
//! are built once rather than per shape.

use super::providers::ExecutionProviderKind;
use crate::error::{Error, Result};
use crate::settings::{Settings, Value};

/// Model option -> (provider, ONNX Runtime key, how the value is written).
const MAPPING: &[(&str, ExecutionProviderKind, &str)] = &[
    ("cuda_memory_limit", ExecutionProviderKind::Cuda, "gpu_mem_limit"),
    ("cuda_arena_strategy", ExecutionProviderKind::Cuda, "arena_extend_strategy"),
    ("cuda_copy_in_default_stream", ExecutionProviderKind::Cuda, "do_copy_in_default_stream"),
    ("trt_fp16", ExecutionProviderKind::TensorRt, "trt_fp16_enable"),
    ("trt_bf16", ExecutionProviderKind::TensorRt, "trt_bf16_enable"),
    ("trt_engine_cache", ExecutionProviderKind::TensorRt, "trt_engine_cache_enable"),
    ("trt_engine_cache_path", ExecutionProviderKind::TensorRt, "trt_engine_cache_path"),
    ("trt_timing_cache", ExecutionProviderKind::TensorRt, "trt_timing_cache_enable"),
    ("trt_timing_cache_path", ExecutionProviderKind::TensorRt, "trt_timing_cache_path"),
    ("trt_builder_optimization_level", ExecutionProviderKind::TensorRt, "trt_builder_optimization_level"),
    ("trt_max_workspace_size", ExecutionProviderKind::TensorRt, "trt_max_workspace_size"),
];

/// Keys that size the TensorRT profiles (not provider keys themselves).
pub const TRT_PROFILE_KEYS: &[&str] = &["trt_max_batch", "trt_max_input_tokens", "trt_max_new_tokens"];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuOptions {
    pub cuda: Vec<(String, String)>,
    pub tensorrt: Vec<(String, String)>,
}

fn text(v: &Value) -> String {
    match v {
        Value::Bool(b) => (if *b { "1" } else { "0" }).to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => s.clone(),
        Value::IntList(l) => format!("{l:?}"),
        Value::IntLists(l) => format!("{l:?}"),
        Value::StrList(l) => l.join(","),
    }
}

/// The provider keys set in `options`; options for a provider not in `order` are an error.
pub fn gpu_options(options: &Settings, order: &[ExecutionProviderKind]) -> Result<GpuOptions> {
    let mut out = GpuOptions::default();
    for (key, kind, ort_key) in MAPPING {
        let Some(v) = options.get(key) else { continue };
        if !order.contains(kind) {
            return Err(Error::invalid_param(key, format!("applies to the {kind} provider, which `providers` does not list")));
        }
        let value = match (*key, v) {
            ("cuda_arena_strategy", Value::Str(s)) => match s.as_str() {
                "next_power_of_two" => "kNextPowerOfTwo".to_string(),
                _ => "kSameAsRequested".to_string(),
            },
            _ => text(v),
        };
        let list = if *kind == ExecutionProviderKind::Cuda { &mut out.cuda } else { &mut out.tensorrt };
        list.push((ort_key.to_string(), value));
    }
    for key in TRT_PROFILE_KEYS {
        if options.is_set(key) && !order.contains(&ExecutionProviderKind::TensorRt) {
            return Err(Error::invalid_param(key, "applies to the tensorrt provider, which `providers` does not list"));
        }
    }
    Ok(out)
}

/// The graph a profile is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphKind {
    Encoder,
    DecoderFirst,
    DecoderWithPast,
    /// The with-past graph running every step (the `with_past` layout): its first step has an
    /// empty self-attention cache, so the profile starts at a past length of 0.
    DecoderEveryStep,
    DecoderMerged,
}

/// Sizes behind the profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileShape {
    pub max_batch: usize,
    pub max_input: usize,
    pub max_new: usize,
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub d_model: usize,
}

/// `trt_profile_min_shapes`, `_opt_shapes`, `_max_shapes` for one graph.
pub fn trt_profile(kind: GraphKind, s: &ProfileShape) -> Vec<(String, String)> {
    let shapes = |b: usize, l: usize, t: usize| -> String {
        let mut items = Vec::new();
        match kind {
            GraphKind::Encoder => {
                items.push(format!("input_ids:{b}x{l}"));
                items.push(format!("attention_mask:{b}x{l}"));
            }
            _ => {
                items.push(format!("input_ids:{b}x1"));
                items.push(format!("encoder_attention_mask:{b}x{l}"));
                if !matches!(kind, GraphKind::DecoderWithPast | GraphKind::DecoderEveryStep) {
                    items.push(format!("encoder_hidden_states:{b}x{l}x{}", s.d_model));
                }
                if kind != GraphKind::DecoderFirst {
                    for layer in 0..s.layers {
                        for kv in ["key", "value"] {
                            items.push(format!("past_key_values.{layer}.decoder.{kv}:{b}x{}x{t}x{}", s.heads, s.head_dim));
                            items.push(format!("past_key_values.{layer}.encoder.{kv}:{b}x{}x{l}x{}", s.heads, s.head_dim));
                        }
                    }
                }
            }
        }
        items.join(",")
    };
    let min_past = if kind == GraphKind::DecoderEveryStep { 0 } else { 1 };
    vec![
        ("trt_profile_min_shapes".into(), shapes(1, 1, min_past)),
        ("trt_profile_opt_shapes".into(), shapes(s.max_batch.div_ceil(2).max(1), (s.max_input / 2).max(1), (s.max_new / 2).max(1))),
        ("trt_profile_max_shapes".into(), shapes(s.max_batch, s.max_input, s.max_new)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_map_to_provider_keys_and_need_their_provider() {
        let mut o = crate::model::new_model_options();
        o.set_str("trt_fp16", "true").unwrap();
        o.set_str("cuda_arena_strategy", "same_as_requested").unwrap();
        let order = [ExecutionProviderKind::TensorRt, ExecutionProviderKind::Cuda, ExecutionProviderKind::Cpu];
        let g = gpu_options(&o, &order).unwrap();
        assert_eq!(g.tensorrt, vec![("trt_fp16_enable".to_string(), "1".to_string())]);
        assert_eq!(g.cuda, vec![("arena_extend_strategy".to_string(), "kSameAsRequested".to_string())]);
        let e = gpu_options(&o, &[ExecutionProviderKind::Cuda]).unwrap_err();
        assert!(e.to_string().contains("trt_fp16"), "{e}");
    }

    #[test]
    fn profiles_cover_every_dynamic_input() {
        let s = ProfileShape { max_batch: 8, max_input: 512, max_new: 128, layers: 2, heads: 4, head_dim: 16, d_model: 64 };
        let enc = trt_profile(GraphKind::Encoder, &s);
        assert_eq!(enc[2].1, "input_ids:8x512,attention_mask:8x512");
        let past = trt_profile(GraphKind::DecoderWithPast, &s);
        assert!(past[2].1.contains("past_key_values.1.decoder.value:8x4x128x16"));
        assert!(past[2].1.contains("past_key_values.0.encoder.key:8x4x512x16"));
        assert!(!past[2].1.contains("encoder_hidden_states"));
        assert!(past[0].1.starts_with("input_ids:1x1,encoder_attention_mask:1x1"));
        let first = trt_profile(GraphKind::DecoderFirst, &s);
        assert!(first[1].1.contains("encoder_hidden_states:4x256x64") && !first[1].1.contains("past_key_values"));
        assert!(past[0].1.contains("past_key_values.0.decoder.key:1x4x1x16"));
        let every = trt_profile(GraphKind::DecoderEveryStep, &s);
        assert!(every[0].1.contains("past_key_values.0.decoder.key:1x4x0x16"), "the first step's cache is empty");
        assert_eq!(every[2], past[2]);
    }
}
