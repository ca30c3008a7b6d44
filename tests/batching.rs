//! Dynamic batching: concurrent calls share runs and still get exactly their own outputs.

mod common;

use std::sync::Arc;

#[test]
fn concurrent_calls_share_batches_and_get_their_own_outputs() {
    common::init_ort();
    let mut options = duet::new_model_options();
    options.set_int("batch_window_ms", 200).unwrap();
    options.set_int("max_batch", 8).unwrap();
    let batched = Arc::new(duet::Model::open_with(common::fixture("t5-tiny"), &options).unwrap());
    let solo = common::shared("t5-tiny", "merged");
    let goldens: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(common::fixture("goldens.json")).unwrap()).unwrap();
    // Inputs and params of the T5 golden cases (their top-2 margins exceed 1e-3).
    let cases: Vec<(String, duet::Settings)> = goldens["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["model"] == "t5-tiny")
        .flat_map(|c| {
            let mut s = duet::new_generation_settings();
            for (k, v) in c["params"].as_object().unwrap() {
                s.set_json(k, v).unwrap();
            }
            c["inputs"].as_array().unwrap().iter().map(move |t| (t.as_str().unwrap().to_string(), s.clone())).collect::<Vec<_>>()
        })
        .collect();
    let expected: Vec<_> = cases.iter().map(|(t, s)| duet::generate(&solo, &[t.as_str()], s, None).unwrap()).collect();
    for _ in 0..2 {
        std::thread::scope(|scope| {
            for (i, (text, settings)) in cases.iter().enumerate() {
                let (model, expected) = (batched.clone(), &expected);
                scope.spawn(move || {
                    let out = duet::generate(&model, &[text.as_str()], settings, None).unwrap();
                    assert_eq!(
                        out[0].sequences.iter().map(|s| &s.token_ids).collect::<Vec<_>>(),
                        expected[i][0].sequences.iter().map(|s| &s.token_ids).collect::<Vec<_>>(),
                        "case {i}"
                    );
                });
            }
        });
    }
    assert!(batched.batcher().unwrap().shared_runs() > 0, "no run was shared");
}
