//! The scales of calibration samples: each head's quantization scale is `max|x| / 127` of its Q
//! (per query head) or K (per KV head) on a sample; λ̄Q and λ̄K are the means over every layer,
//! head and sample. Also the INT8 pilot's accumulator range on the samples.

use super::shape::ModelShape;
use crate::error::{Result, SparseAttnError};

/// Absmax scale `max|x| / 127` of one head's values (1.0 for an all-zero head).
pub fn absmax_scale(x: &[f32]) -> f32 {
    let m = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if m > 0.0 {
        m / 127.0
    } else {
        1.0
    }
}

/// One calibration sample of a layer: its Q and K on one text window.
#[derive(Clone, Copy, Debug)]
pub struct LayerSample<'a> {
    /// Layer index.
    pub layer: usize,
    /// Queries, `[q_heads, rows, head_dim]`.
    pub q: &'a [f32],
    /// Keys, `[kv_heads, rows, head_dim]`.
    pub k: &'a [f32],
    /// Rows (tokens) of the sample.
    pub rows: usize,
}

/// Mean Q and K scales over samples (every head of every sample counts once).
pub fn mean_scales(model: &ModelShape, samples: &[LayerSample<'_>]) -> Result<(f32, f32)> {
    model.validate()?;
    if samples.is_empty() {
        return Err(SparseAttnError::config(
            "samples",
            "at least one sample is needed",
        ));
    }
    let d = model.head_dim;
    let (mut sq, mut nq, mut sk, mut nk) = (0.0f64, 0usize, 0.0f64, 0usize);
    for (i, s) in samples.iter().enumerate() {
        check_sample(model, i, s)?;
        for h in s.q.chunks_exact(s.rows * d) {
            sq += f64::from(absmax_scale(h));
            nq += 1;
        }
        for h in s.k.chunks_exact(s.rows * d) {
            sk += f64::from(absmax_scale(h));
            nk += 1;
        }
    }
    Ok(((sq / nq as f64) as f32, (sk / nk as f64) as f32))
}

/// Checks sample `i` against the model: its layer, its rows, its sizes and its values.
fn check_sample(model: &ModelShape, i: usize, s: &LayerSample<'_>) -> Result<()> {
    let d = model.head_dim;
    if s.layer >= model.layers || s.rows == 0 {
        return Err(SparseAttnError::config(
            "samples",
            format!(
                "sample {i}: layer {} of {} with {} rows",
                s.layer, model.layers, s.rows
            ),
        ));
    }
    if s.q.len() != model.q_heads * s.rows * d || s.k.len() != model.kv_heads * s.rows * d {
        return Err(SparseAttnError::config(
            "samples",
            format!(
                "sample {i}: Q has {} values and K {}, expected {} and {}",
                s.q.len(),
                s.k.len(),
                model.q_heads * s.rows * d,
                model.kv_heads * s.rows * d
            ),
        ));
    }
    if let Some(v) = s.q.iter().chain(s.k).find(|v| !v.is_finite()) {
        return Err(SparseAttnError::config(
            "samples",
            format!("sample {i} holds a non-finite value {v}"),
        ));
    }
    Ok(())
}

/// The largest causal |q·k| / (λQ·λK) of any query head in `samples`, each head's Q and its KV
/// head's K scaled by their own absmax scales ([`absmax_scale`]): the accumulator magnitude of
/// an INT8 pilot on data like the samples (row `i` scores keys `0..=i`).
pub fn accumulator_range(model: &ModelShape, samples: &[LayerSample<'_>]) -> Result<f32> {
    mean_scales(model, samples)?;
    let d = model.head_dim;
    let group = model.q_heads / model.kv_heads;
    let mut max = 0.0f32;
    for s in samples {
        let per_head = s.rows * d;
        for (h, q) in s.q.chunks_exact(per_head).enumerate() {
            let k = &s.k[h / group * per_head..][..per_head];
            let scale = absmax_scale(q) * absmax_scale(k);
            max = max.max(causal_score_absmax(q, k, d) / scale);
        }
    }
    if !(max.is_finite() && max > 0.0) {
        return Err(SparseAttnError::config(
            "samples",
            format!("their largest scaled score is {max}"),
        ));
    }
    Ok(max)
}

/// The largest |q_i·k_j| over `j ≤ i` of one head's `[rows, d]` queries and keys.
fn causal_score_absmax(q: &[f32], k: &[f32], d: usize) -> f32 {
    q.chunks_exact(d)
        .enumerate()
        .flat_map(|(i, qi)| {
            k.chunks_exact(d)
                .take(i + 1)
                .map(move |kj| qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>().abs())
        })
        .fold(0.0, f32::max)
}
