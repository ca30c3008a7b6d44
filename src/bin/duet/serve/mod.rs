//! `duet serve`: one model behind an HTTP server (axum on tokio), every generation through the
//! model's continuous-batching scheduler. Endpoints in the shapes search engines and clients
//! already speak: text-generation-inference's `/generate`, `/generate_stream` (server-sent
//! events) and `/`; text-embeddings-inference's `/embed` and `/rerank`; `/summarize`,
//! `/translate`; `/health`, `/info`, `/metrics` (Prometheus).

mod error;
mod generate;
mod metrics;
mod request;
mod state;
mod tasks;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use duet::{Model, Scheduler, SchedulerOptions};
use serde_json::json;

use crate::common::{Failure, ModelArgs};
use error::ApiError;
use state::{App, ServerLimits};

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on (127.0.0.1: this machine only)
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one (the address is printed on stderr)
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Clients must send `Authorization: Bearer KEY` (all but /health); the environment's
    /// DUET_API_KEY when not given
    #[arg(long, env = "DUET_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Largest request body, in bytes (a larger one is answered 413)
    #[arg(long, default_value_t = 2 << 20)]
    max_body_bytes: usize,
    /// Most texts in one request
    #[arg(long, default_value_t = 256)]
    max_inputs: usize,
    /// Every request ends within this many milliseconds (its own `timeout_ms` may be shorter); 0: no cap
    #[arg(long, default_value_t = 300_000)]
    max_timeout_ms: u64,
    /// Embed and rerank requests running at once [default: the machine's cores]
    #[arg(long)]
    max_tasks: Option<usize>,
    /// Summarize requests running at once (their generation shares the scheduler's batches)
    #[arg(long, default_value_t = 32)]
    max_summaries: usize,
    /// Requests waiting for either kind of place, each; more are answered 503
    #[arg(long, default_value_t = 64)]
    max_waiting_tasks: usize,
    /// Threads serving connections [default: the machine's cores, at most 4]
    #[arg(long)]
    workers: Option<usize>,
    /// After SIGTERM or Ctrl-C, how long in-flight requests may take to finish, in seconds
    #[arg(long, default_value_t = 30)]
    shutdown_timeout_s: u64,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn bounded(name: &str, value: usize, max: usize) -> Result<usize, Failure> {
    if value == 0 || value > max {
        return Err(Failure::Usage(format!("--{name} {value}: must be 1 to {max} on this machine")));
    }
    Ok(value)
}

/// glibc raises its mmap threshold each time a large block is freed; large blocks then come from
/// the heap, which fragments under concurrent requests of varying shapes: the server's RSS grew
/// by 150 MiB per 20 s at 128 clients (bench/RESULTS.md, load test). A fixed threshold returns
/// every large block to the system when it is freed. MALLOC_MMAP_THRESHOLD_ in the environment
/// still decides, when set.
fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: sets an allocator parameter before the server's threads start.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        }
    }
}

pub fn run(args: &ServeArgs) -> Result<(), Failure> {
    fix_mmap_threshold();
    let workers = bounded("workers", args.workers.unwrap_or(cores().min(4)), cores())?;
    let max_tasks = bounded("max-tasks", args.max_tasks.unwrap_or(cores()), 8 * cores())?;
    let max_inputs = bounded("max-inputs", args.max_inputs, 65_536)?;
    let max_summaries = bounded("max-summaries", args.max_summaries, 1024)?;
    let options = args.model.options()?;
    let Some(scheduling) = SchedulerOptions::from_model_options(&options) else {
        return Err(Failure::Usage("duet serve batches every request through the scheduler: `scheduling=off` does not apply".into()));
    };
    let model = Arc::new(Model::open_with(&args.model.model, &options)?);
    let scheduler = Arc::new(Scheduler::new(model.clone(), scheduling));
    let limits = ServerLimits {
        max_inputs,
        max_timeout_ms: args.max_timeout_ms,
        max_tasks,
        max_summaries,
        max_waiting_tasks: args.max_waiting_tasks,
    };
    let api_key = args.api_key.clone().filter(|k| !k.is_empty());
    let app = Arc::new(App::new(model, scheduler, limits, api_key, server_info(args, &scheduling, &limits, workers)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(max_tasks + max_summaries + 4)
        .thread_name("duet-serve")
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the server's threads: {e}")))?;
    runtime.block_on(serve(app, args))
}

fn server_info(args: &ServeArgs, scheduling: &SchedulerOptions, limits: &ServerLimits, workers: usize) -> serde_json::Value {
    json!({
        "duet_version": duet::VERSION,
        "max_body_bytes": args.max_body_bytes,
        "max_inputs": limits.max_inputs,
        "max_timeout_ms": limits.max_timeout_ms,
        "max_tasks": limits.max_tasks,
        "max_summaries": limits.max_summaries,
        "max_waiting_tasks": limits.max_waiting_tasks,
        "workers": workers,
        "max_batch_rows": scheduling.max_batch_rows,
        "max_requests": scheduling.max_requests,
        "auth": args.api_key.as_deref().is_some_and(|k| !k.is_empty()),
    })
}

fn router(app: Arc<App>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/", post(generate::root))
        .route("/generate", post(generate::generate))
        .route("/generate_stream", post(generate::generate_stream))
        .route("/summarize", post(tasks::summarize))
        .route("/translate", post(tasks::translate))
        .route("/embed", post(tasks::embed))
        .route("/rerank", post(tasks::rerank))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(from_fn_with_state(app.clone(), authorize))
        .layer(from_fn_with_state(app.clone(), track))
        .with_state(app)
}

async fn serve(app: Arc<App>, args: &ServeArgs) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| Failure::Usage(format!("cannot listen on {}:{}: {e}", args.host, args.port)))?;
    let address: SocketAddr = listener.local_addr().map_err(|e| Failure::Usage(format!("the listening address: {e}")))?;
    eprintln!("duet serve: listening on http://{address} (model {})", args.model.model);
    let stop = Arc::new(tokio::sync::Notify::new());
    let (on_signal, stopping) = (app.clone(), stop.clone());
    let server = axum::serve(listener, router(app.clone(), args.max_body_bytes)).with_graceful_shutdown(async move {
        termination().await;
        on_signal.shutting_down.store(true, Ordering::SeqCst);
        let load = on_signal.scheduler.load();
        eprintln!("duet serve: shutting down; finishing in-flight requests ({} generating)", load.running + load.waiting);
        stopping.notify_one();
    });
    let grace = Duration::from_secs(args.shutdown_timeout_s);
    tokio::select! {
        served = server => served.map_err(|e| Failure::Usage(format!("the server failed: {e}")))?,
        _ = async { stop.notified().await; tokio::time::sleep(grace).await } => {
            eprintln!("duet serve: in-flight requests still running after {}s; stopping them", grace.as_secs());
        }
    }
    eprintln!("duet serve: stopped");
    Ok(())
}

/// SIGTERM or SIGINT.
async fn termination() {
    let interrupt = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = interrupt.await;
            return;
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = term.recv() => {}
    }
}

/// Counts every answer by endpoint and status, and times it.
async fn track(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let endpoint = request.extensions().get::<MatchedPath>().map_or("other".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    app.metrics.request(&endpoint, response.status().as_u16(), started.elapsed());
    response
}

/// With an API key set, every endpoint but /health wants `Authorization: Bearer KEY`.
async fn authorize(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(key) = app.api_key.as_deref() else { return next.run(request).await };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| same_secret(g.trim().as_bytes(), key.as_bytes())) {
        return next.run(request).await;
    }
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "DUET_HTTP_UNAUTHORIZED", "this server wants `Authorization: Bearer <api key>`")
            .into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// Compares without stopping at the first difference (no timing hint of the key's prefix).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(app): State<Arc<App>>) -> Response {
    if app.shutting_down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "shutting down"}))).into_response();
    }
    Json(json!({"status": "ok"})).into_response()
}

async fn info(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    let mut info = app.model.info_json();
    info["server"] = app.server_info.clone();
    Json(info)
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(&app.scheduler);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "DUET_HTTP_NOT_FOUND",
        format!(
            "no endpoint {} {} (POST /generate, /generate_stream, /summarize, /translate, /embed, /rerank; GET /health, /info, /metrics)",
            request.method(),
            request.uri().path()
        ),
    )
}
