//! The stage costs the planner orders a layer by: a table of launch times and per-key CPU
//! costs, given, or measured on the device (the paper's offline profiling).

use crate::bank::GraphBank;
use crate::error::{Result, SparseAttnError};
use crate::select::Granularity;
use serde::{Deserialize, Serialize};
use shadowattn_hal::{
    AttentionInputs, BudgetRule, ChunkBudget, ComputeBackend, EventKind, GroupScores, HostTensor,
    ScoreData, ScoreMatrix, Selection,
};
use shadowattn_pipeline::{CostModel, PipelineError, Step, UnitWork};
use std::collections::BTreeMap;
use std::time::Instant;

/// Median of a non-empty list.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Costs of the three stages, from the simulator's model or from measurement on the device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostTable {
    /// NPU launch time by fused-head count, ns.
    pub npu_ns: BTreeMap<usize, f64>,
    /// Top-k time per valid key, ns.
    pub topk_ns_per_key: f64,
    /// Fixed top-k time per head, ns.
    pub topk_ns_fixed: f64,
    /// Sparse attention time per selected (row, key) pair, ns.
    pub attention_ns_per_pair: f64,
    /// Fixed sparse attention time per head, ns.
    pub attention_ns_fixed: f64,
}

impl CostTable {
    /// A table where every stage costs the same per unit; useful when nothing is known.
    pub fn uniform(fused: &[usize]) -> Self {
        CostTable {
            npu_ns: fused
                .iter()
                .map(|&f| (f, 1000.0 + 250.0 * f as f64))
                .collect(),
            topk_ns_per_key: 1.0,
            topk_ns_fixed: 0.0,
            attention_ns_per_pair: 4.0,
            attention_ns_fixed: 0.0,
        }
    }

    /// Measures the stage costs on this device (the paper's offline profiling): each fused-head
    /// graph of `bank` is launched `runs` times after a warm-up and its median launch time kept
    /// (the backend's launch events when it reports them — simulated, vendor or measured — else
    /// wall time); top-k and sparse attention of `compute` are timed on `sample` at `ratio` as
    /// `granularity` runs them (query head 0, or the heads of KV group 0 sharing one selection)
    /// under the budget `rule`, medians over `runs`, and divided by the keys examined and the pairs attended per head.
    pub fn measure(
        bank: &mut GraphBank,
        compute: &dyn ComputeBackend,
        sample: AttentionInputs<'_>,
        ratio: f32,
        runs: usize,
        granularity: Granularity,
        rule: BudgetRule,
    ) -> Result<Self> {
        if runs == 0 {
            return Err(SparseAttnError::config("runs", "must be at least 1"));
        }
        let mut npu_ns = BTreeMap::new();
        let fused: Vec<usize> = bank.fused_counts().to_vec();
        for f in fused {
            let graph = bank
                .graphs_mut()
                .iter_mut()
                .find(|((_, n), _)| *n == f)
                .map(|(_, g)| g)
                .ok_or_else(|| {
                    SparseAttnError::config("bank", format!("no graph with {f} fused heads"))
                })?;
            let ins: Vec<HostTensor> = graph
                .graph()
                .input_descs()
                .map(|d| HostTensor::zeros(d.clone()))
                .collect::<shadowattn_hal::Result<_>>()?;
            let mut outs: Vec<HostTensor> = graph
                .graph()
                .output_descs()
                .map(|d| HostTensor::zeros(d.clone()))
                .collect::<shadowattn_hal::Result<_>>()?;
            let mut times = Vec::with_capacity(runs);
            for run in 0..=runs {
                let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
                let mut out_views: Vec<_> = outs.iter_mut().map(|t| t.view_mut()).collect();
                let started = Instant::now();
                let events = graph.execute(&views, &mut out_views)?;
                let wall = started.elapsed().as_nanos() as f64;
                let launched: u64 = events
                    .iter()
                    .filter(|e| e.kind == EventKind::Launch)
                    .map(|e| e.duration_ns)
                    .sum();
                if run > 0 {
                    times.push(if launched > 0 { launched as f64 } else { wall });
                }
            }
            npu_ns.insert(f, median(times));
        }
        let s = sample.shape();
        let group = match granularity {
            Granularity::Group => s.q_heads / s.kv_heads,
            Granularity::Row | Granularity::Block(_) => 1,
        };
        let budget = ChunkBudget {
            ratio,
            min_keys: 1,
            rule,
        };
        let scores = (0..group)
            .map(|h| sample.exact_scores(h))
            .collect::<shadowattn_hal::Result<Vec<_>>>()?;
        let matrices = scores
            .iter()
            .map(|e| ScoreMatrix::for_chunk(ScoreData::F32(e), &s))
            .collect::<shadowattn_hal::Result<Vec<_>>>()?;
        let members = if group > 1 {
            sample.group(0)
        } else {
            sample.head(0)
        };
        let ranked = GroupScores::new(matrices.clone(), vec![s.scale; group])?;
        let select = || -> Result<Selection> {
            Ok(if group > 1 || rule.split.needs_mass() {
                compute.select_group(&ranked, &budget)?
            } else {
                compute.select(matrices[0], &budget)?
            })
        };
        let mut out = vec![0.0; members.output_len()];
        let (mut topk_times, mut attn_times) = (Vec::new(), Vec::new());
        let mut selection = select()?;
        for _ in 0..runs {
            let started = Instant::now();
            selection = select()?;
            topk_times.push(started.elapsed().as_nanos() as f64);
            let started = Instant::now();
            let one = std::slice::from_ref(&selection);
            if group > 1 {
                compute.sparse_attention_grouped(members, one, &mut out)?;
            } else {
                compute.sparse_attention(members, one, &mut out)?;
            }
            attn_times.push(started.elapsed().as_nanos() as f64);
        }
        let keys: usize = group * (0..s.q_len).map(|i| s.valid_keys(i)).sum::<usize>();
        let pairs = group * selection.kept();
        let table = CostTable {
            npu_ns,
            topk_ns_per_key: median(topk_times) / keys.max(1) as f64,
            topk_ns_fixed: 0.0,
            attention_ns_per_pair: median(attn_times) / pairs.max(1) as f64,
            attention_ns_fixed: 0.0,
        };
        table.validate()?;
        Ok(table)
    }

    /// Checks that every figure is a finite, non-negative duration.
    pub fn validate(&self) -> Result<()> {
        let all = self.npu_ns.values().copied().chain([
            self.topk_ns_per_key,
            self.topk_ns_fixed,
            self.attention_ns_per_pair,
            self.attention_ns_fixed,
        ]);
        for v in all {
            if !(v.is_finite() && v >= 0.0) {
                return Err(SparseAttnError::config(
                    "cost table",
                    format!("{v} is not a duration"),
                ));
            }
        }
        Ok(())
    }
}

impl CostModel for CostTable {
    fn launch_ns(&self, fused: usize) -> shadowattn_pipeline::Result<f64> {
        self.npu_ns.get(&fused).copied().ok_or_else(|| {
            PipelineError::Costs(format!(
                "the cost table has no NPU time for {fused} fused heads (has {:?})",
                self.npu_ns.keys().collect::<Vec<_>>()
            ))
        })
    }

    fn step_ns(&self, step: Step, work: UnitWork) -> f64 {
        match step {
            Step::TopK => self.topk_ns_fixed + self.topk_ns_per_key * work.valid_keys as f64,
            Step::Attention => {
                self.attention_ns_fixed + self.attention_ns_per_pair * work.kept_pairs as f64
            }
        }
    }

    fn validate(&self) -> shadowattn_pipeline::Result<()> {
        CostTable::validate(self).map_err(|e| PipelineError::Costs(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_prices_launches_by_fused_count_and_steps_by_work() {
        let mut t = CostTable::uniform(&[1, 2]);
        assert_eq!(t.launch_ns(2).unwrap(), 1500.0);
        assert!(t.launch_ns(4).is_err());
        let work = UnitWork {
            valid_keys: 100,
            kept_pairs: 20,
        };
        assert_eq!(t.step_ns(Step::TopK, work), 100.0);
        assert_eq!(t.step_ns(Step::Attention, work), 80.0);
        t.topk_ns_per_key = f64::NAN;
        assert!(t.validate().is_err());
    }
}
