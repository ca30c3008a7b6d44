//! Half-precision exports (`tools/export_model.py --dtype`, fixtures `*-fp16` / `*-bf16`): float16
//! caches, hidden states and row moves on the host and through IoBinding, and closeness to the
//! float32 fixtures along the goldens' own outputs. ONNX Runtime's CPU provider runs float16 graphs
//! behind inserted Casts; it has no bfloat16 kernels, which must come back as a clear error.

mod common;

use serde_json::Value;

/// On the CPU unless `DUET_TEST_PROVIDERS` names GPU providers (tools/gpu_check.sh).
fn gpu_providers() -> Option<String> {
    std::env::var("DUET_TEST_PROVIDERS").ok()
}

fn open(name: &str, pairs: &[(&str, &str)]) -> duet::Result<duet::Model> {
    common::init_ort();
    let mut options = duet::new_model_options();
    if let Some(p) = gpu_providers() {
        options.set_str("providers", &p)?;
        options.set_bool("strict_providers", true)?;
    }
    for (k, v) in pairs {
        options.set_str(k, v)?;
    }
    duet::Model::open_with(common::fixture(name), &options)
}

fn greedy_goldens(model: &str) -> Vec<(Vec<u32>, Vec<u32>)> {
    let text = std::fs::read_to_string(common::fixture("goldens.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &Value| v.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect::<Vec<_>>();
    let mut out = Vec::new();
    for case in v["cases"].as_array().unwrap() {
        let p = &case["params"];
        if case["model"] != model
            || p.get("num_beams").is_some_and(|b| b.as_u64() != Some(1))
            || p.get("do_sample") == Some(&Value::Bool(true))
        {
            continue;
        }
        for (input, result) in case["input_ids"].as_array().unwrap().iter().zip(case["results"].as_array().unwrap()) {
            out.push((ids(input), ids(&result["sequences"][0]["token_ids"])));
        }
    }
    out
}

/// Logit gap between the fp32 model's best and second-best token under which a position counts as
/// a near tie (the random fixtures have many); the half model must agree everywhere above it.
const NEAR_TIE: f32 = 0.05;

/// Along the fp32 model's greedy outputs: the share of positions where the half model's argmax is
/// the same token, the same among positions that are not near ties, and the largest
/// log-probability difference of the chosen tokens. Also prints the greedy agreement (tokens up
/// to the first divergence) of the half model's own outputs.
fn teacher_forced_closeness(name: &str, half_name: &str) -> (f64, f64, f32, usize, usize) {
    let full = common::shared(name, "merged");
    let half = open(half_name, &[]).unwrap();
    let start = full.config.generation.int("decoder_start_token_id").unwrap() as u32;
    let (mut same, mut total, mut worst) = (0usize, 0usize, 0f32);
    let (mut clear_same, mut clear_total) = (0usize, 0usize);
    for (input, target) in greedy_goldens(name) {
        let a = duet::generate::scoring::teacher_forced_logits(&full, &input, &target, start).unwrap();
        let b = duet::generate::scoring::teacher_forced_logits(&half, &input, &target, start).unwrap();
        for ((ra, rb), &t) in a.iter().zip(&b).zip(&target) {
            let agree = argmax(ra) == argmax(rb);
            same += agree as usize;
            total += 1;
            if top2_gap(ra) >= NEAR_TIE {
                clear_same += agree as usize;
                clear_total += 1;
            }
            worst = worst.max((log_prob(ra, t) - log_prob(rb, t)).abs());
        }
    }
    let mut params = duet::new_generation_settings();
    params.set_str("max_new_tokens", "32").unwrap();
    let (mut agree, mut count) = (0usize, 0usize);
    for (input, _) in greedy_goldens(name) {
        let text = full.tokenizer.decode(&input).unwrap();
        let got = duet::generate(&half, &[text.as_str()], &params, None).unwrap();
        let ids = &got[0].sequences[0].token_ids;
        let reference = duet::generate(&full, &[text.as_str()], &params, None).unwrap();
        let want = &reference[0].sequences[0].token_ids;
        let n = ids.iter().zip(want).take_while(|(a, b)| a == b).count();
        agree += n;
        count += ids.len().max(want.len());
    }
    eprintln!("{half_name}: greedy agreement with {name} {:.4} over {count} tokens", agree as f64 / count.max(1) as f64);
    (same as f64 / total as f64, clear_same as f64 / clear_total.max(1) as f64, worst, total, clear_total)
}

fn top2_gap(v: &[f32]) -> f32 {
    let best = argmax(v);
    let second = v.iter().enumerate().filter(|&(i, _)| i != best).map(|(_, &x)| x).fold(f32::NEG_INFINITY, f32::max);
    v[best] - second
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

fn log_prob(v: &[f32], t: u32) -> f32 {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = v.iter().map(|x| (x - max).exp()).sum();
    v[t as usize] - max - sum.ln()
}

#[test]
fn half_exports_follow_the_float32_goldens() {
    let mut models = vec![("t5-tiny", "t5-tiny-fp16"), ("bart-tiny", "bart-tiny-fp16")];
    if gpu_providers().is_some() {
        models.push(("t5-tiny", "t5-tiny-bf16"));
    }
    for (name, half) in models {
        let (agreement, clear, worst, positions, clear_positions) = teacher_forced_closeness(name, half);
        eprintln!(
            "{half}: teacher-forced argmax agreement {agreement:.4} over {positions} positions \
             ({clear:.4} at the {clear_positions} where fp32's top-2 gap >= {NEAR_TIE}), worst log-prob diff {worst:.4}"
        );
        assert!(positions >= 50 && clear_positions >= 30, "{name}: too few golden positions ({positions}, {clear_positions})");
        assert!(clear == 1.0, "{half} changes the argmax at {:.1}% of positions that are not near ties", (1.0 - clear) * 100.0);
        assert!(agreement >= 0.95, "{half} agrees on {agreement:.4} of positions");
        assert!(worst < 0.1, "{half} log-probabilities differ by up to {worst}");
    }
}

#[test]
fn float16_caches_are_reported_and_identical_through_io_binding_and_an_encoder_run_in_parts() {
    for name in ["t5-tiny-fp16", "bart-tiny-fp16"] {
        let plain = open(name, &[("io_binding", "off")]).unwrap();
        let bound = open(name, &[("io_binding", "on")]).unwrap();
        let in_parts = open(name, &[("io_binding", "off"), ("encoder_batch_tokens", "1")]).unwrap();
        let info = bound.info_json();
        assert_eq!(info["cache_dtype"], "float16");
        assert_eq!(info["layout"], "with_past", "the export's encoder returns the cross-attention cache");
        // bart-tiny-fp16 keeps the export's default of weights in external-data files.
        assert_eq!(info["memory"]["weights_mapped_from_files"], name == "bart-tiny-fp16", "{}", info["memory"]);
        assert_eq!(info["export"]["dtype"], "fp16");
        assert!(info["export"]["token_agreement"].as_f64().is_some(), "the export measured its agreement");
        let mut params = duet::new_generation_settings();
        params.set_str("num_beams", "3").unwrap();
        params.set_str("num_return_sequences", "2").unwrap();
        params.set_str("max_new_tokens", "10").unwrap();
        let inputs = ["Hello world", "a longer input that pads the other row of the batch"];
        let a = duet::generate(&plain, &inputs, &params, None).unwrap();
        for other in [&bound, &in_parts] {
            let b = duet::generate(other, &inputs, &params, None).unwrap();
            for (x, y) in a.iter().zip(&b) {
                for (s, t) in x.sequences.iter().zip(&y.sequences) {
                    assert_eq!(s.token_ids, t.token_ids, "{name}");
                    assert!((s.score - t.score).abs() < 1e-5, "{name}: {} vs {}", s.score, t.score);
                }
            }
        }
    }
}

#[test]
fn bfloat16_on_the_cpu_is_a_clear_error() {
    if gpu_providers().is_some() {
        return; // a GPU runs bfloat16: half_exports_follow_the_float32_goldens covers it there
    }
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(common::fixture("t5-tiny-bf16/duet_export.json")).unwrap()).unwrap();
    assert_eq!(manifest["dtype"], "bf16");
    assert!(manifest["verification"]["skipped"].as_str().unwrap().contains("gpu_check"));
    let e = open("t5-tiny-bf16", &[]).err().expect("ONNX Runtime's CPU provider has no bfloat16 MatMul");
    assert!(matches!(e, duet::Error::ModelInvalid { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("encoder_model.onnx") && msg.contains("implementation"), "{msg}");
}
