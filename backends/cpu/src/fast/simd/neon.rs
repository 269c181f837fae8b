//! The NEON primitives of aarch64. Every function is `unsafe` only for the intrinsics: NEON is
//! part of the aarch64 baseline, and the safe wrappers in [`super`] check the lengths.

#![allow(unsafe_code)]

use std::arch::aarch64::*;

/// `exp` of four lanes, as the AVX2 `exp8`: range reduction by ln 2 in two parts, a degree-7
/// polynomial, the exponent added to the bits; inputs clamped to [−87.3, 88.7].
#[inline]
unsafe fn exp4(x: float32x4_t) -> float32x4_t {
    let c = [
        1.987_569_1e-4f32,
        1.398_2e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    let x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3)), vdupq_n_f32(88.7));
    let k = vcvtnq_s32_f32(vmulq_n_f32(x, std::f32::consts::LOG2_E));
    let kf = vcvtq_f32_s32(k);
    let r = vfmsq_f32(
        vfmsq_f32(x, kf, vdupq_n_f32(0.693_359_4)),
        kf,
        vdupq_n_f32(-2.121_944_4e-4),
    );
    let mut y = vdupq_n_f32(c[0]);
    for &ci in &c[1..] {
        y = vfmaq_f32(vdupq_n_f32(ci), y, r);
    }
    let r2 = vmulq_f32(r, r);
    y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0)), y, r2);
    let e = vshlq_n_s32::<23>(vaddq_s32(k, vdupq_n_s32(127)));
    vmulq_f32(y, vreinterpretq_f32_s32(e))
}

/// # Safety
/// NEON available (baseline on aarch64).
pub unsafe fn exp_inplace(xs: &mut [f32]) {
    let n = xs.len();
    let p = xs.as_mut_ptr();
    let mut i = 0;
    while i + 4 <= n {
        vst1q_f32(p.add(i), exp4(vld1q_f32(p.add(i))));
        i += 4;
    }
    while i < n {
        *p.add(i) = (*p.add(i)).exp();
        i += 1;
    }
}

/// # Safety
/// `0 < limit <= row.len()`.
pub unsafe fn online_softmax_row(
    row: &mut [f32],
    limit: usize,
    scale: f32,
    max: &mut f32,
    total: &mut f32,
) -> f32 {
    let p = row.as_mut_ptr();
    let whole = limit / 4 * 4;
    let mut m = vdupq_n_f32(f32::NEG_INFINITY);
    let mut i = 0;
    while i < whole {
        m = vmaxq_f32(m, vmulq_n_f32(vld1q_f32(p.add(i)), scale));
        i += 4;
    }
    let mut new_max = max.max(vmaxvq_f32(m));
    for j in whole..limit {
        new_max = new_max.max(*p.add(j) * scale);
    }
    let correction = (*max - new_max).exp();
    let shift = vdupq_n_f32(-new_max);
    let mut sum = vdupq_n_f32(0.0);
    let mut i = 0;
    while i < whole {
        let e = exp4(vfmaq_n_f32(shift, vld1q_f32(p.add(i)), scale));
        sum = vaddq_f32(sum, e);
        vst1q_f32(p.add(i), e);
        i += 4;
    }
    let mut tail = 0.0f32;
    for j in whole..limit {
        let e = (*p.add(j) * scale - new_max).exp();
        *p.add(j) = e;
        tail += e;
    }
    row[limit..].iter_mut().for_each(|x| *x = 0.0);
    *total = *total * correction + vaddvq_f32(sum) + tail;
    *max = new_max;
    correction
}

/// # Safety
/// Sizes as checked by [`super::qk_panel`].
pub unsafe fn qk_panel(q: &[f32], panel: &[f32], out: &mut [f32], ld: usize) {
    use super::{MR, NR};
    let dim = panel.len() / NR;
    let (pq, pk, po) = (q.as_ptr(), panel.as_ptr(), out.as_mut_ptr());
    // Twenty-four accumulators: MR rows × NR keys in 4-lane registers (of 32).
    let mut acc = [[vdupq_n_f32(0.0); 4]; MR];
    for c in 0..dim {
        let k = [
            vld1q_f32(pk.add(c * NR)),
            vld1q_f32(pk.add(c * NR + 4)),
            vld1q_f32(pk.add(c * NR + 8)),
            vld1q_f32(pk.add(c * NR + 12)),
        ];
        for (r, a) in acc.iter_mut().enumerate() {
            let qv = vdupq_n_f32(*pq.add(r * dim + c));
            for (a, k) in a.iter_mut().zip(&k) {
                *a = vfmaq_f32(*a, qv, *k);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        for (j, a) in a.iter().enumerate() {
            vst1q_f32(po.add(r * ld + 4 * j), *a);
        }
    }
}

/// # Safety
/// Sizes as checked by [`super::pv_tile`].
pub unsafe fn pv_tile(p: &[f32], ld: usize, v: &[f32], corr: &[f32; 6], acc: &mut [f32]) {
    use super::{MR, NR};
    let dim = acc.len() / MR;
    let (pp, pv, pa) = (p.as_ptr(), v.as_ptr(), acc.as_mut_ptr());
    let mut c0 = 0;
    while c0 < dim {
        let mut a = [[vdupq_n_f32(0.0); 4]; MR];
        for (r, a) in a.iter_mut().enumerate() {
            for (j, a) in a.iter_mut().enumerate() {
                *a = vmulq_n_f32(vld1q_f32(pa.add(r * dim + c0 + 4 * j)), corr[r]);
            }
        }
        for t in 0..ld {
            let row = pv.add(t * dim + c0);
            let x = [
                vld1q_f32(row),
                vld1q_f32(row.add(4)),
                vld1q_f32(row.add(8)),
                vld1q_f32(row.add(12)),
            ];
            for (r, a) in a.iter_mut().enumerate() {
                let w = vdupq_n_f32(*pp.add(r * ld + t));
                for (a, x) in a.iter_mut().zip(&x) {
                    *a = vfmaq_f32(*a, w, *x);
                }
            }
        }
        for (r, a) in a.iter().enumerate() {
            for (j, a) in a.iter().enumerate() {
                vst1q_f32(pa.add(r * dim + c0 + 4 * j), *a);
            }
        }
        c0 += NR;
    }
}

/// # Safety
/// `a.len() == b.len()`.
pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = vdupq_n_f32(0.0);
    let mut acc1 = vdupq_n_f32(0.0);
    let mut i = 0;
    while i + 8 <= n {
        acc0 = vfmaq_f32(acc0, vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
        acc1 = vfmaq_f32(acc1, vld1q_f32(pa.add(i + 4)), vld1q_f32(pb.add(i + 4)));
        i += 8;
    }
    let mut s = vaddvq_f32(vaddq_f32(acc0, acc1));
    while i < n {
        s = (*pa.add(i)).mul_add(*pb.add(i), s);
        i += 1;
    }
    s
}

/// # Safety
/// `y.len() == x.len()`.
pub unsafe fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    let n = y.len();
    let (py, px) = (y.as_mut_ptr(), x.as_ptr());
    let a = vdupq_n_f32(alpha);
    let mut i = 0;
    while i + 4 <= n {
        vst1q_f32(
            py.add(i),
            vfmaq_f32(vld1q_f32(py.add(i)), a, vld1q_f32(px.add(i))),
        );
        i += 4;
    }
    while i < n {
        *py.add(i) = alpha.mul_add(*px.add(i), *py.add(i));
        i += 1;
    }
}

/// # Safety
/// `q` is `[g][d]`; every `rows[idx[t]·d ..][..d]` is in bounds;
/// `out.len() >= (g − 1)·ld + idx.len()`, `ld >= idx.len()`.
pub unsafe fn qk_group(q: &[f32], g: usize, rows: &[f32], idx: &[u32], out: &mut [f32], ld: usize) {
    let d = q.len() / g;
    let whole = d / 4 * 4;
    let (pq, pr, po) = (q.as_ptr(), rows.as_ptr(), out.as_mut_ptr());
    // Two query rows against four gathered keys: eight FMA chains, each key load used twice.
    for (block, keys) in idx.chunks(4).enumerate() {
        let t = block * 4;
        let mut base = [pr.add(keys[0] as usize * d); 4];
        for (b, &j) in base.iter_mut().zip(keys) {
            *b = pr.add(j as usize * d);
        }
        let mut h = 0;
        while h < g {
            let h1 = (h + 1).min(g - 1);
            let (q0, q1) = (pq.add(h * d), pq.add(h1 * d));
            let mut acc = [vdupq_n_f32(0.0); 8];
            let mut c = 0;
            while c < whole {
                let a = vld1q_f32(q0.add(c));
                let b = vld1q_f32(q1.add(c));
                for l in 0..4 {
                    let k = vld1q_f32(base[l].add(c));
                    acc[l] = vfmaq_f32(acc[l], a, k);
                    acc[4 + l] = vfmaq_f32(acc[4 + l], b, k);
                }
                c += 4;
            }
            let mut sums = [0.0f32; 8];
            for (s, a) in sums.iter_mut().zip(&acc) {
                *s = vaddvq_f32(*a);
            }
            for c in whole..d {
                for l in 0..4 {
                    let k = *base[l].add(c);
                    sums[l] = (*q0.add(c)).mul_add(k, sums[l]);
                    sums[4 + l] = (*q1.add(c)).mul_add(k, sums[4 + l]);
                }
            }
            for l in 0..keys.len() {
                *po.add(h * ld + t + l) = sums[l];
                *po.add(h1 * ld + t + l) = sums[4 + l];
            }
            h += 2;
        }
    }
}

/// # Safety
/// `p` is `[g][ld]` (`ld >= idx.len()`), `acc` is `[g][d]`; every `rows[idx[t]·d ..][..d]` is
/// in bounds.
pub unsafe fn pv_group(p: &[f32], ld: usize, g: usize, rows: &[f32], idx: &[u32], acc: &mut [f32]) {
    let d = acc.len() / g;
    let (pp, pr, pa) = (p.as_ptr(), rows.as_ptr(), acc.as_mut_ptr());
    // Up to six rows × 8 columns in registers over every gathered value row.
    for h0 in (0..g).step_by(6) {
        let rows_here = (g - h0).min(6);
        let mut c0 = 0;
        while c0 + 8 <= d {
            let mut a = [[vdupq_n_f32(0.0); 2]; 6];
            for (r, a) in a.iter_mut().enumerate().take(rows_here) {
                a[0] = vld1q_f32(pa.add((h0 + r) * d + c0));
                a[1] = vld1q_f32(pa.add((h0 + r) * d + c0 + 4));
            }
            for (t, &j) in idx.iter().enumerate() {
                let row = pr.add(j as usize * d + c0);
                let (v0, v1) = (vld1q_f32(row), vld1q_f32(row.add(4)));
                for (r, a) in a.iter_mut().enumerate().take(rows_here) {
                    let w = vdupq_n_f32(*pp.add((h0 + r) * ld + t));
                    a[0] = vfmaq_f32(a[0], w, v0);
                    a[1] = vfmaq_f32(a[1], w, v1);
                }
            }
            for (r, a) in a.iter().enumerate().take(rows_here) {
                vst1q_f32(pa.add((h0 + r) * d + c0), a[0]);
                vst1q_f32(pa.add((h0 + r) * d + c0 + 4), a[1]);
            }
            c0 += 8;
        }
        while c0 < d {
            for r in h0..h0 + rows_here {
                let mut s = *pa.add(r * d + c0);
                for (t, &j) in idx.iter().enumerate() {
                    s = (*pp.add(r * ld + t)).mul_add(*pr.add(j as usize * d + c0), s);
                }
                *pa.add(r * d + c0) = s;
            }
            c0 += 1;
        }
    }
}

/// # Safety
/// NEON available (aarch64 baseline); `a.len() == b.len()`.
pub unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = vdupq_n_s32(0);
    let mut i = 0;
    // SAFETY (whole body): every load reads 16 bytes at i ≤ n − 16. Each i16 product is at most
    // 2^14 and the pairwise accumulate adds two into an i32 lane, so the lanes stay exact.
    while i + 16 <= n {
        let x = vld1q_s8(pa.add(i));
        let y = vld1q_s8(pb.add(i));
        acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(x), vget_low_s8(y)));
        acc = vpadalq_s16(acc, vmull_high_s8(x, y));
        i += 16;
    }
    let mut sum = vaddvq_s32(acc);
    while i < n {
        sum += i32::from(*pa.add(i)) * i32::from(*pb.add(i));
        i += 1;
    }
    sum
}

/// # Safety
/// `qt` is `[d][8]`, `out` is `[idx.len()][8]`; every `rows[idx[t]·d ..][..d]` is in bounds.
pub unsafe fn qk_lanes(qt: &[f32], rows: &[f32], idx: &[u32], out: &mut [f32]) {
    // SAFETY (whole body): each block gets `N` keys of `idx` and the `N · 8` outputs from `t`
    // on, inside `out` (`[idx.len()][8]`).
    let d = qt.len() / 8;
    let (pq, pr, po) = (qt.as_ptr(), rows.as_ptr(), out.as_mut_ptr());
    let mut t = 0;
    while t + 6 <= idx.len() {
        qk_lanes_block::<6>(pq, d, pr, &idx[t..t + 6], po.add(t * 8));
        t += 6;
    }
    while t < idx.len() {
        qk_lanes_block::<1>(pq, d, pr, &idx[t..t + 1], po.add(t * 8));
        t += 1;
    }
}

/// The scores of `N` gathered keys for the eight lanes (two vectors each).
///
/// # Safety
/// As [`qk_lanes`], `keys.len() == N`, `out` starting `N · 8` values.
#[inline(always)]
unsafe fn qk_lanes_block<const N: usize>(
    qt: *const f32,
    d: usize,
    rows: *const f32,
    keys: &[u32],
    out: *mut f32,
) {
    // SAFETY (whole body): every indexed row has `d` values in bounds (the caller's promise),
    // `qt` has `d` columns of 8 lanes and `out` room for `N` of them.
    let mut base = [rows; N];
    for (b, &j) in base.iter_mut().zip(keys) {
        *b = rows.add(j as usize * d);
    }
    let mut acc = [[vdupq_n_f32(0.0); 2]; N];
    for c in 0..d {
        let (q0, q1) = (vld1q_f32(qt.add(c * 8)), vld1q_f32(qt.add(c * 8 + 4)));
        for (a, b) in acc.iter_mut().zip(&base) {
            let x = vld1q_dup_f32(b.add(c));
            a[0] = vfmaq_f32(a[0], q0, x);
            a[1] = vfmaq_f32(a[1], q1, x);
        }
    }
    for (k, a) in acc.iter().enumerate() {
        vst1q_f32(out.add(k * 8), a[0]);
        vst1q_f32(out.add(k * 8 + 4), a[1]);
    }
}

/// # Safety
/// `s.len() == 8 · masks.len()`.
pub unsafe fn softmax_lanes(s: &mut [f32], masks: &[u8], scale: f32) -> [f32; 8] {
    // SAFETY (whole body): `s` holds 8 values for each of the `masks`, read and written at `t · 8`.
    let bits: [u32; 8] = [1, 2, 4, 8, 16, 32, 64, 128];
    let (b0, b1) = (vld1q_u32(bits.as_ptr()), vld1q_u32(bits.as_ptr().add(4)));
    let neg = vdupq_n_f32(f32::NEG_INFINITY);
    let p = s.as_mut_ptr();
    let mut max = [neg; 2];
    for (t, &m) in masks.iter().enumerate() {
        let m = vdupq_n_u32(u32::from(m));
        for (half, b) in [b0, b1].into_iter().enumerate() {
            let at = p.add(t * 8 + half * 4);
            let x = vmulq_n_f32(vld1q_f32(at), scale);
            vst1q_f32(at, x);
            max[half] = vmaxq_f32(max[half], vbslq_f32(vtstq_u32(m, b), x, neg));
        }
    }
    // A lane that keeps no key: any finite maximum, its weights are all masked to 0.
    for mx in &mut max {
        *mx = vbslq_f32(vceqq_f32(*mx, neg), vdupq_n_f32(0.0), *mx);
    }
    let mut total = [vdupq_n_f32(0.0); 2];
    for (t, &m) in masks.iter().enumerate() {
        let m = vdupq_n_u32(u32::from(m));
        for (half, b) in [b0, b1].into_iter().enumerate() {
            let at = p.add(t * 8 + half * 4);
            let e = exp4(vsubq_f32(vld1q_f32(at), max[half]));
            let e = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(e), vtstq_u32(m, b)));
            vst1q_f32(at, e);
            total[half] = vaddq_f32(total[half], e);
        }
    }
    let mut out = [0.0f32; 8];
    vst1q_f32(out.as_mut_ptr(), total[0]);
    vst1q_f32(out.as_mut_ptr().add(4), total[1]);
    out
}

/// # Safety
/// `p` is `[idx.len()][8]`, `acc` is `[d][8]`; every `rows[idx[t]·d ..][..d]` is in bounds.
pub unsafe fn pv_lanes(p: &[f32], rows: &[f32], idx: &[u32], acc: &mut [f32]) {
    // SAFETY (whole body): blocks cover columns `c..c + N <= d` of `acc` (`[d][8]`) and the
    // weights of their keys inside `p` (`[idx.len()][8]`).
    let d = acc.len() / 8;
    let (pp, pr, pa) = (p.as_ptr(), rows.as_ptr(), acc.as_mut_ptr());
    let mut c = 0;
    while c + 6 <= d {
        pv_lanes_block::<6>(pp, pr, d, idx, c, pa);
        c += 6;
    }
    while c < d {
        pv_lanes_block::<1>(pp, pr, d, idx, c, pa);
        c += 1;
    }
}

/// Columns `c0..c0 + N` of the eight lanes' weighted sums over every gathered value row.
///
/// # Safety
/// As [`pv_lanes`], `c0 + N <= d`.
#[inline(always)]
unsafe fn pv_lanes_block<const N: usize>(
    p: *const f32,
    rows: *const f32,
    d: usize,
    idx: &[u32],
    c0: usize,
    acc: *mut f32,
) {
    // SAFETY (whole body): columns `c0..c0 + N` of every indexed row and of `acc` are in
    // bounds, and `p` holds 8 weights for each of `idx` (the caller's promise).
    let mut a = [[vdupq_n_f32(0.0); 2]; N];
    for (k, a) in a.iter_mut().enumerate() {
        a[0] = vld1q_f32(acc.add((c0 + k) * 8));
        a[1] = vld1q_f32(acc.add((c0 + k) * 8 + 4));
    }
    for (t, &j) in idx.iter().enumerate() {
        let (w0, w1) = (vld1q_f32(p.add(t * 8)), vld1q_f32(p.add(t * 8 + 4)));
        let v = rows.add(j as usize * d + c0);
        for (k, a) in a.iter_mut().enumerate() {
            let x = vld1q_dup_f32(v.add(k));
            a[0] = vfmaq_f32(a[0], w0, x);
            a[1] = vfmaq_f32(a[1], w1, x);
        }
    }
    for (k, a) in a.iter().enumerate() {
        vst1q_f32(acc.add((c0 + k) * 8), a[0]);
        vst1q_f32(acc.add((c0 + k) * 8 + 4), a[1]);
    }
}

/// # Safety
/// NEON and FP16 arithmetic available; `p` is `[idx.len()][8]`, `acc` is `[d][8]`; every
/// `rows[idx[t]·d ..][..d]` is in bounds.
#[target_feature(enable = "neon,fp16")]
pub unsafe fn pv_lanes_f16(
    p: &[half::f16],
    rows: &[half::f16],
    idx: &[u32],
    acc: &mut [half::f16],
) {
    // SAFETY (whole body): f16 values are read and written through their u16 bits (same size
    // and alignment); blocks cover columns `c..c + N <= d` of `acc` and `p` holds 8 weights
    // for each of `idx` (the caller's promise).
    let d = acc.len() / 8;
    let (pp, pr, pa) = (
        p.as_ptr().cast::<u16>(),
        rows.as_ptr().cast::<u16>(),
        acc.as_mut_ptr().cast::<u16>(),
    );
    let mut c = 0;
    while c + 8 <= d {
        pv_lanes_f16_block::<8>(pp, pr, d, idx, c, pa);
        c += 8;
    }
    while c < d {
        pv_lanes_f16_block::<1>(pp, pr, d, idx, c, pa);
        c += 1;
    }
}

/// Columns `c0..c0 + N` of [`pv_lanes_f16`]: `N` FP16 FMA chains of eight lanes.
///
/// # Safety
/// As [`pv_lanes_f16`], `c0 + N <= d`.
#[inline]
#[target_feature(enable = "neon,fp16")]
unsafe fn pv_lanes_f16_block<const N: usize>(
    p: *const u16,
    rows: *const u16,
    d: usize,
    idx: &[u32],
    c0: usize,
    acc: *mut u16,
) {
    // SAFETY (whole body): columns `c0..c0 + N` of every indexed row and of `acc` are in
    // bounds, and `p` holds 8 weights for each of `idx` (the caller's promise).
    let mut a = [vreinterpretq_f16_u16(vdupq_n_u16(0)); N];
    for (k, a) in a.iter_mut().enumerate() {
        *a = vreinterpretq_f16_u16(vld1q_u16(acc.add((c0 + k) * 8)));
    }
    for (t, &j) in idx.iter().enumerate() {
        let w = vreinterpretq_f16_u16(vld1q_u16(p.add(t * 8)));
        let v = rows.add(j as usize * d + c0);
        for (k, a) in a.iter_mut().enumerate() {
            *a = vfmaq_f16(*a, w, vreinterpretq_f16_u16(vld1q_dup_u16(v.add(k))));
        }
    }
    for (k, a) in a.iter().enumerate() {
        vst1q_u16(acc.add((c0 + k) * 8), vreinterpretq_u16_f16(*a));
    }
}

/// # Safety
/// NEON available (aarch64 baseline).
pub unsafe fn count_at_least_i8(scores: &[i8], threshold: i8) -> usize {
    let n = scores.len();
    let ps = scores.as_ptr();
    let t = vdupq_n_s8(threshold);
    let mut total = 0;
    let mut j = 0;
    // SAFETY (whole body): every load reads 16 bytes at j ≤ n − 16.
    while j + 16 <= n {
        // Byte counters (a compare gives all ones, −1, per lane): at most 255 vectors each.
        let stop = n.min(j + 255 * 16);
        let mut counts = vdupq_n_u8(0);
        while j + 16 <= stop {
            counts = vsubq_u8(counts, vcgeq_s8(vld1q_s8(ps.add(j)), t));
            j += 16;
        }
        total += usize::from(vaddlvq_u8(counts));
    }
    total + super::portable::count_at_least_i8(&scores[j..], threshold)
}

/// # Safety
/// NEON available (aarch64 baseline); `out.len() == scores.len()`, not empty.
pub unsafe fn weights_i8_table(scores: &[i8], planes: &[[u8; 256]; 3], out: &mut [u32]) -> u64 {
    let n = scores.len();
    let (ps, po) = (scores.as_ptr(), out.as_mut_ptr());
    // SAFETY (whole body): every load reads 16 bytes at j ≤ n − 16, every store writes 4 × 4
    // lanes at j ≤ n − 16 of `out` (as long as `scores`); the tables are 4 × 64 bytes each.
    let mut m = vdupq_n_s8(i8::MIN);
    let mut j = 0;
    while j + 16 <= n {
        m = vmaxq_s8(m, vld1q_s8(ps.add(j)));
        j += 16;
    }
    let mut max = vmaxvq_s8(m);
    while j < n {
        max = max.max(*ps.add(j));
        j += 1;
    }
    let quarter = |b: usize, q: usize| vld1q_u8(planes[b].as_ptr().add(16 * q));
    let t = |b: usize, q: usize| {
        uint8x16x4_t(
            quarter(b, 4 * q),
            quarter(b, 4 * q + 1),
            quarter(b, 4 * q + 2),
            quarter(b, 4 * q + 3),
        )
    };
    let tables: [[uint8x16x4_t; 4]; 3] = [
        [t(0, 0), t(0, 1), t(0, 2), t(0, 3)],
        [t(1, 0), t(1, 1), t(1, 2), t(1, 3)],
        [t(2, 0), t(2, 1), t(2, 2), t(2, 3)],
    ];
    let max_v = vdupq_n_u8(max as u8);
    let (sixty_four, zero) = (vdupq_n_u8(64), vdupq_n_u8(0));
    let mut total = 0u64;
    let mut lanes = vdupq_n_u32(0);
    let mut pending = 0;
    j = 0;
    while j + 16 <= n {
        // max − x in 0..=255, exact in wrapping u8 arithmetic; each byte-table lookup covers
        // 64 entries and leaves the lanes outside them as they were.
        let d0 = vsubq_u8(max_v, vreinterpretq_u8_s8(vld1q_s8(ps.add(j))));
        let d1 = vsubq_u8(d0, sixty_four);
        let d2 = vsubq_u8(d1, sixty_four);
        let d3 = vsubq_u8(d2, sixty_four);
        let byte = |b: usize| {
            let [t0, t1, t2, t3] = tables[b];
            let r = vqtbl4q_u8(t0, d0);
            let r = vqtbx4q_u8(r, t1, d1);
            let r = vqtbx4q_u8(r, t2, d2);
            vqtbx4q_u8(r, t3, d3)
        };
        let (b0, b1, b2) = (byte(0), byte(1), byte(2));
        // Bytes 0 and 1 interleaved are the low halves, byte 2 and zeros the high halves.
        let low = [vzip1q_u8(b0, b1), vzip2q_u8(b0, b1)].map(|v| vreinterpretq_u16_u8(v));
        let high = [vzip1q_u8(b2, zero), vzip2q_u8(b2, zero)].map(|v| vreinterpretq_u16_u8(v));
        let w = [
            vzip1q_u16(low[0], high[0]),
            vzip2q_u16(low[0], high[0]),
            vzip1q_u16(low[1], high[1]),
            vzip2q_u16(low[1], high[1]),
        ]
        .map(|v| vreinterpretq_u32_u16(v));
        for (q, &v) in w.iter().enumerate() {
            vst1q_u32(po.add(j + 4 * q), v);
        }
        lanes = vaddq_u32(
            lanes,
            vaddq_u32(vaddq_u32(w[0], w[1]), vaddq_u32(w[2], w[3])),
        );
        pending += 1;
        // Each lane gains at most 4 · 2^20 per step: 1023 steps fit 32 bits.
        if pending == 1023 {
            total += vaddlvq_u32(lanes);
            lanes = vdupq_n_u32(0);
            pending = 0;
        }
        j += 16;
    }
    total += vaddlvq_u32(lanes);
    while j < n {
        let d = usize::from(max.abs_diff(*ps.add(j)));
        let w =
            u32::from(planes[0][d]) | u32::from(planes[1][d]) << 8 | u32::from(planes[2][d]) << 16;
        *po.add(j) = w;
        total += u64::from(w);
        j += 1;
    }
    total
}

/// # Safety
/// NEON available (aarch64 baseline).
pub unsafe fn count_at_least(keys: &[u32], threshold: u32) -> usize {
    let n = keys.len();
    let pk = keys.as_ptr();
    let t = vdupq_n_u32(threshold);
    // Each lane counts at most n / 4 < 2^32 keys (a compare gives all ones, −1).
    let mut counts = vdupq_n_u32(0);
    let mut j = 0;
    // SAFETY (whole body): every load reads 4 values at j ≤ n − 4.
    while j + 4 <= n {
        counts = vsubq_u32(counts, vcgeq_u32(vld1q_u32(pk.add(j)), t));
        j += 4;
    }
    vaddlvq_u32(counts) as usize + super::portable::count_at_least(&keys[j..], threshold)
}
