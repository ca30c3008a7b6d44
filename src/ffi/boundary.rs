//! The panic boundary and pointer/string checks shared by every exported function.

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::status::{duet_status, fail, set_last_error};
use crate::error::{Error, Result};

/// Runs `f`, turning errors into status codes and panics into `Panic`.
pub(crate) fn boundary(f: impl FnOnce() -> Result<()>) -> duet_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => duet_status::Ok,
        Ok(Err(e)) => fail(&e),
        Err(payload) => {
            let what = crate::error::panic_message(&*payload).unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("duet panicked: {what}"));
            duet_status::Panic
        }
    }
}

pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &'static str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::NullPointer(what));
    }
    CStr::from_ptr(p).to_str().map_err(|e| Error::InvalidUtf8(format!("`{what}`: {e}")))
}

pub(crate) fn out_arg<T>(p: *mut T, what: &'static str) -> Result<*mut T> {
    if p.is_null() {
        Err(Error::NullPointer(what))
    } else {
        Ok(p)
    }
}

/// A C copy of `s`. A NUL character (models can emit byte 0), which a C string cannot hold,
/// becomes U+FFFD; JSON output (`duet_result_to_json`) keeps it exactly as \u0000.
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

/// Frees a string that duet returned as `char *`. NULL is a no-op; a pointer duet did not
/// return (or already freed) is left alone.
/// Thread-safe; each string is freed once.
#[no_mangle]
pub unsafe extern "C" fn duet_string_free(s: *mut c_char) {
    let _ = catch_unwind(AssertUnwindSafe(|| super::handles::free_string(s)));
}

/// duet's version, "MAJOR.MINOR.PATCH". Static storage; do not free.
/// Thread-safe; static storage.
#[no_mangle]
pub extern "C" fn duet_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
