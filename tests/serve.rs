//! `duet serve` end to end: the server started on a free loopback port, every endpoint called
//! over HTTP (answers compared with the library's own), streaming, the limits (body size, inputs,
//! queue, task gate, deadline), a client that goes away, auth, and a clean stop on SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Server {
    child: Child,
    address: String,
    log: std::sync::Mutex<mpsc::Receiver<String>>,
}

impl Server {
    fn start(model: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        common::init_ort();
        let ort = common::ort_library();
        let mut command = Command::new(env!("CARGO_BIN_EXE_duet"));
        command.args(["serve", "--model", model.to_str().unwrap(), "--port", "0"]).args(args).env("DUET_ORT_LIBRARY", ort);
        command.env_remove("DUET_API_KEY");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start duet serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = log.recv_timeout(Duration::from_secs(60)).expect("duet serve says where it listens");
        let address =
            first.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_else(|| panic!("no address in `{first}`"));
        Server { child, address: address.to_string(), log: std::sync::Mutex::new(log) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(120))).build().into()
    }

    fn post_with(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value, Option<String>) {
        let mut request = Self::agent().post(self.url(path)).header("Content-Type", "application/json");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut response = request.send(body).expect("the server answers");
        let status = response.status().as_u16();
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let text = response.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), retry)
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, value, _) = self.post_with(path, &body.to_string(), &[]);
        (status, value)
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut request = Self::agent().get(self.url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut response = request.call().expect("the server answers");
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
    }

    /// One metric's value (the first series of that name).
    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics", &[]);
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }

    /// The `data:` payloads of a server-sent event stream.
    fn stream(&self, body: Value) -> Vec<Value> {
        let mut response = Self::agent().post(self.url("/generate_stream")).send(body.to_string()).unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert!(response.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/event-stream"));
        let reader = BufReader::new(response.body_mut().as_reader());
        reader
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("data:").map(|d| serde_json::from_str(d.trim()).unwrap()))
            .collect()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "duet serve did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn library_model(dir: &Path) -> duet::Model {
    common::init_ort();
    duet::Model::open(dir).unwrap()
}

fn settings(pairs: &[(&str, i64)]) -> duet::Settings {
    let mut s = duet::new_generation_settings();
    for (k, v) in pairs {
        s.set_int(k, *v).unwrap();
    }
    s
}

/// A request that decodes for a long time (tiny model: about a millisecond a step).
fn long_request() -> Value {
    json!({"inputs": "Hello", "parameters": {"max_new_tokens": 20000, "min_new_tokens": 20000}})
}

fn document(chars: usize) -> String {
    let sentences = [
        "The river rose after the storm.",
        "The council met in the library.",
        "Farmers moved their animals to higher ground.",
        "The market opened late on Tuesday.",
    ];
    let mut text = String::new();
    let mut i = 0;
    while text.len() < chars {
        text.push_str(sentences[i % sentences.len()]);
        text.push(' ');
        i += 1;
    }
    text
}

#[test]
fn generate_endpoints_answer_as_the_library_does() {
    let dir = common::fixture("t5-tiny");
    let server = Server::start(&dir, &[], &[]);
    let model = library_model(&dir);
    let texts = ["translate English to German: Hello.", "你好，世界 🙂"];
    let expected = duet::generate(&model, &texts, &settings(&[("max_new_tokens", 12), ("num_beams", 2)]), None).unwrap();

    let (status, one) =
        server.post("/generate", json!({"inputs": texts[0], "parameters": {"max_new_tokens": 12, "num_beams": 2, "details": true}}));
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["generated_text"], json!(expected[0].sequences[0].text));
    assert_eq!(one["details"]["sequences"][0]["token_ids"], json!(expected[0].sequences[0].token_ids));
    assert_eq!(one["details"]["finish_reason"], json!("length"));
    assert_eq!(one["details"]["generated_tokens"], json!(12));

    let (status, many) = server.post("/generate", json!({"inputs": texts, "parameters": {"max_new_tokens": 12, "num_beams": 2}}));
    assert_eq!(status, 200, "{many}");
    let got: Vec<&str> = many.as_array().unwrap().iter().map(|a| a["generated_text"].as_str().unwrap()).collect();
    assert_eq!(got, expected.iter().map(|o| o.sequences[0].text.as_str()).collect::<Vec<_>>());

    // What text-generation-inference clients send: every parameter, null when unset.
    let tgi = json!({"inputs": texts[0], "parameters": {"best_of": null, "details": false, "decoder_input_details": false, "max_new_tokens": 12,
        "repetition_penalty": null, "return_full_text": false, "seed": null, "stop": [], "temperature": null, "top_k": null, "top_n_tokens": null,
        "top_p": null, "truncate": null, "typical_p": null, "watermark": false, "do_sample": false, "num_beams": 2}, "stream": false});
    let (status, root) = server.post("/", tgi);
    assert_eq!(status, 200, "{root}");
    assert_eq!(root["generated_text"], one["generated_text"]);

    // The stream's pieces add up to the text /generate returns; the last event says it all.
    let greedy = duet::generate(&model, &texts[1..], &settings(&[("max_new_tokens", 10)]), None).unwrap();
    let events = server.stream(json!({"inputs": texts[1], "parameters": {"max_new_tokens": 10}}));
    assert!(events.len() >= 2, "{events:?}");
    let pieces: String = events.iter().map(|e| e["token"]["text"].as_str().unwrap()).collect();
    let last = events.last().unwrap();
    assert_eq!(pieces, greedy[0].sequences[0].text);
    assert_eq!(last["generated_text"], json!(greedy[0].sequences[0].text));
    assert_eq!(last["details"]["generated_tokens"], json!(10));
    assert!(events[..events.len() - 1].iter().all(|e| e["generated_text"].is_null()));
    // Each piece names the token that completed it (a token whose text is not decided alone, such
    // as part of a character, joins the next piece): the ids are the generated ones, in order.
    let mut generated = greedy[0].sequences[0].token_ids.iter();
    for id in events.iter().filter_map(|e| e["token"]["id"].as_u64()) {
        assert!(generated.any(|&g| g as u64 == id), "piece token {id} is not next among the generated ids");
    }

    let (status, streamed_root, _) =
        server.post_with("/", &json!({"inputs": texts[1], "parameters": {"max_new_tokens": 10}, "stream": true}).to_string(), &[]);
    assert_eq!(status, 200);
    assert!(streamed_root.as_str().unwrap().contains("\"generated_text\""), "{streamed_root}");

    assert!(server.metric("duet_generated_tokens_total") >= 12.0 * 3.0 + 20.0);
    assert!(server.metric("duet_decoder_steps_total") > 0.0);
}

#[test]
fn summarize_embed_and_rerank_answer_as_the_library_does() {
    let dir = common::fixture("t5-tiny");
    let server = Server::start(&dir, &[], &[]);
    let model = library_model(&dir);

    // A document over the input limit: map-reduce, generated through the scheduler.
    let doc = document(4000);
    let params = settings(&[("max_new_tokens", 16), ("min_new_tokens", 2)]);
    let expected = duet::tasks::summarize::summarize(&model, &doc, &params, None, None).unwrap();
    assert!(expected.chunks > 1, "the document must need map-reduce");
    let (status, s) = server.post("/summarize", json!({"inputs": doc, "parameters": {"max_new_tokens": 16, "min_new_tokens": 2}}));
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["summary_text"], json!(expected.text));
    assert_eq!(s["chunks"], json!(expected.chunks));
    assert_eq!(s["levels"], json!(expected.levels));

    let texts = ["a tool to compress files", "an image viewer", "a text editor for the terminal"];
    let vectors = duet::tasks::embed::embed(&model, &texts, &duet::new_generation_settings()).unwrap();
    let (status, got) = server.post("/embed", json!({"inputs": texts}));
    assert_eq!(status, 200, "{got}");
    let got: Vec<Vec<f32>> = serde_json::from_value(got).unwrap();
    assert_eq!(got.len(), 3);
    for (g, e) in got.iter().zip(&vectors) {
        assert_eq!(g.len(), e.len());
        assert!(g.iter().zip(e).all(|(a, b)| (a - b).abs() < 1e-5), "embeddings differ from the library's");
    }
    let (status, single) = server.post("/embed", json!({"inputs": texts[0]}));
    assert_eq!(status, 200);
    assert_eq!(single.as_array().unwrap().len(), 1);

    let query = "compress files";
    let scores = duet::tasks::rerank::rerank(&model, query, &texts, &duet::new_generation_settings()).unwrap();
    let (status, ranked) = server.post("/rerank", json!({"query": query, "texts": texts, "raw_scores": true, "return_text": true}));
    assert_eq!(status, 200, "{ranked}");
    let ranked = ranked.as_array().unwrap();
    assert_eq!(ranked.len(), 3);
    let mut order: Vec<usize> = (0..3).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    for (r, &i) in ranked.iter().zip(&order) {
        assert_eq!(r["index"], json!(i));
        assert!((r["score"].as_f64().unwrap() - scores[i] as f64).abs() < 1e-4);
        assert_eq!(r["text"], json!(texts[i]));
    }
    let (_, probabilities) = server.post("/rerank", json!({"query": query, "texts": texts}));
    for r in probabilities.as_array().unwrap() {
        let p = r["score"].as_f64().unwrap();
        let i = r["index"].as_u64().unwrap() as usize;
        assert!((p - (scores[i] as f64).exp()).abs() < 1e-6 && p > 0.0 && p < 1.0, "{r}");
    }

    let (status, info) = server.get("/info", &[]);
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["architecture"], json!("t5"));
    assert_eq!(info["server"]["max_inputs"], json!(256));
    assert_eq!(server.get("/health", &[]), (200, json!({"status": "ok"}).to_string()));
}

#[test]
fn bad_requests_get_the_c_abi_messages() {
    let dir = common::fixture("t5-tiny");
    let server = Server::start(&dir, &["--max-body-bytes", "4096", "--max-inputs", "4", "--option", "memory_budget_mb=1"], &[]);
    let cases = [
        (json!({"inputs": "x", "parameters": {"num_beams": 0}}), "DUET_STATUS_INVALID_PARAM", "num_beams"),
        (json!({"inputs": "x", "parameters": {"bogus": 1}}), "DUET_STATUS_UNKNOWN_PARAM", "unknown parameter `bogus`"),
        (
            json!({"inputs": "x", "parameters": {"summary_length": "short"}}),
            "DUET_STATUS_INVALID_PARAM",
            "does not apply to `POST /generate`",
        ),
        (json!({"inputs": "x", "parameters": {"watermark": true}}), "DUET_STATUS_INVALID_ARGUMENT", "`watermark` is not supported"),
        (json!({"inputs": []}), "DUET_STATUS_INVALID_ARGUMENT", "`inputs` is empty"),
        (json!({"text": "x"}), "DUET_STATUS_INVALID_ARGUMENT", "not valid JSON for this endpoint"),
    ];
    for (body, name, says) in cases {
        let (status, answer) = server.post("/generate", body.clone());
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["status"], json!(name), "{body} -> {answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{body} -> {answer}");
    }
    // The same message the core gives (and the C ABI's duet_last_error_message).
    let core = duet::new_generation_settings().clone().set_int("num_beams", 0).unwrap_err().to_string();
    assert_eq!(server.post("/generate", json!({"inputs": "x", "parameters": {"num_beams": 0}})).1["error"], json!(core));

    let (status, answer, _) = server.post_with("/generate", "{\"inputs\": ", &[]);
    assert_eq!(status, 400, "{answer}");
    let (status, answer, _) = server.post_with("/generate", &json!({"inputs": "x".repeat(5000)}).to_string(), &[]);
    assert_eq!(status, 413, "{answer}");
    let (status, answer) = server.post("/embed", json!({"inputs": ["a", "b", "c", "d", "e"]}));
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("at most 4"), "{answer}");
    let (status, answer) = server.post("/generate", json!({"inputs": "x", "parameters": {"num_beams": 16, "max_new_tokens": 20000}}));
    assert_eq!((status, answer["status"].clone()), (413, json!("DUET_STATUS_OVER_BUDGET")), "{answer}");
    let (status, answer) = server.post("/embed", json!({"inputs": ["a", " "]}));
    assert_eq!((status, answer["status"].clone()), (400, json!("DUET_STATUS_INVALID_ARGUMENT")), "{answer}");
    let (status, answer) = server.post("/generate_stream", json!({"inputs": ["a", "b"]}));
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = server.post("/translate", json!({"inputs": "Hello", "to": "fr"}));
    assert_eq!((status, answer["status"].clone()), (400, json!("DUET_STATUS_UNKNOWN_LANGUAGE")), "{answer}");
    let (status, answer) = server.post("/nowhere", json!({}));
    assert_eq!(status, 404, "{answer}");
    assert_eq!(server.get("/generate", &[]).0, 405);
    // Generation on an embedding-only model is the caller's mistake, said as the C ABI says it.
    let embedder = common::root().join("models/all-MiniLM-L6-v2");
    if embedder.join("model.onnx").is_file() {
        let server = Server::start(&embedder, &[], &[]);
        let (status, answer) = server.post("/generate", json!({"inputs": "x"}));
        assert_eq!((status, answer["status"].clone()), (400, json!("DUET_STATUS_UNSUPPORTED")), "{answer}");
        let (status, answer) = server.post("/embed", json!({"inputs": ["x"], "normalize": false}));
        assert_eq!(status, 400, "{answer}");
    }
}

/// POST /translate: the Hugging Face recipe's translations (translation_goldens.json), a list of
/// inputs, the Inference API's `parameters.tgt_lang` / `src_lang`, and the errors.
#[test]
fn translate_answers_as_the_hugging_face_recipe_does() {
    let goldens: Value = serde_json::from_str(&std::fs::read_to_string(common::fixture("translation_goldens.json")).unwrap()).unwrap();
    let goldens: Vec<&Value> = goldens["translations"].as_array().unwrap().iter().filter(|g| g["model"] == "nllb-tiny").collect();
    let server = Server::start(&common::fixture("nllb-tiny"), &[], &[]);
    for g in &goldens {
        let body = json!({"inputs": g["text"], "to": g["to"], "from": g["from"], "parameters": g["params"]});
        let (status, answer) = server.post("/translate", body);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            (&answer["translation_text"], &answer["to"], answer["chunks"].as_u64()),
            (&g["translation"], &g["to"], Some(1)),
            "{answer}"
        );
    }
    let (g0, g1) = (goldens[0], goldens[1]);
    let mut params = g1["params"].clone();
    params["tgt_lang"] = g1["to"].clone();
    params["src_lang"] = g1["from"].clone();
    let (status, answer) = server.post("/translate", json!({"inputs": [g1["text"], g1["text"]], "parameters": params}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer.as_array().map(|a| a.iter().map(|x| x["translation_text"].clone()).collect::<Vec<_>>()),
        Some(vec![g1["translation"].clone(); 2])
    );
    let (status, answer) = server.post("/translate", json!({"inputs": g0["text"], "to": "xx_Nope"}));
    assert_eq!((status, answer["status"].clone()), (400, json!("DUET_STATUS_UNKNOWN_LANGUAGE")), "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("fra_Latn"), "{answer}");
    let (status, answer) = server.post("/translate", json!({"inputs": "Hi.", "to": "fr", "parameters": {"tgt_lang": "de"}}));
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = server.post("/translate", json!({"inputs": "Hi.", "to": "fr", "parameters": {"summary_length": "short"}}));
    assert_eq!((status, answer["status"].clone()), (400, json!("DUET_STATUS_INVALID_PARAM")), "{answer}");
    let info: Value = serde_json::from_str(&server.get("/info", &[]).1).unwrap();
    assert_eq!(info["translation"]["languages"].as_array().map(Vec::len), Some(202));
    let server = Server::start(&common::fixture("bart-tiny"), &[], &[]);
    let (status, answer) = server.post("/translate", json!({"inputs": "Hi.", "to": "fr"}));
    assert_eq!((status, answer["status"].clone()), (400, json!("DUET_STATUS_UNSUPPORTED")), "{answer}");
}

#[test]
fn full_queues_and_deadlines_are_answered_with_a_reason() {
    let dir = common::fixture("t5-tiny");
    let server = Server::start(&dir, &["--option", "max_requests=1", "--max-tasks", "1", "--max-waiting-tasks", "0"], &[]);
    std::thread::scope(|scope| {
        let long = scope
            .spawn(|| server.post("/generate", json!({"inputs": "Hello", "parameters": {"max_new_tokens": 3000, "min_new_tokens": 3000}})));
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.metric("duet_scheduler_running_requests") < 1.0 {
            assert!(Instant::now() < deadline, "the long request never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (status, answer, retry) =
            server.post_with("/generate", &json!({"inputs": "x", "parameters": {"max_new_tokens": 2}}).to_string(), &[]);
        assert_eq!((status, answer["status"].clone()), (429, json!("DUET_STATUS_BUSY")), "{answer}");
        assert!(answer["error"].as_str().unwrap().contains("max_requests 1"), "{answer}");
        assert_eq!(retry.as_deref(), Some("1"));
        let (status, done) = long.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(done.as_object().unwrap().len(), 1, "{done}");
    });
    // One task place, none to wait in: a second embed while one runs is refused with 503. The
    // probes run for as long as the slow embed does (inputs at the 512-token limit, one at a
    // time); a machine fast enough to finish it between two probes gets another try. A probe
    // may take the place first, and then the slow embed is the one refused: that is the same
    // refusal.
    let many: Vec<String> = (0..256).map(|i| document(3000 + i)).collect();
    let mut refused = None;
    for _attempt in 0..5 {
        std::thread::scope(|scope| {
            let slow = scope.spawn(|| server.post("/embed", json!({"inputs": many, "truncate": true, "parameters": {"batch_size": 1}})));
            while refused.is_none() && !slow.is_finished() {
                let (status, answer) = server.post("/embed", json!({"inputs": ["x"]}));
                if status == 503 {
                    refused = Some(answer);
                }
            }
            let (status, answer) = slow.join().unwrap();
            match status {
                200 => {}
                503 => refused = refused.take().or(Some(answer)),
                _ => panic!("{status}: {answer}"),
            }
        });
        if refused.is_some() {
            break;
        }
    }
    let refused = refused.expect("an embed while the only task place is taken is refused");
    assert_eq!(refused["status"], json!("DUET_HTTP_OVERLOADED"));
    assert!(refused["error"].as_str().unwrap().contains("--max-tasks 1"), "{refused}");
    let (status, answer) = server
        .post("/generate", json!({"inputs": "Hello", "parameters": {"max_new_tokens": 20000, "min_new_tokens": 20000, "timeout_ms": 200}}));
    assert_eq!((status, answer["status"].clone()), (504, json!("DUET_STATUS_DEADLINE_EXCEEDED")), "{answer}");
    let (status, answer) = server.post("/summarize", json!({"inputs": document(20000), "parameters": {"timeout_ms": 50}}));
    assert_eq!((status, answer["status"].clone()), (504, json!("DUET_STATUS_DEADLINE_EXCEEDED")), "{answer}");
}

/// Sends `body` to `path` on a raw connection, reads the head (and `wait_for` in the body), then
/// closes the connection.
fn hang_up(server: &Server, path: &str, body: &Value, wait_for: Option<&str>) {
    let mut socket = TcpStream::connect(&server.address).unwrap();
    let body = body.to_string();
    write!(socket, "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .unwrap();
    if let Some(text) = wait_for {
        socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(text) {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "the stream ended before `{text}`");
            seen.extend_from_slice(&buf[..n]);
        }
    } else {
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(socket);
}

/// The decoder stops running (steps stop growing) once the requests are gone.
fn decoder_goes_idle(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("duet_scheduler_running_requests") > 0.0 {
        assert!(Instant::now() < deadline, "the request of a client that went away still runs");
        std::thread::sleep(Duration::from_millis(10));
    }
    let steps = server.metric("duet_decoder_steps_total");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.metric("duet_decoder_steps_total"), steps);
}

#[test]
fn a_client_that_goes_away_cancels_its_generation() {
    let dir = common::fixture("t5-tiny");
    let server = Server::start(&dir, &[], &[]);
    hang_up(&server, "/generate_stream", &long_request(), Some("\"index\":5,"));
    decoder_goes_idle(&server);
    assert_eq!(server.metric("duet_client_disconnects_total"), 1.0);
    hang_up(&server, "/generate", &long_request(), None);
    decoder_goes_idle(&server);
    assert_eq!(server.metric("duet_client_disconnects_total"), 2.0);
    // 20,000 tokens were asked for twice; far fewer steps ran.
    assert!(server.metric("duet_decoder_steps_total") < 20000.0);
    // The server goes on serving.
    assert_eq!(server.post("/generate", json!({"inputs": "x", "parameters": {"max_new_tokens": 3}})).0, 200);
}

#[test]
fn concurrent_requests_share_decoder_runs_and_keep_their_outputs() {
    let dir = common::with_decoder_mask("t5-tiny");
    let server = Server::start(&dir, &[], &[]);
    let model = library_model(&dir);
    let texts: Vec<String> = (0..8).map(|i| format!("request {i}: {}", "word ".repeat(i * 3))).collect();
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let calls: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let server = &server;
                scope.spawn(move || {
                    server.post(
                        "/generate",
                        json!({"inputs": t, "parameters": {"max_new_tokens": 40 + i * 10, "min_new_tokens": 40 + i * 10}}),
                    )
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for (i, (text, (status, answer))) in texts.iter().zip(&answers).enumerate() {
        assert_eq!(*status, 200, "{answer}");
        let n = 40 + i as i64 * 10;
        let alone = duet::generate(&model, &[text.as_str()], &settings(&[("max_new_tokens", n), ("min_new_tokens", n)]), None).unwrap();
        assert_eq!(answer["generated_text"], json!(alone[0].sequences[0].text), "request {i}");
    }
    assert!(server.metric("duet_decoder_shared_steps_total") > 0.0, "no decoder run served two requests");
    assert!(server.metric("duet_decoder_max_rows") >= 2.0);
}

#[test]
fn an_api_key_is_required_when_set() {
    let dir = common::fixture("t5-tiny");
    let server = Server::start(&dir, &[], &[("DUET_API_KEY", "s3cret")]);
    let body = json!({"inputs": "x", "parameters": {"max_new_tokens": 2}}).to_string();
    let (status, answer, _) = server.post_with("/generate", &body, &[]);
    assert_eq!((status, answer["status"].clone()), (401, json!("DUET_HTTP_UNAUTHORIZED")), "{answer}");
    assert_eq!(server.post_with("/generate", &body, &[("Authorization", "Bearer wrong")]).0, 401);
    assert_eq!(server.post_with("/generate", &body, &[("Authorization", "Bearer s3cret")]).0, 200);
    assert_eq!(server.get("/metrics", &[]).0, 401);
    assert_eq!(server.get("/metrics", &[("Authorization", "Bearer s3cret")]).0, 200);
    assert_eq!(server.get("/health", &[]).0, 200);
}

#[test]
fn sigterm_finishes_in_flight_requests_then_stops() {
    let dir = common::fixture("t5-tiny");
    let mut server = Server::start(&dir, &[], &[]);
    let address = server.address.clone();
    let in_flight = std::thread::spawn(move || {
        let agent = Server::agent();
        let mut r = agent
            .post(format!("http://{address}/generate"))
            .send(json!({"inputs": "Hello", "parameters": {"max_new_tokens": 1500, "min_new_tokens": 1500, "details": true}}).to_string())
            .unwrap();
        (r.status().as_u16(), serde_json::from_str::<Value>(&r.body_mut().read_to_string().unwrap()).unwrap())
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric("duet_scheduler_running_requests") < 1.0 {
        assert!(Instant::now() < deadline, "the request never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = server.terminate();
    assert!(status.success(), "duet serve exited with {status}");
    let (code, answer) = in_flight.join().unwrap();
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["details"]["generated_tokens"], json!(1500));
    let log = server.log_lines().join("\n");
    assert!(log.contains("shutting down") && log.contains("stopped"), "{log}");
}
