//! [`RowSplit::Threshold`](super::RowSplit::Threshold) in time linear in the keys, no row sorted:
//! each row's forced keys (its floor) and cap by a cutoff, then the one probability that spends
//! the budget by a two-level radix count over every candidate's f32 bits (non-negative floats
//! order like their bits). It keeps exactly the keys [`super::ChunkBudget::plan`] keeps on
//! [`super::RankedRows`].

use super::{check_weights, inverse, probability, row_total, ChunkBudget};
use crate::compute::scores::{ScoreData, ScoreMatrix, Selection};
use crate::error::{HalError, Result};

/// A key's place in its row's rank order: its probability's bits, then the lower index first.
/// Larger is better.
fn order_key(p_bits: u32, j: u32) -> u64 {
    (u64::from(p_bits) << 32) | u64::from(u32::MAX - j)
}

/// One row's probabilities and where its candidates start and end in rank order.
struct Row {
    /// Offset of the row's probability bits in the flat buffer.
    start: usize,
    /// Valid keys.
    valid: usize,
    /// The ranked keys (the rest are anchors).
    ranked: std::ops::Range<usize>,
    /// Keys at or above this order key are the row's forced keys (its floor); `u64::MAX`
    /// when it has none (no finite probability's key reaches it).
    forced: u64,
    /// Keys below this order key are beyond the row's cap; 0 when no cap applies.
    capped: u64,
}

impl Row {
    /// Whether ranked key `j` of probability bits `p` competes for the budget.
    fn candidate(&self, p: u32, j: usize) -> bool {
        let key = order_key(p, j as u32);
        key < self.forced && key >= self.capped
    }

    fn forced(&self, p: u32, j: usize) -> bool {
        order_key(p, j as u32) >= self.forced
    }
}

/// The order key of the `k`-th best (1-based) key of `bits`' ranked range; for `k = 0`, a key
/// above every key (the bits of finite probabilities never reach it).
fn kth_best(bits: &[u32], ranked: std::ops::Range<usize>, k: usize, scratch: &mut Vec<u64>) -> u64 {
    if k == 0 {
        return u64::MAX;
    }
    if k == 1 {
        // The first maximum: ties go to the lower index.
        let (mut best, mut at) = (0u32, ranked.start);
        for j in ranked.clone() {
            if bits[j] > best {
                (best, at) = (bits[j], j);
            }
        }
        return order_key(best, at as u32);
    }
    scratch.clear();
    scratch.extend(ranked.map(|j| order_key(bits[j], j as u32)));
    let (_, kth, _) = scratch.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
    *kth
}

/// The keys each row of `ranks` keeps under the threshold split of `budget` (validated).
pub(super) fn select(budget: &ChunkBudget, ranks: ScoreMatrix<'_>) -> Result<Selection> {
    if matches!(ranks.data(), ScoreData::I8(_) | ScoreData::I32(_)) {
        return Err(HalError::invalid_argument(
            "ranks",
            "a mass split ranks probabilities (a group ranking, or f32/f16 probabilities), not integer scores",
        ));
    }
    let (bits, rows, extra) = prepare(budget, ranks)?;
    let cut = cutoff(&bits, &rows, extra);
    let mut ties = cut.map_or(0, |c| c.ties);
    let mut sel = Selection::new();
    let mut keys = Vec::new();
    for r in &rows {
        let row_bits = &bits[r.start..r.start + r.valid];
        keys.clear();
        keys.extend(0..r.ranked.start as u32);
        for j in r.ranked.clone() {
            let p = row_bits[j];
            let keep = if r.forced(p, j) {
                true
            } else if !r.candidate(p, j) {
                false
            } else {
                match cut {
                    Some(c) if p > c.bits => true,
                    Some(c) if p == c.bits && ties > 0 => {
                        ties -= 1;
                        true
                    }
                    _ => false,
                }
            };
            if keep {
                keys.push(j as u32);
            }
        }
        keys.extend(r.ranked.end as u32..r.valid as u32);
        sel.push_row(&keys);
    }
    Ok(sel)
}

/// Every row's probability bits (one flat buffer) and bounds, and how many keys beyond the
/// rows' floors the budget spends.
fn prepare(budget: &ChunkBudget, ranks: ScoreMatrix<'_>) -> Result<(Vec<u32>, Vec<Row>, usize)> {
    let anchors = budget.rule.anchors;
    let mut bits: Vec<u32> = Vec::with_capacity(ranks.data().len());
    let mut rows: Vec<Row> = Vec::with_capacity(ranks.rows());
    let mut scratch = Vec::new();
    let mut row = Vec::with_capacity(ranks.cols());
    let (mut even, mut floor) = (0usize, 0usize);
    for i in 0..ranks.rows() {
        let start = bits.len();
        match ranks.row(i) {
            ScoreData::F32(d) => push_bits(i, d, &mut bits)?,
            ScoreData::F16(d) => {
                use half::slice::HalfFloatSliceExt;
                row.resize(d.len(), 0.0);
                d.convert_to_f32_slice(&mut row);
                push_bits(i, &row, &mut bits)?;
            }
            ScoreData::I8(_) | ScoreData::I32(_) => unreachable!("refused by the caller"),
        }
        let n = bits.len() - start;
        let b = budget.bounds(i, n)?;
        even += b.even;
        floor += b.lo;
        let ranked = anchors.ranked(n);
        let row_bits = &bits[start..];
        let (forced, open) = (b.lo - b.anchors, b.hi - b.lo);
        let at = |k: usize, s: &mut Vec<u64>| kth_best(row_bits, ranked.clone(), k, s);
        rows.push(Row {
            start,
            valid: n,
            forced: at(forced, &mut scratch),
            capped: if forced + open < ranked.len() {
                at(forced + open, &mut scratch)
            } else {
                0
            },
            ranked,
        });
    }
    Ok((bits, rows, even.saturating_sub(floor)))
}

/// Appends the probability bits of row `i`'s `values` (checked: finite, non-negative).
fn push_bits(i: usize, values: &[f32], bits: &mut Vec<u32>) -> Result<()> {
    check_weights(i, values.iter().map(|&v| f64::from(v)))?;
    let scale = inverse(row_total(values.iter().map(|&v| f64::from(v))));
    bits.extend(
        values
            .iter()
            .map(|&v| probability(f64::from(v), scale).to_bits()),
    );
    Ok(())
}

/// The probability at which the budget's `extra` keys run out: every candidate above it is
/// kept, and the first `ties` at it (rows in order, keys ascending).
#[derive(Clone, Copy, Debug)]
struct Cutoff {
    bits: u32,
    ties: usize,
}

/// Low bits of a probability's bits the first count drops: it buckets by sign, exponent and 5
/// mantissa bits (16,384 buckets, 64 KiB of counts; 32 buckets per octave, so the one the
/// cutoff falls in holds few candidates).
const HIGH_SHIFT: u32 = 18;

/// The `extra`-th largest candidate's bits (`None` when nothing is spent or no candidate is
/// left): a count by high bits, then a selection among the candidates of its bucket.
fn cutoff(bits: &[u32], rows: &[Row], extra: usize) -> Option<Cutoff> {
    let mut high = vec![0u32; 1 << (32 - HIGH_SHIFT)];
    let mut total = 0usize;
    for r in rows {
        let row_bits = &bits[r.start..r.start + r.valid];
        for j in r.ranked.clone() {
            if r.candidate(row_bits[j], j) {
                high[(row_bits[j] >> HIGH_SHIFT) as usize] += 1;
                total += 1;
            }
        }
    }
    let extra = extra.min(total);
    if extra == 0 {
        return None;
    }
    let (bucket, above) = nth_from_top(&high, extra);
    let mut inside: Vec<u32> = Vec::with_capacity(high[bucket] as usize);
    for r in rows {
        let row_bits = &bits[r.start..r.start + r.valid];
        for j in r.ranked.clone() {
            let p = row_bits[j];
            if (p >> HIGH_SHIFT) as usize == bucket && r.candidate(p, j) {
                inside.push(p);
            }
        }
    }
    let n = extra - above;
    let (_, &mut at, _) = inside.select_nth_unstable_by(n - 1, |a, b| b.cmp(a));
    let strictly_above = inside.iter().filter(|&&p| p > at).count();
    Some(Cutoff {
        bits: at,
        ties: n - strictly_above,
    })
}

/// The bucket holding the `n`-th largest element (1-based) of a histogram, and how many
/// elements lie in the buckets above it.
fn nth_from_top(counts: &[u32], n: usize) -> (usize, usize) {
    let mut above = 0;
    for (b, &c) in counts.iter().enumerate().rev() {
        if above + c as usize >= n {
            return (b, above);
        }
        above += c as usize;
    }
    unreachable!("n is at most the number of elements counted")
}
