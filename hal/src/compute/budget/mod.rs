//! How a selecting unit's keys are spread over the query rows of one chunk: the same share of
//! every row, or per-row shares that follow the attention (top-p, or one probability
//! threshold), with the first keys (attention sinks) and the most recent ones kept outside the
//! ranking.
//!
//! # The rule, exactly
//! For a unit (a query head, or a GQA group sharing its keys) with mean ratio `r` over rows with
//! `n_i` valid keys:
//! - row `i`'s *even count* is `e_i` = [`KeyBudget::Ratio`]`{ r, min_keys }.keys_for(i, n_i)`,
//!   and the unit's budget is `B = Σ e_i` — the pairs today's rule keeps, so a ratio costs the
//!   same under every split;
//! - its *anchors* are keys `0..min(sinks, n_i)` and the last `recent` of its prefix: kept
//!   without ranking, counted in its keys;
//! - it keeps at least `lo_i = min(n_i, max(anchors, ⌈floor · r · n_i⌉, min(min_keys, n_i)))`
//!   and at most `hi_i = max(lo_i, min(n_i, ⌈cap · r · n_i⌉))` keys;
//! - [`RowSplit::Even`]: row `i` keeps `clamp(e_i, lo_i, hi_i)` keys;
//! - [`RowSplit::TopP`] and [`RowSplit::Threshold`]: rows keep `lo_i` keys, then the unit's
//!   `clamp(B, Σ lo_i, Σ hi_i) − Σ lo_i` remaining keys go, one at a time, to the row whose next
//!   ranked key has the highest *priority*: under top-p, the row's probability not yet kept
//!   (the sum of its remaining ranked keys, added from the last; so every row stops at one
//!   common share of its mass, the top-p rule with the `p` that spends the budget exactly);
//!   under threshold, the key's own probability (every row keeps
//!   the keys above one common probability: the most mass the budget can keep). Ties go to the
//!   lower row, then the earlier key.
//!
//! Ranked keys are ordered by value, ties to the lower key index (the [`crate::compute`] rule).
//! A row's probabilities are its rank values over its valid prefix divided by their sum, rounded
//! to f32: the
//! mass splits need rank values that are probabilities or proportional to them (a group
//! ranking, [`crate::GroupScores`], or f32/f16 probabilities), never raw integer scores.
//! The unit keeps [`ChunkBudget::kept_pairs`] pairs, known before any score is seen.

mod threshold;

use super::scores::{KeyBudget, ScoreData, ScoreMatrix, Selection};
use crate::error::{HalError, Result};
use serde::{Deserialize, Serialize};

/// How a unit's keys are spread over its rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowSplit {
    /// Every row keeps the same share of its valid keys.
    #[default]
    Even,
    /// Every row keeps its best keys up to one common share of its probability mass.
    TopP,
    /// Every row keeps the keys above one common probability.
    Threshold,
}

impl RowSplit {
    /// Whether the split reads probabilities from the rank values.
    pub fn needs_mass(self) -> bool {
        !matches!(self, RowSplit::Even)
    }
}

/// Keys every row keeps without ranking: the first `sinks` and the last `recent` of its
/// valid prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchors {
    /// Keys `0..sinks` (attention sinks).
    pub sinks: usize,
    /// The most recent keys of the row's prefix (a local window).
    pub recent: usize,
}

impl Anchors {
    /// No anchors.
    pub const NONE: Anchors = Anchors {
        sinks: 0,
        recent: 0,
    };

    /// The ranked keys of a row with `valid` keys: `sink_end..recent_start`; the anchors are
    /// the rest of the prefix.
    pub fn ranked(&self, valid: usize) -> std::ops::Range<usize> {
        let sink_end = self.sinks.min(valid);
        let recent_start = valid.saturating_sub(self.recent).max(sink_end);
        sink_end..recent_start
    }

    /// How many of a row's `valid` keys are anchors.
    pub fn count(&self, valid: usize) -> usize {
        valid - self.ranked(valid).len()
    }
}

/// How a unit's budget is spread over its rows: the split, the anchors, and each row's floor
/// and cap as multiples of its even share.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetRule {
    /// How the budget follows the attention.
    pub split: RowSplit,
    /// Keys kept outside the ranking.
    #[serde(default)]
    pub anchors: Anchors,
    /// A row keeps at least `⌈floor · r · n⌉` keys; in [0, 1].
    #[serde(default)]
    pub floor: f32,
    /// A row keeps at most `⌈cap · r · n⌉` keys; at least 1, `None` for no cap.
    #[serde(default)]
    pub cap: Option<f32>,
}

/// The even rule: what a calibration written before rules were recorded was allocated for.
impl Default for BudgetRule {
    fn default() -> Self {
        Self::EVEN
    }
}

impl BudgetRule {
    /// The same share of every row, no anchors: the paper's rule.
    pub const EVEN: BudgetRule = BudgetRule {
        split: RowSplit::Even,
        anchors: Anchors::NONE,
        floor: 0.0,
        cap: None,
    };

    /// The rule every entry point uses unless told otherwise: the best of the combinations
    /// measured on SmolLM2-135M (README, "Budgets that follow the attention"): one probability
    /// threshold per unit and chunk, every row keeping at least half its even share.
    pub const MEASURED_BEST: BudgetRule = BudgetRule {
        split: RowSplit::Threshold,
        anchors: Anchors::NONE,
        floor: 0.5,
        cap: None,
    };

    /// Checks the rule's own parameters.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.floor) {
            return Err(HalError::invalid_argument(
                "floor",
                format!(
                    "a row's floor is a fraction of its even share in [0, 1], got {}",
                    self.floor
                ),
            ));
        }
        if let Some(cap) = self.cap {
            if !(cap.is_finite() && cap >= 1.0) {
                return Err(HalError::invalid_argument(
                    "cap",
                    format!("a row's cap is a multiple of its even share, at least 1, got {cap}"),
                ));
            }
        }
        Ok(())
    }

    /// Whether this is today's per-row rule ([`KeyBudget::Ratio`] alone decides every row).
    pub fn is_even(&self) -> bool {
        self.split == RowSplit::Even && self.anchors == Anchors::NONE
    }
}

/// One unit's budget in one chunk: its mean ratio, the fewest keys a row keeps, and the rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChunkBudget {
    /// Mean fraction of the valid (row, key) pairs kept, in (0, 1].
    pub ratio: f32,
    /// Fewest keys a row keeps.
    pub min_keys: usize,
    /// How the keys are spread over the rows.
    pub rule: BudgetRule,
}

/// A row's bounds under a [`ChunkBudget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowBounds {
    /// Its even count `e`.
    pub even: usize,
    /// Its anchors.
    pub anchors: usize,
    /// Fewest keys it keeps (anchors included).
    pub lo: usize,
    /// Most keys it keeps.
    pub hi: usize,
}

impl ChunkBudget {
    /// Checks the ratio and the rule.
    pub fn validate(&self) -> Result<()> {
        self.even_budget().validate()?;
        self.rule.validate()
    }

    /// The per-row rule the split starts from.
    pub fn even_budget(&self) -> KeyBudget {
        KeyBudget::Ratio {
            ratio: self.ratio,
            min_keys: self.min_keys,
        }
    }

    /// The budget as a per-row [`KeyBudget`] when the rule is [`BudgetRule::is_even`].
    pub fn as_key_budget(&self) -> Option<KeyBudget> {
        self.rule.is_even().then(|| self.even_budget())
    }

    /// The bounds of row `row` with `valid` keys.
    pub fn bounds(&self, row: usize, valid: usize) -> Result<RowBounds> {
        let even = self.even_budget().keys_for(row, valid)?;
        // As `keys_for`: the decimal factor and ratio, not their f32 images (each within half an
        // ulp, their product within one), so half of 20 % of 50 keys is 5.
        let exact = 1.0 - f64::from(f32::EPSILON);
        let share = |factor: f32| -> usize {
            let k = (f64::from(factor) * f64::from(self.ratio) * valid as f64 * exact).ceil();
            if k >= valid as f64 {
                valid
            } else {
                k as usize
            }
        };
        let anchors = self.rule.anchors.count(valid);
        let floor = if self.rule.floor > 0.0 {
            share(self.rule.floor)
        } else {
            0
        };
        let lo = anchors.max(floor).max(self.min_keys.min(valid)).min(valid);
        let cap = self.rule.cap.map_or(valid, share);
        Ok(RowBounds {
            even,
            anchors,
            lo,
            hi: cap.min(valid).max(lo),
        })
    }

    /// The pairs the unit keeps over rows with these valid key counts: known before the scores.
    pub fn kept_pairs(&self, valid: impl IntoIterator<Item = usize>) -> Result<u64> {
        let (mut even, mut lo, mut hi, mut clamped) = (0u64, 0u64, 0u64, 0u64);
        for (i, n) in valid.into_iter().enumerate() {
            let b = self.bounds(i, n)?;
            even += b.even as u64;
            lo += b.lo as u64;
            hi += b.hi as u64;
            clamped += b.even.clamp(b.lo, b.hi) as u64;
        }
        Ok(match self.rule.split {
            RowSplit::Even => clamped,
            RowSplit::TopP | RowSplit::Threshold => even.clamp(lo, hi),
        })
    }

    /// The keys each row of `ranks` keeps, each row ascending: see the module docs.
    pub fn select(&self, ranks: ScoreMatrix<'_>) -> Result<Selection> {
        if self.rule.split == RowSplit::Threshold {
            self.validate()?;
            return threshold::select(self, ranks);
        }
        let rows = RankedRows::new(ranks, self.rule.anchors, self.rule.split.needs_mass())?;
        let kept = self.plan(&rows)?;
        Ok(rows.selection(&kept))
    }

    /// How many keys each row of `rows` keeps (anchors included).
    pub fn plan(&self, rows: &RankedRows) -> Result<Vec<usize>> {
        self.validate()?;
        let bounds = rows
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| self.bounds(i, r.valid))
            .collect::<Result<Vec<_>>>()?;
        if rows.rows.iter().any(|r| r.anchors != self.rule.anchors) {
            return Err(HalError::invalid_argument(
                "ranked rows",
                "ranked with other anchors than the budget's",
            ));
        }
        match self.rule.split {
            RowSplit::Even => Ok(bounds.iter().map(|b| b.even.clamp(b.lo, b.hi)).collect()),
            split @ (RowSplit::TopP | RowSplit::Threshold) => {
                if rows.rows.iter().any(|r| r.mass.is_none()) {
                    return Err(HalError::invalid_argument(
                        "ranked rows",
                        "a mass split needs the rows' probabilities",
                    ));
                }
                Ok(spend(rows, &bounds, split))
            }
        }
    }
}

/// The mass splits: every row at its floor, then the remaining budget to the highest
/// priorities.
fn spend(rows: &RankedRows, bounds: &[RowBounds], split: RowSplit) -> Vec<usize> {
    let budget: usize = bounds.iter().map(|b| b.even).sum();
    let floor: usize = bounds.iter().map(|b| b.lo).sum();
    let mut kept: Vec<usize> = bounds.iter().map(|b| b.lo).collect();
    // (priority, row, position among the row's ranked keys)
    let mut candidates: Vec<(f64, u32, u32)> = Vec::new();
    for (i, (row, b)) in rows.rows.iter().zip(bounds).enumerate() {
        let mass = row.mass.as_ref().expect("checked by plan");
        for t in b.lo - b.anchors..b.hi - b.anchors {
            let priority = match split {
                RowSplit::TopP => mass.tail[t],
                _ => mass.each[t],
            };
            candidates.push((priority, i as u32, t as u32));
        }
    }
    let extra = budget.saturating_sub(floor).min(candidates.len());
    if extra == 0 {
        return kept;
    }
    let order = |a: &(f64, u32, u32), b: &(f64, u32, u32)| {
        b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
    };
    if extra < candidates.len() {
        candidates.select_nth_unstable_by(extra - 1, order);
    }
    for &(_, i, _) in &candidates[..extra] {
        kept[i as usize] += 1;
    }
    kept
}

/// A key's probability: its value times its row's [`row_scale`], rounded to f32 (so both
/// selection paths rank the same numbers), never −0.
fn probability(value: f64, scale: f64) -> f32 {
    (value * scale) as f32 + 0.0
}

/// `1 / Σ values` of row `i` (0 for an all-zero row), after checking every value is a finite,
/// non-negative probability weight.
fn row_scale(i: usize, values: &[f64]) -> Result<f64> {
    check_weights(i, values.iter().copied())?;
    Ok(inverse(row_total(values.iter().copied())))
}

/// Checks that every value of row `i` is a finite, non-negative probability weight.
fn check_weights(i: usize, values: impl Iterator<Item = f64>) -> Result<()> {
    for (j, v) in values.enumerate() {
        if !(v.is_finite() && v >= 0.0) {
            return Err(HalError::invalid_value(
                "ranks",
                format!(
                    "query row {i}, key {j} is {v}; a mass split needs non-negative probabilities"
                ),
            ));
        }
    }
    Ok(())
}

/// A row's total in f64, summed in four interleaved lanes (so it vectorizes); both selection
/// paths sum the same way.
fn row_total(values: impl Iterator<Item = f64>) -> f64 {
    let mut lanes = [0.0f64; 4];
    for (k, v) in values.enumerate() {
        lanes[k % 4] += v;
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

/// `1 / total`, or 0 for a row without mass.
fn inverse(total: f64) -> f64 {
    if total > 0.0 {
        1.0 / total
    } else {
        0.0
    }
}

/// One row's ranked keys in rank order, with their probabilities when a split needs them.
#[derive(Clone, Debug)]
struct RankedRow {
    valid: usize,
    anchors: Anchors,
    /// Ranked keys, best first (value descending, ties to the lower index).
    order: Vec<u32>,
    /// The probabilities of the keys of `order`, when read.
    mass: Option<RowMass>,
    /// The probability of the anchors together.
    anchor_mass: f64,
}

/// A row's probabilities in rank order.
#[derive(Clone, Debug)]
struct RowMass {
    /// Each ranked key's probability, best first.
    each: Vec<f64>,
    /// `tail[t]`: the probability of ranked keys `t..` together, summed from the last (so a
    /// tail of zeros is exactly 0); one longer than `each`.
    tail: Vec<f64>,
}

impl RowMass {
    fn new(each: Vec<f64>) -> Self {
        let mut tail = vec![0.0; each.len() + 1];
        for t in (0..each.len()).rev() {
            tail[t] = tail[t + 1] + each[t];
        }
        RowMass { each, tail }
    }
}

/// The rows of one unit's ranking, each row's ranked keys sorted once, so budgets can be
/// planned on them at any ratio.
#[derive(Clone, Debug)]
pub struct RankedRows {
    rows: Vec<RankedRow>,
}

impl RankedRows {
    /// Sorts every row's ranked keys of `ranks` (anchors apart) and, with `mass`, reads each
    /// key's probability: its value over the row's total. NaN is an error; so is, with `mass`,
    /// an integer score or a negative or non-finite value.
    pub fn new(ranks: ScoreMatrix<'_>, anchors: Anchors, mass: bool) -> Result<Self> {
        if mass && matches!(ranks.data(), ScoreData::I8(_) | ScoreData::I32(_)) {
            return Err(HalError::invalid_argument(
                "ranks",
                "a mass split ranks probabilities (a group ranking, or f32/f16 probabilities), not integer scores",
            ));
        }
        let mut rows = Vec::with_capacity(ranks.rows());
        let mut values = Vec::with_capacity(ranks.cols());
        for i in 0..ranks.rows() {
            values.clear();
            match ranks.ordered_row(i)? {
                ScoreData::I32(d) => values.extend(d.iter().map(|&v| f64::from(v))),
                ScoreData::I8(d) => values.extend(d.iter().map(|&v| f64::from(v))),
                ScoreData::F32(d) => values.extend(d.iter().map(|&v| f64::from(v))),
                ScoreData::F16(d) => values.extend(d.iter().map(|&v| f64::from(v))),
            }
            rows.push(RankedRow::new(i, &values, anchors, mass)?);
        }
        Ok(RankedRows { rows })
    }

    /// [`RankedRows::new`] on rows of f64 values, each row its valid prefix.
    pub fn from_rows<'r>(
        rows: impl IntoIterator<Item = &'r [f64]>,
        anchors: Anchors,
        mass: bool,
    ) -> Result<Self> {
        let rows = rows
            .into_iter()
            .enumerate()
            .map(|(i, values)| {
                if let Some(j) = values.iter().position(|v| v.is_nan()) {
                    return Err(HalError::invalid_value(
                        "scores",
                        format!("query row {i}, key {j} is NaN; NaN has no order"),
                    ));
                }
                RankedRow::new(i, values, anchors, mass)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RankedRows { rows })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// The probability row `i` keeps with `kept` keys (its anchors and its best ranked keys);
    /// `None` when the rows were ranked without their probabilities.
    pub fn kept_mass(&self, i: usize, kept: usize) -> Option<f64> {
        let row = &self.rows[i];
        let mass = row.mass.as_ref()?;
        let ranked = kept
            .saturating_sub(row.anchors.count(row.valid))
            .min(mass.each.len());
        Some(row.anchor_mass + (mass.tail[0] - mass.tail[ranked]))
    }

    /// The selection of `kept[i]` keys per row: the anchors and the best ranked keys, each
    /// row ascending.
    pub fn selection(&self, kept: &[usize]) -> Selection {
        let mut sel = Selection::new();
        let mut keys = Vec::new();
        for (row, &k) in self.rows.iter().zip(kept) {
            let ranked = row.anchors.ranked(row.valid);
            keys.clear();
            keys.extend(0..ranked.start as u32);
            keys.extend(ranked.end as u32..row.valid as u32);
            let take = k.saturating_sub(keys.len()).min(row.order.len());
            keys.extend_from_slice(&row.order[..take]);
            keys.sort_unstable();
            sel.push_row(&keys);
        }
        sel
    }
}

impl RankedRow {
    fn new(i: usize, values: &[f64], anchors: Anchors, mass: bool) -> Result<Self> {
        let valid = values.len();
        let ranked = anchors.ranked(valid);
        let mut order: Vec<u32> = (ranked.start as u32..ranked.end as u32).collect();
        if !mass {
            order.sort_unstable_by(|&a, &b| {
                values[b as usize]
                    .total_cmp(&values[a as usize])
                    .then(a.cmp(&b))
            });
            return Ok(RankedRow {
                valid,
                anchors,
                order,
                mass: None,
                anchor_mass: 0.0,
            });
        }
        let scale = row_scale(i, values)?;
        let p: Vec<f32> = values.iter().map(|&v| probability(v, scale)).collect();
        order.sort_unstable_by(|&a, &b| p[b as usize].total_cmp(&p[a as usize]).then(a.cmp(&b)));
        let each: Vec<f64> = order.iter().map(|&j| f64::from(p[j as usize])).collect();
        let anchor_mass = p[..ranked.start]
            .iter()
            .chain(&p[ranked.end..])
            .map(|&x| f64::from(x))
            .sum();
        Ok(RankedRow {
            valid,
            anchors,
            order,
            mass: Some(RowMass::new(each)),
            anchor_mass,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probability-like rank values `[rows, cols]` (0 beyond each row's causal prefix), some
    /// rows sharp, some flat, with exact ties.
    fn ranks(rows: usize, cols: usize, q_offset: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let mut v = vec![0.0; rows * cols];
        for i in 0..rows {
            let sharp = 1.0 + 12.0 * (i % 3) as f32;
            for j in 0..(q_offset + i + 1).min(cols) {
                // Quantized so that ties occur.
                let x = (next() * 16.0).floor() / 16.0;
                v[i * cols + j] = (sharp * x).exp();
            }
        }
        v
    }

    fn rules() -> Vec<BudgetRule> {
        let mut out = Vec::new();
        for split in [RowSplit::Even, RowSplit::TopP, RowSplit::Threshold] {
            for anchors in [
                Anchors::NONE,
                Anchors {
                    sinks: 2,
                    recent: 0,
                },
                Anchors {
                    sinks: 1,
                    recent: 5,
                },
            ] {
                for (floor, cap) in [(0.0, None), (0.5, Some(2.0)), (1.0, Some(1.0))] {
                    out.push(BudgetRule {
                        split,
                        anchors,
                        floor,
                        cap,
                    });
                }
            }
        }
        out
    }

    /// Row `i`'s probabilities over its valid prefix.
    fn probs(m: &ScoreMatrix<'_>, i: usize) -> Vec<f64> {
        let ScoreData::F32(d) = m.row(i) else {
            panic!("f32 ranks")
        };
        let total: f64 = d.iter().map(|&x| f64::from(x)).sum();
        d.iter()
            .map(|&x| f64::from(probability(f64::from(x), 1.0 / total)))
            .collect()
    }

    /// The brute-force plan: every row at its floor, then one key at a time to the row of the
    /// highest priority (ties to the lower row), by the module docs' definitions.
    fn greedy(b: &ChunkBudget, m: &ScoreMatrix<'_>) -> Vec<usize> {
        let bounds: Vec<RowBounds> = (0..m.rows())
            .map(|i| b.bounds(i, m.valid_keys(i)).unwrap())
            .collect();
        let mut kept: Vec<usize> = bounds.iter().map(|x| x.lo).collect();
        let budget: usize = bounds.iter().map(|x| x.even).sum();
        let sorted: Vec<Vec<(f64, usize)>> = (0..m.rows())
            .map(|i| {
                let p = probs(m, i);
                let mut r: Vec<(f64, usize)> =
                    b.rule.anchors.ranked(p.len()).map(|j| (p[j], j)).collect();
                r.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
                r
            })
            .collect();
        let priority = |i: usize, k: usize| -> f64 {
            let t = k - bounds[i].anchors;
            match b.rule.split {
                RowSplit::Threshold => sorted[i][t].0,
                _ => sorted[i][t..].iter().rev().map(|x| x.0).sum::<f64>(),
            }
        };
        while kept.iter().sum::<usize>() < budget {
            let best = (0..m.rows())
                .filter(|&i| kept[i] < bounds[i].hi)
                .map(|i| (priority(i, kept[i]), i))
                .fold(None, |acc: Option<(f64, usize)>, x| match acc {
                    Some(a) if a.0 >= x.0 => Some(a),
                    _ => Some(x),
                });
            let Some((_, i)) = best else { break };
            kept[i] += 1;
        }
        kept
    }

    #[test]
    #[cfg_attr(miri, ignore = "safe arithmetic only, and minutes under Miri")]
    fn every_rule_keeps_its_pairs_its_bounds_and_its_anchors() {
        for (rows, cols, q_offset, causal) in
            [(9, 9, 0, true), (5, 40, 35, true), (7, 30, 0, false)]
        {
            let v = ranks(rows, cols, q_offset, (rows * cols) as u64);
            let m = ScoreMatrix::new(ScoreData::F32(&v), rows, cols, q_offset, causal).unwrap();
            for rule in rules() {
                for (ratio, min_keys) in [(0.1, 1), (0.3, 3), (1.0, 1)] {
                    let b = ChunkBudget {
                        ratio,
                        min_keys,
                        rule,
                    };
                    let sel = b.select(m).unwrap();
                    let what = format!("{rule:?} ratio {ratio} min {min_keys} {rows}x{cols}");
                    let valid = (0..rows).map(|i| m.valid_keys(i));
                    assert_eq!(sel.kept() as u64, b.kept_pairs(valid).unwrap(), "{what}");
                    for i in 0..rows {
                        let n = m.valid_keys(i);
                        let bounds = b.bounds(i, n).unwrap();
                        let row = sel.row(i);
                        assert!(row.windows(2).all(|w| w[0] < w[1]), "{what}: ascending");
                        assert!(row.iter().all(|&j| (j as usize) < n), "{what}: in prefix");
                        assert!(
                            (bounds.lo..=bounds.hi).contains(&row.len()),
                            "{what} row {i}: {} keys outside {bounds:?}",
                            row.len()
                        );
                        let ranked = rule.anchors.ranked(n);
                        for j in (0..n).filter(|j| !ranked.contains(j)) {
                            assert!(row.contains(&(j as u32)), "{what} row {i}: anchor {j}");
                        }
                        // The ranked keys kept are the row's best, ties to the lower index.
                        let p = probs(&m, i);
                        let worst_kept = row
                            .iter()
                            .map(|&j| j as usize)
                            .filter(|j| ranked.contains(j))
                            .map(|j| (p[j], j))
                            .min_by(|x, y| x.0.total_cmp(&y.0).then(y.1.cmp(&x.1)));
                        if let Some((pk, jk)) = worst_kept {
                            for j in ranked.clone().filter(|&j| !row.contains(&(j as u32))) {
                                assert!(
                                    p[j] < pk || (p[j] == pk && j > jk),
                                    "{what} row {i}: dropped {j} over kept {jk}"
                                );
                            }
                        }
                    }
                    // The threshold split's linear path keeps what the plan on sorted rows
                    // keeps (the plan the mass curves are measured with).
                    let rows_sorted = RankedRows::new(m, rule.anchors, true).unwrap();
                    let planned = rows_sorted.selection(&b.plan(&rows_sorted).unwrap());
                    assert_eq!(planned, sel, "{what}: the plan on sorted rows");
                    if rule.split != RowSplit::Even {
                        let want = greedy(&b, &m);
                        let got: Vec<usize> = (0..rows).map(|i| sel.row(i).len()).collect();
                        assert_eq!(got, want, "{what}: the brute-force plan");
                    }
                }
            }
        }
    }

    #[test]
    fn a_rows_bounds_are_its_anchors_floor_min_keys_and_cap() {
        let rule = |anchors, floor, cap| BudgetRule {
            split: RowSplit::Threshold,
            anchors,
            floor,
            cap,
        };
        let b = |ratio, min_keys, rule| ChunkBudget {
            ratio,
            min_keys,
            rule,
        };
        let at = |budget: ChunkBudget, n| {
            let x = budget.bounds(0, n).unwrap();
            (x.even, x.anchors, x.lo, x.hi)
        };
        let none = Anchors::NONE;
        let some = Anchors {
            sinks: 2,
            recent: 5,
        };
        // 20 % of 50 keys: even 10; floor ⌈0.5·10⌉ = 5, cap ⌈2·10⌉ = 20.
        assert_eq!(
            at(b(0.2, 3, rule(none, 0.5, Some(2.0))), 50),
            (10, 0, 5, 20)
        );
        assert_eq!(at(b(0.2, 3, rule(none, 0.0, None)), 50), (10, 0, 3, 50));
        assert_eq!(
            at(b(0.2, 1, rule(none, 0.3, Some(1.5))), 50),
            (10, 0, 3, 15)
        );
        // Anchors raise the floor; the cap never falls below it.
        assert_eq!(
            at(b(0.2, 3, rule(some, 0.5, Some(1.0))), 50),
            (10, 7, 7, 10)
        );
        assert_eq!(at(b(0.1, 1, rule(some, 0.0, Some(1.0))), 50), (5, 7, 7, 7));
        // Short rows: everything is capped at the row's keys.
        assert_eq!(at(b(1.0, 3, rule(some, 1.0, Some(4.0))), 6), (6, 6, 6, 6));
        assert_eq!(at(b(0.5, 5, rule(none, 0.0, Some(3.0))), 4), (4, 0, 4, 4));
    }

    #[test]
    fn the_even_rule_without_anchors_is_the_per_row_ratio() {
        let v = ranks(12, 12, 0, 7);
        let m = ScoreMatrix::causal(ScoreData::F32(&v), 12, 12, 0).unwrap();
        let b = ChunkBudget {
            ratio: 0.3,
            min_keys: 2,
            rule: BudgetRule::EVEN,
        };
        assert_eq!(b.as_key_budget(), Some(b.even_budget()));
        let sel = b.select(m).unwrap();
        for i in 0..12 {
            let k = b.even_budget().keys_for(i, i + 1).unwrap();
            assert_eq!(sel.row(i).len(), k);
        }
        let anchored = ChunkBudget {
            rule: BudgetRule {
                anchors: Anchors {
                    sinks: 1,
                    recent: 0,
                },
                ..BudgetRule::EVEN
            },
            ..b
        };
        assert_eq!(anchored.as_key_budget(), None);
    }

    #[test]
    fn mass_splits_follow_the_attention() {
        // Row 0 puts all its mass on one key, row 1 spreads it evenly: at the same budget the
        // threshold and top-p splits give row 1 the keys row 0 does not need.
        let cols = 10;
        let mut v = vec![1e-6f32; 2 * cols];
        v[3] = 1.0;
        for x in &mut v[cols..] {
            *x = 1.0;
        }
        let m = ScoreMatrix::new(ScoreData::F32(&v), 2, cols, 0, false).unwrap();
        for split in [RowSplit::TopP, RowSplit::Threshold] {
            let b = ChunkBudget {
                ratio: 0.5,
                min_keys: 1,
                rule: BudgetRule {
                    split,
                    ..BudgetRule::EVEN
                },
            };
            let sel = b.select(m).unwrap();
            assert_eq!(sel.row(0), &[3], "{split:?}");
            assert_eq!(sel.row(1).len(), 9, "{split:?}");
        }
    }

    #[test]
    fn kept_mass_is_the_anchors_and_the_best_ranked_keys() {
        // Row 0: 4 keys of mass 0.1, 0.4, 0.2, 0.3; key 0 a sink.
        let v = [1.0f32, 4.0, 2.0, 3.0];
        let m = ScoreMatrix::new(ScoreData::F32(&v), 1, 4, 0, false).unwrap();
        let sink = Anchors {
            sinks: 1,
            recent: 0,
        };
        let rows = RankedRows::new(m, sink, true).unwrap();
        assert_eq!(rows.rows(), 1);
        let mass = |k| rows.kept_mass(0, k).unwrap();
        assert!((mass(1) - 0.1).abs() < 1e-7);
        assert!((mass(2) - 0.5).abs() < 1e-7);
        assert!((mass(3) - 0.8).abs() < 1e-7);
        assert!((mass(4) - 1.0).abs() < 1e-7);
        assert_eq!(rows.selection(&[2]).row(0), &[0, 1]);
        let unweighed = RankedRows::new(m, sink, false).unwrap();
        assert_eq!(unweighed.kept_mass(0, 2), None);
    }

    #[test]
    fn zero_weights_rank_last_and_a_row_without_mass_keeps_its_floor() {
        // −0 is a zero weight, not a large one; an all-zero row has no probabilities to spend
        // the budget on, so the other row takes it.
        let cols = 6;
        let mut v = vec![-0.0f32, 0.5, -0.0, 0.25, 0.0, 0.25];
        v.extend([0.0f32; 6]);
        let m = ScoreMatrix::new(ScoreData::F32(&v), 2, cols, 0, false).unwrap();
        for split in [RowSplit::Threshold, RowSplit::TopP] {
            // Two keys a row: row 0 keeps its three weighted keys, row 1 its floor (key 0).
            let b = ChunkBudget {
                ratio: 0.3,
                min_keys: 1,
                rule: BudgetRule {
                    split,
                    ..BudgetRule::EVEN
                },
            };
            let sel = b.select(m).unwrap();
            assert_eq!(sel.kept(), 4, "{split:?}");
            assert_eq!(sel.row(0), &[1, 3, 5], "{split:?}");
            assert_eq!(sel.row(1), &[0], "{split:?}");
            // Past the weighted keys the zeros go by row, then key.
            let wide = ChunkBudget { ratio: 0.5, ..b };
            let sel = wide.select(m).unwrap();
            assert_eq!(sel.row(0), &[0, 1, 2, 3, 5], "{split:?}");
            assert_eq!(sel.row(1), &[0], "{split:?}");
        }
    }

    #[test]
    fn bad_rules_and_ranks_are_refused_by_name() {
        let v = [1i8, 2, 3, 4];
        let m = ScoreMatrix::new(ScoreData::I8(&v), 1, 4, 0, false).unwrap();
        let mass = ChunkBudget {
            ratio: 0.5,
            min_keys: 1,
            rule: BudgetRule {
                split: RowSplit::Threshold,
                ..BudgetRule::EVEN
            },
        };
        let e = mass.select(m).unwrap_err().to_string();
        assert!(e.contains("integer"), "{e}");
        let neg = [0.5f32, -0.1];
        let m = ScoreMatrix::new(ScoreData::F32(&neg), 1, 2, 0, false).unwrap();
        let e = mass.select(m).unwrap_err().to_string();
        assert!(e.contains("key 1"), "{e}");
        // The even split ranks integer scores: anchors need no probabilities.
        let anchored = ChunkBudget {
            rule: BudgetRule {
                anchors: Anchors {
                    sinks: 1,
                    recent: 1,
                },
                ..BudgetRule::EVEN
            },
            ..mass
        };
        let m = ScoreMatrix::new(ScoreData::I8(&v), 1, 4, 0, false).unwrap();
        assert_eq!(anchored.select(m).unwrap().row(0), &[0, 3]);
        let three = ChunkBudget {
            ratio: 0.75,
            ..anchored
        };
        assert_eq!(three.select(m).unwrap().row(0), &[0, 2, 3]);
        for (floor, cap, what) in [(1.5, None, "floor"), (0.0, Some(0.5), "cap")] {
            let b = ChunkBudget {
                rule: BudgetRule {
                    floor,
                    cap,
                    ..BudgetRule::EVEN
                },
                ..mass
            };
            let e = b.validate().unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
        let b = ChunkBudget { ratio: 0.0, ..mass };
        assert!(b.validate().is_err());
    }
}
