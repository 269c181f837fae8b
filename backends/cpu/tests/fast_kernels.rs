//! The fast kernels against the golden reference (property tests), on every shape class:
//! top-k and quantization exactly, attention within accumulation-aware float tolerance.

use proptest::prelude::*;
use shadowattn_cpu::fast::FastCpuBackend;
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{
    AttentionInputs, AttentionShape, ComputeBackend, HalError, HeadsView, KeyBudget, ScoreData,
    ScoreMatrix, Selection,
};

fn noise(seed: u64, n: usize, amp: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * amp
        })
        .collect()
}

fn close(fast: &[f32], gold: &[f32]) -> Result<(), String> {
    for (i, (a, e)) in fast.iter().zip(gold).enumerate() {
        if (a - e).abs() > 2e-5 + 1e-4 * e.abs() {
            return Err(format!("[{i}] {a} vs {e}"));
        }
    }
    Ok(())
}

fn shapes() -> impl Strategy<Value = (AttentionShape, u64)> {
    (
        1usize..4,
        1usize..3,
        1usize..20,
        0usize..150,
        prop::sample::select(vec![1usize, 3, 8, 31, 64, 128]),
        any::<u64>(),
    )
        .prop_map(|(group, kv_heads, q_len, prefix, head_dim, seed)| {
            (
                AttentionShape::causal(group * kv_heads, kv_heads, q_len, q_len + prefix, head_dim),
                seed,
            )
        })
}

fn data(shape: &AttentionShape, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let s = shape;
    (
        noise(seed, s.q_heads * s.q_len * s.head_dim, 2.0),
        noise(seed + 1, s.kv_heads * s.kv_len * s.head_dim, 2.0),
        noise(seed + 2, s.kv_heads * s.kv_len * s.head_dim, 1.0),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn dense_matches_the_golden_reference((shape, seed) in shapes(), threads in 1usize..3) {
        let (q, k, v) = data(&shape, seed);
        let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
        let mut gold = vec![0.0; inputs.output_len()];
        CpuBackend::new().dense_attention(inputs, &mut gold).unwrap();
        let mut fast = vec![0.0; gold.len()];
        FastCpuBackend::new(threads).unwrap().dense_attention(inputs, &mut fast).unwrap();
        prop_assert!(close(&fast, &gold).is_ok(), "{:?}", close(&fast, &gold));
    }

    #[test]
    fn sparse_and_topk_match_the_golden_reference((shape, seed) in shapes(), ratio in 0.01f32..1.0, threads in 1usize..3) {
        let (q, k, v) = data(&shape, seed);
        let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
        let gold_backend = CpuBackend::new();
        let fast_backend = FastCpuBackend::new(threads).unwrap();
        let budget = KeyBudget::Ratio { ratio, min_keys: 2 };
        let mut gold_sel = Vec::new();
        let mut fast_sel = Vec::new();
        for h in 0..shape.q_heads {
            // Integer pilot scores with many ties: the tie rule must agree exactly.
            let scores: Vec<i32> = inputs.exact_scores(h).unwrap().iter().map(|x| (x * 2.0) as i32).collect();
            let m = ScoreMatrix::causal(ScoreData::I32(&scores), shape.q_len, shape.kv_len, shape.q_offset).unwrap();
            gold_sel.push(gold_backend.topk(m, budget).unwrap());
            fast_sel.push(fast_backend.topk(m, budget).unwrap());
        }
        prop_assert_eq!(&gold_sel, &fast_sel);
        let mut gold = vec![0.0; inputs.output_len()];
        gold_backend.sparse_attention(inputs, &gold_sel, &mut gold).unwrap();
        let mut fast = vec![0.0; gold.len()];
        fast_backend.sparse_attention(inputs, &fast_sel, &mut fast).unwrap();
        prop_assert!(close(&fast, &gold).is_ok(), "{:?}", close(&fast, &gold));
    }

    #[test]
    fn float_and_int8_topk_equal_the_reference(rows in 1usize..6, prefix in 0usize..40, k in 1usize..4, seed in any::<u64>()) {
        let cols = rows + prefix;
        let f = noise(seed, rows * cols, 3.0);
        let i8s: Vec<i8> = f.iter().map(|x| (x * 10.0) as i8).collect();
        let fast = FastCpuBackend::new(1).unwrap();
        for data in [ScoreData::F32(&f), ScoreData::I8(&i8s)] {
            let m = ScoreMatrix::causal(data, rows, cols, prefix).unwrap();
            let budget = KeyBudget::Fixed(k.min(prefix + 1));
            prop_assert_eq!(fast.topk(m, budget).unwrap(), CpuBackend::new().topk(m, budget).unwrap());
        }
    }
}

#[test]
fn quantization_is_bit_exact_and_bad_input_is_typed() {
    let x = noise(3, 2 * 5 * 16, 4.0);
    let view = HeadsView::new(&x, 2, 5, 16).unwrap();
    let fast = FastCpuBackend::new(2).unwrap();
    assert_eq!(
        fast.quantize_heads(view, None).unwrap(),
        CpuBackend::new().quantize_heads(view, None).unwrap()
    );
    assert!(FastCpuBackend::new(0).is_err());
    let shape = AttentionShape::causal(2, 1, 3, 5, 8);
    let (mut q, k, v) = data(&shape, 1);
    q[0] = f32::NAN;
    let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
    let mut out = vec![0.0; inputs.output_len()];
    assert!(matches!(
        fast.dense_attention(inputs, &mut out),
        Err(HalError::InvalidValue { .. })
    ));
    let (q, k, v) = data(&shape, 1);
    let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
    let mut bad = Selection::new();
    for _ in 0..3 {
        bad.push_row(&[4]);
    }
    let e = fast
        .sparse_attention(inputs, &[bad.clone(), bad], &mut out)
        .unwrap_err();
    assert!(e.to_string().contains("outside"), "{e}");
    assert!(fast.dense_attention(inputs, &mut out[1..]).is_err());
}
