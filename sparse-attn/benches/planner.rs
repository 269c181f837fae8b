//! The planner's time per layer: two-level greedy (with the FIFO comparison) over a layer's launches.
use divan::Bencher;
use shadowattn_sparse_attn::planner::{plan, Launch, StageCosts};

fn main() {
    divan::main();
}

/// A layer of `heads` heads spread over up to 9 buckets, fused in launches of at most 4.
fn layer(heads: usize) -> (Vec<Launch>, StageCosts) {
    let mut launches = Vec::new();
    let mut h = 0;
    let mut bucket = 0;
    while h < heads {
        let f = [4, 2, 1][bucket % 3].min(heads - h);
        launches.push(Launch {
            bucket: bucket % 9,
            heads: (h..h + f).collect(),
        });
        h += f;
        bucket += 1;
    }
    let costs = StageCosts {
        npu: launches
            .iter()
            .map(|l| 1.0e6 + 2.5e5 * l.heads.len() as f64)
            .collect(),
        topk: (0..heads).map(|h| 2.0e5 + 1.0e4 * (h % 5) as f64).collect(),
        qkv: (0..heads).map(|h| 3.0e5 + 1.5e5 * (h % 7) as f64).collect(),
    };
    (launches, costs)
}

/// Heads per layer of SmolLM2-135M (9), Qwen2-1.5B (12), PhoneLM (16), and a wide 32.
#[divan::bench(args = [9, 12, 16, 32])]
fn plan_one_layer(bencher: Bencher, heads: usize) {
    let (launches, costs) = layer(heads);
    bencher.bench(|| plan(divan::black_box(&launches), divan::black_box(&costs)).unwrap());
}
