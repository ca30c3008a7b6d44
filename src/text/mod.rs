//! Text in and out: the tokenizer, and streaming detokenization with stop strings.

mod bytes;
mod stream;
mod tokenizer;

pub use stream::{StopMatcher, TextStream};
pub use tokenizer::{Encoded, Tokenizer};
