//! Fuzzing the graph builder and the golden interpreter with random op sequences, shapes, dtypes
//! and attributes (stable-toolchain fuzzing with proptest). Building must give a graph or a
//! typed error; a built graph must compile, serialize, deserialize and run (or return a typed
//! error) without panicking. A longer run: `PROPTEST_CASES=100000 cargo test -p shadowattn-cpu --test fuzz_graphs`.

use proptest::prelude::*;
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{
    DType, GraphBuilder, HostTensor, NpuBackend, Op, OutType, QuantParams, Quantization,
    TensorDesc, ValueId,
};

fn dtype(i: u8) -> DType {
    DType::ALL[i as usize % DType::ALL.len()]
}

fn out_type(i: u8, scale: f32, zp: i32) -> OutType {
    let d = dtype(i);
    if d.is_narrow_integer() && i.is_multiple_of(2) {
        OutType::quantized(d, QuantParams::new(scale, zp))
    } else {
        OutType::plain(d)
    }
}

#[derive(Debug, Clone)]
struct Step {
    op: u8,
    a: u8,
    b: u8,
    attr: u8,
    out: u8,
    scale: f32,
    zp: i32,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            prop_oneof![Just(0.0f32), Just(f32::NAN), 1e-4f32..10.0],
            -300i32..300,
        )
            .prop_map(|(op, a, b, attr, out, scale, zp)| Step {
                op,
                a,
                b,
                attr,
                out,
                scale,
                zp,
            }),
        1..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(shadowattn_test_support::proptest_cases(1024)))]
    #[test]
    fn random_graphs_never_panic(
        shapes in proptest::collection::vec(proptest::collection::vec(0usize..5, 0..5), 1..4),
        in_types in proptest::collection::vec((any::<u8>(), prop_oneof![Just(0.0f32), 1e-3f32..2.0], -5i32..5), 1..4),
        program in steps(),
        seed in any::<u64>(),
    ) {
        let mut b = GraphBuilder::new("fuzz");
        let mut values: Vec<ValueId> = Vec::new();
        for (i, (shape, (t, scale, zp))) in shapes.iter().zip(&in_types).enumerate() {
            let d = dtype(*t);
            let mut desc = TensorDesc::new(d, shape.clone());
            if d.is_integer() && t % 2 == 0 {
                desc = desc.with_quant(Quantization::per_tensor(*scale, if d == DType::I32 { 0 } else { *zp }));
            }
            if let Ok(v) = b.input(&format!("in{i}"), desc) {
                values.push(v);
            }
        }
        if values.is_empty() {
            return Ok(());
        }
        for (n, s) in program.iter().enumerate() {
            let x = values[s.a as usize % values.len()];
            let y = values[s.b as usize % values.len()];
            let name = format!("n{n}");
            let rank = b.desc(x).map(|d| d.rank()).unwrap_or(1);
            let op = match s.op % 11 {
                0 => Op::MatMul { transpose_a: s.attr & 1 == 1, transpose_b: s.attr & 2 == 2 },
                1 => Op::Requantize,
                2 => Op::Quantize,
                3 => Op::Dequantize { dtype: dtype(s.out) },
                4 => Op::Softmax { axis: s.attr as usize % (rank + 1), beta: if s.attr > 200 { f32::NAN } else { 1.0 + s.attr as f32 / 50.0 } },
                5 => Op::TopK { k: s.attr as usize % 6 },
                6 => Op::Mul,
                7 => Op::Add,
                8 => Op::Reshape { shape: vec![s.attr as usize % 7, (s.out as usize % 3) + 1] },
                9 => Op::Transpose { perm: (0..rank).rev().chain(if s.attr > 250 { Some(0) } else { None }).collect() },
                _ => Op::Cast { dtype: dtype(s.out) },
            };
            let inputs = if op.arity() == 2 { vec![x, y] } else { vec![x] };
            let out = op.needs_output_type().then(|| out_type(s.out, s.scale, s.zp));
            if let Ok(outs) = b.add_node(&name, op, &inputs, out) {
                values.extend(outs);
            }
        }
        let last = *values.last().unwrap();
        let _ = b.output(last);
        let Ok(graph) = b.build() else { return Ok(()) };
        let cpu = CpuBackend::new();
        let mut compiled = cpu.compile(&graph).expect("a built graph compiles on the reference backend");
        let bytes = compiled.serialize().unwrap();
        let loaded = cpu.deserialize(&bytes).unwrap();
        prop_assert_eq!(loaded.graph(), &graph);
        let mut s = seed | 1;
        let inputs: Vec<HostTensor> = graph
            .input_descs()
            .map(|d| {
                let mut t = HostTensor::zeros(d.clone()).unwrap();
                for byte in t.bytes_mut() {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    *byte = s as u8;
                }
                t
            })
            .collect();
        let mut outputs: Vec<HostTensor> = graph.output_descs().map(|d| HostTensor::zeros(d.clone()).unwrap()).collect();
        let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
        let mut out_views: Vec<_> = outputs.iter_mut().map(|t| t.view_mut()).collect();
        // Random bytes may hold NaN floats: a typed error is fine, a panic is not.
        let _ = compiled.execute(&views, &mut out_views);
    }
}

/// Regression (found by `PROPTEST_CASES=1000000 … --test fuzz_files`, a mutated bank file): a
/// serialized graph whose node names a tensor that does not exist was indexed by the capability
/// check before validation and panicked; it is a typed error now.
#[test]
fn a_node_naming_a_missing_tensor_is_a_typed_error() {
    use shadowattn_hal::{DType, GraphBuilder, NpuBackend, TensorDesc};
    let mut b = GraphBuilder::new("g");
    let x = b.input("x", TensorDesc::new(DType::F32, [2, 4])).unwrap();
    let y = b.softmax("probs", x, 1, 1.0).unwrap();
    b.output(y).unwrap();
    let cpu = shadowattn_cpu::CpuBackend::new();
    let bytes = cpu
        .compile(&b.build().unwrap())
        .unwrap()
        .serialize()
        .unwrap();
    // The header line, then the graph: magic, the structure's length, the structure (JSON).
    let line = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    let graph = &bytes[line..];
    let len = u64::from_le_bytes(graph[8..16].try_into().unwrap()) as usize;
    let mut json: serde_json::Value = serde_json::from_slice(&graph[16..16 + len]).unwrap();
    json["nodes"][0]["inputs"][0] = serde_json::json!(99);
    let json = serde_json::to_vec(&json).unwrap();
    let tampered = [
        &bytes[..line],
        &graph[..8],
        &(json.len() as u64).to_le_bytes(),
        &json,
        &graph[16 + len..],
    ]
    .concat();
    let err = cpu.deserialize(&tampered).unwrap_err();
    assert!(err.to_string().contains("refers to tensor 99"), "{err}");
}
