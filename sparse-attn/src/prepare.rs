//! The preparation of one sparse chunk, before any thread starts or any NPU call: each head's
//! bucket, the fused launches, their priced work and plan, and the padded INT8 inputs of every
//! launch. Pure given its inputs, so it is tested on its own.

use crate::bank::GraphBank;
use crate::error::{Result, SparseAttnError};
use crate::pilot::{head_scales, quantize_keys, quantize_queries, HeadScales};
use shadowattn_hal::{AttentionInputs, AttentionShape, ComputeBackend, HostTensor, KeyBudget};
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

/// The padded INT8 inputs of one launch, in the order of its graph's inputs.
#[derive(Debug)]
pub struct LaunchInputs {
    /// Queries, `[1, fused, bank q_len, head_dim]`; rows past the chunk are zero.
    pub q: HostTensor,
    /// Keys, `[1, fused, bank kv_len, head_dim]`; keys past the chunk are zero.
    pub k: HostTensor,
}

/// Everything the threaded pipeline needs to run one chunk.
#[derive(Debug)]
pub struct PreparedChunk {
    /// Each query head's scales and bucket.
    pub scales: Vec<HeadScales>,
    /// The fused launches, grouped by bucket.
    pub launches: Vec<Launch>,
    /// Their priced work on the pipeline.
    pub costs: LayerCosts,
    /// The order to run them in.
    pub plan: Plan,
    /// The inputs of each launch, indexed like `launches`.
    pub inputs: Vec<LaunchInputs>,
}

/// Heads grouped by bucket, each group split into launches of the bank's fused counts.
pub fn launches(bank: &GraphBank, scales: &[HeadScales]) -> Vec<Launch> {
    let mut by_bucket: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (h, s) in scales.iter().enumerate() {
        by_bucket.entry(s.bucket).or_default().push(h);
    }
    let mut launches = Vec::new();
    for (bucket, heads) in by_bucket {
        let mut rest = heads.as_slice();
        for f in bank.split(heads.len()) {
            let (now, later) = rest.split_at(f);
            launches.push(Launch::new(bucket, now.to_vec()));
            rest = later;
        }
    }
    launches
}

/// Each head's CPU work at its ratio: the valid keys its top-k ranks and the pairs it keeps.
pub fn unit_work(shape: &AttentionShape, ratios: &[f32], min_keys: usize) -> Vec<UnitWork> {
    let valid_keys: u64 = (0..shape.q_len).map(|i| shape.valid_keys(i) as u64).sum();
    ratios
        .iter()
        .map(|&ratio| {
            let budget = KeyBudget::Ratio { ratio, min_keys };
            let kept_pairs = (0..shape.q_len)
                .map(|i| {
                    let n = shape.valid_keys(i);
                    budget.keys_for(i, n).unwrap_or(n) as u64
                })
                .sum();
            UnitWork {
                valid_keys,
                kept_pairs,
            }
        })
        .collect()
}

/// The INT8 inputs of every launch: each head's Q and its KV head's K quantized with the
/// bucket's static scales (K once per KV head and bucket), zero-padded to the bank's shape.
pub fn pilot_inputs(
    bank: &GraphBank,
    compute: &dyn ComputeBackend,
    inputs: &AttentionInputs<'_>,
    launches: &[Launch],
) -> Result<Vec<LaunchInputs>> {
    let s = inputs.shape();
    let spec = bank.spec();
    let (q_rows, k_rows) = (s.q_len * s.head_dim, s.kv_len * s.head_dim);
    let mut k_cache: HashMap<(usize, u32), Vec<i8>> = HashMap::new();
    let mut out = Vec::with_capacity(launches.len());
    for l in launches {
        let (q_scale, k_scale) = bank.grid().bucket(l.bucket);
        let graph = bank.graph(l.bucket, l.units.len()).ok_or_else(|| {
            SparseAttnError::Invariant(format!(
                "the bank has no graph for bucket {} with {} heads",
                l.bucket,
                l.units.len()
            ))
        })?;
        let mut descs = graph.graph().input_descs();
        let (q_desc, k_desc) = match (descs.next(), descs.next()) {
            (Some(q), Some(k)) => (q.clone(), k.clone()),
            _ => {
                return Err(SparseAttnError::Invariant(format!(
                    "pilot graph `{}` does not take Q and K",
                    graph.graph().name()
                )))
            }
        };
        let mut q = HostTensor::zeros(q_desc)?;
        let mut k = HostTensor::zeros(k_desc)?;
        let (q_dst, k_dst) = (q.as_mut_slice::<i8>()?, k.as_mut_slice::<i8>()?);
        for (slot, &h) in l.units.iter().enumerate() {
            let q8 = quantize_queries(compute, inputs, h, q_scale)?;
            q_dst[slot * spec.q_len * s.head_dim..][..q_rows].copy_from_slice(&q8);
            let g = s.kv_head_of(h);
            let k8 = match k_cache.entry((g, k_scale.to_bits())) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(quantize_keys(compute, inputs, g, k_scale)?)
                }
            };
            k_dst[slot * spec.kv_len * s.head_dim..][..k_rows].copy_from_slice(k8);
        }
        out.push(LaunchInputs { q, k });
    }
    Ok(out)
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
}

impl Preparation<'_> {
    /// Prepares `inputs` (already checked against the calibration and the bank).
    pub fn prepare(&self, inputs: &AttentionInputs<'_>) -> Result<PreparedChunk> {
        let s = inputs.shape();
        let scales = head_scales(self.bank.grid(), inputs);
        let launches = launches(self.bank, &scales);
        let work = unit_work(&s, self.ratios, self.min_keys);
        let costs = LayerCosts::priced(self.costs, &launches, &work)?;
        let plan = match self.schedule {
            Schedule::Planned => shadowattn_pipeline::plan(self.pipeline, &launches, &costs)?,
            Schedule::Fifo => shadowattn_pipeline::fifo(self.pipeline, &launches, &costs)?,
        };
        let inputs = pilot_inputs(self.bank, self.compute, inputs, &launches)?;
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
    use crate::calibration::BucketGrid;
    use crate::cost_table::CostTable;
    use crate::pilot::PilotOutput;
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
        fn topk(&self, _: ScoreMatrix<'_>, _: KeyBudget) -> shadowattn_hal::Result<Selection> {
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
