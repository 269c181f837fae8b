//! Tolerances as a type with presets, after the rules of established accelerator suites
//! (NNAPI CTS, LiteRT's accelerator test suite, ggml's NMSE).

use serde::{Deserialize, Serialize};
use shadowattn_hal::DType;

/// Machine epsilon of a float type (f32 or f16).
pub fn epsilon(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => f64::from(half::f16::EPSILON.to_f32()),
        _ => f64::from(f32::EPSILON),
    }
}

/// The smallest positive step of a float type near zero (its least subnormal), f32 or f16.
pub fn least_step(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => 2f64.powi(-24),
        _ => 2f64.powi(-149),
    }
}

/// How closely a backend's output must match the golden reference.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Tolerance {
    /// Bit-identical values (integers, indices).
    Exact,
    /// Quantized values within `n` steps (least significant bits).
    Lsb(u32),
    /// |a − e| ≤ atol + rtol·|e| with atol = rtol = `ulps` × eps of `dtype` (NNAPI's float rule).
    Ulp {
        /// Units in the last place.
        ulps: f64,
        /// The float type whose eps is used.
        dtype: DType,
    },
    /// A K-long dot product: rtol = max(`rtol`, `ulps`·eps·√K), atol = max(`atol`, `ulps`·eps)
    /// (LiteRT's accumulation-aware rule, whose `ulps` is 10).
    AccumulationAware {
        /// Multiple of eps·√K (LiteRT: 10).
        ulps: f64,
        /// Floor of the relative tolerance.
        rtol: f64,
        /// Floor of the absolute tolerance.
        atol: f64,
        /// Accumulation length K.
        k: usize,
        /// The float type whose eps is used.
        dtype: DType,
    },
    /// |a − e| ≤ `ulps` × (eps·|e| + least step) of `dtype`: outputs judged against their own
    /// magnitude (softmax probabilities, whose error does not grow with the row length).
    Relative {
        /// Units in the last place of each value.
        ulps: f64,
        /// The float type whose eps and least step are used.
        dtype: DType,
    },
    /// Normalised mean squared error mse(a, e) / mse(e, 0) at most this (ggml's rule).
    Nmse(f64),
}

impl Tolerance {
    /// The same tolerance judged with f16 eps, for backends that compute f32 as f16.
    pub fn relaxed(self) -> Self {
        match self {
            Tolerance::Exact => Tolerance::Ulp {
                ulps: 1.0,
                dtype: DType::F16,
            },
            Tolerance::Ulp { ulps, .. } => Tolerance::Ulp {
                ulps,
                dtype: DType::F16,
            },
            Tolerance::AccumulationAware {
                ulps,
                rtol,
                atol,
                k,
                ..
            } => Tolerance::AccumulationAware {
                ulps,
                rtol,
                atol,
                k,
                dtype: DType::F16,
            },
            Tolerance::Relative { ulps, .. } => Tolerance::Relative {
                ulps,
                dtype: DType::F16,
            },
            other => other,
        }
    }

    /// The per-element bound (atol, rtol) of |a − e| ≤ atol + rtol·|e|, or `None` for NMSE.
    pub fn element_bounds(&self) -> Option<(f64, f64)> {
        match *self {
            Tolerance::Exact => Some((0.0, 0.0)),
            Tolerance::Lsb(n) => Some((f64::from(n), 0.0)),
            Tolerance::Ulp { ulps, dtype } => {
                let t = ulps * epsilon(dtype);
                Some((t, t))
            }
            Tolerance::AccumulationAware {
                ulps,
                rtol,
                atol,
                k,
                dtype,
            } => {
                let eps = epsilon(dtype);
                Some((
                    atol.max(ulps * eps),
                    rtol.max(ulps * eps * (k as f64).sqrt()),
                ))
            }
            Tolerance::Relative { ulps, dtype } => {
                Some((ulps * least_step(dtype), ulps * epsilon(dtype)))
            }
            Tolerance::Nmse(_) => None,
        }
    }

    /// Compares `actual` with `expected`; NaN matches only NaN.
    pub fn check(&self, actual: &[f64], expected: &[f64]) -> Comparison {
        let mut c = Comparison {
            passed: actual.len() == expected.len(),
            ..Comparison::default()
        };
        if !c.passed {
            c.mismatches.push(format!(
                "{} values, expected {}",
                actual.len(),
                expected.len()
            ));
            return c;
        }
        let (mut se, mut se_ref) = (0.0f64, 0.0f64);
        for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
            if a.is_nan() || e.is_nan() {
                if a.is_nan() != e.is_nan() {
                    c.passed = false;
                    if c.mismatches.len() < 10 {
                        c.mismatches.push(format!("[{i}] {a} vs {e}"));
                    }
                }
                continue;
            }
            let d = (a - e).abs();
            c.max_abs = c.max_abs.max(d);
            if e != 0.0 {
                c.max_rel = c.max_rel.max(d / e.abs());
            }
            se += d * d;
            se_ref += e * e;
            if let Some((atol, rtol)) = self.element_bounds() {
                if d > atol + rtol * e.abs() {
                    c.passed = false;
                    c.failed += 1;
                    if c.mismatches.len() < 10 {
                        c.mismatches.push(format!(
                            "[{i}] {a} vs {e} (|diff| {d:.3e} > {:.3e})",
                            atol + rtol * e.abs()
                        ));
                    }
                }
            }
        }
        let n = actual.len().max(1) as f64;
        c.mse = se / n;
        c.nmse = if se_ref > 0.0 {
            se / se_ref
        } else if se > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
        if let Tolerance::Nmse(max) = *self {
            if c.nmse > max {
                c.passed = false;
                c.mismatches
                    .push(format!("NMSE {:.3e} > {max:.3e}", c.nmse));
            }
        }
        c.strict = c.passed;
        c
    }
}

/// A strict bound that a correct backend of the output's precision meets and an acceptable one
/// (the Khronos CTS's QualityWarning): between them a case passes with a warning.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tiers {
    /// What a correct backend of this precision meets.
    pub strict: Tolerance,
    /// The loosest answer still accepted; wrong answers (see [`crate::mutation`]) lie beyond it.
    pub acceptable: Tolerance,
}

impl Tiers {
    /// One bound for both tiers (exact results, or numerics with no room between the two).
    pub fn single(t: Tolerance) -> Self {
        Tiers {
            strict: t,
            acceptable: t,
        }
    }

    /// Both tiers judged with f16 eps, for backends that compute f32 as f16.
    pub fn relaxed(self) -> Self {
        Tiers {
            strict: self.strict.relaxed(),
            acceptable: self.acceptable.relaxed(),
        }
    }

    /// Compares `actual` with `expected` against the acceptable bound, noting the strict one.
    pub fn check(&self, actual: &[f64], expected: &[f64]) -> Comparison {
        let mut c = self.acceptable.check(actual, expected);
        c.strict = c.passed
            && (self.strict == self.acceptable || self.strict.check(actual, expected).passed);
        c
    }
}

/// The outcome of comparing one output; error statistics are always recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Whether every element is within tolerance (the acceptable tier, when compared by tiers).
    pub passed: bool,
    /// Whether every element is also within the strict tier (`false` when `passed` is).
    #[serde(default)]
    pub strict: bool,
    /// Elements out of tolerance.
    pub failed: usize,
    /// Largest absolute difference.
    pub max_abs: f64,
    /// Largest relative difference (over non-zero expected values).
    pub max_rel: f64,
    /// Mean squared error.
    pub mse: f64,
    /// Normalised mean squared error.
    pub nmse: f64,
    /// Up to ten mismatches, described.
    pub mismatches: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_accept_and_reject_what_they_should() {
        assert!(Tolerance::Exact.check(&[1.0, 2.0], &[1.0, 2.0]).passed);
        assert!(!Tolerance::Exact.check(&[1.0, 2.0], &[1.0, 3.0]).passed);
        assert!(Tolerance::Lsb(1).check(&[5.0, -3.0], &[4.0, -2.0]).passed);
        assert!(!Tolerance::Lsb(1).check(&[5.0], &[3.0]).passed);
        let ulp = Tolerance::Ulp {
            ulps: 5.0,
            dtype: DType::F32,
        };
        assert!(
            ulp.check(&[1.0 + 4.0 * f64::from(f32::EPSILON)], &[1.0])
                .passed
        );
        assert!(
            !ulp.check(&[1.0 + 20.0 * f64::from(f32::EPSILON)], &[1.0])
                .passed
        );
        // The f16 criteria are looser: the relaxed form accepts what the f32 one rejects.
        assert!(ulp.relaxed().check(&[1.001], &[1.0]).passed);
        assert!(!ulp.check(&[1.001], &[1.0]).passed);
        let acc = Tolerance::AccumulationAware {
            ulps: 10.0,
            rtol: 0.0,
            atol: 0.0,
            k: 10_000,
            dtype: DType::F32,
        };
        // 10·eps·√K = 1.19e-4 relative
        assert!(acc.check(&[1.0001], &[1.0]).passed);
        assert!(!acc.check(&[1.001], &[1.0]).passed);
        assert!(Tolerance::Nmse(1e-7).check(&[1.0, 2.0], &[1.0, 2.0]).passed);
        let c = Tolerance::Nmse(1e-3).check(&[1.1, 2.0], &[1.0, 2.0]);
        assert!(!c.passed && (c.nmse - 0.01 / 5.0).abs() < 1e-12, "{c:?}");
        assert!(!Tolerance::Exact.check(&[1.0], &[1.0, 2.0]).passed);
        assert!(!Tolerance::Lsb(3).check(&[f64::NAN], &[1.0]).passed);
        assert!(Tolerance::Exact.check(&[f64::NAN], &[f64::NAN]).passed);
    }

    #[test]
    fn every_mismatch_is_counted_but_ten_are_described() {
        let a = vec![1.0; 50];
        let e = vec![0.0; 50];
        let c = Tolerance::Exact.check(&a, &e);
        assert_eq!(c.failed, 50);
        assert_eq!(c.mismatches.len(), 10);
        assert_eq!(c.max_abs, 1.0);
    }
}
