//! The head-wise pipeline planner: the paper's two-level greedy search (Algorithm 1), with a
//! FIFO fallback when greedy is not better.
//!
//! Three stages per head h: the NPU pilot launch of h's fused group G, top-k of h, and sparse
//! attention of h. Projected times follow the paper's recurrences: launches run back to back;
//! for heads in CPU order, `t_topk = max(npu_done(G(h)), t_topk) + topk(h)` and
//! `t_qkv = max(t_qkv, t_topk) + qkv(h)`. The projected finish is the last `t_qkv`.
//!
//! - **Outer level** (NPU order): repeatedly append the unscheduled launch whose heads, ordered
//!   by the inner level, finish earliest.
//! - **Inner level** (CPU order inside a launch): repeatedly append the head whose `t_qkv` would
//!   be smallest.

use crate::bank::GraphBank;
use crate::error::{Result, SparseAttnError};
use serde::{Deserialize, Serialize};
use shadowattn_hal::{
    AttentionInputs, AttentionShape, ComputeBackend, EventKind, HostTensor, KeyBudget, ScoreData,
    ScoreMatrix,
};
use std::collections::BTreeMap;
use std::time::Instant;

/// Median of a non-empty list.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// One fused NPU launch: heads sharing a scale bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// The bucket whose graph runs.
    pub bucket: usize,
    /// Query heads in the launch, in graph order.
    pub heads: Vec<usize>,
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
    /// wall time); top-k and sparse attention of `compute` are timed on query head 0 of
    /// `sample` at `ratio`, medians over `runs`, and divided by the keys examined and the pairs
    /// attended.
    pub fn measure(
        bank: &mut GraphBank,
        compute: &dyn ComputeBackend,
        sample: AttentionInputs<'_>,
        ratio: f32,
        runs: usize,
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
        let s = sample.shape;
        let scores = sample.exact_scores(0)?;
        let matrix = ScoreMatrix {
            data: ScoreData::F32(&scores),
            rows: s.q_len,
            cols: s.kv_len,
            q_offset: s.q_offset,
            causal: s.causal,
        };
        let budget = KeyBudget::Ratio { ratio, min_keys: 1 };
        let one = AttentionShape {
            q_heads: 1,
            kv_heads: 1,
            ..s
        };
        let d = s.head_dim;
        let head = AttentionInputs::new(
            &sample.q[..s.q_len * d],
            &sample.k[..s.kv_len * d],
            &sample.v[..s.kv_len * d],
            one,
        )?;
        let mut out = vec![0.0; head.output_len()];
        let (mut topk_times, mut attn_times) = (Vec::new(), Vec::new());
        let mut selection = compute.topk(matrix, budget)?;
        for _ in 0..runs {
            let started = Instant::now();
            selection = compute.topk(matrix, budget)?;
            topk_times.push(started.elapsed().as_nanos() as f64);
            let started = Instant::now();
            compute.sparse_attention(head, std::slice::from_ref(&selection), &mut out)?;
            attn_times.push(started.elapsed().as_nanos() as f64);
        }
        let keys: usize = (0..s.q_len).map(|i| s.valid_keys(i)).sum();
        let table = CostTable {
            npu_ns,
            topk_ns_per_key: median(topk_times) / keys.max(1) as f64,
            topk_ns_fixed: 0.0,
            attention_ns_per_pair: median(attn_times) / selection.indices.len().max(1) as f64,
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

    /// NPU time of a launch of `fused` heads.
    pub fn npu(&self, fused: usize) -> Result<f64> {
        self.npu_ns.get(&fused).copied().ok_or_else(|| {
            SparseAttnError::config(
                "cost table",
                format!(
                    "no NPU time for {fused} fused heads (has {:?})",
                    self.npu_ns.keys().collect::<Vec<_>>()
                ),
            )
        })
    }

    /// Top-k time of a head with `valid_keys` valid scores in all.
    pub fn topk(&self, valid_keys: u64) -> f64 {
        self.topk_ns_fixed + self.topk_ns_per_key * valid_keys as f64
    }

    /// Sparse attention time of a head with `pairs` selected (row, key) pairs.
    pub fn attention(&self, pairs: u64) -> f64 {
        self.attention_ns_fixed + self.attention_ns_per_pair * pairs as f64
    }
}

/// Per-launch and per-head stage costs of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct StageCosts {
    /// NPU time per launch, ns.
    pub npu: Vec<f64>,
    /// Top-k time per head, ns.
    pub topk: Vec<f64>,
    /// Sparse attention time per head, ns.
    pub qkv: Vec<f64>,
}

/// Which strategy produced a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// The two-level greedy search.
    Greedy,
    /// Launches and heads in their natural order.
    Fifo,
}

/// An execution order for one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Launch indices in NPU order.
    pub launch_order: Vec<usize>,
    /// Heads in CPU order.
    pub cpu_order: Vec<usize>,
    /// Projected finish time, ns.
    pub projected_ns: f64,
    /// How the plan was made.
    pub strategy: Strategy,
}

fn check(launches: &[Launch], costs: &StageCosts) -> Result<()> {
    if costs.npu.len() != launches.len() {
        return Err(SparseAttnError::config(
            "stage costs",
            format!(
                "{} NPU costs for {} launches",
                costs.npu.len(),
                launches.len()
            ),
        ));
    }
    let n = costs.topk.len();
    if costs.qkv.len() != n {
        return Err(SparseAttnError::config(
            "stage costs",
            "top-k and attention costs differ in length",
        ));
    }
    let mut seen = vec![false; n];
    for l in launches {
        for &h in &l.heads {
            if h >= n || std::mem::replace(&mut seen[h], true) {
                return Err(SparseAttnError::config(
                    "launches",
                    format!("head {h} is out of range or in two launches ({n} heads)"),
                ));
            }
        }
    }
    if seen.iter().any(|s| !s) {
        return Err(SparseAttnError::config(
            "launches",
            "some head is in no launch",
        ));
    }
    Ok(())
}

/// Projected finish of an order under the pipeline recurrences.
pub fn project(
    launches: &[Launch],
    costs: &StageCosts,
    launch_order: &[usize],
    cpu_order: &[usize],
) -> f64 {
    let mut npu_done = vec![0.0; costs.topk.len()];
    let mut t_npu = 0.0;
    for &l in launch_order {
        t_npu += costs.npu[l];
        for &h in &launches[l].heads {
            npu_done[h] = t_npu;
        }
    }
    let (mut t_topk, mut t_qkv) = (0.0f64, 0.0f64);
    for &h in cpu_order {
        t_topk = npu_done[h].max(t_topk) + costs.topk[h];
        t_qkv = t_qkv.max(t_topk) + costs.qkv[h];
    }
    t_qkv
}

/// Launches and heads in their given order.
pub fn fifo(launches: &[Launch], costs: &StageCosts) -> Result<Plan> {
    check(launches, costs)?;
    let launch_order: Vec<usize> = (0..launches.len()).collect();
    let cpu_order: Vec<usize> = launches
        .iter()
        .flat_map(|l| l.heads.iter().copied())
        .collect();
    Ok(Plan {
        projected_ns: project(launches, costs, &launch_order, &cpu_order),
        launch_order,
        cpu_order,
        strategy: Strategy::Fifo,
    })
}

/// The inner level: orders `heads` for the CPU after their launch ends at `t_npu`.
fn inner(
    heads: &[usize],
    costs: &StageCosts,
    t_npu: f64,
    mut t_topk: f64,
    mut t_qkv: f64,
) -> (Vec<usize>, f64, f64) {
    let mut left = heads.to_vec();
    let mut order = Vec::with_capacity(heads.len());
    while !left.is_empty() {
        let (i, tt, tq) = left
            .iter()
            .enumerate()
            .map(|(i, &h)| {
                let tt = t_npu.max(t_topk) + costs.topk[h];
                (i, tt, t_qkv.max(tt) + costs.qkv[h])
            })
            .min_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)))
            .expect("heads left");
        order.push(left.remove(i));
        t_topk = tt;
        t_qkv = tq;
    }
    (order, t_topk, t_qkv)
}

/// The two-level greedy plan.
pub fn greedy(launches: &[Launch], costs: &StageCosts) -> Result<Plan> {
    check(launches, costs)?;
    let mut left: Vec<usize> = (0..launches.len()).collect();
    let (mut t_npu, mut t_topk, mut t_qkv) = (0.0f64, 0.0f64, 0.0f64);
    let mut launch_order = Vec::with_capacity(launches.len());
    let mut cpu_order = Vec::with_capacity(costs.topk.len());
    while !left.is_empty() {
        let (pos, heads, tt, tq) = left
            .iter()
            .enumerate()
            .map(|(pos, &l)| {
                let (heads, tt, tq) = inner(
                    &launches[l].heads,
                    costs,
                    t_npu + costs.npu[l],
                    t_topk,
                    t_qkv,
                );
                (pos, heads, tt, tq)
            })
            .min_by(|a, b| a.3.total_cmp(&b.3).then(a.0.cmp(&b.0)))
            .expect("launches left");
        let l = left.remove(pos);
        t_npu += costs.npu[l];
        launch_order.push(l);
        cpu_order.extend(heads);
        t_topk = tt;
        t_qkv = tq;
    }
    Ok(Plan {
        projected_ns: project(launches, costs, &launch_order, &cpu_order),
        launch_order,
        cpu_order,
        strategy: Strategy::Greedy,
    })
}

/// The greedy plan, or FIFO when greedy is not better.
pub fn plan(launches: &[Launch], costs: &StageCosts) -> Result<Plan> {
    let g = greedy(launches, costs)?;
    let f = fifo(launches, costs)?;
    Ok(if g.projected_ns <= f.projected_ns {
        g
    } else {
        f
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_runs_cheap_npu_groups_first_when_the_cpu_waits() {
        // Launch 0 is slow on the NPU with cheap CPU work; launch 1 is fast with heavy CPU work.
        let launches = vec![
            Launch {
                bucket: 0,
                heads: vec![0],
            },
            Launch {
                bucket: 1,
                heads: vec![1],
            },
        ];
        let costs = StageCosts {
            npu: vec![10.0, 1.0],
            topk: vec![1.0, 1.0],
            qkv: vec![1.0, 5.0],
        };
        let f = fifo(&launches, &costs).unwrap();
        let g = plan(&launches, &costs).unwrap();
        assert_eq!(f.projected_ns, 17.0);
        assert_eq!(g.launch_order, vec![1, 0]);
        assert_eq!(g.projected_ns, 13.0);
        assert_eq!(g.strategy, Strategy::Greedy);
    }

    #[test]
    fn inconsistent_inputs_are_rejected() {
        let launches = vec![Launch {
            bucket: 0,
            heads: vec![0, 0],
        }];
        let costs = StageCosts {
            npu: vec![1.0],
            topk: vec![1.0],
            qkv: vec![1.0],
        };
        assert!(plan(&launches, &costs).is_err());
        let launches = vec![Launch {
            bucket: 0,
            heads: vec![0],
        }];
        let costs = StageCosts {
            npu: vec![1.0],
            topk: vec![1.0, 1.0],
            qkv: vec![1.0, 1.0],
        };
        assert!(plan(&launches, &costs).is_err());
        let mut t = CostTable::uniform(&[1, 2]);
        assert!(t.npu(4).is_err());
        t.topk_ns_per_key = f64::NAN;
        assert!(t.validate().is_err());
    }
}
