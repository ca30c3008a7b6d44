//! The one error type of the core. Every variant maps to a fixed C status code (`ffi::status`).

use std::path::PathBuf;

/// What went wrong, in a form a host can act on. The numeric code of each kind is stable
/// (see [`ErrorKind::code`]); new kinds get new numbers, numbers are never reused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("null pointer passed for `{0}`")]
    NullPointer(&'static str),
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(String),
    #[error("unknown parameter `{key}`; valid parameters are: {valid}")]
    UnknownParam { key: String, valid: String },
    #[error("invalid value for parameter `{key}`: {reason}")]
    InvalidParam { key: String, reason: String },
    #[error("ONNX Runtime library not found; tried: {tried}. Set DUET_ORT_LIBRARY to the path of libonnxruntime.so (1.31 or newer; `make fetch-ort` unpacks one into .ort/lib), or install it next to libduet")]
    RuntimeNotFound { tried: String },
    #[error("ONNX Runtime at {path} is too old or incompatible: {reason}")]
    RuntimeVersion { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    ModelFileMissing { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    ModelInvalid { path: PathBuf, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("input {index} is longer than the limit of {limit} tokens ({tokens} counted; set `truncate_input` to truncate, or raise `max_input_tokens`)")]
    InputTooLong { index: usize, tokens: usize, limit: usize },
    #[error("ONNX Runtime: {0}")]
    Onnx(String),
    #[error("execution provider unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("I/O error on {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("index file {}: {reason}", path.display())]
    IndexFile { path: PathBuf, reason: String },
    #[error("cancelled")]
    Cancelled,
    #[error("deadline exceeded after {0} ms")]
    DeadlineExceeded(u64),
    #[error("invalid handle: {0}")]
    InvalidHandle(String),
    #[error("not supported by this model: {0}")]
    Unsupported(String),
    #[error("index {}: {reason}", path.display())]
    IndexModelMismatch { path: PathBuf, reason: String },
    #[error("busy: {0}; retry later")]
    Busy(String),
    #[error("over the memory budget: {0}")]
    OverBudget(String),
    #[error("unknown language `{code}`: {reason}")]
    UnknownLanguage { code: String, reason: String },
}

impl Clone for Error {
    /// The same error again (one failed batch run fails each request in it); an I/O error is
    /// copied by kind and message.
    fn clone(&self) -> Self {
        match self {
            Error::Io { path, source } => Error::Io { path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) },
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::NullPointer(m) => Error::NullPointer(m),
            Error::InvalidUtf8(m) => Error::InvalidUtf8(m.clone()),
            Error::UnknownParam { key, valid } => Error::UnknownParam { key: key.clone(), valid: valid.clone() },
            Error::InvalidParam { key, reason } => Error::InvalidParam { key: key.clone(), reason: reason.clone() },
            Error::RuntimeNotFound { tried } => Error::RuntimeNotFound { tried: tried.clone() },
            Error::RuntimeVersion { path, reason } => Error::RuntimeVersion { path: path.clone(), reason: reason.clone() },
            Error::ModelFileMissing { path, reason } => Error::ModelFileMissing { path: path.clone(), reason: reason.clone() },
            Error::ModelInvalid { path, reason } => Error::ModelInvalid { path: path.clone(), reason: reason.clone() },
            Error::Tokenizer(m) => Error::Tokenizer(m.clone()),
            Error::InputTooLong { index, tokens, limit } => Error::InputTooLong { index: *index, tokens: *tokens, limit: *limit },
            Error::Onnx(m) => Error::Onnx(m.clone()),
            Error::ProviderUnavailable(m) => Error::ProviderUnavailable(m.clone()),
            Error::Internal(m) => Error::Internal(m.clone()),
            Error::IndexFile { path, reason } => Error::IndexFile { path: path.clone(), reason: reason.clone() },
            Error::Cancelled => Error::Cancelled,
            Error::DeadlineExceeded(ms) => Error::DeadlineExceeded(*ms),
            Error::InvalidHandle(m) => Error::InvalidHandle(m.clone()),
            Error::Unsupported(m) => Error::Unsupported(m.clone()),
            Error::IndexModelMismatch { path, reason } => Error::IndexModelMismatch { path: path.clone(), reason: reason.clone() },
            Error::Busy(m) => Error::Busy(m.clone()),
            Error::OverBudget(m) => Error::OverBudget(m.clone()),
            Error::UnknownLanguage { code, reason } => Error::UnknownLanguage { code: code.clone(), reason: reason.clone() },
        }
    }
}

/// A field-less mirror of [`Error`], 1:1 with the C status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    NullPointer,
    InvalidUtf8,
    UnknownParam,
    InvalidParam,
    RuntimeNotFound,
    RuntimeVersion,
    ModelFileMissing,
    ModelInvalid,
    Tokenizer,
    InputTooLong,
    Onnx,
    ProviderUnavailable,
    Io,
    Internal,
    IndexFile,
    Cancelled,
    DeadlineExceeded,
    InvalidHandle,
    Unsupported,
    IndexModelMismatch,
    Busy,
    OverBudget,
    UnknownLanguage,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::NullPointer(_) => ErrorKind::NullPointer,
            Error::InvalidUtf8(_) => ErrorKind::InvalidUtf8,
            Error::UnknownParam { .. } => ErrorKind::UnknownParam,
            Error::InvalidParam { .. } => ErrorKind::InvalidParam,
            Error::RuntimeNotFound { .. } => ErrorKind::RuntimeNotFound,
            Error::RuntimeVersion { .. } => ErrorKind::RuntimeVersion,
            Error::ModelFileMissing { .. } => ErrorKind::ModelFileMissing,
            Error::ModelInvalid { .. } => ErrorKind::ModelInvalid,
            Error::Tokenizer(_) => ErrorKind::Tokenizer,
            Error::InputTooLong { .. } => ErrorKind::InputTooLong,
            Error::Onnx(_) => ErrorKind::Onnx,
            Error::ProviderUnavailable(_) => ErrorKind::ProviderUnavailable,
            Error::Io { .. } => ErrorKind::Io,
            Error::Internal(_) => ErrorKind::Internal,
            Error::IndexFile { .. } => ErrorKind::IndexFile,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::DeadlineExceeded(_) => ErrorKind::DeadlineExceeded,
            Error::InvalidHandle(_) => ErrorKind::InvalidHandle,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::IndexModelMismatch { .. } => ErrorKind::IndexModelMismatch,
            Error::Busy(_) => ErrorKind::Busy,
            Error::OverBudget(_) => ErrorKind::OverBudget,
            Error::UnknownLanguage { .. } => ErrorKind::UnknownLanguage,
        }
    }

    pub(crate) fn invalid_model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::ModelInvalid { path: path.into(), reason: reason.into() }
    }

    pub(crate) fn invalid_param(key: &str, reason: impl Into<String>) -> Self {
        Error::InvalidParam { key: key.to_string(), reason: reason.into() }
    }
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Error::Onnx(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message a panic carried (its `&str` or `String` payload), if it carried one.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned())
}
