//! K-mean subtraction (`calibration::center_keys`): every exact score of a query row moves by the
//! same constant, so each row's top-k is unchanged (up to ties within f32 rounding), while the
//! keys' quantization scale shrinks when they share an offset.

use proptest::prelude::*;
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{ComputeBackend, KeyBudget, ScoreData, ScoreMatrix};
use shadowattn_sparse_attn::calibration::{absmax_scale, center_keys};

/// Scores `[rows, keys]` in f64 of f32 `q` `[rows, d]` and `k` `[keys, d]`.
fn scores(q: &[f32], k: &[f32], d: usize) -> Vec<f64> {
    q.chunks_exact(d)
        .flat_map(|qi| {
            k.chunks_exact(d).map(move |kj| {
                qi.iter()
                    .zip(kj)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum::<f64>()
            })
        })
        .collect()
}

/// Random causal queries (the last `rows` of `keys` positions) and keys; the keys share a
/// per-dimension offset up to ±`offset`.
fn chunk() -> impl Strategy<Value = (usize, usize, usize, Vec<f32>, Vec<f32>)> {
    (1usize..24, 0usize..32, 1usize..17, 0.0f32..30.0).prop_flat_map(|(rows, extra, d, offset)| {
        let keys = rows + extra;
        (
            Just(rows),
            Just(keys),
            Just(d),
            proptest::collection::vec(-4.0f32..4.0, rows * d),
            proptest::collection::vec(-offset - 1.0..offset + 1.0, d),
            proptest::collection::vec(-1.0f32..1.0, keys * d),
        )
            .prop_map(|(rows, keys, d, q, bias, k)| {
                let k = k
                    .chunks_exact(d)
                    .flat_map(|kj| kj.iter().zip(&bias).map(|(x, b)| x + b))
                    .collect();
                (rows, keys, d, q, k)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(shadowattn_test_support::proptest_cases(256)))]
    #[test]
    fn centering_shifts_each_row_by_one_constant_and_keeps_its_top_k(
        (rows, keys, d, q, k) in chunk(),
        ratio in 0.05f32..1.0,
    ) {
        let centered = center_keys(&k, keys, d);
        let (before, after) = (scores(&q, &k, d), scores(&q, &centered, d));
        let k_max = k.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let budget = KeyBudget::Ratio { ratio, min_keys: 1 };
        let after32: Vec<f32> = after.iter().map(|&x| x as f32).collect();
        let m = ScoreMatrix::causal(ScoreData::F32(&after32), rows, keys, keys - rows)
            .unwrap();
        let picked = CpuBackend::new().topk(m, budget).unwrap();
        for i in 0..rows {
            // Each centered key is within 2 ulp of max|k| of its exact value, so a row's
            // shift varies by at most 2.4e-7·max|k|·Σ|q_i| (bound with 4× margin; a wrong
            // centering moves scores by ~|q|·|k|).
            let q_abs: f64 = q[i * d..(i + 1) * d].iter().map(|x| f64::from(x.abs())).sum();
            let tol = 1e-6 * f64::from(k_max) * q_abs + 1e-12;
            let row = |s: &[f64]| s[i * keys..(i + 1) * keys].to_vec();
            let shifts: Vec<f64> = row(&after).iter().zip(row(&before)).map(|(a, b)| a - b).collect();
            let spread = shifts.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x))
                - shifts.iter().fold(f64::INFINITY, |m, &x| m.min(x));
            prop_assert!(spread <= 2.0 * tol, "row {i}: shifts spread {spread} > {}", 2.0 * tol);
            // The top-k chosen on centered scores is a top-k of the original ones.
            let valid = keys - rows + i + 1;
            let kept = picked.row(i);
            let original = row(&before);
            let kept_min = kept.iter().map(|&j| original[j as usize]).fold(f64::INFINITY, f64::min);
            let dropped_max = (0..valid)
                .filter(|j| !kept.contains(&(*j as u32)))
                .map(|j| original[j])
                .fold(f64::NEG_INFINITY, f64::max);
            // The f32 rounding of the centered scores adds one ulp of their magnitude.
            let round = after.iter().fold(0.0f64, |m, x| m.max(x.abs())) * 2.0 * f64::from(f32::EPSILON);
            prop_assert!(
                kept_min >= dropped_max - 2.0 * tol - round,
                "row {i}: kept {kept_min} below dropped {dropped_max}"
            );
        }
    }
}

#[test]
fn centering_shrinks_the_scale_of_offset_keys_and_leaves_centered_ones_alone() {
    let d = 4;
    let k: Vec<f32> = (0..32)
        .flat_map(|j| (0..d).map(move |c| 10.0 + ((j * 7 + c * 3) % 5) as f32 - 2.0))
        .collect();
    let centered = center_keys(&k, 32, d);
    assert!(
        absmax_scale(&centered) < absmax_scale(&k) / 4.0,
        "{} vs {}",
        absmax_scale(&centered),
        absmax_scale(&k)
    );
    // Every head's mean is now zero, per dimension; centering twice changes nothing.
    for c in 0..d {
        let mean: f32 = centered.iter().skip(c).step_by(d).sum::<f32>() / 32.0;
        assert!(mean.abs() < 1e-5, "dimension {c}: mean {mean}");
    }
    let twice = center_keys(&centered, 32, d);
    for (a, b) in twice.iter().zip(&centered) {
        assert!((a - b).abs() < 1e-5);
    }
    // Two heads are centered separately.
    let two: Vec<f32> = k.iter().chain(&centered).copied().collect();
    let both = center_keys(&two, 32, d);
    for (a, b) in both[..32 * d].iter().zip(&centered) {
        assert!((a - b).abs() < 1e-5);
    }
}
