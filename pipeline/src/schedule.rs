//! The schedule of a plan under in-order dispatch, step by step, as a timeline of events.

use crate::error::Result;
use crate::pricing::{LayerCosts, StepCosts};
use crate::stages::{Launch, Pipeline, Plan};
use shadowattn_hal::track;
use shadowattn_hal::{EventKind, FigureSource, ProfileEvent};

/// A simulated layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    /// Every launch on the `npu` track and every step on its worker's track.
    pub events: Vec<ProfileEvent>,
    /// Time from the first launch to the end of the last step, ns.
    pub makespan_ns: u64,
    /// Time the NPU is busy, ns.
    pub npu_busy_ns: u64,
    /// Time the CPU workers are busy, summed over workers, ns.
    pub cpu_busy_ns: u64,
}

/// One pool's workers: when each is free, and when the last job taken from its queue started.
#[derive(Clone, Debug)]
struct PoolClock {
    free: Vec<f64>,
    last_start: f64,
}

/// Where a job ran.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placed {
    pub(crate) pool: usize,
    pub(crate) worker: usize,
    pub(crate) start: f64,
}

/// The state of in-order dispatch after some launches and units; cheap to clone, so the
/// planner can try a continuation and keep the best.
#[derive(Clone, Debug)]
pub(crate) struct Clock {
    npu: f64,
    pools: Vec<PoolClock>,
    /// End of the last step of any unit so far.
    pub(crate) finish: f64,
    cpu_busy: f64,
}

impl Clock {
    pub(crate) fn new(pipeline: &Pipeline) -> Self {
        Clock {
            npu: 0.0,
            pools: pipeline
                .pools()
                .iter()
                .map(|p| PoolClock {
                    free: vec![0.0; p.workers],
                    last_start: 0.0,
                })
                .collect(),
            finish: 0.0,
            cpu_busy: 0.0,
        }
    }

    /// Runs the next launch on the NPU; returns when its scores are ready.
    pub(crate) fn launch(&mut self, cost_ns: f64) -> f64 {
        self.npu += cost_ns;
        self.finish = self.finish.max(self.npu);
        self.npu
    }

    /// Runs every stage of the next unit, whose scores are ready at `ready`; returns where
    /// each stage's job ran.
    pub(crate) fn unit(
        &mut self,
        pipeline: &Pipeline,
        costs: &StepCosts,
        mut ready: f64,
    ) -> Vec<Placed> {
        let mut placed = Vec::with_capacity(pipeline.stages().len());
        for stage in pipeline.stages() {
            let clock = &mut self.pools[stage.pool];
            let (worker, free) = clock
                .free
                .iter()
                .copied()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
                .expect("pools have workers");
            let start = ready.max(free).max(clock.last_start);
            let duration: f64 = stage.steps.iter().map(|&s| costs.get(s)).sum();
            clock.free[worker] = start + duration;
            clock.last_start = start;
            self.cpu_busy += duration;
            ready = start + duration;
            placed.push(Placed {
                pool: stage.pool,
                worker,
                start,
            });
        }
        self.finish = self.finish.max(ready);
        placed
    }
}

fn event(name: String, kind: EventKind, track: String, start: f64, end: f64) -> ProfileEvent {
    let start_ns = start.round() as u64;
    ProfileEvent {
        name,
        kind,
        track,
        start_ns,
        duration_ns: (end.round() as u64).saturating_sub(start_ns).max(1),
        cycles: None,
        source: FigureSource::Simulated,
    }
}

/// Runs `plan` of `launches` priced by `costs` through `pipeline` and records every launch and
/// step as an event.
pub fn simulate(
    pipeline: &Pipeline,
    launches: &[Launch],
    costs: &LayerCosts,
    plan: &Plan,
) -> Result<Timeline> {
    costs.check(launches)?;
    plan.check(launches)?;
    let unit = pipeline.unit();
    let mut clock = Clock::new(pipeline);
    let mut events = Vec::new();
    let mut units = plan.unit_order.iter().copied().peekable();
    for &li in &plan.launch_order {
        let launch = &launches[li];
        let start = clock.npu;
        let ready = clock.launch(costs.launches[li]);
        let labels: Vec<String> = launch.units.iter().map(|u| u.to_string()).collect();
        events.push(event(
            format!("pilot launch {li} ({} {})", unit.plural(), labels.join(",")),
            EventKind::Launch,
            track::NPU.into(),
            start,
            ready,
        ));
        while let Some(u) = units.next_if(|u| launch.units.contains(u)) {
            let c = &costs.units[u];
            for (stage, placed) in pipeline.stages().iter().zip(clock.unit(pipeline, c, ready)) {
                let track = format!("{}{}", pipeline.pools()[placed.pool].name, placed.worker);
                let mut t = placed.start;
                for &step in &stage.steps {
                    let end = t + c.get(step);
                    events.push(event(
                        format!("{} {}{u}", step.name(), unit.prefix()),
                        EventKind::ComputeStage,
                        track.clone(),
                        t,
                        end,
                    ));
                    t = end;
                }
            }
        }
    }
    Ok(Timeline {
        events,
        makespan_ns: clock.finish.round() as u64,
        npu_busy_ns: clock.npu.round() as u64,
        cpu_busy_ns: clock.cpu_busy.round() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::fifo;
    use crate::stages::Strategy;

    fn layer(groups: Vec<Vec<usize>>, npu: f64, topk: f64, attn: f64) -> (Vec<Launch>, LayerCosts) {
        let n: usize = groups.iter().map(Vec::len).sum();
        let launches: Vec<Launch> = groups
            .into_iter()
            .enumerate()
            .map(|(b, units)| Launch::new(b, units))
            .collect();
        let costs = LayerCosts {
            launches: vec![npu; launches.len()],
            units: vec![
                StepCosts {
                    topk_ns: topk,
                    attention_ns: attn
                };
                n
            ],
        };
        (launches, costs)
    }

    #[test]
    fn stages_overlap_and_respect_dependencies() {
        let (launches, costs) = layer(vec![vec![0], vec![1], vec![2]], 10.0, 3.0, 5.0);
        let p = Pipeline::executor(1).unwrap();
        let order = fifo(&p, &launches, &costs).unwrap();
        let t = simulate(&p, &launches, &costs, &order).unwrap();
        // The NPU finishes at 30; the last head's top-k starts at 30, attention after: 30 + 3 + 5.
        assert_eq!(t.makespan_ns, 38);
        assert_eq!(t.npu_busy_ns, 30);
        assert_eq!(t.cpu_busy_ns, 24);
        for h in 0..3 {
            let find = |p: &str| {
                t.events
                    .iter()
                    .find(|e| e.name == format!("{p} h{h}"))
                    .unwrap()
                    .clone()
            };
            assert!(find("top-k").end_ns() <= find("sparse attention").start_ns);
            assert!(find("top-k").start_ns >= 10 * (h as u64 + 1));
        }
    }

    #[test]
    fn more_workers_never_take_longer_and_bad_plans_are_rejected() {
        let (launches, costs) = layer(vec![vec![0, 1, 2, 3]], 10.0, 4.0, 20.0);
        let makespan = |workers| {
            let p = Pipeline::executor(workers).unwrap();
            let order = fifo(&p, &launches, &costs).unwrap();
            simulate(&p, &launches, &costs, &order).unwrap().makespan_ns
        };
        assert!(
            makespan(2) < makespan(1),
            "{} vs {}",
            makespan(2),
            makespan(1)
        );
        let p = Pipeline::executor(1).unwrap();
        let good = fifo(&p, &launches, &costs).unwrap();
        let mut bad = costs.clone();
        bad.units[1].topk_ns = f64::NAN;
        assert!(simulate(&p, &launches, &bad, &good).is_err());
        let mut bad = launches.clone();
        bad.push(Launch::new(1, vec![0]));
        assert!(simulate(&p, &bad, &costs, &good).is_err());
        for unit_order in [vec![0, 0, 1, 2], vec![0, 1, 2]] {
            let order = Plan {
                unit_order,
                ..good.clone()
            };
            assert!(simulate(&p, &launches, &costs, &order).is_err());
        }
        assert_eq!(good.strategy, Strategy::Fifo);
    }

    #[test]
    fn the_paper_pipeline_overlaps_top_k_with_the_attention_before_it() {
        // Two heads in one launch, each 2 of top-k and 5 of attention: on the executor's one
        // worker they run back to back (1 + 7 + 7); on the paper's two resources the second
        // top-k runs during the first attention (1 + 2 + 5 + 5).
        let (launches, costs) = layer(vec![vec![0, 1]], 1.0, 2.0, 5.0);
        for (p, want) in [
            (Pipeline::executor(1).unwrap(), 15),
            (Pipeline::paper(), 13),
        ] {
            let order = fifo(&p, &launches, &costs).unwrap();
            let t = simulate(&p, &launches, &costs, &order).unwrap();
            assert_eq!(t.makespan_ns, want, "{p:?}");
            assert_eq!(order.projected_ns.round() as u64, want);
        }
    }
}
