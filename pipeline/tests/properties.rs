//! Properties of the planner and the schedule model on random layers.

use proptest::prelude::*;
use shadowattn_pipeline::{fifo, plan, simulate, Launch, LayerCosts, Pipeline, Step, StepCosts};

fn layers() -> impl Strategy<Value = (Vec<Launch>, LayerCosts)> {
    proptest::collection::vec(1usize..5, 1..8).prop_flat_map(|sizes| {
        let n: usize = sizes.iter().sum();
        let mut h = 0;
        let launches: Vec<Launch> = sizes
            .iter()
            .enumerate()
            .map(|(b, &f)| {
                let l = Launch::new(b, (h..h + f).collect());
                h += f;
                l
            })
            .collect();
        (
            Just(launches),
            proptest::collection::vec(0.1f64..10.0, sizes.len()),
            proptest::collection::vec((0.1f64..10.0, 0.1f64..10.0), n),
        )
            .prop_map(|(l, npu, cpu)| {
                let units = cpu
                    .into_iter()
                    .map(|(topk_ns, attention_ns)| StepCosts {
                        topk_ns,
                        attention_ns,
                    })
                    .collect();
                (
                    l,
                    LayerCosts {
                        launches: npu,
                        units,
                    },
                )
            })
    })
}

fn pipelines() -> impl Strategy<Value = Pipeline> {
    prop_oneof![
        (1usize..5).prop_map(|w| Pipeline::executor(w).unwrap()),
        Just(Pipeline::paper()),
    ]
}

proptest! {
    #[test]
    fn the_plan_is_never_worse_than_fifo((launches, costs) in layers(), pipeline in pipelines()) {
        let p = plan(&pipeline, &launches, &costs).unwrap();
        let f = fifo(&pipeline, &launches, &costs).unwrap();
        prop_assert!(p.projected_ns <= f.projected_ns + 1e-9);
        p.check(&launches).unwrap();
        let mut order = p.unit_order.clone();
        order.sort_unstable();
        prop_assert_eq!(order, (0..costs.units.len()).collect::<Vec<_>>());
    }

    #[test]
    fn the_timeline_of_a_plan_ends_when_the_plan_projects(
        (launches, costs) in layers(),
        pipeline in pipelines(),
    ) {
        let p = plan(&pipeline, &launches, &costs).unwrap();
        let t = simulate(&pipeline, &launches, &costs, &p).unwrap();
        prop_assert!((t.makespan_ns as f64 - p.projected_ns).abs() <= 1.0);
        // Every step of every unit appears once and no worker runs two at a time.
        let steps = t.events.iter().filter(|e| e.track != "npu").count();
        prop_assert_eq!(steps, costs.units.len() * Step::ALL.len());
        let mut by_track: std::collections::BTreeMap<&str, Vec<(u64, u64)>> = Default::default();
        for e in &t.events {
            by_track.entry(&e.track).or_default().push((e.start_ns, e.end_ns()));
        }
        for spans in by_track.values_mut() {
            spans.sort_unstable();
            for w in spans.windows(2) {
                // Rounding to whole ns may let neighbours touch by 1.
                prop_assert!(w[1].0 + 1 >= w[0].1, "{:?}", w);
            }
        }
    }
}
