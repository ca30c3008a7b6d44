//! What every handler shares: the model and its scheduler, the server's limits, the gate that
//! bounds blocking work, the metrics and the shutdown flag.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use duet::generate::control::{CancelToken, Limits};
use duet::{Model, Scheduler, Settings};
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::metrics::Metrics;

#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Most texts in one request (inputs to generate or summarize, texts to embed or rerank).
    pub max_inputs: usize,
    /// A request's deadline at the latest; its own `timeout_ms` may be shorter.
    pub max_timeout_ms: u64,
    /// Embed and rerank tasks (they keep a core busy) running at once.
    pub max_tasks: usize,
    /// Summaries running at once (each holds a thread that mostly waits for the scheduler).
    pub max_summaries: usize,
    /// Tasks or summaries waiting for a place, each; beyond it a request is answered 503.
    pub max_waiting_tasks: usize,
}

/// A bounded number of places for blocking work, and a bounded wait for one.
pub struct Gate {
    what: &'static str,
    flag: &'static str,
    places: usize,
    permits: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Gate {
    pub fn new(what: &'static str, flag: &'static str, places: usize, max_waiting: usize) -> Self {
        let places = places.max(1);
        Self { what, flag, places, permits: Semaphore::new(places), waiting: AtomicUsize::new(0), max_waiting }
    }

    /// Runs `work` on a blocking thread once a place is free; 503 when `max_waiting` already wait.
    pub async fn run<R: Send + 'static>(&self, work: impl FnOnce() -> Result<R, ApiError> + Send + 'static) -> Result<R, ApiError> {
        let waiting = self.waiting.fetch_add(1, Ordering::SeqCst);
        let permit = if waiting >= self.max_waiting { self.permits.try_acquire().ok() } else { self.permits.acquire().await.ok() };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let Some(_permit) = permit else {
            return Err(ApiError::overloaded(format!(
                "{} {} are running and {waiting} waiting ({} {}, --max-waiting-tasks {}); retry later",
                self.places, self.what, self.flag, self.places, self.max_waiting
            )));
        };
        tokio::task::spawn_blocking(work).await.unwrap_or_else(|_| {
            Err(ApiError::from(duet::Error::Internal("a request's task panicked (a bug in duet; please report it)".into())))
        })
    }
}

pub struct App {
    pub model: Arc<Model>,
    pub scheduler: Arc<Scheduler>,
    pub limits: ServerLimits,
    pub metrics: Metrics,
    pub api_key: Option<String>,
    /// The server's bounds, for GET /info.
    pub server_info: serde_json::Value,
    pub shutting_down: AtomicBool,
    /// Embeddings and reranking.
    pub tasks: Gate,
    pub summaries: Gate,
}

/// Cancels the request it guards when dropped before [`CancelOnDrop::answered`]: a handler
/// dropped because its client went away stops the request's work at the next step or batch
/// boundary, and is counted.
pub struct CancelOnDrop {
    token: CancelToken,
    disconnects: prometheus_client::metrics::counter::Counter,
    answered: bool,
}

impl CancelOnDrop {
    pub fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.answered {
            self.token.cancel();
            self.disconnects.inc();
        }
    }
}

impl App {
    pub fn new(
        model: Arc<Model>,
        scheduler: Arc<Scheduler>,
        limits: ServerLimits,
        api_key: Option<String>,
        server_info: serde_json::Value,
    ) -> Self {
        Self {
            model,
            scheduler,
            limits,
            metrics: Metrics::new(),
            api_key,
            server_info,
            shutting_down: AtomicBool::new(false),
            tasks: Gate::new("embed/rerank tasks", "--max-tasks", limits.max_tasks, limits.max_waiting_tasks),
            summaries: Gate::new("summaries", "--max-summaries", limits.max_summaries, limits.max_waiting_tasks),
        }
    }

    /// Refuses new work once shutdown began.
    pub fn admit(&self) -> Result<(), ApiError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ApiError::shutting_down());
        }
        Ok(())
    }

    pub fn check_inputs(&self, n: usize) -> Result<(), ApiError> {
        if n == 0 {
            return Err(ApiError::bad_request("`inputs` is empty"));
        }
        if n > self.limits.max_inputs {
            return Err(ApiError::too_large(format!(
                "{n} inputs in one request; the server takes at most {} (--max-inputs)",
                self.limits.max_inputs
            )));
        }
        Ok(())
    }

    /// The call's limits: its `timeout_ms`, capped by the server's, and a cancel token whose
    /// guard the handler holds.
    pub fn limits(&self, settings: &mut Settings) -> Result<(Limits, CancelOnDrop), ApiError> {
        let cap = self.limits.max_timeout_ms;
        if cap > 0 && settings.int("timeout_ms").is_none_or(|ms| ms as u64 > cap) {
            settings.set_int("timeout_ms", cap as i64)?;
        }
        let cancel = CancelToken::new();
        let guard = CancelOnDrop { token: cancel.clone(), disconnects: self.metrics.disconnects.clone(), answered: false };
        Ok((Limits::start(settings, Some(cancel)), guard))
    }
}
