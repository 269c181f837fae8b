//! The simulator's prices for a layer's pipeline: pilot launches from the tile-level cost model
//! of the SoC's NPU, top-k and sparse attention from the model of one of its CPU cores. The
//! schedule itself is `shadowattn-pipeline`'s, the same one the core plans with.

use crate::error::{check_attention_sizes, Result, SimError};
use crate::npu::cost::graph_cost_via;
use crate::npu::graphs::PilotGraph;
use crate::npu::profile::{CpuCore, SocProfile};
use crate::predict::cpu_model::{
    attention_ns, mass_split_cycles, selection_ns, topk_ns_of, CpuKernel, KernelSet,
    SelectionSharing,
};
use shadowattn_hal::{BudgetRule, ChunkBudget, Graph, KeyBudget, RowSplit};
use shadowattn_pipeline::{
    plan, simulate, CostModel, Launch, LayerCosts, LayerPrices, Pipeline, PipelineError, Step,
    Timeline, UnitWork,
};
use std::collections::BTreeMap;

/// Bytes of one pilot score the top-k streams (INT32 accumulators).
const SCORE_BYTES: usize = 4;

/// Prices of one layer's launches and steps on a simulated SoC.
#[derive(Clone, Debug)]
pub struct SocCosts {
    launch_ns: BTreeMap<usize, f64>,
    core: CpuCore,
    topk_core: CpuCore,
    kernels: KernelSet,
    kv_len: usize,
    head_dim: usize,
    sharing: SelectionSharing,
    /// Cycles per key of a mass split's selection, when the budget follows the attention.
    split_cycles: Option<f64>,
}

impl SocCosts {
    /// Prices for chunks of `kv_len` keys of `head_dim` on `core` of `soc`, selections shared
    /// as `sharing`; `pilots` are the pilot graphs by fused-head count (a warm launch of each is
    /// its NPU time, on the profile's pilot launch path).
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
                .map(|(f, g)| {
                    (
                        f,
                        graph_cost_via(soc, &g, soc.pilot_path()).launch_ns(false),
                    )
                })
                .collect(),
            core: core.clone(),
            topk_core: core.clone(),
            kernels: KernelSet::OURS,
            kv_len,
            head_dim,
            sharing,
            split_cycles: None,
        }
    }

    /// The same prices with the selection spreading each unit's budget by `split`, priced by
    /// the top-k core's measured cycles of that split (an error names the missing profile key).
    pub fn with_split(mut self, split: RowSplit) -> Result<Self> {
        self.split_cycles = if split.needs_mass() {
            let cycles = mass_split_cycles(&self.topk_core, split, self.sharing).map_err(|key| {
                SimError::Unpriced(format!(
                    "the {split:?} split's selection on core `{}`: the profile has no `{key}` (measure it with `shadowattn bench --threads 1 --kernels topk-row,topk-group-threshold,topk-ranked-threshold,topk-group-top-p,topk-ranked-top-p`)",
                    self.topk_core.name
                ))
            })?;
            Some(cycles)
        } else {
            None
        };
        Ok(self)
    }

    /// The same prices with top-k on a core of `core`'s cluster.
    pub fn with_topk_core(mut self, core: &CpuCore) -> Self {
        self.topk_core = core.clone();
        self
    }

    /// The same prices with `kernels` for attention.
    pub fn with_kernels(mut self, kernels: KernelSet) -> Self {
        self.kernels = kernels;
        self
    }

    /// Dense attention of one head over `pairs` (row, key) pairs on one core, ns.
    pub fn dense_ns(&self, pairs: u64) -> f64 {
        self.attention_ns(self.kernels.dense(), pairs)
    }

    /// `kernel` over `pairs` (row, key) pairs of one head on one core, ns.
    pub fn attention_ns(&self, kernel: CpuKernel, pairs: u64) -> f64 {
        attention_ns(&self.core, kernel, pairs, self.kv_len, self.head_dim)
    }
}

impl LayerPrices for SocCosts {
    fn dense_ns(&self, pairs: u64) -> f64 {
        SocCosts::dense_ns(self, pairs)
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
            Step::TopK => match self.split_cycles {
                Some(cycles) => selection_ns(&self.topk_core, work.valid_keys, SCORE_BYTES, cycles),
                None => topk_ns_of(
                    self.kernels.topk,
                    &self.topk_core,
                    work.valid_keys,
                    SCORE_BYTES,
                    self.sharing,
                ),
            },
            Step::Attention => {
                self.attention_ns(self.kernels.sparse(self.sharing), work.kept_pairs)
            }
        }
    }
}

/// Keys kept of a row with `n` valid keys at `ratio`: the HAL's rule (`KeyBudget::Ratio`, at
/// least one key), ⌈ratio·n·(1 − ε/2)⌉.
fn kept(ratio: f32, n: u64) -> u64 {
    KeyBudget::Ratio { ratio, min_keys: 1 }
        .keys_for(0, n as usize)
        .map_or(n, |k| k as u64)
}

/// `Σ_{i<n} ⌊(a·i + b)/m⌋` in O(log m) (the Euclidean-like floor sum).
fn floor_sum(mut n: u128, mut m: u128, mut a: u128, mut b: u128) -> u128 {
    let mut sum = 0;
    loop {
        if a >= m {
            sum += n * (n - 1) / 2 * (a / m);
            a %= m;
        }
        if b >= m {
            sum += n * (b / m);
            b %= m;
        }
        let y_max = a * n + b;
        if y_max < m {
            return sum;
        }
        n = y_max / m;
        b = y_max % m;
        std::mem::swap(&mut m, &mut a);
    }
}

/// Keys kept over `rows` rows whose valid keys are `first, first + 1, …` at `ratio` in (0, 1]:
/// `Σ kept(ratio, n)` in O(log) per head instead of a loop over rows (the loop was the largest
/// cost of a prediction). The f32 ratio and the HAL's factor `1 − 2⁻²⁴` make a dyadic fraction
/// `M / 2^k`, so `⌈M·n / 2^k⌉ = ⌊(M·n + 2^k − 1) / 2^k⌋` sums as a floor sum. It is the HAL's
/// rule in exact arithmetic: it could keep one key more where the HAL's f64 product rounds down
/// onto a whole number (the tests compare both on a sweep of ratios and prefixes).
fn kept_pairs(ratio: f32, first: u64, rows: u64) -> u64 {
    if rows == 0 {
        return 0;
    }
    let mut m = f64::from(ratio);
    let mut k = 0u32;
    while m.fract() != 0.0 && k <= 60 {
        m *= 2.0;
        k += 1;
    }
    if k > 60 || !(ratio > 0.0 && ratio <= 1.0) || first == 0 {
        return (first..first + rows).map(|n| kept(ratio, n)).sum();
    }
    // ratio·(1 − 2⁻²⁴) = m·(2²⁴ − 1) / 2^(k+24).
    let (m, d) = (m as u128 * ((1 << 24) - 1), 1u128 << (k + 24));
    floor_sum(rows.into(), d, m, m * u128::from(first) + d - 1) as u64
}

/// One layer's chunked prefill, as the simulator predicts it: every chunk's pilot graphs priced,
/// its launches planned on the SoC's cores.
#[derive(Clone, Debug, PartialEq)]
pub struct PrefillLayer {
    /// Query heads.
    pub q_heads: usize,
    /// Key/value heads; divides `q_heads`.
    pub kv_heads: usize,
    /// Dimension of each head.
    pub head_dim: usize,
    /// Tokens of the prompt.
    pub prompt_len: usize,
    /// Query rows per chunk (the last chunk may be shorter).
    pub chunk_len: usize,
    /// Fraction of each row's valid keys kept, per query head, in (0, 1].
    pub ratios: Vec<f32>,
    /// Scale bucket of each query head (heads of one bucket fuse into launches).
    pub buckets: Vec<usize>,
    /// Fused-head counts of the pilot graphs, largest first; must contain 1.
    pub fused: Vec<usize>,
    /// CPU cores running top-k and sparse attention of a head as one job.
    pub cores: usize,
    /// Top-k and sparse attention as two stages on teams of their own (instead of `cores`).
    pub split: Option<SplitStages>,
    /// The CPU kernels and their arithmetic.
    pub kernels: KernelSet,
    /// How the selection is shared.
    pub sharing: SelectionSharing,
    /// The pilot graph the launches run; a group pilot's units are the GQA groups (a group's
    /// bucket is its first head's), and its NPU-reduced ranking needs
    /// [`SelectionSharing::PerGroupRanked`].
    pub pilot: PilotGraph,
    /// How each unit's keys are spread over a chunk's rows.
    pub budget: BudgetRule,
}

/// Top-k and sparse attention on separate teams: `(cluster, threads)` each.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitStages {
    /// The top-k team.
    pub topk: (CpuCore, usize),
    /// The sparse attention team.
    pub attention: (CpuCore, usize),
}

/// The prediction of one chunk of a prefill.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChunkPrediction {
    /// Query rows of the chunk.
    pub q_len: usize,
    /// Keys of the chunk (prefix plus chunk).
    pub kv_len: usize,
    /// Launches of the chunk.
    pub launches: usize,
    /// The planned layer time of the chunk, ns.
    pub layer_ns: f64,
    /// Time the NPU is busy with the chunk's pilot launches, ns.
    pub npu_busy_ns: f64,
    /// Time the CPU workers are busy with top-k and sparse attention, summed over workers, ns.
    pub cpu_busy_ns: f64,
    /// The part of `cpu_busy_ns` spent in top-k, ns.
    pub topk_busy_ns: f64,
}

impl PrefillLayer {
    /// Pairs one unit keeps at `ratio` over `rows` rows, the first seeing `first` keys: the
    /// closed form of the even rule, else the budget rule's own count.
    fn kept_pairs(&self, ratio: f32, first: u64, rows: u64) -> u64 {
        if self.budget.is_even() {
            return kept_pairs(ratio, first, rows);
        }
        let budget = ChunkBudget {
            ratio,
            min_keys: 1,
            rule: self.budget,
        };
        let valid = (first..first + rows).map(|n| n as usize);
        budget
            .kept_pairs(valid.clone())
            .unwrap_or_else(|_| valid.map(|n| n as u64).sum())
    }

    /// Checks the description before any work.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(SimError::Shape(what));
        check_attention_sizes(
            &[
                ("q_heads", self.q_heads),
                ("kv_heads", self.kv_heads),
                ("head_dim", self.head_dim),
                ("prompt_len", self.prompt_len),
                ("chunk_len", self.chunk_len),
                ("cores", self.cores),
            ],
            self.q_heads,
            self.kv_heads,
        )?;
        if self.ratios.len() != self.q_heads || self.buckets.len() != self.q_heads {
            return bad(format!(
                "{} ratios and {} buckets for {} query heads",
                self.ratios.len(),
                self.buckets.len(),
                self.q_heads
            ));
        }
        if let Some(r) = self.ratios.iter().find(|r| !(**r > 0.0 && **r <= 1.0)) {
            return bad(format!("ratio {r} is outside (0, 1]"));
        }
        let ranked = matches!(
            self.pilot,
            PilotGraph::Group {
                ranked_on_npu: true,
                ..
            }
        );
        let grouped = self.pilot.unit_heads() * self.kv_heads == self.q_heads;
        let shares = match self.sharing {
            SelectionSharing::PerHead => self.pilot == PilotGraph::Head,
            SelectionSharing::PerGroup => !ranked,
            SelectionSharing::PerGroupRanked => ranked,
        };
        if !(self.pilot == PilotGraph::Head || grouped) || !shares {
            return bad(format!(
                "the pilot {:?} does not fit {} query heads over {} KV heads with selections shared {:?}",
                self.pilot, self.q_heads, self.kv_heads, self.sharing
            ));
        }
        if !self.fused.contains(&1) || self.fused.windows(2).any(|w| w[0] <= w[1]) {
            return bad(format!(
                "fused counts {:?} must be strictly decreasing and contain 1",
                self.fused
            ));
        }
        Ok(())
    }

    /// Units grouped by bucket, each group split into launches of the fused counts.
    fn launches(&self) -> Vec<Launch> {
        let mut by_bucket: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let per_unit = self.pilot.unit_heads();
        for (u, b) in self.buckets.chunks(per_unit).enumerate() {
            by_bucket.entry(b[0]).or_default().push(u);
        }
        let mut launches = Vec::new();
        for (bucket, heads) in by_bucket {
            let mut rest = heads.as_slice();
            for &f in &self.fused {
                while rest.len() >= f {
                    let (now, later) = rest.split_at(f);
                    launches.push(Launch::new(bucket, now.to_vec()));
                    rest = later;
                }
            }
        }
        launches
    }

    /// Predicts every chunk on `cores` cores of `core` of `soc`: the pilot graphs of each
    /// fused count priced by the cost model, the launches planned (`shadowattn_pipeline::plan`).
    pub fn predict(&self, soc: &SocProfile, core: &CpuCore) -> Result<Vec<ChunkPrediction>> {
        self.schedule(soc, core, false)
            .map(|chunks| chunks.into_iter().map(|(p, _)| p).collect())
    }

    /// [`PrefillLayer::predict`] with each chunk's planned timeline (every launch on the `npu`
    /// track, every head's steps on its worker's `cpuN` track, from the chunk's start).
    pub fn predict_timelines(
        &self,
        soc: &SocProfile,
        core: &CpuCore,
    ) -> Result<Vec<(ChunkPrediction, Timeline)>> {
        self.schedule(soc, core, true).map(|chunks| {
            chunks
                .into_iter()
                .map(|(p, t)| (p, t.expect("timelines were asked for")))
                .collect()
        })
    }

    /// Every chunk's prediction, and its timeline when `timelines`.
    fn schedule(
        &self,
        soc: &SocProfile,
        core: &CpuCore,
        timelines: bool,
    ) -> Result<Vec<(ChunkPrediction, Option<Timeline>)>> {
        self.validate()?;
        let schedule = |e: PipelineError| SimError::Schedule(e.to_string());
        let pipeline = match &self.split {
            Some(split) => Pipeline::two_stage(split.topk.1, split.attention.1),
            None => Pipeline::executor(self.cores),
        }
        .map_err(schedule)?
        .with_unit(self.pilot.unit_kind());
        let launches = self.launches();
        let chunks = self.prompt_len.div_ceil(self.chunk_len);
        let mut out = Vec::with_capacity(chunks);
        for c in 0..chunks {
            let start = c * self.chunk_len;
            let kv_len = (start + self.chunk_len).min(self.prompt_len);
            let q_len = kv_len - start;
            let pilots = self
                .fused
                .iter()
                .map(|&f| (f, self.pilot.graph(f, q_len, kv_len, self.head_dim)));
            let costs = match &self.split {
                Some(split) => SocCosts::new(
                    soc,
                    &split.attention.0,
                    pilots,
                    kv_len,
                    self.head_dim,
                    self.sharing,
                )
                .with_topk_core(&split.topk.0),
                None => SocCosts::new(soc, core, pilots, kv_len, self.head_dim, self.sharing),
            }
            .with_kernels(self.kernels)
            .with_split(self.budget.split)?;
            // Row i of the chunk sees the keys up to its own position.
            let valid = |i: usize| (start + i + 1) as u64;
            let unit_kept = |ratio: f32| self.kept_pairs(ratio, valid(0), q_len as u64);
            let valid_keys: u64 = (0..q_len).map(valid).sum();
            let work: Vec<UnitWork> = match self.pilot {
                PilotGraph::Head => self
                    .ratios
                    .iter()
                    .map(|&r| UnitWork {
                        valid_keys,
                        kept_pairs: unit_kept(r),
                    })
                    .collect(),
                // A group ranks every head's scores (one ranking when the NPU reduced it) and
                // its heads attend to the keys of their mean ratio.
                PilotGraph::Group {
                    heads,
                    ranked_on_npu,
                } => self
                    .ratios
                    .chunks(heads)
                    .map(|r| {
                        let mean = r.iter().sum::<f32>() / heads as f32;
                        UnitWork {
                            valid_keys: valid_keys * if ranked_on_npu { 1 } else { heads as u64 },
                            kept_pairs: unit_kept(mean) * heads as u64,
                        }
                    })
                    .collect(),
            };
            let priced = LayerCosts::priced(&costs, &launches, &work).map_err(schedule)?;
            let planned = plan(&pipeline, &launches, &priced).map_err(schedule)?;
            let timeline = if timelines {
                Some(simulate(&pipeline, &launches, &priced, &planned).map_err(schedule)?)
            } else {
                None
            };
            let prediction = ChunkPrediction {
                q_len,
                kv_len,
                launches: launches.len(),
                layer_ns: planned.projected_ns,
                npu_busy_ns: priced.launches.iter().sum(),
                cpu_busy_ns: priced
                    .units
                    .iter()
                    .map(|u| u.topk_ns + u.attention_ns)
                    .sum(),
                topk_busy_ns: priced.units.iter().map(|u| u.topk_ns).sum(),
            };
            out.push((prediction, timeline));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npu::graphs::int8_pilot_graph;
    use crate::predict::cpu_model::topk_ns;

    #[test]
    fn a_split_that_follows_the_attention_prices_its_own_selection() {
        let soc = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
        let core = soc.core("mid").unwrap();
        let pilots = || [1].map(|f| (f, int8_pilot_graph(f, 128, 1024, 64)));
        let work = UnitWork {
            valid_keys: 100_000,
            kept_pairs: 20_000,
        };
        for (sharing, key) in [
            (
                SelectionSharing::PerGroup,
                &core.threshold_topk_cycles_per_key,
            ),
            (
                SelectionSharing::PerGroupRanked,
                &core.ranked_threshold_topk_cycles_per_key,
            ),
        ] {
            let even = SocCosts::new(&soc, core, pilots(), 1024, 64, sharing);
            let threshold = even.clone().with_split(RowSplit::Threshold).unwrap();
            let cycles = crate::npu::profile::real(key.as_ref().unwrap());
            assert_eq!(
                threshold.step_ns(Step::TopK, work),
                selection_ns(core, 100_000, SCORE_BYTES, cycles)
            );
            assert!(threshold.step_ns(Step::TopK, work) > even.step_ns(Step::TopK, work));
            // The budget is the same: so is the attention.
            assert_eq!(
                threshold.step_ns(Step::Attention, work),
                even.step_ns(Step::Attention, work)
            );
        }
        // A profile without the split's price names the key it lacks.
        let mut bare = core.clone();
        bare.top_p_topk_cycles_per_key = None;
        let e = SocCosts::new(&soc, &bare, pilots(), 1024, 64, SelectionSharing::PerGroup)
            .with_split(RowSplit::TopP)
            .unwrap_err();
        assert!(e.to_string().contains("top_p_topk_cycles_per_key"), "{e}");
    }

    #[test]
    fn a_prefill_keeps_the_pairs_of_its_budget_rule() {
        let even = qwen_prefill(1024);
        let threshold = PrefillLayer {
            budget: BudgetRule {
                split: RowSplit::Threshold,
                ..BudgetRule::EVEN
            },
            ..even.clone()
        };
        let anchored = PrefillLayer {
            budget: BudgetRule {
                anchors: shadowattn_hal::Anchors {
                    sinks: 4,
                    recent: 64,
                },
                ..threshold.budget
            },
            ..even.clone()
        };
        for (first, rows) in [(1, 256), (513, 256)] {
            let at = |l: &PrefillLayer| l.kept_pairs(0.1, first, rows);
            assert_eq!(at(&threshold), at(&even), "the budget is the even count");
            assert!(
                at(&anchored) > at(&even),
                "anchors the budget cannot hold add pairs"
            );
        }
        let soc = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
        let core = soc.core("mid").unwrap();
        let p = |l: &PrefillLayer| l.predict(&soc, core).unwrap();
        let (e, t) = (p(&even), p(&threshold));
        for (e, t) in e.iter().zip(&t) {
            assert!(t.topk_busy_ns > e.topk_busy_ns);
            // The attention is the same (to rounding of the sums).
            let attention = |x: &ChunkPrediction| x.cpu_busy_ns - x.topk_busy_ns;
            assert!((attention(t) - attention(e)).abs() < 1e-6 * attention(e));
        }
    }

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

    #[test]
    fn kept_keys_are_the_ceiling_of_the_ratio() {
        assert_eq!(kept(0.2, 10), 2);
        assert_eq!(kept(0.2, 11), 3);
        assert_eq!(kept(0.01, 5), 1);
        assert_eq!(kept(1.0, 7), 7);
        let mut ratios = vec![0.2f32, 0.1, 0.37, 1.0, 0.001, 0.999_9, 1e-30, 0.5, 0.25];
        ratios.extend((1..=100).map(|i| i as f32 / 100.0));
        for ratio in ratios {
            for (first, rows) in [(1u64, 128u64), (3969, 128), (4000, 1), (5, 0), (1, 4096)] {
                let brute: u64 = (first..first + rows).map(|n| kept(ratio, n)).sum();
                assert_eq!(
                    kept_pairs(ratio, first, rows),
                    brute,
                    "{ratio} {first} {rows}"
                );
            }
        }
    }

    fn qwen_prefill(prompt_len: usize) -> PrefillLayer {
        PrefillLayer {
            q_heads: 12,
            kv_heads: 2,
            head_dim: 128,
            prompt_len,
            chunk_len: 128,
            ratios: vec![0.2; 12],
            buckets: (0..12).map(|h| h % 3).collect(),
            fused: shadowattn_pipeline::FUSED_HEADS.to_vec(),
            cores: 1,
            split: None,
            kernels: KernelSet::OURS,
            sharing: SelectionSharing::PerGroup,
            pilot: PilotGraph::Head,
            budget: shadowattn_hal::BudgetRule::EVEN,
        }
    }

    #[test]
    fn a_prefill_is_predicted_chunk_by_chunk_and_grows_with_the_prefix() {
        let soc = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
        let core = soc.core("mid").unwrap();
        let p = qwen_prefill(4096 - 64).predict(&soc, core).unwrap();
        assert_eq!(p.len(), 32);
        assert_eq!((p[0].q_len, p[0].kv_len), (128, 128));
        assert_eq!((p[31].q_len, p[31].kv_len), (64, 4032));
        // Three buckets of four heads: one launch of 4 each.
        assert!(p.iter().all(|c| c.launches == 3));
        assert!(p[..31].windows(2).all(|w| w[1].layer_ns > w[0].layer_ns));
        let mut bad = qwen_prefill(512);
        bad.fused = vec![4, 2];
        assert!(bad.predict(&soc, core).is_err());
        bad = qwen_prefill(512);
        bad.ratios[3] = 0.0;
        assert!(bad.predict(&soc, core).is_err());
    }
}
