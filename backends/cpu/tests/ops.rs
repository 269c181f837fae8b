//! Every IR op on the golden backend against hand-computed values, plus property tests.

use half::f16;
use proptest::prelude::*;
use shadowattn_cpu::{reference, CpuBackend};
use shadowattn_hal::{
    DType, Element, GraphBuilder, HalError, HostTensor, NpuBackend, OutType, QuantParams,
    Quantization, TensorDesc, ValueId,
};

/// Builds a graph with `build`, compiles it on the CPU backend, runs it and returns the outputs.
fn run(
    inputs: Vec<HostTensor>,
    build: impl FnOnce(&mut GraphBuilder, &[ValueId]) -> Vec<ValueId>,
) -> Result<Vec<HostTensor>, HalError> {
    let mut b = GraphBuilder::new("test");
    let ids: Vec<ValueId> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| b.input(&format!("in{i}"), t.desc().clone()))
        .collect::<Result<_, _>>()?;
    for o in build(&mut b, &ids) {
        b.output(o)?;
    }
    let graph = b.build()?;
    let mut compiled = CpuBackend::new().compile(&graph)?;
    let mut outs: Vec<HostTensor> = graph
        .output_descs()
        .map(|d| HostTensor::zeros(d.clone()))
        .collect::<Result<_, _>>()?;
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    let mut out_views: Vec<_> = outs.iter_mut().map(|t| t.view_mut()).collect();
    let events = compiled.execute(&views, &mut out_views)?;
    assert_eq!(events.len(), 1);
    Ok(outs)
}

fn t<T: Element>(shape: &[usize], data: &[T]) -> HostTensor {
    HostTensor::from_slice(TensorDesc::new(T::DTYPE, shape.to_vec()), data).unwrap()
}

fn tq<T: Element>(shape: &[usize], data: &[T], scale: f32, zp: i32) -> HostTensor {
    let desc =
        TensorDesc::new(T::DTYPE, shape.to_vec()).with_quant(Quantization::per_tensor(scale, zp));
    HostTensor::from_slice(desc, data).unwrap()
}

fn vals<T: Element>(t: &HostTensor) -> Vec<T> {
    t.as_slice::<T>().unwrap().to_vec()
}

#[test]
fn matmul_f32_with_transposes() {
    let a = t(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = t(&[3, 2], &[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let out = run(vec![a.clone(), b.clone()], |g, i| {
        vec![g
            .matmul("mm", i[0], i[1], false, false, OutType::plain(DType::F32))
            .unwrap()]
    })
    .unwrap();
    assert_eq!(vals::<f32>(&out[0]), vec![4.0, 5.0, 10.0, 11.0]);
    // Aᵀ with A stored [3, 2]; B transposed stored [2, 3].
    let at = t(&[3, 2], &[1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0]);
    let bt = t(&[2, 3], &[1.0f32, 0.0, 1.0, 0.0, 1.0, 1.0]);
    let out = run(vec![at, bt], |g, i| {
        vec![g
            .matmul("mm", i[0], i[1], true, true, OutType::plain(DType::F32))
            .unwrap()]
    })
    .unwrap();
    assert_eq!(vals::<f32>(&out[0]), vec![4.0, 5.0, 10.0, 11.0]);
}

#[test]
fn matmul_batched_f16_output() {
    let a = t(
        &[2, 1, 2],
        &[
            f16::from_f32(1.0),
            f16::from_f32(2.0),
            f16::from_f32(3.0),
            f16::from_f32(4.0),
        ],
    );
    let b = t(
        &[2, 2, 1],
        &[
            f16::from_f32(1.0),
            f16::from_f32(1.0),
            f16::from_f32(2.0),
            f16::from_f32(0.5),
        ],
    );
    let out = run(vec![a, b], |g, i| {
        vec![g
            .matmul("mm", i[0], i[1], false, false, OutType::plain(DType::F16))
            .unwrap()]
    })
    .unwrap();
    let got: Vec<f32> = vals::<f16>(&out[0]).iter().map(|v| v.to_f32()).collect();
    assert_eq!(got, vec![3.0, 8.0]);
}

#[test]
fn matmul_int8_accumulates_and_requantizes() {
    // A = [[1, -2], [3, 4]] (zp 0, scale 0.5); B = [[5, 6], [7, 8]] stored with zp 1, scale 0.25.
    let a = tq(&[2, 2], &[1i8, -2, 3, 4], 0.5, 0);
    let b = tq(&[2, 2], &[6i8, 7, 8, 9], 0.25, 1);
    let out = run(vec![a.clone(), b.clone()], |g, i| {
        let acc = g
            .matmul("acc", i[0], i[1], false, false, OutType::plain(DType::I32))
            .unwrap();
        let q = g
            .matmul(
                "q",
                i[0],
                i[1],
                false,
                false,
                OutType::quantized(DType::I8, QuantParams::new(0.5, 3)),
            )
            .unwrap();
        vec![acc, q]
    })
    .unwrap();
    // [[1·5 − 2·7, 1·6 − 2·8], [3·5 + 4·7, 3·6 + 4·8]] = [[−9, −10], [43, 50]]
    assert_eq!(vals::<i32>(&out[0]), vec![-9, -10, 43, 50]);
    assert_eq!(out[0].desc().quant, Quantization::per_tensor(0.125, 0));
    // real = acc · 0.125 → / 0.5 = acc / 4 → round half away → + 3:
    // −2.25 → −2 → 1; −2.5 → −3 → 0; 10.75 → 11 → 14; 12.5 → 13 → 16
    assert_eq!(vals::<i8>(&out[1]), vec![1, 0, 14, 16]);
}

#[test]
fn matmul_u8_inputs_saturate_on_output() {
    let a = tq(&[1, 2], &[255u8, 255], 1.0, 0);
    let b = tq(&[2, 1], &[255u8, 255], 1.0, 0);
    let out = run(vec![a, b], |g, i| {
        vec![g
            .matmul(
                "mm",
                i[0],
                i[1],
                false,
                false,
                OutType::quantized(DType::U8, QuantParams::new(1.0, 0)),
            )
            .unwrap()]
    })
    .unwrap();
    assert_eq!(vals::<u8>(&out[0]), vec![255]);
}

#[test]
fn requantize_quantize_dequantize() {
    let x = tq(&[4], &[10i16, -10, 3, 1000], 0.5, 0);
    let out = run(vec![x], |g, i| {
        let r = g
            .requantize(
                "rq",
                i[0],
                OutType::quantized(DType::U8, QuantParams::new(2.0, 128)),
            )
            .unwrap();
        let d = g.dequantize("dq", r, DType::F32).unwrap();
        vec![r, d]
    })
    .unwrap();
    // real 5, −5, 1.5, 500 → /2 = 2.5, −2.5, 0.75, 250 → 3, −3, 1, 250 → +128 = 131, 125, 129, 378 → sat 255
    assert_eq!(vals::<u8>(&out[0]), vec![131, 125, 129, 255]);
    assert_eq!(vals::<f32>(&out[1]), vec![6.0, -6.0, 2.0, 254.0]);

    let f = t(&[2, 2], &[0.26f32, -0.26, 1.0, -40.0]);
    let per_axis = Quantization::PerAxis {
        axis: 1,
        scales: vec![0.1, 0.2],
        zero_points: vec![0, 5],
    };
    let out = run(vec![f], |g, i| {
        let q = g
            .quantize(
                "q",
                i[0],
                OutType {
                    dtype: DType::I8,
                    quant: per_axis.clone(),
                },
            )
            .unwrap();
        vec![q, g.dequantize("dq", q, DType::F16).unwrap()]
    })
    .unwrap();
    // col 0: 0.26/0.1 = 2.6 → 3; 1.0/0.1 = 10. col 1: −0.26/0.2 = −1.3 → −1 + 5 = 4; −40/0.2 = −200 + 5 → −128
    assert_eq!(vals::<i8>(&out[0]), vec![3, 4, 10, -128]);
    let deq: Vec<f32> = vals::<f16>(&out[1]).iter().map(|v| v.to_f32()).collect();
    assert_eq!(
        deq,
        vec![
            f16::from_f32(0.3).to_f32(),
            f16::from_f32(-0.2).to_f32(),
            1.0,
            f16::from_f32(-26.6).to_f32()
        ]
    );
}

#[test]
fn quantize_nan_is_an_error_naming_the_node() {
    let f = t(&[2], &[1.0f32, f32::NAN]);
    let e = run(vec![f], |g, i| {
        vec![g
            .quantize(
                "qz",
                i[0],
                OutType::quantized(DType::I8, QuantParams::symmetric(0.1)),
            )
            .unwrap()]
    })
    .unwrap_err();
    assert!(
        matches!(&e, HalError::InvalidValue { what, .. } if what == "qz"),
        "{e}"
    );
}

#[test]
fn softmax_along_each_axis() {
    let x = t(&[2, 2], &[0.0f32, 0.0, 1.0, 3.0]);
    let out = run(vec![x], |g, i| {
        vec![
            g.softmax("s1", i[0], 1, 1.0).unwrap(),
            g.softmax("s0", i[0], 0, 2.0).unwrap(),
        ]
    })
    .unwrap();
    let s1 = vals::<f32>(&out[0]);
    let e2 = (2.0f64).exp();
    assert_eq!(s1[..2], [0.5, 0.5]);
    approx::assert_relative_eq!(s1[2], (1.0 / (1.0 + e2)) as f32);
    approx::assert_relative_eq!(s1[3], (e2 / (1.0 + e2)) as f32);
    let s0 = vals::<f32>(&out[1]);
    // column 0: beta·[0, 1] = [0, 2]; column 1: [0, 6]
    approx::assert_relative_eq!(s0[0], (1.0 / (1.0 + e2)) as f32);
    approx::assert_relative_eq!(s0[3], ((6.0f64).exp() / (1.0 + (6.0f64).exp())) as f32);
}

#[test]
fn topk_breaks_ties_by_lower_index() {
    let x = t(&[2, 4], &[1.0f32, 3.0, 3.0, 2.0, -1.0, -1.0, -1.0, -1.0]);
    let out = run(vec![x], |g, i| {
        let (v, ix) = g.topk("tk", i[0], 2).unwrap();
        vec![v, ix]
    })
    .unwrap();
    assert_eq!(vals::<f32>(&out[0]), vec![3.0, 3.0, -1.0, -1.0]);
    assert_eq!(vals::<i32>(&out[1]), vec![1, 2, 0, 1]);
    let q = tq(&[1, 3], &[5i8, -7, 9], 0.1, 2);
    let out = run(vec![q], |g, i| {
        let (v, ix) = g.topk("tk", i[0], 1).unwrap();
        vec![v, ix]
    })
    .unwrap();
    assert_eq!(vals::<i8>(&out[0]), vec![9]);
    assert_eq!(out[0].desc().quant, Quantization::per_tensor(0.1, 2));
    assert_eq!(vals::<i32>(&out[1]), vec![2]);
    let e = run(vec![t(&[2], &[f32::NAN, 1.0])], |g, i| {
        vec![g.topk("tk", i[0], 1).unwrap().0]
    })
    .unwrap_err();
    assert!(matches!(e, HalError::InvalidValue { .. }), "{e}");
}

#[test]
fn mul_add_broadcast_float_quantized_and_i32() {
    let a = t(&[2, 2], &[1.0f32, 2.0, 3.0, 4.0]);
    let b = t(&[2], &[10.0f32, 100.0]);
    let out = run(vec![a, b], |g, i| {
        vec![
            g.add("add", i[0], i[1], OutType::plain(DType::F32))
                .unwrap(),
            g.mul("mul", i[0], i[1], OutType::plain(DType::F32))
                .unwrap(),
        ]
    })
    .unwrap();
    assert_eq!(vals::<f32>(&out[0]), vec![11.0, 102.0, 13.0, 104.0]);
    assert_eq!(vals::<f32>(&out[1]), vec![10.0, 200.0, 30.0, 400.0]);

    let qa = tq(&[3], &[10i8, 20, -30], 0.1, 0);
    let qb = tq(&[1], &[4u8], 0.5, 2);
    let out = run(vec![qa, qb], |g, i| {
        let o = OutType::quantized(DType::I8, QuantParams::new(0.25, 0));
        vec![
            g.add("add", i[0], i[1], o.clone()).unwrap(),
            g.mul("mul", i[0], i[1], o).unwrap(),
        ]
    })
    .unwrap();
    // b real = (4 − 2)·0.5 = 1. add: 2, 3, −2 → /0.25 = 8, 12, −8. mul: 1, 2, −3 → 4, 8, −12
    assert_eq!(vals::<i8>(&out[0]), vec![8, 12, -8]);
    assert_eq!(vals::<i8>(&out[1]), vec![4, 8, -12]);

    let ia = t(&[2], &[i32::MAX, 5]);
    let ib = t(&[2], &[1i32, -7]);
    let out = run(vec![ia, ib], |g, i| {
        vec![g
            .add("add", i[0], i[1], OutType::plain(DType::I32))
            .unwrap()]
    })
    .unwrap();
    assert_eq!(vals::<i32>(&out[0]), vec![i32::MAX, -2]);
}

#[test]
fn reshape_transpose_cast() {
    let x = t(&[2, 3], &[0i16, 1, 2, 3, 4, 5]);
    let out = run(vec![x], |g, i| {
        let r = g.reshape("r", i[0], &[3, 2]).unwrap();
        let p = g.transpose("p", i[0], &[1, 0]).unwrap();
        let c = g.cast("c", i[0], DType::F16).unwrap();
        vec![r, p, c]
    })
    .unwrap();
    assert_eq!(out[0].desc().shape, vec![3, 2]);
    assert_eq!(vals::<i16>(&out[0]), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(vals::<i16>(&out[1]), vec![0, 3, 1, 4, 2, 5]);
    assert_eq!(vals::<f16>(&out[2])[5], f16::from_f32(5.0));

    let y = t(&[2, 1, 3], &[0.5f32, -0.5, 1.5, 300.0, -300.0, 2.49]);
    let out = run(vec![y], |g, i| {
        let p = g.transpose("p", i[0], &[2, 0, 1]).unwrap();
        vec![
            p,
            g.cast("c", i[0], DType::I8).unwrap(),
            g.cast("u", i[0], DType::U8).unwrap(),
        ]
    })
    .unwrap();
    assert_eq!(out[0].desc().shape, vec![3, 2, 1]);
    assert_eq!(
        vals::<f32>(&out[0]),
        vec![0.5, 300.0, -0.5, -300.0, 1.5, 2.49]
    );
    assert_eq!(vals::<i8>(&out[1]), vec![1, -1, 2, 127, -128, 2]);
    assert_eq!(vals::<u8>(&out[2]), vec![1, 0, 2, 255, 0, 2]);
}

#[test]
fn execute_rejects_wrong_buffers() {
    let mut b = GraphBuilder::new("g");
    let x = b.input("x", TensorDesc::new(DType::F32, [2])).unwrap();
    let y = b.softmax("s", x, 0, 1.0).unwrap();
    b.output(y).unwrap();
    let g = b.build().unwrap();
    let mut c = CpuBackend::new().compile(&g).unwrap();
    let wrong = t(&[3], &[1.0f32, 2.0, 3.0]);
    let mut out = HostTensor::zeros(TensorDesc::new(DType::F32, [2])).unwrap();
    let e = c
        .execute(&[wrong.view()], &mut [out.view_mut()])
        .unwrap_err();
    assert!(
        matches!(&e, HalError::BufferMismatch { tensor, .. } if tensor == "x"),
        "{e}"
    );
    let right = t(&[2], &[1.0f32, 2.0]);
    let e = c
        .execute(&[right.view(), right.view()], &mut [out.view_mut()])
        .unwrap_err();
    assert!(e.to_string().contains("takes 1 inputs but 2"), "{e}");
    let mut wrong_out = HostTensor::zeros(TensorDesc::new(DType::F16, [2])).unwrap();
    assert!(c
        .execute(&[right.view()], &mut [wrong_out.view_mut()])
        .is_err());
    c.execute(&[right.view()], &mut [out.view_mut()]).unwrap();
}

#[test]
fn compiled_graphs_round_trip_through_serialization() {
    let mut b = GraphBuilder::new("pilot");
    let q = b
        .input(
            "q",
            TensorDesc::new(DType::I8, [1, 4, 8]).with_quant(Quantization::per_tensor(0.1, 0)),
        )
        .unwrap();
    let k = b
        .input(
            "k",
            TensorDesc::new(DType::I8, [1, 6, 8]).with_quant(Quantization::per_tensor(0.2, 0)),
        )
        .unwrap();
    let s = b
        .matmul("qk", q, k, false, true, OutType::plain(DType::I32))
        .unwrap();
    b.output(s).unwrap();
    let graph = b.build().unwrap();
    let backend = CpuBackend::new();
    let bytes = backend.compile(&graph).unwrap().serialize().unwrap();
    let loaded = backend.deserialize(&bytes).unwrap();
    assert_eq!(loaded.graph(), &graph);
    assert!(matches!(
        backend.deserialize(b"{}"),
        Err(HalError::Deserialize { .. })
    ));
    // The header line names the format version; the graph follows in its binary form.
    let replaced = |bytes: &[u8], from: &str, to: &str| -> Vec<u8> {
        let at = bytes
            .windows(from.len())
            .position(|w| w == from.as_bytes())
            .expect("present");
        [&bytes[..at], to.as_bytes(), &bytes[at + from.len()..]].concat()
    };
    let e = backend
        .deserialize(&replaced(&bytes, "\"version\":2", "\"version\":9"))
        .unwrap_err();
    assert!(e.to_string().contains("version 9"), "{e}");
    // A tampered shape is caught by re-validation.
    assert!(backend
        .deserialize(&replaced(&bytes, "[1,4,8]", "[1,4,9]"))
        .is_err());
}

fn int8_matmul_case() -> impl Strategy<Value = (usize, usize, usize, Vec<i8>, Vec<i8>, i32, i32)> {
    (1usize..6, 1usize..40, 1usize..6).prop_flat_map(|(m, k, n)| {
        (
            Just(m),
            Just(k),
            Just(n),
            proptest::collection::vec(any::<i8>(), m * k),
            proptest::collection::vec(any::<i8>(), k * n),
            -20i32..20,
            -20i32..20,
        )
    })
}

proptest! {
    #[test]
    fn int8_matmul_equals_an_i64_reference((m, k, n, a, b, za, zb) in int8_matmul_case()) {
        let ta = tq(&[m, k], &a, 0.5, za);
        let tb = tq(&[n, k], &b, 0.25, zb);
        let out = run(vec![ta, tb], |g, i| {
            vec![g.matmul("mm", i[0], i[1], false, true, OutType::plain(DType::I32)).unwrap()]
        }).unwrap();
        let got = vals::<i32>(&out[0]);
        for i in 0..m {
            for j in 0..n {
                let want: i64 = (0..k)
                    .map(|p| (i64::from(a[i * k + p]) - i64::from(za)) * (i64::from(b[j * k + p]) - i64::from(zb)))
                    .sum();
                prop_assert_eq!(i64::from(got[i * n + j]), want);
            }
        }
    }

    #[test]
    fn matmul_to_i8_equals_matmul_then_requantize((m, k, n, a, b, za, zb) in int8_matmul_case(), out_scale in 0.01f32..50.0) {
        let ta = tq(&[m, k], &a, 0.07, za);
        let tb = tq(&[k, n], &b, 0.3, zb);
        let o = OutType::quantized(DType::I8, QuantParams::new(out_scale, -3));
        let out = run(vec![ta, tb], |g, i| {
            let direct = g.matmul("direct", i[0], i[1], false, false, o.clone()).unwrap();
            let acc = g.matmul("acc", i[0], i[1], false, false, OutType::plain(DType::I32)).unwrap();
            vec![direct, g.requantize("rq", acc, o.clone()).unwrap()]
        }).unwrap();
        prop_assert_eq!(vals::<i8>(&out[0]), vals::<i8>(&out[1]));
    }

    #[test]
    fn dequantize_of_quantize_is_within_half_a_step(
        xs in proptest::collection::vec(-100.0f32..100.0, 1..64),
        scale in 0.01f32..2.0,
        zp in -10i32..10,
    ) {
        // Keep every value inside the representable range so saturation does not apply.
        let lo = scale * (-128 - zp) as f32;
        let hi = scale * (127 - zp) as f32;
        let xs: Vec<f32> = xs.into_iter().map(|x| x.clamp(lo, hi)).collect();
        let out = run(vec![t(&[xs.len()], &xs)], |g, i| {
            let q = g.quantize("q", i[0], OutType::quantized(DType::I8, QuantParams::new(scale, zp))).unwrap();
            vec![g.dequantize("dq", q, DType::F32).unwrap()]
        }).unwrap();
        for (x, y) in xs.iter().zip(vals::<f32>(&out[0])) {
            prop_assert!(f64::from((x - y).abs()) <= f64::from(scale) / 2.0 * (1.0 + 1e-6), "{} vs {}", x, y);
        }
    }

    #[test]
    fn topk_values_are_the_sorted_prefix(xs in proptest::collection::vec(-5i32..5, 1..50), k_frac in 0.0f64..1.0) {
        let k = 1 + ((xs.len() - 1) as f64 * k_frac) as usize;
        let out = run(vec![t(&[1, xs.len()], &xs)], |g, i| {
            let (v, ix) = g.topk("tk", i[0], k).unwrap();
            vec![v, ix]
        }).unwrap();
        let mut order: Vec<usize> = (0..xs.len()).collect();
        order.sort_by(|&i, &j| xs[j].cmp(&xs[i]).then(i.cmp(&j)));
        let want: Vec<i32> = order[..k].iter().map(|&i| i as i32).collect();
        prop_assert_eq!(vals::<i32>(&out[1]), want);
    }
}

#[test]
fn reference_run_helper_allocates_outputs() {
    let mut b = GraphBuilder::new("g");
    let x = b.input("x", TensorDesc::new(DType::U16, [3])).unwrap();
    let y = b.cast("c", x, DType::I8).unwrap();
    b.output(y).unwrap();
    let g = b.build().unwrap();
    let input = t(&[3], &[1u16, 300, 65535]);
    let out = reference::graph::run(&g, &[input.view()]).unwrap();
    assert_eq!(vals::<i8>(&out[0]), vec![1, 127, 127]);
}
