//! The CPU stage model: how long top-k and sparse attention take on one core of a profile.
//!
//! - **Top-k** is memory-bound: it streams every valid score once and spends
//!   `topk_cycles_per_key` core cycles per key; time = max(bytes / bandwidth, keys · cycles / clock).
//! - **Sparse softmax·V** is compute-bound: per selected key, `q·k` and `p·v` cost `4·d` FLOP plus
//!   the exponential (counted as 8 FLOP). Gathered K and V rows are reused across the query
//!   rows of a chunk, so DRAM traffic is the head's K and V once (`2 · kv_len · d` elements).
//!   Time = max(FLOP / (peak · attention_efficiency), K/V bytes / bandwidth).
//! - **Dense attention** is sparse attention over every valid key.
//!
//! FP32 compute uses `fp32_gflops`; FP16 storage halves the gathered bytes and uses `fp16_gflops`.

use crate::profile::{real, CpuCore};

/// FLOP charged for one exponential.
pub const EXP_FLOP: f64 = 8.0;

/// Time of top-k over `keys` valid scores of `score_bytes` bytes each, on one core, ns.
pub fn topk_ns(core: &CpuCore, keys: u64, score_bytes: usize) -> f64 {
    let mem = (keys * score_bytes as u64) as f64 / real(&core.mem_gbps);
    let compute = keys as f64 * real(&core.topk_cycles_per_key) / real(&core.clock_ghz);
    mem.max(compute)
}

/// Time of softmax·V over `selected` (row, key) pairs of one head with `kv_len` keys of
/// dimension `head_dim`, on one core, ns.
pub fn sparse_attention_ns(
    core: &CpuCore,
    selected: u64,
    kv_len: usize,
    head_dim: usize,
    fp16: bool,
) -> f64 {
    let flop = selected as f64 * (4.0 * head_dim as f64 + EXP_FLOP);
    let elem = if fp16 { 2.0 } else { 4.0 };
    let bytes = (2 * kv_len * head_dim) as f64 * elem;
    let peak = if fp16 {
        real(&core.fp16_gflops)
    } else {
        real(&core.fp32_gflops)
    } * real(&core.attention_efficiency);
    (flop / peak).max(bytes / real(&core.mem_gbps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::SocProfile;

    #[test]
    fn stages_grow_with_work_and_prime_is_faster() {
        let p = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
        let (mid, prime) = (p.core("mid").unwrap(), p.core("prime").unwrap());
        assert!(topk_ns(mid, 2000, 4) > topk_ns(mid, 1000, 4));
        let attn = |core, pairs, fp16| sparse_attention_ns(core, pairs, 2048, 64, fp16);
        assert!(attn(mid, 200_000, false) > attn(mid, 100_000, false));
        assert!(attn(prime, 100_000, false) < attn(mid, 100_000, false));
        assert!(attn(mid, 100_000, true) < attn(mid, 100_000, false));
        assert!(topk_ns(mid, 1, 1) > 0.0);
    }
}
