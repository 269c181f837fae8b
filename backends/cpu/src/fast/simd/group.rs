//! The primitives of the shared-selection kernels (one key set per GQA group), behind safe,
//! length-checked wrappers: the group's query rows against gathered K rows, the weighted sum of
//! gathered V rows, and the INT8 ranking's steps ([`shadowattn_hal::group`]), bit for bit.

#[cfg(target_arch = "aarch64")]
use super::neon;
use super::{as_slice_of, check_rows, isa, portable, private, Isa, KvElement};
#[cfg(target_arch = "x86_64")]
use super::{has_f16c, x86};

/// `q` is `[g][d]` and `g ≥ 1`: returns `d`.
fn group_dim(q_or_acc: &[f32], g: usize, what: &str) -> usize {
    assert!(
        g > 0 && q_or_acc.len().is_multiple_of(g),
        "{what}: {} values are not {g} rows",
        q_or_acc.len()
    );
    q_or_acc.len() / g
}

/// `out[h·ld + t] = q[h] · rows[idx[t]]` for the `g` rows of `q` (`[g][d]`), `t < idx.len()`:
/// a group's scores against its gathered keys, rows `ld` apart (`ld >= idx.len()`).
pub fn qk_group<T: KvElement>(
    q: &[f32],
    g: usize,
    rows: &[T],
    idx: &[u32],
    out: &mut [f32],
    ld: usize,
) {
    let d = group_dim(q, g, "qk_group");
    assert!(
        ld >= idx.len() && out.len() >= (g - 1) * ld + idx.len(),
        "qk_group: output too short"
    );
    check_rows(rows, d, idx);
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; every indexed row lies inside `rows`; T is f32.
        Isa::Avx2Fma if !<T as private::Sealed>::HALF => unsafe {
            x86::qk_group_f32(q, g, as_slice_of(rows), idx, out, ld)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2, FMA and F16C were detected; every indexed row lies inside `rows`; T is f16.
        Isa::Avx2Fma if has_f16c() => unsafe {
            x86::qk_group_f16(q, g, as_slice_of(rows), idx, out, ld)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline; every indexed row lies inside `rows`; T is f32.
        Isa::Neon if !<T as private::Sealed>::HALF => unsafe {
            neon::qk_group(q, g, as_slice_of(rows), idx, out, ld)
        },
        _ => portable::qk_group(q, g, rows, idx, out, ld),
    }
}

/// `acc[h] += Σ_t p[h·ld + t] · rows[idx[t]]` for the `g` rows of `acc` (`[g][d]`),
/// `t < idx.len() <= ld`: a group's weighted sum of its gathered values.
pub fn pv_group<T: KvElement>(
    p: &[f32],
    ld: usize,
    g: usize,
    rows: &[T],
    idx: &[u32],
    acc: &mut [f32],
) {
    let d = group_dim(acc, g, "pv_group");
    assert!(
        ld >= idx.len() && p.len() >= (g - 1) * ld + idx.len(),
        "pv_group: weights too short"
    );
    check_rows(rows, d, idx);
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; every indexed row lies inside `rows`; T is f32.
        Isa::Avx2Fma if !<T as private::Sealed>::HALF => unsafe {
            x86::pv_group_f32(p, ld, g, as_slice_of(rows), idx, acc)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2, FMA and F16C were detected; every indexed row lies inside `rows`; T is f16.
        Isa::Avx2Fma if has_f16c() => unsafe {
            x86::pv_group_f16(p, ld, g, as_slice_of(rows), idx, acc)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline; every indexed row lies inside `rows`; T is f32.
        Isa::Neon if !<T as private::Sealed>::HALF => unsafe {
            neon::pv_group(p, ld, g, as_slice_of(rows), idx, acc)
        },
        _ => portable::pv_group(p, ld, g, rows, idx, acc),
    }
}

/// `out[j] = group_weight(factor, scores[j] − max)` ([`shadowattn_hal::group::group_weight`],
/// bit for bit) with `max` the largest of the (non-empty) scores; returns `Σ out`.
pub fn weights_i8(scores: &[i8], factor: f32, out: &mut [u32]) -> u64 {
    assert_eq!(out.len(), scores.len(), "weights_i8: one weight per score");
    assert!(!scores.is_empty(), "weights_i8 of no scores");
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; lengths are equal and not zero.
        Isa::Avx2Fma => unsafe { x86::weights_i8(scores, factor, out) },
        _ => portable::weights_i8(scores, factor, out),
    }
}

/// A head's INT8 weights by the score's distance below its row's maximum (INT8 scores are at
/// most 255 below it): entry `d` is `group_weight(factor, −d)`, bit for bit.
#[derive(Clone, Debug)]
pub struct WeightTable {
    factor: f32,
    words: [u32; 256],
    /// Byte `b` of every entry (weights are below 2^21: three bytes), for byte-table lookups.
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    planes: [[u8; 256]; 3],
}

impl WeightTable {
    /// The table of a head whose [`shadowattn_hal::group::exp2_factor`] is `factor`.
    pub fn new(factor: f32) -> Self {
        let words: [u32; 256] =
            std::array::from_fn(|d| shadowattn_hal::group::group_weight(factor, -(d as f32)));
        let planes = std::array::from_fn(|b| std::array::from_fn(|d| (words[d] >> (8 * b)) as u8));
        WeightTable {
            factor,
            words,
            planes,
        }
    }

    /// The weight of a score `d` below its row's maximum.
    pub fn weight(&self, d: u8) -> u32 {
        self.words[usize::from(d)]
    }

    /// The factor the table was made for.
    pub fn factor(&self) -> f32 {
        self.factor
    }
}

/// [`weights_i8`] of a head from its [`WeightTable`]: `out[j]` is the weight of `scores[j]`
/// below the largest of the (non-empty) scores; returns `Σ out`. AVX2 evaluates the cubic on
/// 8 lanes (gathers from the table measured 35–65 % slower per ranked key on Zen 4, scalar
/// lookups about 70 %); NEON looks 16 weights up at a time with byte-table instructions, the
/// portable code one at a time.
pub fn head_weights_i8(scores: &[i8], table: &WeightTable, out: &mut [u32]) -> u64 {
    assert_eq!(
        out.len(),
        scores.len(),
        "head_weights_i8: one weight per score"
    );
    assert!(!scores.is_empty(), "head_weights_i8 of no scores");
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; lengths are equal and not zero.
        Isa::Avx2Fma => unsafe { x86::weights_i8(scores, table.factor, out) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline; lengths are equal and not zero.
        Isa::Neon => unsafe { neon::weights_i8_table(scores, &table.planes, out) },
        _ => portable::weights_i8_table(scores, &table.words, out),
    }
}

/// `acc[j] += f32(weights[j]) · r`, the product and the sum each rounded to f32 (weights
/// below 2^24 convert exactly; the ranking's are at most 2^20).
pub fn add_scaled_weights(acc: &mut [f32], weights: &[u32], r: f32) {
    assert_eq!(
        acc.len(),
        weights.len(),
        "add_scaled_weights: one weight per value"
    );
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was detected; lengths are equal.
        Isa::Avx2Fma => unsafe { x86::add_scaled_weights(acc, weights, r) },
        _ => portable::add_scaled_weights(acc, weights, r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, d: usize) -> Vec<f32> {
        (0..n * d).map(|i| (i as f32 * 0.013).sin()).collect()
    }

    #[test]
    fn group_kernels_match_plain_loops() {
        // Every head-block height of `pv_group` (1 to 6 rows: g = 1..=7), whole and partial
        // 8-lane column blocks and more than one 64-column block. Miri (`ci/miri.sh`) runs
        // the same paths on narrower rows: the interpreter's time grows with g·d.
        let shapes: &[(usize, usize)] = if cfg!(miri) {
            &[(1, 8), (2, 72), (3, 17), (4, 5), (5, 9), (6, 11), (7, 20)]
        } else {
            &[(1, 8), (2, 64), (3, 17), (4, 5), (5, 24), (6, 128), (7, 64)]
        };
        for &(g, d) in shapes {
            let k = rows(23, d);
            let q: Vec<f32> = (0..g * d).map(|i| (i as f32 * 0.11).cos()).collect();
            for idx in [
                &[4u32][..],
                &[0, 3, 5, 9, 22],
                &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
            ] {
                let n = idx.len();
                let ld = n + 3;
                let mut s = vec![f32::NAN; g * ld];
                qk_group(&q, g, &k, idx, &mut s, ld);
                for h in 0..g {
                    for (t, &j) in idx.iter().enumerate() {
                        let want: f32 = (0..d).map(|c| q[h * d + c] * k[j as usize * d + c]).sum();
                        let got = s[h * ld + t];
                        assert!(
                            (got - want).abs() < 1e-4,
                            "g={g} d={d} head {h} key {j}: {got} vs {want}"
                        );
                    }
                }
                let p: Vec<f32> = (0..g * ld).map(|i| (i as f32 * 0.3).sin().abs()).collect();
                let start: Vec<f32> = (0..g * d).map(|i| i as f32 * 0.01).collect();
                let mut acc = start.clone();
                pv_group(&p, ld, g, &k, idx, &mut acc);
                for h in 0..g {
                    for c in 0..d {
                        let want = start[h * d + c]
                            + (0..n)
                                .map(|t| p[h * ld + t] * k[idx[t] as usize * d + c])
                                .sum::<f32>();
                        assert!(
                            (acc[h * d + c] - want).abs() < 1e-4,
                            "g={g} d={d} out {h},{c}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn f16_group_kernels_gather_like_f32() {
        let (g, d) = (3, 24);
        let k = rows(11, d);
        let halves: Vec<half::f16> = k.iter().map(|&x| half::f16::from_f32(x)).collect();
        let widened: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
        let q: Vec<f32> = (0..g * d).map(|i| i as f32 * 0.02 - 0.5).collect();
        let idx = [10u32, 0, 3, 7, 8];
        let (mut a, mut b) = (vec![0.0; g * 5], vec![0.0; g * 5]);
        qk_group(&q, g, &halves, &idx, &mut a, 5);
        qk_group(&q, g, &widened, &idx, &mut b, 5);
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
        let (mut a2, mut b2) = (vec![0.0; g * d], vec![0.0; g * d]);
        pv_group(&a, 5, g, &halves, &idx, &mut a2);
        pv_group(&a, 5, g, &widened, &idx, &mut b2);
        assert!(a2.iter().zip(&b2).all(|(x, y)| (x - y).abs() < 1e-4));
    }

    #[test]
    fn int8_ranking_steps_match_plain_loops_exactly() {
        let factor = shadowattn_hal::group::exp2_factor(0.05);
        // 40 000 weights of up to 2^20 overflow a u32 total; Miri (`ci/miri.sh`) checks the
        // memory accesses of every path (whole vectors and remainders) on the short rows alone.
        let lengths: &[usize] = if cfg!(miri) {
            &[1, 7, 8, 33, 100]
        } else {
            &[1, 7, 8, 33, 100, 40_000]
        };
        for &n in lengths {
            let scores: Vec<i8> = (0..n).map(|i| ((i * 37 + 11) % 256) as u8 as i8).collect();
            let mut w = vec![0u32; n];
            let mut want = vec![0u32; n];
            let total = weights_i8(&scores, factor, &mut w);
            assert_eq!(
                total,
                portable::weights_i8(&scores, factor, &mut want),
                "n={n}"
            );
            assert_eq!(
                w.iter().max(),
                Some(&shadowattn_hal::group::WEIGHT_ONE),
                "n={n}"
            );
            assert_eq!(w, want, "n={n}");
            let table = WeightTable::new(factor);
            let mut by_table = vec![0u32; n];
            assert_eq!(
                head_weights_i8(&scores, &table, &mut by_table),
                total,
                "n={n}"
            );
            assert_eq!(by_table, want, "n={n}");
            let mut acc: Vec<f32> = (0..n).map(|i| i as f32 * 1e-3).collect();
            let mut acc_want = acc.clone();
            add_scaled_weights(&mut acc, &w, 3.3e-7);
            portable::add_scaled_weights(&mut acc_want, &w, 3.3e-7);
            assert_eq!(acc, acc_want, "n={n}: not rounded like the contract");
        }
    }

    #[test]
    fn weight_tables_give_the_contracts_weights_for_every_factor_and_distance() {
        // Tiny factors (every weight near 2^20), huge ones (all but the maximum 0), and between;
        // rows reaching both ends of the INT8 range, whole vectors and remainders, and long
        // enough to flush the vector sums.
        let lengths: &[usize] = if cfg!(miri) {
            &[1, 15, 16, 17, 40]
        } else {
            &[1, 15, 16, 17, 40, 16 * 1023 + 5, 40_000]
        };
        for scale in [1e-6f32, 1e-3, 0.02, 0.3, 5.0, 1e4] {
            let factor = shadowattn_hal::group::exp2_factor(scale);
            let table = WeightTable::new(factor);
            assert_eq!(table.factor(), factor);
            for d in 0..=255u8 {
                let want = shadowattn_hal::group::group_weight(factor, -f32::from(d));
                assert_eq!(table.weight(d), want, "scale {scale}, d {d}");
            }
            for &n in lengths {
                let scores: Vec<i8> = (0..n)
                    .map(|i| match i % 5 {
                        0 => i8::MIN,
                        1 => ((i * 37) % 256) as u8 as i8,
                        _ => (i % 7) as i8 - 3,
                    })
                    .collect();
                let mut want = vec![0u32; n];
                let total = portable::weights_i8(&scores, factor, &mut want);
                for (name, got) in [
                    ("dispatch", {
                        let mut w = vec![0u32; n];
                        let t = head_weights_i8(&scores, &table, &mut w);
                        (t, w)
                    }),
                    ("portable table", {
                        let mut w = vec![0u32; n];
                        let t = portable::weights_i8_table(&scores, &table.words, &mut w);
                        (t, w)
                    }),
                ] {
                    assert_eq!(got.0, total, "{name}: scale {scale}, n {n}");
                    assert_eq!(got.1, want, "{name}: scale {scale}, n {n}");
                }
            }
        }
        // A row of one value: every key is the maximum.
        let table = WeightTable::new(1.0);
        let mut w = vec![0u32; 33];
        assert_eq!(
            head_weights_i8(&[i8::MAX; 33], &table, &mut w),
            33 * u64::from(shadowattn_hal::group::WEIGHT_ONE)
        );
    }
}
