//! Continuous batching: requests with mixed params, arriving at staggered times, decoded by one
//! scheduler, each get exactly their solo output; cancelling one disturbs no other; the queue
//! is bounded.

mod common;

use std::sync::Arc;
use std::time::Duration;

use duet::generate::control::{CancelToken, Limits};
use duet::{Error, FinishReason, Flow, GenerationOutput, GenerationParams, Model, Scheduler, SchedulerOptions};

struct Case {
    text: String,
    params: GenerationParams,
}

/// Every golden case of `family`, each input on its own, plus sampling with its own seed, a stop
/// string and decoder prefixes (greedy and beam).
fn cases(model: &Model, family: &str) -> Vec<Case> {
    let goldens: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(common::fixture("goldens.json")).unwrap()).unwrap();
    let mut settings: Vec<(String, duet::Settings)> = Vec::new();
    for c in goldens["cases"].as_array().unwrap().iter().filter(|c| c["model"] == family) {
        let mut s = duet::new_generation_settings();
        for (k, v) in c["params"].as_object().unwrap() {
            s.set_json(k, v).unwrap();
        }
        for t in c["inputs"].as_array().unwrap() {
            settings.push((t.as_str().unwrap().to_string(), s.clone()));
        }
    }
    let first = settings[0].0.clone();
    for seed in [1, 2, 3] {
        let mut s = duet::new_generation_settings();
        s.set_bool("do_sample", true).unwrap();
        s.set_int("seed", seed).unwrap();
        s.set_float("top_p", 0.9).unwrap();
        s.set_int("max_new_tokens", 12 + 4 * seed).unwrap();
        settings.push((first.clone(), s));
    }
    let mut stop = duet::new_generation_settings();
    stop.set_int("max_new_tokens", 20).unwrap();
    let solo_text = duet::generate(model, &[first.as_str()], &stop, None).unwrap()[0].sequences[0].text.clone();
    let cut: String = solo_text.chars().skip(3).take(2).collect();
    if !cut.trim().is_empty() {
        stop.set_json("stop_strings", &serde_json::json!([cut])).unwrap();
        settings.push((first.clone(), stop));
    }
    // decoder prefixes: their rows feed the prefix a token a step beside rows that generate
    let prefix = model.tokenizer.encode_plain("The museum").unwrap();
    for beams in [1, 3] {
        let mut s = duet::new_generation_settings();
        s.set_int("num_beams", beams).unwrap();
        s.set_int("max_new_tokens", 10).unwrap();
        s.set_json("decoder_prefix", &serde_json::json!(prefix)).unwrap();
        settings.push((first.clone(), s));
    }
    settings.into_iter().map(|(text, s)| Case { params: duet::resolve_params(model, &s).unwrap(), text }).collect()
}

fn solo(model: &Model, case: &Case) -> Vec<GenerationOutput> {
    let encoded = duet::encode_inputs(model, &[case.text.as_str()], &case.params).unwrap();
    duet::generate_encoded(model, &encoded, &case.params, None).unwrap()
}

fn assert_same(got: &[GenerationOutput], want: &[GenerationOutput], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.sequences.len(), w.sequences.len(), "{what}");
        for (gs, ws) in g.sequences.iter().zip(&w.sequences) {
            assert_eq!(gs.token_ids, ws.token_ids, "{what}");
            assert_eq!(gs.text, ws.text, "{what}");
            assert_eq!(gs.finish_reason, ws.finish_reason, "{what}");
            assert!((gs.score - ws.score).abs() < 1e-3, "{what}: score {} vs {}", gs.score, ws.score);
        }
    }
}

/// `params` generating exactly `n` tokens (long enough that a cancel lands mid-way).
fn exactly(params: &GenerationParams, n: usize) -> GenerationParams {
    GenerationParams { max_new_tokens: n, min_new_tokens: n, ..params.clone() }
}

fn scheduler(model: &Arc<Model>, max_batch_rows: usize, max_requests: usize) -> Scheduler {
    Scheduler::new(model.clone(), SchedulerOptions { max_batch_rows, max_requests })
}

/// Mixed params at staggered arrivals: every request's output is its solo output, and
/// decoder runs were shared (across positions too, when the decoder takes a self-attention mask).
fn mixed_requests_get_their_solo_outputs(family: &str, layout: &str) -> duet::generate::SchedulerStats {
    common::init_ort();
    let model = common::shared(family, layout);
    let cases = cases(&model, family);
    let expected: Vec<_> = cases.iter().map(|c| solo(&model, c)).collect();
    let scheduler = scheduler(&model, 16, 64);
    for round in 0..2u64 {
        std::thread::scope(|scope| {
            for (i, case) in cases.iter().enumerate() {
                let (scheduler, model, expected) = (&scheduler, &model, &expected);
                scope.spawn(move || {
                    // Staggered: some arrive together, others while earlier ones decode.
                    std::thread::sleep(Duration::from_millis((i as u64 * 7 + round * 3) % 23));
                    let encoded = duet::encode_inputs(model, &[case.text.as_str()], &case.params).unwrap();
                    let got = scheduler.generate(encoded, &case.params, Limits::default(), None).unwrap();
                    assert_same(&got, &expected[i], &format!("{family} case {i} round {round}"));
                });
            }
        });
    }
    let stats = scheduler.stats();
    assert!(stats.shared_steps > 0, "no decoder run served two requests: {stats:?}");
    stats
}

#[test]
fn t5_mixed_requests_get_their_solo_outputs() {
    let stats = mixed_requests_get_their_solo_outputs("t5-tiny", "merged");
    assert_eq!(stats.merges, 0, "the merged graph takes no self-attention mask");
    assert!(stats.max_rows <= 16, "{stats:?}");
}

#[test]
fn bart_mixed_requests_get_their_solo_outputs() {
    let stats = mixed_requests_get_their_solo_outputs("bart-tiny", "with_past");
    assert_eq!(stats.merges, 0, "{stats:?}");
}

#[test]
fn rows_at_different_positions_share_runs_and_keep_their_solo_outputs() {
    // T5: relative positions; BART: learned positions, moved back by each row's padding.
    // +share: beam rows read one cross-attention row per input, greedy rows one each, merged together.
    // +fuse: that, with the self-attention (and so the padding mask) inside MultiHeadAttention.
    for (family, layout) in [
        ("t5-tiny", "with_past+mask"),
        ("t5-tiny", "split+mask"),
        ("bart-tiny", "with_past+mask"),
        ("t5-tiny", "with_past+share"),
        ("bart-tiny", "with_past+share"),
        ("t5-tiny", "with_past+fuse"),
        ("bart-tiny", "with_past+fuse"),
        ("t5-tiny", "with_past+inplace"),
        ("bart-tiny", "with_past+inplace"),
    ] {
        let stats = mixed_requests_get_their_solo_outputs(family, layout);
        assert!(stats.merges > 0, "{family} {layout}: no cohorts were merged: {stats:?}");
        assert!(stats.max_rows <= 16, "{family} {layout}: a run past max_batch_rows: {stats:?}");
    }
}

#[test]
fn streamed_pieces_add_up_to_the_text_and_a_cancel_stops_only_its_request() {
    common::init_ort();
    let model = common::shared("t5-tiny", "merged");
    let cases = cases(&model, "t5-tiny");
    let greedy = &cases[0];
    let want = solo(&model, greedy);
    let scheduler = scheduler(&model, 32, 64);
    // Streams on its own thread, and stops after two pieces of exactly 400 (so that the stop
    // lands while the scheduler is still decoding).
    let long = exactly(&greedy.params, 400);
    let long_want = solo(&model, &Case { text: greedy.text.clone(), params: long.clone() });
    std::thread::scope(|scope| {
        let stopper = scope.spawn(|| {
            let encoded = duet::encode_inputs(&model, &[greedy.text.as_str()], &long).unwrap();
            let mut pieces = 0;
            let mut observer = |_: usize, _: &str, _: Option<u32>| {
                pieces += 1;
                if pieces == 2 {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            };
            scheduler.generate(encoded, &long, Limits::default(), Some(&mut observer)).unwrap()
        });
        let others: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let encoded = duet::encode_inputs(&model, &[greedy.text.as_str()], &greedy.params).unwrap();
                    let mut streamed = String::new();
                    let mut observer = |_: usize, piece: &str, _: Option<u32>| {
                        streamed.push_str(piece);
                        Flow::Continue
                    };
                    let out = scheduler.generate(encoded, &greedy.params, Limits::default(), Some(&mut observer)).unwrap();
                    (out, streamed)
                })
            })
            .collect();
        let stopped = stopper.join().unwrap();
        let seq = &stopped[0].sequences[0];
        assert_eq!(seq.finish_reason, FinishReason::Cancelled);
        assert!(long_want[0].sequences[0].token_ids.starts_with(&seq.token_ids), "a cancelled request keeps a prefix of its output");
        assert!(seq.token_ids.len() < 400);
        for other in others {
            let (out, streamed) = other.join().unwrap();
            assert_same(&out, &want, "a request beside a cancelled one");
            assert_eq!(streamed, out[0].sequences[0].text);
        }
    });
}

/// A caller whose observer is slow to say stop: the scheduler has decoded to the end before it
/// hears, and the answer still keeps only the steps the observer saw, marked cancelled, as a
/// call decoding alone gives.
#[test]
fn a_stop_heard_after_the_end_still_cancels_at_the_step_it_was_said() {
    common::init_ort();
    let model = common::shared("t5-tiny", "merged");
    let greedy = &cases(&model, "t5-tiny")[0];
    let params = exactly(&greedy.params, 12);
    let encoded = duet::encode_inputs(&model, &[greedy.text.as_str()], &params).unwrap();
    let slow_stop = |_: usize, _: &str, _: Option<u32>| {
        std::thread::sleep(Duration::from_millis(300));
        Flow::Stop
    };
    let mut observer = slow_stop;
    let alone = duet::generate_encoded(&model, &encoded, &params, Some(&mut observer)).unwrap();
    let mut observer = slow_stop;
    let scheduled = scheduler(&model, 32, 64).generate(encoded, &params, Limits::default(), Some(&mut observer)).unwrap();
    let (a, b) = (&alone[0].sequences[0], &scheduled[0].sequences[0]);
    assert_eq!((b.finish_reason, &b.token_ids, &b.text), (FinishReason::Cancelled, &a.token_ids, &a.text));
    assert!(b.token_ids.len() < 12 && (a.score - b.score).abs() < 1e-5, "{a:?} {b:?}");

    // a stop from on_step comes before that step's text: the step does not count, alone or not
    struct StopAtStep(usize);
    impl duet::Observer for StopAtStep {
        fn on_text(&mut self, _: usize, _: &str, _: Option<u32>) -> Flow {
            Flow::Continue
        }
        fn on_step(&mut self) -> Flow {
            self.0 -= 1;
            std::thread::sleep(Duration::from_millis(if self.0 == 0 { 300 } else { 0 }));
            if self.0 == 0 {
                Flow::Stop
            } else {
                Flow::Continue
            }
        }
    }
    let encoded = duet::encode_inputs(&model, &[greedy.text.as_str()], &params).unwrap();
    let alone = duet::generate_encoded(&model, &encoded, &params, Some(&mut StopAtStep(3))).unwrap();
    let scheduled = scheduler(&model, 32, 64).generate(encoded, &params, Limits::default(), Some(&mut StopAtStep(3))).unwrap();
    let (a, b) = (&alone[0].sequences[0], &scheduled[0].sequences[0]);
    assert_eq!((b.finish_reason, &b.token_ids, &b.text), (FinishReason::Cancelled, &a.token_ids, &a.text));
}

#[test]
fn limits_end_their_request_with_their_error() {
    common::init_ort();
    let model = common::shared("t5-tiny", "merged");
    let case = &cases(&model, "t5-tiny")[0];
    let scheduler = scheduler(&model, 32, 64);
    let encoded = duet::encode_inputs(&model, &[case.text.as_str()], &case.params).unwrap();
    let token = CancelToken::new();
    let limits = Limits::start(&duet::new_generation_settings(), Some(token.clone()));
    let ticket = scheduler.submit(encoded.clone(), &case.params, limits).unwrap();
    token.cancel();
    match ticket.wait(None) {
        Err(Error::Cancelled) => {}
        // The request may finish before the token is seen.
        Ok(out) => assert_same(&out, &solo(&model, case), "finished before the cancel"),
        Err(e) => panic!("{e}"),
    }
    let mut timed = duet::new_generation_settings();
    timed.set_int("timeout_ms", 1).unwrap();
    let long = exactly(&case.params, 2000);
    let err = scheduler.generate(encoded.clone(), &long, Limits::start(&timed, None), None).unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded(1)), "{err}");
    // Still serving after both.
    assert_same(&scheduler.generate(encoded, &case.params, Limits::default(), None).unwrap(), &solo(&model, case), "after errors");
}

#[test]
fn a_full_queue_refuses_with_busy_and_a_bad_request_fails_alone() {
    common::init_ort();
    let model = common::shared("t5-tiny", "merged");
    let case = &cases(&model, "t5-tiny")[0];
    let scheduler = scheduler(&model, 32, 2);
    let encoded = duet::encode_inputs(&model, &[case.text.as_str()], &case.params).unwrap();
    let long = exactly(&case.params, 2000);
    let tickets: Vec<_> = (0..2).map(|_| scheduler.submit(encoded.clone(), &long, Limits::default()).unwrap()).collect();
    let busy = scheduler.submit(encoded.clone(), &case.params, Limits::default()).err().expect("a third request is refused");
    assert!(matches!(busy, Error::Busy(_)), "{busy}");
    for ticket in &tickets {
        ticket.cancel();
    }
    for ticket in tickets {
        let out = ticket.wait(None).unwrap();
        assert_eq!(out[0].sequences[0].finish_reason, FinishReason::Cancelled);
    }
    // Room again; a request whose every token is forbidden fails alone, beside a good one.
    let mut impossible = case.params.clone();
    impossible.suppress_tokens = (0..model.vocab_size() as u32).collect();
    let bad = scheduler.submit(encoded.clone(), &impossible, Limits::default()).unwrap();
    let good = scheduler.submit(encoded, &case.params, Limits::default()).unwrap();
    assert!(matches!(bad.wait(None), Err(Error::InvalidArgument(_))));
    assert_same(&good.wait(None).unwrap(), &solo(&model, case), "beside a failing request");
}

/// A host's own sink (an async server's channel): it hears every step and the outputs; once it
/// stops listening, the request leaves at the next step boundary and its place is free.
#[test]
fn a_sink_hears_its_request_and_a_deaf_sink_cancels_it() {
    use duet::generate::Message;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    common::init_ort();
    let model = common::shared("t5-tiny", "merged");
    let case = &cases(&model, "t5-tiny")[0];
    let scheduler = scheduler(&model, 32, 1);
    let encoded = duet::encode_inputs(&model, &[case.text.as_str()], &case.params).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let sink = move |m: Message| tx.lock().unwrap().send(m).is_ok();
    scheduler.submit_to(encoded.clone(), &case.params, Limits::default(), Arc::new(sink)).unwrap();
    let mut text = String::new();
    let outputs = loop {
        match rx.recv_timeout(Duration::from_secs(60)).unwrap() {
            Message::Step(events) => text.extend(events.into_iter().filter_map(|e| match e {
                duet::Event::Text { piece, .. } => Some(piece),
                _ => None,
            })),
            Message::Done(result) => break result.unwrap(),
        }
    };
    assert_same(&outputs, &solo(&model, case), "through a sink");
    assert_eq!(text, outputs[0].sequences[0].text);

    let heard = Arc::new(AtomicUsize::new(0));
    let counter = heard.clone();
    let deaf = move |_: Message| counter.fetch_add(1, Ordering::SeqCst) < 3;
    scheduler.submit_to(encoded.clone(), &exactly(&case.params, 5000), Limits::default(), Arc::new(deaf)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while scheduler.load().running + scheduler.load().waiting > 0 {
        assert!(std::time::Instant::now() < deadline, "a request nobody listens to still runs");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The fourth message went unheard; the request left at the boundary after it (a last
    // message, its end, may follow).
    assert!(heard.load(Ordering::SeqCst) <= 5, "{} messages", heard.load(Ordering::SeqCst));
    assert!(scheduler.stats().steps < 100);
    assert_same(
        &scheduler.generate(encoded, &case.params, Limits::default(), None).unwrap(),
        &solo(&model, case),
        "its place is free again",
    );
}
