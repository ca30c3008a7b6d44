//! Locates `libonnxruntime` and initialises the process-wide ONNX Runtime environment.
//!
//! Order: the path the host gives (alone: when it fails, that is the error), `DUET_ORT_LIBRARY`,
//! `ORT_DYLIB_PATH`, the folder holding the duet library itself (for the CLI and programs linking
//! libduet.a: the executable's folder) and the `lib` folder beside it (`PREFIX/bin` →
//! `PREFIX/lib`, where `make install` puts ONNX Runtime), then the system loader. Everything
//! tried is named in the error.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use once_cell::sync::OnceCell;

use crate::error::{Error, Result};

/// The loaded ONNX Runtime: its environment, where it came from, its version.
pub struct Runtime {
    pub(crate) env: ort::environment::Environment,
    pub library: PathBuf,
    pub version: String,
}

static RUNTIME: OnceCell<Runtime> = OnceCell::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

#[cfg(target_os = "linux")]
const LIBRARY_NAMES: &[&str] = &["libonnxruntime.so", "libonnxruntime.so.1"];
#[cfg(target_os = "macos")]
const LIBRARY_NAMES: &[&str] = &["libonnxruntime.dylib"];
#[cfg(target_os = "windows")]
const LIBRARY_NAMES: &[&str] = &["onnxruntime.dll"];

/// Loads ONNX Runtime once per process. A later call returns the runtime already loaded.
/// A host path naming another library than the one loaded is an error: a process holds one.
pub fn init_runtime(host_path: Option<&Path>) -> Result<&'static Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return same_library(rt, host_path);
    }
    let _guard = INIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return same_library(rt, host_path);
    }
    let rt = load(host_path)?;
    Ok(RUNTIME.get_or_init(|| rt))
}

fn same_library(rt: &'static Runtime, host_path: Option<&Path>) -> Result<&'static Runtime> {
    let Some(wanted) = host_path else { return Ok(rt) };
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if canonical(wanted) == canonical(&rt.library) {
        return Ok(rt);
    }
    Err(Error::InvalidArgument(format!(
        "ONNX Runtime is already loaded from {} in this process; {} cannot be loaded beside it",
        rt.library.display(),
        wanted.display()
    )))
}

/// The runtime, loading it from the default places when nothing loaded it yet.
pub fn runtime() -> Result<&'static Runtime> {
    init_runtime(None)
}

fn candidates(host_path: Option<&Path>) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if let Some(p) = host_path {
        // An explicit path is the host's decision: no other library replaces it silently.
        return vec![("path given by the host".to_string(), p.to_path_buf())];
    }
    for var in ["DUET_ORT_LIBRARY", "ORT_DYLIB_PATH"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            out.push((format!("${var}"), PathBuf::from(v)));
        }
    }
    if let Some(dir) = own_library_dir() {
        for name in LIBRARY_NAMES {
            out.push(("next to the duet library".to_string(), dir.join(name)));
        }
        if let Some(prefix) = dir.parent() {
            for name in LIBRARY_NAMES {
                out.push(("the lib folder beside the duet library's folder".to_string(), prefix.join("lib").join(name)));
            }
        }
    }
    for name in LIBRARY_NAMES {
        out.push(("system loader".to_string(), PathBuf::from(name)));
    }
    out
}

fn load(host_path: Option<&Path>) -> Result<Runtime> {
    let mut tried = Vec::new();
    for (source, path) in candidates(host_path) {
        let is_bare_name = path.components().count() == 1 && !path.is_absolute();
        if !is_bare_name && !path.exists() {
            tried.push(format!("{} ({source}): no such file", path.display()));
            continue;
        }
        // A relative path is resolved against the working directory, not the executable's folder.
        let path = if is_bare_name { path } else { std::path::absolute(&path).unwrap_or(path) };
        // The loader's own reason (missing file, wrong architecture, missing dependency).
        if let Err(e) = unsafe { libloading::Library::new(&path) } {
            tried.push(format!("{} ({source}): {e}", path.display()));
            continue;
        }
        match ort::init_from(&path) {
            Ok(builder) => {
                let env = builder
                    .with_name("duet")
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| Error::Onnx(format!("creating the environment: {e}")))?;
                env.set_log_level(ort::logging::LogLevel::Error);
                let library = resolved_path(&path);
                let version = version_string(&library);
                return Ok(Runtime { env, library, version });
            }
            Err(e @ ort::LoadDynamicError::BadVersion { .. }) => {
                return Err(Error::RuntimeVersion { path, reason: e.to_string() });
            }
            Err(e) => tried.push(format!("{} ({source}): {e}", path.display())),
        }
    }
    Err(Error::RuntimeNotFound { tried: tried.join("; ") })
}

/// `OrtGetApiBase()->GetVersionString()` of the library just loaded.
fn version_string(path: &Path) -> String {
    #[repr(C)]
    struct OrtApiBase {
        get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
        get_version_string: unsafe extern "C" fn() -> *const std::ffi::c_char,
    }
    let read = || -> Option<String> {
        // The library is loaded already: this only takes another reference to it.
        let lib = unsafe { libloading::Library::new(path) }.ok()?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const OrtApiBase> = unsafe { lib.get(b"OrtGetApiBase") }.ok()?;
        let base = unsafe { get_base() };
        if base.is_null() {
            return None;
        }
        let version = unsafe { std::ffi::CStr::from_ptr(((*base).get_version_string)()) };
        Some(version.to_string_lossy().into_owned())
    };
    read().unwrap_or_else(|| "unknown".to_string())
}

/// Where the dynamic loader actually found a bare library name.
fn resolved_path(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let name = path.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/maps")
        .ok()
        .and_then(|maps| maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.contains("libonnxruntime")).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The folder of the shared object this code was loaded from (libduet.so, or the executable).
fn own_library_dir() -> Option<PathBuf> {
    #[cfg(unix)]
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let addr = own_library_dir as *const libc::c_void;
        if libc::dladdr(addr, &mut info) != 0 && !info.dli_fname.is_null() {
            let name = std::ffi::CStr::from_ptr(info.dli_fname).to_string_lossy().into_owned();
            // An executable found through PATH reports its bare name: then current_exe says where.
            if let (true, Ok(path)) = (name.contains('/'), std::fs::canonicalize(&name)) {
                return path.parent().map(Path::to_path_buf);
            }
        }
    }
    std::env::current_exe().ok()?.parent().map(Path::to_path_buf)
}
