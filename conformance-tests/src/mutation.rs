//! Proof that a tolerance rejects wrong answers: the comparator is run on outputs derived from
//! the reference that a broken backend could produce, and each one that differs from the
//! reference must fall outside the acceptable tier.

use crate::tolerance::{least_step, Tolerance};
use serde::{Deserialize, Serialize};
use shadowattn_hal::DType;

/// A wrong output derived from the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mutation {
    /// Every element zero.
    Zeros,
    /// Every element the reference's mean.
    Constant,
    /// Every element moved a few steps of its type beyond the acceptable bound.
    Shifted,
    /// The largest and the smallest element exchanged.
    Swapped,
    /// Each row (last axis) replaced by the next one, the last by the first.
    RowsPermuted,
    /// The first element NaN (float outputs).
    OneNan,
}

impl Mutation {
    /// Every mutation, in report order.
    pub const ALL: [Mutation; 6] = [
        Mutation::Zeros,
        Mutation::Constant,
        Mutation::Shifted,
        Mutation::Swapped,
        Mutation::RowsPermuted,
        Mutation::OneNan,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::Zeros => "zeros",
            Mutation::Constant => "constant",
            Mutation::Shifted => "shifted",
            Mutation::Swapped => "swapped",
            Mutation::RowsPermuted => "rows_permuted",
            Mutation::OneNan => "one_nan",
        }
    }
}

/// What the acceptable tier made of one mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MutationOutcome {
    /// Outside the bound, as it must be.
    Rejected,
    /// Inside the bound: the tolerance lets this wrong answer through.
    Accepted,
    /// The mutation leaves this output unchanged (or cannot exist for its type).
    NotApplicable,
}

/// One mutation of one output and what the tolerance made of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MutationRecord {
    /// Index of the compared output.
    pub output: usize,
    /// The mutation.
    pub mutation: Mutation,
    /// Its outcome.
    pub outcome: MutationOutcome,
}

/// A reference output as a backend would have to write it.
#[derive(Clone, Copy, Debug)]
pub struct Reference<'a> {
    /// The golden values.
    pub values: &'a [f64],
    /// The element type the backend writes (mutations are rounded to it).
    pub dtype: DType,
    /// Elements per row (the last axis).
    pub row_len: usize,
}

fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16)
}

fn range(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::I8 => (-128.0, 127.0),
        DType::U8 => (0.0, 255.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::U16 => (0.0, 65535.0),
        DType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        DType::F16 => (-65504.0, 65504.0),
        DType::F32 => (f64::from(f32::MIN), f64::from(f32::MAX)),
    }
}

/// `x` as the nearest value of `dtype` (integers rounded and saturated).
fn representable(dtype: DType, x: f64) -> f64 {
    match dtype {
        DType::F32 => f64::from(x as f32),
        DType::F16 => half::f16::from_f64(x).to_f64(),
        _ => {
            let (lo, hi) = range(dtype);
            x.round().clamp(lo, hi)
        }
    }
}

/// One step of `dtype` at the magnitude of `x` (an ULP, or one integer).
fn step(dtype: DType, x: f64) -> f64 {
    if !is_float(dtype) {
        return 1.0;
    }
    let eps = crate::tolerance::epsilon(dtype);
    (x.abs() * eps).max(least_step(dtype))
}

/// The reference moved a few steps beyond `tol`'s bound, element by element (or, for NMSE,
/// by twice the root of the allowed error), away from the type's limits.
fn shifted(tol: &Tolerance, r: &Reference<'_>) -> Vec<f64> {
    let nmse_shift = match tol {
        Tolerance::Nmse(max) => {
            let power = r.values.iter().map(|e| e * e).sum::<f64>() / r.values.len().max(1) as f64;
            Some(2.0 * (max * power).sqrt())
        }
        _ => None,
    };
    let (lo, hi) = range(r.dtype);
    let bounds = tol.element_bounds();
    r.values
        .iter()
        .map(|&e| {
            let bound = match (bounds, nmse_shift) {
                (Some((atol, rtol)), _) => atol + rtol * e.abs(),
                (None, Some(s)) => s,
                (None, None) => 0.0,
            };
            let d = bound + 4.0 * step(r.dtype, e + bound);
            if e + d <= hi {
                e + d
            } else if e - d >= lo {
                e - d
            } else {
                e
            }
        })
        .collect()
}

fn mutate(m: Mutation, tol: &Tolerance, r: &Reference<'_>) -> Option<Vec<f64>> {
    let v = r.values;
    let n = v.len();
    if n == 0 {
        return None;
    }
    Some(match m {
        Mutation::Zeros => vec![0.0; n],
        Mutation::Constant => vec![v.iter().sum::<f64>() / n as f64; n],
        Mutation::Shifted => shifted(tol, r),
        Mutation::Swapped => {
            let by = |f: fn(f64, f64) -> bool| {
                (0..n).fold(0, |best, i| if f(v[i], v[best]) { i } else { best })
            };
            let (max, min) = (by(|a, b| a > b), by(|a, b| a < b));
            let mut out = v.to_vec();
            out.swap(max, min);
            out
        }
        Mutation::RowsPermuted => {
            let row = r.row_len.max(1);
            if !n.is_multiple_of(row) {
                return None;
            }
            let mut out = v.to_vec();
            out.rotate_left(row);
            out
        }
        Mutation::OneNan => {
            if !is_float(r.dtype) {
                return None;
            }
            let mut out = v.to_vec();
            out[0] = f64::NAN;
            out
        }
    })
}

/// Runs every mutation of `reference` through `acceptable`.
pub fn check(
    acceptable: &Tolerance,
    output: usize,
    reference: &Reference<'_>,
) -> Vec<MutationRecord> {
    Mutation::ALL
        .into_iter()
        .map(|mutation| {
            let changed = mutate(mutation, acceptable, reference)
                .map(|m| {
                    m.into_iter()
                        .map(|x| {
                            if x.is_nan() {
                                x
                            } else {
                                representable(reference.dtype, x)
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .filter(|m| {
                    m.iter()
                        .zip(reference.values)
                        .any(|(a, e)| a.is_nan() != e.is_nan() || (!a.is_nan() && a != e))
                });
            let outcome = match changed {
                None => MutationOutcome::NotApplicable,
                Some(m) if acceptable.check(&m, reference.values).passed => {
                    MutationOutcome::Accepted
                }
                Some(_) => MutationOutcome::Rejected,
            };
            MutationRecord {
                output,
                mutation,
                outcome,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(
        tol: Tolerance,
        values: &[f64],
        dtype: DType,
        row_len: usize,
    ) -> Vec<MutationOutcome> {
        check(
            &tol,
            0,
            &Reference {
                values,
                dtype,
                row_len,
            },
        )
        .into_iter()
        .map(|r| r.outcome)
        .collect()
    }

    #[test]
    fn an_exact_tolerance_rejects_every_mutation_that_changes_the_output() {
        use MutationOutcome::*;
        let v = [3.0, -1.0, 7.0, 2.0];
        assert_eq!(
            outcomes(Tolerance::Exact, &v, DType::I32, 2),
            [
                Rejected,
                Rejected,
                Rejected,
                Rejected,
                Rejected,
                NotApplicable
            ]
        );
        // One row, one value: only zeros, the shift and NaN change it.
        assert_eq!(
            outcomes(Tolerance::Exact, &[0.5], DType::F32, 1),
            [
                Rejected,
                NotApplicable,
                Rejected,
                NotApplicable,
                NotApplicable,
                Rejected
            ]
        );
    }

    #[test]
    fn a_loose_bound_is_caught_accepting_zeros() {
        // Softmax-sized outputs (about 1e-3) under an absolute bound of 1e-2.
        let v: Vec<f64> = (0..64).map(|i| 1e-3 + 1e-5 * f64::from(i)).collect();
        let loose = Tolerance::AccumulationAware {
            ulps: 10.0,
            rtol: 0.5,
            atol: 1e-2,
            k: 64,
            dtype: DType::F32,
        };
        let r = outcomes(loose, &v, DType::F32, 8);
        assert_eq!(r[0], MutationOutcome::Accepted, "{r:?}");
        let relative = Tolerance::Relative {
            ulps: 10.0,
            dtype: DType::F16,
        };
        assert!(outcomes(relative, &v, DType::F16, 8)
            .iter()
            .all(|o| *o != MutationOutcome::Accepted));
    }

    #[test]
    fn shifts_survive_rounding_to_the_output_type_and_saturation() {
        let v = [127.0, -128.0, 0.0];
        let r = outcomes(Tolerance::Lsb(1), &v, DType::I8, 3);
        assert_eq!(r[2], MutationOutcome::Rejected);
        let nmse = outcomes(Tolerance::Nmse(1e-4), &[1.0, 2.0, 3.0], DType::F16, 3);
        assert_eq!(nmse[2], MutationOutcome::Rejected);
    }
}
