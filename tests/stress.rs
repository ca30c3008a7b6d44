//! 16 host threads share one model through the C ABI, mixing every call, while other threads
//! cancel some of them: no error but the expected cancellations, no deadlock, and every output
//! equal to the single-threaded one. `DUET_STRESS_ROUNDS` (default 2; `make stress` sets more)
//! is how many rounds of the mix each thread runs.

mod common;

use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;

use duet::ffi::*;

#[derive(Clone, Copy)]
struct Shared {
    model: usize,
    index: usize,
}

const TEXTS: [&str; 4] = [
    "The river flooded the fields after the storm.",
    "今天的会议改到下午三点。",
    "Scientists found a small green frog 🐸 near the river.",
    "The library offers free classes in painting and music.",
];

#[derive(Debug, Clone, PartialEq)]
enum Output {
    Text(String),
    Numbers(Vec<i64>),
    Cancelled,
}

fn ok(st: duet_status) {
    if st != duet_status::Ok {
        let msg = unsafe { CStr::from_ptr(duet_last_error_message()) }.to_string_lossy().into_owned();
        panic!("{}: {msg}", st.name());
    }
}

fn params(pairs: &[(&str, &str)]) -> *mut duet_params {
    let mut p = null_mut();
    unsafe {
        ok(duet_params_new(&mut p));
        for (k, v) in pairs {
            let (k, v) = (CString::new(*k).unwrap(), CString::new(*v).unwrap());
            ok(duet_params_set_string(p, k.as_ptr(), v.as_ptr()));
        }
    }
    p
}

fn reply_text(reply: *mut duet_reply) -> String {
    let mut t: *const c_char = null();
    unsafe {
        ok(duet_reply_text(reply, &mut t));
        let s = CStr::from_ptr(t).to_string_lossy().into_owned();
        duet_reply_free(reply);
        s
    }
}

/// Operation `op` on text `i`; with `token`, a cancellation may end it.
fn run(shared: Shared, op: usize, i: usize, token: Option<*const duet_cancel_token>) -> Output {
    let model = shared.model as *const duet_model;
    let text = CString::new(TEXTS[i % TEXTS.len()]).unwrap();
    let p = match op {
        1 => params(&[("max_new_tokens", "10"), ("num_beams", "3")]),
        _ => params(&[("max_new_tokens", "10")]),
    };
    unsafe {
        if let Some(t) = token {
            ok(duet_params_set_cancel_token(p, t));
        }
        let st;
        let out = match op {
            0 | 1 => {
                let mut r = null_mut();
                st = duet_generate(model, [text.as_ptr()].as_ptr(), 1, p, None, null_mut(), &mut r);
                if st != duet_status::Ok {
                    Output::Cancelled
                } else {
                    let mut t: *const c_char = null();
                    ok(duet_result_text(r, 0, 0, &mut t));
                    let s = CStr::from_ptr(t).to_string_lossy().into_owned();
                    duet_result_free(r);
                    Output::Text(s)
                }
            }
            2 => {
                let mut r = null_mut();
                st = duet_summarize(model, text.as_ptr(), p, null(), &mut r);
                if st == duet_status::Ok {
                    Output::Text(reply_text(r))
                } else {
                    Output::Cancelled
                }
            }
            3 => {
                let mut chat = null_mut();
                ok(duet_chat_new(model, p, &mut chat));
                let mut r = null_mut();
                st = duet_chat_send(chat, text.as_ptr(), null(), &mut r);
                let first = if st == duet_status::Ok { reply_text(r) } else { String::new() };
                let st2 = if st == duet_status::Ok { duet_chat_send(chat, c"And then?".as_ptr(), null(), &mut r) } else { st };
                duet_chat_free(chat);
                if st2 == duet_status::Ok {
                    Output::Text(first + "|" + &reply_text(r))
                } else {
                    Output::Cancelled
                }
            }
            4 => {
                let mut v = vec![0f32; 64];
                st = duet_embed(model, [text.as_ptr()].as_ptr(), 1, p, v.as_mut_ptr(), 64);
                Output::Numbers(v.iter().map(|x| (x * 1e6).round() as i64).collect())
            }
            5 => {
                let passages: Vec<CString> = TEXTS.iter().map(|t| CString::new(*t).unwrap()).collect();
                let ptrs: Vec<*const c_char> = passages.iter().map(|c| c.as_ptr()).collect();
                let mut scores = vec![0f64; ptrs.len()];
                st = duet_rerank(model, text.as_ptr(), ptrs.as_ptr(), ptrs.len(), p, scores.as_mut_ptr());
                Output::Numbers(scores.iter().map(|x| (x * 1e5).round() as i64).collect())
            }
            _ => {
                let (mut ids, mut scores, mut n) = ([0i64; 2], [0f64; 2], 0usize);
                st = duet_index_search(
                    shared.index as *const duet_index,
                    text.as_ptr(),
                    2,
                    0,
                    ids.as_mut_ptr(),
                    scores.as_mut_ptr(),
                    &mut n,
                );
                Output::Numbers(ids[..n].to_vec())
            }
        };
        duet_params_free(p);
        match (st, token) {
            (duet_status::Ok, _) => out,
            (duet_status::Cancelled, Some(_)) => Output::Cancelled,
            (st, _) => {
                ok(st);
                out
            }
        }
    }
}

const OPS: usize = 7;

#[test]
fn sixteen_threads_share_one_model() {
    common::init_ort();
    let rounds: usize = std::env::var("DUET_STRESS_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let dir = CString::new(common::fixture("t5-tiny").to_str().unwrap()).unwrap();
    let (mut model, mut index) = (null_mut(), null_mut());
    unsafe {
        ok(duet_model_open(dir.as_ptr(), null(), &mut model));
        ok(duet_index_new(model, null(), &mut index));
        for (i, t) in TEXTS.iter().enumerate() {
            let t = CString::new(*t).unwrap();
            ok(duet_index_add(index, i as i64, t.as_ptr()));
        }
    }
    let shared = Shared { model: model as usize, index: index as usize };
    let reference: Vec<Vec<Output>> = (0..OPS).map(|op| (0..TEXTS.len()).map(|i| run(shared, op, i, None)).collect()).collect();

    let mut token = null_mut();
    unsafe { ok(duet_cancel_token_new(&mut token)) };
    let token_addr = token as usize;
    let calls = AtomicUsize::new(0);
    let cancelled = AtomicUsize::new(0);
    let barrier = Barrier::new(17);
    std::thread::scope(|s| {
        for t in 0..16 {
            let (reference, calls, cancelled, barrier) = (&reference, &calls, &cancelled, &barrier);
            s.spawn(move || {
                barrier.wait();
                for round in 0..rounds {
                    for k in 0..OPS {
                        let (op, i) = ((t + k) % OPS, (t + round + k) % TEXTS.len());
                        // Every fourth thread's calls watch the shared token.
                        let watch = (t % 4 == 3).then_some(token_addr as *const duet_cancel_token);
                        let out = run(shared, op, i, watch);
                        calls.fetch_add(1, Ordering::SeqCst);
                        if out == Output::Cancelled {
                            cancelled.fetch_add(1, Ordering::SeqCst);
                        } else {
                            assert_eq!(out, reference[op][i], "thread {t}, op {op}, text {i}");
                        }
                    }
                }
            });
        }
        // The canceller: trips and resets the shared token while the others work.
        let (calls, barrier) = (&calls, &barrier);
        s.spawn(move || {
            barrier.wait();
            let total = 16 * rounds * OPS;
            while calls.load(Ordering::SeqCst) < total {
                unsafe { duet_cancel_token_cancel(token_addr as *const duet_cancel_token) };
                std::thread::sleep(std::time::Duration::from_millis(3));
                unsafe { duet_cancel_token_reset(token_addr as *const duet_cancel_token) };
                std::thread::sleep(std::time::Duration::from_millis(7));
            }
        });
    });
    println!("{} calls on 16 threads, {} cancelled by another thread", calls.load(Ordering::SeqCst), cancelled.load(Ordering::SeqCst));
    assert_eq!(calls.load(Ordering::SeqCst), 16 * rounds * OPS);
    unsafe {
        duet_cancel_token_free(token);
        duet_index_free(index);
        duet_model_free(model);
    }
}
