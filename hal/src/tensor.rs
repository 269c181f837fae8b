//! Tensor descriptors, and owned and borrowed host tensors.

use crate::dtype::{DType, Element};
use crate::error::{HalError, Result};
use crate::quant::Quantization;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Byte alignment of owned host tensors (a cache line, enough for any SIMD load and for DMA).
pub const HOST_ALIGNMENT: usize = 64;

/// Element type, shape and quantization of a tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorDesc {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first (row-major).
    pub shape: Vec<usize>,
    /// How stored values map to real numbers.
    #[serde(default)]
    pub quant: Quantization,
}

impl TensorDesc {
    /// A descriptor without quantization.
    pub fn new(dtype: DType, shape: impl Into<Vec<usize>>) -> Self {
        TensorDesc {
            dtype,
            shape: shape.into(),
            quant: Quantization::None,
        }
    }

    /// The same descriptor with the given quantization.
    pub fn with_quant(mut self, quant: Quantization) -> Self {
        self.quant = quant;
        self
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of the data in bytes.
    pub fn size_bytes(&self) -> usize {
        self.numel() * self.dtype.size_bytes()
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Checks that the descriptor is usable: rank ≥ 1, no zero-sized or overflowing dimension, valid quantization.
    pub fn validate(&self, what: &str) -> Result<()> {
        if self.shape.is_empty() {
            return Err(HalError::invalid_argument(
                what,
                "rank-0 tensors are not supported; use shape [1]",
            ));
        }
        if let Some(axis) = self.shape.iter().position(|&d| d == 0) {
            return Err(HalError::invalid_argument(
                what,
                format!(
                    "dimension {axis} of shape {} is zero",
                    ShapeFmt(&self.shape)
                ),
            ));
        }
        let bytes = self
            .shape
            .iter()
            .try_fold(self.dtype.size_bytes(), |acc, &d| acc.checked_mul(d));
        if bytes.is_none_or(|b| b > isize::MAX as usize) {
            return Err(HalError::invalid_argument(
                what,
                format!("shape {} is too large to address", ShapeFmt(&self.shape)),
            ));
        }
        self.quant.validate(what, self.dtype, &self.shape)
    }
}

impl fmt::Display for TensorDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, ShapeFmt(&self.shape))?;
        match &self.quant {
            Quantization::None => Ok(()),
            Quantization::PerTensor(p) => write!(f, " (scale {}, zp {})", p.scale, p.zero_point),
            Quantization::PerAxis { axis, .. } => write!(f, " (per-axis on axis {axis})"),
        }
    }
}

/// Displays a shape as `[a, b, c]`.
pub struct ShapeFmt<'a>(pub &'a [usize]);

impl fmt::Display for ShapeFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// One cache line of storage; owned tensors are vectors of these, so they are always aligned.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([u8; HOST_ALIGNMENT]);

/// A tensor that owns its host memory, aligned to [`HOST_ALIGNMENT`] bytes.
#[derive(Clone)]
pub struct HostTensor {
    desc: TensorDesc,
    lines: Vec<Line>,
}

impl fmt::Debug for HostTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostTensor")
            .field("desc", &self.desc)
            .finish_non_exhaustive()
    }
}

impl HostTensor {
    /// A zero-filled tensor for a (validated) descriptor.
    pub fn zeros(desc: TensorDesc) -> Result<Self> {
        desc.validate("tensor")?;
        let lines = desc.size_bytes().div_ceil(HOST_ALIGNMENT);
        Ok(HostTensor {
            desc,
            lines: vec![Line([0; HOST_ALIGNMENT]); lines],
        })
    }

    /// A tensor holding a copy of `data`, whose type and length must match the descriptor.
    pub fn from_slice<T: Element>(desc: TensorDesc, data: &[T]) -> Result<Self> {
        if desc.numel() != data.len() {
            return Err(HalError::BufferMismatch {
                tensor: "tensor".into(),
                detail: format!(
                    "descriptor {desc} holds {} elements but {} were given",
                    desc.numel(),
                    data.len()
                ),
            });
        }
        let mut t = HostTensor::zeros(desc)?;
        t.as_mut_slice::<T>()?.copy_from_slice(data);
        Ok(t)
    }

    /// The descriptor.
    pub fn desc(&self) -> &TensorDesc {
        &self.desc
    }

    /// The data as bytes.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<Line, u8>(&self.lines)[..self.desc.size_bytes()]
    }

    /// The data as mutable bytes.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let n = self.desc.size_bytes();
        &mut bytemuck::cast_slice_mut::<Line, u8>(&mut self.lines)[..n]
    }

    /// The data as a typed slice; `T` must match the dtype.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        self.view().as_slice()
    }

    /// The data as a mutable typed slice; `T` must match the dtype.
    pub fn as_mut_slice<T: Element>(&mut self) -> Result<&mut [T]> {
        check_type::<T>("tensor", &self.desc)?;
        let n = self.desc.size_bytes();
        Ok(bytemuck::cast_slice_mut(
            &mut bytemuck::cast_slice_mut::<Line, u8>(&mut self.lines)[..n],
        ))
    }

    /// A borrowed view of the whole tensor.
    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            desc: &self.desc,
            bytes: self.bytes(),
        }
    }

    /// A mutable borrowed view of the whole tensor.
    pub fn view_mut(&mut self) -> TensorViewMut<'_> {
        let n = self.desc.size_bytes();
        TensorViewMut {
            desc: &self.desc,
            bytes: &mut bytemuck::cast_slice_mut::<Line, u8>(&mut self.lines)[..n],
        }
    }
}

fn check_type<T: Element>(what: &str, desc: &TensorDesc) -> Result<()> {
    if T::DTYPE != desc.dtype {
        return Err(HalError::BufferMismatch {
            tensor: what.to_string(),
            detail: format!("requested as {} but the tensor is {}", T::DTYPE, desc.dtype),
        });
    }
    Ok(())
}

fn cast_checked<'b, T: Element>(what: &str, bytes: &'b [u8]) -> Result<&'b [T]> {
    bytemuck::try_cast_slice(bytes).map_err(|e| HalError::BufferMismatch {
        tensor: what.to_string(),
        detail: format!("cannot view the bytes as {}: {e:?}", T::DTYPE),
    })
}

/// A borrowed, read-only tensor: a descriptor and the bytes it describes.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    desc: &'a TensorDesc,
    bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// A view of `bytes`, whose length must be the descriptor's size.
    pub fn new(desc: &'a TensorDesc, bytes: &'a [u8]) -> Result<Self> {
        check_len("view", desc, bytes.len())?;
        Ok(TensorView { desc, bytes })
    }

    /// A view of a typed slice, whose type and length must match the descriptor.
    pub fn from_slice<T: Element>(desc: &'a TensorDesc, data: &'a [T]) -> Result<Self> {
        check_type::<T>("view", desc)?;
        TensorView::new(desc, bytemuck::cast_slice(data))
    }

    /// The descriptor.
    pub fn desc(&self) -> &'a TensorDesc {
        self.desc
    }

    /// The bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The data as a typed slice; `T` must match the dtype and the bytes must be aligned for `T`.
    pub fn as_slice<T: Element>(&self) -> Result<&'a [T]> {
        check_type::<T>("view", self.desc)?;
        cast_checked("view", self.bytes)
    }
}

/// A borrowed, writable tensor: a descriptor and the bytes it describes.
#[derive(Debug)]
pub struct TensorViewMut<'a> {
    desc: &'a TensorDesc,
    bytes: &'a mut [u8],
}

impl<'a> TensorViewMut<'a> {
    /// A writable view of `bytes`, whose length must be the descriptor's size.
    pub fn new(desc: &'a TensorDesc, bytes: &'a mut [u8]) -> Result<Self> {
        check_len("view", desc, bytes.len())?;
        Ok(TensorViewMut { desc, bytes })
    }

    /// A writable view of a typed slice, whose type and length must match the descriptor.
    pub fn from_slice<T: Element>(desc: &'a TensorDesc, data: &'a mut [T]) -> Result<Self> {
        check_type::<T>("view", desc)?;
        TensorViewMut::new(desc, bytemuck::cast_slice_mut(data))
    }

    /// The descriptor.
    pub fn desc(&self) -> &'a TensorDesc {
        self.desc
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// The bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.bytes
    }

    /// A read-only view of the same data.
    pub fn as_view(&self) -> TensorView<'_> {
        TensorView {
            desc: self.desc,
            bytes: self.bytes,
        }
    }

    /// The data as a mutable typed slice; `T` must match the dtype and the bytes must be aligned for `T`.
    pub fn as_mut_slice<T: Element>(&mut self) -> Result<&mut [T]> {
        check_type::<T>("view", self.desc)?;
        bytemuck::try_cast_slice_mut(self.bytes).map_err(|e| HalError::BufferMismatch {
            tensor: "view".into(),
            detail: format!("cannot view the bytes as {}: {e:?}", T::DTYPE),
        })
    }
}

fn check_len(what: &str, desc: &TensorDesc, len: usize) -> Result<()> {
    if len != desc.size_bytes() {
        return Err(HalError::BufferMismatch {
            tensor: what.to_string(),
            detail: format!(
                "descriptor {desc} needs {} bytes but the buffer has {len}",
                desc.size_bytes()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_tensors_are_aligned_and_typed() {
        let desc = TensorDesc::new(DType::F32, [3, 5]);
        let data: Vec<f32> = (0..15).map(|i| i as f32).collect();
        let t = HostTensor::from_slice(desc, &data).unwrap();
        assert_eq!(t.bytes().as_ptr() as usize % HOST_ALIGNMENT, 0);
        assert_eq!(t.as_slice::<f32>().unwrap(), &data[..]);
        assert_eq!(t.bytes().len(), 60);
        let e = t.as_slice::<i32>().unwrap_err();
        assert!(matches!(e, HalError::BufferMismatch { .. }), "{e}");
    }

    #[test]
    fn wrong_lengths_and_bad_descs_are_errors() {
        let desc = TensorDesc::new(DType::I8, [2, 2]);
        assert!(HostTensor::from_slice(desc.clone(), &[1i8, 2, 3]).is_err());
        assert!(TensorView::new(&desc, &[0u8; 3]).is_err());
        assert!(HostTensor::zeros(TensorDesc::new(DType::F32, [2, 0])).is_err());
        assert!(HostTensor::zeros(TensorDesc::new(DType::F32, Vec::new())).is_err());
        assert!(HostTensor::zeros(TensorDesc::new(DType::F32, [usize::MAX, 2])).is_err());
    }

    #[test]
    fn borrowed_views_round_trip() {
        let desc = TensorDesc::new(DType::I16, [4]);
        let mut data = [1i16, -2, 3, -4];
        {
            let mut v = TensorViewMut::from_slice(&desc, &mut data).unwrap();
            v.as_mut_slice::<i16>().unwrap()[0] = 7;
            assert_eq!(v.as_view().as_slice::<i16>().unwrap(), &[7, -2, 3, -4]);
        }
        let v = TensorView::from_slice(&desc, &data).unwrap();
        assert_eq!(v.as_slice::<i16>().unwrap()[0], 7);
    }
}
