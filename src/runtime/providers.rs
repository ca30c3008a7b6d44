//! Execution providers: which ones the host asks for, in what order, and which one really runs.

use std::fmt;

use ort::ep::{self, ArbitrarilyConfigurableExecutionProvider};
use ort::session::builder::SessionBuilder;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionProviderKind {
    Cpu,
    Cuda,
    TensorRt,
}

impl ExecutionProviderKind {
    pub fn ort_name(self) -> &'static str {
        match self {
            Self::Cpu => "CPUExecutionProvider",
            Self::Cuda => "CUDAExecutionProvider",
            Self::TensorRt => "TensorrtExecutionProvider",
        }
    }

    fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            "tensorrt" | "trt" => Ok(Self::TensorRt),
            other => Err(Error::invalid_param("providers", format!("unknown execution provider `{other}` (valid: cpu, cuda, tensorrt)"))),
        }
    }
}

impl fmt::Display for ExecutionProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::TensorRt => "tensorrt",
        })
    }
}

/// An ordered preference list. `strict`: fail when the first choice cannot be registered
/// instead of falling back to the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSelection {
    pub order: Vec<ExecutionProviderKind>,
    pub strict: bool,
    pub device_id: i32,
    pub gpu: super::gpu_options::GpuOptions,
}

impl Default for ProviderSelection {
    fn default() -> Self {
        Self { order: vec![ExecutionProviderKind::Cpu], strict: false, device_id: 0, gpu: Default::default() }
    }
}

impl ProviderSelection {
    /// Parses `"tensorrt,cuda,cpu"`.
    pub fn parse_list(list: &str) -> Result<Vec<ExecutionProviderKind>> {
        let order = list.split(',').filter(|s| !s.trim().is_empty()).map(ExecutionProviderKind::parse).collect::<Result<Vec<_>>>()?;
        if order.is_empty() {
            return Err(Error::invalid_param("providers", "the list is empty"));
        }
        Ok(order)
    }

    /// Registers the providers in order; returns the builder and the provider that will run,
    /// with the reasons the ones before it were skipped. `trt_profile` holds the TensorRT
    /// optimization profile of the graph being opened.
    pub(crate) fn register(
        &self,
        mut builder: SessionBuilder,
        trt_profile: &[(String, String)],
    ) -> Result<(SessionBuilder, ExecutionProviderKind, Vec<String>)> {
        let mut skipped = Vec::new();
        for &kind in &self.order {
            let dispatch = match kind {
                ExecutionProviderKind::Cpu => return Ok((builder, kind, skipped)),
                ExecutionProviderKind::Cuda => {
                    let mut cuda = ep::CUDA::default().with_device_id(self.device_id);
                    for (k, v) in &self.gpu.cuda {
                        cuda = cuda.with_arbitrary_config(k, v);
                    }
                    cuda.build()
                }
                ExecutionProviderKind::TensorRt => {
                    let mut trt = ep::TensorRT::default().with_device_id(self.device_id);
                    for (k, v) in self.gpu.tensorrt.iter().chain(trt_profile) {
                        trt = trt.with_arbitrary_config(k, v);
                    }
                    trt.build()
                }
            };
            match builder.with_execution_providers([dispatch.error_on_failure()]) {
                Ok(b) => return Ok((b, kind, skipped)),
                Err(e) => {
                    let reason = format!("{kind}: {e}");
                    if self.strict {
                        return Err(Error::ProviderUnavailable(reason));
                    }
                    skipped.push(reason);
                    builder = e.recover();
                }
            }
        }
        Ok((builder, ExecutionProviderKind::Cpu, skipped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ordered_lists() {
        let order = ProviderSelection::parse_list("tensorrt, CUDA,cpu").unwrap();
        assert_eq!(order, vec![ExecutionProviderKind::TensorRt, ExecutionProviderKind::Cuda, ExecutionProviderKind::Cpu]);
    }

    #[test]
    fn rejects_unknown_and_empty() {
        assert!(matches!(ProviderSelection::parse_list("tpu"), Err(Error::InvalidParam { .. })));
        assert!(matches!(ProviderSelection::parse_list(" , "), Err(Error::InvalidParam { .. })));
    }
}
