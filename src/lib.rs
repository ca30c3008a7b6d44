//! duet: an embeddable runtime for exported encoder–decoder Transformers (T5, mT5, flan-T5,
//! BART, mBART, Marian, Pegasus in the Hugging Face Optimum ONNX layout) on ONNX Runtime.
//!
//! The safe Rust core is [`Model`] + [`generate()`]; the C ABI over it lives in `ffi` and is
//! declared in `include/duet.h`.
//!
//! ```no_run
//! let model = duet::Model::open("tests/fixtures/t5-tiny")?;
//! let mut params = duet::new_generation_settings();
//! params.set_int("num_beams", 4)?;
//! let out = duet::generate(&model, &["summarize: a long text"], &params, None)?;
//! println!("{}", out[0].sequences[0].text);
//! # Ok::<(), duet::Error>(())
//! ```

pub mod error;
pub mod ffi;
pub mod files;
pub mod generate;
pub mod model;
pub mod runtime;
pub mod settings;
pub mod tasks;
pub mod text;

pub use error::{Error, ErrorKind, Result};
pub use generate::{
    encode_inputs, generate, generate_encoded, resolve_params, Event, FinishReason, Flow, Generation, GenerationOutput, GenerationParams,
    Observer, Scheduler, SchedulerOptions, Sequence,
};
pub use model::{new_model_options, Layout, Model};
pub use settings::Settings;
pub use tasks::new_generation_settings;

/// The crate version, also `duet_version()` in C.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
