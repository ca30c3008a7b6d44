//! Request bodies: JSON parsed into typed requests, and `parameters` into the same typed
//! settings the C ABI and the CLI use (the same keys, checks and messages), with the names
//! text-generation-inference clients send mapped onto duet's.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::common::{check_applies, Cmd};
use duet::Settings;

/// One text or several (`"inputs": "..."` or `"inputs": ["...", ...]`).
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Inputs {
    One(String),
    Many(Vec<String>),
}

impl Inputs {
    pub fn texts(&self) -> Vec<&str> {
        match self {
            Inputs::One(t) => vec![t.as_str()],
            Inputs::Many(ts) => ts.iter().map(String::as_str).collect(),
        }
    }

    pub fn is_one(&self) -> bool {
        matches!(self, Inputs::One(_))
    }
}

/// The body as `T`; a body over the size limit is 413, anything not JSON of that shape 400.
pub fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!("the request body is over the server's limit (--max-body-bytes): {e}"))
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON for this endpoint: {e}")))
}

/// text-generation-inference parameters duet has no use for: accepted when they ask for
/// nothing (null, false, 0, empty), refused otherwise.
const UNSUPPORTED: &[&str] =
    &["best_of", "watermark", "decoder_input_details", "typical_p", "top_n_tokens", "frequency_penalty", "grammar", "adapter_id"];

fn asks_nothing(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The call's settings from `parameters`, each key checked for `cmd` as the CLI checks `--set`.
/// Null values are unset keys (clients send every parameter, null when unset). `stop` is
/// `stop_strings`; `truncate: N` is `max_input_tokens: N` with `truncate_input`; `details` and
/// `return_full_text` are read by the caller.
pub fn settings(cmd: Cmd, endpoint: &str, parameters: Option<&Map<String, Value>>) -> Result<Settings, ApiError> {
    let mut settings = duet::new_generation_settings();
    let caller = format!("POST {endpoint}");
    for (key, value) in parameters.into_iter().flatten() {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "details" | "stream" => continue,
            "return_full_text" if value.as_bool() == Some(true) => {
                return Err(ApiError::bad_request(
                    "`return_full_text: true` is not supported: an encoder-decoder model's output never contains its input",
                ))
            }
            "return_full_text" => continue,
            k if UNSUPPORTED.contains(&k) => {
                if asks_nothing(value) {
                    continue;
                }
                return Err(ApiError::bad_request(format!("`{k}` is not supported by duet")));
            }
            "stop" => {
                if !asks_nothing(value) {
                    settings.set_json("stop_strings", value)?;
                    check_applies(cmd, &caller, "stop_strings", &settings)?;
                }
            }
            "truncate" => {
                settings.set_json("max_input_tokens", value)?;
                settings.set_bool("truncate_input", true)?;
            }
            k => {
                settings.set_json(k, value)?;
                check_applies(cmd, &caller, k, &settings)?;
            }
        }
    }
    Ok(settings)
}

pub fn wants_details(parameters: Option<&Map<String, Value>>) -> bool {
    parameters.and_then(|p| p.get("details")).and_then(Value::as_bool).unwrap_or(false)
}
