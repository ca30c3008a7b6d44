//! A host that `dlopen`s the built libduet.so and calls everything through the plugin table.

mod common;

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;

use duet::ffi::{duet_api_v1, duet_callbacks, duet_status, DUET_ABI_MAJOR};

type Entry = unsafe extern "C" fn(u32, *mut *const c_char) -> *const duet_api_v1;

/// The libduet.so cargo built for this test run (target/<profile>/deps, beside the test binary).
fn library() -> libloading::Library {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let path = deps.join("libduet.so");
    assert!(path.exists(), "{} is missing", path.display());
    unsafe { libloading::Library::new(&path) }.unwrap()
}

fn ok(api: &duet_api_v1, status: duet_status) {
    if status != duet_status::Ok {
        let msg = unsafe { CStr::from_ptr((api.last_error_message)()) }.to_string_lossy().into_owned();
        panic!("{status:?}: {msg}");
    }
}

fn text(p: *const c_char) -> String {
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
}

#[test]
fn a_host_with_another_abi_major_is_refused() {
    let lib = library();
    let entry: libloading::Symbol<Entry> = unsafe { lib.get(b"duet_plugin_v1") }.unwrap();
    let mut error: *const c_char = ptr::null();
    let table = unsafe { entry(DUET_ABI_MAJOR + 1, &mut error) };
    assert!(table.is_null());
    assert!(text(error).contains("ABI major"), "{}", text(error));
}

#[test]
fn every_call_works_through_the_table() {
    let lib = library();
    let entry: libloading::Symbol<Entry> = unsafe { lib.get(b"duet_plugin_v1") }.unwrap();
    let api = unsafe { &*entry(DUET_ABI_MAJOR, ptr::null_mut()) };
    assert_eq!(api.abi_major, DUET_ABI_MAJOR);
    assert_eq!(api.struct_size, std::mem::size_of::<duet_api_v1>());
    assert_eq!(text(unsafe { (api.version)() }), duet::VERSION);
    unsafe {
        let ort = CString::new(common::ort_library().into_os_string().into_encoded_bytes()).unwrap();
        ok(api, (api.runtime_init)(ort.as_ptr()));
        let dir = CString::new(common::fixture("t5-tiny").to_str().unwrap()).unwrap();
        let mut model = ptr::null_mut();
        ok(api, (api.model_open)(dir.as_ptr(), ptr::null(), &mut model));
        let mut params = ptr::null_mut();
        ok(api, (api.params_new)(&mut params));
        ok(api, (api.params_set_int)(params, c"max_new_tokens".as_ptr(), 8));

        // generate, compared with the library linked into this test
        let input = CString::new("The river flooded the fields.").unwrap();
        let inputs = [input.as_ptr()];
        let mut result = ptr::null_mut();
        ok(api, (api.generate)(model, inputs.as_ptr(), 1, params, None, ptr::null_mut(), &mut result));
        let mut out: *const c_char = ptr::null();
        ok(api, (api.result_text)(result, 0, 0, &mut out));
        let linked = common::shared("t5-tiny", "merged");
        let mut s = duet::new_generation_settings();
        s.set_int("max_new_tokens", 8).unwrap();
        let expected = duet::generate(&linked, &["The river flooded the fields."], &s, None).unwrap();
        assert_eq!(text(out), expected[0].sequences[0].text);
        (api.result_free)(result);

        // summarize, chat, assist
        let mut reply = ptr::null_mut();
        ok(api, (api.summarize)(model, input.as_ptr(), params, ptr::null(), &mut reply));
        let mut levels = 0i64;
        ok(api, (api.reply_stat)(reply, c"levels".as_ptr(), &mut levels));
        assert_eq!(levels, 1);
        (api.reply_free)(reply);
        let mut chat = ptr::null_mut();
        ok(api, (api.chat_new)(model, params, &mut chat));
        unsafe extern "C" fn count(user: *mut c_void, _: usize, _: *const c_char, len: usize, _: i32) -> i32 {
            *(user as *mut usize) += len;
            0
        }
        let mut streamed = 0usize;
        let callbacks = duet_callbacks { on_token: Some(count), on_progress: None, user_data: &mut streamed as *mut usize as *mut c_void };
        ok(api, (api.chat_send)(chat, c"Hello there".as_ptr(), &callbacks, &mut reply));
        ok(api, (api.reply_text)(reply, &mut out));
        assert_eq!(streamed, text(out).len());
        (api.reply_free)(reply);
        let mut turns = 0usize;
        ok(api, (api.chat_num_turns)(chat, &mut turns));
        assert_eq!(turns, 1);
        (api.chat_free)(chat);
        ok(api, (api.assist)(model, c"Why?".as_ptr(), params, ptr::null(), &mut reply));
        (api.reply_free)(reply);

        // embed, rerank, index
        let mut dim = 0usize;
        ok(api, (api.model_embedding_dim)(model, &mut dim));
        let mut vector = vec![0f32; dim];
        ok(api, (api.embed)(model, inputs.as_ptr(), 1, ptr::null(), vector.as_mut_ptr(), dim));
        let norm: f32 = vector.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        let mut score = 0f64;
        ok(api, (api.rerank)(model, c"what flooded?".as_ptr(), inputs.as_ptr(), 1, ptr::null(), &mut score));
        assert!(score < 0.0);
        let mut index = ptr::null_mut();
        ok(api, (api.index_new)(model, ptr::null(), &mut index));
        ok(api, (api.index_add)(index, 7, input.as_ptr()));
        ok(api, (api.index_add)(index, 8, c"Trains leave every hour.".as_ptr()));
        let (mut ids, mut scores, mut found) = ([0i64; 2], [0f64; 2], 0usize);
        ok(api, (api.index_search)(index, input.as_ptr(), 2, 0, ids.as_mut_ptr(), scores.as_mut_ptr(), &mut found));
        assert_eq!((found, ids[0]), (2, 7));
        assert!((scores[0] - 1.0).abs() < 1e-4, "a text is most similar to itself");
        (api.index_free)(index);

        (api.params_free)(params);
        (api.model_free)(model);
    }
}
