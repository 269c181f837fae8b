//! The linear layers' NPU graphs of a layer, priced by the cost model, and the CPU glue passes
//! between them.

use super::PrefillSpec;
use super::StageTimes;
use crate::error::Result;
use crate::npu::cost::{graph_cost, GraphCost};
use crate::npu::profile::{CpuCore, SocProfile};
use crate::predict::cpu_model::streaming_ns;
use shadowattn_hal::{DType, Graph, GraphBuilder, OutType, QuantParams, Quantization, TensorDesc};

/// One glue pass per element: f32 bytes moved, graph-I/O elements moved (1 or 2 bytes each by
/// the graphs' precision), FLOP (normalization weights stay cached).
pub(super) struct Pass {
    f32_bytes: f64,
    pub(super) graph_elements: f64,
    pub(super) flop: f64,
}

/// Read f32, write the graph's input: square-sum, scale, weight, quantize.
pub(super) const NORM: Pass = Pass {
    f32_bytes: 4.0,
    graph_elements: 1.0,
    flop: 5.0,
};
/// Read the graph's output, write f32: dequantize, rotate pairs.
pub(super) const ROPE: Pass = Pass {
    f32_bytes: 4.0,
    graph_elements: 1.0,
    flop: 4.0,
};
/// Read f32, write the graph's input.
pub(super) const QUANT: Pass = Pass {
    f32_bytes: 4.0,
    graph_elements: 1.0,
    flop: 2.0,
};
/// Read the graph's output and the f32 stream, write f32: dequantize, add.
pub(super) const RESIDUAL: Pass = Pass {
    f32_bytes: 8.0,
    graph_elements: 1.0,
    flop: 2.0,
};
/// Copy an f32 row.
pub(super) const EMBED: Pass = Pass {
    f32_bytes: 8.0,
    graph_elements: 0.0,
    flop: 0.0,
};

/// The precision of the linear layers' NPU graphs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearPrecision {
    /// INT8 weights and activations, one scale per tensor (llm.npu's W8A8).
    W8A8,
    /// FP16 weights and activations (what `prefill --functional` runs).
    Fp16,
}

impl LinearPrecision {
    pub(super) fn dtype(self) -> DType {
        match self {
            LinearPrecision::W8A8 => DType::I8,
            LinearPrecision::Fp16 => DType::F16,
        }
    }

    /// Time of `pass` over `elements` on one core, ns.
    pub(super) fn glue_ns(self, core: &CpuCore, elements: usize, pass: &Pass) -> f64 {
        let bytes = pass.f32_bytes + pass.graph_elements * self.dtype().size_bytes() as f64;
        streaming_ns(core, elements as u64, bytes, pass.flop)
    }
}

/// Nominal per-tensor scale of the linear graphs' INT8 tensors (scales do not change cost).
pub(super) const LINEAR_SCALE: f32 = 0.05;

/// A static graph of `rows` rows of `inner` against one STATIC weight per output
/// `(name, columns)` in `precision`; W8A8 outputs INT8 (or the INT32 accumulators when
/// `accumulators`).
pub(super) fn linear_graph(
    name: &str,
    rows: usize,
    inner: usize,
    outs: &[(&str, usize)],
    precision: LinearPrecision,
    accumulators: bool,
) -> Result<Graph> {
    let dtype = precision.dtype();
    let quant = |d: TensorDesc| match precision {
        LinearPrecision::W8A8 => d.with_quant(Quantization::per_tensor(LINEAR_SCALE, 0)),
        LinearPrecision::Fp16 => d,
    };
    let mut b = GraphBuilder::new(format!("{name}_r{rows}"));
    let x = b.input("x", quant(TensorDesc::new(dtype, [1, 1, rows, inner])))?;
    let out_type = match precision {
        LinearPrecision::W8A8 if accumulators => OutType::plain(DType::I32),
        LinearPrecision::W8A8 => {
            OutType::quantized(DType::I8, QuantParams::symmetric(LINEAR_SCALE))
        }
        LinearPrecision::Fp16 => OutType::plain(DType::F16),
    };
    for (out, cols) in outs {
        let desc = quant(TensorDesc::new(dtype, [1, 1, inner, *cols]));
        let bytes = vec![0; desc.size_bytes()];
        let w = b.constant(&format!("w_{out}"), desc, bytes)?;
        let y = b.matmul(out, x, w, false, false, out_type.clone())?;
        b.output(y)?;
    }
    Ok(b.build()?)
}

/// The priced graphs of one layer's linear layers at one row count.
pub(super) struct LayerGraphs {
    pub(super) graphs: [(&'static str, GraphCost); 4],
}

impl LayerGraphs {
    pub(super) fn new(soc: &SocProfile, spec: &PrefillSpec, rows: usize) -> Result<Self> {
        let s = &spec.shape;
        let (q, kv) = (s.q_heads * s.head_dim, s.kv_heads * s.head_dim);
        let priced = |name, inner, outs: &[(&str, usize)]| -> Result<(&'static str, GraphCost)> {
            Ok((
                name,
                graph_cost(
                    soc,
                    &linear_graph(name, rows, inner, outs, spec.linear, false)?,
                ),
            ))
        };
        Ok(LayerGraphs {
            graphs: [
                priced("qkv", s.hidden, &[("q", q), ("k", kv), ("v", kv)])?,
                priced("o", q, &[("o", s.hidden)])?,
                priced("gate_up", s.hidden, &[("gate", s.ffn), ("up", s.ffn)])?,
                priced("down", s.ffn, &[("down", s.hidden)])?,
            ],
        })
    }
}

/// The NPU part of a launch (overhead and accelerator) and its host transfers, ns.
pub(super) fn split(cost: &GraphCost) -> (f64, f64) {
    (cost.launch_ns(false) - cost.host_io_ns, cost.host_io_ns)
}

/// The glue passes of a layer, in [`layer_glue`]'s order: one before each of the four graphs,
/// then the one after `qkv` and the one after `down`.
pub(super) const GLUE_NAMES: [&str; 6] = [
    "RMSNorm, quantize",
    "quantize attention output",
    "dequantize, residual add, RMSNorm, quantize",
    "gate activation × up, quantize",
    "dequantize Q/K/V, RoPE",
    "dequantize, residual add",
];

/// Glue of one layer over `rows` rows on the glue team, ns, by pass ([`GLUE_NAMES`]).
pub(super) fn layer_glue(spec: &PrefillSpec, rows: usize) -> [f64; 6] {
    let s = &spec.shape;
    let pass = |elements: usize, pass: &Pass| {
        spec.placement
            .glue
            .split_ns(|core| spec.linear.glue_ns(core, rows * elements, pass))
    };
    // act(g)·u: two graph outputs in, one graph input out.
    let gate = Pass {
        f32_bytes: 0.0,
        graph_elements: 3.0,
        flop: s.activation.flop(),
    };
    let (q, kv) = (s.q_heads * s.head_dim, s.kv_heads * s.head_dim);
    [
        pass(s.hidden, &NORM),
        pass(q, &QUANT),
        pass(s.hidden, &RESIDUAL) + pass(s.hidden, &NORM),
        pass(s.ffn, &gate),
        pass(q + 2 * kv, &ROPE),
        pass(s.hidden, &RESIDUAL),
    ]
}

/// The output head over the last row (after the final norm), on the NPU.
pub(super) fn lm_head(soc: &SocProfile, spec: &PrefillSpec) -> Result<StageTimes> {
    let s = &spec.shape;
    let head = linear_graph(
        "lm_head",
        1,
        s.hidden,
        &[("logits", s.vocab)],
        spec.linear,
        true,
    )?;
    let cost = graph_cost(soc, &head);
    let norm = spec
        .placement
        .glue
        .split_ns(|core| spec.linear.glue_ns(core, s.hidden, &NORM));
    Ok(StageTimes {
        lm_head_ns: cost.launch_ns(false),
        glue_ns: norm,
        ..StageTimes::default()
    })
}
