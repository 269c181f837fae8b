//! The fast kernels themselves, in safe code over the primitives of [`super::simd`].

use super::simd;
use super::KvStorage;
use rayon::prelude::*;
use shadowattn_hal::compute::{first_beyond_f16, first_non_finite};
use shadowattn_hal::{
    AttentionInputs, AttentionShape, HalError, KeyBudget, Result, ScoreData, ScoreMatrix, Selection,
};

/// The order-preserving `u32` image of a score: `a < b` (integers) or `a.total_cmp(b)` (floats)
/// exactly when `key(a) < key(b)`.
trait RankKey: Copy {
    /// The key of this score.
    fn key(self) -> u32;
}

impl RankKey for i32 {
    fn key(self) -> u32 {
        (self as u32) ^ 0x8000_0000
    }
}

impl RankKey for f32 {
    fn key(self) -> u32 {
        let bits = self.to_bits();
        // Negative floats: all bits flipped (larger magnitude → smaller key); others: sign set.
        bits ^ (((bits as i32) >> 31) as u32 | 0x8000_0000)
    }
}

/// Smallest and largest of a non-empty slice.
fn min_max(keys: &[u32]) -> (u32, u32) {
    keys.iter()
        .fold((u32::MAX, 0), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// Keys sampled from a row to bracket its k-th largest key.
const SAMPLE: usize = 64;

/// Rows shorter than this skip the sampled bracket (the radix narrowing alone is cheaper).
const SAMPLED_ROW: usize = 512;

/// Room for `len` values at the front of `buf`, grown (never shrunk, never cleared) as needed:
/// the compactions store whole vectors past their count, so clearing would write each row's
/// buffer twice.
fn room(buf: &mut Vec<u32>, len: usize) -> &mut [u32] {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    buf
}

/// All `n` indices `0..n` into the front of `picked`; returns `n`.
fn all_indices(n: usize, picked: &mut Vec<u32>) -> usize {
    room(picked, n)
        .iter_mut()
        .zip(0..n as u32)
        .for_each(|(p, j)| *p = j);
    n
}

/// Indices of the `k` largest `keys` (ties kept at the lower index), ascending, into the front
/// of `picked`; returns how many (`min(k, keys.len())`).
///
/// A strided sample of the row brackets the k-th largest key; one vectorized pass counts the keys
/// above the bracket and gathers those inside it (about a quarter of the row). A bisection of
/// the bracket on counts ([`kth_by_counts`]) then finds the k-th largest among them. If the
/// sample misled the bracket, the bisection runs on the whole row instead. One last vectorized
/// scan keeps the keys above that value and the earliest keys equal to it.
fn select_keys(keys: &[u32], k: usize, candidates: &mut Vec<u32>, picked: &mut Vec<u32>) -> usize {
    let n = keys.len();
    if k == 0 {
        return 0;
    }
    if k >= n {
        return all_indices(n, picked);
    }
    // The candidates' count, the keys above them and their range, when a sample brackets the
    // k-th largest key.
    let mut bracket = None;
    if n >= SAMPLED_ROW {
        let mut sample = [0u32; SAMPLE];
        for (i, s) in sample.iter_mut().enumerate() {
            *s = keys[i * n / SAMPLE + (n / SAMPLE) / 2];
        }
        // Ranks from the top in the sample, widened by about three standard deviations.
        let rank = k * SAMPLE / n;
        let margin = 8;
        let hi = match rank.checked_sub(margin) {
            Some(r) => *sample.select_nth_unstable_by(r, |a, b| b.cmp(a)).1,
            None => u32::MAX,
        };
        let lo = match rank + margin {
            r if r < SAMPLE => *sample.select_nth_unstable_by(r, |a, b| b.cmp(a)).1,
            _ => 0,
        };
        let (over, inside) = simd::bracket(keys, lo, hi, room(candidates, n + simd::COMPACT_SLACK));
        if over < k && over + inside >= k {
            bracket = Some((inside, over, lo, hi));
        }
    }
    let (threshold, equal, above) = match bracket {
        Some((inside, over, lo, hi)) => {
            let (t, equal, above) = kth_by_counts(&candidates[..inside], k - over, lo, hi);
            (t, equal, over + above)
        }
        None => {
            let (lo, hi) = min_max(keys);
            kth_by_counts(keys, k, lo, hi)
        }
    };
    keep_top(
        keys,
        threshold,
        threshold.checked_add(1),
        k - above,
        equal,
        picked,
        simd::indices_at_least,
    )
}

/// The `need`-th largest of `keys` (`0 < need <= keys.len()`, every key in `lo..=hi`) by
/// bisection of the range on vectorized counts of the keys at least a probe (a compare and a
/// subtract per 8 keys and pass): returns it, how many keys equal it and how many exceed it.
///
/// (Radix narrowing by 1024-bin histograms, with its scalar increments, scan of the bins and
/// branchy filter per level, measured about a quarter slower on the group ranking's bracketed
/// candidates.)
fn kth_by_counts(keys: &[u32], need: usize, lo: u32, hi: u32) -> (u32, usize, usize) {
    // Invariant: `at_lo` (>= need) keys are >= lo; `above` (< need) are >= hi + 1.
    let (mut lo, mut hi) = (u64::from(lo), u64::from(hi));
    let (mut at_lo, mut above) = (keys.len(), 0);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let count = simd::count_at_least(keys, mid as u32);
        if count >= need {
            (lo, at_lo) = (mid, count);
        } else {
            (hi, above) = (mid - 1, count);
        }
    }
    (lo as u32, at_lo - above, above)
}

/// Writes to the front of `picked`, ascending, the indices of the keys of `row` above
/// `threshold` and of the first `ties` of the `equal` keys equal to it, and returns how many
/// (`next` is the value just above the threshold, `None` at the top of the type).
/// `at_least(part, first, t, out)` is the vectorized compaction of the indices `first + j` of
/// `part` whose value is at least `t`.
fn keep_top<T: Copy + PartialEq>(
    row: &[T],
    threshold: T,
    next: Option<T>,
    ties: usize,
    equal: usize,
    picked: &mut Vec<u32>,
    at_least: fn(&[T], usize, T, &mut [u32]) -> usize,
) -> usize {
    let picked = room(picked, row.len() + simd::COMPACT_SLACK);
    if ties == equal {
        // Every key equal to the threshold is kept: one comparison per key.
        at_least(row, 0, threshold, picked)
    } else {
        // Up to the `ties`-th key equal to the threshold keep keys >= it, after it keys > it.
        let last_tie = row
            .iter()
            .enumerate()
            .filter(|(_, &x)| x == threshold)
            .nth(ties - 1)
            .map_or(row.len() - 1, |(j, _)| j);
        let (head, tail) = row.split_at(last_tie + 1);
        let count = at_least(head, 0, threshold, picked);
        match next {
            Some(next) => count + at_least(tail, head.len(), next, &mut picked[count..]),
            None => count,
        }
    }
}

/// [`select_keys`] for INT8 scores (the requantized pilot output of NPUs): a search over the
/// 256 values by vectorized counts (a compare and a subtract per 32 keys and pass), starting
/// from `hint` (the previous row's threshold: neighbouring rows of a head are alike, so two or
/// three passes usually settle it), finds the k-th largest value; one vectorized scan keeps
/// the keys above it and the first ties. Returns how many keys (`min(k, n)`) and updates `hint`.
///
/// (A 256-bin histogram, four interleaved to break the runs of equal values, cost about four
/// cycles per key: its scalar increments, the scan of the bins, and a scalar search for the
/// last kept tie.)
fn select_i8(scores: &[i8], k: usize, hint: &mut i8, picked: &mut Vec<u32>) -> usize {
    let n = scores.len();
    if k == 0 {
        return 0;
    }
    if k >= n {
        return all_indices(n, picked);
    }
    let (threshold, above) = kth_largest_i8(scores, k, *hint);
    *hint = threshold;
    let out = room(picked, n + simd::COMPACT_SLACK);
    simd::indices_top_i8(scores, 0, threshold, k - above, out)
}

/// The `k`-th largest of `scores` (`0 < k < scores.len()`) and how many scores exceed it,
/// searched from `hint` outwards (steps doubling) until bracketed, then by bisection.
fn kth_largest_i8(scores: &[i8], k: usize, hint: i8) -> (i8, usize) {
    // Probes stay in −128..=128; only 128 (nothing is at least it) falls outside i8.
    let count = |t: i32| i8::try_from(t).map_or(0, |t| simd::count_at_least_i8(scores, t));
    let (t, above) = kth_largest_by(count, k, i32::from(hint), (-128, 128));
    (t as i8, above)
}

/// The largest probe `t` in `min..bound` with `count(t) >= k` and `count(t + 1)` (the values
/// above it), for a `count(t)` of values at least `t` that falls as `t` grows, is `n >= k` at
/// `min` and 0 at `bound`: searched from `start` outwards (steps doubling) until bracketed,
/// then by bisection.
fn kth_largest_by(
    count: impl Fn(i32) -> usize,
    k: usize,
    start: i32,
    (min, bound): (i32, i32),
) -> (i32, usize) {
    // Invariant once bracketed: at least k values are >= lo; `above` (< k) are >= hi + 1.
    let (mut lo, mut hi, mut above);
    let at_start = count(start);
    let mut step = 1;
    if at_start >= k {
        lo = start;
        loop {
            let probe = (lo + step).min(bound);
            let c = count(probe);
            if c >= k {
                lo = probe;
                step *= 2;
            } else {
                (hi, above) = (probe - 1, c);
                break;
            }
        }
    } else {
        (hi, above) = (start - 1, at_start);
        loop {
            let probe = (hi + 1 - step).max(min);
            let c = count(probe);
            if c >= k {
                lo = probe;
                break;
            }
            (hi, above) = (probe - 1, c);
            step *= 2;
        }
    }
    while lo < hi {
        let mid = (lo + hi + 1) >> 1;
        let c = count(mid);
        if c >= k {
            lo = mid;
        } else {
            (hi, above) = (mid - 1, c);
        }
    }
    (lo, above)
}

/// The order-preserving `i16` image of an f16's bits: `a.total_cmp(b)` (as the f32 keys order
/// floats, −0 below +0) exactly when `key(a) < key(b)`. Signed, because baseline x86-64 vector
/// code compares signed 16-bit lanes only.
fn key16(bits: u16) -> i16 {
    let b = bits as i16;
    // Negative floats: the magnitude bits flipped (larger magnitude → smaller key).
    b ^ ((b >> 15) & 0x7FFF)
}

/// How many of `keys` are at least `t`: counted in 16-bit lanes, 4096 keys at a time (the loop
/// vectorizes to compares and subtractions).
fn count_at_least_i16(keys: &[i16], t: i16) -> usize {
    keys.chunks(4096)
        .map(|c| usize::from(c.iter().fold(0u16, |n, &x| n + u16::from(x >= t))))
        .sum()
}

/// The indices of the `k` largest f16 `scores` (non-NaN; ties at the lower index), ascending,
/// into the front of `picked`: their u16 keys into `keys`, the k-th largest key by counts from
/// `hint` (the previous row's), then the keys above it and the first ties. Returns how many
/// (`min(k, n)`) and updates `hint`.
fn select_f16(
    scores: &[half::f16],
    k: usize,
    hint: &mut i16,
    keys: &mut Vec<i16>,
    picked: &mut Vec<u32>,
) -> usize {
    let n = scores.len();
    if k == 0 {
        return 0;
    }
    if k >= n {
        return all_indices(n, picked);
    }
    keys.clear();
    keys.extend(scores.iter().map(|x| key16(x.to_bits())));
    // Probes in −32768..=32768; only 32768 (nothing is at least it) falls outside i16.
    let count = |t: i32| i16::try_from(t).map_or(0, |t| count_at_least_i16(keys, t));
    let (t, above) = kth_largest_by(count, k, i32::from(*hint), (-32768, 32768));
    let t = t as i16;
    *hint = t;
    let out = room(picked, k);
    let (mut at, mut ties) = (0, k - above);
    for (j, &x) in keys.iter().enumerate() {
        let take = x > t || (x == t && ties > 0);
        ties -= usize::from(x == t && ties > 0);
        if take {
            out[at] = j as u32;
            at += 1;
        }
    }
    at
}

/// The buffers one top-k row reuses: rank keys, candidates, and the picked indices.
#[derive(Debug, Default)]
pub struct Scratch {
    keys: Vec<u32>,
    candidates: Vec<u32>,
    picked: Vec<u32>,
}

/// The indices of the `k` largest (non-NaN) `ranks`, ties at the lower index, ascending.
pub fn select_ranked<'s>(ranks: &[f32], k: usize, scratch: &'s mut Scratch) -> &'s [u32] {
    scratch.keys.clear();
    scratch.keys.extend(ranks.iter().map(|x| x.key()));
    let count = select_keys(
        &scratch.keys,
        k,
        &mut scratch.candidates,
        &mut scratch.picked,
    );
    &scratch.picked[..count]
}

/// The `k` largest keys of query row `i` of `scores` into the front of `scratch.picked`
/// (ascending); returns how many.
fn topk_row(
    scores: &ScoreMatrix<'_>,
    k: usize,
    i: usize,
    scratch: &mut TopkScratch,
) -> Result<usize> {
    let keys = &mut scratch.keys;
    keys.clear();
    match scores.ordered_row(i)? {
        ScoreData::I32(d) => keys.extend(d.iter().map(|x| x.key())),
        ScoreData::I8(d) => return Ok(select_i8(d, k, &mut scratch.hint, &mut scratch.picked)),
        ScoreData::F32(d) => keys.extend(d.iter().map(|x| x.key())),
        ScoreData::F16(d) => {
            let hint = &mut scratch.hint16;
            return Ok(select_f16(
                d,
                k,
                hint,
                &mut scratch.keys16,
                &mut scratch.picked,
            ));
        }
    }
    Ok(select_keys(
        keys,
        k,
        &mut scratch.candidates,
        &mut scratch.picked,
    ))
}

/// Top-k per row over the causal prefix, identical to the golden kernel's selection and order;
/// rows run in parallel on the current rayon pool.
pub fn topk(scores: ScoreMatrix<'_>, budget: KeyBudget) -> Result<Selection> {
    budget.validate()?;
    let kept = (0..scores.rows())
        .map(|i| {
            let n = scores.valid_keys(i);
            Ok(budget.keys_for(i, n)?.min(n))
        })
        .collect::<Result<Vec<_>>>()?;
    fill_rows(&kept, |i, scratch: &mut TopkScratch| {
        let count = topk_row(&scores, kept[i], i, scratch)?;
        Ok(&scratch.picked[..count])
    })
}

/// The buffers of [`topk_row`] one worker reuses, and the last INT8 row's threshold.
#[derive(Default)]
struct TopkScratch {
    keys: Vec<u32>,
    candidates: Vec<u32>,
    picked: Vec<u32>,
    hint: i8,
    keys16: Vec<i16>,
    hint16: i16,
}

/// A selection of rows of `kept[i]` keys each, row `i` written by `row(i, scratch)` (which
/// returns exactly `kept[i]` indices): rows in parallel on the current rayon pool, straight
/// into the selection's one index buffer, each worker reusing its own scratch.
pub fn fill_rows<S: Default>(
    kept: &[usize],
    row: impl for<'s> Fn(usize, &'s mut S) -> Result<&'s [u32]> + Sync,
) -> Result<Selection> {
    let mut offsets = Vec::with_capacity(kept.len() + 1);
    offsets.push(0);
    for &k in kept {
        offsets.push(offsets[offsets.len() - 1] + k);
    }
    let mut indices = vec![0u32; offsets[kept.len()]];
    let mut slots = Vec::with_capacity(kept.len());
    let mut rest = &mut indices[..];
    for &k in kept {
        let (slot, tail) = rest.split_at_mut(k);
        slots.push(slot);
        rest = tail;
    }
    slots
        .into_par_iter()
        .enumerate()
        .with_min_len(4)
        .try_for_each_init(S::default, |scratch, (i, slot)| {
            let picked = row(i, scratch)?;
            if picked.len() != slot.len() {
                return Err(HalError::invalid_value(
                    "selection",
                    format!(
                        "query row {i}: {} keys selected for a budget of {} (a kernel fault)",
                        picked.len(),
                        slot.len()
                    ),
                ));
            }
            slot.copy_from_slice(picked);
            Ok(())
        })?;
    Selection::from_parts(offsets, indices)
}

/// Softmax·V of query row `q` over `keys` of one KV head into `out`, in f32.
fn attend<T: simd::KvElement>(
    q: &[f32],
    k: &[T],
    v: &[T],
    scale: f32,
    keys: &[u32],
    weights: &mut Vec<f32>,
    out: &mut [f32],
) {
    weights.clear();
    weights.resize(keys.len(), 0.0);
    simd::dots_indexed(q, k, keys, weights);
    weights.iter_mut().for_each(|w| *w *= scale);
    let max = weights.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    weights.iter_mut().for_each(|w| *w -= max);
    simd::exp_inplace(weights);
    let total: f32 = weights.iter().sum();
    out.iter_mut().for_each(|o| *o = 0.0);
    simd::weighted_rows_indexed(out, weights, v, keys);
    let inv = 1.0 / total;
    out.iter_mut().for_each(|o| *o *= inv);
}

/// Sparse attention of query head `h` over its selection (validated by the caller), one query
/// row at a time. (Processing the rows block by block of keys, so that gathered rows come from
/// L1, measured no faster: the per-block call overhead ate the gain.)
///
/// `k` and `v` are the inputs' K and V in their storage type.
pub fn sparse_head<T: simd::KvElement>(
    inputs: &AttentionInputs<'_>,
    k: &[T],
    v: &[T],
    h: usize,
    sel: &Selection,
    out: &mut [f32],
) {
    let s = inputs.shape();
    let d = s.head_dim;
    let kv = s.kv_head_of(h);
    let k = &k[kv * s.kv_len * d..(kv + 1) * s.kv_len * d];
    let v = &v[kv * s.kv_len * d..(kv + 1) * s.kv_len * d];
    let mut weights = Vec::new();
    for (i, o) in out.chunks_exact_mut(d).enumerate().take(s.q_len) {
        attend(
            inputs.q_row(h, i),
            k,
            v,
            s.scale,
            sel.row(i),
            &mut weights,
            o,
        );
    }
}

/// Zeroed f32 storage starting on a cache line, so that whole-vector loads of packed tiles never
/// straddle two lines (a plain `Vec` is only 16-byte aligned; measured up to a third slower).
#[derive(Debug, Default)]
pub struct LineAligned {
    data: Vec<f32>,
    offset: usize,
    len: usize,
}

impl LineAligned {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Self {
        const LINE_FLOATS: usize = 16;
        let data = vec![0.0f32; len + LINE_FLOATS - 1];
        // An f32 pointer reaches 64-byte alignment within 15 elements.
        let offset = data.as_ptr().align_offset(64).min(LINE_FLOATS - 1);
        LineAligned { data, offset, len }
    }
}

impl std::ops::Deref for LineAligned {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.data[self.offset..self.offset + self.len]
    }
}

impl std::ops::DerefMut for LineAligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data[self.offset..self.offset + self.len]
    }
}

/// Keys per tile of dense attention (a multiple of [`simd::NR`]).
pub const TILE: usize = 64;

/// K and V of one KV head laid out for the dense micro-kernels.
#[derive(Debug, Default)]
pub struct PackedKv {
    /// Head dimension padded to a multiple of [`simd::NR`] with zeros.
    pub dim: usize,
    /// K as panels of `NR` keys, each `[dim][NR]`; keys past the end are zero.
    pub k_panels: LineAligned,
    /// V as `[keys padded to TILE][dim]`, zero-padded.
    pub v: LineAligned,
    /// One row rounded through f16 (f16 storage), and its halves.
    rounded: Vec<f32>,
    halves: Vec<half::f16>,
}

impl PackedKv {
    /// Packs K and V (`[kv_heads][kv_len][head_dim]` of shape `s`) of KV head `kv` for
    /// [`dense_head`] into this buffer, reusing its memory when the size is the same (fresh
    /// pages cost a fault each: a new 512 KiB pack per head and call measured as much as the
    /// packing itself).
    ///
    /// Checks K and V for NaN and infinities as it reads them (a separate pass read 2 × 8 MiB
    /// of a 16/16-head, 2048-key layer from memory once more, a tenth of the call) and returns
    /// the first of each. With `storage` f16 every value is rounded to f16 as it is packed
    /// (no converted copy of K and V), and values beyond the f16 range are found too.
    pub fn repack(
        &mut self,
        s: &AttentionShape,
        (k, v): (&[f32], &[f32]),
        kv: usize,
        storage: KvStorage,
    ) -> PackFindings {
        let (d, nr) = (s.head_dim, simd::NR);
        let dim = d.div_ceil(nr) * nr;
        let keys = s.kv_len.div_ceil(TILE) * TILE;
        let k = &k[kv * s.kv_len * d..(kv + 1) * s.kv_len * d];
        let v = &v[kv * s.kv_len * d..(kv + 1) * s.kv_len * d];
        // Reused memory keeps the last call's values past the end, finite because the caller
        // reuses only packs whose check passed: they never count,
        // since scores past a row's valid keys are masked to 0 before P·V, and padded head
        // dimensions meet zero-padded queries and are dropped from the output.
        if self.dim != dim || self.k_panels.len() != keys * dim {
            self.dim = dim;
            self.k_panels = LineAligned::zeros(keys * dim);
            self.v = LineAligned::zeros(keys * dim);
        }
        let mut found = PackFindings::default();
        let half = storage == KvStorage::F16;
        self.rounded.resize(d, 0.0);
        self.halves.resize(d, half::f16::ZERO);
        let (rounded, halves) = (&mut self.rounded, &mut self.halves);
        for (j, row) in k.chunks_exact(d).enumerate() {
            found.k.note(row, j * d, half);
            let row = stored(row, half, rounded, halves);
            let panel = &mut self.k_panels[(j / nr) * dim * nr..][..dim * nr];
            for (c, &x) in row.iter().enumerate() {
                panel[c * nr + j % nr] = x;
            }
        }
        for (j, row) in v.chunks_exact(d).enumerate() {
            found.v.note(row, j * d, half);
            let row = stored(row, half, rounded, halves);
            self.v[j * dim..j * dim + d].copy_from_slice(row);
        }
        found
    }
}

/// `row` as the storage holds it: itself, or (`half`) rounded through f16 (`halves`) into
/// `rounded`.
fn stored<'r>(
    row: &'r [f32],
    half: bool,
    rounded: &'r mut [f32],
    halves: &mut [half::f16],
) -> &'r [f32] {
    if !half {
        return row;
    }
    use half::slice::HalfFloatSliceExt;
    halves.convert_from_f32_slice(row);
    halves.convert_to_f32_slice(rounded);
    rounded
}

/// What [`PackedKv::repack`] found in one of K and V: the first NaN or infinity and, for f16
/// storage, the first value beyond the f16 range (indices within the head's
/// `[kv_len][head_dim]`, and the values).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Refused {
    /// The first NaN or infinity.
    pub non_finite: Option<(usize, f32)>,
    /// The first value beyond the f16 range (f16 storage only).
    pub beyond_f16: Option<(usize, f32)>,
}

impl Refused {
    /// Notes the first refused values of `row`, whose first element is at `at`.
    fn note(&mut self, row: &[f32], at: usize, half: bool) {
        if self.non_finite.is_none() {
            self.non_finite = first_non_finite(row).map(|c| (at + c, row[c]));
        }
        if half && self.beyond_f16.is_none() {
            self.beyond_f16 = first_beyond_f16(row).map(|c| (at + c, row[c]));
        }
    }
}

/// What [`PackedKv::repack`] found refused in its head's K and V.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PackFindings {
    /// In K.
    pub k: Refused,
    /// In V.
    pub v: Refused,
}

/// Dense causal attention of query head `h` (FlashAttention-style, f32): blocks of
/// [`simd::MR`] query rows against tiles of [`TILE`] keys — scores by the Q·Kᵀ micro-kernel, an
/// online softmax, the P·V micro-kernel rescaling and accumulating the output. Tiles are the
/// outer loop: each tile of K and V is read from memory once and stays in cache while every
/// row block uses it (the head's running outputs, `q_len × head_dim`, are the smaller set).
pub fn dense_head(inputs: &AttentionInputs<'_>, h: usize, kv: &PackedKv, out: &mut [f32]) {
    let s = inputs.shape();
    let (d, dim, mr, nr) = (s.head_dim, kv.dim, simd::MR, simd::NR);
    let blocks = s.q_len.div_ceil(mr);
    // Per row block: its query rows (zero-padded), running output, maximum and sum.
    let mut q = LineAligned::zeros(blocks * mr * dim);
    for i in 0..s.q_len {
        q[i * dim..i * dim + d].copy_from_slice(inputs.q_row(h, i));
    }
    let mut acc = LineAligned::zeros(blocks * mr * dim);
    let mut m = vec![[f32::NEG_INFINITY; simd::MR]; blocks];
    let mut l = vec![[0.0f32; simd::MR]; blocks];
    let valid = |b: usize, r: usize| {
        let i = b * mr + r;
        if i < s.q_len {
            s.valid_keys(i)
        } else {
            0
        }
    };
    let end = (0..s.q_len).map(|i| s.valid_keys(i)).max().unwrap_or(0);
    let mut p = LineAligned::zeros(mr * TILE);
    for t0 in (0..end).step_by(TILE) {
        let v = &kv.v[t0 * dim..(t0 + TILE) * dim];
        for b in 0..blocks {
            if (0..mr).all(|r| valid(b, r) <= t0) {
                continue;
            }
            let q_block = &q[b * mr * dim..(b + 1) * mr * dim];
            for (panel, at) in (t0 / nr..(t0 + TILE) / nr).zip((0..TILE).step_by(nr)) {
                let k = &kv.k_panels[panel * dim * nr..][..dim * nr];
                simd::qk_panel(q_block, k, &mut p[at..], TILE);
            }
            let mut correction = [1.0f32; simd::MR];
            for (r, row) in p.chunks_exact_mut(TILE).enumerate() {
                let limit = valid(b, r).saturating_sub(t0).min(TILE);
                if limit == 0 {
                    row.iter_mut().for_each(|x| *x = 0.0);
                } else {
                    correction[r] =
                        simd::online_softmax_row(row, limit, s.scale, &mut m[b][r], &mut l[b][r]);
                }
            }
            simd::pv_tile(
                &p,
                TILE,
                v,
                &correction,
                &mut acc[b * mr * dim..(b + 1) * mr * dim],
            );
        }
    }
    for (i, o) in out.chunks_exact_mut(d).enumerate().take(s.q_len) {
        let inv = 1.0 / l[i / mr][i % mr];
        o.iter_mut()
            .zip(&acc[i * dim..])
            .for_each(|(o, a)| *o = a * inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The k-th largest by sorting, and how many exceed it.
    fn sorted_kth(scores: &[i8], k: usize) -> (i8, usize) {
        let mut sorted = scores.to_vec();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let t = sorted[k - 1];
        (t, scores.iter().filter(|&&x| x > t).count())
    }

    #[test]
    fn the_int8_threshold_search_finds_the_kth_largest_from_any_hint() {
        let rows: Vec<Vec<i8>> = vec![
            vec![0; 5],
            vec![i8::MIN, i8::MAX],
            vec![i8::MIN; 40],
            vec![i8::MAX, i8::MAX, i8::MIN, 0, i8::MAX, 5, 5, 5, -7],
            (0..70).map(|i| ((i * 37) % 256) as u8 as i8).collect(),
            (0..67).map(|i| [3i8, -1, 3, 3, 127, -128][i % 6]).collect(),
        ];
        // Miri interprets every count: there, every row (lengths under, at and past the 32-lane
        // vectors), the ranks at both ends and the middle, and every 51st hint (both ends of
        // the range among them); natively every rank and every hint.
        let miri = cfg!(miri);
        let step = if miri { 51 } else { 1 };
        for row in &rows {
            let n = row.len();
            let ks: Vec<usize> = if miri {
                let mut ks = vec![1, 2, n / 2, n - 2, n - 1];
                ks.retain(|&k| (1..n).contains(&k));
                ks.sort_unstable();
                ks.dedup();
                ks
            } else {
                (1..n).collect()
            };
            for k in ks {
                let want = sorted_kth(row, k);
                for hint in (i8::MIN..=i8::MAX).step_by(step) {
                    assert_eq!(
                        kth_largest_i8(row, k, hint),
                        want,
                        "{row:?} k={k} hint={hint}"
                    );
                }
            }
        }
    }

    #[test]
    fn int8_rows_keep_exactly_the_reference_keys_whatever_the_hint() {
        // 300 scores: nine 32-lane vectors and a remainder; 50 at 127, then 150 at 9.
        let row: Vec<i8> = (0..300).map(|i| [9i8, 9, -128, 127, 0, 9][i % 6]).collect();
        let reference = Ranked::new(&row);
        let mut picked = Vec::new();
        // Miri interprets every count and compaction: there, the budgets around the run of
        // 127s and the ends, from a hint below and above.
        let (ks, starts): (&[usize], &[i8]) = if cfg!(miri) {
            (&[0, 1, 50, 51, 299, 300, 301], &[i8::MIN, i8::MAX])
        } else {
            (
                &[0, 1, 2, 49, 50, 51, 150, 299, 300, 301],
                &[i8::MIN, 0, 9, i8::MAX],
            )
        };
        for &k in ks {
            let want = reference.top(k);
            for &start in starts {
                let mut hint = start;
                let count = select_i8(&row, k, &mut hint, &mut picked);
                assert_eq!(&picked[..count], &want[..], "k={k} hint={start}");
                if k > 0 && k < row.len() {
                    assert_eq!(
                        hint,
                        sorted_kth(&row, k).0,
                        "the hint follows the threshold"
                    );
                }
            }
        }
    }

    /// A row's indices ranked by the reference rule: larger first, ties at the lower index
    /// (sorted once per row, not once per budget: Miri interprets every comparison).
    struct Ranked(Vec<u32>);

    impl Ranked {
        fn new<T: Ord + Copy>(row: &[T]) -> Self {
            let mut order: Vec<u32> = (0..row.len() as u32).collect();
            order.sort_by(|&a, &b| row[b as usize].cmp(&row[a as usize]).then(a.cmp(&b)));
            Ranked(order)
        }

        /// The reference selection: the `k` largest, ascending.
        fn top(&self, k: usize) -> Vec<u32> {
            let mut want = self.0[..k.min(self.0.len())].to_vec();
            want.sort_unstable();
            want
        }
    }

    #[test]
    fn rank_keys_are_selected_exactly_whether_or_not_the_sample_brackets_them() {
        let (mut candidates, mut picked) = (Vec::new(), Vec::new());
        // Miri interprets every count of the bisection: there, rows just long enough to be
        // sampled (and one of them not a whole number of 8-lane vectors), and the budgets at
        // the ends and around the bracket's edge.
        let miri = cfg!(miri);
        let (n, odd) = if miri {
            (SAMPLED_ROW, SAMPLED_ROW + 5)
        } else {
            (1024, 600)
        };
        // The sample (every (n / SAMPLE)-th key from the middle of the first stride) sees only
        // the low value: it brackets the k-th largest below all k high keys, so that exactly k
        // keys lie above the bracket.
        let stride = n / SAMPLE;
        let hidden: Vec<u32> = (0..n)
            .map(|j| {
                if j % stride != stride / 2 && j % 3 == 0 {
                    10
                } else {
                    5
                }
            })
            .collect();
        let high = hidden.iter().filter(|&&x| x == 10).count();
        // Spread values, runs of ties, the extremes of the type, and rows too short to sample.
        let spread: Vec<u32> = (0..n as u32)
            .map(|j| j.wrapping_mul(2_654_435_761))
            .collect();
        let runs: Vec<u32> = (0..n as u32).map(|j| (j * 7 % 13) << 28).collect();
        let extremes: Vec<u32> = (0..odd)
            .map(|j| [0, u32::MAX, 1, u32::MAX - 1][j % 4])
            .collect();
        let short: Vec<u32> = (0..70u32).map(|j| j * 37 % 11).collect();
        for row in [&hidden, &spread, &runs, &extremes, &short] {
            let reference = Ranked::new(row);
            let ks: Vec<usize> = if miri {
                vec![1, high - 1, high, high + 1, row.len() - 1, row.len()]
            } else {
                vec![
                    1,
                    2,
                    100,
                    high - 1,
                    high,
                    high + 1,
                    300,
                    row.len() - 1,
                    row.len(),
                ]
            };
            for k in ks.into_iter().filter(|&k| k <= row.len()) {
                let count = select_keys(row, k, &mut candidates, &mut picked);
                assert_eq!(&picked[..count], &reference.top(k)[..], "k={k}");
            }
        }
    }

    #[test]
    fn the_bisection_on_counts_finds_the_kth_largest_key() {
        // The whole range of the type, and a bracket just around the keys.
        for (keys, lo, hi) in [
            (vec![7u32, 7, 3, u32::MAX, 0, 9, 7, u32::MAX], 0, u32::MAX),
            (vec![7, 7, 3, 9, 7, 4, 9], 3, 9),
        ] {
            let mut sorted = keys.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            for need in 1..=keys.len() {
                let t = sorted[need - 1];
                let want = (
                    t,
                    keys.iter().filter(|&&x| x == t).count(),
                    keys.iter().filter(|&&x| x > t).count(),
                );
                assert_eq!(kth_by_counts(&keys, need, lo, hi), want, "need {need}");
            }
        }
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "rayon's pool (crossbeam-epoch) fails Stacked Borrows under Miri; runs natively"
    )]
    fn topk_fills_each_row_of_the_selection_like_the_reference() {
        // INT8 and f32 rows of ties and spread values, causal at the tail and before it: rows
        // of every length 1..=40 (so every kept count) and a budget kept in full by short rows.
        let (rows, cols) = (40, 60);
        let i8s: Vec<i8> = (0..rows * cols)
            .map(|i| [3i8, -128, 127, 3, 0, 3, -5][i % 7] ^ ((i / 11) % 3) as i8)
            .collect();
        let f32s: Vec<f32> = i8s.iter().map(|&x| f32::from(x) * 0.5).collect();
        for q_offset in [0, 20] {
            for data in [ScoreData::I8(&i8s), ScoreData::F32(&f32s)] {
                let m = ScoreMatrix::causal(data, rows, cols, q_offset).unwrap();
                for budget in [
                    KeyBudget::Fixed(1),
                    KeyBudget::Ratio {
                        ratio: 0.3,
                        min_keys: 4,
                    },
                    KeyBudget::Ratio {
                        ratio: 1.0,
                        min_keys: 1,
                    },
                ] {
                    let got = topk(m, budget).unwrap();
                    let want = crate::reference::kernels::topk(m, budget).unwrap();
                    assert_eq!(got, want, "offset {q_offset}, {budget:?}");
                }
                let over = KeyBudget::Fixed(q_offset + 2);
                assert!(
                    topk(m, over).is_err(),
                    "k past the first row's keys is refused"
                );
            }
        }
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "rayon's pool (crossbeam-epoch) fails Stacked Borrows under Miri; runs natively"
    )]
    fn fill_rows_places_each_row_and_refuses_a_row_of_the_wrong_length() {
        let kept = [2, 0, 3, 1, 0, 4];
        let sel = fill_rows(&kept, |i, buf: &mut Vec<u32>| {
            buf.clear();
            buf.extend((0..kept[i] as u32).map(|j| 10 * i as u32 + j));
            Ok(&buf[..])
        })
        .unwrap();
        assert_eq!(sel.rows(), kept.len());
        for (i, &k) in kept.iter().enumerate() {
            let want: Vec<u32> = (0..k as u32).map(|j| 10 * i as u32 + j).collect();
            assert_eq!(sel.row(i), &want[..], "row {i}");
        }
        let e = fill_rows(&kept, |i, buf: &mut Vec<u32>| {
            buf.clear();
            buf.extend(0..(kept[i] + usize::from(i == 3)) as u32);
            Ok(&buf[..])
        })
        .unwrap_err();
        assert!(e.to_string().contains("query row 3"), "{e}");
        let empty = fill_rows(&[], |_, buf: &mut Vec<u32>| Ok(&buf[..])).unwrap();
        assert_eq!(empty, Selection::new());
    }
}
