//! A cancel token tripped from another thread, or a `timeout_ms`, ends a call within one decoding
//! step with its own status.

mod common;

use std::ffi::{c_char, c_void};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use duet::ffi::*;

struct Watch {
    stopped: AtomicBool,
    pieces_after_stop: AtomicUsize,
    pieces: AtomicUsize,
    deadline: Option<Instant>,
}

unsafe extern "C" fn watch(user: *mut c_void, _: usize, _: *const c_char, _: usize, _: i32) -> i32 {
    let w = &*(user as *const Watch);
    w.pieces.fetch_add(1, Ordering::SeqCst);
    let late = w.deadline.is_some_and(|d| Instant::now() > d);
    if w.stopped.load(Ordering::SeqCst) || late {
        w.pieces_after_stop.fetch_add(1, Ordering::SeqCst);
    }
    0
}

struct Handles {
    model: *mut duet_model,
}
unsafe impl Sync for Handles {}
unsafe impl Send for Handles {}

fn open() -> Handles {
    common::init_ort();
    let dir = std::ffi::CString::new(common::fixture("t5-tiny").to_str().unwrap()).unwrap();
    let mut model = null_mut();
    assert_eq!(unsafe { duet_model_open(dir.as_ptr(), null(), &mut model) }, duet_status::Ok);
    Handles { model }
}

fn long_params() -> *mut duet_params {
    let mut p = null_mut();
    unsafe {
        duet_params_new(&mut p);
        duet_params_set_int(p, c"max_new_tokens".as_ptr(), 5000);
        duet_params_set_int(p, c"min_new_tokens".as_ptr(), 5000);
    }
    p
}

#[test]
fn a_cancel_from_another_thread_stops_within_a_step() {
    let h = open();
    let params = long_params();
    let mut token = null_mut();
    unsafe {
        assert_eq!(duet_cancel_token_new(&mut token), duet_status::Ok);
        assert_eq!(duet_params_set_cancel_token(params, token), duet_status::Ok);
    }
    let w = Watch { stopped: AtomicBool::new(false), pieces_after_stop: AtomicUsize::new(0), pieces: AtomicUsize::new(0), deadline: None };
    let token_addr = token as usize;
    let status = std::thread::scope(|s| {
        let w = &w;
        s.spawn(move || {
            while w.pieces.load(Ordering::SeqCst) < 20 {
                std::thread::sleep(Duration::from_millis(1));
            }
            w.stopped.store(true, Ordering::SeqCst);
            unsafe { duet_cancel_token_cancel(token_addr as *const duet_cancel_token) };
        });
        let text = c"a long story".as_ptr();
        let mut result = null_mut();
        let st = unsafe { duet_generate(h.model, [text].as_ptr(), 1, params, Some(watch), w as *const Watch as *mut c_void, &mut result) };
        assert!(result.is_null(), "no result on cancellation");
        st
    });
    assert_eq!(status, duet_status::Cancelled);
    assert!(w.pieces_after_stop.load(Ordering::SeqCst) <= 1, "{} steps ran after the cancel", w.pieces_after_stop.load(Ordering::SeqCst));
    // The same params work again once the token is reset.
    unsafe {
        duet_cancel_token_reset(token);
        duet_params_set_int(params, c"max_new_tokens".as_ptr(), 3);
        duet_params_set_int(params, c"min_new_tokens".as_ptr(), 0);
        let mut result = null_mut();
        assert_eq!(duet_generate(h.model, [c"again".as_ptr()].as_ptr(), 1, params, None, null_mut(), &mut result), duet_status::Ok);
        duet_result_free(result);
        duet_cancel_token_free(token);
        duet_params_free(params);
        duet_model_free(h.model);
    }
}

#[test]
fn a_deadline_ends_generate_summarize_and_chat() {
    let h = open();
    let params = long_params();
    unsafe { duet_params_set_int(params, c"timeout_ms".as_ptr(), 100) };
    let w = Watch {
        stopped: AtomicBool::new(false),
        pieces_after_stop: AtomicUsize::new(0),
        pieces: AtomicUsize::new(0),
        deadline: Some(Instant::now() + Duration::from_millis(100)),
    };
    let mut result = null_mut();
    let st =
        unsafe { duet_generate(h.model, [c"x".as_ptr()].as_ptr(), 1, params, Some(watch), &w as *const Watch as *mut c_void, &mut result) };
    assert_eq!(st, duet_status::DeadlineExceeded);
    assert!(w.pieces_after_stop.load(Ordering::SeqCst) <= 1);
    unsafe {
        let mut reply = null_mut();
        let doc = std::ffi::CString::new("The river flooded the fields again. ".repeat(2000)).unwrap();
        assert_eq!(duet_summarize(h.model, doc.as_ptr(), params, null(), &mut reply), duet_status::DeadlineExceeded);
        let mut chat = null_mut();
        assert_eq!(duet_chat_new(h.model, params, &mut chat), duet_status::Ok);
        assert_eq!(duet_chat_send(chat, c"hello".as_ptr(), null(), &mut reply), duet_status::DeadlineExceeded);
        duet_chat_free(chat);
        duet_params_free(params);
        duet_model_free(h.model);
    }
}

/// A copy of t5-tiny whose tokenizer.json splits on `pattern` first (a hostile model directory).
fn model_with_split(tag: &str, pattern: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("duet-regex-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(common::fixture("t5-tiny")).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), dir.join(e.file_name())).unwrap();
    }
    let path = dir.join("tokenizer.json");
    let mut t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let metaspace = t["pre_tokenizer"].take();
    t["pre_tokenizer"] = serde_json::json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false}, metaspace]});
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, t.to_string()).unwrap();
    dir
}

/// Tokenization honours the deadline and the cancel token: a pre-tokenizer regex that backtracks
/// on every word (seconds of work) ends the call at its `timeout_ms` with DEADLINE_EXCEEDED, in
/// generate, embed and summarize, and at a cancel with CANCELLED; Oniguruma's retry limit, which
/// `tokenizers` turns into a panic, is DUET_STATUS_TOKENIZER.
#[test]
fn tokenization_stops_at_the_deadline_and_a_regex_failure_is_a_tokenizer_error() {
    common::init_ort();
    let slow = model_with_split("slow", "(x+x+)+y");
    let dir = std::ffi::CString::new(slow.to_str().unwrap()).unwrap();
    let text = std::ffi::CString::new("xxxxxxxxxxxxxxxx ".repeat(6000)).unwrap(); // seconds to tokenize
    let inputs = [text.as_ptr()];
    unsafe {
        let mut model = null_mut();
        assert_eq!(duet_model_open(dir.as_ptr(), null(), &mut model), duet_status::Ok);
        let mut params = null_mut();
        duet_params_new(&mut params);
        duet_params_set_int(params, c"timeout_ms".as_ptr(), 300);
        duet_params_set_int(params, c"max_input_tokens".as_ptr(), 4096);
        duet_params_set_int(params, c"max_new_tokens".as_ptr(), 2);
        duet_params_set_bool(params, c"truncate_input".as_ptr(), true);
        // each call returns at its 300 ms deadline, not after the seconds its encode takes
        let within_deadline = |what: &str, call: &mut dyn FnMut() -> duet_status| {
            let started = Instant::now();
            assert_eq!(call(), duet_status::DeadlineExceeded, "{what}");
            assert!(started.elapsed() < Duration::from_millis(1500), "{what} took {:?}", started.elapsed());
        };
        let mut result = null_mut();
        within_deadline("generate", &mut || duet_generate(model, inputs.as_ptr(), 1, params, None, null_mut(), &mut result));
        let mut vector = vec![0f32; 64];
        within_deadline("embed", &mut || duet_embed(model, inputs.as_ptr(), 1, params, vector.as_mut_ptr(), 64));
        let mut summary = null_mut();
        within_deadline("summarize", &mut || duet_summarize(model, text.as_ptr(), params, null(), &mut summary));
        let mut score = 0f64;
        within_deadline("rerank", &mut || duet_rerank(model, c"a query".as_ptr(), inputs.as_ptr(), 1, params, &mut score));

        // a cancel from another thread, while the encode runs
        let mut token = null_mut();
        duet_cancel_token_new(&mut token);
        let mut cancellable = null_mut();
        duet_params_new(&mut cancellable);
        duet_params_set_int(cancellable, c"max_input_tokens".as_ptr(), 4096);
        duet_params_set_bool(cancellable, c"truncate_input".as_ptr(), true);
        duet_params_set_cancel_token(cancellable, token);
        let token_addr = token as usize;
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            duet_cancel_token_cancel(token_addr as *mut duet_cancel_token);
        });
        assert_eq!(duet_generate(model, inputs.as_ptr(), 1, cancellable, None, null_mut(), &mut result), duet_status::Cancelled);
        canceller.join().unwrap();
        duet_params_free(cancellable);
        duet_cancel_token_free(token);
        duet_params_free(params);
        duet_model_free(model);
    }

    let failing = model_with_split("retry-limit", "(a|a)+$");
    let dir = std::ffi::CString::new(failing.to_str().unwrap()).unwrap();
    let text = std::ffi::CString::new(format!("{}b", "a".repeat(40))).unwrap();
    unsafe {
        let mut model = null_mut();
        assert_eq!(duet_model_open(dir.as_ptr(), null(), &mut model), duet_status::Ok);
        let mut result = null_mut();
        let st = duet_generate(model, [text.as_ptr()].as_ptr(), 1, null(), None, null_mut(), &mut result);
        let message = std::ffi::CStr::from_ptr(duet_last_error_message()).to_string_lossy().into_owned();
        assert_eq!(st, duet_status::Tokenizer, "{message}");
        assert!(message.contains("retry-limit"), "{message}");
        duet_model_free(model);
    }
    let out = common::cli(&["generate", "--model", failing.to_str().unwrap(), &format!("{}b", "a".repeat(40))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("retry-limit") && !err.contains("internal error"), "{err}");
    let _ = std::fs::remove_dir_all(slow);
    let _ = std::fs::remove_dir_all(failing);
}
