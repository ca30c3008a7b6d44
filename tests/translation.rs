//! translate: each family's way of naming languages, token-exact with the Hugging Face recipe
//! (`translation_goldens.json`, tools/make_translation_fixtures.py), long documents, and the
//! errors for bad codes and models that do not translate.

mod common;

use duet::tasks::translate::{direction, encode_chunk, translate};
use duet::{Error, FinishReason, Flow};
use serde_json::Value;

fn translations() -> Vec<Value> {
    let text = std::fs::read_to_string(common::fixture("translation_goldens.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["translations"].as_array().unwrap().clone()
}

fn settings(params: &Value) -> duet::Settings {
    let mut s = duet::new_generation_settings();
    for (k, v) in params.as_object().unwrap() {
        s.set_json(k, v).unwrap();
    }
    s
}

#[test]
fn every_family_translates_as_the_hugging_face_recipe_does() {
    let cases = translations();
    assert_eq!(cases.len(), 9);
    for c in &cases {
        let model = common::shared(c["model"].as_str().unwrap(), "merged");
        let (text, to, from) = (c["text"].as_str().unwrap(), c["to"].as_str(), c["from"].as_str());
        let d = direction(&model, to, from).unwrap();
        let ids = encode_chunk(&model, &d, text, None, 0).unwrap().ids;
        let want: Vec<u32> = serde_json::from_value(c["input_ids"].clone()).unwrap();
        assert_eq!(ids, want, "{c}: encoder input");
        let params = settings(&c["params"]);
        let out = translate(&*model, text, (to, from), &params, None, None).unwrap();
        assert_eq!(out.text, c["translation"].as_str().unwrap(), "{c}");
        assert_eq!((out.chunks, out.target_language.as_deref()), (1, Some(to.unwrap())), "{c}");
        // the scheduler gives the same
        let scheduled = duet::Scheduler::new(model.clone(), Default::default());
        assert_eq!(translate(&scheduled, text, (to, from), &params, None, None).unwrap(), out);
    }
}

#[test]
fn codes_resolve_from_other_spellings_and_unknown_ones_list_the_model_s() {
    let nllb = common::shared("nllb-tiny", "merged");
    let fra = direction(&nllb, Some("fra_Latn"), Some("eng_Latn")).unwrap();
    assert_eq!(direction(&nllb, Some("fr"), Some("en")).unwrap(), fra);
    assert_eq!(direction(&nllb, Some("fre"), Some("eng")).unwrap(), fra);
    assert_eq!(fra.forced_first_token, nllb.tokenizer.token_to_id("fra_Latn"));
    // without `from` the tokenizer's own src_lang stays
    assert_eq!(direction(&nllb, Some("fr"), None).unwrap().source_language.as_deref(), Some("eng_Latn"));
    match direction(&nllb, Some("xx_Latn"), None) {
        Err(Error::UnknownLanguage { code, reason }) => {
            assert_eq!(code, "xx_Latn");
            assert!(reason.contains("eng_Latn") && reason.contains("zho_Hant") && reason.matches(", ").count() > 150, "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(direction(&nllb, Some("zh"), None), Err(Error::UnknownLanguage { reason, .. }) if reason.contains("ambiguous")));
    assert!(matches!(direction(&nllb, None, None), Err(Error::InvalidArgument(m)) if m.contains("name the target")));

    let mbart = common::shared("mbart50-tiny", "merged");
    assert_eq!(direction(&mbart, Some("fr"), Some("zh")).unwrap().target_language.as_deref(), Some("fr_XX"));
    let marian = common::shared("marian-tiny", "merged");
    let d = direction(&marian, Some("pt"), None).unwrap();
    assert_eq!((d.text_prefix.as_str(), d.source_language), (">>por<< ", None));
    assert!(matches!(direction(&marian, Some("ru"), None), Err(Error::UnknownLanguage { .. })));
    let info = nllb.info_json();
    assert_eq!(info["translation"]["languages"].as_array().unwrap().len(), 202, "{}", info["translation"]);
}

#[test]
fn models_that_do_not_translate_say_so() {
    let bart = common::shared("bart-tiny", "merged");
    let err = translate(&*bart, "Hello.", (Some("fr"), None), &duet::new_generation_settings(), None, None).unwrap_err();
    assert!(matches!(err, Error::Unsupported(ref m) if m.contains("does not translate")), "{err}");
    // T5's task prefixes: en to de is the fixture's one pair
    let t5 = common::shared("t5-tiny", "merged");
    let d = direction(&t5, Some("de"), None).unwrap();
    assert_eq!(d.text_prefix, "translate English to German: ");
    assert!(matches!(direction(&t5, Some("fr"), None), Err(Error::UnknownLanguage { .. })));
    let e = encode_chunk(&t5, &d, "The house is wonderful.", None, 0).unwrap();
    assert_eq!(e.ids, t5.tokenizer.encode("translate English to German: The house is wonderful.", None, false, 0).unwrap().ids);
}

/// A one-pair Marian model whose tokenizer config names the pair: the marian fixture without its
/// language codes.
fn one_pair_marian() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("duet-marian-pair-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(common::fixture("marian-tiny")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let path = dir.join("tokenizer.json");
    let mut tok: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for piece in tok["model"]["vocab"].as_array_mut().unwrap() {
        let p = piece[0].as_str().unwrap();
        if p.starts_with(">>") {
            piece[0] = Value::String(p.trim_start_matches(">>").trim_end_matches("<<").to_string() + "▁code");
        }
    }
    tok["added_tokens"].as_array_mut().unwrap().retain(|t| !t["content"].as_str().unwrap().starts_with(">>"));
    std::fs::write(&path, tok.to_string()).unwrap();
    let path = dir.join("tokenizer_config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["source_lang"] = "en".into();
    cfg["target_lang"] = "de".into();
    cfg["added_tokens_decoder"] = serde_json::json!({});
    std::fs::write(&path, cfg.to_string()).unwrap();
    dir
}

#[test]
fn a_one_pair_model_refuses_another_pair() {
    common::init_ort();
    let dir = one_pair_marian();
    let model = duet::Model::open(&dir).unwrap();
    let params = duet::new_generation_settings();
    let out = translate(&model, "The house is wonderful.", (Some("deu"), Some("en")), &params, None, None).unwrap();
    assert_eq!((out.source_language.as_deref(), out.target_language.as_deref()), (Some("en"), Some("de")));
    let plain = translate(&model, "The house is wonderful.", (None, None), &params, None, None).unwrap();
    assert_eq!(plain.text, out.text);
    let err = translate(&model, "The house is wonderful.", (Some("fr"), None), &params, None, None).unwrap_err();
    assert!(matches!(err, Error::UnknownLanguage { ref reason, .. } if reason.contains("en to de")), "{err}");
    assert!(matches!(translate(&model, "x", (Some("de"), Some("zh")), &params, None, None), Err(Error::UnknownLanguage { .. })));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn long_documents_are_translated_sentence_by_sentence_in_order() {
    let model = common::shared("nllb-tiny", "merged");
    let mut params = duet::new_generation_settings();
    params.set_int("max_new_tokens", 12).unwrap();
    params.set_int("chunk_tokens", 40).unwrap();
    params.set_int("batch_size", 2).unwrap();
    let sentences = [
        "The museum will reopen next month after a long renovation.",
        "Heavy rain is expected across the northern region this weekend.",
        "A tourist borrowed a red bicycle.",
    ];
    let doc = format!("{} {}\n\n{}", sentences[0], sentences[1], sentences[2]);
    let mut seen = Vec::new();
    let mut progress = |p: duet::tasks::Progress| {
        seen.push((p.done, p.total));
        Flow::Continue
    };
    let out = translate(&*model, &doc, (Some("fra_Latn"), None), &params, Some(&mut progress), None).unwrap();
    assert_eq!(out.chunks, 3);
    let alone: Vec<String> =
        sentences.iter().map(|s| translate(&*model, s, (Some("fra_Latn"), None), &params, None, None).unwrap().text).collect();
    assert_eq!(out.text, format!("{} {}\n\n{}", alone[0], alone[1], alone[2]));
    assert_eq!(seen.last(), Some(&(3, 3)));
    assert!(seen.contains(&(2, 3)), "{seen:?}");
    assert_eq!(out.finish_reason, FinishReason::Length, "12 new tokens end every translation of a random model");

    // cancelled after the first batch: the chunks done, in order
    let mut stop = |p: duet::tasks::Progress| if p.done >= 2 { Flow::Stop } else { Flow::Continue };
    let part = translate(&*model, &doc, (Some("fra_Latn"), None), &params, Some(&mut stop), None).unwrap();
    assert_eq!((part.finish_reason, part.text.as_str()), (FinishReason::Cancelled, format!("{} {}", alone[0], alone[1]).as_str()));
}

#[test]
fn a_cancel_inside_a_batch_keeps_a_prefix_and_the_source_token_takes_its_place_once() {
    let model = common::shared("nllb-tiny", "merged");
    let mut params = duet::new_generation_settings();
    params.set_int("max_new_tokens", 12).unwrap();
    params.set_int("chunk_tokens", 40).unwrap();
    params.set_int("batch_size", 2).unwrap();
    let doc = "The museum will reopen next month after a long renovation. Heavy rain is expected across the northern region this weekend.";
    let full = translate(&*model, doc, (Some("fr"), None), &params, None, None).unwrap();
    let mut calls = 0;
    let mut stop_mid_batch = |_: duet::tasks::Progress| {
        calls += 1;
        if calls == 4 {
            Flow::Stop
        } else {
            Flow::Continue
        }
    };
    let part = translate(&*model, doc, (Some("fr"), None), &params, Some(&mut stop_mid_batch), None).unwrap();
    assert_eq!(part.finish_reason, FinishReason::Cancelled);
    assert!(!part.text.is_empty() && full.text.starts_with(&part.text) && part.text.len() < full.text.len(), "{part:?} / {full:?}");

    // a template that put the code at the other end: one source token, in the configured place
    let mut d = direction(&model, Some("fr"), Some("deu_Latn")).unwrap();
    let deu = model.tokenizer.token_to_id("deu_Latn").unwrap();
    let first = encode_chunk(&model, &d, "Hello.", None, 0).unwrap().ids;
    assert_eq!(first[0], deu);
    assert_eq!(first.iter().filter(|t| d.code_ids.contains(t)).count(), 1);
    d.source_token = Some((deu, duet::model::languages::SourceTokenPlace::Last));
    let last = encode_chunk(&model, &d, "Hello.", None, 0).unwrap().ids;
    assert_eq!(last, [&first[1..], &[deu][..]].concat());
}

#[test]
fn translate_owns_the_language_tokens_and_returns_one_text() {
    let model = common::shared("nllb-tiny", "merged");
    let mut params = duet::new_generation_settings();
    params.set_int("forced_bos_token_id", 5).unwrap();
    assert!(
        matches!(translate(&*model, "Hi.", (Some("fr"), None), &params, None, None), Err(Error::InvalidParam { key, .. }) if key == "forced_bos_token_id")
    );
    let mut params = duet::new_generation_settings();
    params.set_int("num_beams", 2).unwrap();
    params.set_int("num_return_sequences", 2).unwrap();
    assert!(
        matches!(translate(&*model, "Hi.", (Some("fr"), None), &params, None, None), Err(Error::InvalidParam { key, .. }) if key == "num_return_sequences")
    );
    assert!(matches!(
        translate(&*model, "  ", (Some("fr"), None), &duet::new_generation_settings(), None, None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        translate(&*model, "Hi.", (Some(" "), None), &duet::new_generation_settings(), None, None),
        Err(Error::InvalidArgument(_))
    ));
}

/// A decoder prefix follows the target language's token: the translation is what generate gives
/// with the decoder input `[start, fra_Latn, prefix...]` (transformers' decoder_input_ids), and it
/// starts with the prefix. A text of several chunks refuses a prefix (it would start each chunk).
#[test]
fn a_decoder_prefix_starts_the_translation_after_the_language_token() {
    let model = common::shared("nllb-tiny", "merged");
    let text = "The museum will reopen next month.";
    let word = model.tokenizer.encode_plain("Le").unwrap();
    let mut params = duet::new_generation_settings();
    params.set_json("decoder_prefix", &serde_json::json!(word)).unwrap();
    params.set_int("max_new_tokens", 10).unwrap();
    params.set_int("no_repeat_ngram_size", 2).unwrap();
    let out = translate(&*model, text, (Some("fra_Latn"), Some("eng_Latn")), &params, None, None).unwrap();
    assert!(out.text.starts_with("Le"), "{out:?}");

    let fra = model.tokenizer.token_to_id("fra_Latn").unwrap();
    let d = direction(&model, Some("fra_Latn"), Some("eng_Latn")).unwrap();
    let input = encode_chunk(&model, &d, text, None, 0).unwrap();
    let mut direct = duet::new_generation_settings();
    direct.set_json("decoder_prefix", &serde_json::json!([vec![fra], word.clone()].concat())).unwrap();
    direct.set_int("forced_bos_token_id", i64::from(fra)).unwrap();
    direct.set_int("max_new_tokens", 10).unwrap();
    direct.set_int("no_repeat_ngram_size", 2).unwrap();
    let want = duet::generate_encoded(&model, &[input], &duet::resolve_params(&model, &direct).unwrap(), None).unwrap();
    assert_eq!(out.text, want[0].sequences[0].text);
    assert_eq!(want[0].sequences[0].token_ids[0], fra);
    assert_eq!(want[0].sequences[0].token_scores[..1 + word.len()], vec![0.0; 1 + word.len()][..]);

    let two_lines = format!("{text}\n{text}");
    match translate(&*model, &two_lines, (Some("fra_Latn"), None), &params, None, None) {
        Err(Error::InvalidParam { key, reason }) => assert!(key == "decoder_prefix" && reason.contains("2 chunks"), "{reason}"),
        other => panic!("{other:?}"),
    }
}
