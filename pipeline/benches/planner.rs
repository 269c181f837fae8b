//! The planner's time per layer: two-level greedy (with the FIFO comparison) over a layer's
//! launches, on the executor's pipeline of one and of four workers.
use divan::Bencher;
use shadowattn_pipeline::{plan, Launch, LayerCosts, Pipeline, StepCosts};

fn main() {
    divan::main();
}

/// A layer of `heads` heads spread over up to 9 buckets, fused in launches of at most 4.
fn layer(heads: usize) -> (Vec<Launch>, LayerCosts) {
    let mut launches = Vec::new();
    let mut h = 0;
    let mut bucket = 0;
    while h < heads {
        let f = [4, 2, 1][bucket % 3].min(heads - h);
        launches.push(Launch::new(bucket % 9, (h..h + f).collect()));
        h += f;
        bucket += 1;
    }
    let costs = LayerCosts {
        launches: launches
            .iter()
            .map(|l| 1.0e6 + 2.5e5 * l.units.len() as f64)
            .collect(),
        units: (0..heads)
            .map(|h| StepCosts {
                topk_ns: 2.0e5 + 1.0e4 * (h % 5) as f64,
                attention_ns: 3.0e5 + 1.5e5 * (h % 7) as f64,
            })
            .collect(),
    };
    (launches, costs)
}

/// Heads per layer of SmolLM2-135M (9), Qwen2-1.5B (12), PhoneLM (16), and a wide 32.
#[divan::bench(args = [9, 12, 16, 32], consts = [1, 4])]
fn plan_one_layer<const WORKERS: usize>(bencher: Bencher, heads: usize) {
    let (launches, costs) = layer(heads);
    let pipeline = Pipeline::executor(WORKERS).unwrap();
    bencher.bench(|| {
        plan(
            divan::black_box(&pipeline),
            divan::black_box(&launches),
            divan::black_box(&costs),
        )
        .unwrap()
    });
}
