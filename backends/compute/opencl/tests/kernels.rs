//! The OpenCL kernels against the golden CPU reference on whatever OpenCL device is here (PoCL in
//! CI): quantization and top-k exactly, attention within float tolerance, bad input as typed
//! errors. Skipped locally with a reason when no OpenCL platform exists; a failure in CI.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{
    AttentionInputs, AttentionShape, ComputeBackend, EventKind, HalError, HeadsView, KeyBudget,
    ScoreData, ScoreMatrix, Selection,
};
use shadowattn_opencl::{
    LibraryError, OpenClBackend, OpenClError, OpenClLibrary, OpenClOptions, Selector, Storage,
};
use shadowattn_test_support::{missing_dependency, noise};

fn open(options: OpenClOptions) -> Option<OpenClBackend> {
    match OpenClBackend::open(options) {
        Ok(b) => Some(b),
        Err(
            e @ (OpenClError::Library(LibraryError::Load { .. }) | OpenClError::NoPlatform { .. }),
        ) => {
            missing_dependency(
                "an OpenCL platform",
                &format!(
                    "install PoCL (bash ci/opencl.sh): {}",
                    e.to_string().lines().next().unwrap_or_default()
                ),
            );
            None
        }
        Err(e) => panic!("OpenCL backend does not open: {e}"),
    }
}

/// [`shadowattn_test_support::close`] as a property's failure, naming `what` was compared.
fn close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) -> Result<(), TestCaseError> {
    shadowattn_test_support::close(got, want, atol, rtol)
        .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))
}

fn shapes() -> impl Strategy<Value = (AttentionShape, u64)> {
    (
        1usize..4,
        1usize..3,
        1usize..12,
        0usize..300,
        prop::sample::select(vec![1usize, 3, 8, 31, 64, 128]),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(group, kv_heads, q_len, prefix, head_dim, causal, seed)| {
            let mut s =
                AttentionShape::causal(group * kv_heads, kv_heads, q_len, q_len + prefix, head_dim);
            s.causal = causal;
            (s, seed)
        })
}

fn qkv(s: &AttentionShape, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    (
        noise(seed, s.q_heads * s.q_len * s.head_dim, 2.0),
        noise(seed + 1, s.kv_heads * s.kv_len * s.head_dim, 2.0),
        noise(seed + 2, s.kv_heads * s.kv_len * s.head_dim, 1.0),
    )
}

/// Attention on `gpu` against the golden backend: dense, then sparse on the golden top-k.
fn check_attention(
    gpu: &OpenClBackend,
    s: AttentionShape,
    seed: u64,
    ratio: f32,
    (atol, rtol): (f32, f32),
) -> Result<(), TestCaseError> {
    let gold = CpuBackend::new();
    let (q, k, v) = qkv(&s, seed);
    let inputs = AttentionInputs::new(&q, &k, &v, s).unwrap();
    let n = inputs.output_len();
    let (mut want, mut got) = (vec![0f32; n], vec![0f32; n]);
    gold.dense_attention(inputs, &mut want).unwrap();
    gpu.dense_attention(inputs, &mut got).unwrap();
    close("dense", &got, &want, atol, rtol)?;
    let budget = KeyBudget::Ratio { ratio, min_keys: 1 };
    let selections: Vec<Selection> = (0..s.q_heads)
        .map(|h| {
            let scores = inputs.exact_scores(h).unwrap();
            let m = ScoreMatrix::new(
                ScoreData::F32(&scores),
                s.q_len,
                s.kv_len,
                s.q_offset,
                s.causal,
            )
            .unwrap();
            gold.topk(m, budget).unwrap()
        })
        .collect();
    gold.sparse_attention(inputs, &selections, &mut want)
        .unwrap();
    gpu.sparse_attention(inputs, &selections, &mut got).unwrap();
    close("sparse", &got, &want, atol, rtol)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn attention_matches_the_golden_backend() {
    let Some(gpu) = open(OpenClOptions::default()) else {
        return;
    };
    runner(40)
        .run(&(shapes(), 0.05f32..1.0), |((s, seed), ratio)| {
            check_attention(&gpu, s, seed, ratio, (2e-5, 1e-4))
        })
        .unwrap();
}

#[test]
fn f16_storage_matches_within_half_precision() {
    let Some(gpu) = open(OpenClOptions {
        storage: Storage::F16,
        f16_without_extension: true,
        ..Default::default()
    }) else {
        return;
    };
    assert!(gpu.f16_storage());
    // K and V rounded to f16 (relative error 2^-11 each): outputs of |v| ≤ 1 within ~4e-3.
    runner(16)
        .run(&(shapes(), 0.05f32..1.0), |((s, seed), ratio)| {
            check_attention(&gpu, s, seed, ratio, (4e-3, 4e-3))
        })
        .unwrap();
    // Values that f16 cannot hold are refused, not turned into infinities.
    let s = AttentionShape::causal(1, 1, 1, 1, 4);
    let (q, mut k, v) = qkv(&s, 1);
    k[2] = 1e6;
    let inputs = AttentionInputs::new(&q, &k, &v, s).unwrap();
    let err = gpu.dense_attention(inputs, &mut [0.0; 4]).unwrap_err();
    assert!(matches!(err, HalError::InvalidValue { .. }), "{err}");
    assert!(err.to_string().contains("f16 range"), "{err}");
}

#[test]
fn topk_is_exactly_the_golden_selection() {
    let Some(gpu) = open(OpenClOptions::default()) else {
        return;
    };
    let gold = CpuBackend::new();
    // Few distinct values make many ties; the special floats check the total order.
    let strategy = (
        1usize..9,
        1usize..300,
        0usize..40,
        any::<bool>(),
        0u8..4,
        any::<u64>(),
        0.01f32..1.0,
    );
    runner(60)
        .run(
            &strategy,
            |(rows, extra, spread, causal, kind, seed, ratio)| {
                let cols = rows + extra;
                let n = rows * cols;
                let raw = noise(seed, n, 1.0);
                let levels = (spread + 1) as f32;
                let f: Vec<f32> = raw
                    .iter()
                    .enumerate()
                    .map(|(i, x)| match i % 97 {
                        5 => f32::INFINITY,
                        6 => f32::NEG_INFINITY,
                        7 => -0.0,
                        8 => 0.0,
                        _ => (x * levels).round() / levels,
                    })
                    .collect();
                let i32s: Vec<i32> = raw
                    .iter()
                    .map(|x| (x * (spread as f32 + 1.0) * 1e3) as i32 * i32::from(i8::MAX))
                    .collect();
                let i8s: Vec<i8> = raw
                    .iter()
                    .map(|x| (x * (spread as f32 + 1.0)).clamp(-128.0, 127.0) as i8)
                    .collect();
                let f16s: Vec<half::f16> = f.iter().map(|&x| half::f16::from_f32(x)).collect();
                let data = match kind {
                    0 => ScoreData::F32(&f),
                    1 => ScoreData::I32(&i32s),
                    2 => ScoreData::F16(&f16s),
                    _ => ScoreData::I8(&i8s),
                };
                let m = ScoreMatrix::new(data, rows, cols, cols - rows, causal).unwrap();
                for budget in [KeyBudget::Ratio { ratio, min_keys: 3 }, KeyBudget::Fixed(1)] {
                    prop_assert_eq!(gpu.topk(m, budget).unwrap(), gold.topk(m, budget).unwrap());
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn quantization_is_bit_identical() {
    let Some(gpu) = open(OpenClOptions::default()) else {
        return;
    };
    let gold = CpuBackend::new();
    let strategy = (
        1usize..5,
        1usize..40,
        1usize..70,
        any::<u64>(),
        any::<bool>(),
        1e-3f32..10.0,
    );
    runner(60)
        .run(&strategy, |(heads, rows, dim, seed, given, amp)| {
            let mut x = noise(seed, heads * rows * dim, amp);
            // Head 0's scale is exactly 2^-5 (max 127·2^-5, or given): ±0.5 and ±2.5 steps
            // are exact half-way points. A zero head takes scale 1.
            for (i, v) in [127.0f32, 2.5, -2.5, 0.5, -0.5, 0.0]
                .into_iter()
                .enumerate()
            {
                if i < rows * dim {
                    x[i] = v / 32.0;
                }
            }
            if heads > 1 {
                x[(heads - 1) * rows * dim..]
                    .iter_mut()
                    .for_each(|v| *v = 0.0);
            }
            let view = HeadsView::new(&x, heads, rows, dim).unwrap();
            let scales: Vec<f32> = (0..heads)
                .map(|h| {
                    if h == 0 {
                        1.0 / 32.0
                    } else {
                        amp / (60.0 + h as f32)
                    }
                })
                .collect();
            let s = given.then_some(scales.as_slice());
            prop_assert_eq!(
                gpu.quantize_heads(view, s).unwrap(),
                gold.quantize_heads(view, s).unwrap()
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn every_work_group_size_gives_the_same_results() {
    for wg in [1usize, 2, 32] {
        let Some(gpu) = open(OpenClOptions {
            work_group_size: Some(wg),
            ..Default::default()
        }) else {
            return;
        };
        assert_eq!(gpu.work_group_size(), wg);
        runner(6)
            .run(&(shapes(), 0.05f32..1.0), |((s, seed), ratio)| {
                check_attention(&gpu, s, seed, ratio, (2e-5, 1e-4))
            })
            .unwrap();
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let Some(gpu) = open(OpenClOptions::default()) else {
        return;
    };
    let s = AttentionShape::causal(2, 1, 3, 5, 4);
    let (mut q, k, v) = qkv(&s, 3);
    q[4] = f32::NAN;
    let inputs = AttentionInputs::new(&q, &k, &v, s).unwrap();
    let mut out = vec![0.0; inputs.output_len()];
    assert!(matches!(
        gpu.dense_attention(inputs, &mut out).unwrap_err(),
        HalError::InvalidValue { .. }
    ));
    let (q, k, v) = qkv(&s, 3);
    let inputs = AttentionInputs::new(&q, &k, &v, s).unwrap();
    assert!(matches!(
        gpu.dense_attention(inputs, &mut out[1..]).unwrap_err(),
        HalError::BufferMismatch { .. }
    ));
    // One selection for two heads, and a key past the causal prefix.
    let mut sel = Selection::new();
    for _ in 0..3 {
        sel.push_row(&[0]);
    }
    assert!(gpu
        .sparse_attention(inputs, &[sel.clone()], &mut out)
        .is_err());
    let mut bad = Selection::new();
    bad.push_row(&[4]);
    bad.push_row(&[0]);
    bad.push_row(&[0]);
    let err = gpu
        .sparse_attention(inputs, &[sel, bad], &mut out)
        .unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    // Top-k: NaN scores, k beyond the prefix.
    let scores = [1.0, 5.0, f32::NAN, 2.0];
    let m = ScoreMatrix::causal(ScoreData::F32(&scores), 2, 2, 0).unwrap();
    assert!(gpu
        .topk(m, KeyBudget::Fixed(1))
        .unwrap_err()
        .to_string()
        .contains("NaN"));
    let ok = [1.0, 3.0, 0.0, 2.0];
    let m = ScoreMatrix::causal(ScoreData::F32(&ok), 2, 2, 0).unwrap();
    assert!(gpu
        .topk(m, KeyBudget::Fixed(2))
        .unwrap_err()
        .to_string()
        .contains("causal prefix"));
    // Quantization: non-finite values and bad scales.
    let x = [1.0, f32::INFINITY];
    assert!(gpu
        .quantize_heads(HeadsView::new(&x, 1, 1, 2).unwrap(), None)
        .is_err());
    let x = [1.0, 2.0];
    let view = HeadsView::new(&x, 1, 1, 2).unwrap();
    assert!(matches!(
        gpu.quantize_heads(view, Some(&[0.0])).unwrap_err(),
        HalError::InvalidQuantization { .. }
    ));
    assert!(gpu.quantize_heads(view, Some(&[1.0, 1.0])).is_err());
    // The backend still works after every refusal.
    let (q, k, v) = qkv(&s, 3);
    let inputs = AttentionInputs::new(&q, &k, &v, s).unwrap();
    gpu.dense_attention(inputs, &mut out).unwrap();
}

#[test]
fn buffers_beyond_the_limit_are_refused_by_name() {
    let Some(gpu) = open(OpenClOptions {
        max_buffer_bytes: Some(4096),
        ..Default::default()
    }) else {
        return;
    };
    let s = AttentionShape::causal(1, 1, 4, 64, 32);
    let (q, k, v) = qkv(&s, 9);
    let inputs = AttentionInputs::new(&q, &k, &v, s).unwrap();
    let err = gpu
        .dense_attention(inputs, &mut vec![0.0; inputs.output_len()])
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HalError::InvalidArgument { .. }), "{text}");
    assert!(
        text.contains("buffer `k` needs 8192 bytes") && text.contains("4096"),
        "{text}"
    );
    // Smaller inputs still fit afterwards.
    let s = AttentionShape::causal(1, 1, 2, 8, 8);
    let (q, k, v) = qkv(&s, 9);
    let inputs = AttentionInputs::new(&q, &k, &v, s).unwrap();
    gpu.dense_attention(inputs, &mut vec![0.0; inputs.output_len()])
        .unwrap();
}

#[test]
fn buffers_are_reused_across_calls() {
    let Some(gpu) = open(OpenClOptions::default()) else {
        return;
    };
    let s = AttentionShape::causal(2, 1, 8, 64, 16);
    let (q, k, v) = qkv(&s, 5);
    let inputs = AttentionInputs::new(&q, &k, &v, s).unwrap();
    let mut out = vec![0.0; inputs.output_len()];
    gpu.dense_attention(inputs, &mut out).unwrap();
    let held = gpu.device_buffer_bytes();
    for _ in 0..5 {
        gpu.dense_attention(inputs, &mut out).unwrap();
    }
    assert_eq!(
        gpu.device_buffer_bytes(),
        held,
        "same shapes reuse the same buffers"
    );
}

#[test]
fn options_the_device_cannot_honour_are_refused() {
    let Some(gpu) = open(OpenClOptions::default()) else {
        return;
    };
    let dev = gpu.device().clone();
    for wg in [3usize, 1 << 30] {
        let err = OpenClBackend::open(OpenClOptions {
            work_group_size: Some(wg),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            matches!(
                err,
                OpenClError::InvalidOption {
                    option: "work_group_size",
                    ..
                }
            ),
            "{err}"
        );
    }
    if !dev.has_fp16() {
        let err = OpenClBackend::open(OpenClOptions {
            storage: Storage::F16,
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, OpenClError::NoFp16 { .. }), "{err}");
        assert!(!OpenClBackend::open(OpenClOptions::default())
            .unwrap()
            .f16_storage());
    }
    let err = OpenClBackend::open(OpenClOptions {
        device: Some(Selector::Name("no such device".into())),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, OpenClError::NoDevice { .. }), "{err}");
    assert!(
        err.to_string().contains(&dev.name),
        "lists what exists: {err}"
    );
    let by_index = OpenClBackend::open(OpenClOptions {
        platform: Some(Selector::Index(dev.platform_index)),
        device: Some(Selector::Index(dev.index)),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(by_index.device().name, dev.name);
    assert!("".parse::<Selector>().is_err());
    assert_eq!("1".parse::<Selector>().unwrap(), Selector::Index(1));
}

#[test]
fn kernels_that_do_not_build_show_the_build_log() {
    let Some(gpu) = open(OpenClOptions::default()) else {
        return;
    };
    gpu.build_source("__kernel void fine(__global float* x) { x[0] = 1.0f; }", "")
        .unwrap();
    let err = gpu
        .build_source(
            "__kernel void broken(__global float* x) { x[0] = undeclared_name; }",
            "",
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OpenClError::Build { .. }), "{text}");
    assert!(text.contains("CL_BUILD_PROGRAM_FAILURE"), "{text}");
    assert!(
        text.contains("undeclared_name"),
        "the compiler's log names the problem: {text}"
    );
    let hal: HalError = err.into();
    assert!(matches!(hal, HalError::Vendor { code: -11, .. }), "{hal}");
}

#[test]
fn profiling_events_cover_every_command_in_order() {
    let Some(gpu) = open(OpenClOptions {
        profiling: true,
        ..Default::default()
    }) else {
        return;
    };
    let s = AttentionShape::causal(2, 1, 4, 16, 8);
    let (q, k, v) = qkv(&s, 2);
    let inputs = AttentionInputs::new(&q, &k, &v, s).unwrap();
    let mut out = vec![0.0; inputs.output_len()];
    gpu.dense_attention(inputs, &mut out).unwrap();
    let raw = gpu.take_gpu_events();
    let names: Vec<&str> = raw.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "write q",
            "write k",
            "write v",
            "write offsets",
            "write indices",
            "attend",
            "read out"
        ]
    );
    for e in &raw {
        assert!(
            e.queued_ns <= e.submitted_ns
                && e.submitted_ns <= e.started_ns
                && e.started_ns <= e.ended_ns,
            "{e:?}"
        );
    }
    // In-order queue: each command starts after the previous one ended.
    for w in raw.windows(2) {
        assert!(w[1].started_ns >= w[0].ended_ns, "{w:?}");
    }
    assert!(gpu.take_gpu_events().is_empty(), "taking drains");
    gpu.dense_attention(inputs, &mut out).unwrap();
    let events = gpu.take_events();
    assert_eq!(
        events.len(),
        14,
        "a queue wait and an execution per command"
    );
    let attend = events.iter().find(|e| e.name == "attend").unwrap();
    assert_eq!(attend.kind, EventKind::ComputeStage);
    assert!(attend.track.starts_with("opencl:"));
    assert!(events.iter().any(|e| e.kind == EventKind::Transfer));
    // Without profiling nothing is recorded.
    let quiet = open(OpenClOptions::default()).unwrap();
    quiet.dense_attention(inputs, &mut out).unwrap();
    assert!(quiet.take_events().is_empty());
}

#[test]
fn the_loader_follows_the_search_order_and_names_what_failed() {
    let err = OpenClLibrary::open("/nonexistent/libOpenCL.so").unwrap_err();
    assert!(
        matches!(err, OpenClError::Library(LibraryError::Open { .. })),
        "{err}"
    );
    // A real library without the OpenCL symbols.
    let err = OpenClLibrary::open("libm.so.6").unwrap_err();
    assert!(
        err.to_string()
            .contains("missing symbol `clGetPlatformIDs`"),
        "{err}"
    );
    match OpenClLibrary::find_in(
        Some(std::path::Path::new("/nonexistent/explicit.so")),
        Some("/nonexistent/env.so".into()),
    ) {
        // Found through a candidate name after both explicit choices failed.
        Ok(lib) => assert!(!lib.path().contains("nonexistent")),
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains("/nonexistent/explicit.so (explicit path)"),
                "{text}"
            );
            assert!(
                text.contains("/nonexistent/env.so ($SHADOWATTN_OPENCL_LIB)"),
                "{text}"
            );
            assert!(text.contains("libOpenCL.so.1 (candidate name)"), "{text}");
        }
    }
}
