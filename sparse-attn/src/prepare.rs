//! The preparation of one sparse chunk, before any thread starts or any NPU call: each head's
//! bucket, the fused launches, their priced work and plan, and the padded INT8 inputs of every
//! launch. Pure given its inputs, so it is tested on its own.

use crate::bank::GraphBank;
use crate::calibration::BucketGrid;
use crate::error::{Result, SparseAttnError};
use crate::pilot::{head_scales, quantize_keys, quantize_queries, HeadScales, PilotUnit};
use shadowattn_hal::{
    AttentionInputs, AttentionShape, BudgetRule, ChunkBudget, ComputeBackend, HostTensor,
};
use shadowattn_pipeline::{CostModel, Launch, LayerCosts, Pipeline, Plan, UnitWork};
use std::collections::{BTreeMap, HashMap};

/// How the plan is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// The planner's greedy order (FIFO when greedy is not better).
    Planned,
    /// Launches by bucket, heads by index.
    Fifo,
}

/// The padded inputs of one launch, in the order of its graph's inputs.
#[derive(Debug)]
pub struct LaunchInputs {
    /// Queries, `[1, fused, heads · bank q_len, head_dim]`; rows past the chunk are zero.
    pub q: HostTensor,
    /// Keys, `[1, fused, bank kv_len, head_dim]`; keys past the chunk are zero.
    pub k: HostTensor,
    /// The extra inputs of an NPU-reduced ranking.
    pub ranking: Option<RankingInputs>,
}

/// The inputs an NPU-reduced ranking adds to Q and K.
#[derive(Debug)]
pub struct RankingInputs {
    /// The padding mask, `[1, 1, 1, bank kv_len]` f16.
    pub key_mask: HostTensor,
    /// Each head's [`head_factor`], `[fused, heads, 1, 1]` f16.
    pub head_scale: HostTensor,
}

impl LaunchInputs {
    /// Views of the inputs, in the graph's order.
    pub fn views(&self) -> Vec<shadowattn_hal::TensorView<'_>> {
        let mut views = vec![self.q.view(), self.k.view()];
        if let Some(r) = &self.ranking {
            views.extend([r.key_mask.view(), r.head_scale.view()]);
        }
        views
    }
}

/// Everything the threaded pipeline needs to run one chunk.
#[derive(Debug)]
pub struct PreparedChunk {
    /// Each query head's scales and own bucket (its Q's static scale).
    pub scales: Vec<HeadScales>,
    /// The fused launches of units (heads, or GQA groups), grouped by bucket.
    pub launches: Vec<Launch>,
    /// Their priced work on the pipeline.
    pub costs: LayerCosts,
    /// The order to run them in.
    pub plan: Plan,
    /// The inputs of each launch, indexed like `launches`.
    pub inputs: Vec<LaunchInputs>,
}

/// Where a chunk's rows and keys sit in a launch's padded inputs: `(first row, first key)`.
/// Scores are left-aligned (padding after the chunk); an NPU-reduced ranking right-aligns both,
/// so the graph's constant causal mask is the chunk's.
pub fn placement(bank: &GraphBank, shape: &AttentionShape) -> (usize, usize) {
    let spec = bank.spec();
    match spec.unit.npu_ranking() {
        Some(_) => (spec.q_len - shape.q_len, spec.kv_len - shape.kv_len),
        None => (0, 0),
    }
}

/// The bucket of unit `u` (heads `members`): a head's own, or for a GQA group the bucket nearest
/// to the largest Q scale of its heads and its K scale, whose static Q scale the graph declares.
/// Each head is quantized with its own bucket's Q scale; the graph corrects its scores by
/// [`head_factor`] (at most 1, so the group bucket's score range bounds every head's).
pub fn unit_bucket(grid: &BucketGrid, members: &[HeadScales]) -> usize {
    match members {
        [one] => one.bucket,
        _ => {
            let q_scale = members.iter().map(|m| m.q_scale).fold(0.0f32, f32::max);
            grid.nearest(q_scale, members[0].k_scale)
        }
    }
}

/// The factor that turns a score computed with its unit's static Q scale into the head's: the
/// head's own bucket's Q scale over its unit bucket's.
pub fn head_factor(grid: &BucketGrid, head: &HeadScales, unit_bucket: usize) -> f32 {
    grid.bucket(head.bucket).0 / grid.bucket(unit_bucket).0
}

/// Units grouped by bucket, each group split into launches of the bank's fused counts.
pub fn launches(bank: &GraphBank, scales: &[HeadScales]) -> Vec<Launch> {
    let per_unit = bank.spec().unit.heads();
    let mut by_bucket: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (u, members) in scales.chunks(per_unit).enumerate() {
        by_bucket
            .entry(unit_bucket(bank.grid(), members))
            .or_default()
            .push(u);
    }
    let mut launches = Vec::new();
    for (bucket, units) in by_bucket {
        let mut rest = units.as_slice();
        for f in bank.split(units.len()) {
            let (now, later) = rest.split_at(f);
            launches.push(Launch::new(bucket, now.to_vec()));
            rest = later;
        }
    }
    launches
}

/// Each unit's CPU work at its heads' ratios: the valid keys its top-k ranks and the pairs it
/// keeps. A group ranks every head's scores, or one ranking when the NPU reduced it; its heads
/// share the keys of their mean ratio, spread over the rows by `rule` (which keeps a number of
/// pairs known before the scores: [`ChunkBudget::kept_pairs`]).
pub fn unit_work(
    shape: &AttentionShape,
    unit: PilotUnit,
    ratios: &[f32],
    (min_keys, rule): (usize, BudgetRule),
) -> Vec<UnitWork> {
    let valid = || (0..shape.q_len).map(|i| shape.valid_keys(i));
    let valid_keys: u64 = valid().map(|n| n as u64).sum();
    let per_unit = unit.heads();
    let ranked = match unit.npu_ranking() {
        Some(_) => 1,
        None => per_unit as u64,
    };
    ratios
        .chunks(per_unit)
        .map(|heads| {
            let ratio = heads.iter().sum::<f32>() / heads.len() as f32;
            let budget = ChunkBudget {
                ratio,
                min_keys,
                rule,
            };
            let kept_pairs = budget.kept_pairs(valid()).unwrap_or(valid_keys);
            UnitWork {
                valid_keys: valid_keys * ranked,
                kept_pairs: kept_pairs * per_unit as u64,
            }
        })
        .collect()
}

/// The query heads of unit `u`.
pub fn unit_heads(unit: PilotUnit, u: usize) -> std::ops::Range<usize> {
    let n = unit.heads();
    u * n..(u + 1) * n
}

/// The inputs of every launch: each head's Q and its KV head's K quantized with the bucket's
/// static scales (K once per KV head and bucket, once per unit in the launch), padded to the
/// bank's shape at [`placement`], and the padding mask of an NPU-reduced ranking.
pub fn pilot_inputs(
    bank: &GraphBank,
    compute: &dyn ComputeBackend,
    inputs: &AttentionInputs<'_>,
    (scales, launches): (&[HeadScales], &[Launch]),
) -> Result<Vec<LaunchInputs>> {
    let s = inputs.shape();
    let spec = bank.spec();
    let d = s.head_dim;
    let (row0, key0) = placement(bank, &s);
    let (q_rows, k_rows) = (s.q_len * d, s.kv_len * d);
    let per_unit = spec.unit.heads();
    let mut k_cache: HashMap<(usize, u32), Vec<i8>> = HashMap::new();
    let mut out = Vec::with_capacity(launches.len());
    for l in launches {
        let k_scale = bank.grid().bucket(l.bucket).1;
        let graph = bank.graph(l.bucket, l.units.len()).ok_or_else(|| {
            SparseAttnError::Invariant(format!(
                "the bank has no graph for bucket {} with {} units",
                l.bucket,
                l.units.len()
            ))
        })?;
        let descs: Vec<_> = graph.graph().input_descs().cloned().collect();
        let wanted = if spec.unit.npu_ranking().is_some() {
            4
        } else {
            2
        };
        if descs.len() != wanted {
            return Err(SparseAttnError::Invariant(format!(
                "pilot graph `{}` takes {} inputs, expected {wanted}",
                graph.graph().name(),
                descs.len()
            )));
        }
        let mut q = HostTensor::zeros(descs[0].clone())?;
        let mut k = HostTensor::zeros(descs[1].clone())?;
        let (q_dst, k_dst) = (q.as_mut_slice::<i8>()?, k.as_mut_slice::<i8>()?);
        let mut factors = Vec::with_capacity(l.units.len() * per_unit);
        for (slot, &u) in l.units.iter().enumerate() {
            let heads = unit_heads(spec.unit, u);
            let g = s.kv_head_of(heads.start);
            for (gh, h) in heads.enumerate() {
                factors.push(half::f16::from_f32(head_factor(
                    bank.grid(),
                    &scales[h],
                    l.bucket,
                )));
                let q_scale = bank.grid().bucket(scales[h].bucket).0;
                let q8 = quantize_queries(compute, inputs, h, q_scale)?;
                let at = ((slot * per_unit + gh) * spec.q_len + row0) * d;
                q_dst[at..at + q_rows].copy_from_slice(&q8);
            }
            let k8 = match k_cache.entry((g, k_scale.to_bits())) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(quantize_keys(compute, inputs, g, k_scale)?)
                }
            };
            let at = (slot * spec.kv_len + key0) * d;
            k_dst[at..at + k_rows].copy_from_slice(k8);
        }
        let ranking = match (descs.get(2), descs.get(3)) {
            (Some(mask_desc), Some(factor_desc)) => {
                let mask = spec
                    .pilot(bank.grid(), l.bucket, l.units.len())
                    .key_mask(s.kv_len)?;
                Some(RankingInputs {
                    key_mask: HostTensor::from_slice(mask_desc.clone(), &mask)?,
                    head_scale: HostTensor::from_slice(factor_desc.clone(), &factors)?,
                })
            }
            _ => None,
        };
        out.push(LaunchInputs { q, k, ranking });
    }
    Ok(out)
}

/// Refuses a chunk an NPU-reduced ranking cannot place: its constant causal mask needs causal
/// rows that are the chunk's last keys.
pub fn check_placement(bank: &GraphBank, shape: &AttentionShape) -> Result<()> {
    if bank.spec().unit.npu_ranking().is_none() {
        return Ok(());
    }
    if shape.causal && shape.q_offset + shape.q_len == shape.kv_len {
        return Ok(());
    }
    Err(SparseAttnError::ChunkMismatch {
        detail: format!(
            "the NPU-reduced group ranking masks causally with the chunk's rows as its last keys; \
             this chunk (causal {}, rows at {}..{} of {} keys) is not: rank on the CPU",
            shape.causal,
            shape.q_offset,
            shape.q_offset + shape.q_len,
            shape.kv_len
        ),
    })
}

/// What a chunk is prepared with.
#[derive(Clone, Copy, Debug)]
pub struct Preparation<'a> {
    /// The graph bank the launches run on.
    pub bank: &'a GraphBank,
    /// Quantizes the pilot's inputs.
    pub compute: &'a dyn ComputeBackend,
    /// Prices the launches and steps.
    pub costs: &'a dyn CostModel,
    /// The pipeline the plan is made for.
    pub pipeline: &'a Pipeline,
    /// How the plan is chosen.
    pub schedule: Schedule,
    /// The layer's per-head ratios.
    pub ratios: &'a [f32],
    /// Fewest keys a row keeps.
    pub min_keys: usize,
    /// How each unit's keys are spread over its rows.
    pub budget: BudgetRule,
}

impl Preparation<'_> {
    /// Prepares `inputs` (already checked against the calibration and the bank).
    pub fn prepare(&self, inputs: &AttentionInputs<'_>) -> Result<PreparedChunk> {
        let s = inputs.shape();
        check_placement(self.bank, &s)?;
        let unit = self.bank.spec().unit;
        let scales = head_scales(self.bank.grid(), inputs);
        let launches = launches(self.bank, &scales);
        let work = unit_work(&s, unit, self.ratios, (self.min_keys, self.budget));
        let costs = LayerCosts::priced(self.costs, &launches, &work)?;
        let plan = match self.schedule {
            Schedule::Planned => shadowattn_pipeline::plan(self.pipeline, &launches, &costs)?,
            Schedule::Fifo => shadowattn_pipeline::fifo(self.pipeline, &launches, &costs)?,
        };
        let inputs = pilot_inputs(self.bank, self.compute, inputs, (&scales, &launches))?;
        Ok(PreparedChunk {
            scales,
            launches,
            costs,
            plan,
            inputs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bank::BankSpec;
    use crate::cost_table::CostTable;
    use crate::pilot::{PilotOutput, PilotUnit};
    use shadowattn_hal::{HalError, QuantizedHeads, ScoreMatrix, Selection};
    use shadowattn_test_support::fake_npu::FakeNpu;

    /// Quantization by rounding x / scale, saturating (the golden rule for these inputs).
    #[derive(Debug)]
    struct RoundingCompute;

    impl ComputeBackend for RoundingCompute {
        fn name(&self) -> &str {
            "rounding"
        }
        fn capabilities(&self) -> shadowattn_hal::ComputeCapabilities {
            shadowattn_hal::ComputeCapabilities {
                kv_storage: shadowattn_hal::DType::F32,
            }
        }
        fn quantize_heads(
            &self,
            x: shadowattn_hal::HeadsView<'_>,
            scales: Option<&[f32]>,
        ) -> shadowattn_hal::Result<QuantizedHeads> {
            let s = scales.expect("static scales")[0];
            let data = x
                .data()
                .iter()
                .map(|v| (v / s).round().clamp(-127.0, 127.0) as i8)
                .collect();
            QuantizedHeads::new(data, vec![s], x.rows(), x.dim())
        }
        fn topk(
            &self,
            _: ScoreMatrix<'_>,
            _: shadowattn_hal::KeyBudget,
        ) -> shadowattn_hal::Result<Selection> {
            unreachable!("preparation selects nothing")
        }
        fn sparse_attention(
            &self,
            _: AttentionInputs<'_>,
            _: &[Selection],
            _: &mut [f32],
        ) -> shadowattn_hal::Result<()> {
            unreachable!("preparation attends nothing")
        }
        fn dense_attention(
            &self,
            _: AttentionInputs<'_>,
            _: &mut [f32],
        ) -> std::result::Result<(), HalError> {
            unreachable!("preparation attends nothing")
        }
    }

    #[test]
    fn a_group_units_work_is_its_ranked_keys_and_its_heads_pairs_at_their_mean_ratio() {
        // Rows see 3, 4, 5, 6 keys (18 valid); two groups of three heads.
        let shape = AttentionShape::causal(6, 2, 4, 6, 2);
        let ratios = [0.2, 0.4, 0.6, 1.0, 1.0, 1.0];
        let group = |ranking| PilotUnit::Group { heads: 3, ranking };
        let kept = |ratio: f32| -> u64 {
            (3..=6)
                .map(|n| {
                    shadowattn_hal::KeyBudget::Ratio { ratio, min_keys: 1 }
                        .keys_for(0, n)
                        .unwrap() as u64
                })
                .sum()
        };
        let npu = crate::pilot::GroupRanking::Npu {
            attention_scale: 1.0,
        };
        let w = unit_work(&shape, group(npu), &ratios, (1, BudgetRule::EVEN));
        assert_eq!(w.len(), 2);
        // The NPU reduced the ranking: each key ranked once per group.
        assert_eq!(w[0].valid_keys, 18);
        // The heads share the keys of their mean ratio, 0.4, and each attends to them.
        assert_eq!(w[0].kept_pairs, 3 * kept(0.4));
        assert_eq!(w[1].kept_pairs, 3 * 18);
        let w = unit_work(
            &shape,
            group(crate::pilot::GroupRanking::Cpu),
            &ratios,
            (1, BudgetRule::EVEN),
        );
        // The CPU ranks every head's scores.
        assert_eq!(w[0].valid_keys, 3 * 18);
        let heads = unit_work(&shape, PilotUnit::Head, &ratios, (1, BudgetRule::EVEN));
        assert_eq!(heads.len(), 6);
        assert_eq!(heads[0].kept_pairs, kept(0.2));
        assert_eq!(heads[0].valid_keys, 18);
    }

    #[test]
    fn heads_are_bucketed_fused_planned_and_padded_without_running_anything() {
        // Four query heads over two KV heads; heads 0 and 1 small, 2 and 3 large queries.
        let shape = AttentionShape::causal(4, 2, 2, 3, 2);
        let q: Vec<f32> = [0.1f32, 0.1, 0.1, 0.1, 2.0, 2.0, 2.0, 2.0]
            .iter()
            .flat_map(|&x| [x, -x])
            .collect();
        let k = vec![1.0f32; 2 * 3 * 2];
        let v = vec![0.0f32; 2 * 3 * 2];
        let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
        let grid = BucketGrid::new(0.1 / 127.0 * 2.0, 1.0 / 127.0, 1, 0.5).unwrap();
        let spec = BankSpec {
            q_len: 3,
            kv_len: 4,
            head_dim: 2,
            fused: vec![2, 1],
            output: PilotOutput::Int32,
            unit: PilotUnit::Head,
        };
        // Compiles anything and never runs: preparation must not execute graphs.
        let never_runs = FakeNpu::cpu("never-runs").any_graph();
        let bank = GraphBank::build(&never_runs, &grid, spec).unwrap();
        let pipeline = Pipeline::executor(2).unwrap();
        let prep = Preparation {
            bank: &bank,
            compute: &RoundingCompute,
            costs: &CostTable::uniform(&[1, 2]),
            pipeline: &pipeline,
            schedule: Schedule::Planned,
            ratios: &[0.5; 4],
            min_keys: 1,
            budget: BudgetRule::EVEN,
        };
        let p = prep.prepare(&inputs).unwrap();
        // Heads 0, 1 share the smallest Q bucket, heads 2, 3 the largest: two fused launches.
        assert_eq!(p.scales[0].bucket, p.scales[1].bucket);
        assert_eq!(p.scales[2].bucket, p.scales[3].bucket);
        assert_ne!(p.scales[0].bucket, p.scales[2].bucket);
        assert_eq!(p.launches.len(), 2);
        assert!(p.launches.iter().all(|l| l.units.len() == 2));
        p.plan.check(&p.launches).unwrap();
        assert_eq!(p.costs.launches, vec![1500.0, 1500.0]);
        // Row 0 of every head sees 2 keys, row 1 sees 3: ceil(0.5·2) + ceil(0.5·3) = 3 pairs.
        assert!(p.costs.units.iter().all(|u| u.attention_ns == 12.0));
        // Launch inputs: two heads of 2 real rows padded to 3, K of 3 keys padded to 4.
        for (l, li) in p.launches.iter().zip(&p.inputs) {
            let (qs, ks) = bank.grid().bucket(l.bucket);
            let q8 = li.q.as_slice::<i8>().unwrap();
            let k8 = li.k.as_slice::<i8>().unwrap();
            assert_eq!((q8.len(), k8.len()), (2 * 3 * 2, 2 * 4 * 2));
            for (slot, &h) in l.units.iter().enumerate() {
                let want: Vec<i8> = inputs
                    .q_head(h)
                    .iter()
                    .map(|v| (v / qs).round().clamp(-127.0, 127.0) as i8)
                    .collect();
                assert_eq!(&q8[slot * 6..slot * 6 + 4], want.as_slice());
                assert_eq!(&q8[slot * 6 + 4..slot * 6 + 6], &[0, 0], "padded rows");
                let kw = (1.0 / ks).round().clamp(-127.0, 127.0) as i8;
                assert!(k8[slot * 8..slot * 8 + 6].iter().all(|&x| x == kw));
                assert_eq!(&k8[slot * 8 + 6..slot * 8 + 8], &[0, 0], "padded keys");
            }
        }
    }
}
