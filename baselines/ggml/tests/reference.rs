//! ggml's flash attention against the plain f64 attention of `common`:
//! `softmax(q·kᵀ·scale + mask)·v`, in our layouts, for each of ggml's three CPU code paths.

mod common;

use common::{check, inputs, reference, visible, Inputs, Shape};
use shadowattn_ggml::{round_trip_f16, FlashAttention, GgmlError, KvType};

/// The test shape of the brief: GQA 6/2, a chunk of 8 rows over 40 keys (ggml's per-row path).
const GQA: Shape = Shape {
    q_heads: 6,
    kv_heads: 2,
    q_len: 8,
    kv_len: 40,
    head_dim: 64,
};

/// q_len >= 64 takes ggml's tiled path (the one the benchmark times); 70 rows and 100 keys
/// leave partial Q and KV tiles (64 × 64).
const TILED: Shape = Shape {
    q_heads: 6,
    kv_heads: 2,
    q_len: 70,
    kv_len: 100,
    head_dim: 64,
};

/// One row over >= 512 keys takes ggml's split-KV (decode) path.
const DECODE: Shape = Shape {
    q_heads: 6,
    kv_heads: 2,
    q_len: 1,
    kv_len: 520,
    head_dim: 64,
};

fn run(s: Shape, causal: bool, kv: KvType, threads: usize, x: &Inputs) -> Vec<f32> {
    let mut fa = FlashAttention::new(
        s.q_heads, s.kv_heads, s.q_len, s.kv_len, s.head_dim, causal, kv, threads,
    )
    .expect("build");
    fa.set_inputs(&x.q, &x.k, &x.v).expect("inputs");
    fa.compute().expect("compute");
    // A second run on the same graph gives the same answer (the benchmark repeats compute()).
    let first = fa.output();
    fa.compute().expect("compute again");
    assert_eq!(first, fa.output(), "compute() is not repeatable");
    first
}

fn f32_case(s: Shape, causal: bool, threads: usize) {
    let x = inputs(s, 7 + threads as u64 + causal as u64);
    let want = reference(s, causal, &x);
    let got = run(s, causal, KvType::F32, threads, &x);
    let what = format!("F32 {s:?} causal={causal} threads={threads}");
    // 1e-4 absolute + relative.
    let worst = check(&what, &got, &want, |_, w| 1e-4 + 1e-4 * w.abs());
    eprintln!("{what}: max error {worst:e}");
}

/// f16's unit roundoff (round to nearest, 11-bit significand).
const U16: f64 = 1.0 / 2048.0;

/// F16 K/V, checked twice:
///
/// 1. Against the reference on the inputs ggml actually sees: K and V rounded to f16 (with
///    ggml's conversion) and, on the per-row path (q_len < 64, including split-KV decode) Q
///    too (that path converts Q to K's vec-dot type, f16). What remains is arithmetic: the
///    tiled path converts K/V tiles to f32 and accumulates in f32 → the F32 bound 1e-4. The
///    per-row path keeps the
///    `softmax·V` accumulator in f16: every key adds one rounding of the running sum and, on a
///    new maximum, one of the rescale, each ≤ u·|acc| with |acc| ≤ S·max|v| (S the running
///    softmax denominator, ≤ its final value after rescaling), so after dividing by S the error
///    is ≤ 2·n·u·max|v| for n visible keys, plus u·max|v| for the final f16 → f32 read.
/// 2. Against the reference on the exact f32 inputs: add the effect of the input rounding.
///    Each score q·k·scale moves by at most δ = scale·(2u + u²)·Σ|q_d||k_d|, which moves the
///    softmax weights by a factor within e^{±2δ}, so the output by ≤ (e^{2δ} − 1)·max|v|; V's
///    own rounding adds ≤ u·max|v|.
fn f16_case(s: Shape, causal: bool, threads: usize) {
    let x = inputs(s, 11 + threads as u64 + causal as u64);
    // The split-KV (decode) path runs the per-row code on each thread's share of the keys.
    let per_row_path = s.q_len < 64;
    let seen = Inputs {
        q: if per_row_path {
            round_trip_f16(&x.q)
        } else {
            x.q.clone()
        },
        k: round_trip_f16(&x.k),
        v: round_trip_f16(&x.v),
    };
    let got = run(s, causal, KvType::F16, threads, &x);
    let what = format!("F16 {s:?} causal={causal} threads={threads}");
    let d = s.head_dim;
    let row_of = |idx: usize| (idx / d) % s.q_len;
    let max_v = x.v.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));

    // 1. Same inputs as ggml.
    let want_seen = reference(s, causal, &seen);
    let worst_seen = check(
        &format!("{what} (f16 inputs)"),
        &got,
        &want_seen,
        |idx, w| {
            let arith = if per_row_path {
                (2 * visible(s, causal, row_of(idx)) + 1) as f64 * U16 * max_v
            } else {
                0.0
            };
            1e-4 + 1e-4 * w.abs() + arith
        },
    );

    // 2. Exact inputs: bound δ per (head, row) from the data.
    let want = reference(s, causal, &x);
    let group = s.q_heads / s.kv_heads;
    let scale = 1.0 / (d as f64).sqrt();
    let worst = check(&format!("{what} (f32 inputs)"), &got, &want, |idx, w| {
        let (h, i) = (idx / d / s.q_len, row_of(idx));
        let q = &x.q[(h * s.q_len + i) * d..][..d];
        let kvh = h / group;
        let n = visible(s, causal, i);
        let max_qk = (0..n)
            .map(|j| {
                let k = &x.k[(kvh * s.kv_len + j) * d..][..d];
                q.iter()
                    .zip(k)
                    .map(|(&a, &b)| (a as f64 * b as f64).abs())
                    .sum::<f64>()
            })
            .fold(0.0, f64::max);
        let delta = scale * (2.0 * U16 + U16 * U16) * max_qk;
        let arith = if per_row_path {
            (2 * n + 1) as f64 * U16 * max_v
        } else {
            0.0
        };
        1e-4 + 1e-4 * w.abs() + arith + ((2.0 * delta).exp() - 1.0 + U16) * max_v
    });
    eprintln!("{what}: max error {worst_seen:e} vs f16-rounded inputs, {worst:e} vs f32 inputs");
}

#[test]
fn gqa_f32_matches_reference() {
    for causal in [false, true] {
        for threads in [1, 2] {
            f32_case(GQA, causal, threads);
        }
    }
}

#[test]
fn gqa_f16_matches_reference_within_rounding_bound() {
    for causal in [false, true] {
        for threads in [1, 2] {
            f16_case(GQA, causal, threads);
        }
    }
}

#[test]
fn tiled_path_matches_reference() {
    for causal in [false, true] {
        for threads in [1, 2] {
            f32_case(TILED, causal, threads);
            f16_case(TILED, causal, threads);
        }
    }
}

#[test]
fn decode_path_matches_reference() {
    for causal in [false, true] {
        for threads in [1, 2] {
            f32_case(DECODE, causal, threads);
            f16_case(DECODE, causal, threads);
        }
    }
}

#[test]
fn causal_with_as_many_rows_as_keys_is_lower_triangular() {
    // q_len == kv_len: row 0 sees key 0 only, so its output is V's first row (per KV head).
    let s = Shape {
        q_heads: 4,
        kv_heads: 2,
        q_len: 16,
        kv_len: 16,
        head_dim: 32,
    };
    let x = inputs(s, 3);
    let got = run(s, true, KvType::F32, 2, &x);
    let d = s.head_dim;
    for h in 0..s.q_heads {
        let kvh = h / 2;
        let row0 = &got[h * s.q_len * d..][..d];
        let v0 = &x.v[kvh * s.kv_len * d..][..d];
        for (a, b) in row0.iter().zip(v0) {
            assert!((a - b).abs() <= 1e-6, "head {h}: {a} vs {b}");
        }
    }
    check(
        "F32 square causal",
        &got,
        &reference(s, true, &x),
        |_, w| 1e-4 + 1e-4 * w.abs(),
    );
}

#[test]
fn bad_shapes_and_inputs_are_errors_not_aborts() {
    let bad = [
        (6, 4, 8, 40, 64, false, 1), // kv_heads does not divide q_heads
        (6, 2, 41, 40, 64, true, 1), // causal chunk longer than the keys
        (0, 1, 8, 40, 64, false, 1),
        (6, 2, 8, 40, 0, false, 1),
        (6, 2, 8, 40, 64, false, 0),
        (6, 2, 8, 40, 64, false, 513),
    ];
    for (qh, kvh, ql, kvl, d, causal, t) in bad {
        let r = FlashAttention::new(qh, kvh, ql, kvl, d, causal, KvType::F32, t);
        assert!(
            matches!(r, Err(GgmlError::InvalidShape(_))),
            "{:?} accepted",
            (qh, kvh, ql, kvl, d, causal, t)
        );
    }
    // Non-causal may have more rows than keys.
    FlashAttention::new(2, 1, 5, 3, 8, false, KvType::F16, 1).expect("q_len > kv_len, no mask");

    let mut fa = FlashAttention::new(6, 2, 8, 40, 64, true, KvType::F16, 1).expect("build");
    let x = inputs(GQA, 1);
    let err = fa.set_inputs(&x.q[1..], &x.k, &x.v).unwrap_err();
    assert!(
        matches!(err, GgmlError::InputLength { name: "q", .. }),
        "{err}"
    );
    let err = fa.set_inputs(&x.q, &x.k, &x.v[..10]).unwrap_err();
    assert!(
        matches!(err, GgmlError::InputLength { name: "v", .. }),
        "{err}"
    );
}

#[test]
fn moves_to_another_thread() {
    let x = inputs(GQA, 5);
    let mut fa = FlashAttention::new(6, 2, 8, 40, 64, false, KvType::F32, 2).expect("build");
    fa.set_inputs(&x.q, &x.k, &x.v).expect("inputs");
    let out = std::thread::spawn(move || {
        fa.compute().expect("compute");
        fa.output()
    })
    .join()
    .expect("thread");
    check("moved", &out, &reference(GQA, false, &x), |_, w| {
        1e-4 + 1e-4 * w.abs()
    });
}

#[test]
fn reports_its_instruction_set() {
    let f = shadowattn_ggml::ggml_cpu_features();
    eprintln!("ggml-cpu built with {f:?}");
    #[cfg(target_arch = "x86_64")]
    for want in ["AVX2", "FMA", "F16C"] {
        assert!(f.contains(&want), "ggml built without {want}: {f:?}");
    }
}
