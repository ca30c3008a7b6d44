//! The C entry points fed random bytes as strings, sizes and handles (none of which may crash).
#![no_main]
use std::ffi::CString;
use std::ptr::{null, null_mut};

use duet::ffi::*;
use libfuzzer_sys::fuzz_target;
use once_cell::sync::Lazy;

struct Model(usize);

static MODEL: Lazy<Model> = Lazy::new(|| {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ort = std::env::var("DUET_ORT_LIBRARY").unwrap_or_else(|_| root.join(".ort/lib/libonnxruntime.so.1.31.1").display().to_string());
    let ort = CString::new(ort).unwrap();
    let dir = CString::new(root.join("tests/fixtures/t5-tiny").display().to_string()).unwrap();
    let mut m = null_mut();
    unsafe {
        assert_eq!(duet_runtime_init(ort.as_ptr()), duet_status::Ok);
        assert_eq!(duet_model_open(dir.as_ptr(), null(), &mut m), duet_status::Ok);
    }
    Model(m as usize)
});

fuzz_target!(|data: &[u8]| {
    let model = MODEL.0 as *const duet_model;
    // Raw bytes as C strings (cut at the first NUL, as C would see them).
    let mut parts = data.split(|&b| b == 0xff);
    let key = CString::new(parts.next().unwrap_or(b"").split(|&b| b == 0).next().unwrap_or(b"")).unwrap();
    let value = CString::new(parts.next().unwrap_or(b"").split(|&b| b == 0).next().unwrap_or(b"")).unwrap();
    let text = CString::new(parts.next().unwrap_or(b"").split(|&b| b == 0).next().unwrap_or(b"")).unwrap();
    unsafe {
        let mut p = null_mut();
        duet_params_new(&mut p);
        duet_params_set_string(p, key.as_ptr(), value.as_ptr());
        duet_params_set_int(p, c"max_new_tokens".as_ptr(), 2);
        duet_params_set_int(p, c"max_input_tokens".as_ptr(), 64);
        duet_params_set_bool(p, c"truncate_input".as_ptr(), true);
        let inputs = [text.as_ptr()];
        let mut r = null_mut();
        if duet_generate(model, inputs.as_ptr(), 1, p, None, null_mut(), &mut r) == duet_status::Ok {
            let mut json = null_mut();
            duet_result_to_json(r, &mut json);
            duet_string_free(json);
        }
        duet_result_free(r);
        let mut score = 0f64;
        duet_rerank(model, value.as_ptr(), inputs.as_ptr(), 1, p, &mut score);
        let mut stat = 0i64;
        duet_reply_stat(null(), key.as_ptr(), &mut stat);
        let _ = duet_status_name(i32::from_le_bytes([data.first().copied().unwrap_or(0), 0, 0, 0]));
        duet_params_free(p);
    }
});
