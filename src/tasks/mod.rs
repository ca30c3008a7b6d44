//! What hosts call: summarize, assistant (chat), search (embed, rerank, index). Built only on
//! the public core: `Model`, `generate`, the tokenizer and teacher forcing.

pub mod assistant;
pub mod chunking;
pub mod embed;
pub mod index;
pub mod keyword;
mod params;
pub mod rerank;
pub mod summarize;

pub use params::{new_generation_settings, RerankMode, SummaryLength, TaskSettings, PARAM_SPECS, TASK_SPECS};

use crate::error::{Error, Result};

/// Where a long task stands: `done` of `total` inputs at map-reduce `level` (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub level: usize,
}

/// Refuses empty and whitespace-only text.
pub(crate) fn nonblank<'a>(text: &'a str, what: &str) -> Result<&'a str> {
    if text.trim().is_empty() {
        return Err(Error::InvalidArgument(format!("{what} is empty or only white space")));
    }
    Ok(text)
}
