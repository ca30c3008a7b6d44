//! Big vocabularies (NLLB's 256k, mT5's 250k): a decoding step allocates nothing the size of the
//! vocabulary on the Rust side beyond the logits the decoder returns. Greedy search, beam search
//! and sampling with top-k and top-p process the logits in place; beam search picks its
//! candidates through a heap. Counted with a global allocator that records, per thread, every
//! allocation of whole vocabulary rows (4 bytes a token).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static THRESHOLD: Cell<usize> = const { Cell::new(usize::MAX) };
    static BIG: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = THRESHOLD.try_with(|t| {
            if is_vocabulary_sized(layout.size(), t.get()) {
                let _ = BIG.try_with(|b| b.set(b.get() + 1));
            }
        });
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = THRESHOLD.try_with(|t| {
            if is_vocabulary_sized(new_size, t.get()) && layout.size() < t.get() {
                let _ = BIG.try_with(|b| b.set(b.get() + 1));
            }
        });
        System.realloc(ptr, layout, new_size)
    }
}

/// Whole vocabulary rows (`row` bytes each). The KV caches of these tiny models grow by sizes that
/// are not multiples of a row within the steps looked at, so they are not counted.
fn is_vocabulary_sized(size: usize, row: usize) -> bool {
    size >= row && size.is_multiple_of(row)
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Vocabulary-sized allocations per decoding step, after the first (which may set up buffers).
fn big_allocations_per_step(model: &duet::Model, pairs: &[(&str, &str)]) -> Vec<usize> {
    let mut s = duet::new_generation_settings();
    for (k, v) in pairs {
        s.set_str(k, v).unwrap();
    }
    let params = duet::resolve_params(model, &s).unwrap();
    let inputs = duet::encode_inputs(model, &["The museum will reopen next month after a long renovation."], &params).unwrap();
    let mut generation = duet::Generation::new(model, &inputs, &params).unwrap();
    let mut counts = Vec::new();
    THRESHOLD.with(|t| t.set(model.vocab_size() * 4));
    while !generation.is_done() {
        BIG.with(|b| b.set(0));
        generation.step().unwrap();
        counts.push(BIG.with(|b| b.get()));
    }
    THRESHOLD.with(|t| t.set(usize::MAX));
    counts
}

#[test]
fn a_step_allocates_no_vocabulary_beyond_the_logits() {
    common::init_ort();
    for name in ["nllb-tiny", "t5-tiny"] {
        let model = common::shared(name, "merged");
        for pairs in [
            vec![
                ("num_beams", "1"),
                ("max_new_tokens", "12"),
                ("min_new_tokens", "12"),
                ("repetition_penalty", "1.3"),
                ("no_repeat_ngram_size", "2"),
            ],
            vec![("num_beams", "4"), ("num_return_sequences", "2"), ("max_new_tokens", "12"), ("min_new_tokens", "12")],
            vec![
                ("do_sample", "true"),
                ("top_k", "40"),
                ("top_p", "0.9"),
                ("temperature", "0.8"),
                ("seed", "3"),
                ("max_new_tokens", "12"),
                ("min_new_tokens", "12"),
            ],
        ] {
            let counts = big_allocations_per_step(&model, &pairs);
            // the decoder's logits: one host buffer a step (a second on the first step, which
            // keeps the last position of a longer decoder input)
            assert!(counts[1..].iter().all(|&n| n <= 1), "{name} {pairs:?}: vocabulary-sized allocations per step {counts:?}");
        }
    }
}
