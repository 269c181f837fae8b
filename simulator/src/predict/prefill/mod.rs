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
//!   [`crate::predict::layer::PrefillLayer`] (pilot launches overlapped with top-k and sparse attention);
//!   `dense-cpu` (the paper's C/G-Full) is dense FP32 attention on the cores; `npu-int8`
//!   (NPU-Full) and `npu-fp16-fa` (FP16 flash attention) are the [`crate::predict::npu_strategies`].
//! - **Glue** is priced by [`crate::predict::cpu_model::streaming_ns`] on the same cores: the byte and
//!   FLOP counts per element of every pass are the constants below.
//! - The stages run one after the other (the NPU and the CPU hand data back and forth inside a
//!   layer, and the next chunk needs this chunk's keys), graphs are compiled and loaded before
//!   the prompt arrives (warm launches), and the prompt is split into chunks of `chunk_len`
//!   rows as llm.npu does (256 by default).
//! - **Decode** stays dense, as in the paper: per token the same graphs with one row, dense
//!   attention of one row over the whole prefix on the cores, the output head.

mod attention;
mod linear;
mod shape;
mod trace;

pub use linear::{LinearGraphs, LinearPrecision};
pub use shape::{Activation, TransformerShape};

use crate::error::{Result, SimError};
use crate::npu::graphs::PilotGraph;
use crate::npu::profile::SocProfile;
use crate::predict::cpu_model::{attention_ns, KernelSet, SelectionSharing};
use crate::predict::placement::StagePlacement;
use attention::chunk_attention;
use linear::{layer_glue, lm_head, ChunkLinear, LayerGraphs, LinearStep, EMBED};
use shadowattn_hal::ProfileEvent;
use std::fmt;
use trace::Trace;

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
    /// Which cores run each CPU stage.
    pub placement: StagePlacement,
    /// The CPU kernels and their arithmetic.
    pub kernels: KernelSet,
    /// How shadowAttn's selection is shared.
    pub sharing: SelectionSharing,
    /// shadowAttn's kept fraction per layer and query head, in (0, 1].
    pub ratios: Vec<Vec<f32>>,
    /// Layers whose attention stays dense under shadowAttn (on the dense team).
    pub dense_layers: Vec<usize>,
    /// Fused-unit counts of shadowAttn's pilot launches, largest first, containing 1.
    pub pilot_fused: Vec<usize>,
    /// shadowAttn's pilot graph (its units are query heads or GQA groups).
    pub pilot: PilotGraph,
    /// How each unit's keys are spread over a chunk's rows.
    pub budget: shadowattn_hal::BudgetRule,
    /// Dense decode steps after the prefill.
    pub decode_steps: usize,
    /// The precision of the linear layers' graphs.
    pub linear: LinearPrecision,
    /// How the linear layers are cut into graphs.
    pub linear_graphs: LinearGraphs,
    /// Rows per linear-graph execution: a chunk's rows run as tiles of at most this many
    /// (the mllm port runs 512-row chunks as two 256-row tiles).
    pub linear_tile: usize,
}

impl PrefillSpec {
    /// Checks the description before any work.
    pub fn validate(&self) -> Result<()> {
        self.shape.validate()?;
        let bad = |what: String| Err(SimError::Shape(what));
        if self.prompt_len == 0 || self.chunk_len == 0 || self.linear_tile == 0 {
            return bad(format!(
                "prompt length {}, chunk length {} and linear tile {} must be at least 1",
                self.prompt_len, self.chunk_len, self.linear_tile
            ));
        }
        // The decode's last step attends over the prompt and every generated token.
        self.shape.check_tokens("prompt length", self.prompt_len)?;
        self.shape.check_tokens(
            "prompt length + decode steps",
            self.prompt_len.saturating_add(self.decode_steps),
        )?;
        if let Some(l) = self.dense_layers.iter().find(|&&l| l >= self.shape.layers) {
            return bad(format!(
                "dense layer {l} is not a layer of the model's {}",
                self.shape.layers
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
    /// NPU launches of attention (the pilot's, or the NPU attention graphs).
    pub attention_launches: usize,
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
        self.attention_launches += o.attention_launches;
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

/// Predicts `spec` with `strategy` on `soc`; `trace` keeps the timeline.
pub fn predict_prefill(
    soc: &SocProfile,
    spec: &PrefillSpec,
    strategy: AttentionStrategy,
    trace: bool,
) -> Result<PrefillPrediction> {
    predict_prefill_with_progress(soc, spec, strategy, trace, &mut |_, _| {})
}

/// [`predict_prefill`], calling `progress(done, layers)` as each layer's attention is priced
/// (the bulk of a long prompt's prediction).
pub fn predict_prefill_with_progress(
    soc: &SocProfile,
    spec: &PrefillSpec,
    strategy: AttentionStrategy,
    trace: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PrefillPrediction> {
    spec.validate()?;
    let s = &spec.shape;
    let chunks = spec.prompt_len.div_ceil(spec.chunk_len);
    let rows_of = |c: usize| spec.chunk_len.min(spec.prompt_len - c * spec.chunk_len);
    let full = ChunkLinear::new(soc, spec, rows_of(0))?;
    // A shorter last chunk has graphs of its own row count.
    let last = match rows_of(chunks - 1) {
        rows if rows == rows_of(0) => None,
        rows => Some(ChunkLinear::new(soc, spec, rows)?),
    };
    let attention = chunk_attention(soc, spec, strategy, trace, progress)?;
    let glue_team = &spec.placement.glue;
    let mut t = Trace::new(trace, glue_team.threads());
    let mut stages = StageTimes::default();
    let mut launches = 0;
    let mut run = |t: &mut Trace, stages: &mut StageTimes, steps: &[LinearStep]| {
        for step in steps {
            match step {
                LinearStep::Glue(name, ns) => {
                    t.step(name, false, *ns);
                    stages.glue_ns += ns;
                }
                LinearStep::Launch(name, npu, io, count) => {
                    t.step(name, true, npu + io);
                    stages.linear_ns += npu;
                    stages.transfers_ns += io;
                    launches += count;
                }
            }
        }
    };
    for c in 0..chunks {
        let chunk_start = t.now;
        let rows = rows_of(c);
        let linear = last
            .as_ref()
            .filter(|_| rows != rows_of(0))
            .unwrap_or(&full);
        let embed = glue_team.split_ns(|core| spec.linear.glue_ns(core, rows * s.hidden, &EMBED));
        t.step("embedding lookup", false, embed);
        stages.glue_ns += embed;
        for (l, (layer_attention, (before, after))) in
            attention.iter().zip(&linear.layers).enumerate()
        {
            let layer_start = t.now;
            run(&mut t, &mut stages, before);
            let a = &layer_attention[c];
            t.extend(&a.events, a.path_ns);
            stages.attention_ns += a.path_ns;
            stages.attention_npu_ns += a.npu_ns;
            stages.attention_cpu_ns += a.cpu_ns;
            stages.attention_topk_ns += a.topk_ns;
            stages.attention_launches += a.launches;
            run(&mut t, &mut stages, after);
            t.span(&format!("layer {l}"), layer_start);
        }
        run(&mut t, &mut stages, &linear.trailing);
        t.span(&format!("chunk {c} ({rows} rows)"), chunk_start);
    }
    launches += stages.attention_launches;
    let head = lm_head(soc, spec)?;
    t.step("final norm", false, head.glue_ns);
    t.step("output head (last row)", true, head.lm_head_ns);
    stages.add(&head);
    launches += 1;
    let decode_ns_per_token = decode_ns(soc, spec, head.total_ns())?;
    Ok(PrefillPrediction {
        strategy,
        stages,
        decode_ns_per_token,
        chunks,
        launches,
        events: t.finish(),
    })
}

/// Mean time per output token of the dense decode steps, ns; `head_ns` is the output head's.
fn decode_ns(soc: &SocProfile, spec: &PrefillSpec, head_ns: f64) -> Result<f64> {
    if spec.decode_steps == 0 {
        return Ok(0.0);
    }
    let s = &spec.shape;
    let graphs = LayerGraphs::new(soc, spec, 1)?;
    let linear: f64 = graphs.graphs.iter().map(|(_, c)| c.launch_ns(false)).sum();
    let glue: f64 = layer_glue(spec, 1).iter().sum();
    let dense = spec.kernels.dense();
    let mut total = 0.0;
    for step in 0..spec.decode_steps {
        let kv_len = spec.prompt_len + step + 1;
        let attention = spec.placement.dense.split_ns(|core| {
            attention_ns(core, dense, kv_len as u64, kv_len, s.head_dim) * s.q_heads as f64
        });
        total += s.layers as f64 * (linear + glue + attention) + head_ns;
    }
    Ok(total / spec.decode_steps as f64)
}

#[cfg(test)]
mod tests;
