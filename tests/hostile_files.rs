//! Model directories and index paths that are not regular files: a FIFO (opening it would block
//! until a writer comes), a device (`/dev/zero` never ends), an oversized config. Each is refused
//! at once with its status, through the C ABI and the CLI; and parameters no machine can honour.

mod common;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};
use std::time::{Duration, Instant};

use duet::ffi::*;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("duet-hostile-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(common::fixture("t5-tiny")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    dir
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

fn open_status(dir: &Path) -> (duet_status, String) {
    let c = CString::new(dir.to_str().unwrap()).unwrap();
    let mut m = null_mut();
    // SAFETY: valid arguments; the model is freed.
    unsafe {
        let st = duet_model_open(c.as_ptr(), null(), &mut m);
        let msg = std::ffi::CStr::from_ptr(duet_last_error_message()).to_string_lossy().into_owned();
        duet_model_free(m);
        (st, msg)
    }
}

#[test]
fn special_files_in_a_model_directory_are_refused_at_once() {
    common::init_ort();
    let started = Instant::now();
    for file in ["config.json", "tokenizer.json", "generation_config.json", "encoder_model.onnx", "tokenizer_config.json"] {
        let dir = scratch(&file.replace('.', "-"));
        mkfifo(&dir.join(file));
        let (st, msg) = open_status(&dir);
        if file == "tokenizer_config.json" {
            // Optional: a FIFO there is skipped (never opened), the model opens.
            assert_eq!(st, duet_status::Ok, "{file}: {msg}");
        } else {
            assert_eq!(st, duet_status::ModelInvalid, "{file}: {msg}");
            assert!(msg.contains("not a regular file") && msg.contains(file), "{file}: {msg}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let dir = scratch("huge-config");
    std::fs::write(dir.join("generation_config.json"), vec![b' '; (16 << 20) + 1]).unwrap();
    let (st, msg) = open_status(&dir);
    assert_eq!(st, duet_status::ModelInvalid);
    assert!(msg.contains("more than the"), "{msg}");
    let dir2 = scratch("device");
    std::fs::remove_file(dir2.join("config.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir2.join("config.json")).unwrap();
    assert_eq!(open_status(&dir2).0, duet_status::ModelInvalid);
    for d in [dir, dir2] {
        let _ = std::fs::remove_dir_all(d);
    }
    assert!(started.elapsed() < Duration::from_secs(60), "nothing blocked");
}

#[test]
fn index_paths_that_are_not_files_are_refused() {
    common::init_ort();
    let dir = scratch("index");
    let model = duet::Model::open(common::fixture("t5-tiny")).unwrap();
    let fifo = dir.join("fifo.idx");
    mkfifo(&fifo);
    for path in [fifo.as_path(), Path::new("/dev/zero")] {
        let e = duet::tasks::index::Index::load_for(&model, path).err().expect("refused");
        assert!(matches!(e, duet::Error::IndexFile { .. }) && e.to_string().contains("not a regular file"), "{e}");
    }
    // The CLI, the same.
    let out = common::cli(&[
        "search",
        "--model",
        common::fixture("t5-tiny").to_str().unwrap(),
        "--index",
        fifo.to_str().unwrap(),
        "--query",
        "q",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn parameters_no_machine_can_honour_are_refused() {
    let mut p = duet::new_generation_settings();
    // 1e-300 is 0 as a float32: sampling would divide by zero and pick token 0 forever.
    assert!(matches!(p.set_float("temperature", 1e-300), Err(duet::Error::InvalidParam { .. })));
    assert!(p.set_float("temperature", 1e-30).is_ok());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let mut o = duet::new_model_options();
    assert!(o.set_int("intra_threads", cores).is_ok());
    let e = o.set_int("intra_threads", cores + 1).unwrap_err();
    assert!(e.to_string().contains("usable cores"), "{e}");
}

/// Nothing after a run of white space is dropped silently: the text either fits whole (white
/// space makes no tokens) or is refused / reported as truncated.
#[test]
fn a_long_run_of_white_space_drops_nothing_silently() {
    common::init_ort();
    for fixture in ["t5-tiny", "bart-tiny"] {
        let model = duet::Model::open(common::fixture(fixture)).unwrap();
        let tok = &model.tokenizer;
        let text = format!("start{}the end of the text", " ".repeat(200_000));
        let tail = tok.encode("the end of the text", None, false, 0).unwrap().ids;
        let tail_core: Vec<u32> = tail.iter().copied().filter(|t| tok.decode(&[*t]).is_ok_and(|s| !s.trim().is_empty())).collect();
        match tok.encode(&text, Some(512), false, 0) {
            Ok(e) => {
                assert!(!e.truncated);
                let found = tail_core.iter().all(|t| e.ids.contains(t));
                assert!(found, "{fixture}: the words after the white space are in the ids");
            }
            Err(duet::Error::InputTooLong { .. }) => {}
            Err(e) => panic!("{fixture}: {e}"),
        }
        let cut = tok.encode(&text, Some(512), true, 0).unwrap();
        assert!(cut.ids.len() <= 512);
        // A limit that leaves no room beside the special tokens is an error, not an over-long input.
        let e = tok.encode("hello world", Some(1), true, 0).err();
        if fixture == "bart-tiny" {
            assert!(matches!(e, Some(duet::Error::InvalidParam { .. })), "{fixture}: {e:?}");
        }
    }
}

/// Every token suppressed: greedy, beam search, summarize and chat say so (INVALID_ARGUMENT)
/// instead of returning no sequence, tokens at -inf, or a panic; the CLI exits 1, never 101.
#[test]
fn a_vocabulary_with_nothing_left_is_an_error() {
    common::init_ort();
    let model = duet::Model::open(common::fixture("t5-tiny")).unwrap();
    let all: Vec<String> = (0..model.vocab_size()).map(|i| i.to_string()).collect();
    let list = format!("[{}]", all.join(","));
    for beams in ["1", "3"] {
        let mut p = duet::new_generation_settings();
        p.set_str("suppress_tokens", &list).unwrap();
        p.set_str("num_beams", beams).unwrap();
        p.set_int("max_new_tokens", 4).unwrap();
        let Err(e) = duet::generate(&model, &["hello"], &p, None) else { panic!("beams {beams}: generated with nothing to generate") };
        assert!(matches!(e, duet::Error::InvalidArgument(_)) && e.to_string().contains("every token is forbidden"), "beams {beams}: {e}");
        let Err(e) = duet::tasks::summarize::summarize(&model, "A text. Another sentence.", &p, None, None) else {
            panic!("beams {beams}: summarized with nothing to generate")
        };
        assert!(matches!(e, duet::Error::InvalidArgument(_)), "{e}");
    }
    let out = common::cli(&[
        "summarize",
        "--model",
        common::fixture("t5-tiny").to_str().unwrap(),
        "--set",
        &format!("suppress_tokens={list}"),
        common::root().join("README.md").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("every token is forbidden") && !err.contains("panicked") && err.lines().count() == 1, "{err}");
}
