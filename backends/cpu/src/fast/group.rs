//! The shared-selection kernels (one key set per GQA group and query row), in safe code over
//! [`super::simd::group`]: the INT8 ranking of [`shadowattn_hal::group`] with top-k on it, and
//! sparse attention where the group's heads are the rows of one register-blocked kernel over
//! the same gathered K/V rows.

use super::kernels::{fill_rows, select_ranked, Scratch};
use super::simd::lanes::LANES;
use super::simd::{self, group as prim};
use super::tile::{attend_tile, Lane, TileScratch};
use super::{Arithmetic, SparseKernel};
use rayon::prelude::*;
use shadowattn_hal::group::{exp2_factor, GroupScores};
use shadowattn_hal::{AttentionInputs, KeyBudget, Result, ScoreData, Selection};

/// Query rows per parallel job of [`sparse_grouped`].
const ROWS_PER_JOB: usize = 8;

/// Top-k of a group's ranking per row, rows in parallel on the current pool. INT8 scores take
/// the vector path; other score types compute the ranking with the contract's own code.
pub fn topk_group(group: &GroupScores<'_>, budget: KeyBudget) -> Result<Selection> {
    budget.validate()?;
    let (int8, tables) = weight_tables(group);
    let placement = group.placement();
    let kept = (0..group.rows())
        .map(|i| {
            let n = placement.valid_keys(i);
            Ok(budget.keys_for(i, n)?.min(n))
        })
        .collect::<Result<Vec<_>>>()?;
    fill_rows(&kept, |i, scratch: &mut RankScratch| {
        if int8 {
            rank_int8(group, &tables, i, &mut scratch.ranks, &mut scratch.weights);
        } else {
            group.ranking(i, &mut scratch.ranks);
        }
        Ok(select_ranked(&scratch.ranks, kept[i], &mut scratch.select))
    })
}

/// The group's rank values `[rows, cols]` (0 beyond each row's prefix), bit for bit
/// [`GroupScores::ranks`], rows in parallel on the current pool; INT8 scores take the vector
/// path.
pub fn ranks(group: &GroupScores<'_>) -> Vec<f32> {
    let (int8, tables) = weight_tables(group);
    let cols = group.placement().cols();
    let mut out = vec![0.0f32; group.rows() * cols];
    out.par_chunks_mut(cols).enumerate().for_each_init(
        RankScratch::default,
        |scratch, (i, row)| {
            if int8 {
                rank_int8(group, &tables, i, &mut scratch.ranks, &mut scratch.weights);
            } else {
                group.ranking(i, &mut scratch.ranks);
            }
            row[..scratch.ranks.len()].copy_from_slice(&scratch.ranks);
        },
    );
    out
}

/// Whether the group's scores are INT8, and then each head's table of step 2's weights.
fn weight_tables(group: &GroupScores<'_>) -> (bool, Vec<prim::WeightTable>) {
    let int8 = matches!(group.placement().data(), ScoreData::I8(_));
    let tables = if int8 {
        group
            .logit_scales()
            .iter()
            .map(|&s| prim::WeightTable::new(exp2_factor(s)))
            .collect()
    } else {
        Vec::new()
    };
    (int8, tables)
}

/// The buffers one worker of [`topk_group`] reuses row after row.
#[derive(Default)]
struct RankScratch {
    select: Scratch,
    ranks: Vec<f32>,
    weights: Vec<u32>,
}

/// Steps 1–4 of the ranking for row `i` of INT8 heads into `ranks`.
fn rank_int8(
    group: &GroupScores<'_>,
    tables: &[prim::WeightTable],
    i: usize,
    ranks: &mut Vec<f32>,
    weights: &mut Vec<u32>,
) {
    let n = group.placement().valid_keys(i);
    ranks.clear();
    ranks.resize(n, 0.0);
    weights.resize(n, 0);
    for (m, table) in group.heads().iter().zip(tables) {
        let ScoreData::I8(row) = m.row(i) else {
            unreachable!("a group's heads share one score type")
        };
        let total = prim::head_weights_i8(row, table, weights);
        let r = (1.0 / total.max(1) as f64) as f32;
        prim::add_scaled_weights(ranks, weights, r);
    }
}

/// Sparse attention of every KV group over its shared selection (validated by the caller):
/// jobs of [`ROWS_PER_JOB`] rows of one group on the current pool, then the outputs scattered
/// to `[q_heads, q_len, head_dim]`. `k` and `v` are the inputs' K and V in their storage type.
pub fn sparse_grouped<T: simd::KvElement>(
    inputs: &AttentionInputs<'_>,
    (k, v): (&[T], &[T]),
    selections: &[Selection],
    (kernel, arithmetic): (SparseKernel, Arithmetic),
    out: &mut [f32],
) {
    let s = inputs.shape();
    let (d, g) = (s.head_dim, s.q_heads / s.kv_heads);
    let jobs: Vec<(usize, usize)> = (0..s.kv_heads)
        .flat_map(|kv| (0..s.q_len).step_by(ROWS_PER_JOB).map(move |i| (kv, i)))
        .collect();
    let parts: Vec<Vec<f32>> = jobs
        .par_iter()
        .map(|&(kv, i0)| {
            let rows = i0..(i0 + ROWS_PER_JOB).min(s.q_len);
            let mut part = vec![0.0; rows.len() * g * d];
            let (k, v) = (
                &k[kv * s.kv_len * d..(kv + 1) * s.kv_len * d],
                &v[kv * s.kv_len * d..(kv + 1) * s.kv_len * d],
            );
            let rows = (kv, rows);
            match kernel {
                SparseKernel::Tiled => {
                    rows_tiled(inputs, (k, v), selections, (rows, arithmetic), &mut part)
                }
                _ => rows_single(inputs, (k, v), selections, rows, &mut part),
            }
            part
        })
        .collect();
    for (&(kv, i0), part) in jobs.iter().zip(&parts) {
        for (r, rows) in part.chunks_exact(g * d).enumerate() {
            for (slot, o) in rows.chunks_exact(d).enumerate() {
                let h = kv * g + slot;
                let at = (h * s.q_len + i0 + r) * d;
                out[at..at + d].copy_from_slice(o);
            }
        }
    }
}

/// Sparse attention of KV group `kv`'s heads at `rows`, one row (and the group's heads) at a
/// time, into `part` (`[rows][g][head_dim]`); `k` and `v` are that KV head's rows.
fn rows_single<T: simd::KvElement>(
    inputs: &AttentionInputs<'_>,
    (k, v): (&[T], &[T]),
    selections: &[Selection],
    (kv, rows): (usize, std::ops::Range<usize>),
    part: &mut [f32],
) {
    let per_row = inputs.shape().q_heads / inputs.shape().kv_heads * inputs.shape().head_dim;
    let mut scratch = GroupScratch::default();
    for (i, o) in rows.zip(part.chunks_exact_mut(per_row)) {
        attend_group(inputs, kv, i, k, v, selections[kv].row(i), &mut scratch, o);
    }
}

/// [`rows_single`] in lane tiles of whole rows: `⌊LANES / g⌋` rows of the group's heads
/// (several rows only when the group is small; their key sets' union is gathered once), or,
/// when the group has more heads than lanes, one row's heads [`LANES`] at a time.
fn rows_tiled<T: simd::KvElement>(
    inputs: &AttentionInputs<'_>,
    (k, v): (&[T], &[T]),
    selections: &[Selection],
    ((kv, rows), arithmetic): ((usize, std::ops::Range<usize>), Arithmetic),
    part: &mut [f32],
) {
    let s = inputs.shape();
    let (d, g) = (s.head_dim, s.q_heads / s.kv_heads);
    // (row, head) pairs in the order of `part`, cut into tiles that never split a row's heads
    // across tiles unless the row has more heads than a tile has lanes.
    let pairs: Vec<(usize, usize)> = rows
        .flat_map(|i| (0..g).map(move |slot| (i, slot)))
        .collect();
    let whole_rows = if g <= LANES { LANES / g * g } else { g };
    let tiles = pairs.chunks(whole_rows).flat_map(|c| c.chunks(LANES));
    let mut sc = TileScratch::default();
    let mut at = 0;
    for tile in tiles {
        let lanes: Vec<Lane<'_>> = tile
            .iter()
            .map(|&(i, slot)| Lane {
                q: inputs.q_row(kv * g + slot, i),
                keys: selections[kv].row(i),
            })
            .collect();
        let o = &mut part[at..at + tile.len() * d];
        attend_tile(&lanes, (k, v), (d, s.scale), arithmetic, &mut sc, o);
        at += tile.len() * d;
    }
}

/// Buffers one job reuses row after row.
#[derive(Default)]
struct GroupScratch {
    q: Vec<f32>,
    p: Vec<f32>,
    inv: Vec<f32>,
}

/// Softmax·V of query row `i` of every head of KV group `kv` over `keys` into `out`
/// (`[g][head_dim]`); `k` and `v` are that KV head's rows.
#[allow(clippy::too_many_arguments)]
fn attend_group<T: simd::KvElement>(
    inputs: &AttentionInputs<'_>,
    kv: usize,
    i: usize,
    k: &[T],
    v: &[T],
    keys: &[u32],
    scratch: &mut GroupScratch,
    out: &mut [f32],
) {
    let s = inputs.shape();
    let (d, g, n) = (s.head_dim, s.q_heads / s.kv_heads, keys.len());
    debug_assert!(n > 0, "validated selections keep a key per row");
    scratch.q.clear();
    for h in kv * g..(kv + 1) * g {
        scratch.q.extend_from_slice(inputs.q_row(h, i));
    }
    // Rows of whole vectors, so the softmax runs vectorized over each.
    let ld = n.div_ceil(8) * 8;
    scratch.p.resize(g * ld, 0.0);
    prim::qk_group(&scratch.q, g, k, keys, &mut scratch.p, ld);
    scratch.inv.clear();
    for row in scratch.p.chunks_exact_mut(ld) {
        let (mut max, mut total) = (f32::NEG_INFINITY, 0.0);
        simd::online_softmax_row(row, n, s.scale, &mut max, &mut total);
        scratch.inv.push(1.0 / total);
    }
    out.iter_mut().for_each(|o| *o = 0.0);
    prim::pv_group(&scratch.p, ld, g, v, keys, out);
    for (o, &inv) in out.chunks_exact_mut(d).zip(&scratch.inv) {
        o.iter_mut().for_each(|x| *x *= inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowattn_hal::{ComputeBackend, ScoreMatrix};

    #[test]
    #[cfg_attr(
        miri,
        ignore = "rayon's pool (crossbeam-epoch) fails Stacked Borrows under Miri; runs natively"
    )]
    fn int8_groups_select_like_the_reference_ranking() {
        // Three heads of different logit scales (tiny, moderate, huge) over rows with ties and
        // both ends of the INT8 range, causal before the tail.
        let (rows, cols) = (9, 40);
        let data: Vec<Vec<i8>> = (0..3)
            .map(|h| {
                (0..rows * cols)
                    .map(|i| [127i8, -128, 5, 5, 0, -3, 90][(i * (h + 2) + i / 7) % 7])
                    .collect()
            })
            .collect();
        let heads = data
            .iter()
            .map(|d| ScoreMatrix::causal(ScoreData::I8(d), rows, cols, 12).unwrap())
            .collect();
        let group = GroupScores::new(heads, vec![1e-5, 0.05, 40.0]).unwrap();
        for budget in [
            KeyBudget::Fixed(1),
            KeyBudget::Fixed(13),
            KeyBudget::Ratio {
                ratio: 0.25,
                min_keys: 2,
            },
        ] {
            let want = crate::CpuBackend::new().topk_group(&group, budget).unwrap();
            assert_eq!(topk_group(&group, budget).unwrap(), want, "{budget:?}");
        }
        assert!(topk_group(&group, KeyBudget::Fixed(14)).is_err());
    }
}
