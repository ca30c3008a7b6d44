//! Stopping a call from outside: a cancel token any thread may trip, and a deadline
//! (`timeout_ms`). Both are checked at every decoding step, and while an input is tokenized,
//! and end the call with `Error::Cancelled` / `Error::DeadlineExceeded`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::output::{Flow, Observer};
use crate::error::{Error, Result};
use crate::settings::Settings;

/// Shared flag: cancel from any thread; every call holding a clone stops at its next step.
#[derive(Clone, Default, Debug)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The outside limits of one call.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    pub cancel: Option<CancelToken>,
    deadline: Option<(Instant, u64)>,
}

impl Limits {
    /// Starts the clock of `timeout_ms` (when set) now.
    pub fn start(settings: &Settings, cancel: Option<CancelToken>) -> Self {
        let deadline = settings.int("timeout_ms").map(|ms| (Instant::now() + Duration::from_millis(ms as u64), ms as u64));
        Self { cancel, deadline }
    }

    /// Neither a token nor a deadline.
    pub fn is_unlimited(&self) -> bool {
        self.cancel.is_none() && self.deadline.is_none()
    }

    /// Runs `f` with these limits on tokenization too (`text::with_check`): an encode stops
    /// early with their error.
    pub fn within<R>(&self, f: impl FnOnce() -> R) -> R {
        let limits = self.clone();
        let check: Option<crate::text::Check> = (!self.is_unlimited()).then(|| std::sync::Arc::new(move || limits.check()) as _);
        crate::text::with_check(check, f)
    }

    pub fn check(&self) -> Result<()> {
        if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return Err(Error::Cancelled);
        }
        match self.deadline {
            Some((at, ms)) if Instant::now() >= at => Err(Error::DeadlineExceeded(ms)),
            _ => Ok(()),
        }
    }
}

/// Wraps an observer so that every step also checks the limits.
pub struct Guarded<'l, 'o> {
    inner: Option<&'o mut dyn Observer>,
    limits: &'l Limits,
    stopped_by: Option<Error>,
}

impl Observer for Guarded<'_, '_> {
    fn on_text(&mut self, input: usize, piece: &str, token_id: Option<u32>) -> Flow {
        self.inner.as_mut().map_or(Flow::Continue, |o| o.on_text(input, piece, token_id))
    }

    fn on_step(&mut self) -> Flow {
        if let Err(e) = self.limits.check() {
            self.stopped_by = Some(e);
            return Flow::Stop;
        }
        self.inner.as_mut().map_or(Flow::Continue, |o| o.on_step())
    }
}

/// Runs `f` with `observer` guarded by `limits`; a call the limits stopped is their error.
pub fn guarded<R>(
    limits: &Limits,
    observer: Option<&mut dyn Observer>,
    f: impl FnOnce(Option<&mut dyn Observer>) -> Result<R>,
) -> Result<R> {
    limits.check()?;
    let mut g = Guarded { inner: observer, limits, stopped_by: None };
    let out = limits.within(|| f(Some(&mut g)));
    match g.stopped_by {
        Some(e) => Err(e),
        None => out,
    }
}
