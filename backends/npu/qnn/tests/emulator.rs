//! The QNN backend on Qualcomm's HTP emulator (libQnnHtp.so from the onnxruntime-qnn wheel,
//! fetched by `ci/qnn-emulator.sh`). Skips locally when the emulator is absent; fails in CI.

use shadowattn_cpu::reference;
use shadowattn_hal::{
    CompiledGraph, DType, Graph, GraphBuilder, HalError, HostTensor, NpuBackend, OutType,
    QuantParams, Quantization, TensorDesc,
};
use shadowattn_qnn::{QnnBackend, QnnOptions};
use shadowattn_simulator::npu::graphs::matmul_softmax_graph;
use shadowattn_test_support::missing_dependency;
use std::path::PathBuf;

fn emulator_path() -> Option<PathBuf> {
    let target = shadowattn_test_support::target_dir(env!("CARGO_TARGET_TMPDIR"));
    shadowattn_test_support::qnn_emulator(&target)
}

fn emulator(soc_model: Option<u32>) -> Option<QnnBackend> {
    let Some(path) = emulator_path() else {
        missing_dependency(
            "Qualcomm HTP emulator",
            "run `bash ci/qnn-emulator.sh` or set SHADOWATTN_QNN_LIB",
        );
        return None;
    };
    Some(
        QnnBackend::open(QnnOptions {
            library: Some(path),
            soc_model,
            ..Default::default()
        })
        .expect("the emulator opens"),
    )
}

fn random_inputs(graph: &Graph, seed: u64) -> Vec<HostTensor> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    graph
        .input_descs()
        .map(|d| {
            let mut t = HostTensor::zeros(d.clone()).unwrap();
            match d.dtype {
                DType::F16 => {
                    let v: Vec<half::f16> = (0..d.numel())
                        .map(|_| half::f16::from_f32((next() % 2000) as f32 / 1000.0 - 1.0))
                        .collect();
                    t.as_mut_slice::<half::f16>().unwrap().copy_from_slice(&v);
                }
                DType::F32 => {
                    let v: Vec<f32> = (0..d.numel())
                        .map(|_| (next() % 2000) as f32 / 1000.0 - 1.0)
                        .collect();
                    t.as_mut_slice::<f32>().unwrap().copy_from_slice(&v);
                }
                _ => t.bytes_mut().iter_mut().for_each(|b| *b = next() as u8),
            }
            t
        })
        .collect()
}

fn run(compiled: &mut dyn CompiledGraph, inputs: &[HostTensor]) -> Vec<HostTensor> {
    let g = compiled.graph().clone();
    let mut outs: Vec<HostTensor> = g
        .output_descs()
        .map(|d| HostTensor::zeros(d.clone()).unwrap())
        .collect();
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    let mut out_views: Vec<_> = outs.iter_mut().map(|t| t.view_mut()).collect();
    let events = compiled.execute(&views, &mut out_views).unwrap();
    assert!(!events.is_empty());
    outs
}

fn pilot(heads: usize, q_len: usize, kv_len: usize, d: usize, out_scale: f32) -> Graph {
    let mut b = GraphBuilder::new(format!("pilot_h{heads}"));
    let desc = |rows: usize, s: f32| {
        TensorDesc::new(DType::I8, [1, heads, rows, d]).with_quant(Quantization::per_tensor(s, 0))
    };
    let q = b.input("q", desc(q_len, 0.02)).unwrap();
    let k = b.input("k", desc(kv_len, 0.03)).unwrap();
    let s = b
        .matmul(
            "scores",
            q,
            k,
            false,
            true,
            OutType::quantized(DType::I8, QuantParams::symmetric(out_scale)),
        )
        .unwrap();
    b.output(s).unwrap();
    b.build().unwrap()
}

#[test]
fn int8_pilot_matches_the_reference_within_one_lsb() {
    let Some(qnn) = emulator(None) else { return };
    for (heads, q_len, kv_len) in [(1, 16, 64), (2, 8, 40)] {
        let g = pilot(heads, q_len, kv_len, 32, 0.02);
        let mut compiled = qnn.compile(&g).unwrap();
        let ins = random_inputs(&g, 7 + heads as u64);
        let got = run(compiled.as_mut(), &ins);
        let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
        let want = reference::graph::run(&g, &views).unwrap();
        let (a, b) = (
            got[0].as_slice::<i8>().unwrap(),
            want[0].as_slice::<i8>().unwrap(),
        );
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (i16::from(*x) - i16::from(*y)).abs())
            .max()
            .unwrap();
        let exact = a.iter().zip(b).filter(|(x, y)| x == y).count();
        assert!(worst <= 1, "max LSB difference {worst}");
        assert!(
            exact * 10 >= a.len() * 9,
            "only {exact} of {} exact",
            a.len()
        );
    }
}

#[test]
fn fp16_matmul_softmax_matches_with_accumulation_aware_tolerance() {
    let Some(qnn) = emulator(None) else { return };
    let g = matmul_softmax_graph(128);
    let mut compiled = qnn.compile(&g).unwrap();
    let ins = random_inputs(&g, 3);
    let got = run(compiled.as_mut(), &ins);
    let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
    let want = reference::graph::run(&g, &views).unwrap();
    let eps = f64::from(half::f16::EPSILON.to_f32());
    let rtol = (10.0 * eps * (128f64).sqrt()).max(5e-3);
    let atol = 10.0 * eps;
    for (x, y) in got[0]
        .as_slice::<half::f16>()
        .unwrap()
        .iter()
        .zip(want[0].as_slice::<half::f16>().unwrap())
    {
        let (x, y) = (x.to_f64(), y.to_f64());
        assert!((x - y).abs() <= atol + rtol * y.abs(), "{x} vs {y}");
    }
}

#[test]
fn sa8255_gives_qualcomm_cost_model_estimates() {
    let Some(qnn) = emulator(Some(52)) else {
        return;
    };
    let compiled = qnn.compile_qnn(&matmul_softmax_graph(128)).unwrap();
    let e = compiled
        .executable()
        .estimate()
        .expect("socModel 52 has estimates");
    assert_eq!(e.cycles, 48_002, "{e:?}");
    assert_eq!(
        (e.cycles_lower, e.cycles_upper, e.micros),
        (45_179, 51_201, 32)
    );
    assert!(compiled
        .compile_events()
        .iter()
        .any(|ev| ev.cycles == Some(48_002)));
}

#[test]
fn context_binaries_round_trip_and_are_soc_specific() {
    let Some(qnn) = emulator(None) else { return };
    let g = pilot(1, 8, 32, 16, 0.01);
    let compiled = qnn.compile(&g).unwrap();
    let bytes = compiled.serialize().unwrap();
    let mut loaded = qnn.deserialize(&bytes).unwrap();
    assert_eq!(loaded.graph(), &g);
    let ins = random_inputs(&g, 11);
    let mut fresh = qnn.compile(&g).unwrap();
    assert_eq!(
        run(loaded.as_mut(), &ins)[0].bytes(),
        run(fresh.as_mut(), &ins)[0].bytes()
    );
    let other = emulator(Some(52)).unwrap();
    let e = other.deserialize(&bytes).unwrap_err();
    assert!(e.to_string().contains("SoC specific"), "{e}");
    assert!(qnn.deserialize(b"SAQNNCTX\x05").is_err());
}

#[test]
fn unsupported_graphs_name_the_node() {
    let Some(qnn) = emulator(None) else { return };
    let mut b = GraphBuilder::new("int32_pilot");
    let desc = |rows: usize| {
        TensorDesc::new(DType::I8, [1, 1, rows, 16]).with_quant(Quantization::per_tensor(0.1, 0))
    };
    let q = b.input("q", desc(8)).unwrap();
    let k = b.input("k", desc(16)).unwrap();
    let s = b
        .matmul("scores", q, k, false, true, OutType::plain(DType::I32))
        .unwrap();
    b.output(s).unwrap();
    let e = qnn.compile(&b.build().unwrap()).unwrap_err();
    assert!(
        matches!(&e, HalError::Unsupported { node, .. } if node == "scores"),
        "{e}"
    );
    // What HTP lacks is in its capabilities: an INT8 MatMul with a requantized INT8 output,
    // but no INT32 output.
    let caps = qnn.capabilities();
    assert!(caps.supports(shadowattn_hal::OpKind::MatMul, DType::I8, DType::I8));
    assert!(!caps.supports(shadowattn_hal::OpKind::MatMul, DType::I8, DType::I32));
    assert!(!caps.per_axis_quantization);
}

#[test]
fn float_elementwise_and_layout_ops_run() {
    let Some(qnn) = emulator(None) else { return };
    let mut b = GraphBuilder::new("misc");
    let x = b
        .input("x", TensorDesc::new(DType::F16, [1, 2, 3, 4]))
        .unwrap();
    let y = b
        .input("y", TensorDesc::new(DType::F16, [1, 2, 3, 4]))
        .unwrap();
    let s = b.add("sum", x, y, OutType::plain(DType::F16)).unwrap();
    let m = b.mul("prod", s, y, OutType::plain(DType::F16)).unwrap();
    let t = b.transpose("t", m, &[0, 1, 3, 2]).unwrap();
    let r = b.reshape("r", t, &[1, 24]).unwrap();
    b.output(r).unwrap();
    let g = b.build().unwrap();
    let mut compiled = qnn.compile(&g).unwrap();
    let ins = random_inputs(&g, 5);
    let got = run(compiled.as_mut(), &ins);
    let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
    let want = reference::graph::run(&g, &views).unwrap();
    for (x, y) in got[0]
        .as_slice::<half::f16>()
        .unwrap()
        .iter()
        .zip(want[0].as_slice::<half::f16>().unwrap())
    {
        assert!(
            (x.to_f32() - y.to_f32()).abs() <= 2e-3 + 2e-3 * y.to_f32().abs(),
            "{x} vs {y}"
        );
    }
}

#[test]
fn the_bucket_bank_round_trips_as_qnn_context_binaries() {
    use shadowattn_sparse_attn::bank::{BankSpec, GraphBank};
    use shadowattn_sparse_attn::calibration::BucketGrid;
    use shadowattn_sparse_attn::pilot::{PilotOutput, PilotUnit};
    let Some(qnn) = emulator(None) else { return };
    let grid = BucketGrid::new(0.02, 0.03, 1, 0.5).unwrap();
    let spec = BankSpec {
        q_len: 8,
        kv_len: 32,
        head_dim: 16,
        fused: vec![1, 2],
        output: PilotOutput::Int8 {
            acc_range: 20_000.0,
        },
        unit: PilotUnit::Head,
    };
    let bank = GraphBank::build(&qnn, &grid, spec.clone()).unwrap();
    assert_eq!(bank.len(), 18);
    let bytes = bank.serialize().unwrap();
    let mut loaded = GraphBank::load(&qnn, &grid, spec, &bytes).unwrap();
    assert_eq!(loaded.len(), 18);
    // A loaded graph runs and matches a freshly compiled one.
    let (key, graph) = loaded.graphs_mut().iter_mut().next().unwrap();
    let key = *key;
    let ins = random_inputs(graph.graph(), 21);
    let mut fresh = qnn.compile(graph.graph()).unwrap();
    assert_eq!(
        run(graph.as_mut(), &ins)[0].bytes(),
        run(fresh.as_mut(), &ins)[0].bytes(),
        "graph {key:?}"
    );
}

#[test]
fn a_minimum_architecture_can_be_chosen() {
    let Some(path) = emulator_path() else {
        missing_dependency("Qualcomm HTP emulator", "run `bash ci/qnn-emulator.sh`");
        return;
    };
    let qnn = QnnBackend::open(QnnOptions {
        library: Some(path),
        arch: Some(73),
        ..Default::default()
    })
    .unwrap();
    let g = pilot(1, 8, 32, 16, 0.01);
    let mut compiled = qnn.compile(&g).unwrap();
    let ins = random_inputs(&g, 4);
    run(compiled.as_mut(), &ins);
}

#[test]
fn graph_io_falls_back_to_client_buffers_on_the_emulator_and_says_why() {
    use shadowattn_qnn::{ClientReason, IoBuffers};
    let Some(path) = emulator_path() else {
        missing_dependency(
            "Qualcomm HTP emulator",
            "run `bash ci/qnn-emulator.sh` or set SHADOWATTN_QNN_LIB",
        );
        return;
    };
    // The x86-64 emulator has no rpcmem: name a library that is not there, so a libcdsprpc.so
    // elsewhere on the machine cannot change the outcome.
    let qnn = QnnBackend::open(QnnOptions {
        library: Some(path),
        rpcmem_library: Some("/nonexistent/libcdsprpc.so".into()),
        ..Default::default()
    })
    .expect("the emulator opens");
    let report = qnn.io_buffers();
    assert!(
        matches!(&report, IoBuffers::Client { reason: ClientReason::NoRpcMem(why) }
            if why.contains("/nonexistent/libcdsprpc.so (explicit path): ")),
        "{report:?}"
    );
    assert!(
        qnn.version()
            .contains("; graph I/O: client buffers (copied): libcdsprpc.so not found: "),
        "{}",
        qnn.version()
    );
    let g = pilot(1, 16, 64, 32, 0.02);
    let mut compiled = qnn.compile_qnn(&g).unwrap();
    assert_eq!(compiled.executable().io_buffers(), report);
    let ins = random_inputs(&g, 9);
    let got = run(&mut compiled, &ins);
    let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
    let want = reference::graph::run(&g, &views).unwrap();
    let worst = got[0]
        .as_slice::<i8>()
        .unwrap()
        .iter()
        .zip(want[0].as_slice::<i8>().unwrap())
        .map(|(x, y)| (i16::from(*x) - i16::from(*y)).abs())
        .max()
        .unwrap();
    assert!(worst <= 1, "max LSB difference {worst}");
}

#[test]
fn the_emulators_own_mem_register_refusal_is_a_named_fallback() {
    use shadowattn_qnn::{ClientReason, IoBuffers};
    let Some(path) = emulator_path() else {
        missing_dependency(
            "Qualcomm HTP emulator",
            "run `bash ci/qnn-emulator.sh` or set SHADOWATTN_QNN_LIB",
        );
        return;
    };
    // The fake QNN library exports a fake rpcmem: with it the backend gets as far as the real
    // library's memRegister, which the emulator does not support (QNN error 1000).
    let target = shadowattn_test_support::target_dir(env!("CARGO_TARGET_TMPDIR"));
    let qnn = QnnBackend::open(QnnOptions {
        library: Some(path),
        rpcmem_library: Some(shadowattn_test_support::qnn_fake(&target).unwrap()),
        ..Default::default()
    })
    .expect("the emulator opens");
    let report = qnn.io_buffers();
    assert!(
        matches!(
            &report,
            IoBuffers::Client {
                reason: ClientReason::QnnCall {
                    call: "memRegister",
                    code: 1000,
                    ..
                }
            }
        ),
        "{report:?}"
    );
    assert!(
        qnn.version()
            .contains("; graph I/O: client buffers (copied): memRegister returned 0x3e8 (1000): "),
        "{}",
        qnn.version()
    );
    let g = pilot(1, 8, 32, 16, 0.01);
    let mut compiled = qnn.compile_qnn(&g).unwrap();
    assert_eq!(compiled.executable().io_buffers(), report);
    let ins = random_inputs(&g, 12);
    let mut reference_backend = emulator(None).unwrap().compile(&g).unwrap();
    assert_eq!(
        run(&mut compiled, &ins)[0].bytes(),
        run(reference_backend.as_mut(), &ins)[0].bytes()
    );
}
