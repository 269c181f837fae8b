//! Every layer's attention per chunk under each strategy.

use super::trace::Trace;
use super::{AttentionStrategy, PrefillSpec};
use crate::error::Result;
use crate::error::SimError;
use crate::npu::profile::SocProfile;
use crate::predict::cpu_model::attention_ns;
use crate::predict::layer::{PrefillLayer, SplitStages};
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

/// Every layer's attention cost per chunk under `strategy`; `progress(done, layers)` after
/// each layer.
pub(super) fn chunk_attention(
    soc: &SocProfile,
    spec: &PrefillSpec,
    strategy: AttentionStrategy,
    trace: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<AttentionCost>>> {
    let chunks = 0..spec.prompt_len.div_ceil(spec.chunk_len);
    let one = |path_ns, npu_ns, cpu_ns, launches, name: &str, npu| {
        one_step(spec, trace, (path_ns, npu_ns, cpu_ns), launches, name, npu)
    };
    // Every strategy but shadowAttn's is the same in every layer.
    let costs: Result<Vec<AttentionCost>> = match strategy {
        AttentionStrategy::DenseCpu => Ok(dense_chunks(spec, trace)),
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
        AttentionStrategy::Shadow => return shadow_layers(soc, spec, trace, progress),
    };
    let costs = costs?;
    let layers = spec.shape.layers;
    Ok((0..layers)
        .map(|l| {
            progress(l + 1, layers);
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

/// Every chunk's dense attention on the dense team.
fn dense_chunks(spec: &PrefillSpec, trace: bool) -> Vec<AttentionCost> {
    (0..spec.prompt_len.div_ceil(spec.chunk_len))
        .map(|c| {
            let ns = dense_cpu_ns(spec, &chunk_of(spec, c));
            one_step(spec, trace, (ns, 0.0, ns), 0, "dense attention", false)
        })
        .collect()
}

/// Dense causal attention of every head of `ch` on the spec's dense team, ns.
fn dense_cpu_ns(spec: &PrefillSpec, ch: &AttentionChunk) -> f64 {
    let start = (ch.kv_len - ch.q_len) as u64;
    let pairs: u64 = (1..=ch.q_len as u64).map(|i| start + i).sum();
    let dense = spec.kernels.dense();
    spec.placement.dense.split_ns(|core| {
        attention_ns(core, dense, pairs, ch.kv_len, ch.head_dim) * spec.shape.q_heads as f64
    })
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
    let mut t = Trace::new(trace, spec.placement.glue.threads());
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

/// How the placement runs a head's top-k and sparse attention: one job on a team of one
/// cluster (its core and threads), or two stages on two such teams.
fn shadow_workers(
    spec: &PrefillSpec,
) -> Result<(crate::npu::profile::CpuCore, usize, Option<SplitStages>)> {
    let p = &spec.placement;
    let single = |team: &crate::predict::placement::Team, stage: &str| {
        team.single().map(|(c, n)| (c.clone(), n)).ok_or_else(|| {
            SimError::Shape(format!(
                "the {stage} stage runs on one cluster, not on {}",
                team.describe()
            ))
        })
    };
    let attention = single(&p.attention, "sparse attention")?;
    if p.joint() {
        return Ok((attention.0, attention.1, None));
    }
    let topk = single(&p.topk, "top-k")?;
    Ok((
        attention.0.clone(),
        attention.1,
        Some(SplitStages { topk, attention }),
    ))
}

/// shadowAttn's attention per layer (its own ratios; dense on the dense layers) and chunk, by
/// the layer model.
fn shadow_layers(
    soc: &SocProfile,
    spec: &PrefillSpec,
    trace: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<AttentionCost>>> {
    let s = &spec.shape;
    let (core, cores, split) = shadow_workers(spec)?;
    let core = &core;
    let workers = match &split {
        Some(sp) => (sp.topk.1 + sp.attention.1) as f64,
        None => cores as f64,
    };
    let shadow =
        |p: &crate::predict::layer::ChunkPrediction, events: Vec<ProfileEvent>| AttentionCost {
            path_ns: p.layer_ns,
            npu_ns: p.npu_busy_ns,
            cpu_ns: p.cpu_busy_ns / workers,
            topk_ns: p.topk_busy_ns / workers,
            launches: p.launches,
            events,
        };
    let layers = spec.ratios.len();
    let priced = spec
        .ratios
        .iter()
        .enumerate()
        .map(|(l, ratios)| {
            progress(l, layers);
            if spec.dense_layers.contains(&l) {
                return Ok(dense_chunks(spec, trace));
            }
            let layer = PrefillLayer {
                q_heads: s.q_heads,
                kv_heads: s.kv_heads,
                head_dim: s.head_dim,
                prompt_len: spec.prompt_len,
                chunk_len: spec.chunk_len,
                ratios: ratios.clone(),
                // Without the prompt's scales every head falls in the central bucket.
                buckets: vec![0; s.q_heads],
                fused: spec.pilot_fused.clone(),
                cores,
                split: split.clone(),
                kernels: spec.kernels,
                sharing: spec.sharing,
                pilot: spec.pilot,
                budget: spec.budget,
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
        .collect();
    progress(layers, layers);
    priced
}
