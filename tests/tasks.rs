//! summarize, assistant and search against transformers (tests/fixtures/search_goldens.json and
//! the *_summarize_defaults / *_chat_turn cases of goldens.json), and on inputs real users send.

mod common;

use std::sync::Arc;

use duet::tasks::{assistant, embed, index::Index, rerank, summarize, Progress};
use duet::{Error, FinishReason, Flow};
use serde_json::Value;

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(common::fixture(name)).unwrap()).unwrap()
}

fn params(pairs: &[(&str, &str)]) -> duet::Settings {
    let mut s = duet::new_generation_settings();
    for (k, v) in pairs {
        s.set_str(k, v).unwrap();
    }
    s
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect()
}

#[test]
fn embeddings_match_transformers() {
    for case in json("search_goldens.json")["embeddings"].as_array().unwrap() {
        let model = common::shared(case["model"].as_str().unwrap(), "merged");
        let texts = strs(&case["texts"]);
        let got = embed::embed(&model, &texts, &params(&[("batch_size", "2")])).unwrap();
        for (i, (g, w)) in got.iter().zip(case["vectors"].as_array().unwrap()).enumerate() {
            let w: Vec<f32> = w.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            assert_eq!(g.len(), w.len());
            let diff = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-4, "{} text {i}: max diff {diff}", case["model"]);
        }
    }
}

/// Every query position is scored in one decoder run (teacher forcing), in each decoder layout.
#[test]
fn rerank_scores_match_transformers_teacher_forcing() {
    for layout in ["split", "merged", "with_past+share", "with_past+fuse", "with_past+inplace", "with_past+share/bound"] {
        for case in json("search_goldens.json")["rerank"].as_array().unwrap() {
            let model = common::shared(case["model"].as_str().unwrap(), layout);
            let mode = case["mode"].as_str().unwrap();
            let p = params(&[("rerank_mode", mode), ("rerank_template", case["template"].as_str().unwrap()), ("batch_size", "4")]);
            let passages = strs(&case["passages"]);
            let got = rerank::rerank(&model, case["query"].as_str().unwrap(), &passages, &p).unwrap();
            for (i, (g, w)) in got.iter().zip(case["scores"].as_array().unwrap()).enumerate() {
                let w = w.as_f64().unwrap() as f32;
                assert!((g - w).abs() < 1e-4, "{} {layout} {mode} passage {i}: {g} vs {w}", case["model"]);
            }
        }
    }
}

fn golden_case(name: &str) -> Value {
    json("goldens.json")["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
}

#[test]
fn short_summaries_equal_generate_with_the_same_prompt() {
    for (m, prefix) in [("t5-tiny", "summarize: "), ("bart-tiny", "")] {
        let case = golden_case(&format!("{}_summarize_defaults", &m[..m.find('-').unwrap()]));
        let model = common::shared(m, "merged");
        let input = case["inputs"][0].as_str().unwrap();
        let text = input.strip_prefix(prefix).unwrap();
        // Only the length comes from the caller; beam search and n-gram blocking are the defaults.
        let out = summarize::summarize(&model, text, &params(&[("max_new_tokens", "24"), ("min_new_tokens", "4")]), None, None).unwrap();
        let want = case["results"][0]["sequences"][0]["text"].as_str().unwrap();
        assert_eq!(out.text, want.trim(), "{m}");
        assert_eq!((out.chunks, out.levels), (1, 1));
    }
}

#[test]
fn a_chat_turn_equals_generate_on_the_rendered_prompt() {
    for m in ["t5-tiny", "bart-tiny"] {
        let case = golden_case(&format!("{}_chat_turn", &m[..m.find('-').unwrap()]));
        let model = common::shared(m, "merged");
        let chat = assistant::Chat::new(model.clone(), &params(&[("max_new_tokens", "16")])).unwrap();
        assert_eq!(chat.render(&[], "What is the capital of France?"), case["inputs"][0].as_str().unwrap());
        let reply = assistant::assist(model, "What is the capital of France?", &params(&[("max_new_tokens", "16")]), None).unwrap();
        assert_eq!(reply.text, case["results"][0]["sequences"][0]["text"].as_str().unwrap(), "{m}");
    }
}

/// A deterministic document of about `words` words, English with some Chinese sentences.
fn document(words: usize) -> String {
    let vocab = [
        "river", "city", "council", "library", "storm", "museum", "train", "farmer", "music", "budget", "coast", "school", "winter",
        "bridge", "market",
    ];
    let mut state = 7u64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut out = String::new();
    let mut count = 0;
    while count < words {
        if next() % 9 == 0 {
            out.push_str("今天的会议改到下午三点，请大家准时参加。");
            count += 1;
            continue;
        }
        let n = 8 + next() % 12;
        let sentence: Vec<&str> = (0..n).map(|_| vocab[next() % vocab.len()]).collect();
        out.push_str(&format!("The {}. ", sentence.join(" ")));
        count += n + 1;
    }
    out
}

#[test]
fn long_documents_go_through_several_map_reduce_levels_without_losing_chunks() {
    let model = common::shared("t5-tiny", "merged");
    let doc = document(20_000);
    let p = params(&[("summary_length", "short"), ("num_beams", "2"), ("batch_size", "16")]);

    // Every sentence lands in a chunk, chunks are in order and fit the budget.
    let (sentences, chunks) = duet::tasks::chunking::plan_chunks(&model.tokenizer, &doc, 500, 32).unwrap();
    assert!(chunks.len() > 20);
    let mut covered = vec![false; sentences.len()];
    for (i, c) in chunks.iter().enumerate() {
        assert!(c.tokens <= 500);
        covered[c.first..=c.last].iter_mut().for_each(|x| *x = true);
        if i > 0 {
            assert!(c.first <= chunks[i - 1].last + 1 && c.last > chunks[i - 1].last, "chunk {i} skips or goes back");
        }
    }
    assert!(covered.iter().all(|&c| c), "a sentence is in no chunk");

    let mut reports: Vec<Progress> = Vec::new();
    let mut on_progress = |p: Progress| {
        reports.push(p);
        Flow::Continue
    };
    let out = summarize::summarize(&model, &doc, &p, Some(&mut on_progress), None).unwrap();
    assert!(out.levels >= 3, "{} levels", out.levels);
    assert!(!out.text.is_empty());
    // Per level, the chunk counts reported end at done == total, and add up to `summaries`.
    let mut finished: Vec<Progress> = reports.iter().copied().filter(|p| p.done == p.total).collect();
    finished.dedup();
    assert_eq!(finished.len(), out.levels, "{finished:?}");
    assert_eq!(finished.iter().map(|p| p.total).sum::<usize>(), out.summaries);
    assert_eq!(finished[0].total, out.chunks);
    assert!(reports.windows(2).all(|w| w[0].level < w[1].level || (w[0].level == w[1].level && w[0].done <= w[1].done)));
}

#[test]
fn summarizing_can_be_cancelled_from_the_progress_callback() {
    let model = common::shared("t5-tiny", "merged");
    let doc = document(3_000);
    let mut calls = 0;
    let mut stop_soon = |_: Progress| {
        calls += 1;
        if calls >= 3 {
            Flow::Stop
        } else {
            Flow::Continue
        }
    };
    let out = summarize::summarize(&model, &doc, &params(&[]), Some(&mut stop_soon), None).unwrap();
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    assert_eq!(calls, 3, "the callback was called again after cancelling");
}

#[test]
fn fifty_turns_stay_within_the_limit_and_report_dropped_turns() {
    let model = common::shared("bart-tiny", "merged");
    let limit = model.config.max_input_tokens.unwrap();
    let mut chat = assistant::Chat::new(model, &params(&[("max_new_tokens", "8")])).unwrap();
    let mut dropped = 0;
    for turn in 0..50 {
        let reply = chat.send(&format!("Question number {turn}: what happened at the river?"), None).unwrap();
        assert!(reply.prompt_tokens <= limit, "turn {turn}: {} tokens", reply.prompt_tokens);
        dropped += reply.dropped_turns;
    }
    assert!(dropped > 0, "50 turns never exceeded a {limit}-token input");
    assert_eq!(dropped + chat.history().len(), 50);
    chat.reset();
    assert!(chat.history().is_empty());
}

#[test]
fn chat_streams_and_cancels_within_one_step() {
    let model = common::shared("t5-tiny", "merged");
    let mut chat = assistant::Chat::new(model, &params(&[("max_new_tokens", "20"), ("min_new_tokens", "20")])).unwrap();
    let mut pieces = 0;
    let mut cancel_first = |_: usize, _: &str, _: Option<u32>| {
        pieces += 1;
        Flow::Stop
    };
    let reply = chat.send("Tell me a story.", Some(&mut cancel_first)).unwrap();
    assert_eq!(reply.finish_reason, FinishReason::Cancelled);
    assert_eq!(pieces, 1);
    assert!(chat.history().is_empty(), "a cancelled turn is not kept");
}

#[test]
fn blank_inputs_are_refused() {
    let model = common::shared("t5-tiny", "merged");
    let p = params(&[]);
    for text in ["", "   \n\t "] {
        assert!(matches!(summarize::summarize(&model, text, &p, None, None), Err(Error::InvalidArgument(_))));
        assert!(matches!(assistant::assist(model.clone(), text, &p, None), Err(Error::InvalidArgument(_))));
        assert!(matches!(embed::embed(&model, &["ok", text], &p), Err(Error::InvalidArgument(_))));
        assert!(matches!(rerank::rerank(&model, text, &["ok"], &p), Err(Error::InvalidArgument(_))));
        assert!(matches!(rerank::rerank(&model, "ok", &["fine", text], &p), Err(Error::InvalidArgument(_))));
    }
}

fn passages() -> Vec<&'static str> {
    strs(&json("search_goldens.json")["rerank"][0]["passages"]).into_iter().map(|s| &*s.to_string().leak()).collect()
}

#[test]
fn index_search_rerank_save_and_load() {
    let model = common::shared("t5-tiny", "merged");
    let p = params(&[("rerank_mode", "relevance")]);
    let index = Index::for_model(&model).unwrap();
    let texts = passages();
    for (i, t) in texts.iter().enumerate() {
        index.add(&model, 100 + i as i64, t, &p).unwrap();
    }
    assert!(matches!(index.add(&model, 100, "again", &p), Err(Error::InvalidArgument(_))), "duplicate id");
    let query = "Where did scientists discover a new frog?";

    // Embedding order, computed independently.
    let vectors = embed::embed(&model, &texts, &p).unwrap();
    let q = embed::embed(&model, &[query], &p).unwrap().remove(0);
    let mut expected: Vec<(i64, f32)> =
        vectors.iter().enumerate().map(|(i, v)| (100 + i as i64, v.iter().zip(&q).map(|(a, b)| a * b).sum())).collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1));
    let hits = index.search(&model, query, 3, 0, &p).unwrap();
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), expected.iter().take(3).map(|e| e.0).collect::<Vec<_>>());

    // Reranked: the top 4 by embedding, rescored by the decoder.
    let hits = index.search(&model, query, 2, 4, &p).unwrap();
    let top4: Vec<&str> = expected.iter().take(4).map(|e| texts[(e.0 - 100) as usize]).collect();
    let scores = rerank::rerank(&model, query, &top4, &p).unwrap();
    let best = scores.iter().cloned().fold(f32::MIN, f32::max);
    assert_eq!(hits.len(), 2);
    assert!((hits[0].score - best).abs() < 1e-6);

    let path = std::env::temp_dir().join(format!("duet-index-{}.bin", std::process::id()));
    index.save(&path).unwrap();
    let loaded = Index::load(&path).unwrap();
    assert_eq!(loaded.len(), texts.len());
    assert_eq!(loaded.search(&model, query, 3, 0, &p).unwrap(), index.search(&model, query, 3, 0, &p).unwrap());
    index.remove(101).unwrap();
    assert!(matches!(index.remove(101), Err(Error::InvalidArgument(_))));
    assert_eq!(index.len(), texts.len() - 1);

    // Concurrent searches share the index.
    let index = Arc::new(loaded);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (index, model) = (index.clone(), model.clone());
            s.spawn(move || {
                for _ in 0..5 {
                    assert_eq!(index.search(&model, query, 2, 0, &duet::new_generation_settings()).unwrap().len(), 2);
                }
            });
        }
    });

    // Damaged files are refused with a reason, without allocating what they claim.
    let good = std::fs::read(&path).unwrap();
    let check = |bytes: &[u8], words: &str| {
        std::fs::write(&path, bytes).unwrap();
        let e = Index::load(&path).err().expect("load must fail");
        assert!(matches!(e, Error::IndexFile { .. }), "{e}");
        assert!(e.to_string().contains(words), "{e}");
    };
    let mut flipped = good.clone();
    flipped[40] ^= 0x55;
    check(&flipped, "checksum");
    check(&good[..good.len() / 2], "checksum");
    check(b"hello, this is not an index at all, no", "not a duet index");
    let mut version = good.clone();
    version[8] = 9;
    check(&version, "format version 9");
    let mut forged = good[..good.len() - 8].to_vec();
    forged[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    let sum = forged.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    forged.extend_from_slice(&sum.to_le_bytes());
    check(&forged, "more than the file holds");
    let _ = std::fs::remove_file(&path);
}
