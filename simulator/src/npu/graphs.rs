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

/// Which pilot graph a layer launches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PilotGraph {
    /// One unit per query head ([`int8_pilot_graph`]).
    #[default]
    Head,
    /// One unit per GQA group of `heads` query heads ([`group_pilot_graph`]).
    Group {
        /// Query heads per group.
        heads: usize,
        /// Whether the NPU sums the heads' softmax probabilities into one f16 ranking.
        ranked_on_npu: bool,
    },
}

impl PilotGraph {
    /// Query heads per launch unit.
    pub fn unit_heads(self) -> usize {
        match self {
            PilotGraph::Head => 1,
            PilotGraph::Group { heads, .. } => heads,
        }
    }

    /// What a unit is in the pipeline's plans and timelines.
    pub fn unit_kind(self) -> shadowattn_pipeline::UnitKind {
        match self {
            PilotGraph::Head => shadowattn_pipeline::UnitKind::Head,
            PilotGraph::Group { .. } => shadowattn_pipeline::UnitKind::KvGroup,
        }
    }

    /// The graph of `units` fused units for chunks of `q_len` rows over `kv_len` keys.
    pub fn graph(self, units: usize, q_len: usize, kv_len: usize, head_dim: usize) -> Graph {
        match self {
            PilotGraph::Head => int8_pilot_graph(units, q_len, kv_len, head_dim),
            PilotGraph::Group {
                heads,
                ranked_on_npu,
            } => group_pilot_graph(units, heads, (q_len, kv_len, head_dim), ranked_on_npu),
        }
    }
}

/// The group pilot as the core builds it (`shadowattn_sparse_attn::pilot::PilotSpec` with a
/// group unit; a test there holds the two to the same nodes and shapes): `units` GQA groups of
/// `heads` query heads, each group's rows stacked against its keys, requantized to INT8; with
/// `ranked_on_npu`, dequantized to f16, scaled per head, masked (a constant causal mask and a
/// padding-mask input), softmax per head and summed over the heads by a MatMul with ones.
pub fn group_pilot_graph(
    units: usize,
    heads: usize,
    (q_len, kv_len, head_dim): (usize, usize, usize),
    ranked_on_npu: bool,
) -> Graph {
    let (u, g, q, k) = (units, heads, q_len, kv_len);
    let mut b = GraphBuilder::new(format!("pilot_g{g}x{u}_q{q}_k{k}_d{head_dim}"));
    let desc = |rows: usize| {
        TensorDesc::new(DType::I8, [1, u, rows, head_dim])
            .with_quant(Quantization::per_tensor(0.05, 0))
    };
    let qi = b.input("q", desc(g * q)).expect("valid");
    let ki = b.input("k", desc(k)).expect("valid");
    let out = OutType::quantized(DType::I8, QuantParams::symmetric(0.5));
    let scores = b.matmul("scores", qi, ki, false, true, out).expect("valid");
    if !ranked_on_npu {
        b.output(scores).expect("valid");
        return b.build().expect("valid");
    }
    let f16 = |shape: &[usize]| TensorDesc::new(DType::F16, shape.to_vec());
    let plain = OutType::plain(DType::F16);
    let key_mask = b.input("key_mask", f16(&[1, 1, 1, k])).expect("valid");
    let real = b
        .dequantize("scores_real", scores, DType::F16)
        .expect("valid");
    let stacked = b
        .reshape("scores_stacked", real, &[u, g, q, k])
        .expect("valid");
    let head_scale = b.input("head_scale", f16(&[u, g, 1, 1])).expect("valid");
    let by_head = b
        .mul("scores_by_head", stacked, head_scale, plain.clone())
        .expect("valid");
    let causal = b
        .constant("causal_mask", f16(&[1, 1, q, k]), vec![0; q * k * 2])
        .expect("valid");
    let mask = b
        .add("mask", causal, key_mask, plain.clone())
        .expect("valid");
    let masked = b
        .add("scores_masked", by_head, mask, plain.clone())
        .expect("valid");
    let probs = b.softmax("probs", masked, 3, 0.1).expect("valid");
    let flat = b
        .reshape("probs_flat", probs, &[u, g, q * k])
        .expect("valid");
    // f16 1.0 is 0x3C00, little-endian.
    let ones = b
        .constant("ones", f16(&[u, 1, g]), [0x00u8, 0x3C].repeat(u * g))
        .expect("valid");
    let summed = b
        .matmul("ranking_sum", ones, flat, false, false, plain)
        .expect("valid");
    let ranking = b.reshape("ranking", summed, &[1, u, q, k]).expect("valid");
    b.output(ranking).expect("valid");
    b.build().expect("valid")
}
