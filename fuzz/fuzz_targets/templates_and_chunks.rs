//! Prompt templates and chunking: chat rendering with fuzzed templates and turns, and sentence
//! splitting / chunk planning of fuzzed documents (every sentence must land in a chunk).
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use once_cell::sync::Lazy;

static TOKENIZER: Lazy<duet::text::Tokenizer> = Lazy::new(|| {
    duet::text::Tokenizer::from_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/t5-tiny")).unwrap()
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let budget = 16 + data.first().copied().unwrap_or(0) as usize % 64;
    if let Ok((sentences, chunks)) = duet::tasks::chunking::plan_chunks(&TOKENIZER, &text, budget, budget / 4) {
        let mut covered = vec![false; sentences.len()];
        for c in &chunks {
            assert!(c.first <= c.last && c.last < sentences.len());
            covered[c.first..=c.last].iter_mut().for_each(|x| *x = true);
        }
        assert!(covered.iter().all(|&c| c), "a sentence was lost");
    }
    let mut parts = text.splitn(3, '\u{1}');
    let (template, turn, user) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut s = duet::new_generation_settings();
    let _ = s.set_str("chat_template", template);
    let _ = s.set_str("chat_turn_template", turn);
    let _ = s.set_str("system_prompt", user);
    let _ = Arc::new(());
    let _ = s.set_str("prompt_template", template);
});
