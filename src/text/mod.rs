//! Text in and out: the tokenizer, and streaming detokenization with stop strings.

mod bytes;
mod interrupt;
mod stream;
mod tokenizer;

pub use interrupt::{with_check, Check};
pub use stream::{StopMatcher, TextStream};
pub use tokenizer::{Encoded, Offsets, Tokenizer};
