//! Hostile and broken input through the C ABI: each case expects one specific status, and the
//! process must survive all of them. (A missing or too-old libonnxruntime is in tests/cli.rs,
//! since the runtime is loaded once per process.)

mod common;

use std::ffi::{c_char, CString};
use std::ptr::{null, null_mut};

use duet::ffi::*;

fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A scratch copy of t5-tiny with one file replaced.
fn broken_model(tag: &str, file: &str, bytes: &[u8]) -> CString {
    let dir = std::env::temp_dir().join(format!("duet-bad-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(common::fixture("t5-tiny")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    std::fs::write(dir.join(file), bytes).unwrap();
    cs(dir.to_str().unwrap())
}

/// encoder_model.onnx with the graph input `input_ids` declared float instead of int64.
fn encoder_with_float_ids() -> Vec<u8> {
    let mut bytes = std::fs::read(common::fixture("t5-tiny").join("encoder_model.onnx")).unwrap();
    let name = b"\x0a\x09input_ids\x12";
    let at = bytes
        .windows(name.len() + 5)
        .position(|w| w.starts_with(name) && w[name.len() + 1] == 0x0a && w[name.len() + 3] == 0x08 && w[name.len() + 4] == 0x07)
        .expect("the input_ids ValueInfoProto");
    bytes[at + name.len() + 4] = 0x01;
    bytes
}

struct Fixture {
    model: *mut duet_model,
    params: *mut duet_params,
    result: *mut duet_result,
    index: *mut duet_index,
}

#[test]
fn every_bad_input_gets_its_status() {
    common::init_ort();
    let dir = cs(common::fixture("t5-tiny").to_str().unwrap());
    let mut f = Fixture { model: null_mut(), params: null_mut(), result: null_mut(), index: null_mut() };
    unsafe {
        assert_eq!(duet_model_open(dir.as_ptr(), null(), &mut f.model), duet_status::Ok);
        assert_eq!(duet_params_new(&mut f.params), duet_status::Ok);
        assert_eq!(duet_params_set_int(f.params, c"max_new_tokens".as_ptr(), 4), duet_status::Ok);
        assert_eq!(duet_index_new(f.model, null(), &mut f.index), duet_status::Ok);
    }
    let hello = cs("hello");
    let inputs = [hello.as_ptr()];
    let bad_utf8: &[u8] = b"\xff\xfe\0";
    let bad = bad_utf8.as_ptr() as *const c_char;
    let huge = cs(&"lorem ipsum dolor sit amet ".repeat(400_000)); // 10.8 MB
    let huge_inputs = [huge.as_ptr()];
    let empty = cs("");
    let blank = cs("  \n\t ");
    let good_index = std::env::temp_dir().join(format!("duet-bad-{}-index.bin", std::process::id()));
    let good_index_c = cs(good_index.to_str().unwrap());

    type Case<'a> = (&'a str, Box<dyn Fn(&mut Fixture) -> duet_status + 'a>, duet_status);
    use duet_status as S;
    let set_int = |key: &'static str, v: i64| -> Box<dyn Fn(&mut Fixture) -> duet_status> {
        Box::new(move |_| unsafe {
            let mut p = null_mut();
            duet_params_new(&mut p);
            let key = cs(key);
            let st = duet_params_set_int(p, key.as_ptr(), v);
            duet_params_free(p);
            st
        })
    };
    let set_str = |key: &'static str, v: &'static str| -> Box<dyn Fn(&mut Fixture) -> duet_status> {
        Box::new(move |_| unsafe {
            let mut p = null_mut();
            duet_params_new(&mut p);
            let (key, v) = (cs(key), cs(v));
            let st = duet_params_set_string(p, key.as_ptr(), v.as_ptr());
            duet_params_free(p);
            st
        })
    };
    let set_float = |key: &'static str, v: f64| -> Box<dyn Fn(&mut Fixture) -> duet_status> {
        Box::new(move |f| unsafe {
            let _ = f;
            let mut p = null_mut();
            duet_params_new(&mut p);
            let key = cs(key);
            let st = duet_params_set_float(p, key.as_ptr(), v);
            duet_params_free(p);
            st
        })
    };
    let generate_with = |pairs: &'static [(&'static str, &'static str)], text: &'static str| -> Box<dyn Fn(&mut Fixture) -> duet_status> {
        Box::new(move |f| unsafe {
            let mut p = null_mut();
            duet_params_new(&mut p);
            let mut st = duet_status::Ok;
            for (k, v) in pairs {
                let (k, v) = (cs(k), cs(v));
                st = duet_params_set_string(p, k.as_ptr(), v.as_ptr());
                if st != duet_status::Ok {
                    break;
                }
            }
            if st == duet_status::Ok {
                let t = cs(text);
                let inputs = [t.as_ptr()];
                let mut r = null_mut();
                st = duet_generate(f.model, inputs.as_ptr(), 1, p, None, null_mut(), &mut r);
                duet_result_free(r);
            }
            duet_params_free(p);
            st
        })
    };
    let open = |dir: CString| -> Box<dyn Fn(&mut Fixture) -> duet_status> {
        Box::new(move |_| unsafe {
            let mut m = null_mut();
            let st = duet_model_open(dir.as_ptr(), null(), &mut m);
            duet_model_free(m);
            st
        })
    };
    let load_index = |bytes: Vec<u8>| -> Box<dyn Fn(&mut Fixture) -> duet_status> {
        let path = std::env::temp_dir().join(format!("duet-bad-{}-{}.idx", std::process::id(), bytes.len()));
        Box::new(move |f| unsafe {
            std::fs::write(&path, &bytes).unwrap();
            let p = cs(path.to_str().unwrap());
            let mut ix = null_mut();
            let st = duet_index_load(f.model, p.as_ptr(), null(), &mut ix);
            duet_index_free(ix);
            st
        })
    };
    let index_bytes = || {
        unsafe {
            let t = cs("a passage about rivers");
            duet_index_add(f.index, 1, t.as_ptr());
            duet_index_save(f.index, good_index_c.as_ptr());
        }
        std::fs::read(&good_index).unwrap()
    };
    let good = index_bytes();
    let mut forged = good[..good.len() - 8].to_vec();
    forged[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    let sum = forged.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    forged.extend_from_slice(&sum.to_le_bytes());
    let mut wrong_version = good.clone();
    wrong_version[8] = 9;
    let onnx = std::fs::read(common::fixture("t5-tiny").join("encoder_model.onnx")).unwrap();
    let mut flipped = onnx.clone();
    (64..flipped.len()).step_by(501).for_each(|i| flipped[i] ^= 0x5a);

    let cases: Vec<Case> = vec![
        // NULL pointers
        ("open: NULL dir", Box::new(|_| unsafe { duet_model_open(null(), null(), &mut null_mut()) }), S::NullPointer),
        ("open: NULL out", Box::new(|_| unsafe { duet_model_open(dir.as_ptr(), null(), null_mut()) }), S::NullPointer),
        (
            "generate: NULL model",
            Box::new(|f| unsafe { duet_generate(null(), inputs.as_ptr(), 1, f.params, None, null_mut(), &mut f.result) }),
            S::NullPointer,
        ),
        (
            "generate: NULL inputs",
            Box::new(|f| unsafe { duet_generate(f.model, null(), 1, f.params, None, null_mut(), &mut f.result) }),
            S::NullPointer,
        ),
        (
            "generate: NULL element",
            Box::new(|f| unsafe { duet_generate(f.model, [null()].as_ptr(), 1, f.params, None, null_mut(), &mut f.result) }),
            S::NullPointer,
        ),
        (
            "generate: NULL out",
            Box::new(|f| unsafe { duet_generate(f.model, inputs.as_ptr(), 1, f.params, None, null_mut(), null_mut()) }),
            S::NullPointer,
        ),
        ("params: NULL object", Box::new(|_| unsafe { duet_params_set_int(null_mut(), c"num_beams".as_ptr(), 2) }), S::NullPointer),
        ("params: NULL key", Box::new(|f| unsafe { duet_params_set_int(f.params, null(), 2) }), S::NullPointer),
        (
            "params: NULL string value",
            Box::new(|f| unsafe { duet_params_set_string(f.params, c"num_beams".as_ptr(), null()) }),
            S::NullPointer,
        ),
        (
            "summarize: NULL text",
            Box::new(|f| unsafe { duet_summarize(f.model, null(), f.params, null(), &mut null_mut()) }),
            S::NullPointer,
        ),
        ("chat: NULL chat", Box::new(|_| unsafe { duet_chat_send(null_mut(), hello.as_ptr(), null(), &mut null_mut()) }), S::NullPointer),
        ("embed: NULL out", Box::new(|f| unsafe { duet_embed(f.model, inputs.as_ptr(), 1, null(), null_mut(), 64) }), S::NullPointer),
        (
            "rerank: NULL passage",
            Box::new(|f| unsafe { duet_rerank(f.model, hello.as_ptr(), [null()].as_ptr(), 1, null(), &mut 0.0) }),
            S::NullPointer,
        ),
        ("index: NULL text", Box::new(|f| unsafe { duet_index_add(f.index, 5, null()) }), S::NullPointer),
        ("result: NULL result", Box::new(|_| unsafe { duet_result_text(null(), 0, 0, &mut null()) }), S::NullPointer),
        // invalid UTF-8
        (
            "generate: invalid UTF-8",
            Box::new(|f| unsafe { duet_generate(f.model, [bad].as_ptr(), 1, f.params, None, null_mut(), &mut f.result) }),
            S::InvalidUtf8,
        ),
        ("params: invalid UTF-8 key", Box::new(|f| unsafe { duet_params_set_int(f.params, bad, 1) }), S::InvalidUtf8),
        (
            "summarize: invalid UTF-8",
            Box::new(|f| unsafe { duet_summarize(f.model, bad, f.params, null(), &mut null_mut()) }),
            S::InvalidUtf8,
        ),
        (
            "rerank: invalid UTF-8 query",
            Box::new(|f| unsafe { duet_rerank(f.model, bad, inputs.as_ptr(), 1, null(), &mut 0.0) }),
            S::InvalidUtf8,
        ),
        ("open: invalid UTF-8 dir", Box::new(|_| unsafe { duet_model_open(bad, null(), &mut null_mut()) }), S::InvalidUtf8),
        // sizes
        (
            "generate: 10 MB input",
            Box::new(|f| unsafe { duet_generate(f.model, huge_inputs.as_ptr(), 1, f.params, None, null_mut(), &mut f.result) }),
            S::InputTooLong,
        ),
        (
            "generate: 10 MB input, truncate_input",
            Box::new(|f| unsafe {
                let mut p = null_mut();
                duet_params_new(&mut p);
                duet_params_set_bool(p, c"truncate_input".as_ptr(), true);
                duet_params_set_int(p, c"max_new_tokens".as_ptr(), 2);
                let st = duet_generate(f.model, huge_inputs.as_ptr(), 1, p, None, null_mut(), &mut f.result);
                let (mut tokens, mut truncated) = (0usize, false);
                duet_result_input_info(f.result, 0, &mut tokens, &mut truncated);
                duet_params_free(p);
                if st == duet_status::Ok && !(truncated && tokens == 512) {
                    duet_status::Internal
                } else {
                    st
                }
            }),
            S::Ok,
        ),
        (
            "generate: zero inputs",
            Box::new(|f| unsafe { duet_generate(f.model, inputs.as_ptr(), 0, f.params, None, null_mut(), &mut f.result) }),
            S::InvalidArgument,
        ),
        (
            "generate: empty text",
            Box::new(|f| unsafe { duet_generate(f.model, [empty.as_ptr()].as_ptr(), 1, f.params, None, null_mut(), &mut f.result) }),
            S::Ok,
        ),
        (
            "summarize: whitespace only",
            Box::new(|f| unsafe { duet_summarize(f.model, blank.as_ptr(), f.params, null(), &mut null_mut()) }),
            S::InvalidArgument,
        ),
        (
            "embed: empty text",
            Box::new(|f| unsafe { duet_embed(f.model, [empty.as_ptr()].as_ptr(), 1, null(), [0f32; 64].as_mut_ptr(), 64) }),
            S::InvalidArgument,
        ),
        (
            "embed: buffer too small",
            Box::new(|f| unsafe { duet_embed(f.model, inputs.as_ptr(), 1, null(), [0f32; 8].as_mut_ptr(), 8) }),
            S::InvalidArgument,
        ),
        // absurd params
        ("num_beams 0", set_int("num_beams", 0), S::InvalidParam),
        ("num_beams 10^6", set_int("num_beams", 1_000_000), S::InvalidParam),
        ("max_new_tokens 0", set_int("max_new_tokens", 0), S::InvalidParam),
        ("temperature NaN", set_float("temperature", f64::NAN), S::InvalidParam),
        ("temperature negative", set_float("temperature", -0.5), S::InvalidParam),
        ("top_p 0", set_float("top_p", 0.0), S::InvalidParam),
        ("top_p 1.5", set_float("top_p", 1.5), S::InvalidParam),
        ("top_k negative", set_int("top_k", -3), S::InvalidParam),
        ("unknown key", set_int("beam_width", 4), S::UnknownParam),
        ("type mismatch", Box::new(|f| unsafe { duet_params_set_float(f.params, c"num_beams".as_ptr(), 2.5) }), S::InvalidParam),
        ("eos_token_id outside the vocabulary", generate_with(&[("eos_token_id", "99999")], "hello"), S::InvalidParam),
        ("more sequences than beams", generate_with(&[("num_beams", "2"), ("num_return_sequences", "3")], "hello"), S::InvalidParam),
        ("timeout_ms 0", set_int("timeout_ms", 0), S::InvalidParam),
        // broken model files
        ("truncated ONNX", open(broken_model("trunc", "encoder_model.onnx", &onnx[..onnx.len() / 2])), S::ModelInvalid),
        ("bit-flipped ONNX", open(broken_model("flip", "encoder_model.onnx", &flipped)), S::ModelInvalid),
        ("graph with a float input_ids", open(broken_model("dtype", "encoder_model.onnx", &encoder_with_float_ids())), S::ModelInvalid),
        ("malformed tokenizer.json", open(broken_model("tok", "tokenizer.json", b"{\"model\": 42")), S::ModelInvalid),
        ("malformed config.json", open(broken_model("cfg", "config.json", b"[1, 2")), S::ModelInvalid),
        ("missing model dir", open(cs("/nonexistent/model")), S::ModelFileMissing),
        // index files
        ("truncated index", load_index(good[..good.len() - 20].to_vec()), S::IndexFile),
        ("forged index size", load_index(forged), S::IndexFile),
        ("index of another version", load_index(wrong_version), S::IndexFile),
        ("not an index", load_index(b"PK\x03\x04 this is a zip, not an index".to_vec()), S::IndexFile),
        ("duplicate index id", Box::new(|f| unsafe { duet_index_add(f.index, 1, hello.as_ptr()) }), S::InvalidArgument),
        ("index text: NULL out", Box::new(|f| unsafe { duet_index_text(f.index, 1, null_mut()) }), S::NullPointer),
        ("index text: absent id", Box::new(|f| unsafe { duet_index_text(f.index, 424242, &mut null_mut()) }), S::InvalidArgument),
        ("index add_batch: NULL ids", Box::new(|f| unsafe { duet_index_add_batch(f.index, null(), inputs.as_ptr(), 1) }), S::NullPointer),
        (
            "index add_batch: an id twice, nothing added",
            Box::new(|f| unsafe {
                let (mut before, mut after) = (0usize, 0usize);
                duet_index_len(f.index, &mut before);
                let st = duet_index_add_batch(f.index, [7i64, 8, 7].as_ptr(), [hello.as_ptr(); 3].as_ptr(), 3);
                duet_index_len(f.index, &mut after);
                if before != after {
                    duet_status::Internal
                } else {
                    st
                }
            }),
            S::InvalidArgument,
        ),
        (
            "index search_with: k = 0",
            Box::new(|f| unsafe {
                duet_index_search_with(f.index, hello.as_ptr(), 0, null(), [0i64].as_mut_ptr(), [0f64].as_mut_ptr(), &mut 0)
            }),
            S::InvalidArgument,
        ),
        (
            "index search_with: blank query",
            Box::new(|f| unsafe {
                duet_index_search_with(f.index, blank.as_ptr(), 1, null(), [0i64].as_mut_ptr(), [0f64].as_mut_ptr(), &mut 0)
            }),
            S::InvalidArgument,
        ),
        ("params: search_mode unknown", set_str("search_mode", "semantic"), S::InvalidParam),
        (
            "embed_with_flags: NULL out",
            Box::new(|f| unsafe { duet_embed_with_flags(f.model, inputs.as_ptr(), 1, null(), null_mut(), 64, null_mut()) }),
            S::NullPointer,
        ),
        // handles
        (
            "params passed as a model",
            Box::new(|f| unsafe {
                duet_generate(f.params as *const duet_model, inputs.as_ptr(), 1, null(), None, null_mut(), &mut f.result)
            }),
            S::InvalidHandle,
        ),
        (
            "result used after free",
            Box::new(|f| unsafe {
                let mut r = null_mut();
                duet_generate(f.model, inputs.as_ptr(), 1, f.params, None, null_mut(), &mut r);
                duet_result_free(r);
                duet_result_text(r, 0, 0, &mut null())
            }),
            S::InvalidHandle,
        ),
        (
            "model freed twice",
            Box::new(|_| unsafe {
                let mut m = null_mut();
                duet_model_open(dir.as_ptr(), null(), &mut m);
                duet_model_free(m);
                duet_model_free(m);
                duet_model_info_json(m, &mut null_mut())
            }),
            S::InvalidHandle,
        ),
        (
            "string freed twice",
            Box::new(|f| unsafe {
                let mut s = null_mut();
                duet_model_info_json(f.model, &mut s);
                duet_string_free(s);
                duet_string_free(s);
                duet_status::Ok
            }),
            S::Ok,
        ),
        (
            "a pointer duet never made",
            Box::new(|_| unsafe { duet_params_set_int(0x1000 as *mut duet_params, c"num_beams".as_ptr(), 2) }),
            S::InvalidHandle,
        ),
    ];

    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (name, case, want) in &cases {
        let got = case(&mut f);
        unsafe {
            duet_result_free(f.result);
        }
        f.result = null_mut();
        report.push(format!("{:<40} {}", name, got.name()));
        if got != *want {
            let msg = unsafe { std::ffi::CStr::from_ptr(duet_last_error_message()) }.to_string_lossy().into_owned();
            failures.push(format!("{name}: got {}, want {} ({msg})", got.name(), want.name()));
        }
    }
    println!("{}", report.join("\n"));
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
    unsafe {
        duet_index_free(f.index);
        duet_params_free(f.params);
        duet_model_free(f.model);
    }
    let _ = std::fs::remove_file(&good_index);
}

/// The bundled embedding model through the C ABI: generation is DUET_STATUS_UNSUPPORTED, an index
/// of another model DUET_STATUS_INDEX_MODEL_MISMATCH, and truncation is reported per text.
#[test]
fn embedding_model_misuse_gets_its_status() {
    common::init_ort();
    let embedder = common::root().join("models/all-MiniLM-L6-v2");
    assert!(embedder.join("model.onnx").is_file(), "run `make models/all-MiniLM-L6-v2` (make test does)");
    let (embedder, t5) = (cs(embedder.to_str().unwrap()), cs(common::fixture("t5-tiny").to_str().unwrap()));
    let path = std::env::temp_dir().join(format!("duet-bad-{}-t5.idx", std::process::id()));
    let path_c = cs(path.to_str().unwrap());
    let hello = cs("hello");
    let long = cs(&"word ".repeat(300));
    unsafe {
        let (mut m, mut t, mut ix, mut result, mut reply) = (null_mut(), null_mut(), null_mut(), null_mut(), null_mut());
        assert_eq!(duet_model_open(embedder.as_ptr(), null(), &mut m), duet_status::Ok);
        assert_eq!(duet_generate(m, [hello.as_ptr()].as_ptr(), 1, null(), None, null_mut(), &mut result), duet_status::Unsupported);
        assert!(result.is_null(), "outputs are written only on success");
        assert_eq!(duet_summarize(m, hello.as_ptr(), null(), null(), &mut reply), duet_status::Unsupported);
        assert_eq!(duet_rerank(m, hello.as_ptr(), [hello.as_ptr()].as_ptr(), 1, null(), [0f64].as_mut_ptr()), duet_status::Unsupported);
        let mut v = vec![0f32; 2 * 384];
        let mut flags = [false; 2];
        assert_eq!(
            duet_embed_with_flags(m, [long.as_ptr(), hello.as_ptr()].as_ptr(), 2, null(), v.as_mut_ptr(), v.len(), flags.as_mut_ptr()),
            duet_status::InputTooLong
        );
        let mut p = null_mut();
        duet_params_new(&mut p);
        duet_params_set_bool(p, c"truncate_input".as_ptr(), true);
        assert_eq!(
            duet_embed_with_flags(m, [long.as_ptr(), hello.as_ptr()].as_ptr(), 2, p, v.as_mut_ptr(), v.len(), flags.as_mut_ptr()),
            duet_status::Ok
        );
        assert_eq!(flags, [true, false]);
        duet_params_free(p);

        assert_eq!(duet_model_open(t5.as_ptr(), null(), &mut t), duet_status::Ok);
        assert_eq!(duet_index_new(t, null(), &mut ix), duet_status::Ok);
        assert_eq!(duet_index_add(ix, 1, hello.as_ptr()), duet_status::Ok);
        assert_eq!(duet_index_save(ix, path_c.as_ptr()), duet_status::Ok);
        let mut other = null_mut();
        assert_eq!(duet_index_load(m, path_c.as_ptr(), null(), &mut other), duet_status::IndexModelMismatch);
        assert!(other.is_null());
        let msg = std::ffi::CStr::from_ptr(duet_last_error_message()).to_string_lossy().into_owned();
        assert!(msg.contains("wide"), "{msg}");
        duet_index_free(ix);
        duet_model_free(t);
        duet_model_free(m);
    }
    let _ = std::fs::remove_file(&path);
}

/// ByT5 tokenizes bytes, but its input is still text: bytes that are not UTF-8 (a stray byte, a
/// character cut short) are `INVALID_UTF8`, and the same text as valid UTF-8 generates as in Rust.
#[test]
fn byt5_input_must_be_utf8() {
    common::init_ort();
    let dir = cs(common::fixture("byt5-tiny").to_str().unwrap());
    let (mut model, mut params, mut result) = (null_mut(), null_mut(), null_mut());
    unsafe {
        assert_eq!(duet_model_open(dir.as_ptr(), null(), &mut model), duet_status::Ok);
        assert_eq!(duet_params_new(&mut params), duet_status::Ok);
        assert_eq!(duet_params_set_int(params, c"max_new_tokens".as_ptr(), 8), duet_status::Ok);
        for bad in [&b"caf\xc3\0"[..], b"\xff ok\0", b"\xe4\xb8\x68\0"] {
            let st = duet_generate(model, [bad.as_ptr() as *const c_char].as_ptr(), 1, params, None, null_mut(), &mut result);
            assert_eq!(st, duet_status::InvalidUtf8, "{bad:?}");
            assert!(result.is_null());
        }
        let good = cs("café 你好");
        assert_eq!(duet_generate(model, [good.as_ptr()].as_ptr(), 1, params, None, null_mut(), &mut result), duet_status::Ok);
        let mut text = null();
        assert_eq!(duet_result_text(result, 0, 0, &mut text), duet_status::Ok);
        let ours = std::ffi::CStr::from_ptr(text).to_str().unwrap().to_string();
        let rust = common::shared("byt5-tiny", "merged");
        let mut s = duet::new_generation_settings();
        s.set_int("max_new_tokens", 8).unwrap();
        assert_eq!(ours, duet::generate(&rust, &["café 你好"], &s, None).unwrap()[0].sequences[0].text);
        duet_result_free(result);
        duet_params_free(params);
        duet_model_free(model);
    }
}
