//! `duet bench`: one benchmark configuration per process, printed as one JSON line (see
//! tools/bench/run_bench.py, which runs every configuration interleaved and writes the table).
//!
//!   duet bench --model DIR --input-file FILE [--batch B] [--new-tokens N] [--concurrency C]
//!              [--runs R] [--option KEY=VALUE ...] [--set KEY=VALUE ...]
//!
//! Generation is greedy with exactly N new tokens (min = max). Batch B sends B copies of the
//! input in one call; concurrency C runs C threads each sending batch-1 calls and reports the
//! aggregate rate. Peak RSS is the process's VmHWM.

use std::sync::Arc;
use std::time::Instant;

use duet::{Model, Settings};

use crate::common::Failure;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The model directory
    #[arg(long)]
    model: String,
    /// A file whose text (trimmed) is the input
    #[arg(long)]
    input_file: String,
    /// Copies of the input in one call
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Exactly this many tokens are generated (min = max)
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Threads each sending batch-1 calls (0: one call of --batch)
    #[arg(long, default_value_t = 0)]
    concurrency: usize,
    /// Timed runs (the median is reported)
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// A model option, KEY=VALUE; repeatable
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// A parameter, KEY=VALUE; repeatable
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

fn pair(s: &str) -> Result<(&str, &str), String> {
    s.split_once('=').ok_or_else(|| format!("`{s}`: expected KEY=VALUE"))
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())))
        .flatten()
        .map_or(0.0, |kib| kib / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(args: &BenchArgs) -> Result<(), Failure> {
    measure(args).map_err(Failure::Usage)
}

fn measure(a: &BenchArgs) -> Result<(), String> {
    let input = std::fs::read_to_string(&a.input_file).map_err(|e| format!("{}: {e}", a.input_file))?.trim().to_string();
    if input.is_empty() || a.batch == 0 || a.runs == 0 {
        return Err("an empty input, --batch 0 or --runs 0 measures nothing".into());
    }
    let mut options = duet::new_model_options();
    for o in &a.options {
        let (k, v) = pair(o)?;
        options.set_str(k, v).map_err(|e| e.to_string())?;
    }
    let model = Arc::new(Model::open_with(&a.model, &options).map_err(|e| e.to_string())?);
    let mut params: Settings = duet::new_generation_settings();
    params.set_int("max_new_tokens", a.new_tokens as i64).map_err(|e| e.to_string())?;
    params.set_int("min_new_tokens", a.new_tokens as i64).map_err(|e| e.to_string())?;
    params.set_int("max_input_tokens", 1 << 20).map_err(|e| e.to_string())?;
    for o in &a.sets {
        let (k, v) = pair(o)?;
        params.set_str(k, v).map_err(|e| e.to_string())?;
    }
    let encoded = model.tokenizer.encode(&input, None, false, 0).map_err(|e| e.to_string())?;
    let input_tokens = encoded.ids.len();
    let variant = std::path::Path::new(&a.model).file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());

    let once = |batch: usize| -> Result<(f64, usize), String> {
        let texts: Vec<&str> = vec![input.as_str(); batch];
        let start = Instant::now();
        let out = duet::generate(&model, &texts, &params, None).map_err(|e| e.to_string())?;
        let tokens: usize = out.iter().map(|o| o.sequences[0].token_ids.len()).sum();
        Ok((start.elapsed().as_secs_f64(), tokens))
    };

    let json = if a.concurrency > 0 {
        // As the C API serves many callers: through the model's scheduler, unless scheduling=off.
        let scheduler = duet::SchedulerOptions::from_model_options(&options).map(|bounds| duet::Scheduler::new(model.clone(), bounds));
        let resolved = duet::resolve_params(&model, &params).map_err(|e| e.to_string())?;
        let call = || -> Result<usize, String> {
            let Some(scheduler) = &scheduler else { return once(1).map(|r| r.1) };
            let encoded = duet::encode_inputs(&model, &[input.as_str()], &resolved).map_err(|e| e.to_string())?;
            let out = scheduler.generate(encoded, &resolved, Default::default(), None).map_err(|e| e.to_string())?;
            Ok(out[0].sequences[0].token_ids.len())
        };
        call()?;
        let start = Instant::now();
        let tokens: usize = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..a.concurrency).map(|_| s.spawn(|| (0..a.runs).map(|_| call()).sum::<Result<usize, String>>())).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into()))).sum::<Result<usize, String>>()
        })?;
        let secs = start.elapsed().as_secs_f64();
        serde_json::json!({
            "system": "duet", "variant": variant, "batch": 1, "concurrency": a.concurrency, "scheduler": scheduler.is_some(),
            "tokens_per_s": tokens as f64 / secs, "requests": a.concurrency * a.runs,
            "new_tokens": a.new_tokens, "input_tokens": input_tokens, "peak_rss_mib": peak_rss_mib(),
        })
    } else {
        once(a.batch)?;
        let mut totals = Vec::new();
        let mut encoders = Vec::new();
        let ids = vec![encoded.ids.clone(); a.batch];
        let pad = params.int("pad_token_id").unwrap_or(0) as u32;
        for _ in 0..a.runs {
            let start = Instant::now();
            model.encoder.run(&ids, pad).map_err(|e| e.to_string())?;
            encoders.push(start.elapsed().as_secs_f64());
            let (secs, tokens) = once(a.batch)?;
            if tokens != a.batch * a.new_tokens {
                return Err(format!("generated {tokens} tokens, expected {}", a.batch * a.new_tokens));
            }
            totals.push(secs);
        }
        let (total, encoder) = (median(totals), median(encoders));
        serde_json::json!({
            "system": "duet", "variant": variant, "batch": a.batch, "concurrency": 1,
            "tokens_per_s": (a.batch * a.new_tokens) as f64 / total,
            "ms_per_step": (total - encoder) * 1000.0 / a.new_tokens as f64,
            "encoder_ms": encoder * 1000.0,
            "new_tokens": a.new_tokens, "input_tokens": input_tokens, "peak_rss_mib": peak_rss_mib(),
        })
    };
    println!("{json}");
    Ok(())
}
