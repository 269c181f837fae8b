//! The CPU stage model: how long top-k and sparse attention take on one core of a profile,
//! per kernel of the fast CPU backend.
//!
//! - **Top-k** is memory-bound or compute-bound: it streams every valid score once and spends
//!   `topk_cycles_per_key` core cycles per key (a key set per head and row), or
//!   `group_topk_cycles_per_key` per key of each head when a GQA group shares its set (the
//!   group's softmax-probability ranking, then one top-k); time = max(bytes / bandwidth,
//!   keys · cycles / clock).
//! - **Attention** is compute-bound: per (row, key) pair, `q·k` and `p·v` cost `4·d` FLOP plus
//!   the exponential (counted as 8 FLOP), at the kernel's own fraction of the FMA peak
//!   (`dense_efficiency`, `sparse_row_efficiency` one row at a time, `sparse_tiled_efficiency`
//!   in lane tiles, `sparse_group_efficiency`, measured by
//!   `shadowattn bench --profile-cpu`). Gathered K and V rows are reused across the query rows
//!   of a chunk, so DRAM traffic is the head's K and V once (`2 · kv_len · d` elements).
//!   Time = max(FLOP / (peak · efficiency), K/V bytes / bandwidth).
//!
//! - **Streaming passes** (the prefill's normalization, RoPE, (de)quantization and activation
//!   between NPU graphs) move their bytes at the core's bandwidth and spend their FLOP at the
//!   dense kernel's fraction of the FP32 peak, whichever takes longer.
//!
//! Every kernel declares its arithmetic ([`CpuKernel`]): an FP32 kernel is priced at the core's
//! `fp32_gflops`, an FP16 one (FP16 K/V, FP16 vector FMAs) at `fp16_gflops` with half the bytes,
//! one that multiplies FP16 K/V into FP32 accumulators at `fp32_gflops` with half the bytes.
//! The efficiencies were measured on x86 (AVX2) for our FP32 kernels; the rule that carries them
//! to an ARM core is stated in each profile's source: the same fraction of the core's FMA peak
//! of the kernel's arithmetic (the NEON kernels have the AVX2 ones' register blocking and FMA
//! count per pair, and an FP16 FMA does twice the lanes of an FP32 one per instruction).

use crate::npu::profile::{real, CpuCore};

/// FLOP charged for one exponential.
pub const EXP_FLOP: f64 = 8.0;

/// An attention kernel of the CPU stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// Dense causal attention over every valid key (register-blocked, online softmax).
    Dense,
    /// Dense attention with the whole score matrix materialized: scores and outputs one dot
    /// product per element, the softmax a pass of its own (llama.cpp's non-flash path with
    /// ggml's `vec_dot_f16`; the mllm port's dense baseline).
    DenseMaterialized,
    /// Sparse attention with a key set per head and row (one gathered row per query row).
    SparseRow,
    /// Sparse attention with a key set per head and row in lane tiles: consecutive rows side
    /// by side gather the union of their keys once, each masked to its own.
    SparseRowTiled,
    /// Sparse attention where a GQA group's heads share each row's set (the group's heads are
    /// the rows of one register-blocked kernel).
    SparseGroup,
}

pub use shadowattn_pipeline::SelectionSharing;

/// The arithmetic a kernel's multiply-adds use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// FP32 vectors and FP32 K/V.
    Fp32,
    /// FP16 vectors and FP16 K/V (ARMv8.2 FP16 FMLA: 8 lanes per 128-bit instruction).
    Fp16,
    /// FP16 K/V multiplied into FP32 accumulators (FMLAL/FMLAL2, or FP16 loads converted to
    /// FP32): 4 lanes per instruction, the FP32 rate with half the bytes.
    Fp16ToFp32,
    /// Q·Kᵀ and the exponentials in FP32, softmax·V in FP16 vectors (the fast CPU backend's
    /// `Arithmetic::F16`): half of each pair's multiply-adds at the FP16 rate, FP32 K/V.
    Fp16SoftmaxV,
}

impl Arithmetic {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Arithmetic::Fp32 => "FP32",
            Arithmetic::Fp16 => "FP16",
            Arithmetic::Fp16ToFp32 => "FP16 into FP32",
            Arithmetic::Fp16SoftmaxV => "FP32 Q·Kᵀ, FP16 softmax·V",
        }
    }
}

/// An attention kernel and the arithmetic it computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuKernel {
    /// What the kernel computes.
    pub kind: AttentionKernel,
    /// Its arithmetic.
    pub arithmetic: Arithmetic,
}

/// What a build's top-k costs per key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TopkCost {
    /// The core's measured `topk_cycles_per_key` / `group_topk_cycles_per_key` /
    /// `ranked_topk_cycles_per_key` (our kernels).
    Measured,
    /// Fixed cycles per key, a key set per head and row and per GQA group.
    CyclesPerKey {
        /// Per head and row.
        row: f64,
        /// Per key of each head when a group shares its set.
        group: f64,
    },
}

/// The CPU kernels a build runs in each role: dense attention, the two sparse kernels and
/// top-k.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelSet {
    /// Who wrote them, for reports.
    pub name: &'static str,
    /// Dense causal attention (the baseline, dense layers and decode).
    pub dense: CpuKernel,
    /// Sparse attention with a key set per head and row.
    pub sparse_row: CpuKernel,
    /// Sparse attention with a key set per GQA group.
    pub sparse_group: CpuKernel,
    /// Top-k.
    pub topk: TopkCost,
}

const fn kernel(kind: AttentionKernel, arithmetic: Arithmetic) -> CpuKernel {
    CpuKernel { kind, arithmetic }
}

impl KernelSet {
    /// This project's CPU backend: every kernel FP32, sparse attention one row at a time.
    pub const OURS: KernelSet = KernelSet {
        name: "shadowattn cpu-fast (FP32)",
        dense: kernel(AttentionKernel::Dense, Arithmetic::Fp32),
        sparse_row: kernel(AttentionKernel::SparseRow, Arithmetic::Fp32),
        sparse_group: kernel(AttentionKernel::SparseGroup, Arithmetic::Fp32),
        topk: TopkCost::Measured,
    };

    /// This project's CPU backend with `Arithmetic::F16`: dense FP32, the sparse kernels'
    /// softmax·V in FP16, in lane tiles (priced per row at the tiles' measured fraction; a
    /// shared selection at the row-at-a-time group kernel's, which its tiles reached 0.88× of
    /// on x86, medians of `shadowattn bench`).
    pub const OURS_FP16: KernelSet = KernelSet {
        name: "shadowattn cpu-fast (sparse softmax·V FP16)",
        dense: kernel(AttentionKernel::Dense, Arithmetic::Fp32),
        sparse_row: kernel(AttentionKernel::SparseRowTiled, Arithmetic::Fp16SoftmaxV),
        sparse_group: kernel(AttentionKernel::SparseGroup, Arithmetic::Fp16SoftmaxV),
        topk: TopkCost::Measured,
    };

    /// mllm's, as its shadowAttn port runs them (read from its code at 2cb4dbaa / 7e167018):
    /// dense attention materializes the scores, each element one ggml `vec_dot_fp16` (FP16
    /// K/V converted to FP32: the build has no FP16 vector arithmetic); the port's sparse
    /// attention multiplies FP16 K/V into FP32 accumulators with FMLAL, a key set per head and
    /// row. Its top-k was never measured: it is priced as our x86 INT8 top-k was before our
    /// own got faster (5.49 and 3.52 cycles per key, `shadowattn bench --threads 1 --runs 7
    /// --profile-cpu` on the paper's nine shapes, 2026-12-02), so our kernels' speed-ups do not
    /// move the port's predictions.
    pub const MLLM: KernelSet = KernelSet {
        name: "mllm (dense materialized, sparse per row; FP16 K/V into FP32)",
        dense: kernel(AttentionKernel::DenseMaterialized, Arithmetic::Fp16ToFp32),
        sparse_row: kernel(AttentionKernel::SparseRow, Arithmetic::Fp16ToFp32),
        sparse_group: kernel(AttentionKernel::SparseGroup, Arithmetic::Fp16ToFp32),
        topk: TopkCost::CyclesPerKey {
            row: 5.49,
            group: 3.52,
        },
    };

    /// The set's dense kernel.
    pub fn dense(&self) -> CpuKernel {
        self.dense
    }

    /// The set's sparse kernel for selections shared as `sharing`.
    pub fn sparse(&self, sharing: SelectionSharing) -> CpuKernel {
        match sharing {
            SelectionSharing::PerHead => self.sparse_row,
            SelectionSharing::PerGroup | SelectionSharing::PerGroupRanked => self.sparse_group,
        }
    }
}

/// Time of top-k over `keys` valid scores (of every head ranked) of `score_bytes` bytes each,
/// on one core, ns.
pub fn topk_ns(core: &CpuCore, keys: u64, score_bytes: usize, sharing: SelectionSharing) -> f64 {
    topk_ns_of(TopkCost::Measured, core, keys, score_bytes, sharing)
}

/// Cycles per key of `core`'s selection under the mass split `split` with `sharing` (per key of
/// each head when the CPU ranks, per ranked key of an NPU-reduced ranking), or the profile key
/// that is missing.
pub fn mass_split_cycles(
    core: &CpuCore,
    split: shadowattn_hal::RowSplit,
    sharing: SelectionSharing,
) -> std::result::Result<f64, &'static str> {
    use shadowattn_hal::RowSplit;
    let ranked = sharing == SelectionSharing::PerGroupRanked;
    let (key, value) = match (split, ranked) {
        (RowSplit::Threshold, false) => (
            "threshold_topk_cycles_per_key",
            &core.threshold_topk_cycles_per_key,
        ),
        (RowSplit::Threshold, true) => (
            "ranked_threshold_topk_cycles_per_key",
            &core.ranked_threshold_topk_cycles_per_key,
        ),
        (RowSplit::TopP, false) => ("top_p_topk_cycles_per_key", &core.top_p_topk_cycles_per_key),
        (RowSplit::TopP, true) => (
            "ranked_top_p_topk_cycles_per_key",
            &core.ranked_top_p_topk_cycles_per_key,
        ),
        (RowSplit::Even, false) => return Ok(real(&core.group_topk_cycles_per_key)),
        (RowSplit::Even, true) => return Ok(real(&core.ranked_topk_cycles_per_key)),
    };
    value.as_ref().map(real).ok_or(key)
}

/// Time of a selection examining `keys` keys at `cycles` per key on `core`, its scores of
/// `score_bytes` streamed: the slower of the two.
pub fn selection_ns(core: &CpuCore, keys: u64, score_bytes: usize, cycles: f64) -> f64 {
    let mem = (keys * score_bytes as u64) as f64 / real(&core.mem_gbps);
    let compute = keys as f64 * cycles / real(&core.clock_ghz);
    mem.max(compute)
}

/// [`topk_ns`] of a build whose top-k costs `cost`.
pub fn topk_ns_of(
    cost: TopkCost,
    core: &CpuCore,
    keys: u64,
    score_bytes: usize,
    sharing: SelectionSharing,
) -> f64 {
    let cycles = match (cost, sharing) {
        (TopkCost::Measured, SelectionSharing::PerHead) => real(&core.topk_cycles_per_key),
        (TopkCost::Measured, SelectionSharing::PerGroup) => real(&core.group_topk_cycles_per_key),
        (TopkCost::Measured, SelectionSharing::PerGroupRanked) => {
            real(&core.ranked_topk_cycles_per_key)
        }
        // A port's top-k of a reduced ranking at its per-row rate (no port ranks on the NPU).
        (
            TopkCost::CyclesPerKey { row, .. },
            SelectionSharing::PerHead | SelectionSharing::PerGroupRanked,
        ) => row,
        (TopkCost::CyclesPerKey { group, .. }, SelectionSharing::PerGroup) => group,
    };
    selection_ns(core, keys, score_bytes, cycles)
}

/// Time of `kernel` over `pairs` (row, key) pairs of one head with `kv_len` keys of dimension
/// `head_dim`, on one core, ns.
pub fn attention_ns(
    core: &CpuCore,
    kernel: CpuKernel,
    pairs: u64,
    kv_len: usize,
    head_dim: usize,
) -> f64 {
    let d = head_dim as f64;
    let (fp32, fp16) = (real(&core.fp32_gflops), real(&core.fp16_gflops));
    // FLOP per pair at each rate, and bytes per K/V element.
    let (at_fp32, at_fp16, elem) = match kernel.arithmetic {
        Arithmetic::Fp32 => (4.0 * d + EXP_FLOP, 0.0, 4.0),
        Arithmetic::Fp16 => (0.0, 4.0 * d + EXP_FLOP, 2.0),
        Arithmetic::Fp16ToFp32 => (4.0 * d + EXP_FLOP, 0.0, 2.0),
        Arithmetic::Fp16SoftmaxV => (2.0 * d + EXP_FLOP, 2.0 * d, 4.0),
    };
    let bytes = (2 * kv_len * head_dim) as f64 * elem;
    let efficiency = match kernel.kind {
        AttentionKernel::Dense => real(&core.dense_efficiency),
        AttentionKernel::DenseMaterialized => real(&core.materialized_efficiency),
        AttentionKernel::SparseRow => real(&core.sparse_row_efficiency),
        AttentionKernel::SparseRowTiled => real(&core.sparse_tiled_efficiency),
        AttentionKernel::SparseGroup => real(&core.sparse_group_efficiency),
    };
    let compute = pairs as f64 * (at_fp32 / fp32 + at_fp16 / fp16) / efficiency;
    compute.max(bytes / real(&core.mem_gbps))
}

/// Time of a streaming pass over `elements` elements (normalization, RoPE, quantization,
/// activation) that moves `bytes_per_element` bytes and spends `flop_per_element` FLOP on each,
/// on one core, ns: max(bytes / bandwidth, FLOP / (FP32 peak · `dense_efficiency`)).
pub fn streaming_ns(
    core: &CpuCore,
    elements: u64,
    bytes_per_element: f64,
    flop_per_element: f64,
) -> f64 {
    let mem = elements as f64 * bytes_per_element / real(&core.mem_gbps);
    let peak = real(&core.fp32_gflops) * real(&core.dense_efficiency);
    mem.max(elements as f64 * flop_per_element / peak)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npu::profile::SocProfile;

    #[test]
    fn attention_is_its_flop_at_the_kernels_rate_or_its_bytes_at_the_cores() {
        let p = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
        let mid = p.core("mid").unwrap();
        let k = KernelSet::OURS.dense();
        let peak = real(&mid.fp32_gflops) * real(&mid.dense_efficiency);
        // Compute-bound: 10⁶ pairs of d 128.
        let want = 1e6 * (4.0 * 128.0 + EXP_FLOP) / peak;
        assert!((attention_ns(mid, k, 1_000_000, 2048, 128) - want).abs() < 1e-6 * want);
        // Memory-bound: one pair over many keys streams K and V once.
        let bytes = |elem: f64| (2 * 100_000 * 128) as f64 * elem / real(&mid.mem_gbps);
        assert_eq!(attention_ns(mid, k, 1, 100_000, 128), bytes(4.0));
        let half = CpuKernel {
            arithmetic: Arithmetic::Fp16ToFp32,
            ..k
        };
        assert_eq!(attention_ns(mid, half, 1, 100_000, 128), bytes(2.0));
        // The materialized kernel at its own fraction.
        let m = KernelSet::MLLM.dense();
        let want = 1e6 * (4.0 * 128.0 + EXP_FLOP)
            / (real(&mid.fp32_gflops) * real(&mid.materialized_efficiency));
        assert!((attention_ns(mid, m, 1_000_000, 2048, 128) - want).abs() < 1e-6 * want);
    }

    #[test]
    fn stages_grow_with_work_and_prime_is_faster() {
        let p = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
        let (mid, prime) = (p.core("mid").unwrap(), p.core("prime").unwrap());
        let per_head = SelectionSharing::PerHead;
        assert!(topk_ns(mid, 2000, 4, per_head) > topk_ns(mid, 1000, 4, per_head));
        let row = |arithmetic| CpuKernel {
            kind: AttentionKernel::SparseRow,
            arithmetic,
        };
        let attn = |core, pairs, arithmetic| attention_ns(core, row(arithmetic), pairs, 2048, 64);
        let (f32, f16) = (Arithmetic::Fp32, Arithmetic::Fp16);
        assert!(attn(mid, 200_000, f32) > attn(mid, 100_000, f32));
        assert!(attn(prime, 100_000, f32) < attn(mid, 100_000, f32));
        // FP16 at the FP16 peak: twice the lanes, the same fraction of peak.
        let ratio = attn(mid, 100_000, f32) / attn(mid, 100_000, f16);
        assert!((ratio - 2.0).abs() < 1e-9, "{ratio}");
        // FP16 K/V into FP32 accumulators: the FP32 rate.
        let widening = attn(mid, 100_000, Arithmetic::Fp16ToFp32);
        assert_eq!(widening, attn(mid, 100_000, f32));
        assert_eq!(
            KernelSet::MLLM.sparse(SelectionSharing::PerHead),
            row(Arithmetic::Fp16ToFp32)
        );
        assert!(topk_ns(mid, 1, 1, per_head) > 0.0);
        // Each kernel at its own measured fraction of peak: the shared-selection kernel keeps
        // the arithmetic dense, so the same pairs cost less than per row.
        let pairs = |k| attention_ns(mid, k, 1_000_000, 2048, 128);
        let ours = KernelSet::OURS;
        let (group, row) = (
            ours.sparse(SelectionSharing::PerGroup),
            ours.sparse(SelectionSharing::PerHead),
        );
        assert!(pairs(group) < pairs(row));
        assert!(pairs(ours.dense()) <= pairs(group));
        // The materialized kernel at its own, lower fraction of peak.
        assert!(pairs(ours.dense()) < pairs(KernelSet::MLLM.dense()));
    }

    #[test]
    fn fp16_softmax_v_prices_half_of_each_pair_at_the_fp16_rate() {
        let soc = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
        let core = &soc.cpu.cores[0];
        let (fp32, fp16) = (real(&core.fp32_gflops), real(&core.fp16_gflops));
        assert!(fp16 > fp32, "the profile's FP16 rate is the faster");
        // Compute-bound: many pairs over few keys.
        let (pairs, keys, d) = (1_000_000u64, 64usize, 64usize);
        let price = |kernel: CpuKernel| attention_ns(core, kernel, pairs, keys, d);
        let fp16_tiles = KernelSet::OURS_FP16.sparse(SelectionSharing::PerHead);
        assert_eq!(fp16_tiles.kind, AttentionKernel::SparseRowTiled);
        let fp32_tiles = CpuKernel {
            arithmetic: Arithmetic::Fp32,
            ..fp16_tiles
        };
        let df = d as f64;
        let want = (2.0 * df + EXP_FLOP + 2.0 * df * fp32 / fp16) / (4.0 * df + EXP_FLOP);
        let got = price(fp16_tiles) / price(fp32_tiles);
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        // Tiles at their own measured fraction of peak, not the row-at-a-time kernel's.
        let single = price(KernelSet::OURS.sparse(SelectionSharing::PerHead));
        let tiles_over_single =
            real(&core.sparse_row_efficiency) / real(&core.sparse_tiled_efficiency);
        assert!((price(fp32_tiles) / single - tiles_over_single).abs() < 1e-9);
        assert_eq!(KernelSet::OURS_FP16.dense(), KernelSet::OURS.dense());
    }
}
