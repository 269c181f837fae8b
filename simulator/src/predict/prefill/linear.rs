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
    /// The row count.
    pub(super) rows: usize,
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
            rows,
            graphs: [
                priced("qkv", s.hidden, &[("q", q), ("k", kv), ("v", kv)])?,
                priced("o", q, &[("o", s.hidden)])?,
                priced("gate_up", s.hidden, &[("gate", s.ffn), ("up", s.ffn)])?,
                priced("down", s.ffn, &[("down", s.hidden)])?,
            ],
        })
    }
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

/// How a layer's linear layers are cut into NPU graphs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearGraphs {
    /// Four graphs per layer (`qkv`, `o`, `gate_up`, `down`), the CPU glue between them.
    PerMatmul,
    /// One graph per layer: the previous layer's `o`, MLP, residual adds and this layer's
    /// RMSNorm and `qkv` in one launch (the mllm port's QNN subgraphs); only RoPE and the
    /// attention output's quantization stay on the CPU.
    PerLayer,
}

/// One step of a layer's linear part: a CPU glue pass or an NPU launch.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum LinearStep {
    /// A glue pass on the glue team, ns.
    Glue(&'static str, f64),
    /// NPU launches: the name, their overhead and accelerator time and their host transfers,
    /// ns, and how many (one per tile).
    Launch(&'static str, f64, f64, usize),
}

/// The linear layers' steps of every layer of a chunk of `rows` rows, the graphs run on tiles of
/// at most `spec.linear_tile` rows.
pub(super) struct ChunkLinear {
    /// Per layer: the steps before attention and after it.
    pub(super) layers: Vec<(Vec<LinearStep>, Vec<LinearStep>)>,
    /// Steps after the last layer (the last layer's `o` and MLP with [`LinearGraphs::PerLayer`]).
    pub(super) trailing: Vec<LinearStep>,
}

/// Graphs at each tile's row count: `(rows, graphs, tiles of that many rows)`.
fn tiles(soc: &SocProfile, spec: &PrefillSpec, rows: usize) -> Result<Vec<(LayerGraphs, usize)>> {
    let tile = spec.linear_tile.min(rows);
    let (full, rest) = (rows / tile, rows % tile);
    let mut out = vec![(LayerGraphs::new(soc, spec, tile)?, full)];
    if rest > 0 {
        out.push((LayerGraphs::new(soc, spec, rest)?, 1));
    }
    Ok(out)
}

/// One launch per tile of the graphs `which` (indices into [`LayerGraphs::graphs`]) fused into
/// one graph: the overhead once, the accelerator times summed, `io_bytes(tile's graphs)` of
/// boundary tensors moved; as one step of every tile's time.
fn fused_launch(
    soc: &SocProfile,
    name: &'static str,
    tiles: &[(LayerGraphs, usize)],
    which: &[usize],
    io_bytes: impl Fn(&LayerGraphs) -> u64,
) -> LinearStep {
    let launch = &soc.npu.launch;
    let path = soc.graph_path();
    let (mut npu, mut io, mut count) = (0.0, 0.0, 0);
    for (graphs, n) in tiles {
        count += n;
        let accelerator: f64 = which
            .iter()
            .map(|&g| graphs.graphs[g].1.accelerator_ns())
            .sum();
        npu += *n as f64 * (launch.warm_ns(path) + accelerator);
        io += *n as f64 * launch.io_ns(path, io_bytes(graphs));
    }
    LinearStep::Launch(name, npu, io, count)
}

impl ChunkLinear {
    /// The steps of a chunk of `rows` rows.
    pub(super) fn new(soc: &SocProfile, spec: &PrefillSpec, rows: usize) -> Result<Self> {
        let tiles = tiles(soc, spec, rows)?;
        let glue = layer_glue(spec, rows);
        let g = |i: usize| LinearStep::Glue(GLUE_NAMES[i], glue[i]);
        // One graph on its own: its own inputs and outputs cross.
        let launches = |i: usize| {
            let name = tiles[0].0.graphs[i].0;
            fused_launch(soc, name, &tiles, &[i], |g| g.graphs[i].1.host_io_bytes)
        };
        let layers = spec.shape.layers;
        match spec.linear_graphs {
            LinearGraphs::PerMatmul => {
                let before = vec![g(0), launches(0), g(4)];
                let after = vec![
                    g(1),
                    launches(1),
                    g(2),
                    launches(2),
                    g(3),
                    launches(3),
                    g(5),
                ];
                Ok(ChunkLinear {
                    layers: vec![(before, after); layers],
                    trailing: Vec::new(),
                })
            }
            LinearGraphs::PerLayer => {
                let s = &spec.shape;
                let elem = spec.linear.dtype().size_bytes();
                let (q, kv) = (s.q_heads * s.head_dim, s.kv_heads * s.head_dim);
                // In: the attention output and the residual stream; out: Q/K/V and the stream.
                // Bytes of `width` values per row of a tile.
                let io = move |g: &LayerGraphs, width: usize| (g.rows * width * elem) as u64;
                let first = fused_launch(soc, "RMSNorm + qkv", &tiles, &[0], |g| {
                    io(g, s.hidden + q + 2 * kv)
                });
                let middle = fused_launch(
                    soc,
                    "o + MLP + residual adds + RMSNorm + qkv",
                    &tiles,
                    &[1, 2, 3, 0],
                    |g| io(g, 2 * s.hidden + 2 * q + 2 * kv),
                );
                let last = fused_launch(soc, "o + MLP + residual adds", &tiles, &[1, 2, 3], |g| {
                    io(g, 2 * s.hidden + q)
                });
                let layer = |l: usize| {
                    let launch = if l == 0 {
                        first.clone()
                    } else {
                        middle.clone()
                    };
                    (vec![launch, g(4)], vec![g(1)])
                };
                Ok(ChunkLinear {
                    layers: (0..layers).map(layer).collect(),
                    trailing: vec![last],
                })
            }
        }
    }
}
