//! Times ggml's `ggml_flash_attn_ext` (median of N runs of `compute()`) for one prefill chunk:
//! 12 query / 2 KV heads, head_dim 128, q_len 128, kv_len 2048, on 1 and 2 threads, F32 and
//! F16 K/V, without mask and causal.
//!
//! `cargo run --release -p shadowattn-ggml --example time [-- RUNS]` (default 20 runs, after 2
//! warm-up runs).

use std::time::Instant;

use shadowattn_ggml::{ggml_cpu_features, FlashAttention, GgmlError, KvType};

const Q_HEADS: usize = 12;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 128;
const Q_LEN: usize = 128;
const KV_LEN: usize = 2048;
const WARMUP: usize = 2;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// 2 FLOPs per multiply-add, two matrix products (q·kᵀ and p·v), over the visible keys only.
fn flops(causal: bool) -> f64 {
    let keys: usize = if causal {
        (0..Q_LEN).map(|i| KV_LEN - Q_LEN + i + 1).sum()
    } else {
        Q_LEN * KV_LEN
    };
    4.0 * (Q_HEADS * keys * HEAD_DIM) as f64
}

fn main() -> Result<(), GgmlError> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("RUNS must be a positive integer"))
        .unwrap_or(20)
        .max(1);
    let q = values(Q_HEADS * Q_LEN * HEAD_DIM, 1);
    let k = values(KV_HEADS * KV_LEN * HEAD_DIM, 2);
    let v = values(KV_HEADS * KV_LEN * HEAD_DIM, 3);

    println!(
        "ggml_flash_attn_ext: {Q_HEADS}/{KV_HEADS} heads, head_dim {HEAD_DIM}, q_len {Q_LEN}, \
         kv_len {KV_LEN}; ggml-cpu {:?}; median (GFLOP/s from it) and min of {runs} runs",
        ggml_cpu_features()
    );
    println!(
        "{:>7} {:>4} {:>7} {:>10} {:>9} {:>10}",
        "threads", "kv", "mask", "median ms", "GFLOP/s", "min ms"
    );
    for threads in [1, 2] {
        for kv in [KvType::F32, KvType::F16] {
            for causal in [false, true] {
                let mut fa = FlashAttention::new(
                    Q_HEADS, KV_HEADS, Q_LEN, KV_LEN, HEAD_DIM, causal, kv, threads,
                )?;
                fa.set_inputs(&q, &k, &v)?;
                for _ in 0..WARMUP {
                    fa.compute()?;
                }
                let mut times: Vec<f64> = (0..runs)
                    .map(|_| {
                        let t = Instant::now();
                        fa.compute().map(|()| t.elapsed().as_secs_f64())
                    })
                    .collect::<Result<_, _>>()?;
                times.sort_by(f64::total_cmp);
                let median = times[times.len() / 2];
                println!(
                    "{threads:>7} {:>4} {:>7} {:>10.3} {:>9.1} {:>10.3}",
                    format!("{kv:?}"),
                    if causal { "causal" } else { "none" },
                    median * 1e3,
                    flops(causal) / median / 1e9,
                    times[0] * 1e3
                );
            }
        }
    }
    Ok(())
}
