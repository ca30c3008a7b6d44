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

/// The with-past decoder as tools/export_model.py leaves it: a self-attention mask, and the beams
/// of an input reading one cross-attention cache row (tools/share_cross_cache.py); plain and bound.
#[test]
fn beams_sharing_the_cross_attention_cache_match_transformers() {
    run_all("with_past+share");
    run_all("with_past+share/bound");
}

/// The with-past decoder with its self-attention fused into MultiHeadAttention (tools/fuse_attention.py,
/// export_model.py --fuse): the same tokens, plain and bound.
#[test]
fn fused_self_attention_matches_transformers() {
    run_all("with_past+fuse");
    run_all("with_past+fuse/bound");
}

/// The fused decoder appending its self-attention cache in place (tools/in_place_cache.py,
/// export_model.py --in-place-cache: GroupQueryAttention writing into buffers duet binds as both
/// past and present, grown as they fill): the same tokens, plain and bound.
#[test]
fn in_place_cache_matches_transformers() {
    run_all("with_past+inplace");
    run_all("with_past+inplace/bound");
}

/// The encoder run one input at a time (`encoder_batch_tokens=1`), each part copied into one
/// output: the batched cases decode as one run over the whole batch does.
#[test]
fn encoder_run_in_parts_matches_transformers() {
    assert_eq!(common::shared("t5-tiny", "merged+parts").encoder.rows_per_run(3, 8), 1);
    run_all("merged+parts");
    run_all("with_past+inplace+parts");
}

/// The beams of an input keep one cross-attention row between them while they decode, and rows
/// of different sharing stack at the sharing they have in common; the fixtures' own with-past
/// decoder keeps a row per beam.
#[test]
fn beams_read_one_cross_attention_row_per_input() {
    let shared = common::shared("t5-tiny", "with_past+share");
    assert_eq!(shared.info_json()["beams_share_cross_attention_cache"], true);
    assert_eq!(common::shared("t5-tiny", "with_past").info_json()["beams_share_cross_attention_cache"], false);
    let decoder = shared.decoder().unwrap();
    let encoded = shared.encoder.run(&[vec![5, 6, 7, 1], vec![8, 9, 1]], 0).unwrap();
    let beams = decoder.select_encoder_rows(&encoded, &[0, 0, 0, 0, 1, 1, 1, 1]).unwrap();
    assert_eq!((beams.rows, beams.cross_share), (8, 4));
    // Input 0's beams finish: input 1's four rows still share.
    assert_eq!(decoder.select_encoder_rows(&beams, &[4, 5, 6, 7]).unwrap().cross_share, 4);
    // Uneven groups read a row each.
    assert_eq!(decoder.select_encoder_rows(&beams, &[0, 0, 4]).unwrap().cross_share, 1);
    let pairs = decoder.select_encoder_rows(&encoded, &[0, 0, 1, 1]).unwrap();
    let stacked = duet::model::EncoderOutput::concat(&[&beams, &pairs]).unwrap();
    assert_eq!((stacked.rows, stacked.cross_share), (12, 2));
    let tokens = vec![0u32; stacked.rows];
    let mut cache = duet::model::KvCache::default();
    let logits = decoder.step(&tokens, &stacked, &mut cache).unwrap();
    // Every row of an input sees the same encoder output: the same first-step logits.
    for (a, b) in [(0, 3), (4, 7), (8, 9), (10, 11), (0, 8), (4, 10)] {
        assert_eq!(logits.row(a), logits.row(b), "rows {a} and {b}");
    }
    let unshared = common::shared("t5-tiny", "with_past");
    let alone = unshared.encoder.run(&[vec![5, 6, 7, 1]], 0).unwrap();
    let want = unshared.decoder().unwrap().step(&[0], &alone, &mut duet::model::KvCache::default()).unwrap();
    assert_eq!(logits.row(0), want.row(0), "sharing changes no logit");
}

/// The IoBinding path a GPU uses (presents bound to a device, row moves by a Gather graph), here
/// bound to host memory.
#[test]
fn io_bound_caches_match_transformers() {
    run_all("merged/bound");
    run_all("split/bound");
    run_all("with_past/bound");
}

/// Past the first buffer's 32 positions the in-place cache grows (copied into doubled buffers,
/// beams reordered within them): 100 new tokens (bart-tiny has 128 positions), greedy and beam search, equal the fused graph's.
#[test]
fn in_place_cache_grows_and_keeps_the_fused_graphs_tokens() {
    for family in ["t5-tiny", "bart-tiny"] {
        let fused = common::shared(family, "with_past+fuse");
        let in_place = common::shared(family, "with_past+inplace");
        for beams in [1, 4] {
            let mut params = duet::new_generation_settings();
            for (k, v) in [("max_new_tokens", 100), ("min_new_tokens", 100), ("num_beams", beams)] {
                params.set_json(k, &serde_json::json!(v)).unwrap();
            }
            let inputs = ["a short input", "and a somewhat longer second input, of more tokens"];
            let want = duet::generate(&fused, &inputs, &params, None).unwrap();
            let got = duet::generate(&in_place, &inputs, &params, None).unwrap();
            for (g, w) in got.iter().zip(&want) {
                let (g, w) = (&g.sequences[0], &w.sequences[0]);
                assert_eq!(g.token_ids.len(), 100, "{family} beams {beams}");
                assert_eq!(g.token_ids, w.token_ids, "{family} beams {beams}");
                assert!((g.score - w.score).abs() < 1e-3, "{family} beams {beams}: {} vs {}", g.score, w.score);
            }
        }
    }
}
