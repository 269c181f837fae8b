//! The plain-Rust primitives: the fallback where no vector unit is used, and the behaviour the
//! vector paths must match. The safe wrappers in [`super`] check every length first.

use super::{KvElement, MR, NR};

/// `Σ a[i]·b[i]` in 8 lanes.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
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

/// `Σ a[i]·b[i]` of two i8 rows, exactly, in i32 (no overflow below 2^17 elements).
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// `y[i] += alpha·x[i]`.
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    y.iter_mut()
        .zip(x)
        .for_each(|(y, x)| *y = alpha.mul_add(*x, *y));
}

/// See [`super::qk_panel`].
pub fn qk_panel(q: &[f32], panel: &[f32], out: &mut [f32], ld: usize) {
    let dim = panel.len() / NR;
    for r in 0..MR {
        let o = &mut out[r * ld..r * ld + NR];
        o.iter_mut().for_each(|x| *x = 0.0);
        for (c, k) in panel.chunks_exact(NR).enumerate() {
            let qc = q[r * dim + c];
            o.iter_mut().zip(k).for_each(|(o, k)| *o += qc * k);
        }
    }
}

/// See [`super::pv_tile`].
pub fn pv_tile(p: &[f32], ld: usize, v: &[f32], corr: &[f32; MR], acc: &mut [f32]) {
    let dim = acc.len() / MR;
    for r in 0..MR {
        let a = &mut acc[r * dim..(r + 1) * dim];
        a.iter_mut().for_each(|x| *x *= corr[r]);
        for (t, row) in v.chunks_exact(dim).enumerate() {
            let w = p[r * ld + t];
            a.iter_mut().zip(row).for_each(|(a, x)| *a += w * x);
        }
    }
}

/// `x ← exp(x)` with `f32::exp`.
pub fn exp_inplace(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = x.exp());
}

/// See [`super::dots_indexed`].
pub fn dots_indexed<T: KvElement>(q: &[f32], rows: &[T], idx: &[u32], out: &mut [f32]) {
    let d = q.len();
    for (o, &j) in out.iter_mut().zip(idx) {
        let row = &rows[j as usize * d..(j as usize + 1) * d];
        *o = q.iter().zip(row).map(|(q, k)| q * k.value()).sum();
    }
}

/// See [`super::online_softmax_row`].
pub fn online_softmax_row(
    row: &mut [f32],
    limit: usize,
    scale: f32,
    max: &mut f32,
    total: &mut f32,
) -> f32 {
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

/// See [`super::weighted_rows_indexed`].
pub fn weighted_rows_indexed<T: KvElement>(acc: &mut [f32], w: &[f32], rows: &[T], idx: &[u32]) {
    let d = acc.len();
    for (&j, &wt) in idx.iter().zip(w) {
        let row = &rows[j as usize * d..(j as usize + 1) * d];
        acc.iter_mut()
            .zip(row)
            .for_each(|(a, x)| *a += wt * x.value());
    }
}

/// See [`super::bracket`].
pub fn bracket(keys: &[u32], lo: u32, hi: u32, inside: &mut [u32]) -> (usize, usize) {
    let (mut over, mut count) = (0, 0);
    for &x in keys {
        inside[count] = x;
        count += usize::from(x.wrapping_sub(lo) <= hi - lo);
        over += usize::from(x > hi);
    }
    (over, count)
}

/// See [`super::indices_at_least`].
pub fn indices_at_least(keys: &[u32], first: usize, threshold: u32, out: &mut [u32]) -> usize {
    let mut count = 0;
    for (j, &x) in keys.iter().enumerate() {
        out[count] = (first + j) as u32;
        count += usize::from(x >= threshold);
    }
    count
}

/// See [`super::count_at_least`].
pub fn count_at_least(keys: &[u32], threshold: u32) -> usize {
    keys.iter().filter(|&&x| x >= threshold).count()
}

/// See [`super::count_at_least_i8`].
pub fn count_at_least_i8(scores: &[i8], threshold: i8) -> usize {
    // Byte counters over blocks of 255 (a loop compilers vectorize on the bytes themselves;
    // counting into a usize per key widens every lane first).
    scores
        .chunks(255)
        .map(|block| {
            let count: u8 = block
                .iter()
                .fold(0u8, |c, &x| c.wrapping_add(u8::from(x >= threshold)));
            usize::from(count)
        })
        .sum()
}

/// See [`super::indices_top_i8`].
pub fn indices_top_i8(
    scores: &[i8],
    first: usize,
    threshold: i8,
    ties: usize,
    out: &mut [u32],
) -> usize {
    // Up to the `ties`-th score equal to the threshold keep scores >= it, after it scores > it:
    // two branch-free compactions around the cut. The cut is found by counting ties in blocks
    // (a loop the compiler vectorizes), then one by one in its block. (One loop tracking the
    // ties left measured up to a third slower per call.)
    let cut = if ties == 0 {
        0
    } else {
        tie_cut(scores, threshold, ties)
    };
    let (head, tail) = scores.split_at(cut);
    let mut count = 0;
    for (j, &x) in head.iter().enumerate() {
        out[count] = (first + j) as u32;
        count += usize::from(x >= threshold);
    }
    for (j, &x) in tail.iter().enumerate() {
        out[count] = (first + cut + j) as u32;
        count += usize::from(x > threshold);
    }
    count
}

/// The position just past the `ties`-th (`ties > 0`) score equal to `threshold`, or the
/// length when there are fewer.
fn tie_cut(scores: &[i8], threshold: i8, ties: usize) -> usize {
    const BLOCK: usize = 64;
    let mut left = ties;
    for (b, block) in scores.chunks(BLOCK).enumerate() {
        let equal = block.iter().filter(|&&x| x == threshold).count();
        if equal >= left {
            let last = block
                .iter()
                .enumerate()
                .filter(|(_, &x)| x == threshold)
                .nth(left - 1);
            return b * BLOCK + last.map_or(block.len(), |(j, _)| j + 1);
        }
        left -= equal;
    }
    scores.len()
}

/// See [`super::fma_peak_probe`].
pub fn fma_probe(iters: usize) -> f32 {
    let mut acc = [1.0f32; 96];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    acc.iter().sum()
}

/// See [`super::qk_group`].
pub fn qk_group<T: KvElement>(
    q: &[f32],
    g: usize,
    rows: &[T],
    idx: &[u32],
    out: &mut [f32],
    ld: usize,
) {
    let d = q.len() / g;
    let n = idx.len();
    for h in 0..g {
        dots_indexed(
            &q[h * d..(h + 1) * d],
            rows,
            idx,
            &mut out[h * ld..h * ld + n],
        );
    }
}

/// See [`super::pv_group`].
pub fn pv_group<T: KvElement>(
    p: &[f32],
    ld: usize,
    g: usize,
    rows: &[T],
    idx: &[u32],
    acc: &mut [f32],
) {
    let d = acc.len() / g;
    let n = idx.len();
    for h in 0..g {
        weighted_rows_indexed(
            &mut acc[h * d..(h + 1) * d],
            &p[h * ld..h * ld + n],
            rows,
            idx,
        );
    }
}

/// See [`super::weights_i8`].
pub fn weights_i8(scores: &[i8], factor: f32, out: &mut [u32]) -> u64 {
    let max = scores.iter().copied().fold(i8::MIN, i8::max);
    let mut total = 0u64;
    for (o, &x) in out.iter_mut().zip(scores) {
        *o = shadowattn_hal::group::group_weight(factor, f32::from(i16::from(x) - i16::from(max)));
        total += u64::from(*o);
    }
    total
}

/// See [`super::add_scaled_weights`].
pub fn add_scaled_weights(acc: &mut [f32], weights: &[u32], r: f32) {
    for (a, &w) in acc.iter_mut().zip(weights) {
        *a += w as f32 * r;
    }
}

/// See [`super::lanes::qk_lanes`].
pub fn qk_lanes(qt: &[f32], rows: &[f32], idx: &[u32], out: &mut [f32]) {
    const L: usize = super::lanes::LANES;
    let d = qt.len() / L;
    for (o, &j) in out.chunks_exact_mut(L).zip(idx) {
        let k = &rows[j as usize * d..(j as usize + 1) * d];
        o.fill(0.0);
        for (c, &x) in k.iter().enumerate() {
            for (o, &q) in o.iter_mut().zip(&qt[c * L..(c + 1) * L]) {
                *o = x.mul_add(q, *o);
            }
        }
    }
}

/// See [`super::lanes::softmax_lanes`].
pub fn softmax_lanes(s: &mut [f32], masks: &[u8], scale: f32) -> [f32; super::lanes::LANES] {
    const L: usize = super::lanes::LANES;
    let kept = |m: u8, l: usize| m >> l & 1 == 1;
    let mut max = [f32::NEG_INFINITY; L];
    for (row, &m) in s.chunks_exact_mut(L).zip(masks) {
        for (l, (x, mx)) in row.iter_mut().zip(&mut max).enumerate() {
            *x *= scale;
            if kept(m, l) {
                *mx = mx.max(*x);
            }
        }
    }
    let mut total = [0.0f32; L];
    for (row, &m) in s.chunks_exact_mut(L).zip(masks) {
        for (l, x) in row.iter_mut().enumerate() {
            *x = if kept(m, l) { (*x - max[l]).exp() } else { 0.0 };
            total[l] += *x;
        }
    }
    total
}

/// See [`super::lanes::pv_lanes`].
pub fn pv_lanes(p: &[f32], rows: &[f32], idx: &[u32], acc: &mut [f32]) {
    const L: usize = super::lanes::LANES;
    let d = acc.len() / L;
    for (w, &j) in p.chunks_exact(L).zip(idx) {
        let v = &rows[j as usize * d..(j as usize + 1) * d];
        for (a, &x) in acc.chunks_exact_mut(L).zip(v) {
            for (a, &w) in a.iter_mut().zip(w) {
                *a = x.mul_add(w, *a);
            }
        }
    }
}

/// See [`super::lanes::pv_lanes_f16`]: each multiply-add in f64 (the product of two f16 values
/// is exact there), rounded once to f16.
pub fn pv_lanes_f16(p: &[half::f16], rows: &[half::f16], idx: &[u32], acc: &mut [half::f16]) {
    const L: usize = super::lanes::LANES;
    let d = acc.len() / L;
    for (w, &j) in p.chunks_exact(L).zip(idx) {
        let v = &rows[j as usize * d..(j as usize + 1) * d];
        for (a, &x) in acc.chunks_exact_mut(L).zip(v) {
            for (a, &w) in a.iter_mut().zip(w) {
                *a = fma_f16(w, x, *a);
            }
        }
    }
}

/// `a·b + c` rounded once to f16 (`a·b` is exact in f64; the sum's rounding to f64 and then
/// to f16 differs from one rounding only when the f64 sum lands exactly on an f16 tie).
pub fn fma_f16(a: half::f16, b: half::f16, c: half::f16) -> half::f16 {
    half::f16::from_f64(f64::from(a).mul_add(f64::from(b), f64::from(c)))
}

/// [`super::group::head_weights_i8`] by scalar table lookups.
pub fn weights_i8_table(scores: &[i8], table: &[u32; 256], out: &mut [u32]) -> u64 {
    let max = scores.iter().copied().fold(i8::MIN, i8::max);
    let mut total = 0u64;
    for (o, &x) in out.iter_mut().zip(scores) {
        *o = table[usize::from(max.abs_diff(x))];
        total += u64::from(*o);
    }
    total
}
