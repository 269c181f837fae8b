//! Fast CPU attention kernels beside the golden reference: vectorized with AVX2+FMA (x86-64) or
//! NEON (aarch64), run-time detected, with a portable fallback ([`simd`]); parallel over heads on a
//! rayon pool of a chosen size. Quantization and top-k reproduce the golden results exactly;
//! attention accumulates in f32 and matches the golden f64 results within float tolerance.

pub(crate) mod group;
pub(crate) mod kernels;
pub mod simd;
pub(crate) mod tile;

use crate::reference;
use rayon::prelude::*;
use shadowattn_hal::{
    AttentionInputs, ChunkBudget, ComputeBackend, ComputeCapabilities, DType, GroupScores,
    HalError, HeadsView, KeyBudget, QuantizedHeads, Result, ScoreMatrix, Selection,
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

/// The arithmetic of sparse attention's softmax·V (Q·Kᵀ, the softmax and the normalization
/// are always f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Arithmetic {
    /// f32 multiply-adds.
    #[default]
    F32,
    /// f16 multiply-adds on weights and V rounded to f16, the paper's "non-sensitive
    /// multiplies in FP16": NEON FEAT_FP16 where the CPU has it, emulated exactly (and slowly)
    /// elsewhere so its accuracy can be measured on any machine. Runs in lane tiles only.
    F16,
}

impl std::str::FromStr for Arithmetic {
    type Err = HalError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Arithmetic::F32),
            "f16" => Ok(Arithmetic::F16),
            _ => Err(HalError::invalid_argument(
                "arithmetic",
                format!("`{s}` is not an arithmetic; use f32 or f16"),
            )),
        }
    }
}

/// Which kernel computes sparse attention over gathered keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SparseKernel {
    /// The faster of the two, by the measured rule of [`SparseKernel::resolve`].
    #[default]
    Auto,
    /// One query row at a time (with its group's heads under a shared selection): each row
    /// gathers its own keys.
    Single,
    /// Lane tiles: up to eight query rows gather the union of their keys once.
    Tiled,
}

impl SparseKernel {
    /// The kernel `Auto` stands for: one row at a time. Measured with `shadowattn bench
    /// --threads 1,2 --runs 7` on the paper's nine shapes (AVX2, 20 % kept), the row-at-a-time
    /// kernels were the faster on 16 of the 18 per-row cases and 9 of the 12 shared ones: the
    /// lane tiles read each gathered row once per tile but compute the union's extra keys
    /// (2.3× a row's set on the bench's chunks), which costs more than the gathers they save.
    pub fn resolve(self) -> SparseKernel {
        match self {
            SparseKernel::Auto => SparseKernel::Single,
            other => other,
        }
    }
}

/// Fast CPU compute kernels on a thread pool.
#[derive(Debug)]
pub struct FastCpuBackend {
    pool: rayon::ThreadPool,
    threads: usize,
    storage: KvStorage,
    sparse: SparseKernel,
    arithmetic: Arithmetic,
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
            sparse: SparseKernel::Auto,
            arithmetic: Arithmetic::F32,
            packed: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The same backend storing K and V as `storage`.
    pub fn with_storage(mut self, storage: KvStorage) -> Self {
        self.storage = storage;
        self
    }

    /// The same backend computing sparse attention with `kernel`.
    pub fn with_sparse_kernel(mut self, kernel: SparseKernel) -> Self {
        self.sparse = kernel;
        self
    }

    /// The same backend computing sparse softmax·V in `arithmetic` (F16 runs every sparse
    /// call in lane tiles, whatever the kernel choice).
    pub fn with_arithmetic(mut self, arithmetic: Arithmetic) -> Self {
        self.arithmetic = arithmetic;
        self
    }

    /// The arithmetic of sparse softmax·V.
    pub fn arithmetic(&self) -> Arithmetic {
        self.arithmetic
    }

    /// The kernel of a sparse call: lane tiles for F16 arithmetic, else the choice.
    fn sparse_kernel_for(&self) -> SparseKernel {
        match self.arithmetic {
            Arithmetic::F16 => SparseKernel::Tiled,
            Arithmetic::F32 => self.sparse.resolve(),
        }
    }

    /// The sparse-attention kernel choice.
    pub fn sparse_kernel(&self) -> SparseKernel {
        self.sparse
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
        let kernel = self.sparse_kernel_for();
        let arithmetic = self.arithmetic;
        self.pool.install(|| {
            out.par_chunks_mut(per_head)
                .zip(selections.par_iter())
                .enumerate()
                .for_each(|(h, (o, sel))| match kernel {
                    SparseKernel::Tiled => {
                        tile::sparse_head(inputs, (k, v), (h, sel), arithmetic, o)
                    }
                    _ => kernels::sparse_head(inputs, k, v, h, sel, o),
                });
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

    fn select_group(&self, group: &GroupScores<'_>, budget: &ChunkBudget) -> Result<Selection> {
        if let Some(per_row) = budget.as_key_budget() {
            return self.topk_group(group, per_row);
        }
        budget.validate()?;
        let ranks = self.pool.install(|| group::ranks(group));
        budget.select(group.ranks_matrix(&ranks)?)
    }

    fn sparse_attention_grouped(
        &self,
        inputs: AttentionInputs<'_>,
        selections: &[Selection],
        out: &mut [f32],
    ) -> Result<()> {
        shadowattn_hal::group::check_grouped_call(&inputs, selections, out)?;
        let kernel = self.sparse_kernel_for();
        let arithmetic = self.arithmetic;
        match self.storage {
            KvStorage::F32 => self.pool.install(|| {
                group::sparse_grouped(
                    &inputs,
                    (inputs.k(), inputs.v()),
                    selections,
                    (kernel, arithmetic),
                    out,
                )
            }),
            KvStorage::F16 => {
                let (k, v) = self.kv_f16(&inputs)?;
                self.pool.install(|| {
                    group::sparse_grouped(&inputs, (&k, &v), selections, (kernel, arithmetic), out)
                });
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
        // K and V are packed into f32 tiles; f16 storage rounds each value as it is packed, so
        // both kernels see the same values.
        let (k, v) = (inputs.k(), inputs.v());
        // A concurrent call finds the buffers taken and packs into new ones.
        let lock = || self.packed.lock().unwrap_or_else(|e| e.into_inner());
        let mut packed = std::mem::take(&mut *lock());
        packed.resize_with(s.kv_heads, kernels::PackedKv::default);
        let storage = self.storage;
        let g = s.q_heads / s.kv_heads;
        let result = self.pool.install(|| {
            // K and V are checked for refused values while they are packed.
            if s.kv_heads >= self.threads {
                // Enough KV heads to keep every worker busy: each packs its KV head and computes
                // that head's query heads while the pack is still in cache (packing every head
                // first streamed the whole pack from memory a second time). A refused value
                // fails the call after the other heads ran.
                let found: Vec<kernels::PackFindings> = packed
                    .par_iter_mut()
                    .zip(out.par_chunks_mut(g * per_head))
                    .enumerate()
                    .map(|(kv, (p, o))| {
                        let found = p.repack(&s, (k, v), kv, storage);
                        if found == kernels::PackFindings::default() {
                            for (slot, o) in o.chunks_mut(per_head).enumerate() {
                                kernels::dense_head(&inputs, kv * g + slot, p, o);
                            }
                        }
                        found
                    })
                    .collect();
                return first_refused_kv(&s, &found);
            }
            let found: Vec<kernels::PackFindings> = packed
                .par_iter_mut()
                .enumerate()
                .map(|(kv, p)| p.repack(&s, (k, v), kv, storage))
                .collect();
            first_refused_kv(&s, &found)?;
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

/// The error for the first value the heads' packing refused: NaN or infinity in K, then V (as
/// `check_finite` names them), then values beyond the f16 range of f16 storage in K, then V
/// (as `kv_to_f16` names them); indices across `[kv_heads][kv_len][head_dim]`.
fn first_refused_kv(
    s: &shadowattn_hal::AttentionShape,
    found: &[kernels::PackFindings],
) -> Result<()> {
    use shadowattn_hal::compute::{beyond_f16_value, non_finite_value};
    let per_head = s.kv_len * s.head_dim;
    let first = |pick: fn(&kernels::PackFindings) -> Option<(usize, f32)>| {
        found
            .iter()
            .enumerate()
            .find_map(|(kv, f)| pick(f).map(|(i, x)| (kv * per_head + i, x)))
    };
    type Pick = fn(&kernels::PackFindings) -> Option<(usize, f32)>;
    type Refusal = (&'static str, fn(&str, usize, f32) -> HalError, Pick);
    let refusals: [Refusal; 4] = [
        ("k", non_finite_value, |f| f.k.non_finite),
        ("v", non_finite_value, |f| f.v.non_finite),
        ("k", beyond_f16_value, |f| f.k.beyond_f16),
        ("v", beyond_f16_value, |f| f.v.beyond_f16),
    ];
    for (name, error, pick) in refusals {
        if let Some((i, x)) = first(pick) {
            return Err(error(name, i, x));
        }
    }
    Ok(())
}
