//! Plans: the order of launches on the NPU and of units through the CPU stages; the paper's
//! two-level greedy search (Algorithm 1) and FIFO, both judged by the schedule model.
//!
//! - **Outer level** (launch order): repeatedly append the unplanned launch whose units, ordered
//!   by the inner level, finish earliest.
//! - **Inner level** (unit order inside a launch): repeatedly append the unit that would finish
//!   earliest.

use crate::error::Result;
use crate::pricing::LayerCosts;
use crate::schedule::Clock;
use crate::stages::{Launch, Pipeline, Plan, Strategy};

fn check_inputs(launches: &[Launch], costs: &LayerCosts) -> Result<()> {
    costs.check(launches)
}

/// Launches in their given order, each launch's units in its own order.
pub fn fifo(pipeline: &Pipeline, launches: &[Launch], costs: &LayerCosts) -> Result<Plan> {
    check_inputs(launches, costs)?;
    let mut clock = Clock::new(pipeline);
    for (l, launch) in launches.iter().enumerate() {
        let ready = clock.launch(costs.launches[l]);
        for &u in &launch.units {
            clock.unit(pipeline, &costs.units[u], ready);
        }
    }
    Ok(Plan {
        launch_order: (0..launches.len()).collect(),
        unit_order: launches
            .iter()
            .flat_map(|l| l.units.iter().copied())
            .collect(),
        projected_ns: clock.finish,
        strategy: Strategy::Fifo,
    })
}

/// The inner level: orders `units`, ready at `ready`, after `clock`.
fn inner(
    pipeline: &Pipeline,
    costs: &LayerCosts,
    units: &[usize],
    ready: f64,
    mut clock: Clock,
) -> (Vec<usize>, Clock) {
    let mut left = units.to_vec();
    let mut order = Vec::with_capacity(units.len());
    while !left.is_empty() {
        let (i, next) = left
            .iter()
            .enumerate()
            .map(|(i, &u)| {
                let mut c = clock.clone();
                c.unit(pipeline, &costs.units[u], ready);
                (i, c)
            })
            .min_by(|a, b| a.1.finish.total_cmp(&b.1.finish).then(a.0.cmp(&b.0)))
            .expect("units left");
        order.push(left.remove(i));
        clock = next;
    }
    (order, clock)
}

/// The two-level greedy plan.
pub fn greedy(pipeline: &Pipeline, launches: &[Launch], costs: &LayerCosts) -> Result<Plan> {
    check_inputs(launches, costs)?;
    let mut left: Vec<usize> = (0..launches.len()).collect();
    let mut clock = Clock::new(pipeline);
    let mut launch_order = Vec::with_capacity(launches.len());
    let mut unit_order = Vec::with_capacity(costs.units.len());
    while !left.is_empty() {
        let (pos, units, next) = left
            .iter()
            .enumerate()
            .map(|(pos, &l)| {
                let mut c = clock.clone();
                let ready = c.launch(costs.launches[l]);
                let (units, c) = inner(pipeline, costs, &launches[l].units, ready, c);
                (pos, units, c)
            })
            .min_by(|a, b| a.2.finish.total_cmp(&b.2.finish).then(a.0.cmp(&b.0)))
            .expect("launches left");
        launch_order.push(left.remove(pos));
        unit_order.extend(units);
        clock = next;
    }
    Ok(Plan {
        launch_order,
        unit_order,
        projected_ns: clock.finish,
        strategy: Strategy::Greedy,
    })
}

/// The greedy plan, or FIFO when greedy is not better.
pub fn plan(pipeline: &Pipeline, launches: &[Launch], costs: &LayerCosts) -> Result<Plan> {
    let g = greedy(pipeline, launches, costs)?;
    let f = fifo(pipeline, launches, costs)?;
    Ok(if g.projected_ns <= f.projected_ns {
        g
    } else {
        f
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::StepCosts;
    use crate::schedule::simulate;

    fn costs(npu: &[f64], cpu: &[(f64, f64)]) -> LayerCosts {
        LayerCosts {
            launches: npu.to_vec(),
            units: cpu
                .iter()
                .map(|&(topk_ns, attention_ns)| StepCosts {
                    topk_ns,
                    attention_ns,
                })
                .collect(),
        }
    }

    #[test]
    fn greedy_runs_cheap_npu_groups_first_when_the_cpu_waits() {
        // Launch 0 is slow on the NPU with cheap CPU work; launch 1 is fast with heavy CPU work.
        let launches = vec![Launch::new(0, vec![0]), Launch::new(1, vec![1])];
        let costs = costs(&[10.0, 1.0], &[(1.0, 1.0), (1.0, 5.0)]);
        let p = Pipeline::paper();
        let f = fifo(&p, &launches, &costs).unwrap();
        let g = plan(&p, &launches, &costs).unwrap();
        assert_eq!(f.projected_ns, 17.0);
        assert_eq!(g.launch_order, vec![1, 0]);
        assert_eq!(g.projected_ns, 13.0);
        assert_eq!(g.strategy, Strategy::Greedy);
        // On the executor's one worker the same order wins: 1 + 6, then 11 + 2.
        let e = Pipeline::executor(1).unwrap();
        let g = plan(&e, &launches, &costs).unwrap();
        assert_eq!((g.launch_order.clone(), g.projected_ns), (vec![1, 0], 13.0));
    }

    #[test]
    fn inconsistent_inputs_are_rejected() {
        let p = Pipeline::paper();
        let launches = vec![Launch::new(0, vec![0, 0])];
        assert!(plan(&p, &launches, &costs(&[1.0], &[(1.0, 1.0)])).is_err());
        let launches = vec![Launch::new(0, vec![0])];
        assert!(plan(&p, &launches, &costs(&[1.0], &[(1.0, 1.0), (1.0, 1.0)])).is_err());
        assert!(plan(&p, &launches, &costs(&[1.0, 2.0], &[(1.0, 1.0)])).is_err());
        assert!(plan(&p, &launches, &costs(&[f64::NAN], &[(1.0, 1.0)])).is_err());
    }

    #[test]
    fn a_plan_whose_units_leave_their_launch_order_is_rejected() {
        let launches = vec![Launch::new(0, vec![0, 1]), Launch::new(1, vec![2])];
        let c = costs(&[1.0, 1.0], &[(1.0, 1.0); 3]);
        let p = Pipeline::executor(2).unwrap();
        let good = fifo(&p, &launches, &c).unwrap();
        good.check(&launches).unwrap();
        let swapped = Plan {
            unit_order: vec![0, 2, 1],
            ..good.clone()
        };
        let e = swapped.check(&launches).unwrap_err();
        assert!(
            e.to_string().contains("does not follow the launch order"),
            "{e}"
        );
        let reordered = Plan {
            launch_order: vec![1, 0],
            unit_order: vec![2, 1, 0],
            ..good
        };
        reordered.check(&launches).unwrap();
        simulate(&p, &launches, &c, &reordered).unwrap();
    }
}
