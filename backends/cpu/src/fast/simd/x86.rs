//! The AVX2+FMA (and F16C) primitives of x86-64. Every function is `unsafe`: the caller has
//! detected the features and checked the lengths (see the safe wrappers in [`super`]).

#![allow(unsafe_code)]

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
/// AVX2 available; `a.len() == b.len()`.
#[target_feature(enable = "avx2")]
pub unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_si256();
    let mut acc1 = _mm256_setzero_si256();
    let mut i = 0;
    // SAFETY (whole body): every load reads 16 bytes at i ≤ n − 16 (32 for the pair).
    // Each i16 product is at most 2^14 and madd sums two, so the i32 lanes stay exact.
    while i + 32 <= n {
        let x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i).cast()));
        let y0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i).cast()));
        let x1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i + 16).cast()));
        let y1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i + 16).cast()));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(x0, y0));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(x1, y1));
        i += 32;
    }
    if i + 16 <= n {
        let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i).cast()));
        let y = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i).cast()));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(x, y));
        i += 16;
    }
    let v = _mm256_add_epi32(acc0, acc1);
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b0100_1110));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b1011_0001));
    let mut sum = _mm_cvtsi128_si32(s);
    while i < n {
        sum += i32::from(*pa.add(i)) * i32::from(*pb.add(i));
        i += 1;
    }
    sum
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
    // Only the vector holding `limit` (and those past it) needs a mask.
    let whole = limit / 8 * 8;
    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i < whole {
        m = _mm256_max_ps(m, _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), scale_v));
        i += 8;
    }
    if whole < limit {
        let x = _mm256_mul_ps(_mm256_loadu_ps(p.add(whole)), scale_v);
        m = _mm256_max_ps(
            m,
            _mm256_blendv_ps(_mm256_set1_ps(f32::NEG_INFINITY), x, valid(whole)),
        );
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
        let e = if i < whole {
            e
        } else {
            _mm256_and_ps(e, valid(i))
        };
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
#[target_feature(enable = "avx2,fma,popcnt")]
unsafe fn lanes(v: __m256i) -> usize {
    _mm256_movemask_ps(_mm256_castsi256_ps(v)) as usize
}

/// Stores the lanes of `v` selected by `mask` to `out`, in order; returns how many.
///
/// # Safety
/// AVX2 and POPCNT available; `out` has room for 8 values.
#[inline]
#[target_feature(enable = "avx2,fma,popcnt")]
unsafe fn store_selected(v: __m256i, mask: usize, out: *mut u32) -> usize {
    let perm = _mm256_loadu_si256(COMPACT_LANES[mask].as_ptr().cast());
    _mm256_storeu_si256(out.cast(), _mm256_permutevar8x32_epi32(v, perm));
    mask.count_ones() as usize
}

/// Stores to `out`, in order, `base + t` (each lane of `base` holds the same index) for the
/// lanes `t` of `mask`; returns how many. (The lanes of `base + 0..8` selected by a mask are
/// `base` plus the mask's own lane numbers: no permutation needed.)
///
/// # Safety
/// AVX2 and POPCNT available; `out` has room for 8 values.
#[inline]
#[target_feature(enable = "avx2,fma,popcnt")]
unsafe fn store_indices(base: __m256i, mask: usize, out: *mut u32) -> usize {
    let lanes = _mm256_loadu_si256(COMPACT_LANES[mask].as_ptr().cast());
    _mm256_storeu_si256(out.cast(), _mm256_add_epi32(base, lanes));
    mask.count_ones() as usize
}

/// # Safety
/// AVX2 and POPCNT available; `lo <= hi`; `inside.len() >= keys.len() + 8`.
#[target_feature(enable = "avx2,fma,popcnt")]
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
        over += lanes(_mm256_cmpgt_epi32(_mm256_xor_si256(x, flip), hi_f)).count_ones() as usize;
        let offset = _mm256_xor_si256(_mm256_sub_epi32(x, lo_v), flip);
        let outside = lanes(_mm256_cmpgt_epi32(offset, width_f));
        count += store_selected(x, !outside & 0xff, po.add(count));
        j += 8;
    }
    let (o, c) = super::portable::bracket(&keys[j..], lo, hi, &mut inside[count..]);
    (over + o, count + c)
}

/// # Safety
/// AVX2 and POPCNT available; `out.len() >= keys.len() + 8`; `first + keys.len() <= i32::MAX`.
#[target_feature(enable = "avx2,fma,popcnt")]
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
    count + super::portable::indices_at_least(&keys[j..], first + j, threshold, &mut out[count..])
}

/// The sum of the 32 byte lanes of `v`.
///
/// # Safety
/// AVX2 available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn byte_total(v: __m256i) -> usize {
    let sums = _mm256_sad_epu8(v, _mm256_setzero_si256());
    let mut lanes = [0u64; 4];
    _mm256_storeu_si256(lanes.as_mut_ptr().cast(), sums);
    lanes.iter().sum::<u64>() as usize
}

/// # Safety
/// AVX2 available.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn count_at_least(keys: &[u32], threshold: u32) -> usize {
    let n = keys.len();
    let pk = keys.as_ptr();
    // Unsigned comparisons as signed ones on keys with the top bit flipped; the lanes count
    // the keys below the threshold (a compare gives −1), at most n / 8 < 2^31 each.
    let flip = _mm256_set1_epi32(i32::MIN);
    let t_f = _mm256_set1_epi32((threshold ^ 0x8000_0000) as i32);
    let mut below = _mm256_setzero_si256();
    let mut j = 0;
    // SAFETY (whole body): every load reads 8 keys at j ≤ n − 8.
    while j + 8 <= n {
        let x = _mm256_xor_si256(_mm256_loadu_si256(pk.add(j).cast()), flip);
        below = _mm256_sub_epi32(below, _mm256_cmpgt_epi32(t_f, x));
        j += 8;
    }
    let mut lanes = [0u32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr().cast(), below);
    let below: usize = lanes.iter().map(|&c| c as usize).sum();
    j - below + super::portable::count_at_least(&keys[j..], threshold)
}

/// # Safety
/// AVX2 available.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn count_at_least_i8(scores: &[i8], threshold: i8) -> usize {
    // x >= t  ⇔  x > t − 1 (t > −128 here; t = −128 counts everything).
    let Some(below) = threshold.checked_sub(1) else {
        return scores.len();
    };
    let n = scores.len();
    let ps = scores.as_ptr();
    let below = _mm256_set1_epi8(below);
    let mut total = 0;
    let mut j = 0;
    // SAFETY (whole body): every load reads 32 bytes at j ≤ n − 32.
    while j + 32 <= n {
        // Byte counters (a compare gives −1 per lane): at most 255 vectors before a flush.
        let stop = n.min(j + 255 * 32);
        let mut counts = _mm256_setzero_si256();
        while j + 32 <= stop {
            let x = _mm256_loadu_si256(ps.add(j).cast());
            counts = _mm256_sub_epi8(counts, _mm256_cmpgt_epi8(x, below));
            j += 32;
        }
        total += byte_total(counts);
    }
    total + super::portable::count_at_least_i8(&scores[j..], threshold)
}

/// # Safety
/// AVX2 and POPCNT available; `out.len() >= scores.len() + 8`; `first + scores.len() <= i32::MAX`.
#[target_feature(enable = "avx2,fma,popcnt")]
pub unsafe fn indices_top_i8(
    scores: &[i8],
    first: usize,
    threshold: i8,
    ties: usize,
    out: &mut [u32],
) -> usize {
    let n = scores.len();
    let (ps, po) = (scores.as_ptr(), out.as_mut_ptr());
    let t = _mm256_set1_epi8(threshold);
    let eight = _mm256_set1_epi32(8);
    let (mut count, mut left, mut j) = (0usize, ties, 0usize);
    // SAFETY (whole body): every load reads 32 bytes at j ≤ n − 32; every store writes 8 lanes
    // at `count` ≤ j + 24 (the indices kept so far), inside `out` (n + 8 long).
    while j + 32 <= n {
        let x = _mm256_loadu_si256(ps.add(j).cast());
        let over = _mm256_movemask_epi8(_mm256_cmpgt_epi8(x, t)) as u32;
        let mut equal = _mm256_movemask_epi8(_mm256_cmpeq_epi8(x, t)) as u32;
        if equal.count_ones() as usize > left {
            // The tie budget ends in this vector: keep its first `left` equal lanes.
            let mut rest = equal;
            for _ in 0..left {
                rest &= rest - 1;
            }
            equal ^= rest;
        }
        left -= equal.count_ones() as usize;
        let mask = (over | equal) as usize;
        // No test for an empty mask: skipping empty vectors measured 7–10 % slower on the
        // bench's pilot scores (a data-dependent branch per 32 keys).
        let mut index = _mm256_set1_epi32((first + j) as i32);
        for byte in 0..4 {
            let m = (mask >> (8 * byte)) & 0xff;
            count += store_indices(index, m, po.add(count));
            index = _mm256_add_epi32(index, eight);
        }
        j += 32;
    }
    count
        + super::portable::indices_top_i8(
            &scores[j..],
            first + j,
            threshold,
            left,
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

/// Lane permutations that move the selected lanes of an 8-lane vector to its front, in order:
/// entry `m` lists the set bits of `m`.
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

/// # Safety
/// AVX2 and FMA available; `q` is `[g][d]`; every `rows[idx[t]·d ..][..d]` is in bounds;
/// `out.len() >= (g − 1)·ld + idx.len()`, `ld >= idx.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn qk_group_f32(
    q: &[f32],
    g: usize,
    rows: &[f32],
    idx: &[u32],
    out: &mut [f32],
    ld: usize,
) {
    qk_group(q, g, rows.as_ptr(), idx, out, ld)
}

/// # Safety
/// As [`qk_group_f32`], and F16C available.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn qk_group_f16(
    q: &[f32],
    g: usize,
    rows: &[half::f16],
    idx: &[u32],
    out: &mut [f32],
    ld: usize,
) {
    qk_group(q, g, rows.as_ptr(), idx, out, ld)
}

/// The body of [`qk_group_f32`] and [`qk_group_f16`]: two query rows against four gathered
/// keys at a time, eight FMA chains, each key load serving both rows. (Software prefetching of
/// the rows two blocks ahead measured no faster.) A head pair past the end
/// repeats its last head, a key block past the end its first key; both keep only their own sums.
///
/// # Safety
/// As the callers, `rows` being the start of the rows.
#[inline(always)]
unsafe fn qk_group<T: Load8>(
    q: &[f32],
    g: usize,
    rows: *const T,
    idx: &[u32],
    out: &mut [f32],
    ld: usize,
) {
    let d = q.len() / g;
    let whole = d / 8 * 8;
    let (pq, po) = (q.as_ptr(), out.as_mut_ptr());
    for (block, keys) in idx.chunks(4).enumerate() {
        let t = block * 4;
        let mut base = [rows.add(keys[0] as usize * d); 4];
        for (b, &j) in base.iter_mut().zip(keys) {
            *b = rows.add(j as usize * d);
        }
        let mut h = 0;
        while h < g {
            let h1 = (h + 1).min(g - 1);
            let (q0, q1) = (pq.add(h * d), pq.add(h1 * d));
            let mut acc = [_mm256_setzero_ps(); 8];
            let mut c = 0;
            while c < whole {
                let a = _mm256_loadu_ps(q0.add(c));
                let b = _mm256_loadu_ps(q1.add(c));
                for l in 0..4 {
                    let k = T::load8(base[l].add(c));
                    acc[l] = _mm256_fmadd_ps(a, k, acc[l]);
                    acc[4 + l] = _mm256_fmadd_ps(b, k, acc[4 + l]);
                }
                c += 8;
            }
            let mut sums = [0.0f32; 8];
            _mm256_storeu_ps(sums.as_mut_ptr(), hsum8(&acc));
            for c in whole..d {
                for l in 0..4 {
                    let k = (*base[l].add(c)).value();
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
/// AVX2 and FMA available; `p` is `[g][ld]` (`ld >= idx.len()`), `acc` is `[g][d]`; every
/// `rows[idx[t]·d ..][..d]` is in bounds.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn pv_group_f32(
    p: &[f32],
    ld: usize,
    g: usize,
    rows: &[f32],
    idx: &[u32],
    acc: &mut [f32],
) {
    pv_group(p, ld, g, rows.as_ptr(), idx, acc)
}

/// # Safety
/// As [`pv_group_f32`], and F16C available.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn pv_group_f16(
    p: &[f32],
    ld: usize,
    g: usize,
    rows: &[half::f16],
    idx: &[u32],
    acc: &mut [f32],
) {
    pv_group(p, ld, g, rows.as_ptr(), idx, acc)
}

/// The body of [`pv_group_f32`] and [`pv_group_f16`]: the group's rows in blocks of at most
/// six (balanced: seven rows are 4 + 3), each block accumulating 16 output columns in
/// registers over every gathered value row.
///
/// # Safety
/// As the callers.
#[inline(always)]
unsafe fn pv_group<T: Load8>(
    p: &[f32],
    ld: usize,
    g: usize,
    rows: *const T,
    idx: &[u32],
    acc: &mut [f32],
) {
    let blocks = g.div_ceil(6);
    let mut h0 = 0;
    for b in 0..blocks {
        let r = (g - h0) / (blocks - b);
        let r = r + usize::from(!(g - h0).is_multiple_of(blocks - b));
        match r {
            1 => pv_rows::<T, 1>(p, ld, g, h0, rows, idx, acc),
            2 => pv_rows::<T, 2>(p, ld, g, h0, rows, idx, acc),
            3 => pv_rows::<T, 3>(p, ld, g, h0, rows, idx, acc),
            4 => pv_rows::<T, 4>(p, ld, g, h0, rows, idx, acc),
            5 => pv_rows::<T, 5>(p, ld, g, h0, rows, idx, acc),
            _ => pv_rows::<T, 6>(p, ld, g, h0, rows, idx, acc),
        }
        h0 += r;
    }
}

/// `R` rows of [`pv_group`] starting at row `h0`.
///
/// # Safety
/// As [`pv_group_f32`]; `h0 + R <= g`.
#[inline(always)]
unsafe fn pv_rows<T: Load8, const R: usize>(
    p: &[f32],
    ld: usize,
    g: usize,
    h0: usize,
    rows: *const T,
    idx: &[u32],
    acc: &mut [f32],
) {
    let d = acc.len() / g;
    let (pp, pa) = (p.as_ptr().add(h0 * ld), acc.as_mut_ptr().add(h0 * d));
    let mut c0 = 0;
    while c0 + 16 <= d {
        let mut a = [[_mm256_setzero_ps(); 2]; R];
        for (r, a) in a.iter_mut().enumerate() {
            a[0] = _mm256_loadu_ps(pa.add(r * d + c0));
            a[1] = _mm256_loadu_ps(pa.add(r * d + c0 + 8));
        }
        for (t, &j) in idx.iter().enumerate() {
            let row = rows.add(j as usize * d + c0);
            let v0 = T::load8(row);
            let v1 = T::load8(row.add(8));
            for (r, a) in a.iter_mut().enumerate() {
                let w = _mm256_set1_ps(*pp.add(r * ld + t));
                a[0] = _mm256_fmadd_ps(w, v0, a[0]);
                a[1] = _mm256_fmadd_ps(w, v1, a[1]);
            }
        }
        for (r, a) in a.iter().enumerate() {
            _mm256_storeu_ps(pa.add(r * d + c0), a[0]);
            _mm256_storeu_ps(pa.add(r * d + c0 + 8), a[1]);
        }
        c0 += 16;
    }
    while c0 < d {
        for r in 0..R {
            let mut s = *pa.add(r * d + c0);
            for (t, &j) in idx.iter().enumerate() {
                s = (*pp.add(r * ld + t)).mul_add((*rows.add(j as usize * d + c0)).value(), s);
            }
            *pa.add(r * d + c0) = s;
        }
        c0 += 1;
    }
}

/// # Safety
/// AVX2 available; `scores` is not empty.
#[target_feature(enable = "avx2,fma")]
unsafe fn max_i8(scores: &[i8]) -> i8 {
    let n = scores.len();
    let ps = scores.as_ptr();
    let mut m = _mm256_set1_epi8(i8::MIN);
    let mut j = 0;
    while j + 32 <= n {
        m = _mm256_max_epi8(m, _mm256_loadu_si256(ps.add(j).cast()));
        j += 32;
    }
    let mut lanes = [0i8; 32];
    _mm256_storeu_si256(lanes.as_mut_ptr().cast(), m);
    let mut best = lanes.iter().copied().fold(i8::MIN, i8::max);
    while j < n {
        best = best.max(*ps.add(j));
        j += 1;
    }
    best
}

/// # Safety
/// AVX2 and FMA available; `out.len() == scores.len()`, not empty.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn weights_i8(scores: &[i8], factor: f32, out: &mut [u32]) -> u64 {
    use shadowattn_hal::group::{group_weight, EXP2_CUBIC, MIN_EXPONENT};
    let n = scores.len();
    let max = max_i8(scores);
    let (ps, po) = (scores.as_ptr(), out.as_mut_ptr());
    let (max_v, factor_v) = (_mm256_set1_epi32(i32::from(max)), _mm256_set1_ps(factor));
    let floor_v = _mm256_set1_ps(MIN_EXPONENT);
    let [c1, c2, c3] = EXP2_CUBIC.map(|c| _mm256_set1_ps(c));
    let one = _mm256_set1_ps(1.0);
    let bias = _mm256_set1_epi32(20 + 127);
    let mut total = 0u64;
    let mut lanes = _mm256_setzero_si256();
    let mut pending = 0;
    let mut j = 0;
    // Step 2 of the group ranking, operation for operation as `group_weight`.
    while j + 8 <= n {
        let s = _mm256_cvtepi8_epi32(_mm_loadl_epi64(ps.add(j).cast()));
        let t = _mm256_cvtepi32_ps(_mm256_sub_epi32(s, max_v));
        let x = _mm256_max_ps(_mm256_mul_ps(factor_v, t), floor_v);
        let k = _mm256_floor_ps(x);
        let f = _mm256_sub_ps(x, k);
        let p = _mm256_fmadd_ps(f, _mm256_fmadd_ps(f, _mm256_fmadd_ps(f, c3, c2), c1), one);
        let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(k), bias));
        let w = _mm256_cvtps_epi32(_mm256_mul_ps(p, _mm256_castsi256_ps(scale)));
        _mm256_storeu_si256(po.add(j).cast(), w);
        lanes = _mm256_add_epi32(lanes, w);
        pending += 1;
        // Each weight is at most 2^20: 4095 of them fit a 32-bit lane.
        if pending == 4095 {
            total += lane_total(lanes);
            lanes = _mm256_setzero_si256();
            pending = 0;
        }
        j += 8;
    }
    total += lane_total(lanes);
    while j < n {
        let w = group_weight(factor, f32::from(i16::from(*ps.add(j)) - i16::from(max)));
        *po.add(j) = w;
        total += u64::from(w);
        j += 1;
    }
    total
}

/// The sum of eight unsigned 32-bit lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn lane_total(v: __m256i) -> u64 {
    let mut lanes = [0u32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v);
    lanes.iter().map(|&x| u64::from(x)).sum()
}

/// # Safety
/// AVX2 available; `acc.len() == weights.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn add_scaled_weights(acc: &mut [f32], weights: &[u32], r: f32) {
    let n = acc.len();
    let (pa, pw) = (acc.as_mut_ptr(), weights.as_ptr());
    let rv = _mm256_set1_ps(r);
    let mut j = 0;
    while j + 8 <= n {
        let w = _mm256_cvtepi32_ps(_mm256_loadu_si256(pw.add(j).cast()));
        // A product and a sum, each rounded (the contract's step 4 forbids a fused one).
        let v = _mm256_add_ps(_mm256_loadu_ps(pa.add(j)), _mm256_mul_ps(w, rv));
        _mm256_storeu_ps(pa.add(j), v);
        j += 8;
    }
    while j < n {
        *pa.add(j) += *pw.add(j) as f32 * r;
        j += 1;
    }
}

/// # Safety
/// AVX2 and FMA available; `qt` is `[d][8]`, `out` is `[idx.len()][8]`; every
/// `rows[idx[t]·d ..][..d]` is in bounds.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn qk_lanes(qt: &[f32], rows: &[f32], idx: &[u32], out: &mut [f32]) {
    // SAFETY (whole body): each block gets `N` keys of `idx` and the `N · 8` outputs from `t`
    // on, inside `out` (`[idx.len()][8]`); the prefetches only hint addresses of indexed rows.
    let d = qt.len() / 8;
    let (pq, pr, po) = (qt.as_ptr(), rows.as_ptr(), out.as_mut_ptr());
    let mut t = 0;
    while t + 12 <= idx.len() {
        // Every line of the next block's rows is requested before this block computes.
        for &j in &idx[t + 12..(t + 24).min(idx.len())] {
            let row = pr.add(j as usize * d);
            for c in (0..d).step_by(16) {
                _mm_prefetch::<_MM_HINT_T0>(row.add(c).cast());
            }
        }
        qk_lanes_block::<12>(pq, d, pr, &idx[t..t + 12], po.add(t * 8));
        t += 12;
    }
    while t + 4 <= idx.len() {
        qk_lanes_block::<4>(pq, d, pr, &idx[t..t + 4], po.add(t * 8));
        t += 4;
    }
    while t < idx.len() {
        qk_lanes_block::<1>(pq, d, pr, &idx[t..t + 1], po.add(t * 8));
        t += 1;
    }
}

/// The scores of `N` gathered keys for the eight lanes: `N` FMA chains, each column of `qt`
/// loaded once and every key value broadcast from its row.
///
/// # Safety
/// As [`qk_lanes`], `keys.len() == N`, `out` starting `N` vectors.
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
    let mut acc = [_mm256_setzero_ps(); N];
    for c in 0..d {
        let q = _mm256_loadu_ps(qt.add(c * 8));
        for (a, b) in acc.iter_mut().zip(&base) {
            *a = _mm256_fmadd_ps(_mm256_broadcast_ss(&*b.add(c)), q, *a);
        }
    }
    for (k, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.add(k * 8), *a);
    }
}

/// All-ones in the lanes whose bit is set in `m`.
///
/// # Safety
/// AVX2 available (registers only, no memory access).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn lane_mask(m: u8, bits: __m256i) -> __m256 {
    let set = _mm256_and_si256(_mm256_set1_epi32(i32::from(m)), bits);
    _mm256_castsi256_ps(_mm256_cmpeq_epi32(set, bits))
}

/// # Safety
/// AVX2 and FMA available; `s.len() == 8 · masks.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn softmax_lanes(s: &mut [f32], masks: &[u8], scale: f32) -> [f32; 8] {
    // SAFETY (whole body): `s` holds 8 values for each of the `masks`, read and written at `t · 8`.
    let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let neg = _mm256_set1_ps(f32::NEG_INFINITY);
    let sc = _mm256_set1_ps(scale);
    let p = s.as_mut_ptr();
    let mut max = neg;
    for (t, &m) in masks.iter().enumerate() {
        let x = _mm256_mul_ps(_mm256_loadu_ps(p.add(t * 8)), sc);
        _mm256_storeu_ps(p.add(t * 8), x);
        max = _mm256_max_ps(max, _mm256_blendv_ps(neg, x, lane_mask(m, bits)));
    }
    // A lane that keeps no key: any finite maximum, its weights are all masked to 0.
    let none = _mm256_cmp_ps(max, neg, _CMP_EQ_OQ);
    max = _mm256_blendv_ps(max, _mm256_setzero_ps(), none);
    let mut total = _mm256_setzero_ps();
    for (t, &m) in masks.iter().enumerate() {
        let x = _mm256_loadu_ps(p.add(t * 8));
        let e = _mm256_and_ps(exp8(_mm256_sub_ps(x, max)), lane_mask(m, bits));
        _mm256_storeu_ps(p.add(t * 8), e);
        total = _mm256_add_ps(total, e);
    }
    let mut out = [0.0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), total);
    out
}

/// # Safety
/// AVX2 and FMA available; `p` is `[idx.len()][8]`, `acc` is `[d][8]`; every
/// `rows[idx[t]·d ..][..d]` is in bounds.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn pv_lanes(p: &[f32], rows: &[f32], idx: &[u32], acc: &mut [f32]) {
    // SAFETY (whole body): blocks cover columns `c..c + N <= d` of `acc` (`[d][8]`) and the
    // weights of their keys inside `p` (`[idx.len()][8]`); the prefetches only hint addresses.
    let d = acc.len() / 8;
    let (pp, pr, pa) = (p.as_ptr(), rows.as_ptr(), acc.as_mut_ptr());
    // Blocks of keys outermost: a block's value rows stay in L1 while every column block of
    // the output passes over them.
    for (b, keys) in idx.chunks(PV_KEYS).enumerate() {
        // Every line of the next block's rows is requested before this block computes.
        for &j in idx.iter().skip((b + 1) * PV_KEYS).take(PV_KEYS) {
            let row = pr.add(j as usize * d);
            for c in (0..d).step_by(16) {
                _mm_prefetch::<_MM_HINT_T0>(row.add(c).cast());
            }
        }
        let pb = pp.add(b * PV_KEYS * 8);
        let mut c = 0;
        while c + 12 <= d {
            pv_lanes_block::<12>(pb, pr, d, keys, c, pa);
            c += 12;
        }
        while c + 4 <= d {
            pv_lanes_block::<4>(pb, pr, d, keys, c, pa);
            c += 4;
        }
        while c < d {
            pv_lanes_block::<1>(pb, pr, d, keys, c, pa);
            c += 1;
        }
    }
}

/// Keys per block of [`pv_lanes`].
const PV_KEYS: usize = 16;

/// Columns `c0..c0 + N` of the eight lanes' weighted sums over every gathered value row: `N`
/// FMA chains, each key's weights loaded once and its values broadcast.
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
    let mut a = [_mm256_setzero_ps(); N];
    for (k, a) in a.iter_mut().enumerate() {
        *a = _mm256_loadu_ps(acc.add((c0 + k) * 8));
    }
    for (t, &j) in idx.iter().enumerate() {
        let w = _mm256_loadu_ps(p.add(t * 8));
        let v = rows.add(j as usize * d + c0);
        for (k, a) in a.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(_mm256_broadcast_ss(&*v.add(k)), w, *a);
        }
    }
    for (k, a) in a.iter().enumerate() {
        _mm256_storeu_ps(acc.add((c0 + k) * 8), *a);
    }
}
