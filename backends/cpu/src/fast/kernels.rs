//! The fast kernels themselves, in safe code over the primitives of [`super::simd`].

use super::simd;
use super::KvStorage;
use rayon::prelude::*;
use shadowattn_hal::compute::{first_beyond_f16, first_non_finite};
use shadowattn_hal::{
    AttentionInputs, AttentionShape, HalError, KeyBudget, Result, ScoreData, ScoreMatrix, Selection,
};

/// Bits of the bin index in one narrowing step of [`select_keys`].
const BIN_BITS: u32 = 10;

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

/// Indices of the `k` largest `keys` (ties kept at the lower index), ascending, into `picked`.
///
/// A strided sample of the row brackets the k-th largest key; one vectorized pass counts the keys
/// above the bracket and gathers those inside it (about a quarter of the row). Radix narrowing
/// then finds the k-th largest among them: a histogram of at most 2^BIN_BITS bins over their
/// range picks the bin holding it, and so on until one value is left (at most four levels). If
/// the sample misled the bracket, the narrowing runs on the whole row instead. One last
/// vectorized scan keeps the keys above that value and the earliest keys equal to it.
fn select_keys(keys: &[u32], k: usize, candidates: &mut Vec<u32>, picked: &mut Vec<u32>) {
    picked.clear();
    let n = keys.len();
    if k == 0 {
        return;
    }
    if k >= n {
        picked.extend(0..n as u32);
        return;
    }
    candidates.resize(n + simd::COMPACT_SLACK, 0);
    let mut above = 0;
    let mut bracketed = false;
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
        let (over, inside) = simd::bracket(keys, lo, hi, candidates);
        if over < k && over + inside >= k {
            candidates.truncate(inside);
            above = over;
            bracketed = true;
        }
    }
    if !bracketed {
        candidates.clear();
        candidates.extend_from_slice(keys);
    }
    let (threshold, equal, over) = kth_largest(candidates, k - above);
    above += over;
    let next = threshold.checked_add(1);
    keep_top(
        keys,
        threshold,
        next,
        k - above,
        equal,
        picked,
        simd::indices_at_least,
    );
}

/// Writes to `picked`, ascending, the indices of the keys of `row` above `threshold` and of the
/// first `ties` of the `equal` keys equal to it (`next` is the value just above the threshold,
/// `None` at the top of the type). `at_least(part, first, t, out)` is the vectorized compaction
/// of the indices `first + j` of `part` whose value is at least `t`.
fn keep_top<T: Copy + PartialEq>(
    row: &[T],
    threshold: T,
    next: Option<T>,
    ties: usize,
    equal: usize,
    picked: &mut Vec<u32>,
    at_least: fn(&[T], usize, T, &mut [u32]) -> usize,
) {
    picked.resize(row.len() + simd::COMPACT_SLACK, 0);
    let count = if ties == equal {
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
    };
    picked.truncate(count);
}

/// [`select_keys`] for INT8 scores (the requantized pilot output of NPUs): one histogram pass
/// of 256 bins finds the k-th largest value, one vectorized scan keeps the keys.
fn select_i8(scores: &[i8], k: usize, picked: &mut Vec<u32>) {
    picked.clear();
    let n = scores.len();
    if k == 0 {
        return;
    }
    if k >= n {
        picked.extend(0..n as u32);
        return;
    }
    // Four interleaved histograms: runs of equal values (common in INT8) would otherwise wait
    // on each other's increments.
    let mut hist = [[0u32; 256]; 4];
    let mut quads = scores.chunks_exact(4);
    for quad in &mut quads {
        for (h, &x) in hist.iter_mut().zip(quad) {
            h[usize::from(x as u8 ^ 0x80)] += 1;
        }
    }
    for &x in quads.remainder() {
        hist[0][usize::from(x as u8 ^ 0x80)] += 1;
    }
    let count = |bin: usize| hist.iter().map(|h| h[bin] as usize).sum::<usize>();
    let (mut bin, mut above) = (255usize, 0usize);
    while above + count(bin) < k {
        above += count(bin);
        bin -= 1;
    }
    let threshold = (bin as u8 ^ 0x80) as i8;
    let next = threshold.checked_add(1);
    let at_least = simd::indices_at_least_i8;
    keep_top(
        scores,
        threshold,
        next,
        k - above,
        count(bin),
        picked,
        at_least,
    );
}

/// The `need`-th largest of the (non-empty) `candidates` by radix narrowing (the vector is
/// consumed as scratch): returns it, how many candidates equal it, and how many exceed it.
fn kth_largest(candidates: &mut Vec<u32>, mut need: usize) -> (u32, usize, usize) {
    let (mut lo, mut hi) = min_max(candidates);
    let mut above = 0;
    let mut hist = [0u32; 1 << BIN_BITS];
    loop {
        if lo == hi {
            return (lo, candidates.len(), above);
        }
        let shift = (32 - (hi - lo).leading_zeros()).saturating_sub(BIN_BITS);
        let bins = (((hi - lo) >> shift) + 1) as usize;
        hist[..bins].iter_mut().for_each(|h| *h = 0);
        for &x in candidates.iter() {
            hist[((x - lo) >> shift) as usize] += 1;
        }
        let mut bin = bins - 1;
        while (hist[bin] as usize) < need {
            need -= hist[bin] as usize;
            above += hist[bin] as usize;
            bin -= 1;
        }
        let bin_lo = lo + ((bin as u32) << shift);
        if shift == 0 {
            return (bin_lo, hist[bin] as usize, above);
        }
        let width = (hi - bin_lo).min((1u32 << shift) - 1);
        candidates.retain(|x| x.wrapping_sub(bin_lo) <= width);
        (lo, hi) = min_max(candidates);
    }
}

/// The buffers one top-k row reuses: rank keys, candidates, and the picked indices.
#[derive(Debug, Default)]
pub struct Scratch {
    keys: Vec<u32>,
    candidates: Vec<u32>,
    /// The last row's picked indices, ascending.
    pub picked: Vec<u32>,
}

/// The indices of the `k` largest (non-NaN) `ranks`, ties at the lower index, ascending, into
/// `scratch.picked`.
pub fn select_ranked(ranks: &[f32], k: usize, scratch: &mut Scratch) {
    scratch.keys.clear();
    scratch.keys.extend(ranks.iter().map(|x| x.key()));
    select_keys(
        &scratch.keys,
        k,
        &mut scratch.candidates,
        &mut scratch.picked,
    );
}

/// Top-k of query row `i` of `scores` into `picked` (ascending), `keys` being scratch.
pub fn topk_row(
    scores: &ScoreMatrix<'_>,
    budget: KeyBudget,
    i: usize,
    keys: &mut Vec<u32>,
    candidates: &mut Vec<u32>,
    picked: &mut Vec<u32>,
) -> Result<()> {
    let n = scores.valid_keys(i);
    let k = budget.keys_for(i, n)?;
    keys.clear();
    match scores.row(i) {
        ScoreData::I32(d) => keys.extend(d.iter().map(|x| x.key())),
        ScoreData::I8(d) => {
            select_i8(d, k, picked);
            return Ok(());
        }
        ScoreData::F32(d) => {
            if let Some(j) = d.iter().position(|v| v.is_nan()) {
                return Err(HalError::invalid_value(
                    "scores",
                    format!("query row {i}, key {j} is NaN; NaN has no order"),
                ));
            }
            keys.extend(d.iter().map(|x| x.key()));
        }
    }
    select_keys(keys, k, candidates, picked);
    Ok(())
}

/// Top-k per row over the causal prefix, identical to the golden kernel's selection and order;
/// rows run in parallel on the current rayon pool.
pub fn topk(scores: ScoreMatrix<'_>, budget: KeyBudget) -> Result<Selection> {
    budget.validate()?;
    let rows: Vec<Vec<u32>> = (0..scores.rows())
        .into_par_iter()
        .with_min_len(4)
        .map_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(keys, candidates, picked), i| {
                topk_row(&scores, budget, i, keys, candidates, picked).map(|()| picked.clone())
            },
        )
        .collect::<Result<_>>()?;
    let mut sel = Selection::new();
    for row in &rows {
        sel.push_row(row);
    }
    Ok(sel)
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
