//! Handle tagging: every object handed to the host is registered with its type, so that a freed,
//! foreign or wrongly typed pointer is reported (DUET_STATUS_INVALID_HANDLE) instead of being
//! dereferenced, and a double free is ignored. (A freed address reused by a new object of the
//! same type cannot be told apart; that is the limit of "where possible".)

use std::any::TypeId;
use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::sync::Mutex;

use once_cell::sync::Lazy;

use crate::error::{Error, Result};

static LIVE: Lazy<Mutex<HashMap<usize, TypeId>>> = Lazy::new(Default::default);

fn live() -> std::sync::MutexGuard<'static, HashMap<usize, TypeId>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Moves `value` to the heap and registers it; the pointer goes to the host.
pub(crate) fn new_handle<T: 'static>(value: T) -> *mut T {
    let p = Box::into_raw(Box::new(value));
    live().insert(p as usize, TypeId::of::<T>());
    p
}

/// A string the host frees with `duet_string_free`.
pub(crate) fn new_string(s: CString) -> *mut c_char {
    let p = s.into_raw();
    live().insert(p as usize, TypeId::of::<CString>());
    p
}

fn check<T: 'static>(p: usize, what: &'static str) -> Result<()> {
    if p == 0 {
        return Err(Error::NullPointer(what));
    }
    match live().get(&p) {
        Some(t) if *t == TypeId::of::<T>() => Ok(()),
        Some(_) => Err(Error::InvalidHandle(format!("`{what}` points to a duet object of another type"))),
        None => Err(Error::InvalidHandle(format!("`{what}` is not a live duet object (already freed, or never made by duet)"))),
    }
}

pub(crate) unsafe fn handle<'a, T: 'static>(p: *const T, what: &'static str) -> Result<&'a T> {
    check::<T>(p as usize, what)?;
    Ok(&*p)
}

pub(crate) unsafe fn handle_mut<'a, T: 'static>(p: *mut T, what: &'static str) -> Result<&'a mut T> {
    check::<T>(p as usize, what)?;
    Ok(&mut *p)
}

/// Unregisters and drops; NULL is a no-op; a pointer that is not live is left alone and the
/// reason is recorded as the thread's last error.
pub(crate) unsafe fn free_handle<T: 'static>(p: *mut T, what: &'static str) {
    if p.is_null() {
        return;
    }
    let registered = {
        let mut map = live();
        match map.get(&(p as usize)) {
            Some(t) if *t == TypeId::of::<T>() => map.remove(&(p as usize)).is_some(),
            _ => false,
        }
    };
    if registered {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(p))));
    } else {
        super::status::set_last_error(&format!("{what}: not a live duet object (double free?); nothing was freed"));
    }
}

pub(crate) unsafe fn free_string(p: *mut c_char) {
    if p.is_null() {
        return;
    }
    if live().remove(&(p as usize)).is_some() {
        drop(CString::from_raw(p));
    } else {
        super::status::set_last_error("duet_string_free: not a string from duet (double free?); nothing was freed");
    }
}
