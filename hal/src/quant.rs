//! Quantization parameters: scale and zero point, per tensor or per axis.
//!
//! A quantized value `q` stands for the real value `scale · (q − zero_point)`. The arithmetic
//! (rounding and saturation) is defined once, by the golden CPU backend.

use crate::dtype::DType;
use crate::error::{HalError, Result};
use serde::{Deserialize, Serialize};

/// Scale and zero point of a per-tensor quantized tensor.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantParams {
    /// Real value of one quantization step; finite and positive.
    pub scale: f32,
    /// The integer that represents real zero.
    pub zero_point: i32,
}

impl QuantParams {
    /// Parameters with the given scale and zero point (validated where they are attached to a tensor).
    pub const fn new(scale: f32, zero_point: i32) -> Self {
        QuantParams { scale, zero_point }
    }

    /// Symmetric parameters (zero point 0) with the given scale.
    pub const fn symmetric(scale: f32) -> Self {
        QuantParams {
            scale,
            zero_point: 0,
        }
    }
}

/// How the values of a tensor map to real numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Quantization {
    /// Plain values: floats, or integers taken at face value.
    #[default]
    None,
    /// One scale and zero point for the whole tensor.
    PerTensor(QuantParams),
    /// One scale and zero point per index along `axis`.
    PerAxis {
        /// The axis the parameters vary along.
        axis: usize,
        /// One scale per index of `axis`.
        scales: Vec<f32>,
        /// One zero point per index of `axis`.
        zero_points: Vec<i32>,
    },
}

impl Quantization {
    /// Per-tensor quantization with the given scale and zero point.
    pub const fn per_tensor(scale: f32, zero_point: i32) -> Self {
        Quantization::PerTensor(QuantParams::new(scale, zero_point))
    }

    /// Whether this carries quantization parameters at all.
    pub fn is_quantized(&self) -> bool {
        !matches!(self, Quantization::None)
    }

    /// The per-tensor parameters, if this is per-tensor quantization.
    pub fn per_tensor_params(&self) -> Option<QuantParams> {
        match self {
            Quantization::PerTensor(p) => Some(*p),
            _ => None,
        }
    }

    /// Checks the parameters against the tensor they describe; `what` names it in the error.
    pub fn validate(&self, what: &str, dtype: DType, shape: &[usize]) -> Result<()> {
        let bad = |detail: String| HalError::InvalidQuantization {
            what: what.to_string(),
            detail,
        };
        let check = |scale: f32, zp: i32| -> Result<()> {
            if !scale.is_finite() || scale <= 0.0 {
                return Err(bad(format!(
                    "scale must be finite and positive, got {scale}"
                )));
            }
            let (lo, hi) = dtype.int_range().unwrap_or((0, 0));
            if i64::from(zp) < lo || i64::from(zp) > hi {
                return Err(bad(format!(
                    "zero point {zp} is outside the range {lo}..={hi} of {dtype}"
                )));
            }
            if dtype == DType::I32 && zp != 0 {
                return Err(bad(format!("i32 tensors must have zero point 0, got {zp}")));
            }
            Ok(())
        };
        match self {
            Quantization::None => Ok(()),
            _ if !dtype.is_quantizable() => Err(bad(format!(
                "{dtype} tensors cannot carry quantization parameters"
            ))),
            Quantization::PerTensor(p) => check(p.scale, p.zero_point),
            Quantization::PerAxis {
                axis,
                scales,
                zero_points,
            } => {
                let Some(&len) = shape.get(*axis) else {
                    return Err(bad(format!(
                        "axis {axis} is out of range for a rank-{} tensor",
                        shape.len()
                    )));
                };
                if scales.len() != len || zero_points.len() != len {
                    return Err(bad(format!(
                        "axis {axis} has {len} entries but {} scales and {} zero points were given",
                        scales.len(),
                        zero_points.len()
                    )));
                }
                scales
                    .iter()
                    .zip(zero_points)
                    .try_for_each(|(&s, &z)| check(s, z))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_scales_and_zero_points() {
        for scale in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let e = Quantization::per_tensor(scale, 0)
                .validate("x", DType::I8, &[4])
                .unwrap_err();
            assert!(matches!(e, HalError::InvalidQuantization { .. }), "{e}");
        }
        let e = Quantization::per_tensor(0.5, 200)
            .validate("x", DType::I8, &[4])
            .unwrap_err();
        assert!(e.to_string().contains("zero point 200"), "{e}");
        let e = Quantization::per_tensor(0.5, 0)
            .validate("x", DType::F32, &[4])
            .unwrap_err();
        assert!(e.to_string().contains("cannot carry"), "{e}");
        assert!(Quantization::per_tensor(0.5, 255)
            .validate("x", DType::U8, &[4])
            .is_ok());
    }

    #[test]
    fn per_axis_lengths_are_checked() {
        let q = Quantization::PerAxis {
            axis: 1,
            scales: vec![0.1, 0.2],
            zero_points: vec![0, 0],
        };
        assert!(q.validate("w", DType::I8, &[3, 2]).is_ok());
        assert!(q.validate("w", DType::I8, &[2, 3]).is_err());
        assert!(q.validate("w", DType::I8, &[2]).is_err());
    }
}
