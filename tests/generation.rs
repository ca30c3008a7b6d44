//! Generation behaviour beyond the goldens: sampling, stop strings, streaming, cancellation.

mod common;

use duet::{FinishReason, Flow};

fn settings(pairs: &[(&str, &str)]) -> duet::Settings {
    let mut s = duet::new_generation_settings();
    for (k, v) in pairs {
        s.set_str(k, v).unwrap();
    }
    s
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog near the river bank.";

#[test]
fn sampling_is_reproducible_for_a_seed_and_varies_across_seeds() {
    let model = common::shared("t5-tiny", "merged");
    let run = |seed: u64| {
        let s = settings(&[("do_sample", "true"), ("seed", &seed.to_string()), ("max_new_tokens", "16"), ("temperature", "1.5")]);
        duet::generate(&model, &[TEXT], &s, None).unwrap()[0].sequences[0].token_ids.clone()
    };
    assert_eq!(run(1), run(1));
    let distinct: std::collections::HashSet<_> = (0..6).map(run).collect();
    assert!(distinct.len() > 1, "six seeds gave one output");
}

fn rank_of(logits: &[f32], token: u32) -> usize {
    let t = logits[token as usize];
    logits.iter().filter(|&&s| s > t).count()
}

#[test]
fn sampled_tokens_respect_top_k_and_top_p() {
    let model = common::shared("bart-tiny", "merged");
    let input = model.tokenizer.encode(TEXT, None, false, 0).unwrap().ids;
    let params = duet::generate::resolve_params(&model, &duet::new_generation_settings()).unwrap();
    for seed in 0..8 {
        for (k, p) in [("3", "1.0"), ("0", "0.5")] {
            let s = settings(&[("do_sample", "true"), ("seed", &seed.to_string()), ("max_new_tokens", "12"), ("top_k", k), ("top_p", p)]);
            let out = duet::generate(&model, &[TEXT], &s, None).unwrap();
            let tokens = &out[0].sequences[0].token_ids;
            let logits = duet::generate::scoring::teacher_forced_logits(&model, &input, tokens, params.decoder_start_token_id).unwrap();
            // BART forces BOS first and EOS last; look at the free steps.
            for (step, (row, &tok)) in logits.iter().zip(tokens).enumerate().skip(1) {
                if step + 1 == 12 {
                    continue;
                }
                if k == "3" {
                    assert!(rank_of(row, tok) < 3, "seed {seed} step {step}: token {tok} has rank {}", rank_of(row, tok));
                } else {
                    // The chosen token must lie in the smallest set holding half the mass.
                    let probs = duet::generate::processors::softmax(row);
                    let mass_above: f32 = probs.iter().filter(|&&q| q > probs[tok as usize]).sum();
                    assert!(mass_above < 0.5 + 1e-5, "seed {seed} step {step}: {mass_above} of the mass ranks above");
                }
            }
        }
    }
}

#[test]
fn top_k_one_sampling_is_greedy() {
    let model = common::shared("t5-tiny", "merged");
    let greedy = duet::generate(&model, &[TEXT], &settings(&[("max_new_tokens", "16")]), None).unwrap();
    let sampled =
        duet::generate(&model, &[TEXT], &settings(&[("max_new_tokens", "16"), ("do_sample", "true"), ("top_k", "1")]), None).unwrap();
    assert_eq!(greedy[0].sequences[0].token_ids, sampled[0].sequences[0].token_ids);
}

#[test]
fn stop_strings_end_generation_and_are_never_streamed() {
    for name in ["t5-tiny", "bart-tiny"] {
        let model = common::shared(name, "merged");
        let base = duet::generate(&model, &[TEXT], &settings(&[("max_new_tokens", "24")]), None).unwrap();
        let full = base[0].sequences[0].text.clone();
        let chars: Vec<char> = full.chars().collect();
        assert!(chars.len() >= 8, "{name}: output too short to test: {full:?}");
        let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
        let expected_text = &full[..full.find(&stop).unwrap()];

        let mut streamed = String::new();
        let mut observer = |_: usize, piece: &str, _: Option<u32>| {
            streamed.push_str(piece);
            Flow::Continue
        };
        let s = settings(&[("max_new_tokens", "24"), ("stop_strings", &serde_json::json!([stop]).to_string())]);
        let out = duet::generate(&model, &[TEXT], &s, Some(&mut observer)).unwrap();
        let seq = &out[0].sequences[0];
        assert_eq!(seq.finish_reason, FinishReason::StopString, "{name}");
        assert_eq!(seq.text, expected_text, "{name}");
        assert_eq!(streamed, expected_text, "{name}: streamed text");
    }
}

#[test]
fn streamed_pieces_add_up_to_the_text_for_every_input() {
    // "Hello world" on t5-tiny streams a byte token that a later byte turns into U+FFFD: pieces
    // from byte runs must wait until the run ends.
    for name in ["bart-tiny", "t5-tiny"] {
        let model = common::shared(name, "split");
        let inputs = [TEXT, "你好，世界！今天天气很好。", "emoji 🙂🎉 test", "Hello world"];
        for max in ["12", "20", "40"] {
            let mut pieces: Vec<String> = vec![String::new(); inputs.len()];
            let mut observer = |i: usize, piece: &str, _: Option<u32>| {
                assert!(!piece.is_empty());
                pieces[i].push_str(piece);
                Flow::Continue
            };
            let out = duet::generate(&model, &inputs, &settings(&[("max_new_tokens", max)]), Some(&mut observer)).unwrap();
            for (i, o) in out.iter().enumerate() {
                assert_eq!(pieces[i], o.sequences[0].text, "{name} input {i}, {max} tokens");
            }
        }
    }
}

#[test]
fn cancelling_stops_within_one_step() {
    let model = common::shared("t5-tiny", "merged");
    let mut calls = 0;
    let mut observer = |_: usize, _: &str, _: Option<u32>| {
        calls += 1;
        if calls == 3 {
            Flow::Stop
        } else {
            Flow::Continue
        }
    };
    let out =
        duet::generate(&model, &[TEXT], &settings(&[("max_new_tokens", "30"), ("min_new_tokens", "30")]), Some(&mut observer)).unwrap();
    assert_eq!(out[0].finish_reason(), FinishReason::Cancelled);
    assert_eq!(calls, 3);
    assert!(out[0].sequences[0].token_ids.len() <= 4, "{} tokens after cancelling", out[0].sequences[0].token_ids.len());
}

#[test]
fn generation_config_defaults_apply_and_callers_override_them() {
    // bart-tiny's generation_config.json forces BOS (0) first and EOS (2) at the limit.
    let model = common::shared("bart-tiny", "merged");
    let out = duet::generate(&model, &[TEXT], &settings(&[("max_new_tokens", "5")]), None).unwrap();
    let ids = &out[0].sequences[0].token_ids;
    assert_eq!(ids.first(), Some(&0));
    assert_eq!(ids.last(), Some(&2));
    let out = duet::generate(&model, &[TEXT], &settings(&[("max_new_tokens", "5"), ("forced_bos_token_id", "5")]), None).unwrap();
    assert_eq!(out[0].sequences[0].token_ids.first(), Some(&5));
}

#[test]
fn long_inputs_are_refused_or_truncated_and_reported() {
    let model = common::shared("t5-tiny", "merged");
    let long = TEXT.repeat(20);
    let err = duet::generate(&model, &[&long], &settings(&[("max_input_tokens", "32")]), None).unwrap_err();
    assert!(matches!(err, duet::Error::InputTooLong { limit: 32, .. }), "{err}");
    let out = duet::generate(
        &model,
        &[&long],
        &settings(&[("max_input_tokens", "32"), ("truncate_input", "true"), ("max_new_tokens", "4")]),
        None,
    )
    .unwrap();
    assert!(out[0].input_truncated);
    assert_eq!(out[0].input_tokens, 32);
}

#[test]
fn invalid_parameter_combinations_are_refused() {
    let model = common::shared("t5-tiny", "merged");
    for pairs in [
        vec![("num_beams", "2"), ("num_return_sequences", "3")],
        vec![("do_sample", "true"), ("num_beams", "2")],
        vec![("eos_token_id", "100000")],
    ] {
        let err = duet::generate(&model, &[TEXT], &settings(&pairs), None).unwrap_err();
        assert!(matches!(err, duet::Error::InvalidParam { .. }), "{pairs:?}: {err}");
    }
}

#[test]
fn characters_split_across_tokens_are_streamed_whole() {
    for name in ["bart-tiny", "t5-tiny"] {
        let model = common::shared(name, "merged");
        let text = "你好，世界 🙂🎉 ok";
        let ids = model.tokenizer.encode(text, None, false, 0).unwrap().ids;
        let pieces_tokens = ids.len();
        let stops = duet::text::StopMatcher::default();
        let mut stream = duet::text::TextStream::new();
        let mut pieces = Vec::new();
        for &id in &ids {
            stream.push(&model.tokenizer, id, &stops).unwrap();
            if let Some(p) = stream.take_piece(&stops) {
                assert!(!p.contains('\u{FFFD}'), "{name}: a broken character was streamed: {p:?}");
                pieces.push(p);
            }
        }
        let full = model.tokenizer.decode(&ids).unwrap();
        if let Some(p) = stream.finish(&full) {
            pieces.push(p);
        }
        assert_eq!(pieces.concat(), full, "{name}");
        assert!(pieces.len() < pieces_tokens, "{name}: expected byte tokens to merge");
    }
}

#[test]
fn rows_that_finish_early_leave_the_batch_without_changing_the_others() {
    for name in ["t5-tiny", "bart-tiny"] {
        let model = common::shared(name, "merged");
        let inputs = [TEXT, "你好，世界！今天天气很好。", "emoji 🙂🎉 test", "Hello world", "The library offers free classes."];
        // An EOS that some rows reach early and others not at all: the most common first token.
        let solo_plain: Vec<_> = inputs
            .iter()
            .map(|t| duet::generate(&model, &[t], &settings(&[("max_new_tokens", "20")]), None).unwrap()[0].sequences[0].token_ids.clone())
            .collect();
        let eos = solo_plain
            .iter()
            .flat_map(|ids| ids.iter().skip(2).take(4))
            .copied()
            .max_by_key(|t| solo_plain.iter().filter(|ids| ids.contains(t)).count())
            .unwrap();
        let s = settings(&[("max_new_tokens", "20"), ("eos_token_id", &eos.to_string())]);
        let batch = duet::generate(&model, &inputs, &s, None).unwrap();
        let lengths: Vec<usize> = batch.iter().map(|o| o.sequences[0].token_ids.len()).collect();
        assert!(lengths.iter().any(|&l| l < 20), "{name}: no row finished early: {lengths:?}");
        for (i, t) in inputs.iter().enumerate() {
            let solo = duet::generate(&model, &[t], &s, None).unwrap();
            assert_eq!(batch[i].sequences[0].token_ids, solo[0].sequences[0].token_ids, "{name} input {i}");
            assert!((batch[i].sequences[0].score - solo[0].sequences[0].score).abs() < 1e-4, "{name} input {i}");
        }
    }
}

#[test]
fn beam_search_stops_hypotheses_at_stop_strings() {
    let model = common::shared("bart-tiny", "merged");
    let base = duet::generate(&model, &[TEXT], &settings(&[("max_new_tokens", "16"), ("num_beams", "3")]), None).unwrap();
    let full = base[0].sequences[0].text.clone();
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() >= 8, "output too short to test: {full:?}");
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let s = settings(&[("max_new_tokens", "16"), ("num_beams", "3"), ("stop_strings", &serde_json::json!([stop]).to_string())]);
    let out = duet::generate(&model, &[TEXT], &s, None).unwrap();
    for seq in &out[0].sequences {
        assert!(!seq.text.contains(&stop), "{:?} still holds {stop:?}", seq.text);
    }
    assert!(out[0].sequences.iter().any(|q| q.finish_reason == FinishReason::StopString), "{:?}", out[0].sequences);
}

/// ByT5 (bytes, tokenized by duet): streamed pieces are whole characters and add up to the text,
/// which drops bytes that are not UTF-8 as transformers' `errors="ignore"` does.
#[test]
fn byt5_streams_whole_characters() {
    let model = common::shared("byt5-tiny", "merged");
    let inputs = [TEXT, "你好，世界！", "emoji 🙂🎉 test"];
    let mut pieces: Vec<String> = vec![String::new(); inputs.len()];
    let mut observer = |i: usize, piece: &str, _: Option<u32>| {
        assert!(!piece.is_empty() && !piece.contains('\u{FFFD}'), "{piece:?}");
        pieces[i].push_str(piece);
        Flow::Continue
    };
    let out = duet::generate(&model, &inputs, &settings(&[("max_new_tokens", "40")]), Some(&mut observer)).unwrap();
    for (i, o) in out.iter().enumerate() {
        assert_eq!(pieces[i], o.sequences[0].text, "input {i}");
    }
    let text = "你好 🙂";
    let ids = model.tokenizer.encode_plain(text).unwrap();
    assert_eq!(ids.len(), text.len());
    let (stops, mut stream) = (duet::text::StopMatcher::default(), duet::text::TextStream::new());
    let mut streamed = Vec::new();
    for &id in &ids {
        stream.push(&model.tokenizer, id, &stops).unwrap();
        streamed.extend(stream.take_piece(&stops));
    }
    assert_eq!(streamed, ["你", "好", " ", "🙂"]);
    // a text far over the limit is counted whole
    let long = "é".repeat(10_000);
    let e = model.tokenizer.encode(&long, Some(64), true, 0).unwrap();
    assert_eq!((e.ids.len(), e.original_len, e.truncated), (64, 20_001, true));
    // a character cut short, and a byte that never starts one, are dropped
    let broken: Vec<u32> = [0xe4u32, 0xb8, 0x68, 0xff, 0x69].iter().map(|b| b + 3).collect();
    assert_eq!(model.tokenizer.decode(&broken).unwrap(), "hi");
}

/// A decoder prefix: the output starts with it (scored 0, streamed like generated text), and
/// max_new_tokens counts the tokens after it.
#[test]
fn a_decoder_prefix_starts_every_output() {
    let model = common::shared("t5-tiny", "merged");
    let prefix = model.tokenizer.encode_plain("The museum").unwrap();
    let mut s = settings(&[("max_new_tokens", "6"), ("min_new_tokens", "6"), ("num_beams", "1")]);
    s.set_json("decoder_prefix", &serde_json::json!(prefix)).unwrap();
    let mut streamed = String::new();
    let mut observer = |_: usize, piece: &str, _: Option<u32>| {
        streamed.push_str(piece);
        Flow::Continue
    };
    let out = duet::generate(&model, &[TEXT], &s, Some(&mut observer)).unwrap();
    let seq = &out[0].sequences[0];
    assert_eq!(seq.token_ids.len(), prefix.len() + 6);
    assert_eq!(seq.token_ids[..prefix.len()], prefix[..]);
    assert!(seq.text.starts_with("The museum") && streamed == seq.text, "{seq:?} / {streamed:?}");
    assert_eq!(seq.score, seq.token_scores[prefix.len()..].iter().sum::<f32>());
    // the older spelling gives the same
    let mut old = settings(&[("max_new_tokens", "6"), ("min_new_tokens", "6")]);
    let pairs: Vec<[u32; 2]> = prefix.iter().enumerate().map(|(i, &t)| [i as u32 + 1, t]).collect();
    old.set_json("forced_decoder_ids", &serde_json::json!(pairs)).unwrap();
    assert_eq!(duet::generate(&model, &[TEXT], &old, None).unwrap()[0].sequences[0].token_ids, seq.token_ids);
    for (key, value) in [
        ("forced_decoder_ids", serde_json::json!([[2, 5]])),
        ("forced_decoder_ids", serde_json::json!([[1, 5], [3, 6]])),
        ("decoder_prefix", serde_json::json!([100000])),
    ] {
        let mut s = duet::new_generation_settings();
        s.set_json(key, &value).unwrap();
        let err = duet::generate(&model, &[TEXT], &s, None).unwrap_err();
        assert!(matches!(&err, duet::Error::InvalidParam { key: k, .. } if k == key), "{value}: {err}");
    }
    // a stop string that the prefix itself writes does not stop the generation
    let mut stopped = settings(&[("max_new_tokens", "6"), ("min_new_tokens", "6")]);
    stopped.set_json("decoder_prefix", &serde_json::json!(prefix)).unwrap();
    stopped.set_json("stop_strings", &serde_json::json!(["museum"])).unwrap();
    let out = duet::generate(&model, &[TEXT], &stopped, None).unwrap();
    assert!(out[0].sequences[0].token_ids.len() > prefix.len() && out[0].sequences[0].text.starts_with("The museum"), "{:?}", out[0]);
    // min_new_tokens replaces min_length; a max_length left at 20 gives 20 new tokens
    let p = duet::resolve_params(&model, &settings(&[("min_length", "10"), ("min_new_tokens", "2")])).unwrap();
    assert_eq!(p.min_new_tokens, 2);
    let mut twenty = duet::new_generation_settings();
    twenty.set_json("decoder_prefix", &serde_json::json!([5, 6, 7])).unwrap();
    twenty.set_int("max_length", 20).unwrap();
    assert_eq!(duet::resolve_params(&model, &twenty).unwrap().max_new_tokens, 16, "a caller's max_length counts the prefix");
    let mut both = settings(&[("max_length", "3")]);
    both.set_json("decoder_prefix", &serde_json::json!([5, 6])).unwrap();
    let err = duet::generate(&model, &[TEXT], &both, None).unwrap_err();
    assert!(matches!(&err, duet::Error::InvalidParam { key, .. } if key == "max_length"), "{err}");
    both.set_json("forced_decoder_ids", &serde_json::json!([[1, 5]])).unwrap();
    assert!(duet::generate(&model, &[TEXT], &both, None).is_err());
}
