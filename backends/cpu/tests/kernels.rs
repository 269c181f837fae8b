//! The reference compute kernels through the `ComputeBackend` trait: hand-checked cases,
//! the exact sparse/dense identity, and bad input.

use proptest::prelude::*;
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{
    AttentionInputs, AttentionShape, ComputeBackend, HalError, HeadsView, KeyBudget, ScoreData,
    ScoreMatrix, Selection,
};
use shadowattn_test_support::noise;

fn cpu() -> Box<dyn ComputeBackend> {
    Box::new(CpuBackend::new())
}

struct Chunk {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    shape: AttentionShape,
}

impl Chunk {
    fn new(seed: u64, shape: AttentionShape) -> Self {
        let s = &shape;
        Chunk {
            q: noise(seed, s.q_heads * s.q_len * s.head_dim, 3.0),
            k: noise(seed + 1, s.kv_heads * s.kv_len * s.head_dim, 3.0),
            v: noise(seed + 2, s.kv_heads * s.kv_len * s.head_dim, 1.0),
            shape,
        }
    }

    fn inputs(&self) -> AttentionInputs<'_> {
        AttentionInputs::new(&self.q, &self.k, &self.v, self.shape).unwrap()
    }
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn quantize_heads_uses_absmax_scales_and_bucket_scales() {
    let x = [0.5f32, -1.27, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0];
    let q = cpu()
        .quantize_heads(HeadsView::new(&x, 2, 2, 2).unwrap(), None)
        .unwrap();
    assert_eq!(q.scales(), &[0.01, 1.0]);
    assert_eq!(q.head(0), &[50, -127, 0, 1]);
    assert_eq!(q.head(1), &[0, 0, 0, 0]);
    let q = cpu()
        .quantize_heads(HeadsView::new(&x, 2, 2, 2).unwrap(), Some(&[0.005, 2.0]))
        .unwrap();
    assert_eq!(q.head(0), &[100, -128, 0, 2]);
    let e = cpu()
        .quantize_heads(HeadsView::new(&x, 2, 2, 2).unwrap(), Some(&[0.0, 1.0]))
        .unwrap_err();
    assert!(matches!(e, HalError::InvalidQuantization { .. }), "{e}");
    assert!(cpu()
        .quantize_heads(HeadsView::new(&x, 2, 2, 2).unwrap(), Some(&[1.0]))
        .is_err());
    let nan = [f32::NAN, 1.0];
    assert!(matches!(
        cpu().quantize_heads(HeadsView::new(&nan, 1, 1, 2).unwrap(), None),
        Err(HalError::InvalidValue { .. })
    ));
    assert!(HeadsView::new(&x, 3, 1, 2).is_err());
    assert!(HeadsView::new(&[], 0, 1, 2).is_err());
}

#[test]
fn topk_respects_the_causal_prefix_and_keeps_the_lower_index_on_ties() {
    // 3 query rows at positions 2, 3, 4 over 5 keys.
    #[rustfmt::skip]
    let s = [
        5, 5, 1, 9, 9,
        1, 7, 7, 7, 9,
        3, 3, 3, 3, 3,
    ];
    let m = ScoreMatrix::causal(ScoreData::I32(&s), 3, 5, 2).unwrap();
    let sel = cpu().topk(m, KeyBudget::Fixed(2)).unwrap();
    assert_eq!(sel.row(0), &[0, 1]); // keys 3, 4 are in the future
    assert_eq!(sel.row(1), &[1, 2]);
    assert_eq!(sel.row(2), &[0, 1]);
    let e = cpu().topk(m, KeyBudget::Fixed(4)).unwrap_err();
    assert!(e.to_string().contains("query row 0"), "{e}");
    let sel = cpu()
        .topk(
            m,
            KeyBudget::Ratio {
                ratio: 0.5,
                min_keys: 1,
            },
        )
        .unwrap();
    assert_eq!(sel.row(0).len(), 2); // ceil(0.5 · 3)
    assert_eq!(sel.row(2).len(), 3); // ceil(0.5 · 5)
    let f = [1.0f32, f32::NAN];
    let e = cpu()
        .topk(
            ScoreMatrix::causal(ScoreData::F32(&f), 1, 2, 1).unwrap(),
            KeyBudget::Fixed(1),
        )
        .unwrap_err();
    assert!(matches!(e, HalError::InvalidValue { .. }), "{e}");
    assert!(ScoreMatrix::causal(ScoreData::I8(&[1, 2]), 1, 2, 2).is_err());
    assert!(ScoreMatrix::causal(ScoreData::I8(&[1, 2, 3]), 1, 2, 0).is_err());
    assert!(cpu()
        .topk(
            m,
            KeyBudget::Ratio {
                ratio: 2.0,
                min_keys: 1
            }
        )
        .is_err());
}

#[test]
fn gqa_maps_query_heads_onto_kv_heads() {
    let shape = AttentionShape::causal(4, 2, 3, 5, 8);
    let c = Chunk::new(7, shape);
    let mut out = vec![0.0; c.inputs().output_len()];
    cpu().dense_attention(c.inputs(), &mut out).unwrap();
    // Query head 3 must equal single-head attention over KV head 1.
    let one = AttentionShape {
        q_heads: 1,
        kv_heads: 1,
        ..shape
    };
    let per_head = 3 * 8;
    let per_kv = 5 * 8;
    let q3 = &c.q[3 * per_head..4 * per_head];
    let (k1, v1) = (&c.k[per_kv..2 * per_kv], &c.v[per_kv..2 * per_kv]);
    let mut single = vec![0.0; per_head];
    cpu()
        .dense_attention(AttentionInputs::new(q3, k1, v1, one).unwrap(), &mut single)
        .unwrap();
    assert_eq!(&out[3 * per_head..], &single[..]);
}

#[test]
fn first_row_without_prefix_attends_only_to_itself() {
    let shape = AttentionShape {
        q_offset: 0,
        ..AttentionShape::causal(1, 1, 2, 2, 4)
    };
    let c = Chunk::new(3, shape);
    let mut out = vec![0.0; 8];
    cpu().dense_attention(c.inputs(), &mut out).unwrap();
    assert_eq!(&out[..4], &c.v[..4]);
}

#[test]
fn bad_attention_input_is_a_typed_error() {
    let shape = AttentionShape::causal(2, 1, 2, 4, 4);
    let c = Chunk::new(1, shape);
    let mut out = vec![0.0; 16];
    let mut short = vec![0.0; 15];
    assert!(matches!(
        cpu().dense_attention(c.inputs(), &mut short),
        Err(HalError::BufferMismatch { .. })
    ));
    let mut sel = Selection::new();
    sel.push_row(&[0, 1, 2]);
    sel.push_row(&[3]);
    let e = cpu()
        .sparse_attention(c.inputs(), &[sel.clone()], &mut out)
        .unwrap_err();
    assert!(e.to_string().contains("1 selections for 2"), "{e}");
    let mut future = Selection::new();
    future.push_row(&[3]); // row 0 is at position 2: key 3 is in the future
    future.push_row(&[3]);
    let e = cpu()
        .sparse_attention(c.inputs(), &[sel, future], &mut out)
        .unwrap_err();
    assert!(
        e.to_string().contains("head 1") && e.to_string().contains("outside"),
        "{e}"
    );
    let mut nan = Chunk::new(1, shape);
    nan.q[5] = f32::NAN;
    assert!(matches!(
        cpu().dense_attention(nan.inputs(), &mut out),
        Err(HalError::InvalidValue { .. })
    ));
}

/// Chunks anywhere in the keys (`q_offset` from 0 to `kv_len − q_len`), causal or not.
fn shapes() -> impl Strategy<Value = (AttentionShape, u64)> {
    (
        (1usize..4, 1usize..3, 1usize..6, 0usize..8),
        1usize..12,
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

proptest! {
    #[test]
    fn sparse_over_all_keys_equals_dense((shape, seed) in shapes()) {
        let c = Chunk::new(seed, shape);
        let mut dense = vec![0.0; c.inputs().output_len()];
        cpu().dense_attention(c.inputs(), &mut dense).unwrap();
        let all: Vec<Selection> = (0..shape.q_heads)
            .map(|_| {
                let mut s = Selection::new();
                for i in 0..shape.q_len {
                    // Reverse order: the sum must not depend on the order of the keys.
                    let keys: Vec<u32> = (0..shape.valid_keys(i) as u32).rev().collect();
                    s.push_row(&keys);
                }
                s
            })
            .collect();
        let mut sparse = vec![0.0; dense.len()];
        cpu().sparse_attention(c.inputs(), &all, &mut sparse).unwrap();
        prop_assert!(rel_l2(&sparse, &dense) <= 1e-6, "rel err {}", rel_l2(&sparse, &dense));
    }

    #[test]
    fn dense_minus_sparse_is_dropped_mass_times_mean_gap((shape, seed) in shapes(), pick in any::<u64>()) {
        let c = Chunk::new(seed, shape);
        let inputs = c.inputs();
        let d = shape.head_dim;
        let mut dense = vec![0.0; inputs.output_len()];
        cpu().dense_attention(inputs, &mut dense).unwrap();
        let mut bits = noise(pick, shape.q_heads * shape.q_len * shape.kv_len, 1.0).into_iter();
        let mut selections = Vec::new();
        for _ in 0..shape.q_heads {
            let mut s = Selection::new();
            for i in 0..shape.q_len {
                let n = shape.valid_keys(i);
                let mut keys: Vec<u32> = (0..n as u32).filter(|_| bits.next().unwrap() > 0.0).collect();
                if keys.is_empty() {
                    keys.push((n - 1) as u32);
                }
                s.push_row(&keys);
            }
            selections.push(s);
        }
        let mut sparse = vec![0.0; dense.len()];
        cpu().sparse_attention(inputs, &selections, &mut sparse).unwrap();
        for (h, selection) in selections.iter().enumerate() {
            let scores = inputs.exact_scores(h).unwrap();
            let kv = shape.kv_head_of(h);
            for i in 0..shape.q_len {
                let n = shape.valid_keys(i);
                let row = &scores[i * shape.kv_len..i * shape.kv_len + n];
                let logits: Vec<f64> = row.iter().map(|&x| f64::from(x) * f64::from(shape.scale)).collect();
                let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = logits.iter().map(|x| (x - max).exp()).collect();
                let z: f64 = e.iter().sum();
                let p: Vec<f64> = e.iter().map(|x| x / z).collect();
                let chosen: Vec<usize> = selection.row(i).iter().map(|&j| j as usize).collect();
                let m_sel: f64 = chosen.iter().map(|&j| p[j]).sum();
                let tau = 1.0 - m_sel;
                for col in 0..d {
                    let vj = |j: usize| f64::from(c.v[(kv * shape.kv_len + j) * d + col]);
                    let mu_sel: f64 = chosen.iter().map(|&j| p[j] * vj(j)).sum::<f64>() / m_sel;
                    let unsel: Vec<usize> = (0..n).filter(|j| !chosen.contains(j)).collect();
                    let mu_unsel = if tau > 0.0 {
                        unsel.iter().map(|&j| p[j] * vj(j)).sum::<f64>() / tau
                    } else {
                        0.0
                    };
                    let at = (h * shape.q_len + i) * d + col;
                    let lhs = f64::from(dense[at]) - f64::from(sparse[at]);
                    let rhs = tau * (mu_unsel - mu_sel);
                    prop_assert!((lhs - rhs).abs() <= 1e-5, "head {} row {} col {}: {} vs {}", h, i, col, lhs, rhs);
                }
            }
        }
    }

    #[test]
    fn topk_never_selects_past_the_causal_limit(
        rows in 1usize..8, prefix in 0usize..20, ratio in 0.01f32..1.0, seed in any::<u64>(),
    ) {
        let cols = rows + prefix;
        let scores = noise(seed, rows * cols, 1.0);
        let m = ScoreMatrix::causal(ScoreData::F32(&scores), rows, cols, prefix).unwrap();
        let sel = cpu().topk(m, KeyBudget::Ratio { ratio, min_keys: 2 }).unwrap();
        for i in 0..rows {
            let n = prefix + i + 1;
            let row = sel.row(i);
            prop_assert_eq!(row.len(), ((ratio as f64 * n as f64).ceil() as usize).max(2.min(n)).min(n));
            prop_assert!(row.iter().all(|&j| (j as usize) < n));
            // Ascending key order.
            prop_assert!(row.windows(2).all(|w| w[0] < w[1]));
            // Nothing left out scores higher than the lowest kept key, and among keys equal to
            // it the kept ones have the lower indices.
            let lowest = row.iter().map(|&j| scores[i * cols + j as usize]).fold(f32::INFINITY, f32::min);
            for j in (0..n).filter(|j| !row.contains(&(*j as u32))) {
                let s = scores[i * cols + j];
                prop_assert!(s < lowest || (s == lowest && row.iter().filter(|&&r| scores[i * cols + r as usize] == lowest).all(|&r| (r as usize) < j)));
            }
        }
    }

    #[test]
    fn int8_quantization_round_trips_within_half_a_step(xs in proptest::collection::vec(-50.0f32..50.0, 1..96)) {
        let n = xs.len();
        let q = cpu().quantize_heads(HeadsView::new(&xs, 1, 1, n).unwrap(), None).unwrap();
        let s = q.scales()[0];
        for (x, &v) in xs.iter().zip(q.data()) {
            prop_assert!((x - f32::from(v) * s).abs() <= s / 2.0 * (1.0 + 1e-5));
        }
    }
}
