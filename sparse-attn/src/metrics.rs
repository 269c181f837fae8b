//! Accuracy metrics of sparse attention against dense attention and the exact top-k oracle.

use crate::error::{Result, SparseAttnError};
use shadowattn_hal::{
    AttentionInputs, AttentionShape, ComputeBackend, GroupScores, KeyBudget, ScoreData,
    ScoreMatrix, Selection,
};

/// Fraction of the exact top-k set that the selection found: `|Ŝ ∩ S*| / |S*|`.
pub fn topk_recall(selected: &[u32], exact: &[u32]) -> f64 {
    if exact.is_empty() {
        return 1.0;
    }
    let hits = selected.iter().filter(|j| exact.contains(j)).count();
    hits as f64 / exact.len() as f64
}

/// Softmax probabilities of `scale · scores` over one row's valid keys.
pub fn softmax_probs(scores: &[f32], scale: f32) -> Vec<f64> {
    let logits: Vec<f64> = scores
        .iter()
        .map(|&s| f64::from(s) * f64::from(scale))
        .collect();
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|x| (x - max).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// Attention mass of the selected keys: `Σ_{j∈S} p_j`.
pub fn attention_mass(probs: &[f64], selected: &[u32]) -> f64 {
    selected.iter().map(|&j| probs[j as usize]).sum()
}

/// Relative L2 error `‖a − b‖ / ‖b‖` (0 when both are zero).
pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    if den == 0.0 {
        if num == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (num / den).sqrt()
    }
}

/// Cosine similarity of two vectors (1 when both are zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 && nb == 0.0 {
        1.0
    } else if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// The `p`-th percentile (0–100) by nearest rank.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Accuracy of one head over its query rows.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadAccuracy {
    /// Query head.
    pub head: usize,
    /// Mean top-k recall.
    pub recall_mean: f64,
    /// Mean attention mass of the selection.
    pub mass_mean: f64,
    /// Mean attention mass of the exact top-k of the same sizes.
    pub oracle_mass_mean: f64,
    /// Relative L2 error of the head's whole output.
    pub rel_l2: f64,
    /// Cosine similarity of the head's whole output with dense.
    pub cosine: f64,
}

/// Accuracy of one sparse-attention chunk, over every (head, query row).
#[derive(Clone, Debug, PartialEq)]
pub struct AccuracyReport {
    /// Number of (head, row) pairs measured.
    pub rows: usize,
    /// Mean top-k recall against the exact top-k of the same size per row.
    pub recall_mean: f64,
    /// 5th percentile of the top-k recall.
    pub recall_p5: f64,
    /// Mean attention mass of the selected keys.
    pub mass_mean: f64,
    /// Mean attention mass of the exact top-k (the oracle; never below `mass_mean`).
    pub oracle_mass_mean: f64,
    /// Mean per-row relative L2 error of the output against dense attention.
    pub rel_l2_mean: f64,
    /// 95th percentile of the per-row relative L2 error.
    pub rel_l2_p95: f64,
    /// Mean per-row cosine similarity of the output with dense attention.
    pub cosine_mean: f64,
    /// Fraction of valid keys kept, over all rows.
    pub kept_fraction: f64,
    /// Per head.
    pub heads: Vec<HeadAccuracy>,
}

/// Whether every GQA group of several heads gave all its heads one selection.
fn shared_by_groups(shape: &AttentionShape, selections: &[Selection]) -> bool {
    let g = shape.q_heads / shape.kv_heads;
    g > 1
        && selections
            .chunks(g)
            .all(|group| group.iter().all(|s| s == &group[0]))
}

/// The exact selections the measured ones are judged against, one per query head: each row's
/// exact top-k of the same size under the same rule — per head, or per GQA group (the group's
/// ranking of exact scores, [`shadowattn_hal::group`]) when the groups share their selections.
pub fn oracles(
    inputs: &AttentionInputs<'_>,
    selections: &[Selection],
    exact: &[Vec<f32>],
    compute: &dyn ComputeBackend,
) -> Result<Vec<Selection>> {
    let s = inputs.shape();
    let rows = |h: usize, i: usize| {
        let n = s.valid_keys(i);
        (n, &exact[h][i * s.kv_len..i * s.kv_len + n])
    };
    if shared_by_groups(&s, selections) {
        let g = s.q_heads / s.kv_heads;
        let mut out = Vec::with_capacity(s.q_heads);
        for kv in 0..s.kv_heads {
            let mut sel = Selection::new();
            for i in 0..s.q_len {
                let heads = (kv * g..(kv + 1) * g)
                    .map(|h| {
                        let (n, r) = rows(h, i);
                        ScoreMatrix::new(ScoreData::F32(r), 1, n, 0, false)
                    })
                    .collect::<shadowattn_hal::Result<Vec<_>>>()?;
                let group = GroupScores::new(heads, vec![s.scale; g])?;
                let k = selections[kv * g].row(i).len();
                sel.push_row(compute.topk_group(&group, KeyBudget::Fixed(k))?.row(0));
            }
            out.extend(std::iter::repeat_n(sel, g));
        }
        return Ok(out);
    }
    (0..s.q_heads)
        .map(|h| {
            let mut sel = Selection::new();
            for i in 0..s.q_len {
                let (n, r) = rows(h, i);
                let row = ScoreMatrix::new(ScoreData::F32(r), 1, n, 0, false)?;
                let k = selections[h].row(i).len();
                sel.push_row(compute.topk(row, KeyBudget::Fixed(k))?.row(0));
            }
            Ok(sel)
        })
        .collect()
}

/// Measures a sparse chunk: `selections` (one per query head), its output `sparse` and the
/// dense output `dense`. The oracle of each row is the exact top-k of the same size as the
/// row's selection, chosen by `compute` on exact scores under the same rule: per head, or per
/// GQA group when each group's heads share one selection (the top-k of the sum of the heads'
/// probabilities, which maximizes the group's mean attention mass).
pub fn evaluate(
    inputs: AttentionInputs<'_>,
    selections: &[Selection],
    sparse: &[f32],
    dense: &[f32],
    compute: &dyn ComputeBackend,
) -> Result<AccuracyReport> {
    let s = inputs.shape();
    let n_out = inputs.output_len();
    if sparse.len() != n_out || dense.len() != n_out || selections.len() != s.q_heads {
        return Err(SparseAttnError::config(
            "outputs",
            format!(
                "expected {} selections and outputs of {n_out} values, got {}, {} and {}",
                s.q_heads,
                selections.len(),
                sparse.len(),
                dense.len()
            ),
        ));
    }
    for (h, sel) in selections.iter().enumerate() {
        sel.validate_for(h, &s)?;
    }
    let exact = (0..s.q_heads)
        .map(|h| inputs.exact_scores(h))
        .collect::<shadowattn_hal::Result<Vec<_>>>()?;
    let oracle = oracles(&inputs, selections, &exact, compute)?;
    let d = s.head_dim;
    let (mut recall, mut mass, mut oracle_mass, mut rel, mut cos) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut kept, mut valid_total) = (0usize, 0usize);
    let mut heads = Vec::with_capacity(s.q_heads);
    for (h, sel) in selections.iter().enumerate() {
        let first = recall.len();
        for i in 0..s.q_len {
            let n = s.valid_keys(i);
            let row_scores = &exact[h][i * s.kv_len..i * s.kv_len + n];
            let probs = softmax_probs(row_scores, s.scale);
            recall.push(topk_recall(sel.row(i), oracle[h].row(i)));
            mass.push(attention_mass(&probs, sel.row(i)));
            oracle_mass.push(attention_mass(&probs, oracle[h].row(i)));
            let at = (h * s.q_len + i) * d;
            rel.push(relative_l2(&sparse[at..at + d], &dense[at..at + d]));
            cos.push(cosine(&sparse[at..at + d], &dense[at..at + d]));
            kept += sel.row(i).len();
            valid_total += n;
        }
        let span = (h * s.q_len * d)..((h + 1) * s.q_len * d);
        heads.push(HeadAccuracy {
            head: h,
            recall_mean: mean(&recall[first..]),
            mass_mean: mean(&mass[first..]),
            oracle_mass_mean: mean(&oracle_mass[first..]),
            rel_l2: relative_l2(&sparse[span.clone()], &dense[span.clone()]),
            cosine: cosine(&sparse[span.clone()], &dense[span]),
        });
    }
    Ok(AccuracyReport {
        rows: recall.len(),
        recall_mean: mean(&recall),
        recall_p5: percentile(&recall, 5.0),
        mass_mean: mean(&mass),
        oracle_mass_mean: mean(&oracle_mass),
        rel_l2_mean: mean(&rel),
        rel_l2_p95: percentile(&rel, 95.0),
        cosine_mean: mean(&cos),
        kept_fraction: kept as f64 / valid_total.max(1) as f64,
        heads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elementary_metrics() {
        assert_eq!(topk_recall(&[1, 2, 3], &[3, 4, 1]), 2.0 / 3.0);
        let p = softmax_probs(&[0.0, 0.0, 0.0, 0.0], 1.0);
        assert_eq!(attention_mass(&p, &[0, 3]), 0.5);
        assert_eq!(relative_l2(&[1.0, 0.0], &[1.0, 0.0]), 0.0);
        assert!((relative_l2(&[0.0, 1.0], &[1.0, 0.0]) - 2f64.sqrt()).abs() < 1e-12);
        assert!((cosine(&[1.0, 0.0], &[0.0, 2.0])).abs() < 1e-12);
        assert!((cosine(&[1.0, 1.0], &[2.0, 2.0]) - 1.0).abs() < 1e-12);
        assert_eq!(percentile(&[5.0, 1.0, 3.0, 2.0, 4.0], 5.0), 1.0);
        assert_eq!(percentile(&[5.0, 1.0, 3.0, 2.0, 4.0], 95.0), 5.0);
        assert_eq!(percentile(&[5.0, 1.0, 3.0, 2.0, 4.0], 50.0), 3.0);
    }
}
