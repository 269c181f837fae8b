//! Fast CPU attention kernels beside the golden reference: vectorized with AVX2+FMA (x86-64) or
//! NEON (aarch64), run-time detected, with a portable fallback ([`sys`]); parallel over heads on a
//! rayon pool of a chosen size. Quantization and top-k reproduce the golden results exactly;
//! attention accumulates in f32 and matches the golden f64 results within float tolerance.

pub mod kernels;
pub mod sys;

use crate::reference;
use rayon::prelude::*;
use shadowattn_hal::{
    AttentionInputs, ComputeBackend, HalError, HeadsView, KeyBudget, QuantizedHeads, Result,
    ScoreMatrix, Selection,
};

/// Registry name of the fast CPU kernels.
pub const NAME: &str = "cpu-fast";

/// Fast CPU compute kernels on a thread pool.
#[derive(Debug)]
pub struct FastCpuBackend {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl FastCpuBackend {
    /// Most worker threads accepted: far above any SoC's core count, far below what would
    /// exhaust the machine when a typo asks for millions.
    pub const MAX_THREADS: usize = 1024;

    /// Kernels on `threads` worker threads (1 to [`Self::MAX_THREADS`]).
    pub fn new(threads: usize) -> Result<Self> {
        if threads == 0 || threads > Self::MAX_THREADS {
            return Err(HalError::invalid_argument(
                "threads",
                format!("must be in 1..={}, got {threads}", Self::MAX_THREADS),
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| {
                HalError::invalid_argument("threads", format!("cannot start the pool: {e}"))
            })?;
        Ok(FastCpuBackend { pool, threads })
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The instruction set in use.
    pub fn isa(&self) -> sys::Isa {
        sys::isa()
    }
}

impl ComputeBackend for FastCpuBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn quantize_heads(&self, x: HeadsView<'_>, scales: Option<&[f32]>) -> Result<QuantizedHeads> {
        // Quantization is bandwidth-light and must equal the golden rule bit for bit.
        reference::kernels::quantize_heads(x, scales)
    }

    fn topk(&self, scores: ScoreMatrix<'_>, budget: KeyBudget) -> Result<Selection> {
        kernels::topk(scores, budget)
    }

    fn sparse_attention(
        &self,
        inputs: AttentionInputs<'_>,
        selections: &[Selection],
        out: &mut [f32],
    ) -> Result<()> {
        shadowattn_hal::compute::check_sparse_call(&inputs, selections, out)?;
        let s = inputs.shape;
        let per_head = s.q_len * s.head_dim;
        self.pool.install(|| {
            out.par_chunks_mut(per_head)
                .zip(selections.par_iter())
                .enumerate()
                .for_each(|(h, (o, sel))| kernels::sparse_head(&inputs, h, sel, o));
        });
        Ok(())
    }

    fn dense_attention(&self, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()> {
        shadowattn_hal::compute::check_dense_call(&inputs, out)?;
        let s = inputs.shape;
        let per_head = s.q_len * s.head_dim;
        self.pool.install(|| {
            let kts: Vec<Vec<f32>> = (0..s.kv_heads)
                .into_par_iter()
                .map(|kv| kernels::transpose_keys(&inputs, kv))
                .collect();
            out.par_chunks_mut(per_head)
                .enumerate()
                .for_each(|(h, o)| kernels::dense_head(&inputs, h, &kts[s.kv_head_of(h)], o));
        });
        Ok(())
    }
}
