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
    // The host copy's size comes from the input: allocated fallibly, an error instead of an abort.
    let elements = shape.iter().map(|&d| d.max(0) as usize).try_fold(1usize, |a, d| a.checked_mul(d));
    let mut data: Vec<f32> = Vec::new();
    elements.and_then(|n| data.try_reserve_exact(n).ok()).ok_or_else(|| {
        Error::OverBudget(format!("no memory for a tensor of shape {shape:?} on the host; ask for less (fewer inputs, beams or tokens)"))
    })?;
    match host.data_type() {
        TensorElementType::Float32 => data.extend_from_slice(dyn_ref.try_extract_tensor::<f32>()?.1),
        TensorElementType::Float16 => data.extend(dyn_ref.try_extract_tensor::<f16>()?.1.iter().map(|v| v.to_f32())),
        TensorElementType::Bfloat16 => data.extend(dyn_ref.try_extract_tensor::<bf16>()?.1.iter().map(|v| v.to_f32())),
        other => return Err(Error::Internal(format!("expected a float tensor, got {other:?}"))),
    }
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

/// Row `i` of `value`'s first dimension becomes its row `index[i]`, in place (`index` has one
/// entry per row): only the rows that change are written, and only a source row that is itself
/// replaced is copied aside first. Beam search keeps the rows of the beams that continue where
/// they are instead of copying the whole cache. A cache buffer `[rows, heads, capacity, head_dim]`
/// whose first `used` positions of each head hold anything copies only those (`None`: whole rows).
pub fn reorder_rows_on_host_in_place(value: &mut DynTensor, index: &[usize], used: Option<usize>) -> Result<()> {
    match *value.data_type() {
        TensorElementType::Float32 => reorder_typed::<f32>(value, index, used),
        TensorElementType::Float16 => reorder_typed::<f16>(value, index, used),
        TensorElementType::Bfloat16 => reorder_typed::<bf16>(value, index, used),
        other => Err(Error::Internal(format!("cannot reorder rows of a {other:?} tensor"))),
    }
}

fn reorder_typed<T: PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(
    value: &mut DynTensor,
    index: &[usize],
    used: Option<usize>,
) -> Result<()> {
    let (shape, data) = value.try_extract_tensor_mut::<T>()?;
    // Each row is `segments` runs of `segment` elements, of which the first `keep` are copied.
    let (segment, keep) = match (used, &shape[..]) {
        (None, _) => (None, None),
        (Some(used), &[_, _, capacity, dim]) if used as i64 <= capacity => (Some((capacity * dim) as usize), Some(used * dim as usize)),
        (Some(used), _) => return Err(Error::Internal(format!("{used} used positions in a cache of shape {shape:?}"))),
    };
    let rows = shape[0] as usize;
    if index.len() != rows {
        return Err(Error::Internal(format!("a reorder of {} rows for {rows}", index.len())));
    }
    if let Some(&bad) = index.iter().find(|&&r| r >= rows) {
        return Err(Error::Internal(format!("row {bad} out of {rows}")));
    }
    let row_len = data.len().checked_div(rows).unwrap_or(0);
    let segment = segment.unwrap_or(row_len).max(1);
    let keep = keep.unwrap_or(segment);
    let runs = row_len / segment;
    // A source row that keeps its place is never overwritten: read it where it is. Only sources
    // that are themselves replaced go aside.
    let mut aside_rows: Vec<usize> = index.iter().enumerate().filter(|&(i, &r)| i != r && index[r] != r).map(|(_, &r)| r).collect();
    aside_rows.sort_unstable();
    aside_rows.dedup();
    let mut aside = Vec::with_capacity(aside_rows.len() * runs * keep);
    for &r in &aside_rows {
        for run in 0..runs {
            let at = r * row_len + run * segment;
            aside.extend_from_slice(&data[at..at + keep]);
        }
    }
    for (i, &r) in index.iter().enumerate().filter(|&(i, &r)| i != r) {
        for run in 0..runs {
            let to = i * row_len + run * segment;
            match aside_rows.binary_search(&r) {
                Ok(k) => data[to..to + keep].copy_from_slice(&aside[(k * runs + run) * keep..(k * runs + run + 1) * keep]),
                Err(_) => data.copy_within(r * row_len + run * segment..r * row_len + run * segment + keep, to),
            }
        }
    }
    Ok(())
}

fn gather_typed<T: PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(
    value: &ort::value::ValueRef<'_, DynValueTypeMarker>,
    index: &[usize],
) -> Result<DynTensor> {
    let (shape, data) = value.try_extract_tensor::<T>()?;
    let rows = shape[0] as usize;
    let row_len = data.len().checked_div(rows).unwrap_or(0);
    if let Some(&bad) = index.iter().find(|&&r| r >= rows) {
        return Err(Error::Internal(format!("row {bad} out of {rows}")));
    }
    let mut dims: Vec<i64> = shape.iter().copied().collect();
    dims[0] = index.len() as i64;
    // An in-place cache buffer stays one a graph may write into.
    let mut gathered = allocated_on_host(*value.data_type(), dims)?;
    let (_, out) = gathered.try_extract_tensor_mut::<T>()?;
    for (i, &r) in index.iter().enumerate() {
        out[i * row_len..(i + 1) * row_len].copy_from_slice(&data[r * row_len..(r + 1) * row_len]);
    }
    Ok(gathered)
}

/// A host tensor shaped as `value` but with `rows` rows (first dimension), allocated by ONNX
/// Runtime; its contents are what [`write_rows`] puts there.
pub fn with_rows(value: &DynTensor, rows: usize) -> Result<DynTensor> {
    let mut dims: Vec<i64> = value.shape().iter().copied().collect();
    let Some(first) = dims.first_mut() else { return Err(Error::Internal("rows of a scalar".into())) };
    *first = rows as i64;
    allocated_on_host(*value.data_type(), dims)
}

/// A host tensor of `dims` that ONNX Runtime allocated, so that a graph may write into it
/// (IoBinding binds only such tensors to outputs); refused when its size overflows.
fn allocated_on_host(ty: TensorElementType, dims: Vec<i64>) -> Result<DynTensor> {
    let element = match ty {
        TensorElementType::Float16 | TensorElementType::Bfloat16 => 2,
        TensorElementType::Float32 => 4,
        _ => 8,
    };
    let elements = dims.iter().try_fold(1usize, |a, &d| usize::try_from(d).ok().and_then(|d| a.checked_mul(d)));
    if elements.is_none_or(|n| n > isize::MAX as usize / element) {
        return Err(Error::OverBudget(format!("a tensor of shape {dims:?}")));
    }
    Ok(DynTensor::new(&Allocator::default(), ty, dims)?)
}

/// Rows `at..` of `whole` (on the host) become `part`'s rows (same element type, same shape but
/// for the first dimension).
pub fn write_rows(whole: &mut DynTensor, at: usize, part: &DynTensor) -> Result<()> {
    match *whole.data_type() {
        TensorElementType::Float32 => write_rows_typed::<f32>(whole, at, part),
        TensorElementType::Float16 => write_rows_typed::<f16>(whole, at, part),
        TensorElementType::Bfloat16 => write_rows_typed::<bf16>(whole, at, part),
        other => Err(Error::Internal(format!("cannot write rows of a {other:?} tensor"))),
    }
}

fn write_rows_typed<T: PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(
    whole: &mut DynTensor,
    at: usize,
    part: &DynTensor,
) -> Result<()> {
    let host = on_host(part)?;
    let view = host.view().into_dyn();
    let (part_shape, data) = view.try_extract_tensor::<T>()?;
    let (shape, out) = whole.try_extract_tensor_mut::<T>()?;
    let rows = part_shape.first().copied().unwrap_or(0) as usize;
    let row_len = out.len().checked_div(shape.first().copied().unwrap_or(0) as usize).unwrap_or(0);
    if shape.len() != part_shape.len() || shape[1..] != part_shape[1..] || (at + rows) * row_len > out.len() {
        return Err(Error::Internal(format!("rows {at}.. of a {shape:?} tensor cannot take a {part_shape:?} one")));
    }
    out[at * row_len..(at + rows) * row_len].copy_from_slice(data);
    Ok(())
}

/// The tensors (same element type, same shape but for the first dimension and `axis`) stacked
/// along the first dimension, each placed in a window of `len` along `axis`: at its end
/// (`at_end`, left padding) or at its start, zeros elsewhere. On the host.
pub fn concat_padded(parts: &[&DynTensor], axis: usize, len: usize, at_end: bool) -> Result<DynTensor> {
    let first = parts.first().ok_or_else(|| Error::Internal("nothing to concatenate".into()))?;
    match first.data_type() {
        TensorElementType::Float32 => concat_typed::<f32>(parts, axis, len, at_end),
        TensorElementType::Float16 => concat_typed::<f16>(parts, axis, len, at_end),
        TensorElementType::Bfloat16 => concat_typed::<bf16>(parts, axis, len, at_end),
        TensorElementType::Int64 => concat_typed::<i64>(parts, axis, len, at_end),
        other => Err(Error::Internal(format!("cannot concatenate {other:?} tensors"))),
    }
}

fn concat_typed<T: PrimitiveTensorElementType + Copy + Default + std::fmt::Debug + 'static>(
    parts: &[&DynTensor],
    axis: usize,
    len: usize,
    at_end: bool,
) -> Result<DynTensor> {
    let mut out: Vec<T> = Vec::new();
    let mut dims: Option<Vec<i64>> = None;
    let mut rows = 0i64;
    for part in parts {
        let host = on_host(part)?;
        let view = host.view().into_dyn();
        let (shape, data) = view.try_extract_tensor::<T>()?;
        let shape: Vec<i64> = shape.iter().copied().collect();
        if axis == 0 || axis >= shape.len() {
            return Err(Error::Internal(format!("cannot pad axis {axis} of a rank-{} tensor", shape.len())));
        }
        let own = shape[axis] as usize;
        if own > len {
            return Err(Error::Internal(format!("{own} positions do not fit a window of {len}")));
        }
        if let Some(d) = &dims {
            let same = d.len() == shape.len() && d.iter().zip(&shape).enumerate().all(|(i, (a, b))| i == 0 || i == axis || a == b);
            if !same {
                return Err(Error::Internal(format!("shapes {d:?} and {shape:?} do not stack")));
            }
        }
        let outer = shape[..axis].iter().product::<i64>() as usize;
        let inner = shape[axis + 1..].iter().product::<i64>() as usize;
        let offset = if at_end { (len - own) * inner } else { 0 };
        out.try_reserve(outer * len * inner).map_err(|e| Error::Internal(format!("cache of {} elements: {e}", outer * len * inner)))?;
        for o in 0..outer {
            let mut block = vec![T::default(); len * inner];
            block[offset..offset + own * inner].copy_from_slice(&data[o * own * inner..(o + 1) * own * inner]);
            out.extend_from_slice(&block);
        }
        rows += shape[0];
        dims.get_or_insert(shape);
    }
    let mut dims = dims.unwrap_or_default();
    dims[0] = rows;
    dims[axis] = len as i64;
    Ok(Tensor::from_array((dims, out))?.upcast())
}

/// `value`'s positions `range` along `axis` (on the host).
pub fn positions(value: &DynTensor, axis: usize, range: std::ops::Range<usize>) -> Result<DynTensor> {
    match value.data_type() {
        TensorElementType::Float32 => positions_typed::<f32>(value, axis, range),
        TensorElementType::Float16 => positions_typed::<f16>(value, axis, range),
        TensorElementType::Bfloat16 => positions_typed::<bf16>(value, axis, range),
        TensorElementType::Int64 => positions_typed::<i64>(value, axis, range),
        other => Err(Error::Internal(format!("cannot slice a {other:?} tensor"))),
    }
}

fn positions_typed<T: PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(
    value: &DynTensor,
    axis: usize,
    range: std::ops::Range<usize>,
) -> Result<DynTensor> {
    let host = on_host(value)?;
    let view = host.view().into_dyn();
    let (shape, data) = view.try_extract_tensor::<T>()?;
    let mut dims: Vec<i64> = shape.iter().copied().collect();
    let own = *dims.get(axis).ok_or_else(|| Error::Internal(format!("no axis {axis}")))? as usize;
    if range.start > range.end || range.end > own {
        return Err(Error::Internal(format!("positions {range:?} of {own}")));
    }
    let outer = dims[..axis].iter().product::<i64>() as usize;
    let inner = dims[axis + 1..].iter().product::<i64>() as usize;
    let mut out = Vec::with_capacity(outer * range.len() * inner);
    for o in 0..outer {
        out.extend_from_slice(&data[(o * own + range.start) * inner..(o * own + range.end) * inner]);
    }
    dims[axis] = range.len() as i64;
    Ok(Tensor::from_array((dims, out))?.upcast())
}

/// A cache buffer `[rows, heads, capacity, head_dim]` (`value`'s shape but for `capacity`) in host
/// memory that ONNX Runtime allocated, so that a graph can write into it (IoBinding binds only such
/// tensors to outputs): `value`'s first `used` positions along axis 2, zeros after them.
pub fn cache_buffer(value: &DynTensor, used: usize, capacity: usize) -> Result<DynTensor> {
    match value.data_type() {
        TensorElementType::Float32 => cache_buffer_typed::<f32>(value, used, capacity),
        TensorElementType::Float16 => cache_buffer_typed::<f16>(value, used, capacity),
        TensorElementType::Bfloat16 => cache_buffer_typed::<bf16>(value, used, capacity),
        other => Err(Error::Internal(format!("cannot hold a {other:?} cache"))),
    }
}

fn cache_buffer_typed<T: PrimitiveTensorElementType + Copy + Default + std::fmt::Debug + 'static>(
    value: &DynTensor,
    used: usize,
    capacity: usize,
) -> Result<DynTensor> {
    let host = on_host(value)?;
    let view = host.view().into_dyn();
    let (shape, data) = view.try_extract_tensor::<T>()?;
    let &[rows, heads, own, dim] = &shape[..] else {
        return Err(Error::Internal(format!("a cache of shape {shape:?}")));
    };
    let (own, dim) = (own as usize, dim as usize);
    if used > own || used > capacity {
        return Err(Error::Internal(format!("{used} used positions of {own}, in a buffer of {capacity}")));
    }
    let capacity_dim = i64::try_from(capacity).map_err(|_| Error::OverBudget(format!("a cache buffer of {capacity} positions")))?;
    let mut buffer = allocated_on_host(*value.data_type(), vec![rows, heads, capacity_dim, dim as i64])?;
    let (_, out) = buffer.try_extract_tensor_mut::<T>()?;
    if capacity * dim == 0 {
        return Ok(buffer);
    }
    for (segment, target) in out.chunks_exact_mut(capacity * dim).enumerate() {
        target[..used * dim].copy_from_slice(&data[segment * own * dim..(segment * own + used) * dim]);
        target[used * dim..].fill(T::default());
    }
    Ok(buffer)
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
    fn rows_reorder_in_place_as_a_gather_would() {
        crate::runtime::init_runtime(None).unwrap();
        let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
        for index in [vec![0, 0, 1, 3], vec![1, 0, 3, 2], vec![3, 3, 3, 3], vec![0, 1, 2, 3], vec![2, 0, 1, 1]] {
            let original: DynTensor = Tensor::from_array(([4usize, 3], data.clone())).unwrap().upcast();
            let want = to_host_f32(&gather_rows_on_host(&original, &index).unwrap()).unwrap();
            let mut t: DynTensor = Tensor::from_array(([4usize, 3], data.clone())).unwrap().upcast();
            reorder_rows_on_host_in_place(&mut t, &index, None).unwrap();
            assert_eq!(to_host_f32(&t).unwrap(), want, "{index:?}");
        }
        let mut t: DynTensor = Tensor::from_array(([2usize, 1], vec![1.0f32, 2.0])).unwrap().upcast();
        assert!(reorder_rows_on_host_in_place(&mut t, &[0, 2], None).is_err());
        assert!(reorder_rows_on_host_in_place(&mut t, &[0], None).is_err());
    }

    #[test]
    fn padded_concatenation_and_leading_drops() {
        crate::runtime::init_runtime(None).unwrap();
        // [1, 1, 2, 1] and [1, 1, 1, 1] into a window of 3 along axis 2.
        let a = Tensor::from_array(([1usize, 1, 2, 1], vec![1.0f32, 2.0])).unwrap().upcast();
        let b = Tensor::from_array(([1usize, 1, 1, 1], vec![5.0f32])).unwrap().upcast();
        let end = to_host_f32(&concat_padded(&[&a, &b], 2, 3, true).unwrap()).unwrap();
        assert_eq!(end, (vec![2, 1, 3, 1], vec![0.0, 1.0, 2.0, 0.0, 0.0, 5.0]));
        let start = to_host_f32(&concat_padded(&[&a, &b], 2, 3, false).unwrap()).unwrap();
        assert_eq!(start.1, vec![1.0, 2.0, 0.0, 5.0, 0.0, 0.0]);
        assert!(concat_padded(&[&a], 2, 1, true).is_err());
        let dropped = to_host_f32(&positions(&concat_padded(&[&a, &b], 2, 3, true).unwrap(), 2, 1..3).unwrap()).unwrap();
        assert_eq!(dropped, (vec![2, 1, 2, 1], vec![1.0, 2.0, 0.0, 5.0]));
    }

    #[test]
    fn cache_buffers_hold_the_used_positions_and_reorder_only_those() {
        crate::runtime::init_runtime(None).unwrap();
        // [rows 2, heads 2, positions 3, dim 1]: row r head h position p = 100r + 10h + p.
        let data: Vec<f32> = (0..2).flat_map(|r| (0..2).flat_map(move |h| (0..3).map(move |p| (100 * r + 10 * h + p) as f32))).collect();
        let exact: DynTensor = Tensor::from_array(([2usize, 2, 3, 1], data)).unwrap().upcast();
        let mut buffer = cache_buffer(&exact, 2, 4).unwrap();
        let (shape, values) = to_host_f32(&buffer).unwrap();
        assert_eq!(shape, vec![2, 2, 4, 1]);
        assert_eq!(values, vec![0., 1., 0., 0., 10., 11., 0., 0., 100., 101., 0., 0., 110., 111., 0., 0.]);
        assert_eq!(to_host_f32(&positions(&buffer, 2, 0..2).unwrap()).unwrap().1, vec![0., 1., 10., 11., 100., 101., 110., 111.]);
        // A free position written after the reorder's copy stays in its row.
        buffer.try_extract_tensor_mut::<f32>().unwrap().1[3] = 7.0;
        reorder_rows_on_host_in_place(&mut buffer, &[1, 1], Some(2)).unwrap();
        let (_, values) = to_host_f32(&buffer).unwrap();
        assert_eq!(values, vec![100., 101., 0., 7., 110., 111., 0., 0., 100., 101., 0., 0., 110., 111., 0., 0.]);
        assert!(reorder_rows_on_host_in_place(&mut buffer, &[0, 1], Some(5)).is_err());
        assert!(cache_buffer(&exact, 4, 8).is_err(), "more used positions than the source has");
        assert!(cache_buffer(&exact, 3, 2).is_err(), "more used positions than the buffer has room for");
        // Gathered rows are ONNX Runtime's allocations, as a graph's in-place output must be.
        let gathered = gather_rows_on_host(&buffer, &[0]).unwrap();
        assert_eq!(to_host_f32(&gathered).unwrap().1[..4], [100., 101., 0., 7.]);
    }

    #[test]
    fn empty_pasts_have_the_asked_type_and_no_elements() {
        crate::runtime::init_runtime(None).unwrap();
        let e = empty(TensorElementType::Bfloat16, &[2, 4, 0, 8]).unwrap();
        assert_eq!(*e.data_type(), TensorElementType::Bfloat16);
        assert_eq!(e.shape().iter().copied().collect::<Vec<_>>(), vec![2, 4, 0, 8]);
    }
}
