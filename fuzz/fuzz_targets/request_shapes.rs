//! Request shapes: any generation settings (every key of the table, with values of every kind,
//! in range or not), several inputs of any text, beams and returns, decoder prefixes, stop strings,
//! on the fixtures of each tokenizer family, through generate, the scheduler and translate.
//! Each call ends in outputs or an error, never a panic; the memory budget keeps absurd requests
//! from running.
#![no_main]
use std::path::{Path, PathBuf};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use once_cell::sync::Lazy;
use serde_json::{json, Value};

static MODELS: Lazy<Vec<std::sync::Arc<duet::Model>>> = Lazy::new(|| {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ort = std::env::var("DUET_ORT_LIBRARY").map(PathBuf::from).unwrap_or_else(|_| root.join(".ort/lib/libonnxruntime.so.1.31.1"));
    duet::runtime::init_runtime(Some(&ort)).unwrap();
    let mut options = duet::new_model_options();
    options.set_int("memory_budget_mb", 256).unwrap();
    ["t5-tiny", "bart-tiny", "byt5-tiny", "nllb-tiny", "marian-tiny"]
        .iter()
        .map(|m| std::sync::Arc::new(duet::Model::open_with(root.join("tests/fixtures").join(m), &options).unwrap()))
        .collect()
});

fn value(u: &mut Unstructured) -> Result<Value> {
    Ok(match u.int_in_range(0..=7)? {
        0 => json!(u.int_in_range(-3i64..=40)?),
        1 => json!(u.arbitrary::<i64>()?),
        2 => json!(u.arbitrary::<f64>()?),
        3 => json!(u.arbitrary::<bool>()?),
        4 => json!(u.arbitrary::<String>()?),
        5 => json!([u.int_in_range(0i64..=900)?, u.int_in_range(0i64..=900)?]),
        6 => json!([[u.int_in_range(0i64..=900)?, u.int_in_range(0i64..=900)?], [u.int_in_range(0i64..=900)?]]),
        _ => json!(["\n", u.arbitrary::<String>()?]),
    })
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let model = &MODELS[u.int_in_range(0..=MODELS.len() - 1)?];
    let mut s = duet::new_generation_settings();
    for _ in 0..u.int_in_range(0..=6)? {
        let spec = &duet::model::GENERATION_SPECS[u.int_in_range(0..=duet::model::GENERATION_SPECS.len() - 1)?];
        let _ = s.set_json(spec.key, &value(&mut u)?);
    }
    // keep the work small: a short generation (what the caller may set otherwise is fuzzed above)
    let _ = s.set_int("max_new_tokens", u.int_in_range(1..=6)?);
    let inputs: Vec<String> = (0..u.int_in_range(1..=4)?).map(|_| u.arbitrary::<String>()).collect::<Result<_>>()?;
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    match u.int_in_range(0..=2)? {
        0 => {
            let _ = duet::generate(model, &refs, &s, None);
        }
        1 => {
            let scheduler = duet::Scheduler::new(model.clone(), Default::default());
            if let Ok(params) = duet::resolve_params(model, &s) {
                if let Ok(encoded) = duet::encode_inputs(model, &refs, &params) {
                    let _ = scheduler.generate(encoded, &params, Default::default(), None);
                }
            }
        }
        _ => {
            let to = ["fra_Latn", "fr", "deu", "zz", ""][u.int_in_range(0..=4)?];
            let _ = duet::tasks::translate::translate(&**model, &inputs.join("\n"), (Some(to), None), &s, None, None);
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
