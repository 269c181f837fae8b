//! Baseline: ggml's CPU flash attention (`ggml_flash_attn_ext`, the kernel llama.cpp runs for
//! attention), behind a safe API so a benchmark can time it beside our own dense attention
//! kernel in the same process, with the same shapes and thread count; and, as a second
//! [`Kernel`], llama.cpp's non-flash ("materialized") attention: the score matrix as a matmul,
//! a softmax pass over it, and a second matmul.
//!
//! ggml comes from `llama-cpp-sys-2` (it vendors llama.cpp and builds it with CMake: CPU only,
//! static, no OpenMP; on x86-64 with SSE4.2/AVX/AVX2/BMI2/FMA/F16C and no AVX-512, the same
//! level as our AVX2+FMA+F16C kernels). [`ggml_cpu_features`] says what the linked build has.
//!
//! Layouts (ggml's `ne`, innermost first, all contiguous), as verified against ggml 0.26.0:
//! - Q: `[head_dim, q_len, q_heads, 1]` F32 — the same memory as our `[q_heads][q_len][head_dim]`.
//! - K, V: `[head_dim, kv_len, kv_heads, 1]` (V not transposed) — our `[kv_heads][kv_len][head_dim]`.
//!   Query head `h` reads KV head `h / (q_heads / kv_heads)`, as `AttentionShape::kv_head_of`.
//! - mask: `[kv_len, q_len, 1, 1]` F16, added to the scaled scores (0 or -inf), broadcast over
//!   heads. This ggml reads exactly `q_len` rows and `kv_len` columns of it: it no longer
//!   requires rows padded to `GGML_KQ_MASK_PAD` (that constant is gone), so none are added.
//! - output: `[head_dim, q_heads, q_len, 1]` F32 (permuted) — [`FlashAttention::output`]
//!   transposes it back to `[q_heads][q_len][head_dim]`.
//!
//! [`Kernel::Materialized`] is llama.cpp's graph without flash attention (`build_attn_mha`):
//! `kq = ggml_mul_mat(k, q)` (`ne = [kv_len, q_len, q_heads]`, F32; ggml broadcasts K over
//! `ne[2]`, so query head `h` reads KV head `h / (q_heads / kv_heads)`), then
//! `p = ggml_soft_max_ext(kq, mask, 1/sqrt(head_dim), 0)` (the same mask), then
//! `out = ggml_mul_mat(v, p)` with V stored transposed, `ne = [kv_len, head_dim, kv_heads]`
//! (as llama.cpp's V cache is without flash attention; [`FlashAttention::set_inputs`] does
//! the transpose). Its output `[head_dim, q_len, q_heads]` is already our layout (llama.cpp's
//! later permute-and-copy of it is not part of the graph). With F16 K/V, `mul_mat` converts its
//! F32 right operand (Q, then P) to F16 and every dot product reads two F16 rows and
//! accumulates in F32 (on x86; AVX2 `vec_dot_f16` and the llamafile F16 GEMM both widen to F32).
//! Which GEMM runs: this ggml is built with llamafile on x86 (llama.cpp's default), so
//! `mul_mat` runs llamafile's register-blocked `tinyBLAS`; [`Kernel::MaterializedVecDot`] runs
//! the same graph with ggml's reference switch (`cplan.use_ref`), where every output element is
//! one `ggml_vec_dot_f16` call — what ggml runs where llamafile is off (e.g. llama-cpp-sys-2's
//! Android builds) and what a port that calls ggml's `vec_dot_f16` per score does.
//!
//! Which CPU code path ggml's flash attention takes depends on the shape: `q_len >= 64` (F32 or F16 K/V) runs
//! the tiled path (K/V converted to F32 per tile, F32 accumulators); smaller chunks run the
//! per-row path, which with F16 K/V also rounds Q to F16 and accumulates `softmax·V` in F16
//! (`q_len == 1` with `kv_len >= 512` runs it on each thread's share of the keys).

mod sys;

use thiserror::Error;

/// Errors of this crate.
#[derive(Debug, Error)]
pub enum GgmlError {
    /// The shape or thread count cannot be run (ggml would abort on it).
    #[error("invalid shape: {0}")]
    InvalidShape(String),
    /// An input slice has the wrong length.
    #[error("input {name}: {got} elements, expected {want}")]
    InputLength {
        /// Which input (`q`, `k` or `v`).
        name: &'static str,
        /// Its length.
        got: usize,
        /// The length the shape needs.
        want: usize,
    },
    /// A buffer could not be allocated.
    #[error("out of memory allocating {bytes} bytes")]
    OutOfMemory {
        /// The size asked for.
        bytes: usize,
    },
    /// A ggml constructor returned null.
    #[error("ggml: {0}")]
    Ggml(&'static str),
    /// `ggml_graph_compute` returned a status other than success.
    #[error("ggml_graph_compute failed with status {status}: {message}")]
    Compute {
        /// The `ggml_status` value.
        status: i32,
        /// ggml's description of it.
        message: String,
    },
}

/// K/V storage type for ggml's kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    /// K and V stored as F32.
    F32,
    /// K and V stored as F16 (converted from our f32 inputs by [`FlashAttention::set_inputs`]).
    F16,
}

/// Which ggml attention graph [`FlashAttention`] builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `ggml_flash_attn_ext` (what llama.cpp runs with flash attention on).
    Flash,
    /// llama.cpp's non-flash path: `mul_mat(k, q)`, `soft_max_ext` (scale, mask),
    /// `mul_mat(vᵀ, p)`, the whole `[q_heads][q_len][kv_len]` score matrix in memory; ggml
    /// picks the matmul implementation (llamafile's GEMM on this x86 build).
    Materialized,
    /// The same graph with ggml's reference `mul_mat`: every score and every output element
    /// is one `ggml_vec_dot_f16` (with F16 K/V) over a row of K (resp. Vᵀ).
    MaterializedVecDot,
}

impl Kernel {
    fn op(self) -> sys::Op {
        match self {
            Kernel::Flash => sys::Op::Flash,
            Kernel::Materialized => sys::Op::Materialized {
                reference_matmul: false,
            },
            Kernel::MaterializedVecDot => sys::Op::Materialized {
                reference_matmul: true,
            },
        }
    }
}

/// binary16 bits of -inf and +0, the two values of the causal mask.
const F16_NEG_INF: u16 = 0xFC00;
const F16_ZERO: u16 = 0x0000;

/// ggml's `GGML_MAX_N_THREADS`.
const MAX_THREADS: usize = 512;

/// One attention problem ggml will run repeatedly, with one of its [`Kernel`]s (the name is
/// historical: [`FlashAttention::new`] builds [`Kernel::Flash`]).
pub struct FlashAttention {
    graph: sys::Graph,
    kernel: Kernel,
    q_heads: usize,
    kv_heads: usize,
    q_len: usize,
    kv_len: usize,
    head_dim: usize,
    threads: usize,
    kv: KvType,
    causal: bool,
}

impl std::fmt::Debug for FlashAttention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlashAttention")
            .field("kernel", &self.kernel)
            .field("q_heads", &self.q_heads)
            .field("kv_heads", &self.kv_heads)
            .field("q_len", &self.q_len)
            .field("kv_len", &self.kv_len)
            .field("head_dim", &self.head_dim)
            .field("causal", &self.causal)
            .field("kv", &self.kv)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

fn shape_err(msg: impl Into<String>) -> GgmlError {
    GgmlError::InvalidShape(msg.into())
}

impl FlashAttention {
    /// Builds the graph for q_heads/kv_heads heads (GQA: kv_heads divides q_heads), q_len query rows, kv_len keys, head_dim, causal mask or not, on `threads` threads.
    ///
    /// Causal: the chunk sits at the end of the keys, so query row `i` (absolute position
    /// `kv_len - q_len + i`) sees keys `0..=kv_len - q_len + i`; this needs `q_len <= kv_len`.
    /// Not causal: ggml gets no mask tensor at all. Scale is `1/sqrt(head_dim)`.
    #[allow(clippy::too_many_arguments)] // the benchmark's shape, spelled out as the brief asks
    pub fn new(
        q_heads: usize,
        kv_heads: usize,
        q_len: usize,
        kv_len: usize,
        head_dim: usize,
        causal: bool,
        kv: KvType,
        threads: usize,
    ) -> Result<Self, GgmlError> {
        Self::with_kernel(
            Kernel::Flash,
            q_heads,
            kv_heads,
            q_len,
            kv_len,
            head_dim,
            causal,
            kv,
            threads,
        )
    }

    /// As [`FlashAttention::new`], with the ggml graph `kernel` (same shapes, mask, scale,
    /// inputs and output layout for every kernel).
    #[allow(clippy::too_many_arguments)] // `new`'s shape plus the kernel
    pub fn with_kernel(
        kernel: Kernel,
        q_heads: usize,
        kv_heads: usize,
        q_len: usize,
        kv_len: usize,
        head_dim: usize,
        causal: bool,
        kv: KvType,
        threads: usize,
    ) -> Result<Self, GgmlError> {
        for (name, n) in [
            ("q_heads", q_heads),
            ("kv_heads", kv_heads),
            ("q_len", q_len),
            ("kv_len", kv_len),
            ("head_dim", head_dim),
            ("threads", threads),
        ] {
            if n == 0 {
                return Err(shape_err(format!("{name} must be positive")));
            }
        }
        if !q_heads.is_multiple_of(kv_heads) {
            return Err(shape_err(format!(
                "kv_heads {kv_heads} does not divide q_heads {q_heads}"
            )));
        }
        if causal && q_len > kv_len {
            return Err(shape_err(format!(
                "causal chunk of {q_len} rows needs at least as many keys, got kv_len {kv_len}"
            )));
        }
        if threads > MAX_THREADS {
            return Err(shape_err(format!(
                "threads {threads} exceeds ggml's limit of {MAX_THREADS}"
            )));
        }
        // ggml indexes query rows (q_len × q_heads) and keys with C `int`.
        let rows = q_len.checked_mul(q_heads);
        if rows.is_none_or(|r| r > i32::MAX as usize) || kv_len > i32::MAX as usize {
            return Err(shape_err(format!(
                "{q_heads} heads × {q_len} rows or {kv_len} keys exceed ggml's int indexing"
            )));
        }

        let spec = sys::GraphSpec {
            op: kernel.op(),
            q_ne: [head_dim, q_len, q_heads, 1],
            kv_ne: [head_dim, kv_len, kv_heads, 1],
            kv_elem: match kv {
                KvType::F32 => sys::Elem::F32,
                KvType::F16 => sys::Elem::F16,
            },
            mask_ne: causal.then_some([kv_len, q_len, 1, 1]),
            scale: 1.0 / (head_dim as f32).sqrt(),
            threads,
        };
        let mut graph = sys::Graph::build(&spec)?;
        if let Some(mask) = graph.mask_mut() {
            // mask[i][j] (row i = query row, j = key): 0 where j <= kv_len - q_len + i.
            let offset = kv_len - q_len;
            for (i, row) in mask.chunks_exact_mut(kv_len).enumerate() {
                let visible = offset + i + 1;
                row[..visible].fill(F16_ZERO);
                row[visible..].fill(F16_NEG_INF);
            }
        }
        Ok(Self {
            graph,
            kernel,
            q_heads,
            kv_heads,
            q_len,
            kv_len,
            head_dim,
            threads,
            kv,
            causal,
        })
    }

    /// Copies Q `[q_heads][q_len][head_dim]`, K and V `[kv_heads][kv_len][head_dim]` (row-major f32, the same layout as our AttentionInputs) into the graph's tensors (converting K/V to f16 for KvType::F16; for the materialized kernels V is stored transposed, per KV head `[head_dim][kv_len]`).
    pub fn set_inputs(&mut self, q: &[f32], k: &[f32], v: &[f32]) -> Result<(), GgmlError> {
        let q_want = self.q_heads * self.q_len * self.head_dim;
        let kv_want = self.kv_heads * self.kv_len * self.head_dim;
        for (name, got, want) in [
            ("q", q.len(), q_want),
            ("k", k.len(), kv_want),
            ("v", v.len(), kv_want),
        ] {
            if got != want {
                return Err(GgmlError::InputLength { name, got, want });
            }
        }
        // Q's ggml layout [head_dim, q_len, q_heads] is our layout: a straight copy.
        self.graph.q_mut().copy_from_slice(q);
        // The materialized graph keeps V transposed: [kv_len, head_dim, kv_heads].
        let v_t;
        let v = if self.kernel == Kernel::Flash {
            v
        } else {
            let (n, d) = (self.kv_len, self.head_dim);
            let mut t = vec![0.0f32; v.len()];
            for (src, dst) in v.chunks_exact(n * d).zip(t.chunks_exact_mut(n * d)) {
                for (j, row) in src.chunks_exact(d).enumerate() {
                    for (c, &x) in row.iter().enumerate() {
                        dst[c * n + j] = x;
                    }
                }
            }
            v_t = t;
            &v_t
        };
        match self.kv {
            KvType::F32 => {
                if let Some(dst) = self.graph.k_f32_mut() {
                    dst.copy_from_slice(k);
                }
                if let Some(dst) = self.graph.v_f32_mut() {
                    dst.copy_from_slice(v);
                }
            }
            KvType::F16 => {
                if let Some(dst) = self.graph.k_f16_mut() {
                    sys::fp32_to_fp16(k, dst);
                }
                if let Some(dst) = self.graph.v_f16_mut() {
                    sys::fp32_to_fp16(v, dst);
                }
            }
        }
        Ok(())
    }

    /// Runs the kernel once (this is what gets timed).
    pub fn compute(&mut self) -> Result<(), GgmlError> {
        self.graph.compute()
    }

    /// The output in OUR layout `[q_heads][q_len][head_dim]` (transposing from ggml's output layout).
    pub fn output(&self) -> Vec<f32> {
        let (h_n, l_n, d_n) = (self.q_heads, self.q_len, self.head_dim);
        let src = self.graph.out();
        debug_assert_eq!(src.len(), h_n * l_n * d_n);
        if self.kernel != Kernel::Flash {
            // mul_mat's result [head_dim, q_len, q_heads] is our layout.
            return src.to_vec();
        }
        let mut out = vec![0.0; h_n * l_n * d_n];
        // ggml: [head_dim, q_heads, q_len] → element (d, h, i) at (i * q_heads + h) * head_dim + d.
        for (row, chunk) in src.chunks_exact(d_n).enumerate() {
            let (i, h) = (row / h_n, row % h_n);
            let dst = (h * l_n + i) * d_n;
            out[dst..dst + d_n].copy_from_slice(chunk);
        }
        out
    }

    /// The ggml graph this runs.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Worker threads ggml runs on.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

/// Rounds f32 values to f16 and back with ggml's own conversions (what [`KvType::F16`] does
/// to K and V), so a check can reproduce ggml's input rounding exactly.
pub fn round_trip_f16(values: &[f32]) -> Vec<f32> {
    let mut bits = vec![0u16; values.len()];
    sys::fp32_to_fp16(values, &mut bits);
    let mut out = vec![0.0; values.len()];
    sys::fp16_to_fp32(&bits, &mut out);
    out
}

/// The instruction-set extensions the linked ggml-cpu was compiled with, e.g.
/// `["SSE3", "AVX", "AVX2", "FMA", "F16C"]` (benchmarks print it beside their numbers).
pub fn ggml_cpu_features() -> Vec<&'static str> {
    sys::cpu_features()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_constants_are_minus_infinity_and_zero() {
        let mut f = [0.0f32; 2];
        sys::fp16_to_fp32(&[F16_NEG_INF, F16_ZERO], &mut f);
        assert_eq!(f[0], f32::NEG_INFINITY);
        assert_eq!(f[1].to_bits(), 0.0f32.to_bits());
    }
}
