//! Picking rows of a cache tensor where it lives. Host tensors are gathered by slicing; tensors in
//! device memory go through a one-node ONNX `Gather` graph run on the device, so beam search and
//! dropping finished rows never copy the KV cache to the host.

use std::collections::HashMap;
use std::sync::Mutex;

use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::value::{DynTensor, Tensor, TensorElementType};

use super::tensors::{gather_rows_on_host, into_tensor, reorder_rows_on_host_in_place};
use crate::error::{Error, Result};

/// Where KV caches and encoder outputs are kept between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheDevice {
    Host,
    Cuda(i32),
}

impl CacheDevice {
    pub fn memory_info(self) -> Result<MemoryInfo<'static>> {
        Ok(match self {
            CacheDevice::Host => MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default)?,
            CacheDevice::Cuda(id) => MemoryInfo::new(AllocationDevice::CUDA, id, AllocatorType::Device, MemoryType::Default)?,
        })
    }

    pub fn describe(self) -> String {
        match self {
            CacheDevice::Host => "cpu".into(),
            CacheDevice::Cuda(id) => format!("cuda:{id}"),
        }
    }
}

pub struct RowGather {
    device: CacheDevice,
    /// Gather through the graph even for host tensors (the device path, testable on a CPU).
    always_graph: bool,
    sessions: Mutex<HashMap<i32, Session>>,
}

impl RowGather {
    pub fn new(device: CacheDevice, always_graph: bool) -> Self {
        Self { device, always_graph, sessions: Mutex::new(HashMap::new()) }
    }

    /// The rows `index` of `value`'s first dimension, in that order, on `value`'s device.
    pub fn gather(&self, value: &DynTensor, index: &[usize]) -> Result<DynTensor> {
        if value.memory_info().is_cpu_accessible() && !self.always_graph {
            return gather_rows_on_host(value, index);
        }
        let rows = value.shape().first().copied().unwrap_or(0) as usize;
        if let Some(&bad) = index.iter().find(|&&r| r >= rows) {
            return Err(Error::Internal(format!("row {bad} out of {rows}")));
        }
        let ty = *value.data_type();
        let mut sessions = self.sessions.lock().map_err(|_| Error::Internal("row gather lock poisoned".into()))?;
        let key = onnx_elem_type(ty)?;
        let session = match sessions.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(self.open(key)?),
        };
        let indices = Tensor::from_array(([index.len()], index.iter().map(|&r| r as i64).collect::<Vec<_>>()))?;
        let mut binding = session.create_binding()?;
        binding.bind_input("data", value)?;
        binding.bind_input("indices", &indices)?;
        binding.bind_output_to_device("rows", value.memory_info())?;
        let mut outputs = session.run_binding(&binding)?;
        let rows = outputs.remove("rows").ok_or_else(|| Error::Internal("row gather gave no output".into()))?;
        into_tensor(rows, "rows")
    }

    /// Row `i` of `value` becomes its row `index[i]` (one entry per row): in place on the host,
    /// through [`RowGather::gather`] on a device. A cache buffer whose first `used` positions hold
    /// anything (`None`: all of them) moves only those on the host.
    pub fn reorder(&self, value: &mut DynTensor, index: &[usize], used: Option<usize>) -> Result<()> {
        let rows = value.shape().first().copied().unwrap_or(0) as usize;
        if value.memory_info().is_cpu_accessible() && !self.always_graph && index.len() == rows {
            return reorder_rows_on_host_in_place(value, index, used);
        }
        *value = self.gather(value, index)?;
        Ok(())
    }

    fn open(&self, elem_type: i32) -> Result<Session> {
        let runtime = crate::runtime::runtime()?;
        let mut builder = Session::builder(&runtime.env)?.with_intra_threads(1).map_err(|e| Error::Onnx(e.to_string()))?;
        if let CacheDevice::Cuda(id) = self.device {
            builder = builder
                .with_execution_providers([ort::ep::CUDA::default().with_device_id(id).build().error_on_failure()])
                .map_err(|e| Error::ProviderUnavailable(format!("CUDA for the cache row gather: {e}")))?;
        }
        Ok(builder.commit_from_memory(&gather_model(elem_type))?)
    }
}

fn onnx_elem_type(ty: TensorElementType) -> Result<i32> {
    match ty {
        TensorElementType::Float32 => Ok(1),
        TensorElementType::Float16 => Ok(10),
        TensorElementType::Bfloat16 => Ok(16),
        other => Err(Error::Internal(format!("cannot gather rows of a {other:?} tensor"))),
    }
}

/// `rows = Gather(data, indices, axis=0)` as a serialized ONNX model (opset 13), `data` of ONNX
/// element type `elem_type` and any shape.
fn gather_model(elem_type: i32) -> Vec<u8> {
    let tensor_input = |name: &str, ty: i32| {
        let tensor_type = proto::message(1, &proto::varint(1, ty as u64));
        proto::concat(&[proto::string(1, name), proto::message(2, &tensor_type)])
    };
    let axis = proto::concat(&[proto::string(1, "axis"), proto::varint(3, 0), proto::varint(20, 2)]);
    let node = proto::concat(&[
        proto::string(1, "data"),
        proto::string(1, "indices"),
        proto::string(2, "rows"),
        proto::string(3, "gather_rows"),
        proto::string(4, "Gather"),
        proto::message(5, &axis),
    ]);
    let graph = proto::concat(&[
        proto::message(1, &node),
        proto::string(2, "duet_row_gather"),
        proto::message(11, &tensor_input("data", elem_type)),
        proto::message(11, &tensor_input("indices", 7)),
        proto::message(12, &tensor_input("rows", elem_type)),
    ]);
    let opset = proto::concat(&[proto::string(1, ""), proto::varint(2, 13)]);
    proto::concat(&[proto::varint(1, 8), proto::string(2, "duet"), proto::message(7, &graph), proto::message(8, &opset)])
}

/// The few protobuf encodings `gather_model` needs.
mod proto {
    fn key(field: u32, wire: u8) -> Vec<u8> {
        raw_varint(((field as u64) << 3) | wire as u64)
    }

    fn raw_varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    pub fn varint(field: u32, v: u64) -> Vec<u8> {
        let mut out = key(field, 0);
        out.extend(raw_varint(v));
        out
    }

    pub fn message(field: u32, body: &[u8]) -> Vec<u8> {
        let mut out = key(field, 2);
        out.extend(raw_varint(body.len() as u64));
        out.extend_from_slice(body);
        out
    }

    pub fn string(field: u32, s: &str) -> Vec<u8> {
        message(field, s.as_bytes())
    }

    pub fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tensors::to_host_f32;

    #[test]
    fn the_gather_graph_matches_the_host_gather() {
        crate::runtime::init_runtime(None).unwrap();
        let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let t = Tensor::from_array(([4usize, 2, 3], data)).unwrap().upcast();
        let graph = RowGather::new(CacheDevice::Host, true);
        let index = [3, 3, 0, 1];
        let by_graph = to_host_f32(&graph.gather(&t, &index).unwrap()).unwrap();
        let by_slices = to_host_f32(&gather_rows_on_host(&t, &index).unwrap()).unwrap();
        assert_eq!(by_graph, by_slices);
        assert_eq!(by_graph.0, vec![4, 2, 3]);
        assert!(graph.gather(&t, &[4]).is_err());
        let half: Vec<half::f16> = (0..6).map(|v| half::f16::from_f32(v as f32)).collect();
        let h = Tensor::from_array(([3usize, 2], half)).unwrap().upcast();
        assert_eq!(to_host_f32(&graph.gather(&h, &[1]).unwrap()).unwrap().1, vec![2.0, 3.0]);
    }
}
