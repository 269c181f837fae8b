//! Reference attention kernels: plain loops with f64 accumulation, the yardstick for fast ones.

use super::arith;
use super::graph::top_indices;
use shadowattn_hal::compute::{check_dense_call, check_quantize_call, check_sparse_call};
use shadowattn_hal::{
    AttentionInputs, DType, HeadsView, KeyBudget, QuantParams, QuantizedHeads, Result, ScoreData,
    ScoreMatrix, Selection,
};

/// Symmetric per-head INT8 quantization (see [`shadowattn_hal::ComputeBackend::quantize_heads`]).
pub fn quantize_heads(x: HeadsView<'_>, scales: Option<&[f32]>) -> Result<QuantizedHeads> {
    check_quantize_call(&x, scales)?;
    let scales: Vec<f32> = match scales {
        Some(s) => s.to_vec(),
        None => (0..x.heads())
            .map(|h| {
                let max = x.head(h).iter().fold(0.0f32, |m, v| m.max(v.abs()));
                if max > 0.0 {
                    max / 127.0
                } else {
                    1.0
                }
            })
            .collect(),
    };
    let mut data = Vec::with_capacity(x.data().len());
    for (h, &s) in scales.iter().enumerate() {
        let p = QuantParams::symmetric(s);
        for &v in x.head(h) {
            data.push(arith::quantize(f64::from(v), p, DType::I8, "heads")? as i8);
        }
    }
    QuantizedHeads::new(data, scales, x.rows(), x.dim())
}

/// Top-k per row over the causal prefix (see [`shadowattn_hal::ComputeBackend::topk`]).
pub fn topk(scores: ScoreMatrix<'_>, budget: KeyBudget) -> Result<Selection> {
    budget.validate()?;
    let mut sel = Selection::new();
    let mut row = Vec::with_capacity(scores.cols());
    for i in 0..scores.rows() {
        let valid = scores.valid_keys(i);
        let k = budget.keys_for(i, valid)?;
        row.clear();
        match scores.ordered_row(i)? {
            ScoreData::I32(d) => row.extend(d.iter().map(|&v| f64::from(v))),
            ScoreData::I8(d) => row.extend(d.iter().map(|&v| f64::from(v))),
            ScoreData::F32(d) => row.extend(d.iter().map(|&v| f64::from(v))),
            ScoreData::F16(d) => row.extend(d.iter().map(|&v| f64::from(v))),
        }
        let mut picked: Vec<u32> = top_indices(&row, k).into_iter().map(|j| j as u32).collect();
        picked.sort_unstable();
        sel.push_row(&picked);
    }
    Ok(sel)
}

/// Softmax(scale · q·K_S)·V_S for one query row over the keys `keys` of one KV head.
fn attend_row(
    inputs: &AttentionInputs<'_>,
    head: usize,
    row: usize,
    keys: &[usize],
    out: &mut [f32],
) {
    let s = inputs.shape();
    let d = s.head_dim;
    let kv = s.kv_head_of(head);
    let q = inputs.q_row(head, row);
    let (k, v) = (inputs.k_head(kv), inputs.v_head(kv));
    let key = |j: usize| &k[j * d..][..d];
    let val = |j: usize| &v[j * d..][..d];
    let scores: Vec<f64> = keys
        .iter()
        .map(|&j| {
            let dot: f64 = q
                .iter()
                .zip(key(j))
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            dot * f64::from(s.scale)
        })
        .collect();
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    for (c, o) in out.iter_mut().enumerate() {
        let acc: f64 = keys
            .iter()
            .zip(&weights)
            .map(|(&j, w)| w * f64::from(val(j)[c]))
            .sum();
        *o = (acc / total) as f32;
    }
}

/// Sparse attention over each row's selected keys (see [`shadowattn_hal::ComputeBackend::sparse_attention`]).
pub fn sparse_attention(
    inputs: AttentionInputs<'_>,
    selections: &[Selection],
    out: &mut [f32],
) -> Result<()> {
    check_sparse_call(&inputs, selections, out)?;
    let s = inputs.shape();
    let d = s.head_dim;
    for (h, sel) in selections.iter().enumerate() {
        for i in 0..s.q_len {
            let keys: Vec<usize> = sel.row(i).iter().map(|&j| j as usize).collect();
            attend_row(&inputs, h, i, &keys, &mut out[(h * s.q_len + i) * d..][..d]);
        }
    }
    Ok(())
}

/// Dense attention over every valid key (see [`shadowattn_hal::ComputeBackend::dense_attention`]).
pub fn dense_attention(inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()> {
    check_dense_call(&inputs, out)?;
    let s = inputs.shape();
    let d = s.head_dim;
    for h in 0..s.q_heads {
        for i in 0..s.q_len {
            let keys: Vec<usize> = (0..s.valid_keys(i)).collect();
            attend_row(&inputs, h, i, &keys, &mut out[(h * s.q_len + i) * d..][..d]);
        }
    }
    Ok(())
}
