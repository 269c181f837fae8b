//! The primitives of the lane-tile sparse-attention kernels, behind safe, length-checked
//! wrappers: up to [`LANES`] query rows side by side in the lanes of a vector, against key and
//! value rows read in place (each key's row broadcast one value at a time), so every gathered
//! row is read once for all the tile's rows.
//!
//! Layouts: `qt` is `[d][LANES]` (the rows' queries transposed), scores and weights `[n][LANES]`
//! (one vector per key), the output `[d][LANES]`.

#[cfg(target_arch = "aarch64")]
use super::neon;
#[cfg(target_arch = "x86_64")]
use super::x86;
use super::{check_rows, isa, portable, Isa};
use half::f16;

/// Query rows one lane tile holds (one AVX2 vector, two NEON vectors of f32).
pub const LANES: usize = 8;

/// `out[t][l] = Σ_c qt[c][l] · rows[idx[t]][c]` for the `d = qt.len() / LANES` columns: every
/// lane's scores against the gathered key rows.
pub fn qk_lanes(qt: &[f32], rows: &[f32], idx: &[u32], out: &mut [f32]) {
    assert!(
        qt.len().is_multiple_of(LANES),
        "qk_lanes: qt must be [d][LANES]"
    );
    let d = qt.len() / LANES;
    assert_eq!(
        out.len(),
        idx.len() * LANES,
        "qk_lanes: out must be [n][LANES]"
    );
    check_rows(rows, d, idx);
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; every indexed row lies inside `rows`; the
        // layouts were checked above.
        Isa::Avx2Fma => unsafe { x86::qk_lanes(qt, rows, idx, out) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64; every indexed row lies inside `rows`; the
        // layouts were checked above.
        Isa::Neon => unsafe { neon::qk_lanes(qt, rows, idx, out) },
        _ => portable::qk_lanes(qt, rows, idx, out),
    }
}

/// The softmax of every lane over the keys whose `masks[t]` has the lane's bit, in place on
/// the scores `s` (`[n][LANES]`): `s ← exp(scale·s − m_l)` with `m_l` the lane's largest
/// scaled score, 0 for the keys the lane does not keep; returns each lane's sum (0 for a lane
/// that keeps no key).
pub fn softmax_lanes(s: &mut [f32], masks: &[u8], scale: f32) -> [f32; LANES] {
    assert_eq!(
        s.len(),
        masks.len() * LANES,
        "softmax_lanes: s must be [n][LANES]"
    );
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; the lengths were checked above.
        Isa::Avx2Fma => unsafe { x86::softmax_lanes(s, masks, scale) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64; the lengths were checked above.
        Isa::Neon => unsafe { neon::softmax_lanes(s, masks, scale) },
        _ => portable::softmax_lanes(s, masks, scale),
    }
}

/// `acc[c][l] += Σ_t p[t][l] · rows[idx[t]][c]` for the `d = acc.len() / LANES` columns:
/// every lane's weighted sum of the gathered value rows.
pub fn pv_lanes(p: &[f32], rows: &[f32], idx: &[u32], acc: &mut [f32]) {
    assert!(
        acc.len().is_multiple_of(LANES),
        "pv_lanes: acc must be [d][LANES]"
    );
    let d = acc.len() / LANES;
    assert_eq!(p.len(), idx.len() * LANES, "pv_lanes: p must be [n][LANES]");
    check_rows(rows, d, idx);
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; every indexed row lies inside `rows`; the
        // layouts were checked above.
        Isa::Avx2Fma => unsafe { x86::pv_lanes(p, rows, idx, acc) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64; every indexed row lies inside `rows`; the
        // layouts were checked above.
        Isa::Neon => unsafe { neon::pv_lanes(p, rows, idx, acc) },
        _ => portable::pv_lanes(p, rows, idx, acc),
    }
}

/// Whether the CPU multiplies and adds FP16 vectors (aarch64 FEAT_FP16, detected once;
/// never elsewhere, where [`pv_lanes_f16`] emulates it).
pub fn has_fp16_arithmetic() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        static FP16: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *FP16.get_or_init(|| isa() == Isa::Neon && std::arch::is_aarch64_feature_detected!("fp16"))
    }
    #[cfg(not(target_arch = "aarch64"))]
    false
}

/// [`pv_lanes`] in FP16 arithmetic: `acc[c][l] ← fma(p[t][l], rows[idx[t]][c], acc[c][l])`
/// for the keys in order, every multiply-add fused and rounded to f16 (NEON FEAT_FP16 where
/// the CPU has it, an exact emulation elsewhere).
pub fn pv_lanes_f16(p: &[f16], rows: &[f16], idx: &[u32], acc: &mut [f16]) {
    assert!(
        acc.len().is_multiple_of(LANES),
        "pv_lanes_f16: acc must be [d][LANES]"
    );
    let d = acc.len() / LANES;
    assert_eq!(
        p.len(),
        idx.len() * LANES,
        "pv_lanes_f16: p must be [n][LANES]"
    );
    check_rows(rows, d, idx);
    #[cfg(target_arch = "aarch64")]
    if has_fp16_arithmetic() {
        // SAFETY: NEON and FP16 arithmetic were detected; every indexed row lies inside
        // `rows`; the layouts were checked above.
        unsafe { neon::pv_lanes_f16(p, rows, idx, acc) };
        return;
    }
    portable::pv_lanes_f16(p, rows, idx, acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded values in about [−amp, amp].
    fn values(n: usize, seed: u32, amp: f32) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.618 + seed as f32 * 1.37).sin() * amp)
            .collect()
    }

    #[test]
    fn lane_primitives_match_the_portable_ones_at_every_width() {
        // Key counts around the vector blocks (12 and 4 keys, 12/4/1 columns) and odd widths.
        // Miri interprets every lane: the widths around the blocks, not the long ones (17
        // columns and 17 keys take every block: 12 + 4 + 1, and two 16-key blocks of `pv_lanes`).
        let cases: &[(usize, usize)] = if cfg!(miri) {
            &[(1, 1), (3, 5), (17, 17)]
        } else {
            &[
                (1, 1),
                (3, 5),
                (8, 12),
                (13, 17),
                (64, 29),
                (128, 4),
                (67, 40),
            ]
        };
        for &(d, n) in cases {
            let rows = values(50 * d, 1, 2.0);
            let qt = values(d * LANES, 2, 1.5);
            let idx: Vec<u32> = (0..n as u32).map(|t| (t * 7 + 3) % 50).collect();
            let (mut got, mut want) = (vec![9.0; n * LANES], vec![9.0; n * LANES]);
            qk_lanes(&qt, &rows, &idx, &mut got);
            portable::qk_lanes(&qt, &rows, &idx, &mut want);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "qk d={d} n={n}: {g} vs {w}"
                );
            }
            let masks: Vec<u8> = (0..n).map(|t| (t as u8).wrapping_mul(37) | 1).collect();
            let mut s_fast = want.clone();
            let tot = softmax_lanes(&mut s_fast, &masks, 0.3);
            let want_tot = portable::softmax_lanes(&mut want, &masks, 0.3);
            for (g, w) in tot.iter().zip(&want_tot) {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs(),
                    "totals d={d} n={n}: {g} vs {w}"
                );
            }
            for (g, w) in s_fast.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-6, "softmax d={d} n={n}: {g} vs {w}");
            }
            let start = values(d * LANES, 3, 1.0);
            let (mut got, mut want_acc) = (start.clone(), start);
            pv_lanes(&s_fast, &rows, &idx, &mut got);
            portable::pv_lanes(&s_fast, &rows, &idx, &mut want_acc);
            for (g, w) in got.iter().zip(&want_acc) {
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "pv d={d} n={n}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn fp16_weighted_sums_round_every_multiply_add_to_f16_in_key_order() {
        // Under qemu (CI's aarch64 run) the CPU has FEAT_FP16: the NEON path must be the one
        // tested, not the emulation.
        #[cfg(target_arch = "aarch64")]
        if std::env::var_os("CI").is_some() && isa() == Isa::Neon {
            assert!(
                has_fp16_arithmetic(),
                "no FP16 arithmetic detected on this aarch64 CPU"
            );
        }
        let h = |x: f32| f16::from_f32(x);
        let cases: &[(usize, usize)] = if cfg!(miri) {
            &[(1, 1), (9, 7)]
        } else {
            &[(1, 1), (9, 7), (64, 300)]
        };
        for &(d, n) in cases {
            let rows: Vec<f16> = values(50 * d, 4, 3.0).into_iter().map(h).collect();
            let p: Vec<f16> = values(n * LANES, 5, 1.0)
                .into_iter()
                .map(|x| h(x.abs()))
                .collect();
            let idx: Vec<u32> = (0..n as u32).map(|t| (t * 13 + 1) % 50).collect();
            let mut got = vec![f16::ZERO; d * LANES];
            pv_lanes_f16(&p, &rows, &idx, &mut got);
            // One lane and column at a time, keys in order: fused multiply-add, one rounding.
            for l in 0..LANES {
                for c in 0..d {
                    let mut a = f16::ZERO;
                    for (t, &j) in idx.iter().enumerate() {
                        let exact = f64::from(p[t * LANES + l])
                            * f64::from(rows[j as usize * d + c])
                            + f64::from(a);
                        a = f16::from_f64(exact);
                    }
                    assert_eq!(got[c * LANES + l], a, "d={d} n={n} lane {l} column {c}");
                }
            }
            // Over hundreds of keys f16 sums drift visibly from f32 ones: the rounding is real.
            if n == 300 {
                let widened: Vec<f32> = rows.iter().map(|x| x.to_f32()).collect();
                let w32: Vec<f32> = p.iter().map(|x| x.to_f32()).collect();
                let mut exact = vec![0.0; d * LANES];
                portable::pv_lanes(&w32, &widened, &idx, &mut exact);
                let moved = got
                    .iter()
                    .zip(&exact)
                    .filter(|(g, e)| g.to_f32() != **e)
                    .count();
                assert!(moved > d * LANES / 2, "{moved} of {} differ", d * LANES);
            }
        }
    }

    #[test]
    #[should_panic(expected = "row index out of range")]
    fn qk_lanes_refuses_a_row_past_the_keys() {
        let (d, rows) = (4, vec![0.0f32; 3 * 4]);
        qk_lanes(&vec![0.0; d * LANES], &rows, &[3], &mut [0.0; LANES]);
    }

    #[test]
    #[should_panic(expected = "row index out of range")]
    fn pv_lanes_refuses_a_row_past_the_keys() {
        let (d, rows) = (4, vec![0.0f32; 3 * 4]);
        pv_lanes(&[0.0; LANES], &rows, &[3], &mut vec![0.0; d * LANES]);
    }

    #[test]
    #[should_panic(expected = "row index out of range")]
    fn pv_lanes_f16_refuses_a_row_past_the_keys() {
        let (d, rows) = (4, vec![f16::ZERO; 3 * 4]);
        pv_lanes_f16(
            &[f16::ZERO; LANES],
            &rows,
            &[3],
            &mut vec![f16::ZERO; d * LANES],
        );
    }

    #[test]
    fn the_portable_primitives_compute_what_they_say() {
        let d = 3;
        let rows: Vec<f32> = (0..4 * d).map(|i| i as f32).collect();
        let mut qt = vec![0.0; d * LANES];
        // Lane 0 queries (1, 0, 0), lane 1 (0, 0, 2); the rest are zero.
        qt[0] = 1.0;
        qt[2 * LANES + 1] = 2.0;
        let idx = [3u32, 1];
        let mut s = vec![0.0; 2 * LANES];
        portable::qk_lanes(&qt, &rows, &idx, &mut s);
        assert_eq!((s[0], s[1], s[LANES], s[LANES + 1]), (9.0, 22.0, 3.0, 10.0));
        // Lane 0 keeps both keys, lane 1 only the second, the others none.
        let totals = portable::softmax_lanes(&mut s, &[0b01, 0b11], 0.5);
        let (e0, e1) = ((0.5f32 * 3.0 - 4.5).exp(), 1.0);
        assert!((s[0] - 1.0).abs() < 1e-6 && (s[LANES] - e0).abs() < 1e-6);
        assert_eq!((s[1], s[LANES + 1]), (0.0, e1));
        assert!((totals[0] - (1.0 + e0)).abs() < 1e-6 && totals[1] == 1.0 && totals[2] == 0.0);
        let mut acc = vec![0.0; d * LANES];
        portable::pv_lanes(&s, &rows, &idx, &mut acc);
        for c in 0..d {
            let want0 = rows[9 + c] + e0 * rows[3 + c];
            assert!((acc[c * LANES] - want0).abs() < 1e-5, "lane 0 column {c}");
            assert_eq!(acc[c * LANES + 1], rows[3 + c], "lane 1 column {c}");
        }
    }
}
