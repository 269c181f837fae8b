//! Fast CPU kernels on the paper's shapes, and this machine's FMA peak and memory bandwidth.
//!
//! `cargo bench -p shadowattn-cpu --bench kernels`: every attention benchmark counts FLOPs as
//! items (4·d per (query row, key) pair: 2·d for q·k, 2·d for p·v), so divan's item/s is FLOP/s.
//! `peak_fma` counts FLOPs of independent FMA chains; `memcpy_bandwidth` counts bytes moved.

use divan::counter::{BytesCount, ItemsCount};
use divan::Bencher;
use shadowattn_cpu::fast::{simd, FastCpuBackend, KvStorage};
use shadowattn_hal::{
    AttentionInputs, AttentionShape, ComputeBackend, KeyBudget, ScoreData, ScoreMatrix, Selection,
};
use std::fmt;

fn main() {
    divan::main();
}

#[derive(Clone, Copy)]
struct Shape {
    q_heads: usize,
    kv_heads: usize,
    head_dim: usize,
    kv_len: usize,
    threads: usize,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "h{}/{} d{} k{} t{}",
            self.q_heads, self.kv_heads, self.head_dim, self.kv_len, self.threads
        )
    }
}

const fn shape(
    q_heads: usize,
    kv_heads: usize,
    head_dim: usize,
    kv_len: usize,
    threads: usize,
) -> Shape {
    Shape {
        q_heads,
        kv_heads,
        head_dim,
        kv_len,
        threads,
    }
}

/// Qwen2-0.5B-like (14/2 heads, d 64) and Qwen2-1.5B-like (12/2 heads, d 128), 128 query rows.
const SHAPES: &[Shape] = &[
    shape(14, 2, 64, 1024, 1),
    shape(14, 2, 64, 2048, 1),
    shape(14, 2, 64, 4096, 1),
    shape(12, 2, 128, 1024, 1),
    shape(12, 2, 128, 2048, 1),
    shape(12, 2, 128, 4096, 1),
    shape(14, 2, 64, 2048, 2),
    shape(12, 2, 128, 2048, 2),
    shape(12, 2, 128, 4096, 2),
];

const Q_LEN: usize = 128;

struct Data {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    shape: AttentionShape,
}

fn data(s: Shape) -> Data {
    let shape = AttentionShape::causal(s.q_heads, s.kv_heads, Q_LEN, s.kv_len, s.head_dim);
    let gen = |n: usize, seed: u32| {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) as f32 / u32::MAX as f32)
                    - 0.5
            })
            .collect::<Vec<f32>>()
    };
    Data {
        q: gen(s.q_heads * Q_LEN * s.head_dim, 1),
        k: gen(s.kv_heads * s.kv_len * s.head_dim, 2),
        v: gen(s.kv_heads * s.kv_len * s.head_dim, 3),
        shape,
    }
}

fn pairs(shape: &AttentionShape) -> u64 {
    (0..shape.q_len).map(|i| shape.valid_keys(i) as u64).sum()
}

#[divan::bench(args = SHAPES, sample_count = 15, sample_size = 1)]
fn dense_attention(bencher: Bencher, s: Shape) {
    let d = data(s);
    let fast = FastCpuBackend::new(s.threads).unwrap();
    let inputs = AttentionInputs::new(&d.q, &d.k, &d.v, d.shape).unwrap();
    let mut out = vec![0.0; inputs.output_len()];
    let flops = pairs(&d.shape) * 4 * s.head_dim as u64 * s.q_heads as u64;
    bencher
        .counter(ItemsCount::new(flops))
        .bench_local(|| fast.dense_attention(inputs, &mut out).unwrap());
}

/// Pilot scores of every head, as the NPU would return them.
enum Pilot {
    /// INT32 (the simulator's and the CPU pilot's output): exact scores × 4096, truncated.
    Int32(Vec<Vec<i32>>),
    /// INT8 (what NPUs output after requantization): per-head scores scaled to ±127.
    Int8(Vec<Vec<i8>>),
}

impl Pilot {
    /// INT8 scores if `int8`, else INT32, for `heads` heads.
    fn new(inputs: &AttentionInputs<'_>, heads: usize, int8: bool) -> Self {
        if int8 {
            Pilot::int8(inputs, heads)
        } else {
            Pilot::int32(inputs, heads)
        }
    }

    fn int32(inputs: &AttentionInputs<'_>, heads: usize) -> Self {
        Pilot::Int32(
            (0..heads)
                .map(|h| {
                    let s = inputs.exact_scores(h).unwrap();
                    s.iter().map(|&x| (x * 4096.0) as i32).collect()
                })
                .collect(),
        )
    }

    fn int8(inputs: &AttentionInputs<'_>, heads: usize) -> Self {
        Pilot::Int8(
            (0..heads)
                .map(|h| {
                    let s = inputs.exact_scores(h).unwrap();
                    let max = s.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    s.iter().map(|&x| (x / max * 127.0).round() as i8).collect()
                })
                .collect(),
        )
    }

    /// The scores of every head as score data.
    fn heads(&self) -> Vec<ScoreData<'_>> {
        match self {
            Pilot::Int32(v) => v.iter().map(|h| ScoreData::I32(h)).collect(),
            Pilot::Int8(v) => v.iter().map(|h| ScoreData::I8(h)).collect(),
        }
    }
}

/// The benchmarks' key budget: 20 % of each row's valid keys.
const BUDGET: KeyBudget = KeyBudget::Ratio {
    ratio: 0.2,
    min_keys: 1,
};

/// Top-k of every head of `pilot` with `fast`.
fn select(
    fast: &FastCpuBackend,
    pilot: &[ScoreData<'_>],
    shape: &AttentionShape,
) -> Vec<Selection> {
    pilot
        .iter()
        .map(|&scores| {
            let m = ScoreMatrix::causal(scores, shape.q_len, shape.kv_len, shape.q_offset);
            fast.topk(m.unwrap(), BUDGET).unwrap()
        })
        .collect()
}

/// Sparse attention at 20 % kept, top-k over the pilot scores included; items = FLOPs.
fn sparse_with_topk(bencher: Bencher, s: Shape, storage: KvStorage, int8: bool) {
    let d = data(s);
    let fast = FastCpuBackend::new(s.threads)
        .unwrap()
        .with_storage(storage);
    let inputs = AttentionInputs::new(&d.q, &d.k, &d.v, d.shape).unwrap();
    let pilot = Pilot::new(&inputs, s.q_heads, int8);
    let heads = pilot.heads();
    let mut out = vec![0.0; inputs.output_len()];
    let kept: u64 = (0..Q_LEN)
        .map(|i| BUDGET.keys_for(i, d.shape.valid_keys(i)).unwrap() as u64)
        .sum();
    let flops = kept * 4 * s.head_dim as u64 * s.q_heads as u64;
    bencher.counter(ItemsCount::new(flops)).bench_local(|| {
        let selections = select(&fast, &heads, &d.shape);
        fast.sparse_attention(inputs, &selections, &mut out)
            .unwrap();
    });
}

/// Sparse attention at 20 % kept, including top-k over INT32 pilot scores.
#[divan::bench(args = SHAPES, sample_count = 15, sample_size = 1)]
fn sparse_attention_20pct_with_topk(bencher: Bencher, s: Shape) {
    sparse_with_topk(bencher, s, KvStorage::F32, false);
}

/// Sparse attention at 20 % kept, including top-k over INT8 pilot scores.
#[divan::bench(args = SHAPES, sample_count = 15, sample_size = 1)]
fn sparse_attention_20pct_with_int8_topk(bencher: Bencher, s: Shape) {
    sparse_with_topk(bencher, s, KvStorage::F32, true);
}

/// Sparse attention at 20 % kept with K and V stored as f16, including top-k over INT8 scores.
#[divan::bench(args = SHAPES, sample_count = 15, sample_size = 1)]
fn sparse_attention_20pct_f16_kv_with_int8_topk(bencher: Bencher, s: Shape) {
    sparse_with_topk(bencher, s, KvStorage::F16, true);
}

/// Top-k alone at 20 % (every head, one thread); items = scores examined.
fn topk_only(bencher: Bencher, s: Shape, int8: bool) {
    let d = data(s);
    let fast = FastCpuBackend::new(1).unwrap();
    let inputs = AttentionInputs::new(&d.q, &d.k, &d.v, d.shape).unwrap();
    let pilot = Pilot::new(&inputs, s.q_heads, int8);
    let heads = pilot.heads();
    bencher
        .counter(ItemsCount::new(pairs(&d.shape) * s.q_heads as u64))
        .bench_local(|| divan::black_box(select(&fast, &heads, &d.shape)));
}

/// Top-k alone at 20 % over INT32 pilot scores.
#[divan::bench(args = &SHAPES[..3], sample_count = 15, sample_size = 1)]
fn topk_20pct_only(bencher: Bencher, s: Shape) {
    topk_only(bencher, s, false);
}

/// Top-k alone at 20 % over INT8 pilot scores.
#[divan::bench(args = &SHAPES[..3], sample_count = 15, sample_size = 1)]
fn topk_int8_20pct_only(bencher: Bencher, s: Shape) {
    topk_only(bencher, s, true);
}

/// FMA peak of one core: 12 independent 8-lane FMA chains.
#[divan::bench(sample_count = 30)]
fn peak_fma(bencher: Bencher) {
    let iters = 1_000_000;
    bencher
        .counter(ItemsCount::new((iters * 12 * 8 * 2) as u64))
        .bench(|| simd::fma_peak_probe(divan::black_box(iters)));
}

/// Memory bandwidth: copying 64 MiB (bytes read plus written).
#[divan::bench(sample_count = 30)]
fn memcpy_bandwidth(bencher: Bencher) {
    let n = 16 << 20;
    let src = vec![1.0f32; n];
    let mut dst = vec![0.0f32; n];
    bencher
        .counter(BytesCount::new((2 * n * 4) as u64))
        .bench_local(|| dst.copy_from_slice(divan::black_box(&src)));
}
