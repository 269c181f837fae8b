//! A whole model's prefill on a simulated SoC, and the dense decode after it: every layer's
//! linear layers as NPU graphs priced by the cost model, its attention by one of four
//! strategies, the CPU-side steps between graphs by the CPU model.
//!
//! - **Linear layers** run on the NPU as static graphs with the weights as STATIC (constant)
//!   tensors: INT8 weights and activations with one scale per tensor (W8A8, llm.npu's scheme,
//!   which shadowAttn is built into) or FP16 ([`LinearPrecision`]); per layer and chunk, four
//!   graphs: `qkv` (three MatMuls of the
//!   normalized input), `o`, `gate_up` (two MatMuls) and `down`. Graph boundaries sit where the
//!   graph IR has no op: RMSNorm, RoPE, SiLU·mul and the residual adds run on the CPU (the
//!   *glue*), and attention runs between `qkv` and `o` anyway. The output head runs for the
//!   last row only. llm.npu's float outlier channels on the CPU are not modelled.
//! - **Attention** per layer and chunk: `shadow` is the planned pipeline of
//!   [`crate::layer::PrefillLayer`] (pilot launches overlapped with top-k and sparse attention);
//!   `dense-cpu` (the paper's C/G-Full) is dense FP32 attention on the cores; `npu-int8`
//!   (NPU-Full) and `npu-fp16-fa` (FP16 flash attention) are the [`crate::baselines`].
//! - **Glue** is priced by [`crate::cpu_model::streaming_ns`] on the same cores: the byte and
//!   FLOP counts per element of every pass are the constants below.
//! - The stages run one after the other (the NPU and the CPU hand data back and forth inside a
//!   layer, and the next chunk needs this chunk's keys), graphs are compiled and loaded before
//!   the prompt arrives (warm launches), and the prompt is split into chunks of `chunk_len`
//!   rows as llm.npu does (256 by default).
//! - **Decode** stays dense, as in the paper: per token the same graphs with one row, dense
//!   attention of one row over the whole prefix on the cores, the output head.

use crate::baselines::{npu_fp16_flash, npu_full_int8, AttentionChunk};
use crate::cost::{graph_cost, GraphCost};
use crate::cpu_model::{attention_ns, streaming_ns, AttentionKernel, SelectionSharing, EXP_FLOP};
use crate::error::{check_attention_sizes, Result, SimError};
use crate::layer::PrefillLayer;
use crate::profile::{CpuCore, SocProfile};
use shadowattn_hal::{
    DType, EventKind, FigureSource, Graph, GraphBuilder, OutType, ProfileEvent, QuantParams,
    Quantization, TensorDesc,
};
use std::fmt;

/// The dimensions of a Llama-architecture transformer that price its prefill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransformerShape {
    /// Name shown in reports.
    pub name: String,
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Inner size of the gated MLP.
    pub ffn: usize,
    /// Query heads.
    pub q_heads: usize,
    /// Key/value heads; divides `q_heads`.
    pub kv_heads: usize,
    /// Dimension of each head.
    pub head_dim: usize,
    /// Vocabulary size (rows of the output head).
    pub vocab: usize,
    /// The gate's activation in the gated MLP.
    pub activation: Activation,
}

/// The activation of the gate of a gated MLP: `down(act(gate(x)) · up(x))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU: Llama, Qwen2).
    Silu,
    /// ReLU (PhoneLM).
    Relu,
}

impl Activation {
    /// FLOP per element of `act(g)·u` with the product's requantization.
    fn flop(self) -> f64 {
        match self {
            Activation::Silu => EXP_FLOP + 6.0,
            Activation::Relu => 4.0,
        }
    }
}

/// The paper's four models by shape (Table 5 gives heads, KV heads, head dim and layers; the
/// hidden, MLP and vocabulary sizes are the models' published configurations).
/// PhoneLM: the `mllmTeam/PhoneLM-{0.5B,1.5B}-Instruct` `config.json` files (ReLU gate); Qwen2:
/// the Qwen2 technical report (arXiv 2407.10671, Table 1) and its `config.json` (SiLU gate,
/// the embedding padded to 151,936 rows).
const PRESETS: [(&str, [usize; 7], Activation); 4] = [
    // layers, hidden, ffn, q_heads, kv_heads, head_dim, vocab
    (
        "phonelm-0.5b",
        [24, 1024, 4864, 16, 16, 64, 49152],
        Activation::Relu,
    ),
    (
        "phonelm-1.5b",
        [19, 2560, 6816, 16, 16, 160, 49152],
        Activation::Relu,
    ),
    (
        "qwen2-0.5b",
        [24, 896, 4864, 14, 2, 64, 151_936],
        Activation::Silu,
    ),
    (
        "qwen2-1.5b",
        [28, 1536, 8960, 12, 2, 128, 151_936],
        Activation::Silu,
    ),
];

impl TransformerShape {
    /// The names of the built-in shapes.
    pub fn preset_names() -> Vec<&'static str> {
        PRESETS.iter().map(|(n, _, _)| *n).collect()
    }

    /// A built-in shape by name (case-insensitive: `Qwen2-1.5B` is `qwen2-1.5b`).
    pub fn preset(name: &str) -> Result<Self> {
        let key = name.to_ascii_lowercase();
        let (n, [layers, hidden, ffn, q_heads, kv_heads, head_dim, vocab], activation) = PRESETS
            .iter()
            .find(|(n, _, _)| *n == key)
            .ok_or_else(|| SimError::UnknownModel {
                name: name.to_string(),
                known: Self::preset_names().join(", "),
            })?;
        Ok(TransformerShape {
            name: n.to_string(),
            layers: *layers,
            hidden: *hidden,
            ffn: *ffn,
            q_heads: *q_heads,
            kv_heads: *kv_heads,
            head_dim: *head_dim,
            vocab: *vocab,
            activation: *activation,
        })
    }

    /// Checks that every size is at least 1 and the heads group.
    pub fn validate(&self) -> Result<()> {
        check_attention_sizes(
            &[
                ("layers", self.layers),
                ("hidden", self.hidden),
                ("ffn", self.ffn),
                ("q_heads", self.q_heads),
                ("kv_heads", self.kv_heads),
                ("head_dim", self.head_dim),
                ("vocab", self.vocab),
            ],
            self.q_heads,
            self.kv_heads,
        )
    }

    /// INT8 weight bytes of one layer's linear layers.
    pub fn layer_weight_bytes(&self) -> u64 {
        let attn = self.head_dim * (self.q_heads + self.kv_heads) * 2 * self.hidden;
        (attn + 3 * self.hidden * self.ffn) as u64
    }
}

/// Where a layer's attention runs during the prefill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttentionStrategy {
    /// shadowAttn: the INT8 pilot on the NPU, top-k and sparse FP32 attention on the CPU.
    Shadow,
    /// Dense FP32 attention on the CPU (the paper's C/G-Full).
    DenseCpu,
    /// INT8 attention as one static NPU graph (the paper's NPU-Full).
    NpuInt8,
    /// FP16 flash attention on the NPU's matrix and vector units.
    NpuFp16Flash,
}

impl AttentionStrategy {
    /// Every strategy, shadowAttn first.
    pub const ALL: [AttentionStrategy; 4] = [
        AttentionStrategy::Shadow,
        AttentionStrategy::DenseCpu,
        AttentionStrategy::NpuInt8,
        AttentionStrategy::NpuFp16Flash,
    ];

    /// The strategy's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            AttentionStrategy::Shadow => "shadow",
            AttentionStrategy::DenseCpu => "dense-cpu",
            AttentionStrategy::NpuInt8 => "npu-int8",
            AttentionStrategy::NpuFp16Flash => "npu-fp16-fa",
        }
    }
}

impl fmt::Display for AttentionStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A prefill (and the decode after it) to predict.
#[derive(Clone, Debug, PartialEq)]
pub struct PrefillSpec {
    /// The model.
    pub shape: TransformerShape,
    /// Tokens of the prompt.
    pub prompt_len: usize,
    /// Query rows per chunk (the last chunk may be shorter).
    pub chunk_len: usize,
    /// CPU cores for attention and glue.
    pub cores: usize,
    /// How shadowAttn's selection is shared.
    pub sharing: SelectionSharing,
    /// shadowAttn's kept fraction per layer and query head, in (0, 1].
    pub ratios: Vec<Vec<f32>>,
    /// Dense decode steps after the prefill.
    pub decode_steps: usize,
    /// The precision of the linear layers' graphs.
    pub linear: LinearPrecision,
}

impl PrefillSpec {
    /// Checks the description before any work.
    pub fn validate(&self) -> Result<()> {
        self.shape.validate()?;
        let bad = |what: String| Err(SimError::Shape(what));
        if self.prompt_len == 0 || self.chunk_len == 0 || self.cores == 0 {
            return bad(format!(
                "prompt length {}, chunk length {} and cores {} must be at least 1",
                self.prompt_len, self.chunk_len, self.cores
            ));
        }
        if self.ratios.len() != self.shape.layers {
            return bad(format!(
                "ratios for {} layers, the model has {}",
                self.ratios.len(),
                self.shape.layers
            ));
        }
        if let Some((l, r)) = self
            .ratios
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != self.shape.q_heads)
        {
            return bad(format!(
                "layer {l} has {} ratios for {} query heads",
                r.len(),
                self.shape.q_heads
            ));
        }
        Ok(())
    }
}

/// Where the time of a prefill goes, ns. The first five sum to the time to first token.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageTimes {
    /// The linear layers' NPU graphs: launch overhead and accelerator time.
    pub linear_ns: f64,
    /// The linear layers' inputs and outputs through host-shared memory.
    pub transfers_ns: f64,
    /// Attention on its critical path (for shadowAttn the planned pipeline of pilot, top-k and
    /// sparse attention; its own transfers included).
    pub attention_ns: f64,
    /// CPU-side steps between graphs: normalization, RoPE, (de)quantization, activation,
    /// residual adds, embedding lookup.
    pub glue_ns: f64,
    /// The output head of the last row.
    pub lm_head_ns: f64,
    /// Within attention: time the NPU is busy (pilot launches, or the NPU attention graph).
    pub attention_npu_ns: f64,
    /// Within attention: time the CPU cores are busy (top-k and attention), per core.
    pub attention_cpu_ns: f64,
    /// Within the CPU's busy time: top-k, per core.
    pub attention_topk_ns: f64,
}

impl StageTimes {
    /// The time to first token: every stage one after the other.
    pub fn total_ns(&self) -> f64 {
        self.linear_ns + self.transfers_ns + self.attention_ns + self.glue_ns + self.lm_head_ns
    }

    fn add(&mut self, o: &StageTimes) {
        self.linear_ns += o.linear_ns;
        self.transfers_ns += o.transfers_ns;
        self.attention_ns += o.attention_ns;
        self.glue_ns += o.glue_ns;
        self.lm_head_ns += o.lm_head_ns;
        self.attention_npu_ns += o.attention_npu_ns;
        self.attention_cpu_ns += o.attention_cpu_ns;
        self.attention_topk_ns += o.attention_topk_ns;
    }
}

/// The prediction of one strategy's prefill and decode.
#[derive(Clone, Debug, PartialEq)]
pub struct PrefillPrediction {
    /// The attention strategy.
    pub strategy: AttentionStrategy,
    /// Where the time to first token goes.
    pub stages: StageTimes,
    /// Mean time per output token of the dense decode steps, ns (0 without decode steps).
    pub decode_ns_per_token: f64,
    /// Chunks of the prefill.
    pub chunks: usize,
    /// NPU graph launches of the prefill (linear layers, output head, attention).
    pub launches: usize,
    /// The timeline (tracks `npu`, `cpu0`, …; chunks ⊃ layers ⊃ steps), when asked for.
    pub events: Vec<ProfileEvent>,
}

impl PrefillPrediction {
    /// The time to first token, ns.
    pub fn ttft_ns(&self) -> f64 {
        self.stages.total_ns()
    }
}

/// One glue pass per element: f32 bytes moved, graph-I/O elements moved (1 or 2 bytes each by
/// the graphs' precision), FLOP (normalization weights stay cached).
struct Pass {
    f32_bytes: f64,
    graph_elements: f64,
    flop: f64,
}

/// Read f32, write the graph's input: square-sum, scale, weight, quantize.
const NORM: Pass = Pass {
    f32_bytes: 4.0,
    graph_elements: 1.0,
    flop: 5.0,
};
/// Read the graph's output, write f32: dequantize, rotate pairs.
const ROPE: Pass = Pass {
    f32_bytes: 4.0,
    graph_elements: 1.0,
    flop: 4.0,
};
/// Read f32, write the graph's input.
const QUANT: Pass = Pass {
    f32_bytes: 4.0,
    graph_elements: 1.0,
    flop: 2.0,
};
/// Read the graph's output and the f32 stream, write f32: dequantize, add.
const RESIDUAL: Pass = Pass {
    f32_bytes: 8.0,
    graph_elements: 1.0,
    flop: 2.0,
};
/// Copy an f32 row.
const EMBED: Pass = Pass {
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
    fn dtype(self) -> DType {
        match self {
            LinearPrecision::W8A8 => DType::I8,
            LinearPrecision::Fp16 => DType::F16,
        }
    }

    /// Time of `pass` over `elements` on one core, ns.
    fn glue_ns(self, core: &CpuCore, elements: usize, pass: &Pass) -> f64 {
        let bytes = pass.f32_bytes + pass.graph_elements * self.dtype().size_bytes() as f64;
        streaming_ns(core, elements as u64, bytes, pass.flop)
    }
}

/// Nominal per-tensor scale of the linear graphs' INT8 tensors (scales do not change cost).
const LINEAR_SCALE: f32 = 0.05;

/// A static graph of `rows` rows of `inner` against one STATIC weight per output
/// `(name, columns)` in `precision`; W8A8 outputs INT8 (or the INT32 accumulators when
/// `accumulators`).
fn linear_graph(
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
struct LayerGraphs {
    graphs: [(&'static str, GraphCost); 4],
}

impl LayerGraphs {
    fn new(soc: &SocProfile, spec: &PrefillSpec, rows: usize) -> Result<Self> {
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
fn split(cost: &GraphCost) -> (f64, f64) {
    (cost.launch_ns(false) - cost.host_io_ns, cost.host_io_ns)
}

/// The glue passes of a layer, in [`layer_glue`]'s order: one before each of the four graphs,
/// then the one after `qkv` and the one after `down`.
const GLUE_NAMES: [&str; 6] = [
    "RMSNorm, quantize",
    "quantize attention output",
    "dequantize, residual add, RMSNorm, quantize",
    "gate activation × up, quantize",
    "dequantize Q/K/V, RoPE",
    "dequantize, residual add",
];

/// Glue of one layer over `rows` rows on `cores` cores, ns, by pass ([`GLUE_NAMES`]).
fn layer_glue(spec: &PrefillSpec, core: &CpuCore, rows: usize) -> [f64; 6] {
    let s = &spec.shape;
    let pass = |elements: usize, pass: &Pass| {
        spec.linear.glue_ns(core, rows * elements, pass) / spec.cores as f64
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

/// One chunk's attention in one layer: critical path, NPU busy, CPU busy per core, launches,
/// and the timeline from its start.
struct AttentionCost {
    path_ns: f64,
    npu_ns: f64,
    cpu_ns: f64,
    topk_ns: f64,
    launches: usize,
    events: Vec<ProfileEvent>,
}

/// A timeline under construction on a clock of whole nanoseconds (so that nested slices nest
/// exactly); the stage totals are kept unrounded beside it.
struct Trace {
    on: bool,
    cores: usize,
    now: u64,
    events: Vec<ProfileEvent>,
}

impl Trace {
    fn new(on: bool, cores: usize) -> Self {
        Trace {
            on,
            cores,
            now: 0,
            events: Vec::new(),
        }
    }

    fn tracks(&self, npu: bool) -> Vec<String> {
        let cpus = (0..self.cores).map(|c| format!("cpu{c}"));
        if npu {
            std::iter::once("npu".to_string()).chain(cpus).collect()
        } else {
            cpus.collect()
        }
    }

    fn push(&mut self, name: &str, kind: EventKind, track: String, start: u64, end: u64) {
        if self.on && end > start {
            self.events.push(ProfileEvent {
                name: name.to_string(),
                kind,
                track,
                start_ns: start,
                duration_ns: end - start,
                cycles: None,
                source: FigureSource::Simulated,
            });
        }
    }

    /// A step of `ns` from now on the NPU (`npu`) or spread over every core; advances the clock.
    fn step(&mut self, name: &str, npu: bool, ns: f64) {
        let (start, end) = (self.now, self.now + ns.round() as u64);
        let kind = if npu {
            EventKind::Launch
        } else {
            EventKind::ComputeStage
        };
        let tracks = if npu {
            vec!["npu".to_string()]
        } else {
            self.tracks(false)
        };
        for track in tracks {
            self.push(name, kind, track, start, end);
        }
        self.now = end;
    }

    /// Events timed from now (a planned attention pipeline); advances the clock by `ns`.
    fn extend(&mut self, events: &[ProfileEvent], ns: f64) {
        if self.on {
            let origin = self.now;
            self.events.extend(events.iter().map(|e| ProfileEvent {
                start_ns: e.start_ns + origin,
                ..e.clone()
            }));
        }
        self.now += ns.round() as u64;
    }

    /// `name` from `start` to now on the NPU track and every core's (a chunk or a layer).
    fn span(&mut self, name: &str, start: u64) {
        for track in self.tracks(true) {
            self.push(name, EventKind::ComputeStage, track, start, self.now);
        }
    }

    /// The events, parents before their children.
    fn finish(mut self) -> Vec<ProfileEvent> {
        self.events.sort_by(|a, b| {
            (a.start_ns, std::cmp::Reverse(a.duration_ns))
                .cmp(&(b.start_ns, std::cmp::Reverse(b.duration_ns)))
        });
        self.events
    }
}

/// Predicts `spec` with `strategy` on `cores` of `core` of `soc`; `trace` keeps the timeline.
pub fn predict_prefill(
    soc: &SocProfile,
    core: &CpuCore,
    spec: &PrefillSpec,
    strategy: AttentionStrategy,
    trace: bool,
) -> Result<PrefillPrediction> {
    spec.validate()?;
    let s = &spec.shape;
    let chunks = spec.prompt_len.div_ceil(spec.chunk_len);
    let rows_of = |c: usize| spec.chunk_len.min(spec.prompt_len - c * spec.chunk_len);
    let full = LayerGraphs::new(soc, spec, rows_of(0))?;
    let last = LayerGraphs::new(soc, spec, rows_of(chunks - 1))?;
    let attention = chunk_attention(soc, core, spec, strategy, trace)?;
    let cores = spec.cores as f64;
    let mut t = Trace::new(trace, spec.cores);
    let mut stages = StageTimes::default();
    let mut launches = 0;
    for c in 0..chunks {
        let chunk_start = t.now;
        let rows = rows_of(c);
        let graphs = if rows == rows_of(0) { &full } else { &last };
        let glue = layer_glue(spec, core, rows);
        let embed = spec.linear.glue_ns(core, rows * s.hidden, &EMBED) / cores;
        t.step("embedding lookup", false, embed);
        stages.glue_ns += embed;
        for (l, layer_attention) in attention.iter().enumerate() {
            let layer_start = t.now;
            for (g, (name, cost)) in graphs.graphs.iter().enumerate() {
                t.step(GLUE_NAMES[g], false, glue[g]);
                stages.glue_ns += glue[g];
                let (npu, io) = split(cost);
                t.step(name, true, npu + io);
                stages.linear_ns += npu;
                stages.transfers_ns += io;
                launches += 1;
                if *name == "qkv" {
                    t.step(GLUE_NAMES[4], false, glue[4]);
                    stages.glue_ns += glue[4];
                    let a = &layer_attention[c];
                    t.extend(&a.events, a.path_ns);
                    stages.attention_ns += a.path_ns;
                    stages.attention_npu_ns += a.npu_ns;
                    stages.attention_cpu_ns += a.cpu_ns;
                    stages.attention_topk_ns += a.topk_ns;
                    launches += a.launches;
                }
            }
            t.step(GLUE_NAMES[5], false, glue[5]);
            stages.glue_ns += glue[5];
            t.span(&format!("layer {l}"), layer_start);
        }
        t.span(&format!("chunk {c} ({rows} rows)"), chunk_start);
    }
    let head = lm_head(soc, core, spec)?;
    t.step("final norm", false, head.glue_ns);
    t.step("output head (last row)", true, head.lm_head_ns);
    stages.add(&head);
    launches += 1;
    let decode_ns_per_token = decode_ns(soc, core, spec)?;
    Ok(PrefillPrediction {
        strategy,
        stages,
        decode_ns_per_token,
        chunks,
        launches,
        events: t.finish(),
    })
}

/// The output head over the last row (after the final norm), on the NPU.
fn lm_head(soc: &SocProfile, core: &CpuCore, spec: &PrefillSpec) -> Result<StageTimes> {
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
    let norm = spec.linear.glue_ns(core, s.hidden, &NORM) / spec.cores as f64;
    Ok(StageTimes {
        lm_head_ns: cost.launch_ns(false),
        glue_ns: norm,
        ..StageTimes::default()
    })
}

/// Every layer's attention cost per chunk under `strategy`.
fn chunk_attention(
    soc: &SocProfile,
    core: &CpuCore,
    spec: &PrefillSpec,
    strategy: AttentionStrategy,
    trace: bool,
) -> Result<Vec<Vec<AttentionCost>>> {
    let s = &spec.shape;
    let chunks = spec.prompt_len.div_ceil(spec.chunk_len);
    let chunk = |c: usize| {
        let start = c * spec.chunk_len;
        let kv_len = (start + spec.chunk_len).min(spec.prompt_len);
        AttentionChunk {
            q_heads: s.q_heads,
            kv_heads: s.kv_heads,
            q_len: kv_len - start,
            kv_len,
            head_dim: s.head_dim,
            causal: true,
        }
    };
    let one = |path_ns: f64, npu_ns: f64, cpu_ns: f64, launches: usize, name: &str, npu: bool| {
        let mut t = Trace::new(trace, spec.cores);
        t.step(name, npu, path_ns);
        AttentionCost {
            path_ns,
            npu_ns,
            cpu_ns,
            topk_ns: 0.0,
            launches,
            events: t.events,
        }
    };
    // Every strategy but shadowAttn's is the same in every layer.
    let same = |costs: Result<Vec<AttentionCost>>| -> Result<Vec<Vec<AttentionCost>>> {
        let costs = costs?;
        Ok((0..s.layers)
            .map(|_| {
                costs
                    .iter()
                    .map(|a| AttentionCost {
                        events: a.events.clone(),
                        ..*a
                    })
                    .collect()
            })
            .collect())
    };
    match strategy {
        AttentionStrategy::DenseCpu => same(
            (0..chunks)
                .map(|c| {
                    let ch = chunk(c);
                    let start = (ch.kv_len - ch.q_len) as u64;
                    let pairs: u64 = (1..=ch.q_len as u64).map(|i| start + i).sum();
                    let per_head = attention_ns(
                        core,
                        AttentionKernel::Dense,
                        pairs,
                        ch.kv_len,
                        ch.head_dim,
                        false,
                    );
                    let ns = per_head * s.q_heads as f64 / spec.cores as f64;
                    Ok(one(ns, 0.0, ns, 0, "dense attention", false))
                })
                .collect(),
        ),
        AttentionStrategy::NpuInt8 => same(
            (0..chunks)
                .map(|c| {
                    let ns = npu_full_int8(soc, &chunk(c))?.launch_ns(false);
                    Ok(one(ns, ns, 0.0, 1, "NPU-Full INT8 attention", true))
                })
                .collect(),
        ),
        AttentionStrategy::NpuFp16Flash => same(
            (0..chunks)
                .map(|c| {
                    let ns = npu_fp16_flash(soc, &chunk(c))?.launch_ns();
                    Ok(one(ns, ns, 0.0, 1, "FP16 flash attention", true))
                })
                .collect(),
        ),
        AttentionStrategy::Shadow => spec
            .ratios
            .iter()
            .map(|ratios| {
                let layer = PrefillLayer {
                    q_heads: s.q_heads,
                    kv_heads: s.kv_heads,
                    head_dim: s.head_dim,
                    prompt_len: spec.prompt_len,
                    chunk_len: spec.chunk_len,
                    ratios: ratios.clone(),
                    // Without the prompt's scales every head falls in the central bucket.
                    buckets: vec![0; s.q_heads],
                    fused: vec![4, 2, 1],
                    cores: spec.cores,
                    sharing: spec.sharing,
                };
                let shadow =
                    |p: &crate::layer::ChunkPrediction, events: Vec<ProfileEvent>| AttentionCost {
                        path_ns: p.layer_ns,
                        npu_ns: p.npu_busy_ns,
                        cpu_ns: p.cpu_busy_ns / spec.cores as f64,
                        topk_ns: p.topk_busy_ns / spec.cores as f64,
                        launches: p.launches,
                        events,
                    };
                if trace {
                    Ok(layer
                        .predict_timelines(soc, core)?
                        .into_iter()
                        .map(|(p, t)| shadow(&p, t.events))
                        .collect())
                } else {
                    Ok(layer
                        .predict(soc, core)?
                        .iter()
                        .map(|p| shadow(p, Vec::new()))
                        .collect())
                }
            })
            .collect(),
    }
}

/// Mean time per output token of the dense decode steps, ns.
fn decode_ns(soc: &SocProfile, core: &CpuCore, spec: &PrefillSpec) -> Result<f64> {
    if spec.decode_steps == 0 {
        return Ok(0.0);
    }
    let s = &spec.shape;
    let graphs = LayerGraphs::new(soc, spec, 1)?;
    let linear: f64 = graphs.graphs.iter().map(|(_, c)| c.launch_ns(false)).sum();
    let glue: f64 = layer_glue(spec, core, 1).iter().sum();
    let head = lm_head(soc, core, spec)?.total_ns();
    let mut total = 0.0;
    for step in 0..spec.decode_steps {
        let kv_len = spec.prompt_len + step + 1;
        let per_head = attention_ns(
            core,
            AttentionKernel::Dense,
            kv_len as u64,
            kv_len,
            s.head_dim,
            false,
        );
        let attention = per_head * s.q_heads as f64 / spec.cores as f64;
        total += s.layers as f64 * (linear + glue + attention) + head;
    }
    Ok(total / spec.decode_steps as f64)
}

#[cfg(test)]
mod tests;
