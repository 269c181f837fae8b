//! What the ggml tests share: problem shapes in our layouts, deterministic inputs, a plain f64
//! attention to hold ggml's kernels against, and the element-wise check.

#![allow(dead_code)] // each test file uses its own part

/// One problem: our layouts, Q `[q_heads][q_len][head_dim]`, K/V `[kv_heads][kv_len][head_dim]`.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub q_heads: usize,
    pub kv_heads: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub head_dim: usize,
}

/// Deterministic values in [-1, 1) (a 64-bit LCG).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
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

/// Q, K and V of one problem, in our layouts.
pub struct Inputs {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

pub fn inputs(s: Shape, seed: u64) -> Inputs {
    // Scale Q up so the softmax is far from uniform (a wrong mask or head mapping shows).
    let q = values(s.q_heads * s.q_len * s.head_dim, seed)
        .into_iter()
        .map(|x| 3.0 * x)
        .collect();
    Inputs {
        q,
        k: values(s.kv_heads * s.kv_len * s.head_dim, seed + 1),
        v: values(s.kv_heads * s.kv_len * s.head_dim, seed + 2),
    }
}

/// Keys visible to query row `i`: the chunk sits at the end of the keys.
pub fn visible(s: Shape, causal: bool, i: usize) -> usize {
    if causal {
        s.kv_len - s.q_len + i + 1
    } else {
        s.kv_len
    }
}

/// Plain f64 attention in our layout `[q_heads][q_len][head_dim]`; query head `h` reads KV
/// head `kv_of(h)`.
pub fn reference_with(
    s: Shape,
    causal: bool,
    x: &Inputs,
    kv_of: impl Fn(usize) -> usize,
) -> Vec<f64> {
    let d = s.head_dim;
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0.0; s.q_heads * s.q_len * d];
    for h in 0..s.q_heads {
        let kvh = kv_of(h);
        for i in 0..s.q_len {
            let q = &x.q[(h * s.q_len + i) * d..][..d];
            let n = visible(s, causal, i);
            let scores: Vec<f64> = (0..n)
                .map(|j| {
                    let k = &x.k[(kvh * s.kv_len + j) * d..][..d];
                    q.iter()
                        .zip(k)
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = scores.iter().map(|&sc| (sc - m).exp()).collect();
            let sum: f64 = w.iter().sum();
            let o = &mut out[(h * s.q_len + i) * d..][..d];
            for (j, &wj) in w.iter().enumerate() {
                let v = &x.v[(kvh * s.kv_len + j) * d..][..d];
                for (o, &vv) in o.iter_mut().zip(v) {
                    *o += wj / sum * vv as f64;
                }
            }
        }
    }
    out
}

/// The reference with the GQA mapping of `AttentionShape::kv_head_of`.
pub fn reference(s: Shape, causal: bool, x: &Inputs) -> Vec<f64> {
    let group = s.q_heads / s.kv_heads;
    reference_with(s, causal, x, |h| h / group)
}

/// Largest error; panics at the first element outside `tol(index, reference)`.
pub fn check(what: &str, got: &[f32], want: &[f64], mut tol: impl FnMut(usize, f64) -> f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f64;
    for (idx, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let t = tol(idx, w);
        assert!(
            err <= t,
            "{what}: element {idx}: ggml {g} vs reference {w} (error {err:e} > {t:e})"
        );
        worst = worst.max(err);
    }
    worst
}
