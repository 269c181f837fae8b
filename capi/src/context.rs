//! A shadowAttn context: a calibration, the graph bank compiled (or loaded from a cache file)
//! on an NPU backend, and a compute backend; it runs prefill chunks and dense decode steps.

use crate::backends::{shadowattn_compute, shadowattn_npu};
use crate::error::{guard, last_error_text, shadowattn_status, ApiError};
use crate::report::shadowattn_report;
use crate::{check_abi, shadowattn_shape, sys, SHADOWATTN_PILOT_INT32, SHADOWATTN_PILOT_INT8};
use shadowattn_hal::AttentionInputs;
use shadowattn_pipeline::Placement;
use shadowattn_sparse_attn::calibration::{BucketGrid, Calibration, ModelShape, RatioConfig};
use shadowattn_sparse_attn::pilot::PilotOutput;
use shadowattn_sparse_attn::setup::{BankOrigin, CoreSetup, MissingBank};
use shadowattn_sparse_attn::shadow::{Schedule, ShadowAttention, ShadowConfig};
use std::ffi::{c_char, CString};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How a context is built. Fill it with `shadowattn_context_options_default` and change what
/// you need.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shadowattn_context_options {
    /// Longest chunk the graph bank is compiled for, in query rows.
    pub max_q_len: u32,
    /// Most keys the graph bank is compiled for.
    pub max_kv_len: u32,
    /// CPU worker threads for top-k and sparse attention (at least 1).
    pub cpu_workers: u32,
    /// Fewest keys a query row keeps (at least 1).
    pub min_keys: u32,
    /// `SHADOWATTN_PILOT_INT8` or `SHADOWATTN_PILOT_INT32`.
    pub pilot_output: u32,
    /// For the INT8 pilot: the accumulator magnitude mapped to ±127 (see
    /// `shadowattn_int8_accumulator_range`); ignored for INT32.
    pub int8_acc_range: f32,
    /// 1: the planner's greedy order; 0: launches and heads in FIFO order.
    pub planned: u32,
    /// NULL, or a file that caches the compiled graph bank: loaded when it holds this bank,
    /// else compiled and written there (backends that cannot serialize compile every time).
    pub bank_cache: *const c_char,
}

const _: () = {
    assert!(std::mem::size_of::<shadowattn_context_options>() == 40);
    assert!(std::mem::offset_of!(shadowattn_context_options, bank_cache) == 32);
};

/// The model a calibration given in memory belongs to.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct shadowattn_model_shape {
    /// Transformer layers.
    pub layers: u32,
    /// Query heads per layer.
    pub q_heads: u32,
    /// KV heads per layer.
    pub kv_heads: u32,
    /// Head dimension.
    pub head_dim: u32,
}

const _: () = assert!(std::mem::size_of::<shadowattn_model_shape>() == 16);

/// A shadowAttn context (opaque). Not thread-safe: one thread at a time.
pub struct shadowattn_context {
    shadow: ShadowAttention<'static>,
    bank_loaded: bool,
    last_error: CString,
}

/// Fills `out` with the defaults: a bank for 128 × 2048, one worker, 1 key per row, the INT8
/// pilot with an accumulator range of 20,000 (set it from a sample, see
/// `shadowattn_int8_accumulator_range`), the planned order, no cache.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`.
#[no_mangle]
pub extern "C" fn shadowattn_context_options_default(
    out: *mut shadowattn_context_options,
) -> shadowattn_status {
    guard(|| {
        sys::put(
            out,
            shadowattn_context_options {
                max_q_len: 128,
                max_kv_len: 2048,
                cpu_workers: 1,
                min_keys: 1,
                pilot_output: SHADOWATTN_PILOT_INT8,
                int8_acc_range: 20_000.0,
                planned: 1,
                bank_cache: std::ptr::null(),
            },
            "out",
        )
    })
}

fn pilot_output(o: &shadowattn_context_options) -> Result<PilotOutput, ApiError> {
    match o.pilot_output {
        SHADOWATTN_PILOT_INT32 => Ok(PilotOutput::Int32),
        SHADOWATTN_PILOT_INT8 if o.int8_acc_range.is_finite() && o.int8_acc_range > 0.0 => {
            Ok(PilotOutput::Int8 {
                acc_range: o.int8_acc_range,
            })
        }
        SHADOWATTN_PILOT_INT8 => Err(ApiError::invalid(format!(
            "options.int8_acc_range is {}; it must be finite and positive",
            o.int8_acc_range
        ))),
        p => Err(ApiError::invalid(format!(
            "options.pilot_output is {p}, not SHADOWATTN_PILOT_INT8 or SHADOWATTN_PILOT_INT32"
        ))),
    }
}

fn config(o: &shadowattn_context_options) -> Result<ShadowConfig, ApiError> {
    let c = ShadowConfig {
        min_keys: o.min_keys as usize,
        cpu_workers: o.cpu_workers as usize,
        schedule: match o.planned {
            1 => Schedule::Planned,
            0 => Schedule::Fifo,
            p => {
                return Err(ApiError::invalid(format!(
                    "options.planned is {p}, not 0 or 1"
                )))
            }
        },
        ..ShadowConfig::default()
    };
    if c.min_keys == 0 {
        return Err(ApiError::invalid("options.min_keys must be at least 1"));
    }
    c.validate()?;
    Ok(c)
}

fn create(
    npu: *const shadowattn_npu,
    compute: *const shadowattn_compute,
    calib: Calibration,
    options: *const shadowattn_context_options,
    out: *mut *mut shadowattn_context,
) -> Result<(), ApiError> {
    let npu = sys::get(npu, "npu")?;
    let compute = sys::get(compute, "compute")?;
    let o = sys::get(options, "options")?;
    if out.is_null() {
        return Err(ApiError::null("out"));
    }
    let cache = sys::optional_string(o.bank_cache, "options.bank_cache")?.map(PathBuf::from);
    // The simulator's SoC prices the layer on its mid cores; other backends get uniform prices.
    let core = CoreSetup::new(
        npu.opened.backend.as_ref(),
        calib,
        o.max_q_len as usize,
        o.max_kv_len as usize,
    )
    .pilot_output(pilot_output(o)?)
    .config(config(o)?)
    .cache(cache)
    .device(npu.opened.device.as_deref(), Placement::default())
    .missing_bank(MissingBank::RunDense)
    .build(compute.backend.clone())?;
    let shadow = core.shadow;
    let bank_loaded = core.bank == BankOrigin::Loaded;
    let handle = Box::into_raw(Box::new(shadowattn_context {
        shadow,
        bank_loaded,
        last_error: CString::default(),
    }));
    sys::put(out, handle, "out")
}

/// A context from a calibration file (`shadowattn calibrate` or `shadowattn eval
/// --calibration-out`), its bank compiled on `npu` (or loaded from `options->bank_cache`);
/// chunks run their kernels on `compute`. Free it with `shadowattn_context_free`. If the NPU
/// cannot compile the bank, the context is made anyway and every chunk runs dense attention
/// and says why in its report.
///
/// Errors: `SHADOWATTN_ERROR_ABI_VERSION`, `SHADOWATTN_ERROR_NULL_ARGUMENT`,
/// `SHADOWATTN_ERROR_IO` (the file cannot be read, the cache cannot be written),
/// `SHADOWATTN_ERROR_CALIBRATION` (not a calibration file, another version, inconsistent),
/// `SHADOWATTN_ERROR_INVALID_ARGUMENT` (an option out of range).
#[no_mangle]
pub extern "C" fn shadowattn_context_create(
    abi_version: u32,
    npu: *const shadowattn_npu,
    compute: *const shadowattn_compute,
    calibration_path: *const c_char,
    options: *const shadowattn_context_options,
    out: *mut *mut shadowattn_context,
) -> shadowattn_status {
    guard(|| {
        check_abi(abi_version)?;
        let path = sys::string(calibration_path, "calibration_path")?;
        let calib = Calibration::load(Path::new(path), None)?;
        create(npu, compute, calib, options, out)
    })
}

/// A context from a calibration given in memory: the model's shape, its per-head ratios
/// (`ratios[layer * q_heads + head]`, `n_ratios = layers · q_heads`, each in (0, 1]) and the
/// mean Q and K scales of a calibration sample (the bucket grid is the paper's 3 × 3 around
/// them, σ = 0.5); each unit's keys are spread over a chunk's rows by the default budget rule
/// (one probability threshold, every row at least half its even share). Otherwise as
/// `shadowattn_context_create`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn shadowattn_context_create_from_ratios(
    abi_version: u32,
    npu: *const shadowattn_npu,
    compute: *const shadowattn_compute,
    model: *const shadowattn_model_shape,
    ratios: *const f32,
    n_ratios: usize,
    mean_q_scale: f32,
    mean_k_scale: f32,
    options: *const shadowattn_context_options,
    out: *mut *mut shadowattn_context,
) -> shadowattn_status {
    guard(|| {
        check_abi(abi_version)?;
        let m = sys::get(model, "model")?;
        let model = ModelShape {
            name: "given in memory".into(),
            layers: m.layers as usize,
            q_heads: m.q_heads as usize,
            kv_heads: m.kv_heads as usize,
            head_dim: m.head_dim as usize,
        };
        model.validate()?;
        let want = model.layers * model.q_heads;
        if n_ratios != want {
            return Err(ApiError::new(
                crate::error::SHADOWATTN_ERROR_CALIBRATION,
                format!(
                    "{n_ratios} ratios for {} layers of {} heads",
                    model.layers, model.q_heads
                ),
            ));
        }
        let flat = sys::slice(ratios, n_ratios, "ratios")?;
        let mean = flat.iter().map(|&r| f64::from(r)).sum::<f64>() / want as f64;
        let calib = Calibration {
            format: shadowattn_sparse_attn::calibration::FORMAT.into(),
            version: shadowattn_sparse_attn::calibration::VERSION,
            grid: BucketGrid::new(mean_q_scale, mean_k_scale, 1, 0.5)?,
            mean_q_scale,
            mean_k_scale,
            ratio_config: RatioConfig {
                global_ratio: mean as f32,
                min_ratio: flat.iter().copied().fold(f32::INFINITY, f32::min),
                ..RatioConfig::default()
            },
            ratios: flat.chunks(model.q_heads).map(<[f32]>::to_vec).collect(),
            model,
            pilot_acc_range: None,
            center_keys: false,
            budget: shadowattn_hal::BudgetRule::MEASURED_BEST,
        };
        calib.validate()?;
        create(npu, compute, calib, options, out)
    })
}

/// Frees a context (NULL is ignored).
#[no_mangle]
pub extern "C" fn shadowattn_context_free(ctx: *mut shadowattn_context) {
    let _ = guard(|| {
        sys::free(ctx);
        Ok(())
    });
}

/// The message of the last call on `ctx` that failed (an empty string if none); valid until
/// the next failing call on `ctx` or its free. NULL for a NULL context.
#[no_mangle]
pub extern "C" fn shadowattn_context_last_error(ctx: *const shadowattn_context) -> *const c_char {
    match sys::get(ctx, "ctx") {
        Ok(c) => c.last_error.as_ptr(),
        Err(_) => std::ptr::null(),
    }
}

/// Whether the context's graph bank was loaded from its cache file (1) or compiled (0); -1 for
/// a NULL context.
#[no_mangle]
pub extern "C" fn shadowattn_context_bank_loaded(ctx: *const shadowattn_context) -> i32 {
    sys::get(ctx, "ctx").map_or(-1, |c| i32::from(c.bank_loaded))
}

/// Runs `f` on the context; a failure is also kept as the context's last error.
fn with_context(
    ctx: *mut shadowattn_context,
    f: impl FnOnce(&mut shadowattn_context) -> Result<(), ApiError>,
) -> shadowattn_status {
    let status = guard(|| f(sys::get_mut(ctx, "ctx")?));
    if status != crate::error::SHADOWATTN_OK {
        if let Ok(c) = sys::get_mut(ctx, "ctx") {
            c.last_error = last_error_text();
        }
    }
    status
}

/// Q, K and V of `shape` from C buffers with their element counts.
pub(crate) fn attention_inputs<'a>(
    q: *const f32,
    q_count: usize,
    k: *const f32,
    k_count: usize,
    v: *const f32,
    v_count: usize,
    shape: *const shadowattn_shape,
) -> Result<AttentionInputs<'a>, ApiError> {
    let shape = sys::get(shape, "shape")?.to_rust()?;
    Ok(AttentionInputs::new(
        sys::slice(q, q_count, "q")?,
        sys::slice(k, k_count, "k")?,
        sys::slice(v, v_count, "v")?,
        shape,
    )?)
}

/// Runs one prefill chunk of `layer` with shadowAttn: the output, `[q_heads][q_len][head_dim]`,
/// goes to `out` (`out_count` floats); `*report` (if not NULL) gets a report to free with
/// `shadowattn_report_free`. A one-row chunk (a decode step) runs dense attention. Heads whose
/// NPU launch fails fall back to dense attention (the report says which and why).
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`, `SHADOWATTN_ERROR_INVALID_ARGUMENT` (a count that
/// does not match the shape, a non-finite value), `SHADOWATTN_ERROR_CALIBRATION` (a layer the
/// calibration lacks, another model's heads, a chunk longer than the bank),
/// `SHADOWATTN_ERROR_BACKEND`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn shadowattn_context_run_chunk(
    ctx: *mut shadowattn_context,
    layer: u32,
    q: *const f32,
    q_count: usize,
    k: *const f32,
    k_count: usize,
    v: *const f32,
    v_count: usize,
    shape: *const shadowattn_shape,
    out: *mut f32,
    out_count: usize,
    report: *mut *mut shadowattn_report,
) -> shadowattn_status {
    with_context(ctx, |c| {
        let inputs = attention_inputs(q, q_count, k, k_count, v, v_count, shape)?;
        if out_count != inputs.output_len() {
            return Err(ApiError::invalid(format!(
                "out holds {out_count} floats, the shape's output has {}",
                inputs.output_len()
            )));
        }
        let out = sys::slice_mut(out, out_count, "out")?;
        let started = Instant::now();
        let result = c.shadow.run_chunk(layer as usize, inputs)?;
        let measured_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        out.copy_from_slice(&result.output);
        if !report.is_null() {
            let r = shadowattn_report::new(result, measured_ns);
            sys::put(report, Box::into_raw(Box::new(r)), "report")?;
        }
        Ok(())
    })
}

/// Dense attention of one chunk on `compute` (a decode step, or the reference to compare a
/// sparse chunk with): as `shadowattn_context_run_chunk` without a report.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`, `SHADOWATTN_ERROR_INVALID_ARGUMENT`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn shadowattn_dense_attention(
    compute: *const shadowattn_compute,
    q: *const f32,
    q_count: usize,
    k: *const f32,
    k_count: usize,
    v: *const f32,
    v_count: usize,
    shape: *const shadowattn_shape,
    out: *mut f32,
    out_count: usize,
) -> shadowattn_status {
    guard(|| {
        let compute = sys::get(compute, "compute")?;
        let inputs = attention_inputs(q, q_count, k, k_count, v, v_count, shape)?;
        let out = sys::slice_mut(out, out_count, "out")?;
        Ok(compute.backend.dense_attention(inputs, out)?)
    })
}
