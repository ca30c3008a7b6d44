//! Host-side handling of the graphs' float tensors, whatever their precision (float32, float16,
//! bfloat16) and wherever they live: reading them as `f32`, empty caches, and row gathers.

use half::{bf16, f16};
use ort::memory::{AllocationDevice, Allocator};
use ort::value::{DynTensor, DynValue, DynValueTypeMarker, PrimitiveTensorElementType, Tensor, TensorElementType};

use crate::error::{Error, Result};

/// Whether `ty` is one of the float precisions an export may use for hidden states, caches and
/// logits: float32, float16, bfloat16.
pub fn is_float_type(ty: TensorElementType) -> bool {
    matches!(ty, TensorElementType::Float32 | TensorElementType::Float16 | TensorElementType::Bfloat16)
}

pub fn float_type_name(ty: TensorElementType) -> &'static str {
    match ty {
        TensorElementType::Float16 => "float16",
        TensorElementType::Bfloat16 => "bfloat16",
        _ => "float32",
    }
}

/// A graph output as a tensor (every output duet reads is one).
pub fn into_tensor(value: DynValue, name: &str) -> Result<DynTensor> {
    value.downcast::<ort::value::DynTensorValueType>().map_err(|e| Error::Onnx(format!("output `{name}`: {e}")))
}

/// A tensor the host can read: itself when its memory is host memory, else a copy from the device.
fn on_host(value: &DynTensor) -> Result<std::borrow::Cow<'_, DynTensor>> {
    if value.memory_info().is_cpu_accessible() {
        Ok(std::borrow::Cow::Borrowed(value))
    } else {
        Ok(std::borrow::Cow::Owned(value.to(AllocationDevice::CPU, 0)?))
    }
}

/// Shape and data of a float tensor, converted to `f32` (and copied from the device if needed).
pub fn to_host_f32(value: &DynTensor) -> Result<(Vec<i64>, Vec<f32>)> {
    let host = on_host(value)?;
    let dyn_ref = host.view().into_dyn();
    let shape: Vec<i64> = host.shape().iter().copied().collect();
    let data = match host.data_type() {
        TensorElementType::Float32 => dyn_ref.try_extract_tensor::<f32>()?.1.to_vec(),
        TensorElementType::Float16 => dyn_ref.try_extract_tensor::<f16>()?.1.iter().map(|v| v.to_f32()).collect(),
        TensorElementType::Bfloat16 => dyn_ref.try_extract_tensor::<bf16>()?.1.iter().map(|v| v.to_f32()).collect(),
        other => return Err(Error::Internal(format!("expected a float tensor, got {other:?}"))),
    };
    Ok((shape, data))
}

/// An empty host tensor (`shape` has a zero dimension), e.g. the pasts of a first step.
pub fn empty(ty: TensorElementType, shape: &[usize]) -> Result<DynTensor> {
    Ok(DynTensor::new(&Allocator::default(), ty, shape.to_vec())?)
}

/// A host copy made of the rows `index` of `value`'s first dimension.
pub fn gather_rows_on_host(value: &DynTensor, index: &[usize]) -> Result<DynTensor> {
    let host = on_host(value)?;
    let dyn_ref: ort::value::ValueRef<'_, DynValueTypeMarker> = host.view().into_dyn();
    match host.data_type() {
        TensorElementType::Float32 => gather_typed::<f32>(&dyn_ref, index),
        TensorElementType::Float16 => gather_typed::<f16>(&dyn_ref, index),
        TensorElementType::Bfloat16 => gather_typed::<bf16>(&dyn_ref, index),
        other => Err(Error::Internal(format!("cannot gather rows of a {other:?} tensor"))),
    }
}

fn gather_typed<T: PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(
    value: &ort::value::ValueRef<'_, DynValueTypeMarker>,
    index: &[usize],
) -> Result<DynTensor> {
    let (shape, data) = value.try_extract_tensor::<T>()?;
    let rows = shape[0] as usize;
    let row_len = data.len().checked_div(rows).unwrap_or(0);
    let mut out = Vec::with_capacity(index.len() * row_len);
    for &r in index {
        if r >= rows {
            return Err(Error::Internal(format!("row {r} out of {rows}")));
        }
        out.extend_from_slice(&data[r * row_len..(r + 1) * row_len]);
    }
    let mut dims: Vec<i64> = shape.iter().copied().collect();
    dims[0] = index.len() as i64;
    Ok(Tensor::from_array((dims, out))?.upcast())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float16_rows_gather_and_read_back_as_f32() {
        crate::runtime::init_runtime(None).unwrap();
        let data: Vec<f16> = (0..6).map(|v| f16::from_f32(v as f32 * 0.5)).collect();
        let t = Tensor::from_array(([3usize, 2], data)).unwrap().upcast();
        let g = gather_rows_on_host(&t, &[2, 0]).unwrap();
        let (shape, values) = to_host_f32(&g).unwrap();
        assert_eq!(shape, vec![2, 2]);
        assert_eq!(values, vec![2.0, 2.5, 0.0, 0.5]);
        assert!(gather_rows_on_host(&t, &[3]).is_err());
    }

    #[test]
    fn empty_pasts_have_the_asked_type_and_no_elements() {
        crate::runtime::init_runtime(None).unwrap();
        let e = empty(TensorElementType::Bfloat16, &[2, 4, 0, 8]).unwrap();
        assert_eq!(*e.data_type(), TensorElementType::Bfloat16);
        assert_eq!(e.shape().iter().copied().collect::<Vec<_>>(), vec![2, 4, 0, 8]);
    }
}
