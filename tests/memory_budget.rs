//! The memory budget (`memory_budget_mb`): a generation request whose worst case could not fit is
//! refused before it starts, with DUET_STATUS_OVER_BUDGET, in the core, the scheduler, the C ABI,
//! the CLI and the server; a request that fits runs; the scheduler starts queued requests only
//! while their worst cases fit beside the running ones'.

mod common;

use std::ffi::CString;
use std::ptr::null_mut;
use std::sync::Arc;

use duet::ffi::*;
use duet::generate::budget::worst_case_bytes;
use duet::generate::control::Limits;
use duet::{Error, Model, Scheduler, SchedulerOptions};

fn open(budget_mb: i64) -> Arc<Model> {
    common::init_ort();
    let mut options = duet::new_model_options();
    options.set_int("memory_budget_mb", budget_mb).unwrap();
    Arc::new(Model::open_with(common::fixture("t5-tiny"), &options).unwrap())
}

fn settings(pairs: &[(&str, i64)]) -> duet::Settings {
    let mut s = duet::new_generation_settings();
    for (k, v) in pairs {
        s.set_int(k, *v).unwrap();
    }
    s
}

const HUGE: &[(&str, i64)] = &[("num_beams", 16), ("max_new_tokens", 20000), ("min_new_tokens", 20000)];

#[test]
fn a_request_over_the_budget_is_refused_before_it_starts_and_one_within_runs() {
    let model = open(1);
    assert_eq!(model.memory_budget(), 1 << 20);
    assert_eq!(model.info_json()["memory_budget_bytes"], serde_json::json!(1 << 20));
    let err = duet::generate(&model, &["hello", "world"], &settings(HUGE), None).unwrap_err();
    assert!(matches!(err, Error::OverBudget(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains("memory_budget_mb") && message.contains("2 input(s), 32 decoder row(s), 20000 new tokens"), "{message}");
    let small = duet::generate(&model, &["hello"], &settings(&[("max_new_tokens", 8)]), None).unwrap();
    assert_eq!(small[0].sequences[0].token_ids.len(), 8);

    // The scheduler refuses it at submission, and goes on serving.
    let scheduler = Scheduler::new(model.clone(), SchedulerOptions::default());
    let params = duet::resolve_params(&model, &settings(HUGE)).unwrap();
    let encoded = duet::encode_inputs(&model, &["hello"], &params).unwrap();
    assert!(matches!(scheduler.submit(encoded.clone(), &params, Limits::default()), Err(Error::OverBudget(_))));
    let ok = duet::resolve_params(&model, &settings(&[("max_new_tokens", 8)])).unwrap();
    assert_eq!(scheduler.generate(encoded, &ok, Limits::default(), None).unwrap()[0].sequences[0].token_ids.len(), 8);

    // The default budget is half the machine's memory: the same request is taken there.
    common::init_ort();
    let default = Model::open(common::fixture("t5-tiny")).unwrap();
    assert!(default.memory_budget() >= 1 << 28, "{}", default.memory_budget());
    let params = duet::resolve_params(&default, &settings(HUGE)).unwrap();
    let encoded = duet::encode_inputs(&default, &["hello", "world"], &params).unwrap();
    assert!(worst_case_bytes(&default, &encoded, &params).unwrap() < default.memory_budget());
}

#[test]
fn the_scheduler_starts_a_request_only_while_its_worst_case_fits_beside_the_running_ones() {
    // A length whose worst case is over half of a 1 MiB budget: one such request fits, two do not.
    let model = open(1);
    let mut n = 16;
    let params = loop {
        let p = duet::resolve_params(&model, &settings(&[("max_new_tokens", n), ("min_new_tokens", n)])).unwrap();
        let encoded = duet::encode_inputs(&model, &["hello"], &p).unwrap();
        let cost = worst_case_bytes(&model, &encoded, &p).unwrap();
        if cost > (1 << 20) / 2 {
            assert!(cost <= 1 << 20, "no length has a worst case between half the budget and the budget");
            break p;
        }
        n += 16;
    };
    let scheduler = Scheduler::new(model.clone(), SchedulerOptions { max_batch_rows: 32, max_requests: 8 });
    let encoded = duet::encode_inputs(&model, &["hello"], &params).unwrap();
    let tickets: Vec<_> = (0..3).map(|_| scheduler.submit(encoded.clone(), &params, Limits::default()).unwrap()).collect();
    let mut most_running = 0;
    while scheduler.load().running + scheduler.load().waiting > 0 {
        most_running = most_running.max(scheduler.load().running);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for ticket in tickets {
        assert_eq!(ticket.wait(None).unwrap()[0].sequences[0].token_ids.len(), n as usize);
    }
    assert_eq!(most_running, 1, "two requests ran at once over the budget");
    assert_eq!(scheduler.stats().shared_steps, 0);

    // With room for all three, they share decoder runs.
    let roomy = open(64);
    let scheduler = Scheduler::new(roomy.clone(), SchedulerOptions { max_batch_rows: 32, max_requests: 8 });
    let tickets: Vec<_> = (0..3).map(|_| scheduler.submit(encoded.clone(), &params, Limits::default()).unwrap()).collect();
    for ticket in tickets {
        ticket.wait(None).unwrap();
    }
    assert!(scheduler.stats().shared_steps > 0);

    // A queued request waiting for memory can still be cancelled: it ends as any cancelled one.
    let long = params.clone();
    let scheduler = Scheduler::new(model.clone(), SchedulerOptions { max_batch_rows: 32, max_requests: 8 });
    let first = scheduler.submit(encoded.clone(), &long, Limits::default()).unwrap();
    let queued = scheduler.submit(encoded.clone(), &long, Limits::default()).unwrap();
    queued.cancel();
    let out = queued.wait(None).unwrap();
    assert_eq!(out[0].sequences[0].finish_reason, duet::FinishReason::Cancelled);
    assert!(first.wait(None).is_ok());
}

#[test]
fn the_c_abi_and_the_cli_say_over_budget() {
    common::init_ort();
    let dir = CString::new(common::fixture("t5-tiny").to_str().unwrap()).unwrap();
    let key = CString::new("memory_budget_mb").unwrap();
    unsafe {
        let mut options = null_mut();
        assert_eq!(duet_model_options_new(&mut options), duet_status::Ok);
        assert_eq!(duet_model_options_set_int(options, key.as_ptr(), 1), duet_status::Ok);
        let mut model = null_mut();
        assert_eq!(duet_model_open(dir.as_ptr(), options, &mut model), duet_status::Ok);
        let mut params = null_mut();
        assert_eq!(duet_params_new(&mut params), duet_status::Ok);
        for (k, v) in HUGE {
            let k = CString::new(*k).unwrap();
            assert_eq!(duet_params_set_int(params, k.as_ptr(), *v), duet_status::Ok);
        }
        let text = CString::new("hello").unwrap();
        let inputs = [text.as_ptr()];
        let mut result = null_mut();
        let status = duet_generate(model, inputs.as_ptr(), 1, params, None, null_mut(), &mut result);
        assert_eq!(status, duet_status::OverBudget);
        assert!(result.is_null(), "no output on failure");
        let message = std::ffi::CStr::from_ptr(duet_last_error_message()).to_string_lossy().into_owned();
        assert!(message.contains("memory budget"), "{message}");
        assert_eq!(std::ffi::CStr::from_ptr(duet_status_name(23)).to_str().unwrap(), "DUET_STATUS_OVER_BUDGET");
        duet_params_free(params);
        duet_model_free(model);
        duet_model_options_free(options);
    }
    let t5 = common::fixture("t5-tiny");
    let (model, beams, tokens) = (t5.to_str().unwrap(), "num_beams=16", "max_new_tokens=20000");
    let out = common::cli(&["generate", "--model", model, "--option", "memory_budget_mb=1", "--set", beams, "--set", tokens, "hello"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("duet: error: over the memory budget") && stderr.lines().count() == 1, "{stderr}");
}

/// Embed and rerank: a batch whose encoder run (states, attention scores) and, for rerank, its
/// decoding could not fit is refused before it runs; smaller batches of the same texts fit.
#[test]
fn embed_and_rerank_batches_over_the_budget_are_refused() {
    let model = open(32);
    let long = "word ".repeat(400);
    let texts: Vec<&str> = vec![long.as_str(); 32];
    let mut s = duet::new_generation_settings();
    s.set_int("batch_size", 32).unwrap();
    s.set_bool("truncate_input", true).unwrap();
    match duet::tasks::embed::embed(&model, &texts, &s) {
        Err(duet::Error::OverBudget(m)) => assert!(m.contains("embed") && m.contains("32 input(s)"), "{m}"),
        other => panic!("{:?}", other.map(|v| v.len())),
    }
    match duet::tasks::rerank::rerank(&model, "a query about words", &texts, &s) {
        Err(duet::Error::OverBudget(m)) => assert!(m.contains("rerank"), "{m}"),
        other => panic!("{other:?}"),
    }
    s.set_int("batch_size", 1).unwrap();
    assert_eq!(duet::tasks::embed::embed(&model, &texts[..2], &s).unwrap().len(), 2);
    assert_eq!(duet::tasks::rerank::rerank(&model, "a query", &texts[..2], &s).unwrap().len(), 2);
}
