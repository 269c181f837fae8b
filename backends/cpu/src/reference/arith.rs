//! The arithmetic rules every backend is judged against: rounding, saturation, quantization.
//!
//! # The rule
//! - **Rounding**: round half away from zero (`2.5 → 3`, `−2.5 → −3`), computed in f64.
//! - **Saturation**: after rounding and adding the zero point, clamp to the output type's range.
//! - **Quantize**: `q = sat(round(x / s) + z)`, with `x` and `s` taken as f64.
//! - **Requantize**: `q' = sat(round((q − z) · (s / s')) + z')`, the multiplier `s / s'` computed
//!   in f64 from the two f32 scales. An INT32 MatMul accumulator has scale `sa · sb` (the f32
//!   product), so a MatMul with a narrow quantized output equals MatMul → i32 → Requantize.
//! - **Dequantize**: `x = (q − z) · s` in f64, then rounded to the float output type
//!   (round to nearest, ties to even, as IEEE-754 conversion does).
//! - **Float ops** compute in f64 and round once to the output type.
//! - NaN cannot be quantized or ordered: it is an error, never a silent value.
//!
//! Real hardware uses fixed-point multipliers; vendor backends are held to ±1 LSB of this rule.

use half::f16;
use shadowattn_hal::{DType, HalError, QuantParams, Result};

/// Rounds half away from zero.
pub fn round_half_away(x: f64) -> f64 {
    x.round()
}

/// Clamps an integer-valued `x` to the range of `dtype` (floats are rounded to their type instead).
pub fn saturate(x: f64, dtype: DType) -> f64 {
    match dtype.int_range() {
        Some((lo, hi)) => x.clamp(lo as f64, hi as f64),
        None => store(x, dtype),
    }
}

/// Rounds a real value to the nearest value of float type `dtype`; integers pass through.
pub fn store(x: f64, dtype: DType) -> f64 {
    match dtype {
        DType::F32 => f64::from(x as f32),
        DType::F16 => f16::from_f64(x).to_f64(),
        _ => x,
    }
}

/// Quantizes a real value: `sat(round(x / s) + z)`. `what` names the tensor if `x` is NaN.
pub fn quantize(x: f64, p: QuantParams, dtype: DType, what: &str) -> Result<f64> {
    if x.is_nan() {
        return Err(HalError::invalid_value(what, "NaN cannot be quantized"));
    }
    Ok(saturate(
        round_half_away(x / f64::from(p.scale)) + f64::from(p.zero_point),
        dtype,
    ))
}

/// Dequantizes: `(q − z) · s`, rounded to float `dtype`.
pub fn dequantize(q: f64, p: QuantParams, dtype: DType) -> f64 {
    store((q - f64::from(p.zero_point)) * f64::from(p.scale), dtype)
}

/// Requantizes: `sat(round((q − z) · (s / s')) + z')`.
pub fn requantize(q: f64, from: QuantParams, to: QuantParams, dtype: DType) -> f64 {
    let multiplier = f64::from(from.scale) / f64::from(to.scale);
    saturate(
        round_half_away((q - f64::from(from.zero_point)) * multiplier) + f64::from(to.zero_point),
        dtype,
    )
}

/// Converts a stored value to another type without quantization: floats round and saturate into
/// integers, integers saturate, floats round to the narrower float.
pub fn cast(x: f64, to: DType, what: &str) -> Result<f64> {
    cast_rounded(x, to, what, round_half_away)
}

/// [`cast`] with `round` turning floats into integers (the golden rule: [`round_half_away`]).
pub fn cast_rounded(x: f64, to: DType, what: &str, round: fn(f64) -> f64) -> Result<f64> {
    if to.is_integer() {
        if x.is_nan() {
            return Err(HalError::invalid_value(
                what,
                "NaN cannot be cast to an integer",
            ));
        }
        return Ok(saturate(round(x), to));
    }
    Ok(store(x, to))
}

/// The integer rounding steps in which NPUs differ from the golden rule; the interpreter takes
/// one ([`super::graph::execute_with`]) so a simulated NPU can compute with its own.
pub trait IntegerRules: std::fmt::Debug + Send + Sync {
    /// A MatMul's INT32 accumulators `acc` (scale `acc_scale`) as output type `dtype` with `out`.
    fn requantize_accumulators(
        &self,
        acc: &[i32],
        acc_scale: f32,
        out: QuantParams,
        dtype: DType,
    ) -> Vec<f64>;

    /// A float cast to integer type `dtype` (Cast); `what` names the tensor if `x` is NaN.
    fn cast_to_int(&self, x: f64, dtype: DType, what: &str) -> Result<f64>;
}

/// The golden rule: [`requantize`] and [`cast`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Golden;

impl IntegerRules for Golden {
    fn requantize_accumulators(
        &self,
        acc: &[i32],
        acc_scale: f32,
        out: QuantParams,
        dtype: DType,
    ) -> Vec<f64> {
        let from = QuantParams::symmetric(acc_scale);
        acc.iter()
            .map(|&a| requantize(f64::from(a), from, out, dtype))
            .collect()
    }

    fn cast_to_int(&self, x: f64, dtype: DType, what: &str) -> Result<f64> {
        cast(x, dtype, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_away_from_zero_and_saturates() {
        let p = QuantParams::symmetric(1.0);
        assert_eq!(quantize(2.5, p, DType::I8, "x").unwrap(), 3.0);
        assert_eq!(quantize(-2.5, p, DType::I8, "x").unwrap(), -3.0);
        assert_eq!(quantize(0.49, p, DType::I8, "x").unwrap(), 0.0);
        assert_eq!(quantize(300.0, p, DType::I8, "x").unwrap(), 127.0);
        assert_eq!(quantize(-300.0, p, DType::I8, "x").unwrap(), -128.0);
        assert_eq!(
            quantize(-5.0, QuantParams::new(1.0, 10), DType::U8, "x").unwrap(),
            5.0
        );
        assert_eq!(
            quantize(f64::INFINITY, p, DType::U16, "x").unwrap(),
            65535.0
        );
        assert!(quantize(f64::NAN, p, DType::I8, "x").is_err());
    }

    #[test]
    fn requantize_by_hand() {
        // (10 − 2) · (0.5 / 2.0) = 2 → + 1 = 3
        let r = requantize(
            10.0,
            QuantParams::new(0.5, 2),
            QuantParams::new(2.0, 1),
            DType::I8,
        );
        assert_eq!(r, 3.0);
        // 6 · 0.25 = 1.5 → 2 (half away)
        let r = requantize(
            6.0,
            QuantParams::new(0.5, 0),
            QuantParams::new(2.0, 0),
            DType::I8,
        );
        assert_eq!(r, 2.0);
        let r = requantize(
            -6.0,
            QuantParams::new(0.5, 0),
            QuantParams::new(2.0, 0),
            DType::I8,
        );
        assert_eq!(r, -2.0);
        let r = requantize(
            1e9,
            QuantParams::new(1.0, 0),
            QuantParams::new(1.0, 0),
            DType::I8,
        );
        assert_eq!(r, 127.0);
    }

    #[test]
    fn casts_and_stores() {
        assert_eq!(cast(-1.5, DType::I32, "x").unwrap(), -2.0);
        assert_eq!(cast(70000.0, DType::I16, "x").unwrap(), 32767.0);
        assert_eq!(cast(-3.0, DType::U8, "x").unwrap(), 0.0);
        assert_eq!(
            cast(1.0 / 3.0, DType::F16, "x").unwrap(),
            f16::from_f64(1.0 / 3.0).to_f64()
        );
        assert!(cast(f64::NAN, DType::I8, "x").is_err());
        assert!(cast(f64::NAN, DType::F32, "x").unwrap().is_nan());
        assert_eq!(
            dequantize(130.0, QuantParams::new(0.5, 128), DType::F32),
            1.0
        );
    }
}
