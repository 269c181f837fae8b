//! The C API called as C calls it (through the exported functions, from Rust): every error
//! path returns its status and message, and a chunk gives, bit for bit, what the Rust API gives.

mod support;

use shadowattn::*;
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::AttentionShape;
use shadowattn_simulator::SimBackend;
use shadowattn_sparse_attn::bank::{BankSpec, GraphBank};
use shadowattn_sparse_attn::calibration::Calibration;
use shadowattn_sparse_attn::cost_table::CostTable;
use shadowattn_sparse_attn::pilot::{int8_accumulator_range, PilotOutput, PilotUnit};
use shadowattn_sparse_attn::setup::FUSED_HEADS;
use shadowattn_sparse_attn::shadow::{ShadowAttention, ShadowConfig};
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};
use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;
use std::ptr::{null, null_mut};

const ABI: u32 = SHADOWATTN_ABI_VERSION;
const SHAPE: (usize, usize, usize, usize, usize) = (4, 2, 16, 64, 32);

fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated string that lives until the next failure.
    #[allow(unsafe_code)]
    unsafe { CStr::from_ptr(shadowattn_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn npu(name: &str) -> *mut shadowattn_npu {
    let mut out = null_mut();
    let name = CString::new(name).unwrap();
    assert_eq!(
        shadowattn_npu_open(ABI, name.as_ptr(), &mut out),
        SHADOWATTN_OK,
        "{}",
        last_error()
    );
    out
}

fn compute(name: &str) -> *mut shadowattn_compute {
    let mut out = null_mut();
    let name = CString::new(name).unwrap();
    assert_eq!(
        shadowattn_compute_open(ABI, name.as_ptr(), &mut out),
        SHADOWATTN_OK,
        "{}",
        last_error()
    );
    out
}

fn shape() -> shadowattn_shape {
    let (qh, kh, q, k, d) = SHAPE;
    let mut s = shadowattn_shape {
        q_heads: 0,
        kv_heads: 0,
        q_len: 0,
        kv_len: 0,
        head_dim: 0,
        q_offset: 0,
        causal: 0,
        scale: 0.0,
    };
    assert_eq!(
        shadowattn_shape_causal(qh as u32, kh as u32, q as u32, k as u32, d as u32, &mut s),
        SHADOWATTN_OK
    );
    s
}

fn chunk(seed: u64) -> SyntheticChunk {
    let (qh, kh, q, k, d) = SHAPE;
    SyntheticChunk::generate(SyntheticSpec {
        shape: AttentionShape::causal(qh, kh, q, k, d),
        planted_fraction: 0.1,
        signal: 1.0,
        seed,
    })
    .unwrap()
}

/// A calibration file of `q_heads` × `kv_heads`, head_dim `d`, from synthetic samples.
fn calibration_file(
    tag: &str,
    q_heads: usize,
    kv_heads: usize,
    d: usize,
) -> (Calibration, PathBuf) {
    let calib = support::calibration(q_heads, kv_heads, d, 0.25, 100);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("capi");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{tag}-{}.json", std::process::id()));
    calib.save(&path).unwrap();
    (calib, path)
}

fn options(acc_range: f32) -> shadowattn_context_options {
    let mut o = std::mem::MaybeUninit::uninit();
    assert_eq!(
        shadowattn_context_options_default(o.as_mut_ptr()),
        SHADOWATTN_OK
    );
    // SAFETY: filled by the call above.
    #[allow(unsafe_code)]
    let mut o = unsafe { o.assume_init() };
    o.max_q_len = SHAPE.2 as u32;
    o.max_kv_len = SHAPE.3 as u32;
    o.int8_acc_range = acc_range;
    o
}

fn path_arg(p: &std::path::Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

#[test]
fn a_chunk_through_c_equals_the_rust_api_bit_for_bit() {
    let (calib, path) = calibration_file("same", 4, 2, 32);
    let sample = chunk(2000);
    let acc_range = int8_accumulator_range(sample.inputs()).unwrap();
    let c = chunk(7);
    let s = shape();

    // Through C.
    let (n, cp) = (npu("sim:snapdragon-8-gen-3"), compute("cpu"));
    let o = options(acc_range);
    let mut ctx = null_mut();
    let p = path_arg(&path);
    assert_eq!(
        shadowattn_context_create(ABI, n, cp, p.as_ptr(), &o, &mut ctx),
        SHADOWATTN_OK,
        "{}",
        last_error()
    );
    let mut out = vec![0.0f32; c.inputs().output_len()];
    let mut report = null_mut();
    assert_eq!(
        shadowattn_context_run_chunk(
            ctx,
            0,
            c.q.as_ptr(),
            c.q.len(),
            c.k.as_ptr(),
            c.k.len(),
            c.v.as_ptr(),
            c.v.len(),
            &s,
            out.as_mut_ptr(),
            out.len(),
            &mut report
        ),
        SHADOWATTN_OK,
        "{}",
        last_error()
    );

    // Through Rust.
    let cpu = CpuBackend::new();
    let sim = SimBackend::builtin("snapdragon-8-gen-3").unwrap();
    let spec = BankSpec {
        q_len: SHAPE.2,
        kv_len: SHAPE.3,
        head_dim: SHAPE.4,
        fused: FUSED_HEADS.to_vec(),
        output: PilotOutput::Int8 { acc_range },
        unit: PilotUnit::Head,
    };
    let bank = GraphBank::build(&sim, &calib.grid, spec).unwrap();
    let mut sa = ShadowAttention::new(
        bank,
        calib,
        &cpu,
        CostTable::uniform(&FUSED_HEADS),
        ShadowConfig::default(),
    )
    .unwrap();
    let want = sa.run_chunk(0, c.inputs()).unwrap();

    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&out), bits(&want.output), "outputs differ");
    let (mut heads, mut launches) = (0, 0);
    assert_eq!(
        shadowattn_report_counts(report, &mut heads, &mut launches),
        SHADOWATTN_OK
    );
    assert_eq!((heads, launches), (4, want.launches.len()));
    let (mut unit, mut unit_heads) = (u32::MAX, 0usize);
    assert_eq!(
        shadowattn_report_pilot(report, &mut unit, &mut unit_heads),
        SHADOWATTN_OK
    );
    assert_eq!((unit, unit_heads), (SHADOWATTN_PILOT_UNIT_HEAD, 1));
    assert_eq!(
        shadowattn_report_pilot(report, std::ptr::null_mut(), &mut unit_heads),
        SHADOWATTN_ERROR_NULL_ARGUMENT
    );
    for h in 0..heads {
        for row in 0..SHAPE.2 {
            let (mut keys, mut count) = (null(), 0usize);
            assert_eq!(
                shadowattn_report_selection(report, h, row, &mut keys, &mut count),
                SHADOWATTN_OK
            );
            // SAFETY: the report lends `count` keys at `keys` until it is freed.
            #[allow(unsafe_code)]
            let got = unsafe { std::slice::from_raw_parts(keys, count) };
            assert_eq!(got, want.selections[h].row(row), "head {h} row {row}");
        }
        let mut info = shadowattn_head_info::default();
        assert_eq!(shadowattn_report_head(report, h, &mut info), SHADOWATTN_OK);
        assert_eq!(info.path, SHADOWATTN_HEAD_SPARSE);
        assert_eq!(Some(info.bucket as usize), want.heads[h].bucket());
    }
    let mut times = shadowattn_times::default();
    assert_eq!(shadowattn_report_times(report, &mut times), SHADOWATTN_OK);
    assert!(
        times.simulated_npu_ns > 0 && times.projected_ns > 0,
        "{times:?}"
    );
    let mut events = 0;
    assert_eq!(
        shadowattn_report_event_count(report, &mut events),
        SHADOWATTN_OK
    );
    assert!(events > 0);
    let mut e = std::mem::MaybeUninit::uninit();
    assert_eq!(
        shadowattn_report_event(report, 0, e.as_mut_ptr()),
        SHADOWATTN_OK
    );
    assert_eq!(
        shadowattn_report_event(report, events, e.as_mut_ptr()),
        SHADOWATTN_ERROR_INVALID_ARGUMENT
    );

    shadowattn_report_free(report);
    shadowattn_context_free(ctx);
    shadowattn_compute_free(cp);
    shadowattn_npu_free(n);
}

#[test]
fn every_error_path_is_a_status_with_a_message() {
    let name = CString::new("cpu").unwrap();
    let mut h = null_mut();
    // A newer header than the library.
    assert_eq!(
        shadowattn_npu_open(ABI + 1, name.as_ptr(), &mut h),
        SHADOWATTN_ERROR_ABI_VERSION
    );
    assert!(last_error().contains("ABI 2"), "{}", last_error());
    assert_eq!(
        shadowattn_npu_open(0, name.as_ptr(), &mut h),
        SHADOWATTN_ERROR_ABI_VERSION
    );
    // NULL arguments.
    assert_eq!(
        shadowattn_npu_open(ABI, null(), &mut h),
        SHADOWATTN_ERROR_NULL_ARGUMENT
    );
    assert!(last_error().contains("`name`"), "{}", last_error());
    assert_eq!(
        shadowattn_npu_open(ABI, name.as_ptr(), null_mut()),
        SHADOWATTN_ERROR_NULL_ARGUMENT
    );
    // Names outside the grammar, and a backend that does not load here.
    let bad = CString::new("gpu").unwrap();
    assert_eq!(
        shadowattn_npu_open(ABI, bad.as_ptr(), &mut h),
        SHADOWATTN_ERROR_BACKEND_NAME
    );
    assert!(
        last_error().contains("qnn[:htp[:<socModel>]]"),
        "{}",
        last_error()
    );
    let mut c = null_mut();
    assert_eq!(
        shadowattn_compute_open(ABI, CString::new("cpu-fast:0").unwrap().as_ptr(), &mut c),
        SHADOWATTN_ERROR_BACKEND_NAME
    );
    if std::env::var_os("SHADOWATTN_NEURON_LIB").is_none() {
        assert_eq!(
            shadowattn_npu_open(ABI, CString::new("neuron").unwrap().as_ptr(), &mut h),
            SHADOWATTN_ERROR_BACKEND_UNAVAILABLE
        );
        assert!(
            last_error().contains("libneuron_adapter.so"),
            "{}",
            last_error()
        );
    }
    // Contexts: NULL handles, a calibration file that is missing, or of another shape.
    let (n, cp) = (npu("cpu"), compute("cpu"));
    let (_, path) = calibration_file("other", 8, 2, 16);
    let p = path_arg(&path);
    let o = options(20_000.0);
    let mut ctx = null_mut();
    assert_eq!(
        shadowattn_context_create(ABI, null(), cp, p.as_ptr(), &o, &mut ctx),
        SHADOWATTN_ERROR_NULL_ARGUMENT
    );
    assert_eq!(
        shadowattn_context_create(ABI, n, cp, c"/nonexistent.json".as_ptr(), &o, &mut ctx),
        SHADOWATTN_ERROR_IO
    );
    let mut bad_o = o;
    bad_o.pilot_output = 7;
    assert_eq!(
        shadowattn_context_create(ABI, n, cp, p.as_ptr(), &bad_o, &mut ctx),
        SHADOWATTN_ERROR_INVALID_ARGUMENT
    );
    assert_eq!(
        shadowattn_context_create(ABI, n, cp, p.as_ptr(), &o, &mut ctx),
        SHADOWATTN_OK,
        "{}",
        last_error()
    );
    let c7 = chunk(7);
    let s = shape();
    let mut out = vec![0.0f32; c7.inputs().output_len()];
    let run = |ctx, q: &[f32], out: &mut [f32], s: &shadowattn_shape| {
        shadowattn_context_run_chunk(
            ctx,
            0,
            q.as_ptr(),
            q.len(),
            c7.k.as_ptr(),
            c7.k.len(),
            c7.v.as_ptr(),
            c7.v.len(),
            s,
            out.as_mut_ptr(),
            out.len(),
            null_mut(),
        )
    };
    // The calibration is for 8 query heads of head_dim 16; the chunk has 4 of 32.
    assert_eq!(run(ctx, &c7.q, &mut out, &s), SHADOWATTN_ERROR_CALIBRATION);
    let ctx_text = |ctx| {
        // SAFETY: a context's last error is a NUL-terminated string it owns.
        #[allow(unsafe_code)]
        unsafe { CStr::from_ptr(shadowattn_context_last_error(ctx)) }
            .to_string_lossy()
            .into_owned()
    };
    assert!(
        ctx_text(ctx).contains("the calibration is for"),
        "{}",
        ctx_text(ctx)
    );
    // Wrong sizes.
    assert_eq!(
        run(ctx, &c7.q[1..], &mut out, &s),
        SHADOWATTN_ERROR_INVALID_ARGUMENT
    );
    assert!(
        last_error().contains("`q`") || last_error().contains("tensor `q`"),
        "{}",
        last_error()
    );
    let mut short = vec![0.0f32; 3];
    assert_eq!(
        run(ctx, &c7.q, &mut short, &s),
        SHADOWATTN_ERROR_INVALID_ARGUMENT
    );
    assert_eq!(
        run(null_mut(), &c7.q, &mut out, &s),
        SHADOWATTN_ERROR_NULL_ARGUMENT
    );
    let bad_shape = shadowattn_shape { causal: 5, ..s };
    assert_eq!(
        run(ctx, &c7.q, &mut out, &bad_shape),
        SHADOWATTN_ERROR_INVALID_ARGUMENT
    );
    assert!(shadowattn_context_last_error(null()).is_null());
    assert_eq!(shadowattn_context_bank_loaded(null()), -1);
    // Text outputs that are too small say how much they need.
    let mut needed = 0usize;
    let mut buf = [0 as c_char; 4];
    assert_eq!(
        shadowattn_npu_describe(n, buf.as_mut_ptr(), buf.len(), &mut needed),
        SHADOWATTN_ERROR_BUFFER_TOO_SMALL
    );
    assert!(needed > 4);
    shadowattn_context_free(ctx);
    shadowattn_compute_free(cp);
    shadowattn_npu_free(n);
    // Freeing NULL is fine.
    shadowattn_context_free(null_mut());
    shadowattn_report_free(null_mut());
}

#[test]
fn a_bank_cache_is_written_once_and_loaded_after() {
    let (_, path) = calibration_file("cache", 4, 2, 32);
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("capi/bank-{}.bin", std::process::id()));
    let _ = std::fs::remove_file(&cache);
    let cache_arg = path_arg(&cache);
    let (n, cp) = (npu("sim:sa8255"), compute("cpu"));
    let p = path_arg(&path);
    let mut o = options(20_000.0);
    o.bank_cache = cache_arg.as_ptr();
    for loaded in [0, 1] {
        let mut ctx = null_mut();
        assert_eq!(
            shadowattn_context_create(ABI, n, cp, p.as_ptr(), &o, &mut ctx),
            SHADOWATTN_OK,
            "{}",
            last_error()
        );
        assert_eq!(shadowattn_context_bank_loaded(ctx), loaded);
        shadowattn_context_free(ctx);
    }
    assert!(cache.exists());
    shadowattn_compute_free(cp);
    shadowattn_npu_free(n);
}

#[test]
fn the_version_and_the_list_of_backends_are_readable() {
    assert_eq!(shadowattn_abi_version(), SHADOWATTN_ABI_VERSION);
    // SAFETY: a static NUL-terminated string.
    #[allow(unsafe_code)]
    let v = unsafe { CStr::from_ptr(shadowattn_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    let mut needed = 0usize;
    assert_eq!(
        shadowattn_list_backends(null_mut(), 0, &mut needed),
        SHADOWATTN_ERROR_BUFFER_TOO_SMALL
    );
    assert_eq!(
        shadowattn_list_backends(null_mut(), 8, &mut needed),
        SHADOWATTN_ERROR_NULL_ARGUMENT
    );
    let mut buf = vec![0 as c_char; needed];
    assert_eq!(
        shadowattn_list_backends(buf.as_mut_ptr(), buf.len(), &mut needed),
        SHADOWATTN_OK
    );
    // SAFETY: the buffer was filled with a NUL-terminated string.
    #[allow(unsafe_code)]
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    assert!(text.contains("sim:snapdragon-8-gen-3\tavailable"), "{text}");
    assert!(text.contains("cpu-fast:2\tavailable"), "{text}");
}
