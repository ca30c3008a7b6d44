//! Finding and loading `libonnxruntime`, execution providers and session options.

pub mod confinement;
mod discovery;
pub mod gpu_options;
mod providers;
mod session;

pub use discovery::{init_runtime, runtime, Runtime};
pub use providers::{ExecutionProviderKind, ProviderSelection};
pub use session::{open_session, OpenedSession, SessionOptions};
