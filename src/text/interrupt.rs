//! Tokenization that a call's deadline or cancel can interrupt.
//!
//! A `tokenizers` encode cannot be stopped part-way, and a hostile `tokenizer.json` (a
//! pre-tokenizer regex that backtracks) can make one take minutes. While a call has limits (set
//! with [`with_check`] on its thread), each encode runs on a small pool of worker threads and the
//! caller waits for it, checking its limits every few milliseconds: a call past its deadline
//! returns at once, and the encode it leaves behind ends on its own (its result dropped). Without
//! limits an encode runs inline. Either way a panic inside `tokenizers` (Oniguruma's
//! "retry-limit-in-match") is `Error::Tokenizer`, not a crash.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use once_cell::sync::Lazy;

use crate::error::{Error, Result};

/// What a call's limits say now: `Ok` to go on, or the error that stops it.
pub type Check = Arc<dyn Fn() -> Result<()> + Send + Sync>;

thread_local! {
    static CURRENT: RefCell<Option<Check>> = const { RefCell::new(None) };
}

/// Runs `f` with `check` as this thread's limits for tokenization, or none (the previous ones
/// return after): a call made inside another call's callback has its own limits, not the outer's.
pub fn with_check<R>(check: Option<Check>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Check>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            let _ = CURRENT.try_with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.try_with(|c| std::mem::replace(&mut *c.borrow_mut(), check)).ok().flatten();
    let _restore = Restore(previous);
    f()
}

/// This thread's limits for tokenization, if a call set them.
pub(crate) fn current() -> Option<Check> {
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

type Job = Box<dyn FnOnce() + Send>;

/// Worker threads for limited encodes: as many as the machine has cores, at most 8, started on
/// first use; jobs beyond them wait in the queue (their callers' limits still apply).
static POOL: Lazy<Mutex<mpsc::Sender<Job>>> = Lazy::new(|| {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    for i in 0..workers {
        let rx = rx.clone();
        let _ = std::thread::Builder::new().name(format!("duet-tokenize-{i}")).spawn(move || loop {
            let job = match rx.lock() {
                Ok(guard) => guard.recv(),
                Err(_) => return,
            };
            match job {
                Ok(job) => job(),
                Err(_) => return,
            }
        });
    }
    Mutex::new(tx)
});

const POLL: Duration = Duration::from_millis(5);

/// Runs `encode` (owning what it needs) on the pool, returning early with `check`'s error.
pub(crate) fn interruptible<T: Send + 'static>(check: Check, encode: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    check()?;
    let (tx, rx) = mpsc::sync_channel(1);
    let waiting = check.clone();
    // A job whose caller's limits said stop before a worker took it is not run (its caller gets
    // that error): abandoned encodes do not hold the workers from the callers still waiting.
    let job: Job = Box::new(move || {
        let _ = tx.send(waiting().and_then(|()| caught(encode)));
    });
    POOL.lock()
        .map_err(|_| Error::Internal("the tokenizer pool is unusable".into()))?
        .send(job)
        .map_err(|_| Error::Internal("the tokenizer pool stopped".into()))?;
    loop {
        match rx.recv_timeout(POLL) {
            Ok(result) => return result,
            Err(mpsc::RecvTimeoutError::Timeout) => check()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Error::Internal("a tokenizer worker stopped".into())),
        }
    }
}

/// `encode`, with a panic inside it turned into `Error::Tokenizer`.
pub(crate) fn caught<T>(encode: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(encode)).unwrap_or_else(|payload| {
        let what = crate::error::panic_message(&*payload).unwrap_or_else(|| "unknown failure".into());
        Err(Error::Tokenizer(format!("the tokenizer failed on this input: {}", what.trim())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_without_limits_inside_one_with_them_has_none() {
        let stop: Check = Arc::new(|| Err(Error::Cancelled));
        with_check(Some(stop), || {
            assert!(current().is_some());
            with_check(None, || assert!(current().is_none()));
            assert!(current().is_some());
        });
        assert!(current().is_none());
    }
}
