//! Token-exact parity with Hugging Face `transformers` on the committed fixtures
//! (`tests/fixtures/goldens.json`, made by `tools/make_fixtures.py`), for both decoder layouts.

mod common;

use serde_json::Value;

fn goldens() -> Vec<Value> {
    goldens_of("goldens.json")
}

fn goldens_of(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(common::fixture(file)).expect(file);
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn check_case(case: &Value, layout: &str) -> Result<(), String> {
    let name = case["name"].as_str().unwrap();
    let model = common::shared(case["model"].as_str().unwrap(), layout);
    let mut params = duet::new_generation_settings();
    for (k, v) in case["params"].as_object().unwrap() {
        params.set_json(k, v).map_err(|e| format!("{name}: {e}"))?;
    }
    let inputs: Vec<&str> = case["inputs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();

    for (i, (text, ids)) in inputs.iter().zip(case["input_ids"].as_array().unwrap()).enumerate() {
        let ours = model.tokenizer.encode(text, None, false, i).unwrap().ids;
        let theirs: Vec<u32> = ids.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        if ours != theirs {
            return Err(format!("{name}[{layout}] input {i}: tokenization differs: {ours:?} vs {theirs:?}"));
        }
    }

    let out = duet::generate(&model, &inputs, &params, None).map_err(|e| format!("{name}: {e}"))?;
    for (i, (got, want)) in out.iter().zip(case["results"].as_array().unwrap()).enumerate() {
        let want = want["sequences"].as_array().unwrap();
        if got.sequences.len() != want.len() {
            return Err(format!("{name}[{layout}] input {i}: {} sequences, expected {}", got.sequences.len(), want.len()));
        }
        for (j, (g, w)) in got.sequences.iter().zip(want).enumerate() {
            let ids: Vec<u32> = w["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            if g.token_ids != ids {
                return Err(format!("{name}[{layout}] input {i} seq {j}: tokens\n  got  {:?}\n  want {ids:?}", g.token_ids));
            }
            let score = w["score"].as_f64().unwrap() as f32;
            if (g.score - score).abs() > 1e-4 {
                return Err(format!("{name}[{layout}] input {i} seq {j}: score {} vs {score}", g.score));
            }
            if let Some(ts) = w["token_scores"].as_array() {
                for (k, (a, b)) in g.token_scores.iter().zip(ts).enumerate() {
                    let b = b.as_f64().unwrap() as f32;
                    if (a - b).abs() > 1e-4 && !(a.is_infinite() && b < -1e30) {
                        return Err(format!("{name}[{layout}] input {i} seq {j} token {k}: score {a} vs {b}"));
                    }
                }
            }
            let text = w["text"].as_str().unwrap();
            if g.text != text {
                return Err(format!("{name}[{layout}] input {i} seq {j}: text {:?} vs {text:?}", g.text));
            }
        }
    }
    Ok(())
}

fn run_all(layout: &str) {
    let cases = goldens();
    assert!(cases.len() >= 10, "goldens.json has too few cases");
    let failures: Vec<String> = cases.iter().filter_map(|c| check_case(c, layout).err()).collect();
    assert!(failures.is_empty(), "{} of {} golden cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn merged_decoder_matches_transformers() {
    run_all("merged");
}

/// The translation families (NLLB-200 / M2M100, mBART-50, multilingual Marian): encoder and
/// merged decoder only (tools/make_translation_fixtures.py); with multi-token `bad_words_ids`
/// and `begin_suppress_tokens`.
#[test]
fn translation_families_match_transformers() {
    run_families("translation_goldens.json", 3);
}

/// The T5 relatives (tools/make_family_fixtures.py): ByT5 (bytes, tokenized by duet itself),
/// mT5, CodeT5 (byte-level BPE on a T5 graph) and LongT5 (transient-global attention, inputs past
/// two blocks); with decoder prefixes (`decoder_prefix`, `forced_decoder_ids`) as transformers'
/// `decoder_input_ids`.
#[test]
fn t5_relatives_match_transformers() {
    run_families("family_goldens.json", 4);
}

/// Every case of `file`, on the merged decoder (the only graphs those fixtures keep).
fn run_families(file: &str, families: usize) {
    let cases = goldens_of(file);
    let models: std::collections::BTreeSet<&str> = cases.iter().map(|c| c["model"].as_str().unwrap()).collect();
    assert_eq!(models.len(), families, "{file}: {models:?}");
    let failures: Vec<String> = cases.iter().filter_map(|c| check_case(c, "merged").err()).collect();
    assert!(failures.is_empty(), "{file}: {} of {} golden cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn split_decoders_match_transformers() {
    run_all("split");
}

/// The with-past decoder for every step, the cross-attention cache from the encoder graph
/// (tools/export_model.py adds it; the fixtures have it).
#[test]
fn with_past_decoder_alone_matches_transformers() {
    run_all("with_past");
}

/// The IoBinding path a GPU uses (presents bound to a device, row moves by a Gather graph), here
/// bound to host memory.
#[test]
fn io_bound_caches_match_transformers() {
    run_all("merged/bound");
    run_all("split/bound");
    run_all("with_past/bound");
}
