//! Top-k selection of one head's keys from its pilot scores, per row or per block of rows.

use crate::error::{Result, SparseAttnError};
use shadowattn_hal::{
    BudgetRule, ChunkBudget, ComputeBackend, GroupScores, KeyBudget, ScoreData, ScoreMatrix,
    Selection,
};

/// How top-k groups query rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// Each query row keeps its own top `ceil(r · valid)` keys.
    Row,
    /// Blocks of this many query rows keep the top `ceil(r · valid entries)` of the whole block
    /// (the paper artifact's accuracy simulation); every row keeps at least `min_keys`.
    Block(usize),
    /// The query heads of each GQA group share each row's key set, ranked by the sum of their
    /// softmax probabilities ([`shadowattn_hal::group`]), at the mean of their ratios.
    Group,
}

/// How many keys to keep, and how rows are grouped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectionRule {
    /// Fraction of each row's (or block's) valid keys kept, in (0, 1].
    pub ratio: f32,
    /// Fewest keys a row keeps.
    pub min_keys: usize,
    /// Row or block top-k.
    pub granularity: Granularity,
    /// How the keys are spread over the rows (row and group granularity).
    pub budget: BudgetRule,
}

impl SelectionRule {
    /// The chunk budget of one unit with this rule's ratio.
    pub fn chunk_budget(&self) -> ChunkBudget {
        ChunkBudget {
            ratio: self.ratio,
            min_keys: self.min_keys,
            rule: self.budget,
        }
    }
}

/// The keys one head keeps from `scores` (softmax logits `scores · logit_scale`) under `rule`,
/// each row in ascending key order: ranked on the scores, or on the head's probabilities (a
/// group of one head) when the budget's split reads mass.
pub fn select(
    compute: &dyn ComputeBackend,
    scores: ScoreMatrix<'_>,
    logit_scale: f32,
    rule: SelectionRule,
) -> Result<Selection> {
    let budget = rule.chunk_budget();
    match rule.granularity {
        Granularity::Row | Granularity::Group if rule.budget.split.needs_mass() => {
            Ok(compute
                .select_group(&GroupScores::new(vec![scores], vec![logit_scale])?, &budget)?)
        }
        Granularity::Row | Granularity::Group => Ok(compute.select(scores, &budget)?),
        Granularity::Block(_) if !rule.budget.is_even() => Err(SparseAttnError::config(
            "budget",
            "block top-k spreads a block's keys by its own rule; it takes the even rule only",
        )),
        Granularity::Block(rows) => {
            select_blocks(compute, scores, budget.even_budget(), rule.min_keys, rows)
        }
    }
}

/// Block top-k: each block of `block` rows keeps the best `budget` of its valid entries, then
/// every row is topped up to its own best `min_keys`.
fn select_blocks(
    compute: &dyn ComputeBackend,
    scores: ScoreMatrix<'_>,
    budget: KeyBudget,
    min_keys: usize,
    block: usize,
) -> Result<Selection> {
    if let ScoreData::F32(_) | ScoreData::F16(_) = scores.data() {
        return Err(SparseAttnError::config(
            "granularity",
            "block top-k ranks the pilot's integer scores; these scores are floats",
        ));
    }
    // Each row's own best min(min_keys, valid) keys, for the per-row floor.
    let floor_sel = compute.topk(
        scores,
        KeyBudget::Ratio {
            ratio: f32::MIN_POSITIVE,
            min_keys,
        },
    )?;
    let cols = scores.cols();
    let value = |i: usize, j: usize| -> i32 {
        match scores.data() {
            ScoreData::I32(v) => v[i * cols + j],
            ScoreData::I8(v) => i32::from(v[i * cols + j]),
            ScoreData::F32(_) | ScoreData::F16(_) => unreachable!("refused above"),
        }
    };
    let mut sel = Selection::new();
    for start in (0..scores.rows()).step_by(block) {
        let rows: Vec<usize> = (start..(start + block).min(scores.rows())).collect();
        let mut flat = vec![i32::MIN; rows.len() * cols];
        let mut valid = 0;
        for (r, &i) in rows.iter().enumerate() {
            for j in 0..scores.valid_keys(i) {
                flat[r * cols + j] = value(i, j);
                valid += 1;
            }
        }
        let k = budget.keys_for(start, valid)?;
        let whole = ScoreMatrix::new(ScoreData::I32(&flat), 1, flat.len(), 0, false)?;
        let picked = compute.topk(whole, KeyBudget::Fixed(k))?;
        for (r, &i) in rows.iter().enumerate() {
            let lo = (r * cols) as u32;
            let hi = lo + scores.valid_keys(i) as u32;
            let mut keys: Vec<u32> = picked
                .row(0)
                .iter()
                .filter(|&&x| x >= lo && x < hi)
                .map(|&x| x - lo)
                .collect();
            // Every row keeps at least min_keys: its own best keys.
            let floor = min_keys.min(scores.valid_keys(i));
            for &j in floor_sel.row(i) {
                if keys.len() >= floor {
                    break;
                }
                if !keys.contains(&j) {
                    keys.push(j);
                }
            }
            keys.sort_unstable();
            sel.push_row(&keys);
        }
    }
    Ok(sel)
}
