//! The graphs of published measurements that the fits, the predictions and the tests price: the
//! SA8255 anchor (an FP16 MatMul and Softmax) and the INT8 pilot as HTP builds it.

use shadowattn_hal::{DType, Graph, GraphBuilder, OutType, QuantParams, Quantization, TensorDesc};

/// The SA8255 anchor graph: FP16 MatMul `[1,1,64,K]·[1,1,K,512]` then Softmax on the last axis.
pub fn matmul_softmax_graph(k: usize) -> Graph {
    let mut b = GraphBuilder::new(format!("matmul_softmax_k{k}"));
    let a = b
        .input("in0", TensorDesc::new(DType::F16, [1, 1, 64, k]))
        .expect("valid");
    let w = b
        .input("in1", TensorDesc::new(DType::F16, [1, 1, k, 512]))
        .expect("valid");
    let mm = b
        .matmul("matmul0", a, w, false, false, OutType::plain(DType::F16))
        .expect("valid");
    let sm = b.softmax("softmax0", mm, 3, 1.0).expect("valid");
    b.output(sm).expect("valid");
    b.build().expect("valid")
}

/// The INT8 pilot as HTP builds it: Q×Kᵀ of `heads` fused heads, requantized to INT8.
pub fn int8_pilot_graph(heads: usize, q_len: usize, kv_len: usize, head_dim: usize) -> Graph {
    let mut b = GraphBuilder::new(format!("pilot_h{heads}_q{q_len}_k{kv_len}_d{head_dim}"));
    let desc = |rows: usize| {
        TensorDesc::new(DType::I8, [1, heads, rows, head_dim])
            .with_quant(Quantization::per_tensor(0.05, 0))
    };
    let q = b.input("q", desc(q_len)).expect("valid");
    let k = b.input("k", desc(kv_len)).expect("valid");
    let out = OutType::quantized(DType::I8, QuantParams::symmetric(0.5));
    let s = b.matmul("scores", q, k, false, true, out).expect("valid");
    b.output(s).expect("valid");
    b.build().expect("valid")
}
