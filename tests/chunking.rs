//! Map-reduce on random texts and budgets, on both fixture families: every chunk fits its budget
//! (and its prompt the input limit), the chunks cover the text in order without losing a
//! character, and summarizing always ends.

mod common;

use duet::tasks::chunking::{count_tokens, plan_chunks};
use duet::tasks::summarize::summarize;
use duet::Model;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WORDS: &[&str] = &[
    "river",
    "council",
    "the",
    "a",
    "storm",
    "museum",
    "of",
    "library",
    "Überprüfung",
    "naïve",
    "café",
    "3.5",
    "e.g.",
    "U.S.A.",
    "frog",
    "雨",
    "图书馆",
    "今天很好",
    "🙂",
    "🚀🚀",
    "https://example.org/a/b?c=d",
    "x",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "supercalifragilisticexpialidocious",
    "—",
    "(parenthetical)",
    "\"quoted\"",
    "it's",
    "2024-12-01",
];
const ENDS: &[&str] = &[". ", "! ", "? ", "; ", "。", "\n", "\n\n", " ", ", ", "… ", ".", "   \t "];

fn random_text(rng: &mut StdRng, words: usize) -> String {
    let mut text = String::new();
    let mut n = 0;
    while n < words {
        // Sentences from one word to a few hundred (a run with no sentence end at all).
        let len = if rng.random_bool(0.05) { rng.random_range(100..400) } else { rng.random_range(1..30) };
        for j in 0..len {
            if j > 0 {
                text.push(' ');
            }
            text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        }
        text.push_str(ENDS[rng.random_range(0..ENDS.len())]);
        n += len;
    }
    text
}

fn without_space(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn chunks_fit_and_cover_the_text_on_random_inputs() {
    common::init_ort();
    for fixture in ["t5-tiny", "bart-tiny"] {
        let model = Model::open(common::fixture(fixture)).unwrap();
        let tok = &model.tokenizer;
        let mut rng = StdRng::seed_from_u64(7);
        for case in 0..40 {
            let words = rng.random_range(1..1500);
            let text = random_text(&mut rng, words);
            let budget = rng.random_range(8..200);
            let overlap = rng.random_range(0..=budget / 2);
            let what = format!("{fixture} case {case}: budget {budget}, overlap {overlap}");
            let (sentences, chunks) = plan_chunks(tok, &text, budget, overlap).unwrap();
            assert_eq!(without_space(&sentences.concat()), without_space(&text), "{what}: the sentences are the whole text");
            assert!(!chunks.is_empty(), "{what}");
            assert_eq!(chunks[0].first, 0, "{what}");
            assert_eq!(chunks.last().unwrap().last, sentences.len() - 1, "{what}");
            for (i, c) in chunks.iter().enumerate() {
                assert!(c.tokens <= budget, "{what}: chunk {i} has {} tokens", c.tokens);
                assert_eq!(c.tokens, count_tokens(tok, &c.text).unwrap(), "{what}: chunk {i}'s count");
                assert_eq!(c.text, sentences[c.first..=c.last].join(" "), "{what}: chunk {i} is its sentences");
                if i > 0 {
                    let prev = &chunks[i - 1];
                    assert!(c.first <= prev.last + 1, "{what}: no sentence between chunks {} and {i} is skipped", i - 1);
                    assert!(c.last > prev.last, "{what}: chunk {i} takes a new sentence");
                    assert!(c.first > prev.first, "{what}: chunk {i} does not repeat all of chunk {}", i - 1);
                }
            }
        }
    }
}

#[test]
fn summarizing_ends_for_random_texts_and_budgets() {
    common::init_ort();
    for fixture in ["t5-tiny", "bart-tiny"] {
        let model = Model::open(common::fixture(fixture)).unwrap();
        let mut rng = StdRng::seed_from_u64(11);
        for case in 0..4 {
            let words = rng.random_range(200..1200);
            let text = random_text(&mut rng, words);
            let chunk_tokens = rng.random_range(16..96);
            let mut p = duet::new_generation_settings();
            p.set_int("chunk_tokens", chunk_tokens).unwrap();
            p.set_int("max_new_tokens", rng.random_range(4..24)).unwrap();
            p.set_int("num_beams", 1).unwrap();
            let s = summarize(&model, &text, &p, None, None)
                .unwrap_or_else(|e| panic!("{fixture} case {case} (chunk_tokens {chunk_tokens}): {e}"));
            assert!(s.levels >= 1 && s.summaries >= s.chunks.min(1), "{fixture} case {case}");
        }
    }
}

/// The reproduction of the report: a 20,000-word document on BART-style and T5 fixtures at their
/// own input limits (before the fix, bart-tiny failed: an overlap plus a new sentence over the
/// limit, and partial summaries that shrank too little to end in 12 levels).
#[test]
fn a_20000_word_document_is_summarized_by_both_families() {
    common::init_ort();
    let mut rng = StdRng::seed_from_u64(3);
    let mut text = String::new();
    while text.split_whitespace().count() < 20_000 {
        text.push_str(&random_text(&mut rng, 50));
    }
    for fixture in ["bart-tiny", "t5-tiny"] {
        let model = Model::open(common::fixture(fixture)).unwrap();
        let mut p = duet::new_generation_settings();
        p.set_int("num_beams", 1).unwrap();
        p.set_str("summary_length", "short").unwrap();
        let s = summarize(&model, &text, &p, None, None).unwrap_or_else(|e| panic!("{fixture}: {e}"));
        assert!(s.levels >= 3 && s.chunks > 10, "{fixture}: {} chunks, {} levels", s.chunks, s.levels);
    }
}
