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
//!   (`dense_efficiency`, `sparse_row_efficiency`, `sparse_group_efficiency`, measured by
//!   `shadowattn bench --profile-cpu`). Gathered K and V rows are reused across the query rows
//!   of a chunk, so DRAM traffic is the head's K and V once (`2 · kv_len · d` elements).
//!   Time = max(FLOP / (peak · efficiency), K/V bytes / bandwidth).
//!
//! - **Streaming passes** (the prefill's normalization, RoPE, (de)quantization and activation
//!   between NPU graphs) move their bytes at the core's bandwidth and spend their FLOP at the
//!   dense kernel's fraction of the FP32 peak, whichever takes longer.
//!
//! FP32 compute uses `fp32_gflops`; FP16 storage halves the gathered bytes and uses `fp16_gflops`.

use crate::npu::profile::{real, CpuCore};

/// FLOP charged for one exponential.
pub const EXP_FLOP: f64 = 8.0;

/// An attention kernel of the CPU stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// Dense causal attention over every valid key.
    Dense,
    /// Sparse attention with a key set per head and row (one gathered row per query row).
    SparseRow,
    /// Sparse attention where a GQA group's heads share each row's set (the group's heads are
    /// the rows of one register-blocked kernel).
    SparseGroup,
}

pub use shadowattn_pipeline::SelectionSharing;

impl AttentionKernel {
    /// The sparse attention kernel of `sharing`.
    pub fn sparse(sharing: SelectionSharing) -> Self {
        match sharing {
            SelectionSharing::PerHead => AttentionKernel::SparseRow,
            SelectionSharing::PerGroup => AttentionKernel::SparseGroup,
        }
    }
}

/// Time of top-k over `keys` valid scores (of every head ranked) of `score_bytes` bytes each,
/// on one core, ns.
pub fn topk_ns(core: &CpuCore, keys: u64, score_bytes: usize, sharing: SelectionSharing) -> f64 {
    let cycles = match sharing {
        SelectionSharing::PerHead => real(&core.topk_cycles_per_key),
        SelectionSharing::PerGroup => real(&core.group_topk_cycles_per_key),
    };
    let mem = (keys * score_bytes as u64) as f64 / real(&core.mem_gbps);
    let compute = keys as f64 * cycles / real(&core.clock_ghz);
    mem.max(compute)
}

/// Time of `kernel` over `pairs` (row, key) pairs of one head with `kv_len` keys of dimension
/// `head_dim`, on one core, ns.
pub fn attention_ns(
    core: &CpuCore,
    kernel: AttentionKernel,
    pairs: u64,
    kv_len: usize,
    head_dim: usize,
    fp16: bool,
) -> f64 {
    let flop = pairs as f64 * (4.0 * head_dim as f64 + EXP_FLOP);
    let elem = if fp16 { 2.0 } else { 4.0 };
    let bytes = (2 * kv_len * head_dim) as f64 * elem;
    let efficiency = match kernel {
        AttentionKernel::Dense => real(&core.dense_efficiency),
        AttentionKernel::SparseRow => real(&core.sparse_row_efficiency),
        AttentionKernel::SparseGroup => real(&core.sparse_group_efficiency),
    };
    let peak = if fp16 {
        real(&core.fp16_gflops)
    } else {
        real(&core.fp32_gflops)
    } * efficiency;
    (flop / peak).max(bytes / real(&core.mem_gbps))
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
    fn stages_grow_with_work_and_prime_is_faster() {
        let p = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
        let (mid, prime) = (p.core("mid").unwrap(), p.core("prime").unwrap());
        let row = SelectionSharing::PerHead;
        assert!(topk_ns(mid, 2000, 4, row) > topk_ns(mid, 1000, 4, row));
        let attn = |core, pairs, fp16| {
            attention_ns(core, AttentionKernel::SparseRow, pairs, 2048, 64, fp16)
        };
        assert!(attn(mid, 200_000, false) > attn(mid, 100_000, false));
        assert!(attn(prime, 100_000, false) < attn(mid, 100_000, false));
        assert!(attn(mid, 100_000, true) < attn(mid, 100_000, false));
        assert!(topk_ns(mid, 1, 1, row) > 0.0);
        // Each kernel at its own measured fraction of peak: the shared-selection kernel keeps
        // the arithmetic dense, so the same pairs cost less than per row.
        let pairs = |k| attention_ns(mid, k, 1_000_000, 2048, 128, false);
        assert!(pairs(AttentionKernel::SparseGroup) < pairs(AttentionKernel::SparseRow));
        assert!(pairs(AttentionKernel::Dense) <= pairs(AttentionKernel::SparseGroup));
    }
}
