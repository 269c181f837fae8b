//! Fast CPU attention kernels beside the golden reference: vectorized with AVX2+FMA (x86-64) or
//! NEON (aarch64), run-time detected, with a portable fallback ([`simd`]); parallel over heads on a
//! rayon pool of a chosen size. Quantization and top-k reproduce the golden results exactly;
//! attention accumulates in f32 and matches the golden f64 results within float tolerance.

pub(crate) mod group;
pub(crate) mod kernels;
pub mod simd;

use crate::reference;
use rayon::prelude::*;
use shadowattn_hal::{
    AttentionInputs, ComputeBackend, ComputeCapabilities, DType, GroupScores, HalError, HeadsView,
    KeyBudget, QuantizedHeads, Result, ScoreMatrix, Selection,
};

/// Registry name of the fast CPU kernels.
pub const NAME: &str = "cpu-fast";

/// How the fast kernels store K and V (accumulation is always f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvStorage {
    /// f32, as given.
    #[default]
    F32,
    /// f16: half the bytes for sparse attention to gather; values beyond ±65504 are refused.
    F16,
}

/// Fast CPU compute kernels on a thread pool.
#[derive(Debug)]
pub struct FastCpuBackend {
    pool: rayon::ThreadPool,
    threads: usize,
    storage: KvStorage,
    /// The dense kernel's packed K/V of the last call, reused by the next (as large as that
    /// call's K and V, padded to whole tiles).
    packed: std::sync::Mutex<Vec<kernels::PackedKv>>,
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
        Ok(FastCpuBackend {
            pool,
            threads,
            storage: KvStorage::F32,
            packed: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The same backend storing K and V as `storage`.
    pub fn with_storage(mut self, storage: KvStorage) -> Self {
        self.storage = storage;
        self
    }

    /// How K and V are stored.
    pub fn storage(&self) -> KvStorage {
        self.storage
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The instruction set in use.
    pub fn isa(&self) -> simd::Isa {
        simd::isa()
    }

    /// Sparse attention of every head on the pool, K and V (`k`, `v`) stored as `T`.
    fn sparse_heads<T: simd::KvElement>(
        &self,
        inputs: &AttentionInputs<'_>,
        k: &[T],
        v: &[T],
        selections: &[Selection],
        out: &mut [f32],
    ) {
        let per_head = inputs.shape().q_len * inputs.shape().head_dim;
        self.pool.install(|| {
            out.par_chunks_mut(per_head)
                .zip(selections.par_iter())
                .enumerate()
                .for_each(|(h, (o, sel))| kernels::sparse_head(inputs, k, v, h, sel, o));
        });
    }

    /// K and V of `inputs` as f16, converted on the pool.
    fn kv_f16(&self, inputs: &AttentionInputs<'_>) -> Result<(Vec<half::f16>, Vec<half::f16>)> {
        let (k, v) = self.pool.install(|| {
            rayon::join(
                || shadowattn_hal::compute::kv_to_f16("k", inputs.k()),
                || shadowattn_hal::compute::kv_to_f16("v", inputs.v()),
            )
        });
        Ok((k?, v?))
    }
}

impl ComputeBackend for FastCpuBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> ComputeCapabilities {
        ComputeCapabilities {
            kv_storage: match self.storage {
                KvStorage::F32 => DType::F32,
                KvStorage::F16 => DType::F16,
            },
        }
    }

    fn quantize_heads(&self, x: HeadsView<'_>, scales: Option<&[f32]>) -> Result<QuantizedHeads> {
        // Quantization is bandwidth-light and must equal the golden rule bit for bit.
        reference::kernels::quantize_heads(x, scales)
    }

    fn topk(&self, scores: ScoreMatrix<'_>, budget: KeyBudget) -> Result<Selection> {
        self.pool.install(|| kernels::topk(scores, budget))
    }

    fn sparse_attention(
        &self,
        inputs: AttentionInputs<'_>,
        selections: &[Selection],
        out: &mut [f32],
    ) -> Result<()> {
        shadowattn_hal::compute::check_sparse_call(&inputs, selections, out)?;
        match self.storage {
            KvStorage::F32 => self.sparse_heads(&inputs, inputs.k(), inputs.v(), selections, out),
            KvStorage::F16 => {
                let (k, v) = self.kv_f16(&inputs)?;
                self.sparse_heads(&inputs, &k, &v, selections, out);
            }
        }
        Ok(())
    }

    fn topk_group(&self, group: &GroupScores<'_>, budget: KeyBudget) -> Result<Selection> {
        self.pool.install(|| group::topk_group(group, budget))
    }

    fn sparse_attention_grouped(
        &self,
        inputs: AttentionInputs<'_>,
        selections: &[Selection],
        out: &mut [f32],
    ) -> Result<()> {
        shadowattn_hal::group::check_grouped_call(&inputs, selections, out)?;
        match self.storage {
            KvStorage::F32 => self.pool.install(|| {
                group::sparse_grouped(&inputs, inputs.k(), inputs.v(), selections, out)
            }),
            KvStorage::F16 => {
                let (k, v) = self.kv_f16(&inputs)?;
                self.pool
                    .install(|| group::sparse_grouped(&inputs, &k, &v, selections, out));
            }
        }
        Ok(())
    }

    fn dense_attention(&self, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()> {
        let s = inputs.shape();
        s.validate()?;
        shadowattn_hal::compute::check_output_len(&inputs, out)?;
        shadowattn_hal::compute::check_finite_tensor("q", inputs.q())?;
        let per_head = s.q_len * s.head_dim;
        // Dense attention packs K and V into f32 tiles; f16 storage rounds them first, so both
        // kernels see the same values.
        let rounded = match self.storage {
            KvStorage::F32 => None,
            KvStorage::F16 => {
                // Non-finite values first, as every backend refuses them (the f16 range check
                // would name infinities differently).
                shadowattn_hal::compute::check_finite_tensor("k", inputs.k())?;
                shadowattn_hal::compute::check_finite_tensor("v", inputs.v())?;
                let (k, v) = self.kv_f16(&inputs)?;
                let widen = |x: Vec<half::f16>| x.iter().map(|h| h.to_f32()).collect::<Vec<f32>>();
                Some((widen(k), widen(v)))
            }
        };
        let (k, v) = rounded.as_ref().map_or((inputs.k(), inputs.v()), |(k, v)| {
            (k.as_slice(), v.as_slice())
        });
        // A concurrent call finds the buffers taken and packs into new ones.
        let lock = || self.packed.lock().unwrap_or_else(|e| e.into_inner());
        let mut packed = std::mem::take(&mut *lock());
        packed.resize_with(s.kv_heads, kernels::PackedKv::default);
        let result = self.pool.install(|| {
            // K and V are checked for non-finite values while they are packed.
            let found: Vec<kernels::NonFinite> = packed
                .par_iter_mut()
                .enumerate()
                .map(|(kv, p)| p.repack(&s, k, v, kv))
                .collect();
            first_non_finite_kv(&s, &found)?;
            out.par_chunks_mut(per_head)
                .enumerate()
                .for_each(|(h, o)| kernels::dense_head(&inputs, h, &packed[s.kv_head_of(h)], o));
            Ok(())
        });
        // A refused call has packed its NaN or infinity; a later call could meet it in its
        // padding (0 × NaN is NaN), so only a clean pack goes back for reuse.
        if result.is_ok() {
            *lock() = packed;
        }
        result
    }
}

/// The error `check_finite` gives for the first non-finite K, then V, value the heads' packing
/// met (indices across `[kv_heads][kv_len][head_dim]`).
fn first_non_finite_kv(
    s: &shadowattn_hal::AttentionShape,
    found: &[kernels::NonFinite],
) -> Result<()> {
    let per_head = s.kv_len * s.head_dim;
    let first = |pick: fn(&kernels::NonFinite) -> Option<(usize, f32)>| {
        found
            .iter()
            .enumerate()
            .find_map(|(kv, f)| pick(f).map(|(i, x)| (kv * per_head + i, x)))
    };
    if let Some((i, x)) = first(|f| f.k) {
        return Err(shadowattn_hal::compute::non_finite_value("k", i, x));
    }
    if let Some((i, x)) = first(|f| f.v) {
        return Err(shadowattn_hal::compute::non_finite_value("v", i, x));
    }
    Ok(())
}
