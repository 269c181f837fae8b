//! SIMD primitives behind safe, length-checked wrappers: AVX2+FMA on x86-64 (detected at run
//! time), NEON on aarch64, and a portable fallback. All `unsafe` code of the fast kernels is here.

#![allow(unsafe_code)]

use std::sync::OnceLock;

/// The instruction set the primitives use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX2 with FMA (x86-64).
    Avx2Fma,
    /// NEON (aarch64).
    Neon,
    /// Plain Rust.
    Portable,
}

/// The best instruction set of this machine (detected once).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        if std::env::var_os("SHADOWATTN_PORTABLE_KERNELS").is_some() {
            return Isa::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2Fma;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            return Isa::Neon;
        }
        #[allow(unreachable_code)]
        Isa::Portable
    })
}

/// `Σ a[i]·b[i]` (f32 accumulation in several lanes).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot of unequal lengths");
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected on this CPU; lengths are equal.
        Isa::Avx2Fma => unsafe { x86::dot(a, b) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is part of the aarch64 baseline; lengths are equal.
        Isa::Neon => unsafe { arm::dot(a, b) },
        _ => portable_dot(a, b),
    }
}

/// `y[i] += alpha·x[i]`.
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len(), "axpy of unequal lengths");
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; lengths are equal.
        Isa::Avx2Fma => unsafe { x86::axpy(y, alpha, x) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64; lengths are equal.
        Isa::Neon => unsafe { arm::axpy(y, alpha, x) },
        _ => y
            .iter_mut()
            .zip(x)
            .for_each(|(y, x)| *y = alpha.mul_add(*x, *y)),
    }
}

/// Scores of a block of query rows against `n` keys stored transposed: for each row `r`,
/// `out[r·n + t] = Σ_c q[r][c] · kt[c·stride + t]`, t < n. `n` is a multiple of 8.
pub fn scores_block(q_rows: &[&[f32]], kt: &[f32], stride: usize, n: usize, out: &mut [f32]) {
    let d = q_rows.first().map_or(0, |r| r.len());
    assert!(n % 8 == 0 && out.len() >= q_rows.len() * n);
    assert!(q_rows.iter().all(|r| r.len() == d));
    assert!(
        d == 0 || (d - 1) * stride + n <= kt.len(),
        "transposed tile out of bounds"
    );
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; the bounds were checked above.
        Isa::Avx2Fma => unsafe { x86::scores_block(q_rows, kt, stride, n, out) },
        _ => {
            for (r, q) in q_rows.iter().enumerate() {
                let o = &mut out[r * n..(r + 1) * n];
                o.iter_mut().for_each(|v| *v = 0.0);
                for (c, &qc) in q.iter().enumerate() {
                    let row = &kt[c * stride..c * stride + n];
                    o.iter_mut()
                        .zip(row)
                        .for_each(|(o, k)| *o = qc.mul_add(*k, *o));
                }
            }
        }
    }
}

/// `x ← exp(x)` for every element (vectorized polynomial on AVX2, relative error about 1e-7;
/// `f32::exp` elsewhere). Inputs below −87.3 give the smallest normal result instead of 0.
pub fn exp_inplace(xs: &mut [f32]) {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected.
        Isa::Avx2Fma => unsafe { x86::exp_inplace(xs) },
        _ => xs.iter_mut().for_each(|x| *x = x.exp()),
    }
}

/// `acc[c] += Σ_t w[t] · rows[t·d + c]` for the `w.len()` consecutive rows of `rows` (`acc.len()
/// == d`); the accumulator stays in registers across rows.
pub fn weighted_rows(acc: &mut [f32], w: &[f32], rows: &[f32]) {
    let d = acc.len();
    assert!(rows.len() >= w.len() * d, "rows too short");
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; `rows` holds `w.len()` rows of `d` values.
        Isa::Avx2Fma => unsafe { x86::weighted_rows(acc, w, rows.as_ptr(), |t| t * d) },
        _ => {
            for (t, &wt) in w.iter().enumerate() {
                axpy(acc, wt, &rows[t * d..(t + 1) * d]);
            }
        }
    }
}

/// `acc[c] += Σ_t w[t] · rows[idx[t]·d + c]` (`acc.len() == d`), gathering rows by index.
pub fn weighted_rows_indexed(acc: &mut [f32], w: &[f32], rows: &[f32], idx: &[u32]) {
    let d = acc.len();
    assert_eq!(w.len(), idx.len());
    assert!(
        idx.iter().all(|&j| (j as usize + 1) * d <= rows.len()),
        "row index out of range"
    );
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; every indexed row lies inside `rows`.
        Isa::Avx2Fma => unsafe {
            x86::weighted_rows(acc, w, rows.as_ptr(), |t| {
                *idx.get_unchecked(t) as usize * d
            })
        },
        _ => {
            for (&j, &wt) in idx.iter().zip(w) {
                axpy(acc, wt, &rows[j as usize * d..(j as usize + 1) * d]);
            }
        }
    }
}

/// A peak-FMA probe: `iters` rounds of 12 independent 8-lane FMA chains (AVX2) or the portable
/// equivalent; returns a value that depends on every FMA. FLOPs = iters · 12 · 8 · 2.
pub fn fma_peak_probe(iters: usize) -> f32 {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected.
        Isa::Avx2Fma => unsafe { x86::fma_probe(iters) },
        _ => {
            let mut acc = [1.0f32; 96];
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    *a = a.mul_add(0.999_999, 1e-7);
                }
            }
            acc.iter().sum()
        }
    }
}

fn portable_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for i in 0..chunks {
        for l in 0..8 {
            acc[l] = a[i * 8 + l].mul_add(b[i * 8 + l], acc[l]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s = a[i].mul_add(b[i], s);
    }
    s
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// AVX2 and FMA available; `a.len() == b.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY (whole body): every load reads 8 floats at i < n - 7 (or i < n - 15 for pairs).
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            i += 16;
        }
        if i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(acc0, acc1));
        while i < n {
            s = (*pa.add(i)).mul_add(*pb.add(i), s);
            i += 1;
        }
        s
    }

    /// # Safety
    /// AVX2 and FMA available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_inplace(xs: &mut [f32]) {
        let n = xs.len();
        let p = xs.as_mut_ptr();
        let log2e = _mm256_set1_ps(std::f32::consts::LOG2_E);
        let ln2_hi = _mm256_set1_ps(0.693_359_4);
        let ln2_lo = _mm256_set1_ps(-2.121_944_4e-4);
        let lo = _mm256_set1_ps(-87.3);
        let hi = _mm256_set1_ps(88.7);
        let c = [
            1.987_569_1e-4f32,
            1.398_2e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ];
        let one = _mm256_set1_ps(1.0);
        let mut i = 0;
        while i + 8 <= n {
            let x = _mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(p.add(i)), lo), hi);
            let k = _mm256_round_ps(
                _mm256_mul_ps(x, log2e),
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            );
            let r = _mm256_fnmadd_ps(k, ln2_lo, _mm256_fnmadd_ps(k, ln2_hi, x));
            let mut y = _mm256_set1_ps(c[0]);
            for &ci in &c[1..] {
                y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(ci));
            }
            let r2 = _mm256_mul_ps(r, r);
            y = _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, one));
            let e = _mm256_slli_epi32(
                _mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)),
                23,
            );
            _mm256_storeu_ps(p.add(i), _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
            i += 8;
        }
        while i < n {
            *p.add(i) = (*p.add(i)).exp();
            i += 1;
        }
    }

    /// # Safety
    /// AVX2 and FMA available; for t < w.len(), `rows + offset(t)` starts `acc.len()` readable floats.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn weighted_rows(
        acc: &mut [f32],
        w: &[f32],
        rows: *const f32,
        offset: impl Fn(usize) -> usize,
    ) {
        let d = acc.len();
        let pa = acc.as_mut_ptr();
        let mut c0 = 0;
        // 64 columns (8 registers) of the accumulator at a time stay in registers over all rows.
        while c0 + 8 <= d {
            let width = ((d - c0) / 8).min(8);
            let mut a = [_mm256_setzero_ps(); 8];
            for (j, v) in a.iter_mut().enumerate().take(width) {
                *v = _mm256_loadu_ps(pa.add(c0 + j * 8));
            }
            for (t, &wt) in w.iter().enumerate() {
                let wv = _mm256_set1_ps(wt);
                let row = rows.add(offset(t) + c0);
                for (j, v) in a.iter_mut().enumerate().take(width) {
                    *v = _mm256_fmadd_ps(wv, _mm256_loadu_ps(row.add(j * 8)), *v);
                }
            }
            for (j, v) in a.iter().enumerate().take(width) {
                _mm256_storeu_ps(pa.add(c0 + j * 8), *v);
            }
            c0 += width * 8;
        }
        while c0 < d {
            let mut s = *pa.add(c0);
            for (t, &wt) in w.iter().enumerate() {
                s = wt.mul_add(*rows.add(offset(t) + c0), s);
            }
            *pa.add(c0) = s;
            c0 += 1;
        }
    }

    /// # Safety
    /// AVX2 and FMA available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma_probe(iters: usize) -> f32 {
        let m = _mm256_set1_ps(0.999_999);
        let c = _mm256_set1_ps(1e-7);
        let mut a = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for v in a.iter_mut() {
                *v = _mm256_fmadd_ps(*v, m, c);
            }
        }
        let mut s = _mm256_setzero_ps();
        for v in a {
            s = _mm256_add_ps(s, v);
        }
        hsum(s)
    }

    /// # Safety
    /// AVX2 and FMA available; `y.len() == x.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
        let n = y.len();
        let (py, px) = (y.as_mut_ptr(), x.as_ptr());
        let a = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            let v = _mm256_fmadd_ps(a, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
            _mm256_storeu_ps(py.add(i), v);
            i += 8;
        }
        while i < n {
            *py.add(i) = alpha.mul_add(*px.add(i), *py.add(i));
            i += 1;
        }
    }

    /// # Safety
    /// AVX2 and FMA available; bounds as checked by the caller: every row has `d` values,
    /// `kt` holds `(d − 1)·stride + n` values, `out` holds `rows·n`, `n % 8 == 0`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn scores_block(
        q_rows: &[&[f32]],
        kt: &[f32],
        stride: usize,
        n: usize,
        out: &mut [f32],
    ) {
        let d = q_rows[0].len();
        let pk = kt.as_ptr();
        let po = out.as_mut_ptr();
        // Four rows at a time share each transposed-K load: 8 accumulators of 8 lanes (16 keys).
        let mut r = 0;
        while r < q_rows.len() {
            let rows = (q_rows.len() - r).min(4);
            let mut t = 0;
            while t < n {
                let two = t + 16 <= n;
                let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                for c in 0..d {
                    let k0 = _mm256_loadu_ps(pk.add(c * stride + t));
                    let k1 = if two {
                        _mm256_loadu_ps(pk.add(c * stride + t + 8))
                    } else {
                        k0
                    };
                    for (rr, a) in acc.iter_mut().enumerate().take(rows) {
                        let qv = _mm256_set1_ps(*q_rows[r + rr].get_unchecked(c));
                        a[0] = _mm256_fmadd_ps(qv, k0, a[0]);
                        if two {
                            a[1] = _mm256_fmadd_ps(qv, k1, a[1]);
                        }
                    }
                }
                for (rr, a) in acc.iter().enumerate().take(rows) {
                    _mm256_storeu_ps(po.add((r + rr) * n + t), a[0]);
                    if two {
                        _mm256_storeu_ps(po.add((r + rr) * n + t + 8), a[1]);
                    }
                }
                t += if two { 16 } else { 8 };
            }
            r += rows;
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_weighted_rows_match_plain_loops() {
        let mut xs: Vec<f32> = (0..203).map(|i| -80.0 + i as f32 * 0.41).collect();
        // The reference in f64: f32::exp itself is a few ULP off on some libms (and under Miri).
        let want: Vec<f32> = xs.iter().map(|x| f64::from(*x).exp() as f32).collect();
        exp_inplace(&mut xs);
        // Miri rounds some float intrinsics loosely on purpose; the native bound is ~2.5 ULP.
        let rel = if cfg!(miri) { 2e-6 } else { 3e-7 };
        for (a, e) in xs.iter().zip(&want) {
            assert!(
                (a - e).abs() <= rel * e.abs() + f32::MIN_POSITIVE,
                "{a} vs {e}"
            );
        }
        for d in [1usize, 8, 24, 64, 72, 128, 131] {
            let rows: Vec<f32> = (0..5 * d).map(|i| (i as f32 * 0.07).sin()).collect();
            let w = [0.5f32, -1.0, 2.0, 0.25, 1.5];
            let mut acc = vec![1.0f32; d];
            weighted_rows(&mut acc, &w, &rows);
            let mut acc2 = vec![1.0f32; d];
            weighted_rows_indexed(&mut acc2, &w[..3], &rows, &[4, 0, 2]);
            for c in 0..d {
                let want: f32 = 1.0 + (0..5).map(|t| w[t] * rows[t * d + c]).sum::<f32>();
                assert!((acc[c] - want).abs() < 1e-5, "d={d} c={c}");
                let want2 = 1.0 + w[0] * rows[4 * d + c] + w[1] * rows[c] + w[2] * rows[2 * d + c];
                assert!((acc2[c] - want2).abs() < 1e-5, "d={d} c={c}");
            }
        }
    }

    #[test]
    fn primitives_match_plain_loops() {
        for n in [0usize, 1, 7, 8, 9, 16, 17, 64, 131] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(dot(&a, &b)) - want).abs() < 1e-4, "n={n}");
            let mut y = b.clone();
            axpy(&mut y, 0.5, &a);
            for i in 0..n {
                assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-6);
            }
        }
        let d = 5;
        let n = 24;
        let stride = 40;
        let kt: Vec<f32> = (0..(d - 1) * stride + n)
            .map(|i| (i as f32 * 0.013).sin())
            .collect();
        let rows: Vec<Vec<f32>> = (0..6)
            .map(|r| (0..d).map(|c| (r * d + c) as f32 * 0.1).collect())
            .collect();
        let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        let mut out = vec![0.0; 6 * n];
        scores_block(&refs, &kt, stride, n, &mut out);
        for r in 0..6 {
            for t in 0..n {
                let want: f32 = (0..d).map(|c| rows[r][c] * kt[c * stride + t]).sum();
                assert!((out[r * n + t] - want).abs() < 1e-5);
            }
        }
    }
}
