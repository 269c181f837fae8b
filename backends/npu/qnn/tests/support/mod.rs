//! Test support.

pub mod fake_loader;

use shadowattn_hal::{DType, Graph, GraphBuilder, OutType, QuantParams, Quantization, TensorDesc};

/// The graph the fake library computes: an INT8 Q·Kᵀ of 4 rows over 8 keys of 8.
pub fn pilot() -> Graph {
    let mut b = GraphBuilder::new("pilot");
    let d = |rows: usize| {
        TensorDesc::new(DType::I8, [1, 1, rows, 8]).with_quant(Quantization::per_tensor(0.1, 0))
    };
    let q = b.input("q", d(4)).unwrap();
    let k = b.input("k", d(8)).unwrap();
    let s = b
        .matmul(
            "scores",
            q,
            k,
            false,
            true,
            OutType::quantized(DType::I8, QuantParams::symmetric(0.5)),
        )
        .unwrap();
    b.output(s).unwrap();
    b.build().unwrap()
}
