//! The integer rounding of the NPUs the simulator models, where it differs from the golden rule.
//!
//! **HTP V73 requantization** (measured on Qualcomm's HTP emulator, `libQnnHtp.so` 2.51.0 of the
//! onnxruntime-qnn 2.7.0 wheel, socModels 52 and 77 (V73), 72 and 95 (V81), 114 (V85); socModels
//! 30 and 62 (V68) and 63 (AIC100) round otherwise). A quantized MatMul's INT32 accumulator `acc`
//! becomes an 8-bit output with the real multiplier `m = sa·sb / so` in three integer steps:
//! 1. a power-of-two pre-shift `s`, the largest with `m·2^s ≤ 1/8`, taken by flooring:
//!    `a = ⌊acc / 2^s⌋` (a left shift where `s < 0`);
//! 2. a 12-bit multiplier `M = round(m·2^s·2^15)` (in 2048..=4096) applied to the centre of
//!    the shifted bin: `x = (2a + 1)·M / 2^16`;
//! 3. `q = ⌊x + ½⌋ + zo`, saturated (`x` never lies on a half: `(2a + 1)·M` is not a multiple
//!    of 2^15).
//!
//! It equals the emulator's outputs on 407,040 of 407,040 held-out probe outputs (10 output
//! scales × every a·b for a ∈ [−128, 127], b ∈ [1, 127], and 5 MatMuls of 64–1024 random
//! INT8 terms), where the golden rule misses 6,925. Not covered: a u8 second input whose zero
//! point is below 128, where values `b − zb ≥ 128` take another path in HTP. HTP's Cast of a
//! float to an integer truncates toward zero (then saturates). Requantize and Quantize nodes
//! keep the golden rule: HTP's differ (by one step on 1–9 % of a probe's values), not modelled.
//!
//! `shadowattn soc fit` (and `soc numerics`) re-measures which rule a socModel follows with
//! this probe (`simulator/src/fit/numerics_probe.rs`) and writes it into the fitted profile.
//! On socModels 62 and 63 neither rule equals every output: the golden rule is nearest on
//! MatMul requantization (10,279 of 325,120 probe outputs differ from it, 13,097 from
//! htp-v73), while their Cast truncates as htp-v73 does.

use serde::Deserialize;
use shadowattn_cpu::reference::arith::{self, Golden, IntegerRules};
use shadowattn_hal::{DType, QuantParams, Result};

/// Which integer rounding an NPU applies (`[numerics] integer_rounding` of a SoC profile).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum IntegerRounding {
    /// The golden reference's rule (`shadowattn_cpu::reference::arith`).
    #[default]
    Golden,
    /// HTP V73's fixed-point requantization and truncating casts ([`HtpV73`]).
    HtpV73,
}

impl IntegerRounding {
    /// The rules this names.
    pub fn rules(self) -> &'static dyn IntegerRules {
        match self {
            IntegerRounding::Golden => &Golden,
            IntegerRounding::HtpV73 => &HtpV73,
        }
    }
}

/// HTP V73's integer rounding (the module documentation states it and its evidence).
#[derive(Clone, Copy, Debug, Default)]
pub struct HtpV73;

/// The pre-shift `s` and the multiplier `M` of step 1 and 2 for a positive, finite `m`.
fn shift_and_multiplier(m: f64) -> (i32, i64) {
    // Powers of two scale an f64 exactly, so the comparisons are exact.
    let mut s = 0i32;
    while m * 2f64.powi(s) > 0.125 {
        s -= 1;
    }
    while m * 2f64.powi(s + 1) <= 0.125 {
        s += 1;
    }
    let multiplier = (m * 2f64.powi(s + 15)).round() as i64;
    (s, multiplier)
}

/// Steps 1–3 before the zero point and saturation, for a positive, finite multiplier `m`.
pub fn htp_v73_requantize(acc: i32, m: f64) -> i64 {
    if !(m.is_normal() && m > 0.0) {
        // Scales are positive finite f32s, so this is unreachable from a valid graph.
        return arith::round_half_away(f64::from(acc) * m) as i64;
    }
    let (s, multiplier) = shift_and_multiplier(m);
    shift_and_multiply(acc, s, multiplier)
}

/// Steps 1–3 with the pre-shift `s` and multiplier of [`shift_and_multiplier`].
fn shift_and_multiply(acc: i32, s: i32, multiplier: i64) -> i64 {
    if acc == 0 {
        // (2·0 + 1)·M / 2^16 ≤ 1/16: always 0, whatever the shift.
        return 0;
    }
    let shifted = if s >= 0 {
        // An arithmetic shift floors; shifts of 31 or more leave the sign only.
        i128::from(acc) >> s.min(127)
    } else if -s >= 96 {
        // |acc|·2^96·M/2^16 is far beyond any 8- or 16-bit range: saturate by sign.
        return if acc > 0 { i64::MAX } else { i64::MIN };
    } else {
        i128::from(acc) << (-s)
    };
    let x2 = (2 * shifted + 1) * i128::from(multiplier);
    let q = (x2 + (1 << 15)) >> 16;
    q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

impl IntegerRules for HtpV73 {
    fn requantize_accumulators(
        &self,
        acc: &[i32],
        acc_scale: f32,
        out: QuantParams,
        dtype: DType,
    ) -> Vec<f64> {
        let m = f64::from(acc_scale) / f64::from(out.scale);
        let zero_point = f64::from(out.zero_point);
        let store = |q: i64| arith::saturate(q as f64 + zero_point, dtype);
        if !(m.is_normal() && m > 0.0) {
            return acc
                .iter()
                .map(|&a| store(htp_v73_requantize(a, m)))
                .collect();
        }
        // One pre-shift and multiplier for the whole tensor.
        let (s, multiplier) = shift_and_multiplier(m);
        acc.iter()
            .map(|&a| store(shift_and_multiply(a, s, multiplier)))
            .collect()
    }

    fn cast_to_int(&self, x: f64, dtype: DType, what: &str) -> Result<f64> {
        arith::cast_rounded(x, dtype, what, f64::trunc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule on one accumulator.
    fn one(acc: i32, acc_scale: f32, out: QuantParams, dtype: DType) -> f64 {
        HtpV73.requantize_accumulators(&[acc], acc_scale, out, dtype)[0]
    }

    fn i8_out(acc: i32, m: f64) -> f64 {
        // acc_scale / out scale = m with an output scale of 1 (exact for these m).
        one(acc, m as f32, QuantParams::symmetric(1.0), DType::I8)
    }

    /// Outputs read from the emulator (socModel 52) by the probe the module documents.
    #[test]
    fn equals_the_emulator_where_the_golden_rule_does_not() {
        // m = 0.02 (sa 0.05, sb 0.04, so 0.1): 24·m = 0.48 → 1, 75·m = 1.5 → 1, −75·m → −1.
        let m = f64::from(0.05f32 * 0.04f32) / f64::from(0.1f32);
        let rule = |acc| one(acc, 0.05 * 0.04, QuantParams::symmetric(0.1), DType::I8);
        assert_eq!((rule(23), rule(24)), (0.0, 1.0));
        assert_eq!((rule(75), rule(76)), (1.0, 2.0));
        assert_eq!((rule(-25), rule(-24), rule(-75)), (-1.0, 0.0, -1.0));
        assert_eq!(shift_and_multiplier(m), (2, 2621));
        // m = 0.002 (so 1): the 0 → 1 step between 255 and 256, 1 → 2 between 735 and 736.
        let rule = |acc| one(acc, 0.05 * 0.04, QuantParams::symmetric(1.0), DType::I8);
        assert_eq!(
            (rule(255), rule(256), rule(735), rule(736)),
            (0.0, 1.0, 1.0, 2.0)
        );
        // m = 0.04: 3162·m = 126.48 → 126 (the 12-bit multiplier), saturation past ±127.
        let rule = |acc| one(acc, 0.05 * 0.04, QuantParams::symmetric(0.05), DType::I8);
        assert_eq!(
            (rule(3162), rule(-3164), rule(9000), rule(-9000)),
            (126.0, -126.0, 127.0, -128.0)
        );
        // m > 1/8 shifts left: 0.146 (so 0.0137) keeps 3 → 0 and 4 → 1.
        assert_eq!((i8_out(3, 0.145_985_4), i8_out(4, 0.145_985_4)), (0.0, 1.0));
    }

    #[test]
    fn a_zero_point_is_added_after_rounding_and_saturates() {
        let p = QuantParams::new(0.05 * 0.04 * 800.0, 128);
        let rule = |acc| one(acc, 0.05 * 0.04, p, DType::U8);
        assert_eq!(rule(0), 128.0);
        assert_eq!(rule(1 << 30), 255.0);
        assert_eq!(rule(-(1 << 30)), 0.0);
    }

    #[test]
    fn extreme_multipliers_neither_panic_nor_wrap() {
        for m in [1e-30, 1e-6, 0.125, 0.0625, 1.0, 1e6, 1e30] {
            for acc in [i32::MIN, -1, 0, 1, i32::MAX] {
                let q = i8_out(acc, m);
                assert!((-128.0..=127.0).contains(&q), "m {m} acc {acc}: {q}");
                if acc == 0 || m < 1e-20 {
                    assert!(q == 0.0 || q == -1.0 && acc < 0, "m {m} acc {acc}: {q}");
                }
            }
        }
        assert_eq!(i8_out(i32::MAX, 1e30), 127.0);
        assert_eq!(i8_out(i32::MIN, 1e30), -128.0);
    }

    #[test]
    fn casts_truncate_toward_zero_and_saturate() {
        // Emulator: 2.5 → 2, −2.5 → −2, −3.7 → −3, 0.99 → 0, 3e9 → i32::MAX.
        let cast = |x| HtpV73.cast_to_int(x, DType::I32, "x").unwrap();
        assert_eq!(
            (cast(2.5), cast(-2.5), cast(-3.7), cast(0.99)),
            (2.0, -2.0, -3.0, 0.0)
        );
        assert_eq!((cast(3e9), cast(-3e9)), (2147483647.0, -2147483648.0));
        assert!(HtpV73.cast_to_int(f64::NAN, DType::I8, "x").is_err());
    }
}
