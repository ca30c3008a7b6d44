//! What hosts call: summarize, translate, assistant (chat), search (embed, rerank, index). Built only on
//! the public core: `Model`, `generate`, the tokenizer and teacher forcing.

pub mod assistant;
pub mod chunking;
pub mod embed;
pub mod index;
pub mod keyword;
pub mod language_match;
mod params;
pub mod rerank;
pub mod summarize;
pub mod translate;

pub use params::{new_generation_settings, RerankMode, SummaryLength, TaskSettings, PARAM_SPECS, TASK_SPECS};

use crate::error::{Error, Result};

/// Where a long task stands: `done` of `total` inputs at map-reduce `level` (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub level: usize,
}

/// Runs `f` with the caller's progress callback, or one that hears nothing and never stops.
pub(crate) fn with_progress<R>(
    progress: Option<&mut dyn FnMut(Progress) -> crate::generate::Flow>,
    f: impl FnOnce(&mut dyn FnMut(Progress) -> crate::generate::Flow) -> R,
) -> R {
    let mut silent = |_: Progress| crate::generate::Flow::Continue;
    match progress {
        Some(p) => f(p),
        None => f(&mut silent),
    }
}

/// Refuses empty and whitespace-only text.
pub(crate) fn nonblank<'a>(text: &'a str, what: &str) -> Result<&'a str> {
    if text.trim().is_empty() {
        return Err(Error::InvalidArgument(format!("{what} is empty or only white space")));
    }
    Ok(text)
}
