//! The `duet` command line: JSON shape, info, and one-line errors with a non-zero exit.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output};

fn duet(args: &[&str]) -> Output {
    common::cli(args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn generate_json_matches_the_library() {
    let model = common::fixture("t5-tiny");
    let model = model.to_str().unwrap();
    let out = duet(&["generate", "--model", model, "--json", "--set", "num_beams=2", "--set", "max_new_tokens=8", "hello there", "你好"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["input"], "你好");

    let lib = common::shared("t5-tiny", "merged");
    let mut s = duet::new_generation_settings();
    s.set_int("num_beams", 2).unwrap();
    s.set_int("max_new_tokens", 8).unwrap();
    let expected = duet::generate(&lib, &["hello there", "你好"], &s, None).unwrap();
    for (r, e) in results.iter().zip(&expected) {
        let seq = &r["sequences"][0];
        let ids: Vec<u32> = seq["token_ids"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
        assert_eq!(ids, e.sequences[0].token_ids);
        assert_eq!(seq["text"], e.sequences[0].text.as_str());
        assert!((seq["score"].as_f64().unwrap() as f32 - e.sequences[0].score).abs() < 1e-6);
        assert_eq!(r["finish_reason"], e.finish_reason().as_str());
    }
}

#[test]
fn info_reports_what_was_detected() {
    let model = common::fixture("bart-tiny");
    let out = duet(&["info", "--model", model.to_str().unwrap(), "--option", "layout=split"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["architecture"], "bart");
    assert_eq!(v["layout"], "split");
    assert_eq!(v["execution_provider"], "CPUExecutionProvider");
    assert!(v["decoder_layers"].as_u64().unwrap() >= 1);
    assert!(v["onnxruntime_version"].as_str().unwrap().starts_with("1."));
}

fn assert_one_line_error(o: &Output, words: &str) {
    assert!(!o.status.success());
    let err = stderr(o);
    assert!(err.lines().count() == 1, "expected one line on stderr, got: {err}");
    assert!(err.contains(words), "expected `{words}` in: {err}");
}

#[test]
fn errors_are_one_line_and_non_zero() {
    let model = common::fixture("t5-tiny");
    let model = model.to_str().unwrap();
    assert_one_line_error(&duet(&["generate", "--model", model, "--set", "beams=2", "x"]), "unknown parameter `beams`");
    assert_one_line_error(&duet(&["generate", "--model", model, "--set", "top_p=2", "x"]), "top_p");
    assert_one_line_error(&duet(&["generate", "--model", "/nonexistent", "x"]), "/nonexistent");

    let bad = Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(["generate", "--model", model])
        .arg(std::ffi::OsStr::from_bytes(b"\xff\xfe"))
        .env("DUET_ORT_LIBRARY", common::ort_library())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("invalid UTF-8"), "{}", stderr(&bad));
}

#[test]
fn missing_onnx_runtime_names_every_place_tried() {
    let model = common::fixture("t5-tiny");
    let out = Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(["info", "--model", model.to_str().unwrap()])
        .env("DUET_ORT_LIBRARY", "/nonexistent/libonnxruntime.so")
        .env("ORT_DYLIB_PATH", "/also/missing/libonnxruntime.so")
        .env("LD_LIBRARY_PATH", "")
        .output()
        .unwrap();
    assert_one_line_error(&out, "ONNX Runtime library not found");
    let err = stderr(&out);
    for place in [
        "/nonexistent/libonnxruntime.so",
        "/also/missing/libonnxruntime.so",
        "next to the duet library",
        "the lib folder beside",
        "system loader",
    ] {
        assert!(err.contains(place), "`{place}` not named in: {err}");
    }
    assert!(err.contains("Set DUET_ORT_LIBRARY"), "the error says how to fix it: {err}");
}

/// An explicit `ort_library` that fails is the error; `$DUET_ORT_LIBRARY` does not stand in for it.
#[test]
fn an_explicit_onnx_runtime_path_is_not_replaced() {
    let model = common::fixture("t5-tiny");
    let out = duet(&["info", "--model", model.to_str().unwrap(), "--option", "ort_library=/nonexistent/explicit/libonnxruntime.so"]);
    assert_one_line_error(&out, "ONNX Runtime library not found");
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/explicit/libonnxruntime.so (path given by the host)"), "{err}");
    assert!(!err.contains("$DUET_ORT_LIBRARY"), "nothing else was tried: {err}");
}

/// `duet search ... | head -1`: the closed pipe ends the CLI quietly, never with a panic.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    use std::io::Read;
    let model = common::fixture("t5-tiny");
    let mut child = spawn_piped(&["rerank", "--model", model.to_str().unwrap(), "--query", "q", "-"]);
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..2000 {
            writeln!(stdin, "passage number {i} about rivers and storms").unwrap();
        }
    }
    drop(child.stdout.take()); // the reader goes away before the output comes
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
    assert_ne!(status.code(), Some(101), "exit 101 is a Rust panic: {err}");
    assert!(!status.success(), "a broken pipe is not a success");
}

/// A stdout that cannot be written (`> /dev/full`): every kind of command, help included, says so
/// in one line and exits 2; none succeeds or panics.
#[test]
fn an_unwritable_stdout_is_an_error_for_every_command() {
    let model = common::fixture("t5-tiny");
    let model = model.to_str().unwrap();
    let byt5 = common::fixture("byt5-tiny");
    let text = std::env::temp_dir().join(format!("duet-cli-full-{}.txt", std::process::id()));
    std::fs::write(&text, "Hello.\n").unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["--version"],
        vec!["generate", "--help"],
        vec!["options"],
        vec!["params", "generate"],
        vec!["info", "--model", model],
        vec!["generate", "--model", model, "--set", "max_new_tokens=4", "hello"],
        vec!["generate", "--model", byt5.to_str().unwrap(), "--stream", "--set", "max_new_tokens=4", "hello"],
        vec!["embed", "--model", model, "hello"],
        vec!["translate", "--model", model, "--to", "de", text.to_str().unwrap()],
        vec!["summarize", "--model", model, text.to_str().unwrap()],
    ];
    for args in commands {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_duet"))
            .args(&args)
            .env("DUET_ORT_LIBRARY", common::ort_library())
            .stdout(full)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("writing the output") && err.lines().count() == 1 && !err.contains("panicked"), "{args:?}: {err}");
    }
    let _ = std::fs::remove_file(text);
}

#[test]
fn too_old_onnx_runtime_is_refused() {
    // A library that answers OrtGetApiBase with an old version string.
    let dir = std::env::temp_dir().join(format!("duet-fake-ort-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("fake.c");
    std::fs::write(
        &src,
        "typedef struct { const void *(*get_api)(unsigned); const char *(*get_version)(void); } Base;\n\
         static const void *api(unsigned v) { (void)v; return 0; }\n\
         static const char *ver(void) { return \"1.16.0\"; }\n\
         static const Base base = { api, ver };\n\
         const Base *OrtGetApiBase(void) { return &base; }\n",
    )
    .unwrap();
    let lib = dir.join("libonnxruntime.so");
    let cc = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&lib).arg(&src).status().unwrap();
    assert!(cc.success());
    let model = common::fixture("t5-tiny");
    let out = Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(["info", "--model", model.to_str().unwrap()])
        .env("DUET_ORT_LIBRARY", &lib)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_one_line_error(&out, "too old");
    assert!(stderr(&out).contains("1.16.0"), "{}", stderr(&out));
}

/// The CLI with standard input, output and error all piped.
fn spawn_piped(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(args)
        .env("DUET_ORT_LIBRARY", common::ort_library())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn duet_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = spawn_piped(args);
    // A command refused before it reads its input exits first: the write then fails, and only
    // the exit status and the output matter.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

#[test]
fn task_commands_work_from_pipes_and_files() {
    let model = common::fixture("t5-tiny");
    let model = model.to_str().unwrap();
    // chat from a pipe: one streamed reply per line, /reset understood
    let out = duet_stdin(&["chat", "--model", model, "--set", "max_new_tokens=6"], "hello\n/reset\nhow are you?\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert!(stderr(&out).contains("reset"));
    // summarize from standard input, as JSON
    let out = duet_stdin(
        &["summarize", "--model", model, "--json", "--set", "max_new_tokens=8", "-"],
        "The river flooded the fields. 今天很好。",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["chunks"].as_u64(), v["levels"].as_u64()), (Some(1), Some(1)));
    // rerank a file of passages, one score per line
    let dir = std::env::temp_dir().join(format!("duet-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let passages = dir.join("passages.txt");
    std::fs::write(&passages, "frogs live near rivers\ntrains leave every hour\n").unwrap();
    let out = duet(&["rerank", "--model", model, "--query", "where do frogs live", "--json", passages.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["scores"].as_array().unwrap().len(), 2);
    // index then search
    let index = dir.join("passages.idx");
    assert!(duet(&["index", "--model", model, "--index", index.to_str().unwrap(), passages.to_str().unwrap()]).status.success());
    let out =
        duet(&["search", "--model", model, "--index", index.to_str().unwrap(), "--query", "frogs live near rivers", "--k", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hits"][0]["id"], 1, "{v}");
    // embed prints unit vectors
    let out = duet(&["embed", "--model", model, "--json", "one", "two"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first: Vec<f64> = v["embeddings"][0].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert!((first.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-4);
    // assist streams one answer
    assert!(duet(&["assist", "--model", model, "--set", "max_new_tokens=4", "Why?"]).status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `timeout_ms` holds on the command line as through the C ABI (one implementation: the core's
/// limits), for generation and for embedding.
#[test]
fn the_cli_honours_timeout_ms() {
    let model = common::fixture("t5-tiny");
    let model = model.to_str().unwrap();
    let started = std::time::Instant::now();
    let out = duet(&[
        "generate",
        "--model",
        model,
        "--set",
        "timeout_ms=5",
        "--set",
        "max_new_tokens=2000",
        "--set",
        "min_new_tokens=2000",
        "hi",
    ]);
    assert_one_line_error(&out, "deadline exceeded after 5 ms");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let ok = duet(&["generate", "--model", model, "--set", "timeout_ms=60000", "--set", "max_new_tokens=4", "hi"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let texts: Vec<String> = (0..3000).map(|i| format!("text number {i}")).collect();
    let mut args = vec!["embed", "--model", model, "--set", "timeout_ms=1"];
    args.extend(texts.iter().map(String::as_str));
    assert_one_line_error(&duet(&args), "deadline exceeded after 1 ms");
}

/// The command line on clap: help with an example for every command, `--flag=value` forms, unknown
/// flags and keys of other commands refused per command, plain output by default, --jsonl.
#[test]
fn commands_have_help_and_refuse_what_does_not_apply() {
    let model = common::fixture("t5-tiny");
    let model = model.to_str().unwrap();
    for cmd in ["generate", "summarize", "chat", "assist", "embed", "rerank", "index", "search", "info", "params", "options", "bench"] {
        let out = duet(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Example"), "`duet {cmd} --help` shows an example: {help}");
    }
    let out = duet(&["generate", "--model", model, "--set", "summary_length=short", "hi"]);
    assert_one_line_error(&out, "`summary_length` does not apply to `duet generate`");
    assert_eq!(out.status.code(), Some(2));
    assert_one_line_error(&duet(&["embed", "--model", model, "--set", "num_beams=2", "hi"]), "does not apply to `duet embed`");
    assert_one_line_error(&duet(&["generate", "--model", model, "--k", "3", "hi"]), "unexpected argument '--k'");
    assert_one_line_error(&duet(&["generate", "--model", model, "--stream", "a", "b"]), "--stream takes one input");
    // --model=DIR, plain text: one line per input; --jsonl: one object per line.
    let model_flag = format!("--model={model}");
    let plain = duet(&["generate", &model_flag, "--set=max_new_tokens=4", "a", "b"]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert_eq!(String::from_utf8_lossy(&plain.stdout).lines().count(), 2);
    let jsonl = duet(&["generate", "--model", model, "--set", "max_new_tokens=4", "--jsonl", "a", "b"]);
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&jsonl.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["input"], "b");
    // duet params: every key with the commands it applies to and its default.
    let params = String::from_utf8_lossy(&duet(&["params", "summarize"]).stdout).to_string();
    assert!(params.lines().any(|l| l.starts_with("summary_length") && l.contains("(default medium)")), "{params}");
    assert!(!params.contains("search_mode"), "search keys are not summarize's");
    let all = String::from_utf8_lossy(&duet(&["params"]).stdout).to_string();
    assert!(
        all.lines()
            .any(|l| l.starts_with("num_beams") && l.contains("generate,summarize,translate,chat,assist") && l.contains("default 1")),
        "{all}"
    );
}

/// `duet index`: ids are line numbers, blank lines counted; a second file continues after the first.
#[test]
fn index_ids_are_line_numbers() {
    let model = common::fixture("t5-tiny");
    let model = model.to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("duet-cli-ids-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b, index) = (dir.join("a.txt"), dir.join("b.txt"), dir.join("x.idx"));
    std::fs::write(&a, "first line\n\n\nfourth line\n").unwrap();
    std::fs::write(&b, "\nsecond of b\n").unwrap();
    let out = duet(&["index", "--model", model, "--index", index.to_str().unwrap(), a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let search = |q: &str| {
        let out = duet(&["search", "--model", model, "--index", index.to_str().unwrap(), "--mode", "keyword", "--json", "--query", q]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["hits"][0]["id"].as_i64().unwrap(), v["hits"][0]["text"].as_str().unwrap().to_string())
    };
    assert_eq!(search("fourth"), (4, "fourth line".to_string()));
    assert_eq!(search("second"), (6, "second of b".to_string()), "b's line 2 follows a's 4 lines");
    let more = duet(&["index", "--model", model, "--index", index.to_str().unwrap(), "-"]);
    assert!(!more.status.success(), "no passages from an empty standard input");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A chat message over the input limit is reported and the chat goes on; /help answers on stderr.
#[test]
fn chat_reports_an_over_long_message_and_goes_on() {
    let model = common::fixture("t5-tiny");
    let long = "word ".repeat(5000);
    let out = duet_stdin(&["chat", "--model", model.to_str().unwrap(), "--set", "max_new_tokens=4"], &format!("/help\n{long}\nhello\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("/reset") && err.contains("longer than the limit"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1, "the next message is answered");
}

/// --progress gives progress lines on a stderr that is not a terminal; without it nothing.
#[test]
fn progress_lines_only_when_asked() {
    let model = common::fixture("t5-tiny");
    let model = model.to_str().unwrap();
    let texts: Vec<String> = (0..600).map(|i| format!("text {i}")).collect();
    let mut args = vec!["embed", "--model", model, "--progress"];
    args.extend(texts.iter().map(String::as_str));
    let out = duet(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("embedding: 600/600"), "{}", stderr(&out));
    args.remove(3);
    assert!(stderr(&duet(&args)).is_empty());
}

/// `duet translate` gives the Hugging Face recipe's translation (translation_goldens.json) for
/// each family, and refuses bad codes and models that do not translate in one line.
#[test]
fn translate_matches_the_goldens_and_names_bad_codes() {
    let goldens: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::fixture("translation_goldens.json")).unwrap()).unwrap();
    for g in goldens["translations"].as_array().unwrap().iter().step_by(3) {
        let dir = common::fixture(g["model"].as_str().unwrap());
        let mut args =
            vec!["translate".to_string(), "--model".into(), dir.display().to_string(), "--to".into(), g["to"].as_str().unwrap().into()];
        if let Some(from) = g["from"].as_str() {
            args.extend(["--from".to_string(), from.into()]);
        }
        for (k, v) in g["params"].as_object().unwrap() {
            args.extend(["--set".to_string(), format!("{k}={v}")]);
        }
        args.push("--json".into());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = duet_stdin(&refs, g["text"].as_str().unwrap());
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((&v["translation"], v["chunks"].as_u64()), (&g["translation"], Some(1)), "{g}");
    }
    let nllb = common::fixture("nllb-tiny");
    let nllb = nllb.to_str().unwrap();
    assert_one_line_error(&duet_stdin(&["translate", "--model", nllb, "--to", "xx_Nope"], "Hello."), "unknown language `xx_Nope`");
    assert_one_line_error(&duet_stdin(&["translate", "--model", nllb], "Hello."), "name the target");
    assert_one_line_error(
        &duet_stdin(&["translate", "--model", nllb, "--to", "fr", "--set", "summary_length=short"], "Hello."),
        "does not apply",
    );
    let bart = common::fixture("bart-tiny");
    assert_one_line_error(&duet_stdin(&["translate", "--model", bart.to_str().unwrap(), "--to", "fr"], "Hello."), "does not translate");
    let info = duet(&["info", "--model", nllb]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["translation"]["languages"].as_array().map(Vec::len), Some(202));
}
