//! SIMD primitives behind safe, length-checked wrappers that pick the instruction set at run
//! time: AVX2+FMA on x86-64 (`x86.rs`), NEON on aarch64 (`neon.rs`), plain Rust elsewhere
//! (`portable.rs`, also the reference the others are tested against). All `unsafe` code of the
//! fast kernels is in this module.

#![allow(unsafe_code)]

pub mod group;
pub mod lanes;
#[cfg(target_arch = "aarch64")]
mod neon;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

/// The instruction set the primitives use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX2 with FMA and POPCNT (x86-64); f16 conversions also need F16C, detected separately.
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
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("popcnt")
            {
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

/// `Σ a[i]·b[i]` of two i8 rows, exact in i32 for rows shorter than 2^17.
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    assert_eq!(a.len(), b.len(), "dot of unequal lengths");
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was detected on this CPU; lengths are equal.
        Isa::Avx2Fma => unsafe { x86::dot_i8(a, b) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is part of the aarch64 baseline; lengths are equal.
        Isa::Neon => unsafe { neon::dot_i8(a, b) },
        _ => portable::dot_i8(a, b),
    }
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
        Isa::Neon => unsafe { neon::dot(a, b) },
        _ => portable::dot(a, b),
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
        Isa::Neon => unsafe { neon::axpy(y, alpha, x) },
        _ => portable::axpy(y, alpha, x),
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
        Isa::Neon => unsafe { neon::qk_panel(q, panel, out, ld) },
        _ => portable::qk_panel(q, panel, out, ld),
    }
}

/// The P·V step of dense attention for [`MR`] rows: `acc[r] ← corr[r]·acc[r] + Σ_t p[r·ld + t] ·
/// v[t]`, for the `ld` rows of `v` (`[ld][dim]`, `dim` a multiple of [`NR`]; `acc` is `[MR][dim]`).
pub fn pv_tile(p: &[f32], ld: usize, v: &[f32], corr: &[f32; MR], acc: &mut [f32]) {
    let dim = acc.len() / MR;
    assert!(
        acc.len() == MR * dim && dim.is_multiple_of(NR),
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
        Isa::Neon => unsafe { neon::pv_tile(p, ld, v, corr, acc) },
        _ => portable::pv_tile(p, ld, v, corr, acc),
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
        Isa::Neon => unsafe { neon::exp_inplace(xs) },
        _ => portable::exp_inplace(xs),
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

/// The rows as f32 when they are stored as f32 (`None` for f16 storage).
pub fn f32_rows<T: KvElement>(rows: &[T]) -> Option<&[f32]> {
    if <T as private::Sealed>::HALF {
        return None;
    }
    // SAFETY: T is f32 (checked just above).
    Some(unsafe { as_slice_of(rows) })
}

/// The rows as f16 when they are stored as f16 (`None` for f32 storage).
pub fn f16_rows<T: KvElement>(rows: &[T]) -> Option<&[half::f16]> {
    if !<T as private::Sealed>::HALF {
        return None;
    }
    // SAFETY: T is f16 (checked just above).
    Some(unsafe { as_slice_of(rows) })
}

/// The rows `idx` of `rows` (`d` values each) rounded to f16, one after another, into `out`.
pub fn narrow_rows<T: KvElement>(rows: &[T], d: usize, idx: &[u32], out: &mut Vec<half::f16>) {
    use half::slice::HalfFloatSliceExt;
    check_rows(rows, d, idx);
    out.clear();
    out.resize(idx.len() * d, half::f16::ZERO);
    for (o, &j) in out.chunks_exact_mut(d).zip(idx) {
        let at = j as usize * d..(j as usize + 1) * d;
        match (f32_rows(rows), f16_rows(rows)) {
            (Some(f), _) => o.convert_from_f32_slice(&f[at]),
            (_, Some(h)) => o.copy_from_slice(&h[at]),
            _ => unreachable!("K/V are stored as f32 or f16"),
        }
    }
}

/// The rows `idx` of `rows` (`d` values each) widened to f32, one after another, into `out`.
pub fn widen_rows<T: KvElement>(rows: &[T], d: usize, idx: &[u32], out: &mut Vec<f32>) {
    use half::slice::HalfFloatSliceExt;
    check_rows(rows, d, idx);
    out.clear();
    out.resize(idx.len() * d, 0.0);
    for (o, &j) in out.chunks_exact_mut(d).zip(idx) {
        let at = j as usize * d..(j as usize + 1) * d;
        match (f32_rows(rows), f16_rows(rows)) {
            (Some(f), _) => o.copy_from_slice(&f[at]),
            (_, Some(h)) => h[at].convert_to_f32_slice(o),
            _ => unreachable!("K/V are stored as f32 or f16"),
        }
    }
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
        _ => portable::dots_indexed(q, rows, idx, out),
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
        limit > 0 && limit <= row.len() && row.len().is_multiple_of(8),
        "online_softmax_row: bad limit or length"
    );
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected; the lengths were checked above.
        Isa::Avx2Fma => unsafe { x86::online_softmax_row(row, limit, scale, max, total) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64; the lengths were checked above.
        Isa::Neon => unsafe { neon::online_softmax_row(row, limit, scale, max, total) },
        _ => portable::online_softmax_row(row, limit, scale, max, total),
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
        _ => portable::weighted_rows_indexed(acc, w, rows, idx),
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
        // SAFETY: AVX2 and POPCNT were detected (`isa`); `inside` has room for every key plus a whole vector.
        Isa::Avx2Fma => unsafe { x86::bracket(keys, lo, hi, inside) },
        _ => portable::bracket(keys, lo, hi, inside),
    }
}

/// Writes, in order, `first + j` for the `j` with `keys[j] >= threshold` to the front of `out`
/// (`out.len() >= keys.len() + COMPACT_SLACK`) and returns how many there are.
pub fn indices_at_least(keys: &[u32], first: usize, threshold: u32, out: &mut [u32]) -> usize {
    check_compaction(keys.len(), first, out.len());
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and POPCNT were detected (`isa`); `out` has room for every index plus a whole vector.
        Isa::Avx2Fma => unsafe { x86::indices_at_least(keys, first, threshold, out) },
        _ => portable::indices_at_least(keys, first, threshold, out),
    }
}

/// How many of `keys` are at least `threshold`.
pub fn count_at_least(keys: &[u32], threshold: u32) -> usize {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was detected.
        Isa::Avx2Fma => unsafe { x86::count_at_least(keys, threshold) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64.
        Isa::Neon => unsafe { neon::count_at_least(keys, threshold) },
        _ => portable::count_at_least(keys, threshold),
    }
}

/// How many of the INT8 `scores` are at least `threshold`.
pub fn count_at_least_i8(scores: &[i8], threshold: i8) -> usize {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 was detected.
        Isa::Avx2Fma => unsafe { x86::count_at_least_i8(scores, threshold) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is baseline on aarch64.
        Isa::Neon => unsafe { neon::count_at_least_i8(scores, threshold) },
        _ => portable::count_at_least_i8(scores, threshold),
    }
}

/// Writes, in order, `first + j` for the `j` with `scores[j] > threshold` and for the first
/// `ties` of those with `scores[j] == threshold` to the front of `out`
/// (`out.len() >= scores.len() + COMPACT_SLACK`) and returns how many there are.
pub fn indices_top_i8(
    scores: &[i8],
    first: usize,
    threshold: i8,
    ties: usize,
    out: &mut [u32],
) -> usize {
    check_compaction(scores.len(), first, out.len());
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and POPCNT were detected (`isa`); `out` has room for every index plus a whole vector.
        Isa::Avx2Fma => unsafe { x86::indices_top_i8(scores, first, threshold, ties, out) },
        _ => portable::indices_top_i8(scores, first, threshold, ties, out),
    }
}

/// A peak-FMA probe: `iters` rounds of 12 independent 8-lane FMA chains (AVX2) or the portable
/// equivalent; returns a value that depends on every FMA. FLOPs = iters · 12 · 8 · 2.
pub fn fma_peak_probe(iters: usize) -> f32 {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA were detected.
        Isa::Avx2Fma => unsafe { x86::fma_probe(iters) },
        _ => portable::fma_probe(iters),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miri_runs_the_vector_paths_its_target_features_enable() {
        // Under Miri run-time detection reports exactly the compile-time target features, so
        // `ci/miri.sh`'s AVX2 run must enable every feature `isa` asks for (POPCNT is not
        // implied by AVX2) or it silently checks the portable path a second time. (F16C is
        // left out there: Miri cannot run the `half` crate's F16C conversions.)
        if cfg!(all(miri, target_arch = "x86_64", target_feature = "avx2")) {
            assert_eq!(
                isa(),
                Isa::Avx2Fma,
                "AVX2 is enabled but the kernels run the portable path: enable fma and popcnt too"
            );
        }
    }

    #[test]
    fn the_int8_dot_is_exact_at_every_length_and_at_the_extremes() {
        // Miri interprets every byte: a long row of 512 (16 rounds of the 32-byte loop) there.
        let long = if cfg!(miri) { 512 } else { 4096 };
        for n in [0, 1, 15, 16, 17, 31, 32, 33, 100, long] {
            let a: Vec<i8> = (0..n).map(|i| (i * 37 % 256) as u8 as i8).collect();
            let b: Vec<i8> = (0..n).map(|i| (i * 91 % 256 + 5) as u8 as i8).collect();
            assert_eq!(dot_i8(&a, &b), portable::dot_i8(&a, &b), "n = {n}");
        }
        let lows = vec![i8::MIN; long];
        assert_eq!(dot_i8(&lows, &lows), long as i32 * 16384);
        let highs = vec![i8::MAX; long];
        assert_eq!(dot_i8(&lows, &highs), -(long as i32) * 128 * 127);
    }

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
        // Every length up to 70 (whole vectors and remainders), every threshold class (both
        // ends of the range, the row's own values) and tie budgets from none to all.
        // Past 64 too: the portable compaction finds its cut by blocks of 64.
        // Miri interprets every byte of every call: there, the lengths around the 32-lane
        // vectors and the 64-blocks (0, 1, and one short of, at and one past one and two
        // vectors) and the threshold classes once each (both ends of the range, -1 and 3,
        // values of both rows and ties in the second).
        let (lengths, thresholds): (Vec<usize>, &[i8]) = if cfg!(miri) {
            (
                vec![0, 1, 31, 32, 33, 63, 64, 65],
                &[i8::MIN, -1, 3, i8::MAX],
            )
        } else {
            (
                (0..=70usize).chain([127, 128, 129, 200]).collect(),
                &[i8::MIN, -1, 0, 3, 100, i8::MAX],
            )
        };
        for n in lengths {
            let scores: Vec<i8> = (0..n).map(|i| ((i * 37) % 256) as u8 as i8).collect();
            let ties: Vec<i8> = (0..n).map(|i| [3i8, -1, 3, 3, 127][i % 5]).collect();
            let mut out = vec![0u32; n + COMPACT_SLACK];
            for row in [&scores, &ties] {
                for &t in thresholds {
                    let count = count_at_least_i8(row, t);
                    assert_eq!(count, portable::count_at_least_i8(row, t), "n={n} t={t}");
                    assert_eq!(
                        count,
                        row.iter().filter(|&&x| x >= t).count(),
                        "n={n} t={t}"
                    );
                    let equal = row.iter().filter(|&&x| x == t).count();
                    for (first, kept) in [(0, 0), (9, 1), (0, equal / 2), (4, equal), (0, n + 1)] {
                        let got = indices_top_i8(row, first, t, kept, &mut out);
                        let mut by_portable = vec![0u32; n + COMPACT_SLACK];
                        let count = portable::indices_top_i8(row, first, t, kept, &mut by_portable);
                        assert_eq!(
                            &by_portable[..count],
                            &out[..got],
                            "n={n} t={t} ties={kept}"
                        );
                        let mut left = kept;
                        let want: Vec<u32> = (0..n)
                            .filter(|&j| {
                                let tie = row[j] == t && left > 0;
                                left -= usize::from(tie);
                                row[j] > t || tie
                            })
                            .map(|j| (first + j) as u32)
                            .collect();
                        assert_eq!(&out[..got], &want[..], "n={n} t={t} ties={kept}");
                    }
                }
            }
        }
    }

    #[test]
    fn int8_counts_hold_more_than_255_vectors() {
        // The byte counters of the vector paths are flushed before they wrap. Miri interprets
        // every byte: the lengths around the first flush (255 vectors of 32) there, not the
        // several flushes of 40 000.
        let lengths: &[usize] = if cfg!(miri) {
            &[255 * 32, 255 * 32 + 1, 256 * 32 + 5]
        } else {
            &[255 * 32, 255 * 32 + 1, 256 * 32 + 5, 40_000]
        };
        for &n in lengths {
            let all = vec![7i8; n];
            assert_eq!(count_at_least_i8(&all, 7), n);
            assert_eq!(count_at_least_i8(&all, 8), 0);
            assert_eq!(count_at_least_i8(&all, i8::MIN), n);
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
