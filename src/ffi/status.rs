//! Status codes (fixed numbers, never reused) and the per-thread last error message.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

use crate::error::{Error, ErrorKind};

/// Result of every fallible call. Numbers are part of the ABI and never change meaning.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum duet_status {
    Ok = 0,
    /// An argument is out of range or inconsistent with another.
    InvalidArgument = 1,
    /// A required pointer was NULL.
    NullPointer = 2,
    /// A string was not valid UTF-8.
    InvalidUtf8 = 3,
    /// A params/options key does not exist; the message lists the valid keys.
    UnknownParam = 4,
    /// A params/options value has the wrong type or is out of range.
    InvalidParam = 5,
    /// libonnxruntime was not found; the message names every place tried.
    RuntimeNotFound = 6,
    /// libonnxruntime is too old for this build.
    RuntimeVersion = 7,
    /// A file the model needs is missing; the message names it.
    ModelFileMissing = 8,
    /// A model file is malformed or does not fit the others; the message names it.
    ModelInvalid = 9,
    /// The tokenizer failed on an input or output.
    Tokenizer = 10,
    /// An input is longer than `max_input_tokens` and `truncate_input` is off.
    InputTooLong = 11,
    /// ONNX Runtime failed while running a graph.
    OnnxRuntime = 12,
    /// A requested execution provider could not be used (strict mode).
    ProviderUnavailable = 13,
    /// A file could not be read or written.
    Io = 14,
    /// A bug in duet; please report it with the message.
    Internal = 15,
    /// An index file is corrupt, truncated, or of another format version.
    IndexFile = 16,
    /// A cancel token given in the params was cancelled (from any thread).
    Cancelled = 17,
    /// The call ran past the params' `timeout_ms`.
    DeadlineExceeded = 18,
    /// A handle that is freed, foreign, or of another type was passed.
    InvalidHandle = 19,
    /// The model cannot do this call (e.g. generation or rerank on an embedding-only model).
    Unsupported = 20,
    /// An index was built with another model (graph, tokenizer, pooling or width differ).
    IndexModelMismatch = 21,
    /// The model's scheduler already holds `max_requests` requests; retry later.
    Busy = 22,
    /// A request's worst-case memory (inputs x beams x length x cache per token, the vocabulary
    /// work) is over the model's `memory_budget_mb`; ask for less or raise the budget.
    OverBudget = 23,
    /// translate: the model does not know this language code (the message lists the ones it
    /// knows), or a one-pair model was asked for another pair.
    UnknownLanguage = 24,
    /// duet panicked; the host is unharmed, the object involved should be freed.
    Panic = 100,
}

impl From<ErrorKind> for duet_status {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidArgument => duet_status::InvalidArgument,
            ErrorKind::NullPointer => duet_status::NullPointer,
            ErrorKind::InvalidUtf8 => duet_status::InvalidUtf8,
            ErrorKind::UnknownParam => duet_status::UnknownParam,
            ErrorKind::InvalidParam => duet_status::InvalidParam,
            ErrorKind::RuntimeNotFound => duet_status::RuntimeNotFound,
            ErrorKind::RuntimeVersion => duet_status::RuntimeVersion,
            ErrorKind::ModelFileMissing => duet_status::ModelFileMissing,
            ErrorKind::ModelInvalid => duet_status::ModelInvalid,
            ErrorKind::Tokenizer => duet_status::Tokenizer,
            ErrorKind::InputTooLong => duet_status::InputTooLong,
            ErrorKind::Onnx => duet_status::OnnxRuntime,
            ErrorKind::ProviderUnavailable => duet_status::ProviderUnavailable,
            ErrorKind::Io => duet_status::Io,
            ErrorKind::Internal => duet_status::Internal,
            ErrorKind::IndexFile => duet_status::IndexFile,
            ErrorKind::Cancelled => duet_status::Cancelled,
            ErrorKind::DeadlineExceeded => duet_status::DeadlineExceeded,
            ErrorKind::InvalidHandle => duet_status::InvalidHandle,
            ErrorKind::Unsupported => duet_status::Unsupported,
            ErrorKind::IndexModelMismatch => duet_status::IndexModelMismatch,
            ErrorKind::Busy => duet_status::Busy,
            ErrorKind::OverBudget => duet_status::OverBudget,
            ErrorKind::UnknownLanguage => duet_status::UnknownLanguage,
        }
    }
}

impl duet_status {
    pub fn name(self) -> &'static str {
        match self {
            duet_status::Ok => "DUET_STATUS_OK",
            duet_status::InvalidArgument => "DUET_STATUS_INVALID_ARGUMENT",
            duet_status::NullPointer => "DUET_STATUS_NULL_POINTER",
            duet_status::InvalidUtf8 => "DUET_STATUS_INVALID_UTF8",
            duet_status::UnknownParam => "DUET_STATUS_UNKNOWN_PARAM",
            duet_status::InvalidParam => "DUET_STATUS_INVALID_PARAM",
            duet_status::RuntimeNotFound => "DUET_STATUS_RUNTIME_NOT_FOUND",
            duet_status::RuntimeVersion => "DUET_STATUS_RUNTIME_VERSION",
            duet_status::ModelFileMissing => "DUET_STATUS_MODEL_FILE_MISSING",
            duet_status::ModelInvalid => "DUET_STATUS_MODEL_INVALID",
            duet_status::Tokenizer => "DUET_STATUS_TOKENIZER",
            duet_status::InputTooLong => "DUET_STATUS_INPUT_TOO_LONG",
            duet_status::OnnxRuntime => "DUET_STATUS_ONNX_RUNTIME",
            duet_status::ProviderUnavailable => "DUET_STATUS_PROVIDER_UNAVAILABLE",
            duet_status::Io => "DUET_STATUS_IO",
            duet_status::Internal => "DUET_STATUS_INTERNAL",
            duet_status::IndexFile => "DUET_STATUS_INDEX_FILE",
            duet_status::Cancelled => "DUET_STATUS_CANCELLED",
            duet_status::DeadlineExceeded => "DUET_STATUS_DEADLINE_EXCEEDED",
            duet_status::InvalidHandle => "DUET_STATUS_INVALID_HANDLE",
            duet_status::Unsupported => "DUET_STATUS_UNSUPPORTED",
            duet_status::IndexModelMismatch => "DUET_STATUS_INDEX_MODEL_MISMATCH",
            duet_status::Busy => "DUET_STATUS_BUSY",
            duet_status::OverBudget => "DUET_STATUS_OVER_BUDGET",
            duet_status::UnknownLanguage => "DUET_STATUS_UNKNOWN_LANGUAGE",
            duet_status::Panic => "DUET_STATUS_PANIC",
        }
    }

    const ALL: [duet_status; 26] = [
        duet_status::Ok,
        duet_status::InvalidArgument,
        duet_status::NullPointer,
        duet_status::InvalidUtf8,
        duet_status::UnknownParam,
        duet_status::InvalidParam,
        duet_status::RuntimeNotFound,
        duet_status::RuntimeVersion,
        duet_status::ModelFileMissing,
        duet_status::ModelInvalid,
        duet_status::Tokenizer,
        duet_status::InputTooLong,
        duet_status::OnnxRuntime,
        duet_status::ProviderUnavailable,
        duet_status::Io,
        duet_status::Internal,
        duet_status::IndexFile,
        duet_status::Cancelled,
        duet_status::DeadlineExceeded,
        duet_status::InvalidHandle,
        duet_status::Unsupported,
        duet_status::IndexModelMismatch,
        duet_status::Busy,
        duet_status::OverBudget,
        duet_status::UnknownLanguage,
        duet_status::Panic,
    ];
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records the thread's last error. In a thread's destructors, after its storage is gone, the
/// message is dropped (the status still says what happened): never a panic, which would abort.
pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut slot) = e.try_borrow_mut() {
            *slot = c;
        }
    });
}

pub(crate) fn fail(e: &Error) -> duet_status {
    set_last_error(&e.to_string());
    e.kind().into()
}

/// The message of the last failed call on this thread ("" if none). Valid until the next
/// failing call on the same thread; do not free it. In a thread's destructors (after its
/// storage is gone) it is a static "(no message: the thread is exiting)".
#[no_mangle]
pub extern "C" fn duet_last_error_message() -> *const c_char {
    const EXITING: &CStr = c"(no message: the thread is exiting)";
    LAST_ERROR.try_with(|e| e.try_borrow().map_or(EXITING.as_ptr(), |m| m.as_ptr())).unwrap_or(EXITING.as_ptr())
}

/// The name of a status code, e.g. "DUET_STATUS_MODEL_INVALID"; "DUET_STATUS_UNKNOWN" for
/// numbers that are not codes. Static storage; do not free.
/// Thread-safe; static storage.
#[no_mangle]
pub extern "C" fn duet_status_name(status: i32) -> *const c_char {
    let name = duet_status::ALL.iter().find(|s| **s as i32 == status).map_or("DUET_STATUS_UNKNOWN", |s| s.name());
    // Names are ASCII literals; the NUL-terminated copies live for the whole process.
    static NAMES: once_cell::sync::Lazy<Vec<(&'static str, CString)>> = once_cell::sync::Lazy::new(|| {
        duet_status::ALL.iter().map(|s| s.name()).chain(["DUET_STATUS_UNKNOWN"]).map(|n| (n, CString::new(n).unwrap_or_default())).collect()
    });
    NAMES.iter().find(|(n, _)| *n == name).map_or(std::ptr::null(), |(_, c)| c.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        // These numbers are ABI: this test changes only when a code is added.
        let numbers: Vec<i32> = duet_status::ALL.iter().map(|s| *s as i32).collect();
        assert_eq!(numbers, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 100]);
    }
}
