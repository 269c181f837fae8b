//! What a layer's pipeline is made of: launches of units on the NPU, stages of steps on
//! pools of CPU workers, and the plan that orders them.

use crate::error::{PipelineError, Result};
use serde::{Deserialize, Serialize};

/// One piece of CPU work of a unit, after its pilot scores arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Step {
    /// Top-k selection over the unit's pilot scores.
    TopK,
    /// Softmax·V over the selected keys (dense attention when the unit falls back).
    Attention,
}

impl Step {
    /// Every step, in the order a unit needs them.
    pub const ALL: [Step; 2] = [Step::TopK, Step::Attention];

    /// The step's name in events and timelines.
    pub fn name(self) -> &'static str {
        match self {
            Step::TopK => "top-k",
            Step::Attention => "sparse attention",
        }
    }
}

/// What one unit of work is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnitKind {
    /// A query head (the pilot scores and the selection of one head).
    #[default]
    Head,
    /// A KV group: the query heads that share one KV head.
    KvGroup,
}

impl UnitKind {
    /// The prefix of a unit's label in events (`h3`, `g1`).
    pub fn prefix(self) -> &'static str {
        match self {
            UnitKind::Head => "h",
            UnitKind::KvGroup => "g",
        }
    }

    /// The plural noun, for messages.
    pub fn plural(self) -> &'static str {
        match self {
            UnitKind::Head => "heads",
            UnitKind::KvGroup => "KV groups",
        }
    }
}

/// A set of identical workers that take jobs in order (CPU cores or worker threads).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The pool's name; worker `i` draws on the track `<name><i>`.
    pub name: String,
    /// Number of workers, at least 1.
    pub workers: usize,
}

/// One job per unit: its steps run back to back on one worker of one pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Index of the pool that runs the job.
    pub pool: usize,
    /// The steps of the job, in order.
    pub steps: Vec<Step>,
}

/// The stages every unit goes through after its NPU launch, and the pools that run them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    pools: Vec<Pool>,
    stages: Vec<Stage>,
    unit: UnitKind,
}

impl Pipeline {
    /// A pipeline of `stages` on `pools`; every [`Step`] must occur in exactly one stage.
    pub fn new(pools: Vec<Pool>, stages: Vec<Stage>, unit: UnitKind) -> Result<Self> {
        let bad = |detail: String| Err(PipelineError::Pipeline(detail));
        if stages.is_empty() {
            return bad("a pipeline needs at least one stage".into());
        }
        for p in &pools {
            if p.workers == 0 {
                return bad(format!("pool `{}` has no worker", p.name));
            }
        }
        for (i, s) in stages.iter().enumerate() {
            if s.pool >= pools.len() {
                return bad(format!(
                    "stage {i} runs on pool {} but there are {} pools",
                    s.pool,
                    pools.len()
                ));
            }
            if s.steps.is_empty() {
                return bad(format!("stage {i} has no step"));
            }
        }
        for step in Step::ALL {
            let n = stages
                .iter()
                .flat_map(|s| &s.steps)
                .filter(|&&x| x == step)
                .count();
            if n != 1 {
                return bad(format!(
                    "step `{}` occurs {n} times; every step occurs once",
                    step.name()
                ));
            }
        }
        Ok(Pipeline {
            pools,
            stages,
            unit,
        })
    }

    /// What the executor of the core runs: top-k and sparse attention of a head as one job on
    /// one of `workers` CPU workers (tracks `cpu0`, `cpu1`, …).
    pub fn executor(workers: usize) -> Result<Self> {
        Self::new(
            vec![Pool {
                name: "cpu".into(),
                workers,
            }],
            vec![Stage {
                pool: 0,
                steps: vec![Step::TopK, Step::Attention],
            }],
            UnitKind::Head,
        )
    }

    /// The paper's model of the pipeline (Algorithm 1): top-k and sparse attention are two
    /// stages on two resources of one worker each, so the top-k of one head overlaps the
    /// attention of the one before.
    pub fn paper() -> Self {
        Self::two_stage(1, 1).expect("the paper's pipeline is valid")
    }

    /// Top-k and sparse attention as two stages on pools of their own, `topk` and `attention`
    /// workers (tracks `topk0…`, `attention0…`).
    pub fn two_stage(topk: usize, attention: usize) -> Result<Self> {
        let pool = |name: &str, workers| Pool {
            name: name.into(),
            workers,
        };
        Self::new(
            vec![pool("topk", topk), pool("attention", attention)],
            vec![
                Stage {
                    pool: 0,
                    steps: vec![Step::TopK],
                },
                Stage {
                    pool: 1,
                    steps: vec![Step::Attention],
                },
            ],
            UnitKind::Head,
        )
    }

    /// The pools.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The stages, in the order a unit goes through them.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// What a unit is.
    pub fn unit(&self) -> UnitKind {
        self.unit
    }

    /// The same pipeline with `unit` as the unit of work.
    pub fn with_unit(mut self, unit: UnitKind) -> Self {
        self.unit = unit;
        self
    }
}

/// Fused-unit counts of shadowAttn's pilot launches: a bank compiles one graph per scale bucket
/// for launches of 4, 2 and 1 heads (the paper's), and a bucket's heads split into them.
pub const FUSED_HEADS: [usize; 3] = [4, 2, 1];

/// One NPU launch: the pilot graph of one scale bucket over several fused units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    /// The scale bucket whose graph runs.
    pub bucket: usize,
    /// The units computed by the launch, in the graph's order.
    pub units: Vec<usize>,
}

impl Launch {
    /// A launch of `units` in `bucket`.
    pub fn new(bucket: usize, units: Vec<usize>) -> Self {
        Launch { bucket, units }
    }

    /// Checks that `launches` hold each of `units` units exactly once and none is empty.
    pub fn check_cover(launches: &[Launch], units: usize) -> Result<()> {
        let bad = |detail: String| Err(PipelineError::Launches(detail));
        let mut seen = vec![0usize; units];
        for (i, l) in launches.iter().enumerate() {
            if l.units.is_empty() {
                return bad(format!("launch {i} holds no unit"));
            }
            for &u in &l.units {
                match seen.get_mut(u) {
                    Some(n) => *n += 1,
                    None => return bad(format!("launch {i} holds unit {u} of {units}")),
                }
            }
        }
        match seen.iter().position(|&n| n != 1) {
            Some(u) => bad(format!(
                "unit {u} is in {} launches; every unit is in exactly one",
                seen[u]
            )),
            None => Ok(()),
        }
    }
}

/// Which search produced a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// The two-level greedy search.
    Greedy,
    /// Launches in their given order, units in launch order.
    Fifo,
}

/// An execution order for one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Launch indices in NPU order.
    pub launch_order: Vec<usize>,
    /// Units in the order they enter the CPU stages: the units of each launch, launch by
    /// launch in `launch_order`.
    pub unit_order: Vec<usize>,
    /// Projected time of the layer under the schedule model, ns.
    pub projected_ns: f64,
    /// How the plan was made.
    pub strategy: Strategy,
}

impl Plan {
    /// Checks that the plan orders every launch once and every unit once, the units of each
    /// launch together and in launch order (as the executor hands them out).
    pub fn check(&self, launches: &[Launch]) -> Result<()> {
        let bad = |detail: String| Err(PipelineError::Plan(detail));
        let mut seen = vec![false; launches.len()];
        for &l in &self.launch_order {
            if l >= launches.len() || std::mem::replace(&mut seen[l], true) {
                return bad(format!(
                    "launch order {:?} is not a permutation of the {} launches",
                    self.launch_order,
                    launches.len()
                ));
            }
        }
        if self.launch_order.len() != launches.len() {
            return bad(format!(
                "launch order lists {} of {} launches",
                self.launch_order.len(),
                launches.len()
            ));
        }
        let expected: usize = launches.iter().map(|l| l.units.len()).sum();
        if self.unit_order.len() != expected {
            return bad(format!(
                "unit order lists {} units, the launches hold {expected}",
                self.unit_order.len()
            ));
        }
        let mut at = 0;
        for &l in &self.launch_order {
            let units = &launches[l].units;
            let block = &self.unit_order[at..at + units.len()];
            let mut a = block.to_vec();
            let mut b = units.clone();
            a.sort_unstable();
            b.sort_unstable();
            if a != b {
                return bad(format!(
                    "unit order {:?} does not follow the launch order: launch {l} holds {units:?}",
                    self.unit_order
                ));
            }
            at += units.len();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_need_every_step_once_on_real_pools() {
        assert!(Pipeline::executor(0).is_err());
        Pipeline::executor(3).unwrap();
        let stage = |pool, steps: &[Step]| Stage {
            pool,
            steps: steps.to_vec(),
        };
        let cpu = vec![Pool {
            name: "cpu".into(),
            workers: 1,
        }];
        for stages in [
            vec![],
            vec![stage(0, &[Step::TopK])],
            vec![stage(0, &[Step::TopK, Step::TopK, Step::Attention])],
            vec![stage(1, &[Step::TopK, Step::Attention])],
            vec![stage(0, &[]), stage(0, &[Step::TopK, Step::Attention])],
        ] {
            assert!(
                Pipeline::new(cpu.clone(), stages.clone(), UnitKind::Head).is_err(),
                "{stages:?}"
            );
        }
        assert_eq!(Pipeline::paper().stages().len(), 2);
    }

    #[test]
    fn launches_cover_every_unit_once() {
        let l = |units: &[usize]| Launch::new(0, units.to_vec());
        Launch::check_cover(&[l(&[1, 0]), l(&[2])], 3).unwrap();
        for launches in [
            vec![l(&[0, 1])],
            vec![l(&[0, 1]), l(&[1, 2])],
            vec![l(&[0, 1, 2]), l(&[])],
            vec![l(&[0, 1, 3])],
        ] {
            assert!(Launch::check_cover(&launches, 3).is_err(), "{launches:?}");
        }
    }
}
