//! Every call into ggml, and so every `unsafe` block of this crate.
//!
//! The declarations are the bindgen output of `llama-cpp-sys-2` (generated from the ggml headers
//! it vendors, with bindgen's own size/offset assertions for every struct it declares, including
//! `ggml_init_params`, `ggml_cplan` and `ggml_threadpool_params` used here). This module only
//! adds owners with `Drop` and safe accessors; nothing here looks inside `ggml_tensor`: data is
//! reached through `ggml_get_data` / `ggml_nbytes` / `ggml_nelements`.
//!
//! ggml reports most misuse by aborting the process (`GGML_ASSERT`), so the caller
//! ([`crate::FlashAttention::new`]) validates every shape before [`Graph::build`] runs; the
//! checks in here that return [`GgmlError`] are a second line.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::ptr::NonNull;

use llama_cpp_sys_2 as ffi;

use crate::GgmlError;

/// Element type of a ggml tensor this crate creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    /// `GGML_TYPE_F32`.
    F32,
    /// `GGML_TYPE_F16`, stored as IEEE binary16 bits.
    F16,
}

impl Elem {
    fn ggml_type(self) -> ffi::ggml_type {
        match self {
            Elem::F32 => ffi::GGML_TYPE_F32,
            Elem::F16 => ffi::GGML_TYPE_F16,
        }
    }

    fn size(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F16 => 2,
        }
    }
}

/// Which ggml graph computes the attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// One `ggml_flash_attn_ext` node.
    Flash,
    /// llama.cpp's non-flash path: `kq = ggml_mul_mat(k, q)`,
    /// `p = ggml_soft_max_ext(kq, mask, scale, 0)`, `out = ggml_mul_mat(vᵀ, p)`.
    Materialized {
        /// Run with `cplan.use_ref`: ggml's reference `mul_mat` (one `vec_dot` per output
        /// element) instead of the llamafile GEMM it picks otherwise.
        reference_matmul: bool,
    },
}

/// What [`Graph::build`] creates: `ne` is ggml's dimension order (`ne[0]` innermost).
pub(crate) struct GraphSpec {
    /// The graph.
    pub op: Op,
    /// Q: `ne = [head_dim, q_len, q_heads, 1]`, F32.
    pub q_ne: [usize; 4],
    /// K (and V for [`Op::Flash`]): `ne = [head_dim, kv_len, kv_heads, 1]`. For
    /// [`Op::Materialized`] V is created transposed, `ne = [kv_len, head_dim, kv_heads, 1]`.
    pub kv_ne: [usize; 4],
    /// K/V element type.
    pub kv_elem: Elem,
    /// Mask: `ne = [kv_len, q_len, 1, 1]`, F16; `None` builds the op without a mask.
    pub mask_ne: Option<[usize; 4]>,
    /// Softmax scale.
    pub scale: f32,
    /// Worker threads (the caller's thread is one of them).
    pub threads: usize,
}

/// Memory with 64-byte alignment (ggml wants its context pool and work buffer aligned to
/// `GGML_MEM_ALIGN`, 16 on 64-bit hosts, and the flash-attention scratch is read as `f32`).
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

fn aligned_zeroed(bytes: usize) -> Result<Vec<Line>, GgmlError> {
    let lines = bytes.div_ceil(64).max(1);
    let mut v = Vec::new();
    v.try_reserve_exact(lines)
        .map_err(|_| GgmlError::OutOfMemory { bytes })?;
    v.resize(lines, Line([0; 64]));
    Ok(v)
}

/// Threads ggml's pool keeps asleep between graphs (`poll = 0`): with the default hybrid
/// polling (50) the workers spin for a while after each compute and would take cores from
/// whatever the benchmark runs next in the same process.
const POOL_POLL: u32 = 0;

/// One ggml context holding Q, K, V, the optional mask, the intermediate and output tensors
/// of the [`Op`], its graph, a persistent thread pool and the work buffer.
pub(crate) struct Graph {
    ctx: NonNull<ffi::ggml_context>,
    graph: NonNull<ffi::ggml_cgraph>,
    pool: NonNull<ffi::ggml_threadpool>,
    q: NonNull<ffi::ggml_tensor>,
    k: NonNull<ffi::ggml_tensor>,
    v: NonNull<ffi::ggml_tensor>,
    mask: Option<NonNull<ffi::ggml_tensor>>,
    out: NonNull<ffi::ggml_tensor>,
    kv_elem: Elem,
    cplan: ffi::ggml_cplan,
    // Owned backing stores; ggml holds pointers into them (`ctx` into `_pool_mem`,
    // `cplan.work_data` into `_work`). Heap memory: moving `Graph` does not move them.
    _pool_mem: Vec<Line>,
    _work: Vec<Line>,
}

// SAFETY: a `Graph` exclusively owns its context, thread pool and buffers; nothing in them is
// tied to the thread that created them (ggml's pool threads are its own, and the thread calling
// `ggml_graph_compute` merely joins as worker 0). Moving it to another thread is sound; it is
// not `Sync` (compute takes `&mut self`).
unsafe impl Send for Graph {}

fn nonnull<T>(p: *mut T, what: &'static str) -> Result<NonNull<T>, GgmlError> {
    NonNull::new(p).ok_or(GgmlError::Ggml(what))
}

fn to_i64(ne: [usize; 4]) -> Result<[i64; 4], GgmlError> {
    let mut out = [0i64; 4];
    for (o, n) in out.iter_mut().zip(ne) {
        *o = i64::try_from(n).map_err(|_| GgmlError::InvalidShape(format!("dimension {n}")))?;
    }
    Ok(out)
}

fn nbytes(ne: [usize; 4], elem: Elem) -> Result<usize, GgmlError> {
    ne.iter()
        .try_fold(elem.size(), |acc, &n| acc.checked_mul(n))
        .ok_or_else(|| GgmlError::InvalidShape(format!("{ne:?} overflows")))
}

impl Graph {
    /// Creates the context, tensors, graph, thread pool and work buffer for `spec`.
    pub(crate) fn build(spec: &GraphSpec) -> Result<Self, GgmlError> {
        let threads = i32::try_from(spec.threads)
            .map_err(|_| GgmlError::InvalidShape(format!("threads {}", spec.threads)))?;
        let q_ne = to_i64(spec.q_ne)?;
        let kv_ne = to_i64(spec.kv_ne)?;
        let mask_ne = spec.mask_ne.map(to_i64).transpose()?;

        // SAFETY: plain getters with no arguments and no preconditions.
        let (tensor_overhead, graph_overhead) =
            unsafe { (ffi::ggml_tensor_overhead(), ffi::ggml_graph_overhead()) };
        let [d, q_len, q_heads, _] = spec.q_ne;
        let [_, kv_len, kv_heads, _] = spec.kv_ne;
        // V as created: transposed for the materialized graph (as llama.cpp's V cache is
        // without flash attention), so that `ggml_mul_mat(v, p)` reduces over the keys.
        let v_ne = match spec.op {
            Op::Flash => spec.kv_ne,
            Op::Materialized { .. } => [kv_len, d, kv_heads, 1],
        };
        let mut data = vec![
            nbytes(spec.q_ne, Elem::F32)?,
            nbytes(spec.kv_ne, spec.kv_elem)?,
            nbytes(v_ne, spec.kv_elem)?,
            spec.mask_ne.map_or(Ok(0), |ne| nbytes(ne, Elem::F16))?,
        ];
        match spec.op {
            // Output: ne = [head_dim, q_heads, q_len, 1] (the op's result is permuted 0,2,1,3).
            Op::Flash => data.push(nbytes([d, q_heads, q_len, 1], Elem::F32)?),
            Op::Materialized { .. } => {
                let scores = nbytes([kv_len, q_len, q_heads, 1], Elem::F32)?;
                // kq, softmax(kq) (not in place, as llama.cpp), output [d, q_len, q_heads].
                data.extend([scores, scores, nbytes(spec.q_ne, Elem::F32)?]);
            }
        }
        // Each tensor: its object header + padding to the pool's alignment (≤ 64) + data.
        let mem_size = data
            .into_iter()
            .try_fold(graph_overhead + 4096, |acc: usize, b| {
                acc.checked_add(tensor_overhead + 64)?.checked_add(b)
            })
            .ok_or_else(|| GgmlError::InvalidShape("tensors overflow usize".into()))?;
        let mut pool_mem = aligned_zeroed(mem_size)?;

        // SAFETY: idempotent, thread-safe one-time initialisation of ggml-cpu's tables.
        unsafe { ffi::ggml_cpu_init() };
        let params = ffi::ggml_init_params {
            mem_size: pool_mem.len() * 64,
            mem_buffer: pool_mem.as_mut_ptr().cast(),
            no_alloc: false,
        };
        // SAFETY: `mem_buffer` points to `mem_size` writable bytes, 64-byte aligned, that
        // outlive the context (`_pool_mem` is dropped after `ggml_free` in `Drop`).
        let ctx = nonnull(unsafe { ffi::ggml_init(params) }, "ggml_init returned null")?;
        // From here on `guard` frees what exists if a later step fails.
        let mut guard = Partial { ctx, pool: None };
        let c = ctx.as_ptr();

        let new4 = |ty: Elem, ne: [i64; 4]| -> Result<NonNull<ffi::ggml_tensor>, GgmlError> {
            // SAFETY: `c` is a live context whose pool was sized above for every tensor made
            // here (so ggml's "not enough space" assert cannot fire); dims are positive i64.
            let t =
                unsafe { ffi::ggml_new_tensor_4d(c, ty.ggml_type(), ne[0], ne[1], ne[2], ne[3]) };
            nonnull(t, "ggml_new_tensor_4d returned null")
        };
        let q = new4(Elem::F32, q_ne)?;
        let k = new4(spec.kv_elem, kv_ne)?;
        let v = new4(spec.kv_elem, to_i64(v_ne)?)?;
        let mask = mask_ne.map(|ne| new4(Elem::F16, ne)).transpose()?;

        let mask_ptr = mask.map_or(std::ptr::null_mut(), NonNull::as_ptr);
        let out = match spec.op {
            // SAFETY: all tensors belong to `c`; the caller validated what the op asserts: equal
            // head_dim of Q/K/V, q_heads % kv_heads == 0, an F16 contiguous mask with
            // ne[0] >= kv_len and ne[1] >= q_len broadcast over heads (ne[2] = ne[3] = 1).
            // max_bias = 0 (no ALiBi) and logit_softcap = 0 (off).
            Op::Flash => unsafe {
                ffi::ggml_flash_attn_ext(
                    c,
                    q.as_ptr(),
                    k.as_ptr(),
                    v.as_ptr(),
                    mask_ptr,
                    spec.scale,
                    0.0,
                    0.0,
                )
            },
            Op::Materialized { .. } => {
                // SAFETY: `k` and `q` belong to `c`, which has room for the F32 result
                // [kv_len, q_len, q_heads] (sized above). ggml_mul_mat asserts equal ne[0]
                // (head_dim), q_heads % kv_heads == 0 (src0 broadcast over ne[2]: query head h
                // reads K head h / (q_heads / kv_heads)) and a non-transposed `k`.
                let kq = unsafe { ffi::ggml_mul_mat(c, k.as_ptr(), q.as_ptr()) };
                let kq = nonnull(kq, "ggml_mul_mat (k, q) returned null")?;
                // SAFETY: `kq` is a contiguous F32 tensor of `c`; the mask (if any) is F16,
                // contiguous, ne[0] == kv_len == kq.ne[0], ne[1] == q_len == kq.ne[1], and its
                // ne[2] = ne[3] = 1 divide kq's. max_bias = 0 (no ALiBi). Room for the result
                // was reserved above.
                let p =
                    unsafe { ffi::ggml_soft_max_ext(c, kq.as_ptr(), mask_ptr, spec.scale, 0.0) };
                let p = nonnull(p, "ggml_soft_max_ext returned null")?;
                // SAFETY: `v` ([kv_len, head_dim, kv_heads]) and `p` ([kv_len, q_len, q_heads])
                // belong to `c` and share ne[0] = kv_len; kv_heads divides q_heads; `v` is
                // contiguous (not a transposed view). Room for [head_dim, q_len, q_heads] F32
                // was reserved above.
                unsafe { ffi::ggml_mul_mat(c, v.as_ptr(), p.as_ptr()) }
            }
        };
        let out = nonnull(out, "attention op returned null")?;
        // SAFETY: `c` is live and has room for a default-size graph (graph_overhead above).
        let graph = nonnull(
            unsafe { ffi::ggml_new_graph(c) },
            "ggml_new_graph returned null",
        )?;
        // SAFETY: `graph` and `out` belong to `c`; the op's one to three nodes fit a
        // default-size graph (GGML_DEFAULT_GRAPH_SIZE nodes).
        unsafe { ffi::ggml_build_forward_expand(graph.as_ptr(), out.as_ptr()) };

        // SAFETY: returns a plain struct by value; `threads` is in 1..=GGML_MAX_N_THREADS
        // (checked by the caller).
        let mut tpp = unsafe { ffi::ggml_threadpool_params_default(threads) };
        tpp.poll = POOL_POLL;
        // SAFETY: `tpp` is a valid, initialised parameter block that ggml only reads.
        let pool = nonnull(
            unsafe { ffi::ggml_threadpool_new(&mut tpp) },
            "ggml_threadpool_new returned null",
        )?;
        guard.pool = Some(pool);

        // SAFETY: `graph` is a complete graph of live tensors; `pool` has `threads` threads.
        let mut cplan = unsafe { ffi::ggml_graph_plan(graph.as_ptr(), threads, pool.as_ptr()) };
        // The reference implementations only (ggml's own switch): for `mul_mat` this skips
        // the llamafile GEMM and runs one `vec_dot` per output element. The softmax has no
        // other implementation.
        cplan.use_ref = matches!(
            spec.op,
            Op::Materialized {
                reference_matmul: true
            }
        );
        let mut work = aligned_zeroed(cplan.work_size)?;
        cplan.work_data = if cplan.work_size == 0 {
            std::ptr::null_mut()
        } else {
            work.as_mut_ptr().cast()
        };

        std::mem::forget(guard);
        Ok(Self {
            ctx,
            graph,
            pool,
            q,
            k,
            v,
            mask,
            out,
            kv_elem: spec.kv_elem,
            cplan,
            _pool_mem: pool_mem,
            _work: work,
        })
    }

    /// Runs the graph once on the thread pool.
    pub(crate) fn compute(&mut self) -> Result<(), GgmlError> {
        // SAFETY: `graph` and its tensors are live (owned by `self.ctx`); `cplan` was made by
        // `ggml_graph_plan` for this graph and pool, and `work_data` points to `work_size`
        // bytes owned by `self._work`. `&mut self` rules out a concurrent compute.
        let status = unsafe { ffi::ggml_graph_compute(self.graph.as_ptr(), &mut self.cplan) };
        if status == ffi::GGML_STATUS_SUCCESS {
            Ok(())
        } else {
            // SAFETY: returns a pointer to a static NUL-terminated string for any status.
            let msg = unsafe { CStr::from_ptr(ffi::ggml_status_to_string(status)) };
            Err(GgmlError::Compute {
                status,
                message: msg.to_string_lossy().into_owned(),
            })
        }
    }

    /// Q's data (F32), `ne = [head_dim, q_len, q_heads, 1]`, contiguous.
    pub(crate) fn q_mut(&mut self) -> &mut [f32] {
        // SAFETY: `q` is a live F32 tensor of `self`; `&mut self` gives exclusive access.
        unsafe { data_mut(self.q, Elem::F32) }
    }

    /// K's data when K/V are F32.
    pub(crate) fn k_f32_mut(&mut self) -> Option<&mut [f32]> {
        // SAFETY: as `q_mut`, and the type is checked first.
        (self.kv_elem == Elem::F32).then(|| unsafe { data_mut(self.k, Elem::F32) })
    }

    /// V's data when K/V are F32 (`ne` as created: transposed for [`Op::Materialized`]).
    pub(crate) fn v_f32_mut(&mut self) -> Option<&mut [f32]> {
        // SAFETY: as `q_mut`, and the type is checked first.
        (self.kv_elem == Elem::F32).then(|| unsafe { data_mut(self.v, Elem::F32) })
    }

    /// K's data (binary16 bits) when K/V are F16.
    pub(crate) fn k_f16_mut(&mut self) -> Option<&mut [u16]> {
        // SAFETY: as `q_mut`, and the type is checked first.
        (self.kv_elem == Elem::F16).then(|| unsafe { data_mut(self.k, Elem::F16) })
    }

    /// V's data (binary16 bits) when K/V are F16 (`ne` as created, as `v_f32_mut`).
    pub(crate) fn v_f16_mut(&mut self) -> Option<&mut [u16]> {
        // SAFETY: as `q_mut`, and the type is checked first.
        (self.kv_elem == Elem::F16).then(|| unsafe { data_mut(self.v, Elem::F16) })
    }

    /// The mask's data (binary16 bits), `ne = [kv_len, q_len, 1, 1]`, if there is a mask.
    pub(crate) fn mask_mut(&mut self) -> Option<&mut [u16]> {
        let mask = self.mask?;
        // SAFETY: `mask` is a live F16 tensor of `self`; `&mut self` gives exclusive access.
        Some(unsafe { data_mut(mask, Elem::F16) })
    }

    /// The output (F32), contiguous: `ne = [head_dim, q_heads, q_len, 1]` for [`Op::Flash`],
    /// `[head_dim, q_len, q_heads, 1]` for [`Op::Materialized`].
    pub(crate) fn out(&self) -> &[f32] {
        let t = self.out.as_ptr();
        // SAFETY: `out` is a live, contiguous F32 tensor of `self` (allocated in the pool,
        // 16-byte aligned); shared borrow of `self` rules out a concurrent compute writing it.
        unsafe {
            let n = ffi::ggml_nbytes(t) / 4;
            std::slice::from_raw_parts(ffi::ggml_get_data(t).cast::<f32>(), n)
        }
    }
}

/// The data of tensor `t` as a mutable slice of `T`.
///
/// # Safety
/// `t` is a live, contiguous tensor with allocated data whose element type is `elem`, with
/// `size_of::<T>() == elem.size()`, and the caller holds exclusive access for the returned
/// lifetime.
unsafe fn data_mut<'a, T>(t: NonNull<ffi::ggml_tensor>, elem: Elem) -> &'a mut [T] {
    debug_assert_eq!(std::mem::size_of::<T>(), elem.size());
    let t = t.as_ptr();
    // SAFETY: per this function's contract; ggml aligns tensor data to GGML_MEM_ALIGN (16),
    // enough for f32/u16, and `ggml_nbytes` of a contiguous tensor is elements × size.
    unsafe {
        debug_assert!(ffi::ggml_is_contiguous(t));
        let n = ffi::ggml_nbytes(t) / elem.size();
        std::slice::from_raw_parts_mut(ffi::ggml_get_data(t).cast::<T>(), n)
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: both pointers are live and owned by `self`; no compute is running (`&mut`).
        // The pool is freed (its threads joined) before the context whose graph it last ran.
        unsafe {
            ffi::ggml_threadpool_free(self.pool.as_ptr());
            ffi::ggml_free(self.ctx.as_ptr());
        }
    }
}

/// Frees a half-built graph on an early return from [`Graph::build`].
struct Partial {
    ctx: NonNull<ffi::ggml_context>,
    pool: Option<NonNull<ffi::ggml_threadpool>>,
}

impl Drop for Partial {
    fn drop(&mut self) {
        // SAFETY: the pointers are live and owned by this guard alone (it is forgotten once
        // ownership passes to `Graph`).
        unsafe {
            if let Some(p) = self.pool {
                ffi::ggml_threadpool_free(p.as_ptr());
            }
            ffi::ggml_free(self.ctx.as_ptr());
        }
    }
}

/// Converts `src` to binary16 bits in `dst` with ggml's own conversion (round to nearest even).
pub(crate) fn fp32_to_fp16(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len(), "fp32_to_fp16: length mismatch");
    let n = i64::try_from(src.len()).expect("slice length fits i64");
    // SAFETY: both slices hold `n` elements; ggml reads `n` floats and writes `n` halves.
    unsafe { ffi::ggml_fp32_to_fp16_row(src.as_ptr(), dst.as_mut_ptr(), n) };
}

/// Converts binary16 bits to f32 with ggml's own conversion.
pub(crate) fn fp16_to_fp32(src: &[u16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "fp16_to_fp32: length mismatch");
    let n = i64::try_from(src.len()).expect("slice length fits i64");
    // SAFETY: both slices hold `n` elements; ggml reads `n` halves and writes `n` floats.
    unsafe { ffi::ggml_fp16_to_fp32_row(src.as_ptr(), dst.as_mut_ptr(), n) };
}

/// The instruction-set extensions ggml-cpu was compiled with (its `ggml_cpu_has_*` flags).
pub(crate) fn cpu_features() -> Vec<&'static str> {
    type Probe = unsafe extern "C" fn() -> std::os::raw::c_int;
    let probes: [(&'static str, Probe); 7] = [
        ("SSE3", ffi::ggml_cpu_has_sse3),
        ("AVX", ffi::ggml_cpu_has_avx),
        ("AVX2", ffi::ggml_cpu_has_avx2),
        ("FMA", ffi::ggml_cpu_has_fma),
        ("F16C", ffi::ggml_cpu_has_f16c),
        ("AVX512", ffi::ggml_cpu_has_avx512),
        ("NEON", ffi::ggml_cpu_has_neon),
    ];
    probes
        .into_iter()
        // SAFETY: each probe takes no arguments and returns a compile-time constant.
        .filter(|(_, f)| unsafe { f() } != 0)
        .map(|(name, _)| name)
        .collect()
}
