//! The compute-kernel contract for CPU/GPU: quantization, causal top-k, sparse and dense attention.
//!
//! # Layouts
//! Q is `[q_heads, q_len, head_dim]`, K and V are `[kv_heads, kv_len, head_dim]`, outputs are
//! `[q_heads, q_len, head_dim]`, all row-major f32. Query head `h` reads KV head
//! `h / (q_heads / kv_heads)` (grouped-query attention). Query row `i` sits at absolute position
//! `q_offset + i`; with a causal mask it sees keys `0..=q_offset + i`.
//!
//! # Top-k selection
//! The k keys with the highest scores; among equal scores, the **lower key index** is kept.
//! A selection row lists its keys in **ascending key order** (which also makes the gather of K
//! and V rows sequential). Every backend must select exactly this set.

pub mod budget;
mod checks;
pub mod group;
mod inputs;
mod scores;

pub use budget::{Anchors, BudgetRule, ChunkBudget, RankedRows, RowSplit};
pub use checks::{
    check_dense_call, check_finite, check_finite_tensor, check_output_len, check_quantize_call,
    check_sparse_call, first_non_finite, non_finite_value,
};
pub use group::GroupScores;
pub use inputs::{
    beyond_f16_value, first_beyond_f16, kv_to_f16, AttentionInputs, AttentionShape, HeadsView,
    QuantizedHeads,
};
pub use scores::{KeyBudget, ScoreData, ScoreMatrix, Selection};

use crate::error::Result;
use serde::{Deserialize, Serialize};

/// What a compute backend computes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeCapabilities {
    /// The type K and V are stored in for attention: `F32`, or `F16` (accumulation stays f32);
    /// attention results are judged with this type's tolerances.
    pub kv_storage: crate::DType,
}

/// Compute kernels on host memory (CPU now, GPU later).
///
/// Object safe, so a kernel backend can be chosen by name at run time.
pub trait ComputeBackend: Send + Sync + std::fmt::Debug {
    /// The backend's registry name.
    fn name(&self) -> &str;

    /// What the backend computes with.
    fn capabilities(&self) -> ComputeCapabilities;

    /// Symmetric INT8 quantization, one scale per head. With `scales = None` each head's scale is
    /// `max|x| / 127` (1.0 for an all-zero head); with given scales, values saturate to ±127.
    fn quantize_heads(&self, x: HeadsView<'_>, scales: Option<&[f32]>) -> Result<QuantizedHeads>;

    /// Top-k keys per query row over the row's causal prefix (see the module docs for ties), each
    /// row in ascending key order.
    fn topk(&self, scores: ScoreMatrix<'_>, budget: KeyBudget) -> Result<Selection>;

    /// Softmax·V over each row's selected keys only (renormalised), one selection per query head.
    /// Writes `[q_heads, q_len, head_dim]` into `out`.
    fn sparse_attention(
        &self,
        inputs: AttentionInputs<'_>,
        selections: &[Selection],
        out: &mut [f32],
    ) -> Result<()>;

    /// Full softmax attention over every valid key. Writes `[q_heads, q_len, head_dim]` into `out`.
    fn dense_attention(&self, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()>;

    /// Top-k keys per query row shared by a GQA group's heads, ranked by the sum of their softmax
    /// probabilities ([`crate::group`] defines the ranking exactly), each row ascending.
    ///
    /// The default computes the ranking on the host and calls [`ComputeBackend::topk`] on it.
    fn topk_group(&self, group: &GroupScores<'_>, budget: KeyBudget) -> Result<Selection> {
        budget.validate()?;
        let ranks = group.ranks();
        self.topk(group.ranks_matrix(&ranks)?, budget)
    }

    /// The keys each row of one unit's rank values keeps under a chunk budget (per-row shares
    /// that may follow the attention, anchors kept: [`budget`]), each row ascending.
    ///
    /// The default calls [`ComputeBackend::topk`] for an even rule and plans on the host
    /// otherwise.
    fn select(&self, ranks: ScoreMatrix<'_>, budget: &ChunkBudget) -> Result<Selection> {
        match budget.as_key_budget() {
            Some(per_row) => self.topk(ranks, per_row),
            None => budget.select(ranks),
        }
    }

    /// [`ComputeBackend::select`] on a GQA group's ranking ([`crate::group`]); a group of one
    /// head ranks by its softmax probabilities.
    ///
    /// The default calls [`ComputeBackend::topk_group`] for an even rule and plans on the
    /// group's ranking on the host otherwise.
    fn select_group(&self, group: &GroupScores<'_>, budget: &ChunkBudget) -> Result<Selection> {
        if let Some(per_row) = budget.as_key_budget() {
            return self.topk_group(group, per_row);
        }
        budget.validate()?;
        let ranks = group.ranks();
        budget.select(group.ranks_matrix(&ranks)?)
    }

    /// Softmax·V where the query heads of each KV head share one selection (`selections` has one
    /// per KV head). Writes `[q_heads, q_len, head_dim]` into `out`.
    ///
    /// The default gives every head its group's selection and calls
    /// [`ComputeBackend::sparse_attention`].
    fn sparse_attention_grouped(
        &self,
        inputs: AttentionInputs<'_>,
        selections: &[Selection],
        out: &mut [f32],
    ) -> Result<()> {
        group::check_grouped_call(&inputs, selections, out)?;
        self.sparse_attention(inputs, &group::per_head(&inputs, selections), out)
    }

    /// Measured profiling events of the calls since the last take, for timelines; empty for
    /// backends that do not record them.
    fn take_events(&self) -> Vec<crate::ProfileEvent> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_clamp_and_reject() {
        let r = KeyBudget::Ratio {
            ratio: 0.2,
            min_keys: 4,
        };
        assert_eq!(r.keys_for(0, 1).unwrap(), 1);
        assert_eq!(r.keys_for(0, 10).unwrap(), 4);
        assert_eq!(r.keys_for(0, 101).unwrap(), 21);
        // The decimal ratio, not its f32 image: 20 % of 2000 keys is 400, 10 % of 1000 is 100.
        let ratio = |ratio| KeyBudget::Ratio { ratio, min_keys: 1 };
        assert_eq!(ratio(0.2).keys_for(0, 2000).unwrap(), 400);
        assert_eq!(ratio(0.2).keys_for(0, 2001).unwrap(), 401);
        assert_eq!(ratio(0.1).keys_for(0, 1000).unwrap(), 100);
        assert_eq!(ratio(0.3).keys_for(0, 10).unwrap(), 3);
        assert_eq!(ratio(1.0).keys_for(0, 7).unwrap(), 7);
        assert!(KeyBudget::Fixed(5).keys_for(3, 4).is_err());
        assert!(KeyBudget::Ratio {
            ratio: 0.0,
            min_keys: 1
        }
        .validate()
        .is_err());
        assert!(KeyBudget::Ratio {
            ratio: f32::NAN,
            min_keys: 1
        }
        .validate()
        .is_err());
        assert!(KeyBudget::Ratio {
            ratio: 1.5,
            min_keys: 1
        }
        .validate()
        .is_err());
        assert!(KeyBudget::Fixed(0).validate().is_err());
    }

    #[test]
    fn shapes_are_validated() {
        let mut s = AttentionShape::causal(4, 2, 8, 16, 32);
        assert_eq!(s.q_offset, 8);
        s.validate().unwrap();
        assert_eq!(s.kv_head_of(3), 1);
        assert_eq!(s.valid_keys(0), 9);
        s.kv_heads = 3;
        assert!(s.validate().is_err());
        let mut s = AttentionShape::causal(4, 2, 8, 16, 32);
        s.q_offset = 9;
        assert!(s.validate().is_err());
        s.q_offset = 0;
        s.scale = f32::NAN;
        assert!(s.validate().is_err());
        // Score matrices beyond the limit (or beyond usize) are refused, not allocated.
        AttentionShape::causal(16, 2, 4096, 4096, 64)
            .validate()
            .unwrap();
        let big = AttentionShape::causal(2, 2, 100_000, 100_000, 64).validate();
        assert!(
            big.unwrap_err().to_string().contains("score elements"),
            "too large"
        );
        assert!(AttentionShape::causal(usize::MAX / 2, 1, 4, 4, 8)
            .validate()
            .is_err());
        assert!(
            AttentionInputs::new(&[0.0; 3], &[], &[], AttentionShape::causal(1, 1, 1, 1, 3))
                .is_err()
        );
    }

    #[test]
    fn selections_outside_the_prefix_are_rejected() {
        let shape = AttentionShape::causal(1, 1, 2, 2, 4);
        let mut s = Selection::new();
        s.push_row(&[0]);
        s.push_row(&[1, 0]);
        s.validate_for(0, &shape).unwrap();
        let mut bad = Selection::new();
        bad.push_row(&[1]);
        bad.push_row(&[0]);
        assert!(bad
            .validate_for(0, &shape)
            .unwrap_err()
            .to_string()
            .contains("outside"));
        let mut dup = Selection::new();
        dup.push_row(&[0]);
        dup.push_row(&[1, 1]);
        assert!(dup
            .validate_for(0, &shape)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }
}
