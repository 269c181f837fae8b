//! ggml's materialized (non-flash) attention — `mul_mat(k, q)`, `soft_max_ext`, `mul_mat(vᵀ, p)`,
//! llama.cpp's path without flash attention — against the plain f64 attention of `common`, on
//! GQA shapes, causal and not, with both of ggml's matmul implementations (llamafile's GEMM and
//! the reference `vec_dot` one).

mod common;

use common::{check, inputs, reference, reference_with, visible, Inputs, Shape};
use shadowattn_ggml::Kernel;
use shadowattn_ggml::{round_trip_f16, FlashAttention, KvType};

/// A Qwen2-1.5B-like layer (12 query heads over 2 KV heads, d = 128): a chunk of 64 rows at the
/// end of 300 keys (rows see 237..=300 keys).
const CHUNK: Shape = Shape {
    q_heads: 12,
    kv_heads: 2,
    q_len: 64,
    kv_len: 300,
    head_dim: 128,
};

/// The same layer, 128 rows over 128 keys: causal, row 0 sees one key.
const SQUARE: Shape = Shape {
    q_heads: 12,
    kv_heads: 2,
    q_len: 128,
    kv_len: 128,
    head_dim: 128,
};

/// Small and ragged: 7 rows (llamafile's GEMM tiles do not divide it), 40 keys, d = 64.
const SMALL: Shape = Shape {
    q_heads: 6,
    kv_heads: 2,
    q_len: 7,
    kv_len: 40,
    head_dim: 64,
};

/// One row (llamafile declines n < 2: ggml falls back to `vec_dot` for both kernels).
const ONE_ROW: Shape = Shape {
    q_heads: 6,
    kv_heads: 3,
    q_len: 1,
    kv_len: 77,
    head_dim: 64,
};

const KERNELS: [Kernel; 2] = [Kernel::Materialized, Kernel::MaterializedVecDot];

fn run(kernel: Kernel, s: Shape, causal: bool, kv: KvType, threads: usize, x: &Inputs) -> Vec<f32> {
    let mut fa = FlashAttention::with_kernel(
        kernel, s.q_heads, s.kv_heads, s.q_len, s.kv_len, s.head_dim, causal, kv, threads,
    )
    .expect("build");
    assert_eq!(fa.kernel(), kernel);
    fa.set_inputs(&x.q, &x.k, &x.v).expect("inputs");
    fa.compute().expect("compute");
    let first = fa.output();
    fa.compute().expect("compute again");
    assert_eq!(first, fa.output(), "compute() is not repeatable");
    first
}

/// The test's power, checked on the reference itself: no constant output, and neither the
/// wrong GQA mapping (`h % kv_heads`, interleaved) nor a missing causal mask, stays within
/// `tol` of the right answer.
fn assert_discriminates(s: Shape, causal: bool, x: &Inputs, tol: &dyn Fn(usize, f64) -> f64) {
    let want = reference(s, causal, x);
    let (lo, hi) = want
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &w| {
            (a.min(w), b.max(w))
        });
    let max_tol = (0..want.len()).map(|i| tol(i, want[i])).fold(0.0, f64::max);
    // Any constant c is ≥ (hi - lo) / 2 away from the reference somewhere.
    assert!(
        (hi - lo) / 2.0 > 10.0 * max_tol,
        "{s:?}: a constant output would pass ({lo}..{hi} vs tolerance {max_tol:e})"
    );
    let beyond = |other: &[f64]| {
        other
            .iter()
            .zip(&want)
            .enumerate()
            .any(|(i, (&o, &w))| (o - w).abs() > tol(i, w))
    };
    if s.kv_heads > 1 && s.q_heads / s.kv_heads > 1 {
        let wrong = reference_with(s, causal, x, |h| h % s.kv_heads);
        assert!(beyond(&wrong), "{s:?}: a wrong GQA mapping would pass");
    }
    // With one row the causal mask hides nothing (the row is the last position).
    if causal && s.q_len > 1 {
        assert!(
            beyond(&reference(s, false, x)),
            "{s:?}: a missing mask would pass"
        );
    }
}

/// f16's unit roundoff (round to nearest, 11-bit significand).
const U16: f64 = 1.0 / 2048.0;
/// Half the spacing of f16's subnormals (2^-24): the absolute rounding error below 2^-14.
const SUB16: f64 = 1.0 / (1u64 << 25) as f64;

/// F32 K/V: no rounding beyond f32 arithmetic (both matmuls are F32 × F32, the softmax F32).
fn f32_case(kernel: Kernel, s: Shape, causal: bool, threads: usize) {
    let x = inputs(s, 7 + threads as u64 + causal as u64);
    let want = reference(s, causal, &x);
    let got = run(kernel, s, causal, KvType::F32, threads, &x);
    let what = format!("{kernel:?} F32 {s:?} causal={causal} threads={threads}");
    let tol = |_: usize, w: f64| 1e-4 + 1e-4 * w.abs();
    assert_discriminates(s, causal, &x, &tol);
    let worst = check(&what, &got, &want, tol);
    eprintln!("{what}: max error {worst:e}");
}

/// F16 K/V, checked twice. Where the rounding is (ggml's x86 code): K and V are stored as f16;
/// `mul_mat` converts its F32 right operand to f16, so Q (first matmul) and the softmax output
/// P (second matmul) are rounded to f16 too; every dot product of two f16 rows accumulates in
/// f32, and the softmax is f32 with an f64 sum. So:
///
/// 1. Against the reference on Q, K, V rounded to f16 (ggml's conversion, round to nearest
///    even): what remains is P's rounding, |p̂ - p| ≤ u·p + 2⁻²⁵ (relative error u = 2⁻¹¹ for
///    normal f16, absolute 2⁻²⁵ in the subnormal range below 2⁻¹⁴, where small weights go),
///    so |Σ(p̂ - p)·v| ≤ (u + n·2⁻²⁵)·max|v| over the n visible keys (Σp = 1); plus f32
///    arithmetic, 1e-4 absolute + relative (as for F32 K/V; the f32 errors are ~1e-6).
/// 2. Against the reference on the exact f32 inputs: add the input rounding. Each score
///    q·k·scale moves by at most δ = scale·(2u + u²)·Σ|q_d||k_d| (q and k each rounded by a
///    factor within 1 ± u), which moves the softmax weights by a factor within e^{±2δ}, so the
///    output by ≤ (e^{2δ} − 1)·max|v|; V's own rounding adds ≤ u·max|v|.
fn f16_case(kernel: Kernel, s: Shape, causal: bool, threads: usize) {
    let x = inputs(s, 11 + threads as u64 + causal as u64);
    let seen = Inputs {
        q: round_trip_f16(&x.q),
        k: round_trip_f16(&x.k),
        v: round_trip_f16(&x.v),
    };
    let got = run(kernel, s, causal, KvType::F16, threads, &x);
    let what = format!("{kernel:?} F16 {s:?} causal={causal} threads={threads}");
    let d = s.head_dim;
    let row_of = |idx: usize| (idx / d) % s.q_len;
    let max_v = x.v.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let p_rounding = |idx: usize| (U16 + visible(s, causal, row_of(idx)) as f64 * SUB16) * max_v;

    // 1. Same inputs as ggml.
    let tol_seen = |idx: usize, w: f64| 1e-4 + 1e-4 * w.abs() + p_rounding(idx);
    assert_discriminates(s, causal, &seen, &tol_seen);
    let want_seen = reference(s, causal, &seen);
    let worst_seen = check(&format!("{what} (f16 inputs)"), &got, &want_seen, tol_seen);

    // 2. Exact inputs: bound δ per (head, row) from the data.
    let group = s.q_heads / s.kv_heads;
    let scale = 1.0 / (d as f64).sqrt();
    let tol = |idx: usize, w: f64| {
        let (h, i) = (idx / d / s.q_len, row_of(idx));
        let q = &x.q[(h * s.q_len + i) * d..][..d];
        let kvh = h / group;
        let max_qk = (0..visible(s, causal, i))
            .map(|j| {
                let k = &x.k[(kvh * s.kv_len + j) * d..][..d];
                q.iter()
                    .zip(k)
                    .map(|(&a, &b)| (a as f64 * b as f64).abs())
                    .sum::<f64>()
            })
            .fold(0.0, f64::max);
        let delta = scale * (2.0 * U16 + U16 * U16) * max_qk;
        tol_seen(idx, w) + ((2.0 * delta).exp() - 1.0 + U16) * max_v
    };
    let want = reference(s, causal, &x);
    let worst = check(&format!("{what} (f32 inputs)"), &got, &want, tol);
    eprintln!("{what}: max error {worst_seen:e} vs f16-rounded inputs, {worst:e} vs f32 inputs");
}

#[test]
fn gqa_chunk_causal_f16_within_rounding_bound() {
    for kernel in KERNELS {
        for threads in [1, 2] {
            f16_case(kernel, CHUNK, true, threads);
        }
    }
}

#[test]
fn gqa_square_causal_f16_within_rounding_bound() {
    for kernel in KERNELS {
        f16_case(kernel, SQUARE, true, 2);
    }
}

#[test]
fn gqa_not_causal_f16_within_rounding_bound() {
    for kernel in KERNELS {
        f16_case(kernel, CHUNK, false, 2);
        f16_case(kernel, SMALL, false, 1);
    }
}

#[test]
fn small_and_single_row_shapes() {
    for kernel in KERNELS {
        for causal in [false, true] {
            f16_case(kernel, SMALL, causal, 2);
            f16_case(kernel, ONE_ROW, causal, 1);
            f32_case(kernel, SMALL, causal, 1);
            f32_case(kernel, ONE_ROW, causal, 2);
        }
    }
}

#[test]
fn f32_kv_matches_reference() {
    for kernel in KERNELS {
        f32_case(kernel, CHUNK, true, 2);
        f32_case(kernel, SQUARE, true, 1);
        f32_case(kernel, CHUNK, false, 1);
    }
}

#[test]
fn causal_square_first_row_is_first_value_row() {
    // q_len == kv_len: row 0 sees key 0 only, so its output is V's first row (per KV head,
    // through P = 1 exactly, which f16 represents).
    let x = inputs(SQUARE, 3);
    let v16 = round_trip_f16(&x.v);
    let d = SQUARE.head_dim;
    for kernel in KERNELS {
        let got = run(kernel, SQUARE, true, KvType::F16, 1, &x);
        for h in 0..SQUARE.q_heads {
            let kvh = h / (SQUARE.q_heads / SQUARE.kv_heads);
            let row0 = &got[h * SQUARE.q_len * d..][..d];
            let v0 = &v16[kvh * SQUARE.kv_len * d..][..d];
            assert_eq!(row0, v0, "{kernel:?} head {h}");
        }
    }
}

#[test]
fn materialized_agrees_with_flash() {
    // The same problem through both graphs (F32 K/V: no f16 rounding in either).
    let x = inputs(CHUNK, 5);
    let flash = run(Kernel::Flash, CHUNK, true, KvType::F32, 2, &x);
    for kernel in KERNELS {
        let m = run(kernel, CHUNK, true, KvType::F32, 2, &x);
        for (i, (a, b)) in flash.iter().zip(&m).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 + 1e-4 * a.abs(),
                "{kernel:?} element {i}: {b} vs flash {a}"
            );
        }
    }
}
