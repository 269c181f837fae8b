//! The fast kernels themselves, in safe code over the primitives of [`super::sys`].

use super::sys;
use shadowattn_hal::{
    AttentionInputs, HalError, KeyBudget, Result, ScoreData, ScoreMatrix, Selection,
};
use std::cmp::Ordering;

/// The `k` largest of `vals` (ties kept at the lower index), in ascending key order: the k-th
/// largest value is found by partial selection (linear on average), then one scan keeps the keys
/// above it and the earliest keys equal to it.
fn select_row<T: Copy>(
    vals: &[T],
    k: usize,
    scratch: &mut Vec<T>,
    desc: impl Fn(&T, &T) -> Ordering,
) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    scratch.clear();
    scratch.extend_from_slice(vals);
    let (_, &mut threshold, _) = scratch.select_nth_unstable_by(k - 1, &desc);
    let above = vals
        .iter()
        .filter(|v| desc(v, &threshold) == Ordering::Less)
        .count();
    let mut ties = k - above;
    let mut picked: Vec<u32> = Vec::with_capacity(k);
    for (j, v) in vals.iter().enumerate() {
        match desc(v, &threshold) {
            Ordering::Less => picked.push(j as u32),
            Ordering::Equal if ties > 0 => {
                ties -= 1;
                picked.push(j as u32);
            }
            _ => {}
        }
    }
    // The scan visits keys in ascending order: the row is already in the contract's order.
    picked
}

/// [`select_row`] for INT8 scores (the requantized pilot output of NPUs): a 256-bin histogram
/// finds the k-th largest value in one pass, a second pass keeps the keys; no copy, no sort.
fn select_row_i8(vals: &[i8], k: usize) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    let mut hist = [0usize; 256];
    for &v in vals {
        hist[(i16::from(v) + 128) as usize] += 1;
    }
    let (mut above, mut bin) = (0usize, 255usize);
    while above + hist[bin] < k {
        above += hist[bin];
        bin -= 1;
    }
    let threshold = (bin as i16 - 128) as i8;
    let mut ties = k - above;
    let mut picked = Vec::with_capacity(k);
    for (j, &v) in vals.iter().enumerate() {
        if v > threshold || (v == threshold && ties > 0) {
            if v == threshold {
                ties -= 1;
            }
            picked.push(j as u32);
        }
    }
    picked
}

/// Top-k per row over the causal prefix, identical to the golden kernel's selection and order.
pub fn topk(scores: ScoreMatrix<'_>, budget: KeyBudget) -> Result<Selection> {
    scores.validate()?;
    budget.validate()?;
    let mut sel = Selection::new();
    let (mut si, mut sf): (Vec<i32>, Vec<f32>) = (Vec::new(), Vec::new());
    for i in 0..scores.rows {
        let n = scores.valid_keys(i);
        let k = budget.keys_for(i, n)?;
        let range = i * scores.cols..i * scores.cols + n;
        let picked = match scores.data {
            ScoreData::I32(d) => select_row(&d[range], k, &mut si, |a, b| b.cmp(a)),
            ScoreData::I8(d) => select_row_i8(&d[range], k),
            ScoreData::F32(d) => {
                if let Some(j) = d[range.clone()].iter().position(|v| v.is_nan()) {
                    return Err(HalError::invalid_value(
                        "scores",
                        format!("query row {i}, key {j} is NaN; NaN has no order"),
                    ));
                }
                select_row(&d[range], k, &mut sf, |a, b| b.total_cmp(a))
            }
        };
        sel.push_row(&picked);
    }
    Ok(sel)
}

/// Softmax·V of query row `q` over `keys` of one KV head into `out`, in f32.
#[allow(clippy::too_many_arguments)]
fn attend(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: usize,
    scale: f32,
    keys: &[u32],
    weights: &mut Vec<f32>,
    out: &mut [f32],
) {
    weights.clear();
    weights.extend(
        keys.iter()
            .map(|&j| scale * sys::dot(q, &k[j as usize * d..][..d])),
    );
    let max = weights.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    weights.iter_mut().for_each(|w| *w -= max);
    sys::exp_inplace(weights);
    let total: f32 = weights.iter().sum();
    out.iter_mut().for_each(|o| *o = 0.0);
    sys::weighted_rows_indexed(out, weights, v, keys);
    let inv = 1.0 / total;
    out.iter_mut().for_each(|o| *o *= inv);
}

/// Sparse attention of query head `h` over its selection (validated by the caller).
pub fn sparse_head(inputs: &AttentionInputs<'_>, h: usize, sel: &Selection, out: &mut [f32]) {
    let s = inputs.shape;
    let d = s.head_dim;
    let kv = s.kv_head_of(h);
    let k = &inputs.k[kv * s.kv_len * d..(kv + 1) * s.kv_len * d];
    let v = &inputs.v[kv * s.kv_len * d..(kv + 1) * s.kv_len * d];
    let mut weights = Vec::new();
    for i in 0..s.q_len {
        let q = &inputs.q[(h * s.q_len + i) * d..][..d];
        attend(
            q,
            k,
            v,
            d,
            s.scale,
            sel.row(i),
            &mut weights,
            &mut out[i * d..(i + 1) * d],
        );
    }
}

/// Key tile width of dense attention (a multiple of 16).
pub const TILE: usize = 64;

/// K of one KV head transposed to `[head_dim, padded kv_len]` (padding to a multiple of TILE is zero).
pub fn transpose_keys(inputs: &AttentionInputs<'_>, kv: usize) -> Vec<f32> {
    let s = inputs.shape;
    let d = s.head_dim;
    let stride = s.kv_len.div_ceil(TILE) * TILE;
    let mut kt = vec![0.0f32; d * stride];
    let k = &inputs.k[kv * s.kv_len * d..(kv + 1) * s.kv_len * d];
    for (j, row) in k.chunks_exact(d).enumerate() {
        for (c, &x) in row.iter().enumerate() {
            kt[c * stride + j] = x;
        }
    }
    kt
}

/// Rows of query processed together in dense attention.
const ROWS: usize = 4;

/// Dense causal attention of query head `h`: tiles of TILE keys, online softmax, f32 accumulation.
pub fn dense_head(inputs: &AttentionInputs<'_>, h: usize, kt: &[f32], out: &mut [f32]) {
    let s = inputs.shape;
    let d = s.head_dim;
    let stride = s.kv_len.div_ceil(TILE) * TILE;
    let kv = s.kv_head_of(h);
    let v = &inputs.v[kv * s.kv_len * d..(kv + 1) * s.kv_len * d];
    let mut scores = vec![0.0f32; ROWS * TILE];
    let mut m = [f32::NEG_INFINITY; ROWS];
    let mut l = [0.0f32; ROWS];
    for r0 in (0..s.q_len).step_by(ROWS) {
        let rows = (s.q_len - r0).min(ROWS);
        let q_rows: Vec<&[f32]> = (r0..r0 + rows)
            .map(|i| &inputs.q[(h * s.q_len + i) * d..][..d])
            .collect();
        let valid: Vec<usize> = (r0..r0 + rows).map(|i| s.valid_keys(i)).collect();
        let end = valid.iter().copied().max().unwrap_or(0);
        m.iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
        l.iter_mut().for_each(|x| *x = 0.0);
        let acc = &mut out[r0 * d..(r0 + rows) * d];
        acc.iter_mut().for_each(|x| *x = 0.0);
        for t0 in (0..end).step_by(TILE) {
            let n = (end - t0).min(TILE).div_ceil(8) * 8;
            sys::scores_block(&q_rows, &kt[t0..], stride, n, &mut scores);
            for r in 0..rows {
                let limit = valid[r].saturating_sub(t0).min(n);
                if limit == 0 {
                    continue;
                }
                let row = &mut scores[r * n..r * n + limit];
                let mut tile_max = f32::NEG_INFINITY;
                for x in row.iter_mut() {
                    *x *= s.scale;
                    tile_max = tile_max.max(*x);
                }
                let new_m = m[r].max(tile_max);
                let correction = (m[r] - new_m).exp();
                let o = &mut acc[r * d..(r + 1) * d];
                if correction != 1.0 {
                    o.iter_mut().for_each(|x| *x *= correction);
                }
                row.iter_mut().for_each(|x| *x -= new_m);
                sys::exp_inplace(row);
                l[r] = l[r] * correction + row.iter().sum::<f32>();
                sys::weighted_rows(o, row, &v[t0 * d..(t0 + limit) * d]);
                m[r] = new_m;
            }
        }
        for r in 0..rows {
            let inv = 1.0 / l[r];
            acc[r * d..(r + 1) * d].iter_mut().for_each(|x| *x *= inv);
        }
    }
}
