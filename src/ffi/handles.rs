//! Handle tagging: every object handed to the host is registered with its type, so that a freed,
//! foreign or wrongly typed pointer is reported (DUET_STATUS_INVALID_HANDLE) instead of being
//! dereferenced, and a double free is ignored. A call holds the object it uses: freeing it from
//! another thread meanwhile takes effect when the last such call returns. (A freed address reused
//! by a new object of the same type cannot be told apart; that is the limit of "where possible".)

use std::any::TypeId;
use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use once_cell::sync::Lazy;

use crate::error::{Error, Result};

/// A registered object: its type, the calls inside it now, and whether its free came while they
/// were (then the last of them drops it).
struct Entry {
    type_id: TypeId,
    users: usize,
    freed: bool,
}

static LIVE: Lazy<Mutex<HashMap<usize, Entry>>> = Lazy::new(Default::default);

fn live() -> std::sync::MutexGuard<'static, HashMap<usize, Entry>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

fn register<T: 'static>(p: usize) {
    live().insert(p, Entry { type_id: TypeId::of::<T>(), users: 0, freed: false });
}

/// Moves `value` to the heap and registers it; the pointer goes to the host.
pub(crate) fn new_handle<T: 'static>(value: T) -> *mut T {
    let p = Box::into_raw(Box::new(value));
    register::<T>(p as usize);
    p
}

/// A string the host frees with `duet_string_free`.
pub(crate) fn new_string(s: CString) -> *mut c_char {
    let p = s.into_raw();
    register::<CString>(p as usize);
    p
}

/// A live object, held for the length of one call: a free from another thread meanwhile takes
/// effect when the last holder lets go.
pub(crate) struct Held<T: 'static> {
    ptr: *mut T,
}

impl<T: 'static> Deref for Held<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: registered and held: not dropped before this guard is.
        unsafe { &*self.ptr }
    }
}

impl<T: 'static> DerefMut for Held<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as `deref`; exclusive use is the host's promise for objects it changes.
        unsafe { &mut *self.ptr }
    }
}

impl<T: 'static> Drop for Held<T> {
    fn drop(&mut self) {
        let last_of_freed = {
            let mut map = live();
            match map.get_mut(&(self.ptr as usize)) {
                Some(e) => {
                    e.users -= 1;
                    let last = e.freed && e.users == 0;
                    if last {
                        map.remove(&(self.ptr as usize));
                    }
                    last
                }
                None => false,
            }
        };
        if last_of_freed {
            // SAFETY: made by `new_handle::<T>`, freed by the host, and no call holds it now.
            let ptr = self.ptr;
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(unsafe { Box::from_raw(ptr) })));
        }
    }
}

fn hold<T: 'static>(p: usize, what: &'static str) -> Result<Held<T>> {
    if p == 0 {
        return Err(Error::NullPointer(what));
    }
    match live().get_mut(&p) {
        Some(e) if e.type_id == TypeId::of::<T>() && !e.freed => {
            e.users += 1;
            Ok(Held { ptr: p as *mut T })
        }
        Some(e) if !e.freed => Err(Error::InvalidHandle(format!("`{what}` points to a duet object of another type"))),
        _ => Err(Error::InvalidHandle(format!("`{what}` is not a live duet object (already freed, or never made by duet)"))),
    }
}

pub(crate) unsafe fn handle<T: 'static>(p: *const T, what: &'static str) -> Result<Held<T>> {
    hold::<T>(p as usize, what)
}

pub(crate) unsafe fn handle_mut<T: 'static>(p: *mut T, what: &'static str) -> Result<Held<T>> {
    hold::<T>(p as usize, what)
}

/// Unregisters and drops, at once or, while calls hold it, when the last returns; NULL is a
/// no-op; a pointer that is not live is left alone and the reason is recorded as the thread's
/// last error.
pub(crate) unsafe fn free_handle<T: 'static>(p: *mut T, what: &'static str) {
    if p.is_null() {
        return;
    }
    let drop_now = {
        let mut map = live();
        match map.get_mut(&(p as usize)) {
            Some(e) if e.type_id == TypeId::of::<T>() && !e.freed => {
                if e.users == 0 {
                    map.remove(&(p as usize));
                    Some(true)
                } else {
                    e.freed = true;
                    Some(false)
                }
            }
            _ => None,
        }
    };
    match drop_now {
        Some(true) => {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(p))));
        }
        Some(false) => {}
        None => super::status::set_last_error(&format!("{what}: not a live duet object (double free?); nothing was freed")),
    }
}

pub(crate) unsafe fn free_string(p: *mut c_char) {
    if p.is_null() {
        return;
    }
    let registered = {
        let mut map = live();
        match map.get(&(p as usize)) {
            Some(e) if e.type_id == TypeId::of::<CString>() => map.remove(&(p as usize)).is_some(),
            _ => false,
        }
    };
    if registered {
        drop(CString::from_raw(p));
    } else {
        super::status::set_last_error("duet_string_free: not a string from duet (double free?); nothing was freed");
    }
}
