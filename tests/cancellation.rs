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
