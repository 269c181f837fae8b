//! The simulator's prices for a layer's pipeline: pilot launches from the tile-level cost model
//! of the SoC's NPU, top-k and sparse attention from the model of one of its CPU cores. The
//! schedule itself is `shadowattn-pipeline`'s, the same one the core plans with.

use crate::cost::graph_cost;
use crate::cpu_model::{attention_ns, topk_ns, AttentionKernel, SelectionSharing};
use crate::profile::{CpuCore, SocProfile};
use shadowattn_hal::Graph;
use shadowattn_pipeline::{CostModel, PipelineError, Step, UnitWork};
use std::collections::BTreeMap;

/// Bytes of one pilot score the top-k streams (INT32 accumulators).
const SCORE_BYTES: usize = 4;

/// Prices of one layer's launches and steps on a simulated SoC.
#[derive(Clone, Debug)]
pub struct SocCosts {
    launch_ns: BTreeMap<usize, f64>,
    core: CpuCore,
    kv_len: usize,
    head_dim: usize,
    sharing: SelectionSharing,
}

impl SocCosts {
    /// Prices for chunks of `kv_len` keys of `head_dim` on `core` of `soc`, selections shared
    /// as `sharing`; `pilots` are the pilot graphs by fused-head count (a warm launch of each is
    /// its NPU time).
    pub fn new(
        soc: &SocProfile,
        core: &CpuCore,
        pilots: impl IntoIterator<Item = (usize, Graph)>,
        kv_len: usize,
        head_dim: usize,
        sharing: SelectionSharing,
    ) -> Self {
        SocCosts {
            launch_ns: pilots
                .into_iter()
                .map(|(f, g)| (f, graph_cost(soc, &g).launch_ns(false)))
                .collect(),
            core: core.clone(),
            kv_len,
            head_dim,
            sharing,
        }
    }

    /// Dense attention of one head over `pairs` (row, key) pairs on one core, ns.
    pub fn dense_ns(&self, pairs: u64) -> f64 {
        self.attention_ns(AttentionKernel::Dense, pairs)
    }

    /// `kernel` over `pairs` (row, key) pairs of one head on one core, ns.
    pub fn attention_ns(&self, kernel: AttentionKernel, pairs: u64) -> f64 {
        attention_ns(&self.core, kernel, pairs, self.kv_len, self.head_dim, false)
    }
}

impl CostModel for SocCosts {
    fn launch_ns(&self, fused: usize) -> shadowattn_pipeline::Result<f64> {
        self.launch_ns.get(&fused).copied().ok_or_else(|| {
            PipelineError::Costs(format!(
                "no pilot graph of {fused} fused heads was priced (have {:?})",
                self.launch_ns.keys().collect::<Vec<_>>()
            ))
        })
    }

    fn step_ns(&self, step: Step, work: UnitWork) -> f64 {
        match step {
            Step::TopK => topk_ns(&self.core, work.valid_keys, SCORE_BYTES, self.sharing),
            Step::Attention => self.attention_ns(self.sharing.kernel(), work.kept_pairs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::int8_pilot_graph;

    #[test]
    fn launches_and_steps_are_priced_by_the_soc() {
        let soc = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
        let core = soc.core("mid").unwrap();
        let pilots = [1, 4].map(|f| (f, int8_pilot_graph(f, 128, 1024, 64)));
        let c = SocCosts::new(&soc, core, pilots, 1024, 64, SelectionSharing::PerHead);
        assert!(c.launch_ns(4).unwrap() > c.launch_ns(1).unwrap());
        assert!(c.launch_ns(2).is_err());
        let work = |kept_pairs| UnitWork {
            valid_keys: 100_000,
            kept_pairs,
        };
        assert!(
            c.step_ns(Step::Attention, work(80_000)) > c.step_ns(Step::Attention, work(20_000))
        );
        assert_eq!(
            c.step_ns(Step::TopK, work(1)),
            topk_ns(core, 100_000, SCORE_BYTES, SelectionSharing::PerHead)
        );
    }
}
