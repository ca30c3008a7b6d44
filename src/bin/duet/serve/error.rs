//! Errors as HTTP answers: the C ABI's status name and message in a JSON body, the HTTP status
//! by kind (the caller's mistake 400, a full queue 429, shutting down 503, past the deadline 504).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use duet::ErrorKind;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// The C ABI's status name (`DUET_STATUS_INVALID_PARAM`) or, for HTTP-only failures, a name
    /// of the same form.
    pub name: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, name: &str, message: impl Into<String>) -> Self {
        Self { status, name: name.to_string(), message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "DUET_STATUS_INVALID_ARGUMENT", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "DUET_HTTP_PAYLOAD_TOO_LARGE", message)
    }

    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "DUET_HTTP_OVERLOADED", message)
    }

    pub fn shutting_down() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "DUET_HTTP_SHUTTING_DOWN", "the server is shutting down")
    }

    /// The short kind TGI-style clients read (`error_type`): the name without its prefix.
    pub fn error_type(&self) -> String {
        self.name.trim_start_matches("DUET_STATUS_").trim_start_matches("DUET_HTTP_").to_ascii_lowercase()
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": self.message, "error_type": self.error_type(), "status": self.name})
    }
}

impl From<duet::Error> for ApiError {
    fn from(e: duet::Error) -> Self {
        let kind = e.kind();
        let status = match kind {
            ErrorKind::InvalidArgument
            | ErrorKind::NullPointer
            | ErrorKind::InvalidUtf8
            | ErrorKind::UnknownParam
            | ErrorKind::InvalidParam
            | ErrorKind::Tokenizer
            | ErrorKind::InputTooLong
            | ErrorKind::Unsupported
            | ErrorKind::UnknownLanguage => StatusCode::BAD_REQUEST,
            ErrorKind::Busy => StatusCode::TOO_MANY_REQUESTS,
            // The request alone could not fit the model's memory budget: smaller, not later.
            ErrorKind::OverBudget => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            // Only a client that went away cancels; nobody reads this answer.
            ErrorKind::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, duet::ffi::duet_status::from(kind).name(), e.to_string())
    }
}

impl From<crate::common::Failure> for ApiError {
    fn from(f: crate::common::Failure) -> Self {
        match f {
            crate::common::Failure::Usage(m) => Self::new(StatusCode::BAD_REQUEST, "DUET_STATUS_INVALID_PARAM", m),
            crate::common::Failure::Duet(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if matches!(self.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}
