//! The soak (`make soak`, a few minutes; ignored by a plain `cargo test`): 16 host threads mix
//! every kind of call through the C ABI on a model that another thread keeps replacing (opens a
//! new one, frees the old one while calls are inside it), with random cancels from a second
//! thread and random deadlines. Each call must end OK, CANCELLED, DEADLINE_EXCEEDED, or
//! INVALID_HANDLE for a model freed before it started; nothing else, no crash, no hang; and the
//! process's resident memory must stay flat once warm. `DUET_SOAK_SECONDS` (default 150) is how
//! long it runs.

mod common;

use std::ffi::{c_char, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duet::ffi::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TEXTS: [&str; 4] = [
    "The river flooded the fields after the storm.",
    "今天的会议改到下午三点。",
    "Scientists found a small green frog 🐸 near the river.",
    "The library offers free classes in painting and music. It opens at nine every morning.",
];

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

struct Counts {
    ok: AtomicUsize,
    cancelled: AtomicUsize,
    deadline: AtomicUsize,
    freed: AtomicUsize,
}

/// Params with a random deadline (or none) and the shared cancel token.
unsafe fn random_params(rng: &mut StdRng, token: *const duet_cancel_token, extra: &[(&str, &str)]) -> *mut duet_params {
    let mut p = null_mut();
    assert_eq!(duet_params_new(&mut p), duet_status::Ok);
    for (k, v) in extra {
        let (k, v) = (CString::new(*k).unwrap(), CString::new(*v).unwrap());
        assert_eq!(duet_params_set_string(p, k.as_ptr(), v.as_ptr()), duet_status::Ok);
    }
    if rng.random_bool(0.3) {
        duet_params_set_int(p, c"timeout_ms".as_ptr(), rng.random_range(1..200));
    }
    if rng.random_bool(0.5) {
        duet_params_set_cancel_token(p, token);
    }
    p
}

/// One random call on `model`; its status.
unsafe fn one_call(rng: &mut StdRng, model: *mut duet_model, token: *const duet_cancel_token) -> duet_status {
    let text = CString::new(TEXTS[rng.random_range(0..TEXTS.len())]).unwrap();
    let inputs = [text.as_ptr()];
    match rng.random_range(0..7) {
        0 | 1 => {
            let beams = if rng.random_bool(0.5) { "1" } else { "3" };
            let p = random_params(rng, token, &[("max_new_tokens", "24"), ("num_beams", beams)]);
            let mut result = null_mut();
            let st = duet_generate(model, inputs.as_ptr(), 1, p, None, null_mut(), &mut result);
            duet_result_free(result);
            duet_params_free(p);
            st
        }
        2 => {
            let p = random_params(rng, token, &[("max_new_tokens", "16")]);
            let mut generator = null_mut();
            let mut st = duet_generator_new(model, inputs.as_ptr(), 1, p, &mut generator);
            let mut event = std::mem::zeroed::<duet_event>();
            let stop_after = rng.random_range(0..20);
            let mut n = 0;
            while st == duet_status::Ok {
                st = duet_generator_next(generator, &mut event);
                n += 1;
                if st != duet_status::Ok || event.kind == duet_event_kind::Done {
                    break;
                }
                if n == stop_after {
                    duet_generator_cancel(generator);
                }
            }
            duet_generator_free(generator); // also mid-way: a generator freed before it is done
            duet_params_free(p);
            st
        }
        3 => {
            let p = random_params(rng, token, &[("max_new_tokens", "16")]);
            let mut reply = null_mut();
            let doc = CString::new(TEXTS.join(" ").repeat(3)).unwrap();
            let st = duet_summarize(model, doc.as_ptr(), p, null(), &mut reply);
            duet_reply_free(reply);
            duet_params_free(p);
            st
        }
        4 => {
            let p = random_params(rng, token, &[]);
            let mut vector = vec![0f32; 64];
            let st = duet_embed(model, inputs.as_ptr(), 1, p, vector.as_mut_ptr(), vector.len());
            duet_params_free(p);
            st
        }
        5 => {
            let p = random_params(rng, token, &[]);
            let passages: Vec<CString> = TEXTS.iter().map(|t| CString::new(*t).unwrap()).collect();
            let ptrs: Vec<*const c_char> = passages.iter().map(|c| c.as_ptr()).collect();
            let mut scores = vec![0f64; ptrs.len()];
            let st = duet_rerank(model, text.as_ptr(), ptrs.as_ptr(), ptrs.len(), p, scores.as_mut_ptr());
            duet_params_free(p);
            st
        }
        _ => {
            let p = random_params(rng, token, &[("max_new_tokens", "12")]);
            let mut chat = null_mut();
            let mut st = duet_chat_new(model, p, &mut chat);
            if st == duet_status::Ok {
                let mut reply = null_mut();
                st = duet_chat_send(chat, text.as_ptr(), null(), &mut reply);
                duet_reply_free(reply);
            }
            duet_chat_free(chat);
            duet_params_free(p);
            st
        }
    }
}

#[test]
#[ignore = "minutes long: make soak"]
fn soak_mixed_calls_with_cancels_deadlines_and_frees() {
    common::init_ort();
    let seconds: u64 = std::env::var("DUET_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(150);
    let dir = CString::new(common::fixture("t5-tiny").to_str().unwrap()).unwrap();
    let open = || {
        let mut m = null_mut();
        assert_eq!(unsafe { duet_model_open(dir.as_ptr(), null(), &mut m) }, duet_status::Ok);
        m as usize
    };
    // (the model now, the one freed last): a few calls use a freed one on purpose
    let current = Arc::new(Mutex::new((open(), 0usize)));
    let mut token = null_mut();
    assert_eq!(unsafe { duet_cancel_token_new(&mut token) }, duet_status::Ok);
    let token = token as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts { ok: 0.into(), cancelled: 0.into(), deadline: 0.into(), freed: 0.into() });
    let end = Instant::now() + Duration::from_secs(seconds);

    let workers: Vec<_> = (0..16)
        .map(|i| {
            let (current, stop, counts) = (current.clone(), stop.clone(), counts.clone());
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(1000 + i);
                while !stop.load(Ordering::SeqCst) {
                    let (now, freed) = *current.lock().unwrap();
                    let model = if freed != 0 && rng.random_bool(0.02) { freed } else { now } as *mut duet_model;
                    let st = unsafe { one_call(&mut rng, model, token as *const duet_cancel_token) };
                    let counter = match st {
                        duet_status::Ok => &counts.ok,
                        duet_status::Cancelled => &counts.cancelled,
                        duet_status::DeadlineExceeded => &counts.deadline,
                        duet_status::InvalidHandle => &counts.freed,
                        other => panic!("thread {i}: {}: {}", other.name(), unsafe {
                            std::ffi::CStr::from_ptr(duet_last_error_message()).to_string_lossy()
                        }),
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // the canceller trips and resets the shared token; the replacer swaps the model
    let canceller = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(7);
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(rng.random_range(20..300)));
                unsafe { duet_cancel_token_cancel(token as *const duet_cancel_token) };
                std::thread::sleep(Duration::from_millis(rng.random_range(1..30)));
                unsafe { duet_cancel_token_reset(token as *const duet_cancel_token) };
            }
        })
    };
    let mut samples = Vec::new();
    let mut replaced = 0;
    let started = Instant::now();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(3));
        let fresh = open();
        let old = std::mem::replace(&mut *current.lock().unwrap(), (fresh, 0)).0;
        unsafe { duet_model_free(old as *mut duet_model) }; // while calls are inside it
        current.lock().unwrap().1 = old;
        replaced += 1;
        samples.push((started.elapsed().as_secs(), resident_bytes()));
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().expect("a worker failed");
    }
    canceller.join().unwrap();
    unsafe {
        duet_model_free(current.lock().unwrap().0 as *mut duet_model);
        duet_cancel_token_free(token as *mut duet_cancel_token);
    }
    let c = |a: &AtomicUsize| a.load(Ordering::Relaxed);
    println!(
        "soak: {seconds} s, {replaced} models replaced; calls: {} ok, {} cancelled, {} past their deadline, {} on a freed model",
        c(&counts.ok),
        c(&counts.cancelled),
        c(&counts.deadline),
        c(&counts.freed)
    );
    for (at, rss) in &samples {
        println!("soak: {at:>4} s  RSS {:.1} MiB", *rss as f64 / (1 << 20) as f64);
    }
    assert!(c(&counts.ok) > 100 && c(&counts.cancelled) > 0 && c(&counts.deadline) > 0, "the mix did not happen");
    // Flat once warm: the last third's peak within 10% (+16 MiB) of the middle third's.
    let third = samples.len() / 3;
    assert!(third >= 2, "too short to judge memory: {} samples", samples.len());
    let middle = samples[third..2 * third].iter().map(|s| s.1).max().unwrap();
    let last = samples[2 * third..].iter().map(|s| s.1).max().unwrap();
    assert!(last <= middle + middle / 10 + (16 << 20), "RSS grew from {middle} to {last} bytes");
}
