//! Every layer's attention per chunk under each strategy.

use super::trace::Trace;
use super::{AttentionStrategy, PrefillSpec};
use crate::error::Result;
use crate::npu::profile::{CpuCore, SocProfile};
use crate::predict::cpu_model::{attention_ns, AttentionKernel};
use crate::predict::layer::PrefillLayer;
use crate::predict::npu_strategies::{npu_fp16_flash, npu_full_int8, AttentionChunk};
use shadowattn_hal::ProfileEvent;

/// One chunk's attention in one layer: critical path, NPU busy, CPU busy per core, launches,
/// and the timeline from its start.
pub(super) struct AttentionCost {
    pub(super) path_ns: f64,
    pub(super) npu_ns: f64,
    pub(super) cpu_ns: f64,
    pub(super) topk_ns: f64,
    pub(super) launches: usize,
    pub(super) events: Vec<ProfileEvent>,
}

/// Every layer's attention cost per chunk under `strategy`.
pub(super) fn chunk_attention(
    soc: &SocProfile,
    core: &CpuCore,
    spec: &PrefillSpec,
    strategy: AttentionStrategy,
    trace: bool,
) -> Result<Vec<Vec<AttentionCost>>> {
    let chunks = 0..spec.prompt_len.div_ceil(spec.chunk_len);
    let one = |path_ns, npu_ns, cpu_ns, launches, name: &str, npu| {
        one_step(spec, trace, (path_ns, npu_ns, cpu_ns), launches, name, npu)
    };
    // Every strategy but shadowAttn's is the same in every layer.
    let costs: Result<Vec<AttentionCost>> = match strategy {
        AttentionStrategy::DenseCpu => chunks
            .map(|c| {
                let ns = dense_cpu_ns(core, spec, &chunk_of(spec, c));
                Ok(one(ns, 0.0, ns, 0, "dense attention", false))
            })
            .collect(),
        AttentionStrategy::NpuInt8 => chunks
            .map(|c| {
                let ns = npu_full_int8(soc, &chunk_of(spec, c))?.launch_ns(false);
                Ok(one(ns, ns, 0.0, 1, "NPU-Full INT8 attention", true))
            })
            .collect(),
        AttentionStrategy::NpuFp16Flash => chunks
            .map(|c| {
                let ns = npu_fp16_flash(soc, &chunk_of(spec, c))?.launch_ns();
                Ok(one(ns, ns, 0.0, 1, "FP16 flash attention", true))
            })
            .collect(),
        AttentionStrategy::Shadow => return shadow_layers(soc, core, spec, trace),
    };
    let costs = costs?;
    Ok((0..spec.shape.layers)
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
}

/// Chunk `c` of the prompt: its rows and every key up to its last row.
fn chunk_of(spec: &PrefillSpec, c: usize) -> AttentionChunk {
    let s = &spec.shape;
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
}

/// Dense causal attention of every head of `ch` on the spec's cores, ns.
fn dense_cpu_ns(core: &CpuCore, spec: &PrefillSpec, ch: &AttentionChunk) -> f64 {
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
    per_head * spec.shape.q_heads as f64 / spec.cores as f64
}

/// A chunk's attention as one step `name` on the NPU or the CPU cores: (path, NPU busy, CPU
/// busy) ns.
fn one_step(
    spec: &PrefillSpec,
    trace: bool,
    (path_ns, npu_ns, cpu_ns): (f64, f64, f64),
    launches: usize,
    name: &str,
    npu: bool,
) -> AttentionCost {
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
}

/// shadowAttn's attention per layer (its own ratios) and chunk, by the layer model.
fn shadow_layers(
    soc: &SocProfile,
    core: &CpuCore,
    spec: &PrefillSpec,
    trace: bool,
) -> Result<Vec<Vec<AttentionCost>>> {
    let s = &spec.shape;
    let shadow =
        |p: &crate::predict::layer::ChunkPrediction, events: Vec<ProfileEvent>| AttentionCost {
            path_ns: p.layer_ns,
            npu_ns: p.npu_busy_ns,
            cpu_ns: p.cpu_busy_ns / spec.cores as f64,
            topk_ns: p.topk_busy_ns / spec.cores as f64,
            launches: p.launches,
            events,
        };
    spec.ratios
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
                fused: shadowattn_pipeline::FUSED_HEADS.to_vec(),
                cores: spec.cores,
                sharing: spec.sharing,
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
        .collect()
}
