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

use crate::error::{Result, SparseAttnError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
