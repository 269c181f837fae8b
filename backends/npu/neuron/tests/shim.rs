//! The Neuron backend's real loading code, end to end through the simulator-backed shim.

use shadowattn_cpu::reference;
use shadowattn_hal::{
    DType, Graph, GraphBuilder, HalError, HostTensor, NpuBackend, OutType, QuantParams,
    Quantization, TensorDesc,
};
use shadowattn_neuron::sys::calls;
use shadowattn_neuron::sys::{OperandCode, ResultCode};
use shadowattn_neuron::{LibraryError, NeuronBackend, NeuronError, NeuronLibrary, NeuronOptions};
use std::path::Path;

mod support;
use support::shim_loader::Shim;

fn backend(shim: &Shim) -> NeuronBackend {
    NeuronBackend::open(NeuronOptions {
        library: Some(shim.path.clone()),
    })
    .unwrap()
}

fn inputs(graph: &Graph, seed: u64) -> Vec<HostTensor> {
    let mut s = seed | 1;
    graph
        .input_descs()
        .map(|d| {
            let mut t = HostTensor::zeros(d.clone()).unwrap();
            if d.dtype == DType::F32 {
                let v: Vec<f32> = (0..d.numel())
                    .map(|i| ((i as f32 + seed as f32) * 0.37).sin())
                    .collect();
                t.as_mut_slice::<f32>().unwrap().copy_from_slice(&v);
            } else {
                for b in t.bytes_mut() {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    *b = s as u8;
                }
            }
            t
        })
        .collect()
}

fn run_both(npu: &dyn NpuBackend, graph: &Graph) -> (Vec<HostTensor>, Vec<HostTensor>) {
    let ins = inputs(graph, 9);
    let mut compiled = npu.compile(graph).unwrap();
    let mut outs: Vec<HostTensor> = graph
        .output_descs()
        .map(|d| HostTensor::zeros(d.clone()).unwrap())
        .collect();
    let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
    {
        let mut out_views: Vec<_> = outs.iter_mut().map(|t| t.view_mut()).collect();
        let events = compiled.execute(&views, &mut out_views).unwrap();
        assert_eq!(events.len(), 1);
    }
    (outs, reference::graph::run(graph, &views).unwrap())
}

#[test]
fn the_int8_pilot_matches_the_cpu_reference() {
    let shim = Shim::new("pilot");
    let npu = backend(&shim);
    assert!(npu.version().contains("8.2.0"), "{}", npu.version());
    for heads in [1, 3] {
        let mut b = GraphBuilder::new("pilot");
        let d = |rows: usize, s: f32| {
            TensorDesc::new(DType::I8, [1, heads, rows, 16])
                .with_quant(Quantization::per_tensor(s, 0))
        };
        let q = b.input("q", d(8, 0.02)).unwrap();
        let k = b.input("k", d(24, 0.03)).unwrap();
        let s = b
            .matmul(
                "scores",
                q,
                k,
                false,
                true,
                OutType::quantized(DType::I8, QuantParams::symmetric(0.01)),
            )
            .unwrap();
        b.output(s).unwrap();
        let (got, want) = run_both(&npu, &b.build().unwrap());
        assert_eq!(
            got[0].bytes(),
            want[0].bytes(),
            "the shim runs the simulator: bit-exact"
        );
    }
}

#[test]
fn float_and_layout_ops_match() {
    let shim = Shim::new("float");
    let npu = backend(&shim);
    let mut b = GraphBuilder::new("g");
    let x = b
        .input("x", TensorDesc::new(DType::F32, [1, 2, 4, 8]))
        .unwrap();
    let y = b
        .input("y", TensorDesc::new(DType::F32, [1, 2, 8, 4]))
        .unwrap();
    let m = b
        .matmul("mm", x, y, false, false, OutType::plain(DType::F32))
        .unwrap();
    let s = b.softmax("sm", m, 3, 0.5).unwrap();
    let a = b.add("add", s, s, OutType::plain(DType::F32)).unwrap();
    let t = b.transpose("t", a, &[0, 1, 3, 2]).unwrap();
    let r = b.reshape("r", t, &[2, 16]).unwrap();
    let (v, i) = b.topk("top", r, 3).unwrap();
    for o in [r, v, i] {
        b.output(o).unwrap();
    }
    let (got, want) = run_both(&npu, &b.build().unwrap());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.bytes(), w.bytes());
    }
}

#[test]
fn unmapped_ops_are_unsupported_errors_naming_the_node() {
    let shim = Shim::new("unsupported");
    let npu = backend(&shim);
    let mut b = GraphBuilder::new("g");
    let x = b
        .input(
            "x",
            TensorDesc::new(DType::I8, [4]).with_quant(Quantization::per_tensor(0.1, 0)),
        )
        .unwrap();
    let r = b
        .requantize(
            "rq",
            x,
            OutType::quantized(DType::I8, QuantParams::symmetric(0.2)),
        )
        .unwrap();
    b.output(r).unwrap();
    let e = npu.compile(&b.build().unwrap()).unwrap_err();
    assert!(
        matches!(&e, HalError::Unsupported { node, .. } if node == "rq"),
        "{e}"
    );
}

#[test]
fn injected_failures_become_typed_errors() {
    let shim = Shim::new("inject");
    let npu = backend(&shim);
    let mut b = GraphBuilder::new("g");
    let x = b.input("x", TensorDesc::new(DType::F32, [2, 3])).unwrap();
    let s = b.softmax("sm", x, 1, 1.0).unwrap();
    b.output(s).unwrap();
    let g = b.build().unwrap();
    for (function, code, name) in [
        ("NeuronModel_create", 1, "NEURON_OUT_OF_MEMORY"),
        ("NeuronModel_finish", 4, "NEURON_BAD_DATA"),
        ("NeuronCompilation_finish", 5, "NEURON_OP_FAILED"),
    ] {
        shim.fail(Some(function), code);
        let e = npu.compile(&g).unwrap_err();
        assert!(
            matches!(&e, HalError::Vendor { call, code: c, message, .. } if call == function && *c == i64::from(code) && message == name),
            "{e}"
        );
    }
    shim.fail(None, 0);
    let mut compiled = npu.compile(&g).unwrap();
    let ins = inputs(&g, 1);
    let mut out = HostTensor::zeros(g.output_descs().next().unwrap().clone()).unwrap();
    shim.fail(Some("NeuronExecution_compute"), 5);
    let e = compiled
        .execute(&[ins[0].view()], &mut [out.view_mut()])
        .unwrap_err();
    assert!(
        matches!(&e, HalError::Vendor { call, code: 5, .. } if call == "NeuronExecution_compute"),
        "{e}"
    );
    shim.fail(None, 0);
    compiled
        .execute(&[ins[0].view()], &mut [out.view_mut()])
        .unwrap();
}

#[test]
fn the_shim_validates_like_a_driver() {
    let shim = Shim::new("validate");
    let lib = NeuronLibrary::open(shim.path.to_str().unwrap()).unwrap();
    let code_of = |r: Result<(), NeuronError>| match r {
        Err(NeuronError::Call { code, .. }) => ResultCode(code),
        Ok(()) => ResultCode::NO_ERROR,
        Err(e) => panic!("{e}"),
    };
    let model = calls::model_create(&lib).unwrap();
    assert_eq!(
        code_of(calls::add_operand(
            &lib,
            model,
            OperandCode(999),
            &[2],
            0.0,
            0
        )),
        ResultCode::BAD_DATA
    );
    assert_eq!(
        code_of(calls::add_operand(
            &lib,
            model,
            OperandCode::TENSOR_FLOAT32,
            &[2, 2],
            0.0,
            0
        )),
        ResultCode::NO_ERROR
    );
    assert_eq!(
        code_of(calls::set_operand_value(&lib, model, 0, &[0; 3])),
        ResultCode::BAD_DATA,
        "wrong size"
    );
    assert_eq!(
        code_of(calls::add_operand(
            &lib,
            model,
            OperandCode::TENSOR_FLOAT32,
            &[2, 2],
            0.0,
            0
        )),
        ResultCode::NO_ERROR
    );
    assert_eq!(
        code_of(calls::add_operand(
            &lib,
            model,
            OperandCode::FLOAT32,
            &[],
            0.0,
            0
        )),
        ResultCode::NO_ERROR
    );
    assert_eq!(
        code_of(calls::set_operand_value(
            &lib,
            model,
            2,
            &1.0f32.to_ne_bytes()
        )),
        ResultCode::NO_ERROR
    );
    // Compiling an unfinished model is out of order.
    let e = calls::compilation_create(&lib, model).unwrap_err();
    assert!(matches!(e, NeuronError::Call { code: 7, .. }), "{e}");
    assert_eq!(
        code_of(calls::add_operation(
            &lib,
            model,
            shadowattn_neuron::sys::OperationCode::SOFTMAX,
            &[0, 2],
            &[9]
        )),
        ResultCode::BAD_DATA,
        "index out of range"
    );
    assert_eq!(
        code_of(calls::add_operation(
            &lib,
            model,
            shadowattn_neuron::sys::OperationCode::SOFTMAX,
            &[0, 2],
            &[1]
        )),
        ResultCode::NO_ERROR
    );
    assert_eq!(
        code_of(calls::identify_io(&lib, model, &[0], &[1])),
        ResultCode::NO_ERROR
    );
    assert_eq!(
        code_of(calls::model_finish(&lib, model)),
        ResultCode::NO_ERROR
    );
    assert_eq!(
        code_of(calls::model_finish(&lib, model)),
        ResultCode::BAD_STATE,
        "finished twice"
    );
    let comp = calls::compilation_create(&lib, model).unwrap();
    let e = calls::execution_create(&lib, comp).unwrap_err();
    assert!(
        matches!(e, NeuronError::Call { code: 7, .. }),
        "execution before compilation finish: {e}"
    );
    calls::compilation_finish(&lib, comp).unwrap();
    let exec = calls::execution_create(&lib, comp).unwrap();
    assert_eq!(
        code_of(calls::set_input(&lib, exec, 0, &[0u8; 15])),
        ResultCode::BAD_DATA,
        "wrong buffer size"
    );
    assert_eq!(
        code_of(calls::compute(&lib, exec)),
        ResultCode::BAD_STATE,
        "inputs not set"
    );
    let input: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    let mut output = vec![0u8; 16];
    calls::set_input(&lib, exec, 0, &input).unwrap();
    calls::set_output(&lib, exec, 0, &mut output).unwrap();
    calls::compute(&lib, exec).unwrap();
    let y: Vec<f32> = output
        .chunks_exact(4)
        .map(|c| f32::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert!((y[0] + y[1] - 1.0).abs() < 1e-6 && y[1] > y[0], "{y:?}");
    calls::execution_free(&lib, exec);
    calls::compilation_free(&lib, comp);
    calls::model_free(&lib, model);
}

#[test]
fn loader_failures_list_every_attempt_and_name_missing_symbols() {
    let e = NeuronLibrary::find_in(
        Some(Path::new("/nonexistent/libneuron_adapter.so")),
        Some("/nope.so".into()),
    )
    .unwrap_err();
    let NeuronError::Library(LibraryError::Load { attempts, .. }) = &e else {
        panic!("{e}")
    };
    let origins: Vec<&str> = attempts.iter().map(|a| a.origin.as_str()).collect();
    assert_eq!(
        origins,
        [
            "explicit path",
            "$SHADOWATTN_NEURON_LIB",
            "candidate name",
            "candidate name",
            "candidate name"
        ]
    );
    assert_eq!(attempts[2].path, "libneuronusdk_adapter.mtk.so");
    let e = NeuronLibrary::open("libm.so.6").unwrap_err();
    assert!(
        matches!(&e, NeuronError::Library(LibraryError::MissingSymbol { symbol, .. }) if symbol == "Neuron_getVersion"),
        "{e}"
    );
}

#[test]
fn the_int32_output_pilot_is_unsupported_and_the_shim_names_itself() {
    let shim = Shim::new("int32-pilot");
    let npu = backend(&shim);
    let mut b = GraphBuilder::new("pilot");
    let q = |scale: f32| {
        TensorDesc::new(DType::I8, [1, 1, 4, 8]).with_quant(Quantization::per_tensor(scale, 0))
    };
    let x = b.input("q", q(0.1)).unwrap();
    let k = b.input("k", q(0.1)).unwrap();
    let s = b
        .matmul("scores", x, k, false, true, OutType::plain(DType::I32))
        .unwrap();
    b.output(s).unwrap();
    let graph = b.build().unwrap();
    // Declared unsupported (an NNAPI-rules driver has no INT32 BATCH_MATMUL output)...
    let e = npu.check_support(&graph).unwrap_err();
    assert!(
        matches!(&e, HalError::Unsupported { node, .. } if node == "scores"),
        "{e}"
    );
    // ...compile refuses it with the same typed error (the shim itself returns BAD_DATA for it:
    // its unit tests).
    let e = npu.compile(&graph).unwrap_err();
    assert!(matches!(&e, HalError::Unsupported { .. }), "{e}");
    assert!(
        npu.version().contains("shadowattn-neuron-shim") && npu.version().contains("not MediaTek"),
        "{}",
        npu.version()
    );
}
