//! What a caller needs around a chunk: the seeded synthetic workload `shadowattn run` uses, the
//! INT8 pilot's accumulator range from a sample, and the accuracy of a sparse chunk against
//! dense attention.

use crate::backends::shadowattn_compute;
use crate::context::attention_inputs;
use crate::error::{guard, shadowattn_status, ApiError};
use crate::report::shadowattn_report;
use crate::{shadowattn_shape, sys};
use shadowattn_sparse_attn::metrics::evaluate;
use shadowattn_sparse_attn::pilot::int8_accumulator_range;
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};

/// Accuracy of a sparse chunk against dense attention.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct shadowattn_accuracy {
    /// Mean top-k recall against the exact top-k of the same size per row.
    pub recall_mean: f64,
    /// 5th percentile of the recall.
    pub recall_p5: f64,
    /// Mean attention mass of the selected keys.
    pub mass_mean: f64,
    /// Mean attention mass of the exact top-k (never below `mass_mean`).
    pub oracle_mass_mean: f64,
    /// Mean per-row relative L2 error of the output.
    pub rel_l2_mean: f64,
    /// 95th percentile of the per-row relative L2 error.
    pub rel_l2_p95: f64,
    /// Mean per-row cosine similarity with dense attention.
    pub cosine_mean: f64,
    /// Fraction of valid keys kept.
    pub kept_fraction: f64,
}

const _: () = assert!(std::mem::size_of::<shadowattn_accuracy>() == 64);

/// Fills Q, K and V (counts as the shape needs) with the seeded synthetic chunk of
/// `shadowattn run`: Gaussian values with `planted_fraction` of the keys sharing a direction
/// with the queries of their group.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`, `SHADOWATTN_ERROR_INVALID_ARGUMENT` (a count that
/// does not match the shape, a fraction outside [0, 1]).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn shadowattn_synthetic_chunk(
    shape: *const shadowattn_shape,
    planted_fraction: f32,
    seed: u64,
    q: *mut f32,
    q_count: usize,
    k: *mut f32,
    k_count: usize,
    v: *mut f32,
    v_count: usize,
) -> shadowattn_status {
    guard(|| {
        let shape = sys::get(shape, "shape")?.to_rust()?;
        let chunk = SyntheticChunk::generate(SyntheticSpec {
            shape,
            planted_fraction,
            signal: 1.0,
            seed,
        })?;
        for (name, ptr, count, data) in [
            ("q", q, q_count, &chunk.q),
            ("k", k, k_count, &chunk.k),
            ("v", v, v_count, &chunk.v),
        ] {
            if count != data.len() {
                return Err(ApiError::invalid(format!(
                    "{name} holds {count} floats, the shape needs {}",
                    data.len()
                )));
            }
            sys::slice_mut(ptr, count, name)?.copy_from_slice(data);
        }
        Ok(())
    })
}

/// The INT8 pilot's accumulator range for `options.int8_acc_range`: the largest |q·k| of a
/// sample chunk in integer units, so requantized scores use the whole INT8 range.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`, `SHADOWATTN_ERROR_INVALID_ARGUMENT`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn shadowattn_int8_accumulator_range(
    q: *const f32,
    q_count: usize,
    k: *const f32,
    k_count: usize,
    v: *const f32,
    v_count: usize,
    shape: *const shadowattn_shape,
    out: *mut f32,
) -> shadowattn_status {
    guard(|| {
        let inputs = attention_inputs(q, q_count, k, k_count, v, v_count, shape)?;
        sys::put(out, int8_accumulator_range(inputs)?, "out")
    })
}

/// The accuracy of the sparse chunk `report` (its output `sparse`) against `dense`, the exact
/// top-k chosen on `compute`, into `*out`.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`, `SHADOWATTN_ERROR_INVALID_ARGUMENT` (counts or a
/// report of another shape).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn shadowattn_accuracy_of(
    compute: *const shadowattn_compute,
    q: *const f32,
    q_count: usize,
    k: *const f32,
    k_count: usize,
    v: *const f32,
    v_count: usize,
    shape: *const shadowattn_shape,
    report: *const shadowattn_report,
    sparse: *const f32,
    dense: *const f32,
    out_count: usize,
    out: *mut shadowattn_accuracy,
) -> shadowattn_status {
    guard(|| {
        let compute = sys::get(compute, "compute")?;
        let inputs = attention_inputs(q, q_count, k, k_count, v, v_count, shape)?;
        let r = sys::get(report, "report")?;
        let a = evaluate(
            inputs,
            r.selections(),
            sys::slice(sparse, out_count, "sparse")?,
            sys::slice(dense, out_count, "dense")?,
            compute.backend.as_ref(),
        )?;
        let acc = shadowattn_accuracy {
            recall_mean: a.recall_mean,
            recall_p5: a.recall_p5,
            mass_mean: a.mass_mean,
            oracle_mass_mean: a.oracle_mass_mean,
            rel_l2_mean: a.rel_l2_mean,
            rel_l2_p95: a.rel_l2_p95,
            cosine_mean: a.cosine_mean,
            kept_fraction: a.kept_fraction,
        };
        sys::put(out, acc, "out")
    })
}
