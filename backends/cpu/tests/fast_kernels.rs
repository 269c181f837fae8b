//! The fast kernels against the golden reference (property tests), on every shape class:
//! top-k and quantization exactly, attention within accumulation-aware float tolerance.

use proptest::prelude::*;
use shadowattn_cpu::fast::{FastCpuBackend, KvStorage};
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{
    AttentionInputs, AttentionShape, ComputeBackend, HalError, HeadsView, KeyBudget, ScoreData,
    ScoreMatrix, Selection,
};
use shadowattn_test_support::{close_f32, noise};

/// Chunks anywhere in the keys (`q_offset` from 0 to `kv_len − q_len`), causal or not: a mask
/// slip shows only where rows do not end at the last key.
fn shapes() -> impl Strategy<Value = (AttentionShape, u64)> {
    (
        (1usize..4, 1usize..3, 1usize..20, 0usize..150),
        prop::sample::select(vec![1usize, 3, 8, 31, 64, 128]),
        (0.0f64..=1.0, any::<bool>()),
        any::<u64>(),
    )
        .prop_map(
            |((group, kv_heads, q_len, prefix), head_dim, (at, causal), seed)| {
                let mut s = AttentionShape::causal(
                    group * kv_heads,
                    kv_heads,
                    q_len,
                    q_len + prefix,
                    head_dim,
                );
                s.q_offset = (prefix as f64 * at) as usize;
                s.causal = causal;
                (s, seed)
            },
        )
}

fn data(shape: &AttentionShape, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let s = shape;
    (
        noise(seed, s.q_heads * s.q_len * s.head_dim, 2.0),
        noise(seed + 1, s.kv_heads * s.kv_len * s.head_dim, 2.0),
        noise(seed + 2, s.kv_heads * s.kv_len * s.head_dim, 1.0),
    )
}

/// Dense attention of `inputs` by the golden kernels and by `fast`: `(golden, fast)`.
fn dense_both(fast: &FastCpuBackend, inputs: AttentionInputs<'_>) -> (Vec<f32>, Vec<f32>) {
    let (mut gold, mut got) = (
        vec![0.0; inputs.output_len()],
        vec![0.0; inputs.output_len()],
    );
    CpuBackend::new()
        .dense_attention(inputs, &mut gold)
        .unwrap();
    fast.dense_attention(inputs, &mut got).unwrap();
    (gold, got)
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
        prop_assert!(close_f32(&fast, &gold).is_ok(), "{:?}", close_f32(&fast, &gold));
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
            let m = ScoreMatrix::for_chunk(ScoreData::I32(&scores), &shape).unwrap();
            gold_sel.push(gold_backend.topk(m, budget).unwrap());
            fast_sel.push(fast_backend.topk(m, budget).unwrap());
        }
        prop_assert_eq!(&gold_sel, &fast_sel);
        let mut gold = vec![0.0; inputs.output_len()];
        gold_backend.sparse_attention(inputs, &gold_sel, &mut gold).unwrap();
        let mut fast = vec![0.0; gold.len()];
        fast_backend.sparse_attention(inputs, &fast_sel, &mut fast).unwrap();
        prop_assert!(close_f32(&fast, &gold).is_ok(), "{:?}", close_f32(&fast, &gold));
    }

    #[test]
    fn float_and_int8_topk_equal_the_reference(rows in 1usize..6, prefix in 0usize..40, k in 1usize..4, seed in any::<u64>()) {
        let cols = rows + prefix;
        let f = noise(seed, rows * cols, 3.0);
        let i8s: Vec<i8> = f.iter().map(|x| (x * 10.0) as i8).collect();
        let f16s: Vec<half::f16> = f.iter().map(|&x| half::f16::from_f32(x)).collect();
        let fast = FastCpuBackend::new(1).unwrap();
        for data in [ScoreData::F32(&f), ScoreData::I8(&i8s), ScoreData::F16(&f16s)] {
            let m = ScoreMatrix::causal(data, rows, cols, prefix).unwrap();
            let budget = KeyBudget::Fixed(k.min(prefix + 1));
            prop_assert_eq!(fast.topk(m, budget).unwrap(), CpuBackend::new().topk(m, budget).unwrap());
        }
    }
}

/// Scores drawn from distributions that stress the radix narrowing of the fast top-k: a few
/// distinct values (many ties), a tight cluster with far outliers (one bin holds almost all),
/// the full integer range, and floats with ±∞, ±0 and subnormals.
fn stress_scores() -> impl Strategy<Value = (Vec<i32>, Vec<f32>)> {
    let int = prop_oneof![
        -3i32..3,
        (0i32..2).prop_map(|b| if b == 0 { 17 } else { i32::MAX }),
        any::<i32>(),
        prop_oneof![Just(i32::MIN), Just(i32::MAX), 1000i32..1010],
    ];
    let float = prop_oneof![
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(0.0f32),
        Just(-0.0f32),
        Just(f32::MIN_POSITIVE / 4.0),
        Just(-f32::MIN_POSITIVE / 4.0),
        -2.0f32..2.0,
        (1.0f32..1.000_1),
    ];
    (1usize..700).prop_flat_map(move |n| {
        (
            prop::collection::vec(int.clone(), n),
            prop::collection::vec(float.clone(), n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn topk_equals_the_reference_on_ties_outliers_and_special_floats(
        (ints, floats) in stress_scores(), ratio in 0.0f32..1.0, threads in 1usize..3,
    ) {
        let n = ints.len();
        let (rows, cols) = if n >= 16 { (4, n / 4) } else { (1, n) };
        let ints = &ints[..rows * cols];
        let floats = &floats[..rows * cols];
        let fast = FastCpuBackend::new(threads).unwrap();
        let gold = CpuBackend::new();
        // Truncation to INT8 keeps the ties and reaches both ends of its range.
        let int8s: Vec<i8> = ints.iter().map(|&x| x as i8).collect();
        // Rounding to f16 makes more ties and keeps ±∞ and ±0.
        let halves: Vec<half::f16> = floats.iter().map(|&x| half::f16::from_f32(x)).collect();
        for data in [
            ScoreData::I32(ints),
            ScoreData::F32(floats),
            ScoreData::I8(&int8s),
            ScoreData::F16(&halves),
        ] {
            let m = ScoreMatrix::causal(data, rows, cols, cols - rows).unwrap();
            for budget in [KeyBudget::Ratio { ratio, min_keys: 1 }, KeyBudget::Fixed(1)] {
                prop_assert_eq!(fast.topk(m, budget).unwrap(), gold.topk(m, budget).unwrap());
            }
        }
    }
}

/// One INT8 row of `n` scores of a kind that stresses the threshold search: one value repeated
/// (any, both ends included), a few distinct values (runs of ties), the full range, a cluster
/// at the top or the bottom with rare outliers at the other end.
fn int8_row(kind: u8, n: usize, seed: u64) -> Vec<i8> {
    let r = noise(seed, n, 1.0);
    let pick = |x: f32, values: &[i8]| {
        values[((x + 1.0) * 0.5 * values.len() as f32) as usize % values.len()]
    };
    r.iter()
        .map(|&x| match kind % 6 {
            0 => (seed % 256) as u8 as i8,
            1 => pick(x, &[-128, 127, 0, 3]),
            2 => (x * 128.0).clamp(-128.0, 127.0) as i8,
            3 => pick(x, &[127, 127, 126, 126, 126, 125, 125, 125, 125, -128]),
            4 => pick(x, &[-128, -128, -128, -127, -127, -126, 127]),
            _ => pick(x, &[5, 5, 5, 5, 5, 5, 5, 5, 5, 6]),
        })
        .collect()
}

/// INT8 score matrices: every row of its own kind (so the search starting from the previous
/// row's threshold moves both ways), rows of 1 to 70 keys or of 2000 and more, causal with the
/// query rows at the tail of the keys or before it.
fn int8_matrices() -> impl Strategy<Value = (Vec<i8>, usize, usize, usize)> {
    (
        1usize..6,
        prop_oneof![1usize..71, 2000usize..2100],
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 6),
        0.0f64..1.0,
    )
        .prop_map(|(rows, cols, seed, kinds, at)| {
            let rows = rows.min(cols);
            // The first query row's position: anywhere from the start to the tail.
            let q_offset = ((cols - rows) as f64 * at) as usize;
            let data = (0..rows)
                .flat_map(|i| int8_row(kinds[i], cols, seed.wrapping_add(i as u64)))
                .collect();
            (data, rows, cols, q_offset)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn int8_topk_equals_the_reference_on_ties_extremes_and_every_budget(
        (data, rows, cols, q_offset) in int8_matrices(),
        ratio in 0.0f32..1.0,
        threads in 1usize..3,
    ) {
        let m = ScoreMatrix::causal(ScoreData::I8(&data), rows, cols, q_offset).unwrap();
        let (fast, gold) = (FastCpuBackend::new(threads).unwrap(), CpuBackend::new());
        // The shortest row has q_offset + 1 keys: k = 1, k = n − 1 and k = n of that row (the
        // others keep fewer than all), a k past it (refused), all keys, and a ratio.
        let n = q_offset + 1;
        let mut budgets = vec![
            KeyBudget::Fixed(1),
            KeyBudget::Fixed(n),
            KeyBudget::Fixed(n + 1),
            KeyBudget::Ratio { ratio: 1.0, min_keys: 1 },
            KeyBudget::Ratio { ratio, min_keys: 1 },
            KeyBudget::Ratio { ratio, min_keys: cols + 5 },
        ];
        if n > 1 {
            budgets.push(KeyBudget::Fixed(n - 1));
        }
        for budget in budgets {
            match (fast.topk(m, budget), gold.topk(m, budget)) {
                (Ok(got), Ok(want)) => prop_assert_eq!(got, want, "{:?}", budget),
                (got, want) => prop_assert!(got.is_err() && want.is_err(), "{:?}: {:?} vs {:?}", budget, got, want),
            }
        }
    }
}

/// `x` rounded to f16 and back, as f16 storage sees it.
fn rounded_to_f16(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn f16_storage_equals_the_reference_on_rounded_k_and_v(
        (shape, seed) in shapes(), ratio in 0.01f32..1.0, threads in 1usize..3,
    ) {
        let (q, k, v) = data(&shape, seed);
        let (k16, v16) = (rounded_to_f16(&k), rounded_to_f16(&v));
        let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
        let rounded = AttentionInputs::new(&q, &k16, &v16, shape).unwrap();
        let fast = FastCpuBackend::new(threads).unwrap().with_storage(KvStorage::F16);
        let gold = CpuBackend::new();
        let budget = KeyBudget::Ratio { ratio, min_keys: 1 };
        let selections: Vec<Selection> = (0..shape.q_heads)
            .map(|h| {
                let scores = inputs.exact_scores(h).unwrap();
                let m = ScoreMatrix::for_chunk(ScoreData::F32(&scores), &shape).unwrap();
                gold.topk(m, budget).unwrap()
            })
            .collect();
        let mut want = vec![0.0; inputs.output_len()];
        let mut got = vec![0.0; inputs.output_len()];
        gold.sparse_attention(rounded, &selections, &mut want).unwrap();
        fast.sparse_attention(inputs, &selections, &mut got).unwrap();
        prop_assert!(close_f32(&got, &want).is_ok(), "sparse: {:?}", close_f32(&got, &want));
        gold.dense_attention(rounded, &mut want).unwrap();
        fast.dense_attention(inputs, &mut got).unwrap();
        prop_assert!(close_f32(&got, &want).is_ok(), "dense: {:?}", close_f32(&got, &want));
    }
}

#[test]
fn f16_storage_refuses_values_beyond_its_range() {
    let shape = AttentionShape::causal(1, 1, 1, 2, 2);
    let (q, v) = (vec![1.0; 2], vec![1.0; 4]);
    let k = vec![1.0, 2.0, 70000.0, 0.0];
    let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
    let fast = FastCpuBackend::new(1).unwrap().with_storage(KvStorage::F16);
    let mut out = vec![0.0; 2];
    let e = fast.dense_attention(inputs, &mut out).unwrap_err();
    assert!(matches!(e, HalError::InvalidValue { .. }), "{e}");
    assert!(e.to_string().contains("70000"), "{e}");
    let mut sel = Selection::new();
    sel.push_row(&[0, 1]);
    assert!(fast.sparse_attention(inputs, &[sel], &mut out).is_err());
    // The same values are fine with f32 storage.
    FastCpuBackend::new(1)
        .unwrap()
        .dense_attention(inputs, &mut out)
        .unwrap();
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

#[test]
fn dense_attention_reuses_its_packed_kv_across_calls_of_other_shapes() {
    // One backend, calls whose packs have the same size but fewer keys (padding that must be
    // zeroed again), fewer heads, another head dim, and the first shape with other values.
    let fast = FastCpuBackend::new(2).unwrap();
    let shapes = [
        (AttentionShape::causal(4, 2, 5, 64, 32), 1),
        (AttentionShape::causal(4, 2, 5, 40, 32), 2),
        (AttentionShape::causal(2, 1, 3, 64, 32), 3),
        (AttentionShape::causal(6, 3, 4, 130, 64), 4),
        (AttentionShape::causal(4, 2, 5, 64, 32), 5),
    ];
    for (shape, seed) in shapes {
        let (q, k, v) = data(&shape, seed);
        let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
        let (gold, got) = dense_both(&fast, inputs);
        assert!(
            close_f32(&got, &gold).is_ok(),
            "{shape:?}: {:?}",
            close_f32(&got, &gold)
        );
    }
}

#[test]
fn dense_attention_names_the_first_non_finite_value_as_the_golden_kernels_do() {
    // K and V are checked while they are packed, head by head in parallel: the error must still
    // name the first bad element of the whole tensor, K before V, as `check_finite` does.
    let shape = AttentionShape::causal(4, 2, 3, 40, 24);
    let per_head = shape.kv_len * shape.head_dim;
    let cases: [&[(char, usize, f32)]; 6] = [
        &[('k', 5, f32::NAN)],
        &[
            ('k', per_head + 7, f32::INFINITY),
            ('k', 2 * per_head - 1, f32::NAN),
        ],
        &[('v', 3, f32::NEG_INFINITY), ('v', per_head + 1, f32::NAN)],
        &[('v', 0, f32::NAN), ('k', 2 * per_head - 1, f32::INFINITY)],
        &[
            ('k', per_head, f32::NAN),
            ('k', per_head - 1, f32::INFINITY),
        ],
        &[('q', 2, f32::NAN), ('k', 0, f32::NAN)],
    ];
    let golden = CpuBackend::new();
    // Two threads pack and compute KV head by KV head; three (more than the two KV heads) pack
    // every head first.
    for (storage, threads) in [
        (KvStorage::F32, 2),
        (KvStorage::F16, 2),
        (KvStorage::F32, 3),
        (KvStorage::F16, 3),
    ] {
        let fast = FastCpuBackend::new(threads).unwrap().with_storage(storage);
        for bad in cases {
            let (mut q, mut k, mut v) = data(&shape, 3);
            for &(tensor, i, x) in bad {
                match tensor {
                    'q' => q[i] = x,
                    'k' => k[i] = x,
                    _ => v[i] = x,
                }
            }
            let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
            let mut out = vec![0.0; inputs.output_len()];
            let want = golden.dense_attention(inputs, &mut out).unwrap_err();
            let got = fast.dense_attention(inputs, &mut out).unwrap_err();
            assert!(matches!(got, HalError::InvalidValue { .. }), "{got}");
            assert_eq!(got.to_string(), want.to_string(), "{storage:?} {bad:?}");
        }
        // The packed buffers are still usable after a refused call.
        let (q, k, v) = data(&shape, 4);
        let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
        let (want, got) = dense_both(&fast, inputs);
        let worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-2, "{storage:?}: {worst}");
    }
}

#[test]
fn a_refused_call_leaves_no_non_finite_value_in_the_reused_packs() {
    // K/V are checked while packed, so a refused call has packed its NaN. A later call whose
    // keys pad to the same size must not meet it in its padding (0 × NaN is NaN).
    let fast = FastCpuBackend::new(1).unwrap();
    let long = AttentionShape::causal(2, 1, 4, 60, 16);
    let (q, mut k, mut v) = data(&long, 5);
    k[59 * 16 + 3] = f32::NAN;
    v[59 * 16 + 3] = f32::INFINITY;
    let inputs = AttentionInputs::new(&q, &k, &v, long).unwrap();
    let mut out = vec![0.0; inputs.output_len()];
    assert!(fast.dense_attention(inputs, &mut out).is_err());
    let short = AttentionShape::causal(2, 1, 4, 50, 16);
    let (q, k, v) = data(&short, 6);
    let inputs = AttentionInputs::new(&q, &k, &v, short).unwrap();
    let (want, got) = dense_both(&fast, inputs);
    for (i, (a, b)) in want.iter().zip(&got).enumerate() {
        assert!((a - b).abs() < 1e-4, "element {i}: golden {a}, fast {b}");
    }
}
