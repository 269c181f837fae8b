//! The fast integer MatMul of the functional model equals the golden interpreter bit for bit.

use proptest::prelude::*;
use shadowattn_cpu::reference::graph as interpreter;
use shadowattn_hal::{
    DType, Graph, GraphBuilder, HostTensor, OutType, QuantParams, Quantization, TensorDesc,
};
use shadowattn_simulator::npu::functional;

/// One i8 MatMul graph: batch, m, k, n, transposes and the output form.
fn graph(shape: (usize, usize, usize, usize), ta: bool, tb: bool, out: OutType) -> Graph {
    let (batch, m, k, n) = shape;
    let q = |s: f32, dims: [usize; 2]| {
        TensorDesc::new(DType::I8, [batch, dims[0], dims[1]])
            .with_quant(Quantization::per_tensor(s, 0))
    };
    let mut b = GraphBuilder::new("mm");
    let x = b
        .input("a", q(0.03, if ta { [k, m] } else { [m, k] }))
        .unwrap();
    let y = b
        .input("b", q(0.05, if tb { [n, k] } else { [k, n] }))
        .unwrap();
    let z = b.matmul("mm", x, y, ta, tb, out).unwrap();
    b.output(z).unwrap();
    b.build().unwrap()
}

fn both(graph: &Graph, data: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
    let inputs: Vec<HostTensor> = graph
        .input_descs()
        .zip(data)
        .map(|(d, bytes)| {
            let mut t = HostTensor::zeros(d.clone()).unwrap();
            let n = t.bytes().len();
            t.bytes_mut().copy_from_slice(&bytes[..n]);
            t
        })
        .collect();
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    let out_desc = graph.output_descs().next().unwrap().clone();
    let (mut fast, mut gold) = (
        HostTensor::zeros(out_desc.clone()).unwrap(),
        HostTensor::zeros(out_desc).unwrap(),
    );
    functional::execute(graph, &views, &mut [fast.view_mut()]).unwrap();
    interpreter::execute(graph, &views, &mut [gold.view_mut()]).unwrap();
    (fast.bytes().to_vec(), gold.bytes().to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_fast_integer_matmul_equals_the_interpreter(
        batch in 1usize..3, m in 1usize..9, k in 1usize..70, n in 1usize..9,
        ta: bool, tb: bool, kind in 0u8..3, scale in 0.5f32..60.0, zp in 0i32..200,
        a in proptest::collection::vec(any::<u8>(), 3 * 8 * 70),
        b in proptest::collection::vec(any::<u8>(), 3 * 8 * 70),
    ) {
        let out = match kind {
            0 => OutType::plain(DType::I32),
            1 => OutType::quantized(DType::I8, QuantParams::symmetric(scale * 0.0015)),
            _ => OutType::quantized(DType::U8, QuantParams::new(scale * 0.0015, zp)),
        };
        let g = graph((batch, m, k, n), ta, tb, out);
        let (fast, gold) = both(&g, &[a, b]);
        prop_assert_eq!(fast, gold);
    }
}

#[test]
fn saturating_extremes_and_the_pilot_shape_agree() {
    // Every product at ±128·±128 over a long row: the largest sums an i8 MatMul can make.
    let g = graph(
        (1, 4, 4096, 3),
        false,
        true,
        OutType::quantized(DType::I8, QuantParams::symmetric(0.5)),
    );
    let a = vec![0x80u8; 4 * 4096];
    let b: Vec<u8> = (0..3 * 4096)
        .map(|i| if i % 2 == 0 { 0x80 } else { 0x7f })
        .collect();
    let (fast, gold) = both(&g, &[a, b]);
    assert_eq!(fast, gold);
}

#[test]
fn npus_that_compute_f32_as_f16_run_the_f16_twin() {
    use shadowattn_hal::NpuBackend;
    use shadowattn_simulator::{SimBackend, SocProfile};
    let graph = |dtype: DType| {
        let mut b = GraphBuilder::new("mm_softmax");
        let x = b.input("x", TensorDesc::new(dtype, [1, 1, 5, 33])).unwrap();
        let w = b.input("w", TensorDesc::new(dtype, [1, 1, 33, 7])).unwrap();
        let y = b
            .matmul("mm", x, w, false, false, OutType::plain(dtype))
            .unwrap();
        let s = b.softmax("sm", y, 3, 1.0).unwrap();
        b.output(s).unwrap();
        b.build().unwrap()
    };
    let (g32, g16) = (graph(DType::F32), graph(DType::F16));
    let values: Vec<Vec<f32>> = [5 * 33, 33 * 7]
        .iter()
        .map(|&n| {
            (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 41.3)
                .collect()
        })
        .collect();
    let tensors = |g: &Graph| -> Vec<HostTensor> {
        g.input_descs()
            .zip(&values)
            .map(|(d, v)| {
                let mut t = HostTensor::zeros(d.clone()).unwrap();
                interpreter::encode(
                    &v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
                    d.dtype,
                    t.bytes_mut(),
                );
                t
            })
            .collect()
    };
    let run = |npu: &dyn NpuBackend, g: &Graph| {
        let ins = tensors(g);
        let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
        let mut out = HostTensor::zeros(g.output_descs().next().unwrap().clone()).unwrap();
        npu.compile(g)
            .unwrap()
            .execute(&views, &mut [out.view_mut()])
            .unwrap();
        interpreter::decode(out.bytes(), out.desc().dtype)
    };
    let htp = SimBackend::builtin("sa8255").unwrap();
    assert!(htp.profile().numerics.f32_as_f16);
    assert!(htp.capabilities().relaxed_f32);
    let mut exact = SocProfile::builtin("sa8255").unwrap();
    exact.numerics = Default::default();
    let exact = SimBackend::new(exact);
    // f32 on the HTP profile is the f16 graph widened, to the bit; without the numerics it is
    // the golden f32 result, which differs.
    assert_eq!(run(&htp, &g32), run(&exact, &g16));
    assert_ne!(run(&htp, &g32), run(&exact, &g32));
    let golden = interpreter::run(
        &g32,
        &tensors(&g32).iter().map(|t| t.view()).collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(
        run(&exact, &g32),
        interpreter::decode(golden[0].bytes(), DType::F32)
    );
}
