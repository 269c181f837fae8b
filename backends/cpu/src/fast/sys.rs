//! SIMD primitives behind safe, length-checked wrappers: AVX2+FMA on x86-64 (detected at run
//! time), NEON on aarch64, and a portable fallback. All `unsafe` code of the fast kernels is here.

#![allow(unsafe_code)]

use std::sync::OnceLock;

/// The instruction set the primitives use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX2 with FMA (x86-64); f16 conversions also need F16C, detected separately.
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

/// Query rows per dense micro-kernel call.
pub const MR: usize = 6;

/// Keys (or output columns) per dense micro-kernel call.
pub const NR: usize = 16;

/// Scores of [`MR`] query rows against one panel of [`NR`] keys:
/// `out[r·ld + t] = Σ_c q[r·dim + c] · panel[c·NR + t]`, where `q` is `[MR][dim]` and the panel
/// `[dim][NR]` (K transposed).
pub fn qk_panel(q: &[f32], panel: &[f32], out: &mut [f32], ld: usize) {
    let dim = panel.len() / NR;
    assert!(
        panel.len() == dim * NR && q.len() == MR * dim,
        "qk_panel: q must be [MR][dim] and the panel [dim][NR]"
    );
    assert!(
        ld >= NR && out.len() >= (MR - 1) * ld + NR,
        "qk_panel: output too short"
    );
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; the sizes were checked above.
        Isa::Avx2Fma => unsafe { x86::qk_panel(q, panel, out, ld) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64; the sizes were checked above.
        Isa::Neon => unsafe { arm::qk_panel(q, panel, out, ld) },
        _ => {
            for r in 0..MR {
                let o = &mut out[r * ld..r * ld + NR];
                o.iter_mut().for_each(|x| *x = 0.0);
                for (c, k) in panel.chunks_exact(NR).enumerate() {
                    let qc = q[r * dim + c];
                    o.iter_mut().zip(k).for_each(|(o, k)| *o += qc * k);
                }
            }
        }
    }
}

/// The P·V step of dense attention for [`MR`] rows: `acc[r] ← corr[r]·acc[r] + Σ_t p[r·ld + t] ·
/// v[t]`, for the `ld` rows of `v` (`[ld][dim]`, `dim` a multiple of [`NR`]; `acc` is `[MR][dim]`).
pub fn pv_tile(p: &[f32], ld: usize, v: &[f32], corr: &[f32; MR], acc: &mut [f32]) {
    let dim = acc.len() / MR;
    assert!(
        acc.len() == MR * dim && dim % NR == 0,
        "pv_tile: acc must be [MR][dim], dim a multiple of NR"
    );
    assert!(
        p.len() == MR * ld && v.len() == ld * dim,
        "pv_tile: p must be [MR][ld] and v [ld][dim]"
    );
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; the sizes were checked above.
        Isa::Avx2Fma => unsafe { x86::pv_tile(p, ld, v, corr, acc) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64; the sizes were checked above.
        Isa::Neon => unsafe { arm::pv_tile(p, ld, v, corr, acc) },
        _ => {
            for r in 0..MR {
                let a = &mut acc[r * dim..(r + 1) * dim];
                a.iter_mut().for_each(|x| *x *= corr[r]);
                for (t, row) in v.chunks_exact(dim).enumerate() {
                    let w = p[r * ld + t];
                    a.iter_mut().zip(row).for_each(|(a, x)| *a += w * x);
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
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64.
        Isa::Neon => unsafe { arm::exp_inplace(xs) },
        _ => xs.iter_mut().for_each(|x| *x = x.exp()),
    }
}

/// How K and V values are stored for the gathering kernels: f32, or f16 (half the bytes to
/// gather; accumulation stays f32).
pub trait KvElement: Copy + Send + Sync + private::Sealed {
    /// The value as f32.
    fn value(self) -> f32;
}

impl KvElement for f32 {
    fn value(self) -> f32 {
        self
    }
}

impl KvElement for half::f16 {
    fn value(self) -> f32 {
        self.to_f32()
    }
}

mod private {
    /// Only f32 and f16 are storage types.
    pub trait Sealed {
        /// Whether the type is f16 (else f32).
        const HALF: bool;
    }
    impl Sealed for f32 {
        const HALF: bool = false;
    }
    impl Sealed for half::f16 {
        const HALF: bool = true;
    }
}

/// `rows` seen as a slice of `U`.
///
/// # Safety
/// `T` and `U` are the same type (the callers check [`private::Sealed::HALF`]).
unsafe fn as_slice_of<T: KvElement, U: KvElement>(rows: &[T]) -> &[U] {
    debug_assert_eq!(<T as private::Sealed>::HALF, <U as private::Sealed>::HALF);
    // SAFETY: same type, hence same size, alignment and validity (the caller's promise).
    unsafe { std::slice::from_raw_parts(rows.as_ptr().cast(), rows.len()) }
}

/// Whether the CPU converts f16 in hardware (F16C; detected once).
#[cfg(target_arch = "x86_64")]
fn has_f16c() -> bool {
    static F16C: OnceLock<bool> = OnceLock::new();
    *F16C.get_or_init(|| is_x86_feature_detected!("f16c"))
}

/// Every `idx` names a whole row of `d` values inside `rows`.
fn check_rows<T>(rows: &[T], d: usize, idx: &[u32]) {
    assert!(
        idx.iter().all(|&j| (j as usize + 1) * d <= rows.len()),
        "row index out of range"
    );
}

/// `out[t] = q · rows[idx[t]·d ..][..d]` with `d = q.len()`: the scores of gathered key rows.
pub fn dots_indexed<T: KvElement>(q: &[f32], rows: &[T], idx: &[u32], out: &mut [f32]) {
    let d = q.len();
    assert_eq!(out.len(), idx.len(), "one score per index");
    check_rows(rows, d, idx);
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; every indexed row lies inside `rows`; T is f32.
        Isa::Avx2Fma if !<T as private::Sealed>::HALF => unsafe {
            x86::dots_indexed_f32(q, as_slice_of(rows), idx, out)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2, FMA and F16C were detected; every indexed row lies inside `rows`; T is f16.
        Isa::Avx2Fma if has_f16c() => unsafe {
            x86::dots_indexed_f16(q, as_slice_of(rows), idx, out)
        },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if !<T as private::Sealed>::HALF => {
            // SAFETY: T is f32 (checked just above).
            let rows: &[f32] = unsafe { as_slice_of(rows) };
            for (o, &j) in out.iter_mut().zip(idx) {
                *o = dot(q, &rows[j as usize * d..(j as usize + 1) * d]);
            }
        }
        _ => {
            for (o, &j) in out.iter_mut().zip(idx) {
                let row = &rows[j as usize * d..(j as usize + 1) * d];
                *o = q.iter().zip(row).map(|(q, k)| q * k.value()).sum();
            }
        }
    }
}

/// One step of an online softmax over a row of scores: the first `limit` entries `x` (scaled by
/// `scale`) raise the running maximum `max` if needed, become `exp(scale·x − max)` and join the
/// running sum `total` (rescaled by the returned correction `exp(old max − new max)`); entries
/// at or past `limit` become 0. `0 < limit <= row.len()`, `row.len()` a multiple of 8.
pub fn online_softmax_row(
    row: &mut [f32],
    limit: usize,
    scale: f32,
    max: &mut f32,
    total: &mut f32,
) -> f32 {
    assert!(
        limit > 0 && limit <= row.len() && row.len() % 8 == 0,
        "online_softmax_row: bad limit or length"
    );
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; the lengths were checked above.
        Isa::Avx2Fma => unsafe { x86::online_softmax_row(row, limit, scale, max, total) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64; the lengths were checked above.
        Isa::Neon => unsafe { arm::online_softmax_row(row, limit, scale, max, total) },
        _ => {
            let tile_max = row[..limit]
                .iter()
                .fold(f32::NEG_INFINITY, |a, &x| a.max(x * scale));
            let new_max = max.max(tile_max);
            let correction = (*max - new_max).exp();
            row[..limit]
                .iter_mut()
                .for_each(|x| *x = (*x * scale - new_max).exp());
            row[limit..].iter_mut().for_each(|x| *x = 0.0);
            *total = *total * correction + row[..limit].iter().sum::<f32>();
            *max = new_max;
            correction
        }
    }
}

/// `acc[c] += Σ_t w[t] · rows[idx[t]·d + c]` (`acc.len() == d`), gathering rows by index.
pub fn weighted_rows_indexed<T: KvElement>(acc: &mut [f32], w: &[f32], rows: &[T], idx: &[u32]) {
    let d = acc.len();
    assert_eq!(w.len(), idx.len(), "one weight per index");
    check_rows(rows, d, idx);
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; every indexed row lies inside `rows`; T is f32.
        Isa::Avx2Fma if !<T as private::Sealed>::HALF => unsafe {
            x86::weighted_rows_indexed_f32(acc, w, as_slice_of(rows), idx)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2, FMA and F16C were detected; every indexed row lies inside `rows`; T is f16.
        Isa::Avx2Fma if has_f16c() => unsafe {
            x86::weighted_rows_indexed_f16(acc, w, as_slice_of(rows), idx)
        },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if !<T as private::Sealed>::HALF => {
            // SAFETY: T is f32 (checked just above).
            let rows: &[f32] = unsafe { as_slice_of(rows) };
            for (&j, &wt) in idx.iter().zip(w) {
                axpy(acc, wt, &rows[j as usize * d..(j as usize + 1) * d]);
            }
        }
        _ => {
            for (&j, &wt) in idx.iter().zip(w) {
                let row = &rows[j as usize * d..(j as usize + 1) * d];
                acc.iter_mut()
                    .zip(row)
                    .for_each(|(a, x)| *a += wt * x.value());
            }
        }
    }
}

/// Room a compaction output needs beyond its input's length (whole vectors are stored).
pub const COMPACT_SLACK: usize = 8;

/// The preconditions of every compaction: room for `len` values plus a whole vector in the
/// output, and indices `first..first + len` that fit the 32-bit lanes.
fn check_compaction(len: usize, first: usize, out_len: usize) {
    assert!(
        out_len >= len + COMPACT_SLACK,
        "compaction output too short"
    );
    assert!(
        first + len <= i32::MAX as usize,
        "row too long for 32-bit indices"
    );
}

/// Splits `keys` around the range `[lo, hi]`: returns how many keys exceed `hi` and how many lie
/// inside, the inside ones being copied, in order, to the front of `inside`
/// (`inside.len() >= keys.len() + COMPACT_SLACK`).
pub fn bracket(keys: &[u32], lo: u32, hi: u32, inside: &mut [u32]) -> (usize, usize) {
    assert!(lo <= hi, "empty bracket");
    check_compaction(keys.len(), 0, inside.len());
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was detected; `inside` has room for every key plus a whole vector.
        Isa::Avx2Fma => unsafe { x86::bracket(keys, lo, hi, inside) },
        _ => portable_bracket(keys, lo, hi, inside),
    }
}

/// Writes, in order, `first + j` for the `j` with `keys[j] >= threshold` to the front of `out`
/// (`out.len() >= keys.len() + COMPACT_SLACK`) and returns how many there are.
pub fn indices_at_least(keys: &[u32], first: usize, threshold: u32, out: &mut [u32]) -> usize {
    check_compaction(keys.len(), first, out.len());
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was detected; `out` has room for every index plus a whole vector.
        Isa::Avx2Fma => unsafe { x86::indices_at_least(keys, first, threshold, out) },
        _ => portable_indices_at_least(keys, first, threshold, out),
    }
}

/// [`indices_at_least`] over INT8 scores.
pub fn indices_at_least_i8(scores: &[i8], first: usize, threshold: i8, out: &mut [u32]) -> usize {
    check_compaction(scores.len(), first, out.len());
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was detected; `out` has room for every index plus a whole vector.
        Isa::Avx2Fma => unsafe { x86::indices_at_least_i8(scores, first, threshold, out) },
        _ => portable_indices_at_least_i8(scores, first, threshold, out),
    }
}

fn portable_indices_at_least_i8(
    scores: &[i8],
    first: usize,
    threshold: i8,
    out: &mut [u32],
) -> usize {
    let mut count = 0;
    for (j, &x) in scores.iter().enumerate() {
        out[count] = (first + j) as u32;
        count += usize::from(x >= threshold);
    }
    count
}

fn portable_bracket(keys: &[u32], lo: u32, hi: u32, inside: &mut [u32]) -> (usize, usize) {
    let (mut over, mut count) = (0, 0);
    for &x in keys {
        inside[count] = x;
        count += usize::from(x.wrapping_sub(lo) <= hi - lo);
        over += usize::from(x > hi);
    }
    (over, count)
}

/// The indices (offset by `first`) of `keys` at least `threshold`, compacted into `out`.
fn portable_indices_at_least(keys: &[u32], first: usize, threshold: u32, out: &mut [u32]) -> usize {
    let mut count = 0;
    for (j, &x) in keys.iter().enumerate() {
        out[count] = (first + j) as u32;
        count += usize::from(x >= threshold);
    }
    count
}

/// Lane permutations that move the selected lanes of an 8-lane vector to its front, in order:
/// entry `m` lists the set bits of `m`.
#[cfg(target_arch = "x86_64")]
static COMPACT_LANES: [[u32; 8]; 256] = {
    let mut table = [[0u32; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let (mut lane, mut next) = (0, 0);
        while lane < 8 {
            if (m >> lane) & 1 == 1 {
                table[m][next] = lane as u32;
                next += 1;
            }
            lane += 1;
        }
        m += 1;
    }
    table
};

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

    /// The eight horizontal sums of `v`, as one vector.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum8(v: &[__m256; 8]) -> __m256 {
        let s01 = _mm256_hadd_ps(v[0], v[1]);
        let s23 = _mm256_hadd_ps(v[2], v[3]);
        let s45 = _mm256_hadd_ps(v[4], v[5]);
        let s67 = _mm256_hadd_ps(v[6], v[7]);
        let s0123 = _mm256_hadd_ps(s01, s23);
        let s4567 = _mm256_hadd_ps(s45, s67);
        // Low halves hold lanes 0–3 of each input's partial sums, high halves lanes 4–7.
        _mm256_add_ps(
            _mm256_permute2f128_ps(s0123, s4567, 0x20),
            _mm256_permute2f128_ps(s0123, s4567, 0x31),
        )
    }

    /// Eight stored values as f32 lanes.
    pub trait Load8: super::KvElement {
        /// # Safety
        /// AVX2 and F16C available; `p` starts 8 readable values.
        unsafe fn load8(p: *const Self) -> __m256;
    }

    impl Load8 for f32 {
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn load8(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
    }

    impl Load8 for half::f16 {
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load8(p: *const half::f16) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
        }
    }

    /// # Safety
    /// AVX2 and FMA available; `out.len() == idx.len()`; every `rows[idx[t]·d ..][..d]` is in
    /// bounds, `d = q.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dots_indexed_f32(q: &[f32], rows: &[f32], idx: &[u32], out: &mut [f32]) {
        dots_gather(q, rows.as_ptr(), idx, out)
    }

    /// # Safety
    /// As [`dots_indexed_f32`], and F16C available.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dots_indexed_f16(q: &[f32], rows: &[half::f16], idx: &[u32], out: &mut [f32]) {
        dots_gather(q, rows.as_ptr(), idx, out)
    }

    /// The body of [`dots_indexed_f32`] and [`dots_indexed_f16`], inlined into each (so the
    /// intrinsics are compiled with the caller's features).
    ///
    /// # Safety
    /// As the callers, `rows` being the start of the rows.
    #[inline(always)]
    unsafe fn dots_gather<T: Load8>(q: &[f32], rows: *const T, idx: &[u32], out: &mut [f32]) {
        let d = q.len();
        let whole = d / 8 * 8;
        let (pq, pr) = (q.as_ptr(), rows);
        // Eight keys at a time: eight independent FMA chains share each load of q. A last,
        // partial group repeats its first key in the spare lanes and keeps only its own sums.
        // (Software prefetching of the next group's rows measured no faster.)
        for (group, dst) in idx.chunks(8).zip(out.chunks_mut(8)) {
            let mut base = [pr.add(group[0] as usize * d); 8];
            for (b, &j) in base.iter_mut().zip(group) {
                *b = pr.add(j as usize * d);
            }
            let mut acc = [_mm256_setzero_ps(); 8];
            let mut c = 0;
            while c < whole {
                let qv = _mm256_loadu_ps(pq.add(c));
                for (a, b) in acc.iter_mut().zip(&base) {
                    *a = _mm256_fmadd_ps(qv, T::load8(b.add(c)), *a);
                }
                c += 8;
            }
            if dst.len() == 8 && whole == d {
                _mm256_storeu_ps(dst.as_mut_ptr(), hsum8(&acc));
                continue;
            }
            let mut sums = [0.0f32; 8];
            _mm256_storeu_ps(sums.as_mut_ptr(), hsum8(&acc));
            for ((o, s), b) in dst.iter_mut().zip(sums).zip(&base) {
                *o = s;
                for c in whole..d {
                    *o = (*pq.add(c)).mul_add((*b.add(c)).value(), *o);
                }
            }
        }
    }

    /// # Safety
    /// AVX2 and FMA available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_inplace(xs: &mut [f32]) {
        let n = xs.len();
        let p = xs.as_mut_ptr();
        let mut i = 0;
        while i + 8 <= n {
            _mm256_storeu_ps(p.add(i), exp8(_mm256_loadu_ps(p.add(i))));
            i += 8;
        }
        while i < n {
            *p.add(i) = (*p.add(i)).exp();
            i += 1;
        }
    }

    /// `exp` of eight lanes: range reduction by ln 2 in two parts, a degree-7 polynomial, the
    /// exponent added to the bits; inputs clamped to [−87.3, 88.7].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp8(x: __m256) -> __m256 {
        let c = [
            1.987_569_1e-4f32,
            1.398_2e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ];
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.3)),
            _mm256_set1_ps(88.7),
        );
        let k = _mm256_round_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let r = _mm256_fnmadd_ps(
            k,
            _mm256_set1_ps(-2.121_944_4e-4),
            _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693_359_4), x),
        );
        let mut y = _mm256_set1_ps(c[0]);
        for &ci in &c[1..] {
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(ci));
        }
        let r2 = _mm256_mul_ps(r, r);
        y = _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
        let e = _mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)),
            23,
        );
        _mm256_mul_ps(y, _mm256_castsi256_ps(e))
    }

    /// # Safety
    /// AVX2 and FMA available; `0 < limit <= row.len()`, `row.len() % 8 == 0`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn online_softmax_row(
        row: &mut [f32],
        limit: usize,
        scale: f32,
        max: &mut f32,
        total: &mut f32,
    ) -> f32 {
        let p = row.as_mut_ptr();
        let n = row.len();
        let scale_v = _mm256_set1_ps(scale);
        // Lanes at or past `limit` are masked: −∞ for the maximum, 0 for the weights.
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let valid = |i: usize| {
            _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                _mm256_set1_epi32((limit - i.min(limit)) as i32),
                lane,
            ))
        };
        // Full rows (every tile but the causal edge) need no masks.
        let full = limit == n;
        let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < limit {
            let x = _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), scale_v);
            let x = if full {
                x
            } else {
                _mm256_blendv_ps(_mm256_set1_ps(f32::NEG_INFINITY), x, valid(i))
            };
            m = _mm256_max_ps(m, x);
            i += 8;
        }
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        let new_max = lanes.iter().fold(*max, |a, &b| a.max(b));
        let correction = (*max - new_max).exp();
        let shift = _mm256_set1_ps(-new_max);
        let mut sum = _mm256_setzero_ps();
        let mut i = 0;
        while i < n {
            let e = exp8(_mm256_fmadd_ps(_mm256_loadu_ps(p.add(i)), scale_v, shift));
            let e = if full { e } else { _mm256_and_ps(e, valid(i)) };
            sum = _mm256_add_ps(sum, e);
            _mm256_storeu_ps(p.add(i), e);
            i += 8;
        }
        *total = *total * correction + hsum(sum);
        *max = new_max;
        correction
    }

    /// # Safety
    /// AVX2 and FMA available; `w.len() == idx.len()`; every `rows[idx[t]·d ..][..d]` is in
    /// bounds, `d = acc.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn weighted_rows_indexed_f32(acc: &mut [f32], w: &[f32], rows: &[f32], idx: &[u32]) {
        let d = acc.len();
        weighted_rows(acc, w, rows.as_ptr(), |t| {
            *idx.get_unchecked(t) as usize * d
        })
    }

    /// # Safety
    /// As [`weighted_rows_indexed_f32`], and F16C available.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn weighted_rows_indexed_f16(
        acc: &mut [f32],
        w: &[f32],
        rows: &[half::f16],
        idx: &[u32],
    ) {
        let d = acc.len();
        weighted_rows(acc, w, rows.as_ptr(), |t| {
            *idx.get_unchecked(t) as usize * d
        })
    }

    /// The body of the two callers above, inlined into each.
    ///
    /// # Safety
    /// As the callers: for t < w.len(), `rows + offset(t)` starts `acc.len()` readable values.
    #[inline(always)]
    unsafe fn weighted_rows<T: Load8>(
        acc: &mut [f32],
        w: &[f32],
        rows: *const T,
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
                    *v = _mm256_fmadd_ps(wv, T::load8(row.add(j * 8)), *v);
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
                s = wt.mul_add((*rows.add(offset(t) + c0)).value(), s);
            }
            *pa.add(c0) = s;
            c0 += 1;
        }
    }

    /// Mask of the lanes of `v` that are set (all ones), one bit per 32-bit lane.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn lanes(v: __m256i) -> usize {
        _mm256_movemask_ps(_mm256_castsi256_ps(v)) as usize
    }

    /// Stores the lanes of `v` selected by `mask` to `out`, in order; returns how many.
    ///
    /// # Safety
    /// AVX2 available; `out` has room for 8 values.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store_selected(v: __m256i, mask: usize, out: *mut u32) -> usize {
        let perm = _mm256_loadu_si256(super::COMPACT_LANES[mask].as_ptr().cast());
        _mm256_storeu_si256(out.cast(), _mm256_permutevar8x32_epi32(v, perm));
        mask.count_ones() as usize
    }

    /// # Safety
    /// AVX2 available; `lo <= hi`; `inside.len() >= keys.len() + 8`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn bracket(keys: &[u32], lo: u32, hi: u32, inside: &mut [u32]) -> (usize, usize) {
        let n = keys.len();
        let (pk, po) = (keys.as_ptr(), inside.as_mut_ptr());
        // Unsigned comparisons as signed ones on keys with the top bit flipped.
        let flip = _mm256_set1_epi32(i32::MIN);
        let hi_f = _mm256_set1_epi32((hi ^ 0x8000_0000) as i32);
        let lo_v = _mm256_set1_epi32(lo as i32);
        let width_f = _mm256_set1_epi32(((hi - lo) ^ 0x8000_0000) as i32);
        let (mut over, mut count, mut j) = (0usize, 0usize, 0usize);
        while j + 8 <= n {
            let x = _mm256_loadu_si256(pk.add(j).cast());
            over +=
                lanes(_mm256_cmpgt_epi32(_mm256_xor_si256(x, flip), hi_f)).count_ones() as usize;
            let offset = _mm256_xor_si256(_mm256_sub_epi32(x, lo_v), flip);
            let outside = lanes(_mm256_cmpgt_epi32(offset, width_f));
            count += store_selected(x, !outside & 0xff, po.add(count));
            j += 8;
        }
        let (o, c) = super::portable_bracket(&keys[j..], lo, hi, &mut inside[count..]);
        (over + o, count + c)
    }

    /// # Safety
    /// AVX2 available; `out.len() >= keys.len() + 8`; `first + keys.len() <= i32::MAX`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn indices_at_least(
        keys: &[u32],
        first: usize,
        threshold: u32,
        out: &mut [u32],
    ) -> usize {
        let n = keys.len();
        let (pk, po) = (keys.as_ptr(), out.as_mut_ptr());
        let flip = _mm256_set1_epi32(i32::MIN);
        let t_f = _mm256_set1_epi32((threshold ^ 0x8000_0000) as i32);
        let mut index = _mm256_add_epi32(
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            _mm256_set1_epi32(first as i32),
        );
        let eight = _mm256_set1_epi32(8);
        let (mut count, mut j) = (0usize, 0usize);
        while j + 8 <= n {
            let x = _mm256_xor_si256(_mm256_loadu_si256(pk.add(j).cast()), flip);
            let below = lanes(_mm256_cmpgt_epi32(t_f, x));
            count += store_selected(index, !below & 0xff, po.add(count));
            index = _mm256_add_epi32(index, eight);
            j += 8;
        }
        count
            + super::portable_indices_at_least(&keys[j..], first + j, threshold, &mut out[count..])
    }

    /// # Safety
    /// AVX2 available; `out.len() >= scores.len() + 8`; `first + scores.len() <= i32::MAX`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn indices_at_least_i8(
        scores: &[i8],
        first: usize,
        threshold: i8,
        out: &mut [u32],
    ) -> usize {
        let n = scores.len();
        let (ps, po) = (scores.as_ptr(), out.as_mut_ptr());
        // x >= t  ⇔  x > t − 1 (t > −128 here; t = −128 keeps everything).
        if threshold == i8::MIN {
            return super::portable_indices_at_least_i8(scores, first, threshold, out);
        }
        let below = _mm256_set1_epi8(threshold - 1);
        let eight = _mm256_set1_epi32(8);
        let (mut count, mut j) = (0usize, 0usize);
        while j + 32 <= n {
            let x = _mm256_loadu_si256(ps.add(j).cast());
            let mask = _mm256_movemask_epi8(_mm256_cmpgt_epi8(x, below)) as u32 as usize;
            if mask != 0 {
                let mut index = _mm256_add_epi32(
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                    _mm256_set1_epi32((first + j) as i32),
                );
                for byte in 0..4 {
                    let m = (mask >> (8 * byte)) & 0xff;
                    count += store_selected(index, m, po.add(count));
                    index = _mm256_add_epi32(index, eight);
                }
            }
            j += 32;
        }
        count
            + super::portable_indices_at_least_i8(
                &scores[j..],
                first + j,
                threshold,
                &mut out[count..],
            )
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
    /// AVX2 and FMA available; sizes as checked by [`super::qk_panel`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn qk_panel(q: &[f32], panel: &[f32], out: &mut [f32], ld: usize) {
        use super::{MR, NR};
        let dim = panel.len() / NR;
        let (pq, pk, po) = (q.as_ptr(), panel.as_ptr(), out.as_mut_ptr());
        // Twelve accumulators: MR rows × NR keys; each K load feeds MR FMAs.
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        for c in 0..dim {
            let k0 = _mm256_loadu_ps(pk.add(c * NR));
            let k1 = _mm256_loadu_ps(pk.add(c * NR + 8));
            for (r, a) in acc.iter_mut().enumerate() {
                let qv = _mm256_set1_ps(*pq.add(r * dim + c));
                a[0] = _mm256_fmadd_ps(qv, k0, a[0]);
                a[1] = _mm256_fmadd_ps(qv, k1, a[1]);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(po.add(r * ld), a[0]);
            _mm256_storeu_ps(po.add(r * ld + 8), a[1]);
        }
    }

    /// # Safety
    /// AVX2 and FMA available; sizes as checked by [`super::pv_tile`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn pv_tile(p: &[f32], ld: usize, v: &[f32], corr: &[f32; 6], acc: &mut [f32]) {
        use super::{MR, NR};
        let dim = acc.len() / MR;
        let (pp, pv, pa) = (p.as_ptr(), v.as_ptr(), acc.as_mut_ptr());
        let mut c0 = 0;
        while c0 < dim {
            let mut a = [[_mm256_setzero_ps(); 2]; MR];
            for (r, a) in a.iter_mut().enumerate() {
                let cr = _mm256_set1_ps(corr[r]);
                a[0] = _mm256_mul_ps(_mm256_loadu_ps(pa.add(r * dim + c0)), cr);
                a[1] = _mm256_mul_ps(_mm256_loadu_ps(pa.add(r * dim + c0 + 8)), cr);
            }
            for t in 0..ld {
                let v0 = _mm256_loadu_ps(pv.add(t * dim + c0));
                let v1 = _mm256_loadu_ps(pv.add(t * dim + c0 + 8));
                for (r, a) in a.iter_mut().enumerate() {
                    let w = _mm256_set1_ps(*pp.add(r * ld + t));
                    a[0] = _mm256_fmadd_ps(w, v0, a[0]);
                    a[1] = _mm256_fmadd_ps(w, v1, a[1]);
                }
            }
            for (r, a) in a.iter().enumerate() {
                _mm256_storeu_ps(pa.add(r * dim + c0), a[0]);
                _mm256_storeu_ps(pa.add(r * dim + c0 + 8), a[1]);
            }
            c0 += NR;
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
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
            weighted_rows_indexed(&mut acc, &w, &rows, &[0, 1, 2, 3, 4]);
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
        for d in [3usize, 17] {
            let k: Vec<f32> = (0..20 * d).map(|i| (i as f32 * 0.013).sin()).collect();
            let q: Vec<f32> = (0..d).map(|c| c as f32 * 0.1 - 0.3).collect();
            let idx = [19u32, 0, 7, 7, 3, 11, 2, 5, 8, 1, 4];
            let mut out = vec![0.0; idx.len()];
            dots_indexed(&q, &k, &idx, &mut out);
            for (o, &j) in out.iter().zip(&idx) {
                let want: f32 = (0..d).map(|c| q[c] * k[j as usize * d + c]).sum();
                assert!((o - want).abs() < 1e-5, "d={d} key {j}");
            }
        }
    }

    #[test]
    fn compactions_match_plain_loops() {
        let keys: Vec<u32> = (0..45u32)
            .map(|i| i.wrapping_mul(2_654_435_761) >> 26 | if i % 7 == 0 { 1 << 31 } else { 0 })
            .collect();
        let mut out = vec![0u32; keys.len() + COMPACT_SLACK];
        for (lo, hi) in [
            (0, u32::MAX),
            (10, 40),
            (u32::MAX, u32::MAX),
            (1 << 31, u32::MAX),
        ] {
            let (over, inside) = bracket(&keys, lo, hi, &mut out);
            let want: Vec<u32> = keys
                .iter()
                .copied()
                .filter(|x| (lo..=hi).contains(x))
                .collect();
            assert_eq!(&out[..inside], &want[..], "bracket [{lo}, {hi}]");
            assert_eq!(over, keys.iter().filter(|&&x| x > hi).count());
        }
        for (first, t) in [(0, 0), (5, 33), (0, u32::MAX), (100, 1 << 31)] {
            let count = indices_at_least(&keys, first, t, &mut out);
            let want: Vec<u32> = (0..keys.len())
                .filter(|&j| keys[j] >= t)
                .map(|j| (first + j) as u32)
                .collect();
            assert_eq!(&out[..count], &want[..], "at least {t}");
        }
        let scores: Vec<i8> = (0..70).map(|i: i32| (i * 37 % 256 - 128) as i8).collect();
        let mut out = vec![0u32; scores.len() + COMPACT_SLACK];
        for (first, t) in [(0, i8::MIN), (3, -1), (0, 0), (9, 100), (0, i8::MAX)] {
            let count = indices_at_least_i8(&scores, first, t, &mut out);
            let want: Vec<u32> = (0..scores.len())
                .filter(|&j| scores[j] >= t)
                .map(|j| (first + j) as u32)
                .collect();
            assert_eq!(&out[..count], &want[..], "at least {t}");
        }
    }

    #[test]
    fn f16_rows_are_gathered_like_f32_rows() {
        let d = 19;
        let rows: Vec<f32> = (0..12 * d).map(|i| (i as f32 * 0.17).sin()).collect();
        let halves: Vec<half::f16> = rows.iter().map(|&x| half::f16::from_f32(x)).collect();
        let widened: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
        let q: Vec<f32> = (0..d).map(|c| c as f32 * 0.05 - 0.4).collect();
        let idx = [11u32, 0, 4, 4, 9, 2, 7, 1, 3];
        let (mut got, mut want) = (vec![0.0; idx.len()], vec![0.0; idx.len()]);
        dots_indexed(&q, &halves, &idx, &mut got);
        dots_indexed(&q, &widened, &idx, &mut want);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        let w: Vec<f32> = (0..idx.len()).map(|t| t as f32 * 0.1).collect();
        let (mut got, mut want) = (vec![0.5; d], vec![0.5; d]);
        weighted_rows_indexed(&mut got, &w, &halves, &idx);
        weighted_rows_indexed(&mut want, &w, &widened, &idx);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    #[test]
    fn online_softmax_matches_plain_loops() {
        let mut row: Vec<f32> = (0..24).map(|i| (i as f32 * 0.9).sin() * 3.0).collect();
        let original = row.clone();
        let (mut max, mut total) = (0.5f32, 2.0f32);
        let limit = 19;
        let correction = online_softmax_row(&mut row, limit, 0.7, &mut max, &mut total);
        let want_max = original[..limit]
            .iter()
            .fold(0.5f32, |a, &x| a.max(x * 0.7));
        assert_eq!(max, want_max);
        assert!((correction - (0.5 - want_max).exp()).abs() < 1e-6);
        let mut want_total = 2.0 * correction;
        for (j, (&p, &x)) in row.iter().zip(&original).enumerate() {
            let want = if j < limit {
                (x * 0.7 - want_max).exp()
            } else {
                0.0
            };
            want_total += want;
            assert!((p - want).abs() < 1e-6, "[{j}] {p} vs {want}");
        }
        assert!((total - want_total).abs() < 1e-5);
    }

    #[test]
    fn dense_micro_kernels_match_plain_loops() {
        let (dim, ld) = (2 * NR, 40);
        let q: Vec<f32> = (0..MR * dim).map(|i| (i as f32 * 0.1).cos()).collect();
        let panel: Vec<f32> = (0..dim * NR).map(|i| (i as f32 * 0.013).sin()).collect();
        let mut s = vec![7.0; MR * ld];
        qk_panel(&q, &panel, &mut s[3..], ld);
        for r in 0..MR {
            for t in 0..NR {
                let want: f32 = (0..dim).map(|c| q[r * dim + c] * panel[c * NR + t]).sum();
                assert!((s[3 + r * ld + t] - want).abs() < 1e-4, "score {r},{t}");
            }
            assert_eq!(s[3 + r * ld + NR], 7.0, "nothing written past the panel");
        }
        let p: Vec<f32> = (0..MR * ld)
            .map(|i| (i as f32 * 0.07).sin().abs())
            .collect();
        let v: Vec<f32> = (0..ld * dim).map(|i| (i as f32 * 0.03).cos()).collect();
        let corr = [1.0, 0.5, 0.25, 2.0, 0.0, 1.5];
        let start: Vec<f32> = (0..MR * dim).map(|i| i as f32 * 0.01).collect();
        let mut acc = start.clone();
        pv_tile(&p, ld, &v, &corr, &mut acc);
        for r in 0..MR {
            for c in 0..dim {
                let want = corr[r] * start[r * dim + c]
                    + (0..ld).map(|t| p[r * ld + t] * v[t * dim + c]).sum::<f32>();
                assert!((acc[r * dim + c] - want).abs() < 1e-4, "output {r},{c}");
            }
        }
    }
}
