//! What tasks generate through: a model alone (each call decodes on its caller's thread) or a
//! model's scheduler (concurrent calls share decoder runs). Tasks take either.

use super::control::Limits;
use super::output::{GenerationOutput, Observer};
use super::params::GenerationParams;
use super::scheduler::Scheduler;
use crate::error::Result;
use crate::model::Model;
use crate::text::Encoded;

pub trait Engine: Send + Sync {
    fn model(&self) -> &Model;

    /// As [`super::generate_encoded`]: `observer` hears every step and piece on this thread, and
    /// its `Flow::Stop` ends the call with what was generated, marked `Cancelled`.
    fn generate_encoded(
        &self,
        inputs: &[Encoded],
        params: &GenerationParams,
        observer: Option<&mut dyn Observer>,
    ) -> Result<Vec<GenerationOutput>>;
}

impl Engine for Model {
    fn model(&self) -> &Model {
        self
    }

    fn generate_encoded(
        &self,
        inputs: &[Encoded],
        params: &GenerationParams,
        observer: Option<&mut dyn Observer>,
    ) -> Result<Vec<GenerationOutput>> {
        super::generate_encoded(self, inputs, params, observer)
    }
}

impl Engine for Scheduler {
    fn model(&self) -> &Model {
        Scheduler::model(self)
    }

    fn generate_encoded(
        &self,
        inputs: &[Encoded],
        params: &GenerationParams,
        observer: Option<&mut dyn Observer>,
    ) -> Result<Vec<GenerationOutput>> {
        self.generate(inputs.to_vec(), params, Limits::default(), observer)
    }
}

impl<E: Engine + ?Sized> Engine for std::sync::Arc<E> {
    fn model(&self) -> &Model {
        (**self).model()
    }

    fn generate_encoded(
        &self,
        inputs: &[Encoded],
        params: &GenerationParams,
        observer: Option<&mut dyn Observer>,
    ) -> Result<Vec<GenerationOutput>> {
        (**self).generate_encoded(inputs, params, observer)
    }
}
