//! The shared-selection kernels (one key set per GQA group) against the golden reference:
//! the group top-k exactly on INT8, INT32 and f32 scores, sparse attention within the float
//! tolerance of the per-head kernels, on group sizes 1 to 8 and every head-dim class.

use proptest::prelude::*;
use shadowattn_cpu::fast::{FastCpuBackend, KvStorage};
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{
    AttentionInputs, AttentionShape, ComputeBackend, GroupScores, KeyBudget, ScoreData,
    ScoreMatrix, Selection,
};
use shadowattn_test_support::{close_f32, noise};

/// Chunks anywhere in the keys (`q_offset` from 0 to `kv_len − q_len`), causal or not.
fn shapes() -> impl Strategy<Value = (AttentionShape, u64)> {
    (
        prop::sample::select(vec![1usize, 2, 3, 6, 7, 8]),
        (1usize..3, 1usize..20, 0usize..150),
        prop::sample::select(vec![1usize, 3, 8, 31, 64, 128]),
        (0.0f64..=1.0, any::<bool>()),
        any::<u64>(),
    )
        .prop_map(
            |(group, (kv_heads, q_len, prefix), head_dim, (at, causal), seed)| {
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

/// Every head's scores in the three types the pilot can give: INT8 (requantized, many ties),
/// INT32 (accumulators) and f32 (exact).
struct Scores {
    i8s: Vec<Vec<i8>>,
    i32s: Vec<Vec<i32>>,
    f32s: Vec<Vec<f32>>,
}

fn scores(inputs: &AttentionInputs<'_>) -> Scores {
    let h = inputs.shape().q_heads;
    let f32s: Vec<Vec<f32>> = (0..h).map(|h| inputs.exact_scores(h).unwrap()).collect();
    Scores {
        i8s: f32s
            .iter()
            .map(|s| {
                s.iter()
                    .map(|x| (x * 4.0).clamp(-127.0, 127.0) as i8)
                    .collect()
            })
            .collect(),
        i32s: f32s
            .iter()
            .map(|s| s.iter().map(|x| (x * 64.0) as i32).collect())
            .collect(),
        f32s,
    }
}

/// One head's scores of one type, by head.
type HeadData<'a> = Box<dyn Fn(usize) -> ScoreData<'a> + 'a>;

/// One shared selection per KV group from `backend`, for each score type.
fn group_selections<'a>(
    backend: &dyn ComputeBackend,
    shape: &AttentionShape,
    scores: &'a Scores,
    budget: KeyBudget,
) -> Vec<Vec<Selection>> {
    let g = shape.q_heads / shape.kv_heads;
    let typed: [(HeadData<'a>, f32); 3] = [
        (Box::new(|h| ScoreData::I8(&scores.i8s[h])), 0.25),
        (Box::new(|h| ScoreData::I32(&scores.i32s[h])), 1.0 / 64.0),
        (Box::new(|h| ScoreData::F32(&scores.f32s[h])), 1.0),
    ];
    typed
        .iter()
        .map(|(data, dequant)| {
            (0..shape.kv_heads)
                .map(|kv| {
                    let heads = (kv * g..(kv + 1) * g)
                        .map(|h| ScoreMatrix::for_chunk(data(h), shape).unwrap())
                        .collect();
                    let sigma = dequant * shape.scale;
                    let group = GroupScores::new(heads, vec![sigma; g]).unwrap();
                    backend.topk_group(&group, budget).unwrap()
                })
                .collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn group_topk_and_sparse_attention_match_the_golden_reference(
        (shape, seed) in shapes(),
        ratio in 0.01f32..1.0,
        threads in 1usize..3,
    ) {
        let q = noise(seed, shape.q_heads * shape.q_len * shape.head_dim, 2.0);
        let k = noise(seed + 1, shape.kv_heads * shape.kv_len * shape.head_dim, 2.0);
        let v = noise(seed + 2, shape.kv_heads * shape.kv_len * shape.head_dim, 1.0);
        let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
        let (gold, fast) = (CpuBackend::new(), FastCpuBackend::new(threads).unwrap());
        let budget = KeyBudget::Ratio { ratio, min_keys: 2 };
        let s = scores(&inputs);
        let want = group_selections(&gold, &shape, &s, budget);
        let got = group_selections(&fast, &shape, &s, budget);
        prop_assert_eq!(&got, &want);
        for sel in &want {
            let mut o_gold = vec![0.0; inputs.output_len()];
            gold.sparse_attention_grouped(inputs, sel, &mut o_gold).unwrap();
            let mut o_fast = vec![0.0; o_gold.len()];
            fast.sparse_attention_grouped(inputs, sel, &mut o_fast).unwrap();
            prop_assert!(close_f32(&o_fast, &o_gold).is_ok(), "{:?}", close_f32(&o_fast, &o_gold));
        }
    }
}

/// One INT8 row of `n` scores of a kind that stresses the ranking and its top-k: one value
/// repeated (any), a few distinct values (ties in every head, so in the sums), the full range,
/// a cluster at the top or the bottom with rare outliers at the other end.
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

/// A group of `heads` INT8 score matrices (each row of each head of its own kind), rows of 1 to
/// 70 keys or of 2000 and more, causal with the query rows anywhere up to the tail; and each
/// head's logit scale, from tiny (every weight near one) to huge (only the maximum counts).
#[allow(clippy::type_complexity)]
fn int8_groups() -> impl Strategy<Value = (Vec<Vec<i8>>, Vec<f32>, usize, usize, usize)> {
    (
        prop::sample::select(vec![1usize, 2, 6, 7]),
        1usize..5,
        prop_oneof![1usize..71, 2000usize..2100],
        any::<u64>(),
        0.0f64..1.0,
    )
        .prop_flat_map(|(heads, rows, cols, seed, at)| {
            let scales = prop::collection::vec(
                prop::sample::select(vec![1e-6f32, 1e-3, 0.02, 0.1, 0.7, 5.0, 1e3]),
                heads,
            );
            let kinds = prop::collection::vec(any::<u8>(), heads * rows);
            (scales, kinds).prop_map(move |(scales, kinds)| {
                let rows = rows.min(cols);
                let q_offset = ((cols - rows) as f64 * at) as usize;
                let data = (0..heads)
                    .map(|h| {
                        (0..rows)
                            .flat_map(|i| {
                                let seed = seed.wrapping_add((h * rows + i) as u64);
                                int8_row(kinds[h * rows + i], cols, seed)
                            })
                            .collect()
                    })
                    .collect();
                (data, scales, rows, cols, q_offset)
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn int8_group_topk_equals_the_reference_on_ties_extremes_and_every_budget(
        (data, scales, rows, cols, q_offset) in int8_groups(),
        ratio in 0.0f32..1.0,
        threads in 1usize..3,
    ) {
        let heads = data
            .iter()
            .map(|d| ScoreMatrix::causal(ScoreData::I8(d), rows, cols, q_offset).unwrap())
            .collect();
        let group = GroupScores::new(heads, scales).unwrap();
        let (fast, gold) = (FastCpuBackend::new(threads).unwrap(), CpuBackend::new());
        // The shortest row has q_offset + 1 keys: k = 1, n − 1, n of it, one past (refused),
        // all keys of every row, a ratio.
        let n = q_offset + 1;
        let mut budgets = vec![
            KeyBudget::Fixed(1),
            KeyBudget::Fixed(n),
            KeyBudget::Fixed(n + 1),
            KeyBudget::Ratio { ratio: 1.0, min_keys: 1 },
            KeyBudget::Ratio { ratio, min_keys: 1 },
        ];
        if n > 1 {
            budgets.push(KeyBudget::Fixed(n - 1));
        }
        for budget in budgets {
            match (fast.topk_group(&group, budget), gold.topk_group(&group, budget)) {
                (Ok(got), Ok(want)) => prop_assert_eq!(got, want, "{:?}", budget),
                (got, want) => prop_assert!(
                    got.is_err() && want.is_err(),
                    "{:?}: {:?} vs {:?}",
                    budget,
                    got,
                    want
                ),
            }
        }
    }
}

#[test]
fn a_group_ranks_by_the_sum_of_its_heads_probabilities() {
    // Two heads over four keys: head 0 is sure of key 0; head 1 spreads over keys 1 and 2.
    // Sum of probabilities: key 0 ≈ 1.0, keys 1, 2 ≈ 0.5 each, key 3 ≈ 0: one key keeps key 0,
    // two keep 0 and 1 (the tie at the lower index).
    let h0 = [100i8, 0, 0, 0];
    let h1 = [0i8, 100, 100, 0];
    let m = |d: &'static [i8]| ScoreMatrix::new(ScoreData::I8(d), 1, 4, 0, false).unwrap();
    let h0: &'static [i8] = Box::leak(Box::new(h0));
    let h1: &'static [i8] = Box::leak(Box::new(h1));
    let group = GroupScores::new(vec![m(h0), m(h1)], vec![1.0, 1.0]).unwrap();
    for backend in [
        &CpuBackend::new() as &dyn ComputeBackend,
        &FastCpuBackend::new(1).unwrap(),
    ] {
        let one = backend.topk_group(&group, KeyBudget::Fixed(1)).unwrap();
        assert_eq!(one.row(0), &[0], "{}", backend.name());
        let two = backend.topk_group(&group, KeyBudget::Fixed(2)).unwrap();
        assert_eq!(two.row(0), &[0, 1], "{}", backend.name());
        let three = backend.topk_group(&group, KeyBudget::Fixed(3)).unwrap();
        assert_eq!(three.row(0), &[0, 1, 2], "{}", backend.name());
    }
}

#[test]
fn f16_storage_and_bad_selections() {
    let shape = AttentionShape::causal(6, 2, 5, 40, 64);
    let q = noise(1, 6 * 5 * 64, 1.0);
    let k = noise(2, 2 * 40 * 64, 1.0);
    let v = noise(3, 2 * 40 * 64, 1.0);
    let inputs = AttentionInputs::new(&q, &k, &v, shape).unwrap();
    let sel = Selection::all_keys(&shape);
    let shared = vec![sel.clone(), sel];
    let f16 = FastCpuBackend::new(2).unwrap().with_storage(KvStorage::F16);
    let mut got = vec![0.0; inputs.output_len()];
    f16.sparse_attention_grouped(inputs, &shared, &mut got)
        .unwrap();
    let mut dense = vec![0.0; inputs.output_len()];
    CpuBackend::new()
        .dense_attention(inputs, &mut dense)
        .unwrap();
    // f16 rounding of K and V (2^-11 relative) on unit-scale values: well under 1e-2.
    assert!(got.iter().zip(&dense).all(|(a, b)| (a - b).abs() < 1e-2));
    assert!(got.iter().any(|x| x.abs() > 1e-2), "not an all-zero output");
    for backend in [&CpuBackend::new() as &dyn ComputeBackend, &f16] {
        let e = backend
            .sparse_attention_grouped(inputs, &shared[..1], &mut got)
            .unwrap_err();
        assert!(
            e.to_string().contains("1 shared selections for 2 KV heads"),
            "{e}"
        );
        let mut bad = shared.clone();
        bad[1] = Selection::new();
        let e = backend
            .sparse_attention_grouped(inputs, &bad, &mut got)
            .unwrap_err();
        assert!(e.to_string().contains("KV head 1"), "{e}");
    }
}
