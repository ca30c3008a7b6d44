//! `GET /metrics` in Prometheus' text format: requests by endpoint and status, latency
//! histograms, generated tokens (tokens/s is their `rate()`), the scheduler's queue depth,
//! running requests and decoder batches (mean batch rows: `rate(duet_decoder_rows_total)` over
//! `rate(duet_decoder_steps_total)`).

use std::sync::Mutex;
use std::time::Duration;

use duet::generate::SchedulerStats;
use duet::Scheduler;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::error::ApiError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    first_token: Histogram,
    stream_duration: Histogram,
    stream_errors: Family<RequestLabels, Counter>,
    tokens: Counter,
    pub disconnects: Counter,
    waiting: Gauge,
    running: Gauge,
    steps: Counter,
    shared_steps: Counter,
    rows: Counter,
    max_rows: Gauge,
    seen: Mutex<SchedulerStats>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("duet");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by endpoint and status", requests.clone());
        let latency = Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("http_request_duration_seconds", "Time to the response's head, by endpoint", latency.clone());
        let first_token = latency_histogram();
        registry.register("stream_first_token_seconds", "Time from a stream's request to its first piece", first_token.clone());
        let stream_duration = latency_histogram();
        registry.register("stream_duration_seconds", "Time from a stream's request to its last event", stream_duration.clone());
        let stream_errors = Family::<RequestLabels, Counter>::default();
        registry.register(
            "stream_errors",
            "Streams that ended with an error event, by the status it would have had",
            stream_errors.clone(),
        );
        let tokens = Counter::default();
        registry.register("generated_tokens", "Tokens generated (best sequence of each input)", tokens.clone());
        let disconnects = Counter::default();
        registry.register(
            "client_disconnects",
            "Requests whose client went away before the answer (their work cancelled)",
            disconnects.clone(),
        );
        let waiting = Gauge::default();
        registry.register("scheduler_waiting_requests", "Requests queued for the next step boundary (queue depth)", waiting.clone());
        let running = Gauge::default();
        registry.register("scheduler_running_requests", "Requests decoding", running.clone());
        let steps = Counter::default();
        registry.register("decoder_steps", "Decoder runs", steps.clone());
        let shared_steps = Counter::default();
        registry.register("decoder_shared_steps", "Decoder runs that served more than one request", shared_steps.clone());
        let rows = Counter::default();
        registry.register("decoder_rows", "Rows over all decoder runs (batch size summed)", rows.clone());
        let max_rows = Gauge::default();
        registry.register("decoder_max_rows", "The most rows one decoder run served", max_rows.clone());
        Self {
            registry,
            requests,
            latency,
            first_token,
            stream_duration,
            stream_errors,
            tokens,
            disconnects,
            waiting,
            running,
            steps,
            shared_steps,
            rows,
            max_rows,
            seen: Mutex::default(),
        }
    }

    pub fn request(&self, endpoint: &str, status: u16, took: Duration) {
        self.requests.get_or_create(&RequestLabels { endpoint: endpoint.to_string(), status }).inc();
        self.latency.get_or_create(&EndpointLabels { endpoint: endpoint.to_string() }).observe(took.as_secs_f64());
    }

    pub fn tokens(&self, n: u64) {
        self.tokens.inc_by(n);
    }

    pub fn first_token(&self, took: Duration) {
        self.first_token.observe(took.as_secs_f64());
    }

    pub fn stream_done(&self, took: Duration) {
        self.stream_duration.observe(took.as_secs_f64());
    }

    pub fn stream_failed(&self, error: &ApiError) {
        self.stream_errors.get_or_create(&RequestLabels { endpoint: "/generate_stream".into(), status: error.status.as_u16() }).inc();
    }

    /// The exposition, the scheduler's figures read now.
    pub fn render(&self, scheduler: &Scheduler) -> String {
        let load = scheduler.load();
        self.waiting.set(load.waiting as i64);
        self.running.set(load.running as i64);
        {
            let stats = scheduler.stats();
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            self.steps.inc_by(stats.steps.saturating_sub(seen.steps));
            self.shared_steps.inc_by(stats.shared_steps.saturating_sub(seen.shared_steps));
            self.rows.inc_by(stats.rows.saturating_sub(seen.rows));
            self.max_rows.set(stats.max_rows as i64);
            *seen = stats;
        }
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
