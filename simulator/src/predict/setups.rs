//! Named configurations of a prefill that a public measurement used, so that the measurement
//! can be reproduced from the command line, and the ends of the range of numbers nobody
//! measured on a phone.

use crate::error::Result;
use crate::npu::graphs::PilotGraph;
use crate::npu::launch::{LaunchChoice, LaunchPath};
use crate::npu::profile::{real, SocProfile};
use crate::predict::cpu_model::{KernelSet, SelectionSharing};
use crate::predict::placement::StagePlacement;
use crate::predict::prefill::{LinearGraphs, LinearPrecision, PrefillSpec, TransformerShape};
use std::fmt;
use std::str::FromStr;

/// A named configuration of a prefill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// The paper's: one mid core for every CPU stage, 20 % kept, every launch a QNN graph with
    /// client buffers (what its per-op figures measured), this project's kernels.
    Paper,
    /// The mllm port's measurement on a Snapdragon 8 Gen 3 (Xiaomi 14): mean retention 0.139,
    /// layers 0 and 1 dense, a per-head (row) selection, 512-row chunks whose linear graphs run
    /// as two 256-row tiles, one QNN graph per layer with registered shared buffers, the pilot
    /// a direct HMX kernel over FastRPC with all query heads in one call per chunk, top-k on
    /// two A720s, sparse attention (FP16 K/V, FMLAL into FP32) on the X4, the dense baseline a
    /// 4-thread team on the X4 and three A720s, RoPE and quantization on that team.
    MllmPort,
    /// llm.npu's: INT8 linear layers on the NPU with shared buffers, 256-token chunks, dense
    /// attention on the CPU with mllm's kernels on one prime and three mid cores (the paper's
    /// description of llm.npu's native attention).
    LlmNpu,
}

impl Setup {
    /// Every setup.
    pub const ALL: [Setup; 3] = [Setup::Paper, Setup::MllmPort, Setup::LlmNpu];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Setup::Paper => "paper",
            Setup::MllmPort => "mllm-port",
            Setup::LlmNpu => "llm-npu",
        }
    }

    /// The setup's choices for `soc` and a model of `q_heads` query heads.
    pub fn choices(self, soc: &SocProfile, q_heads: usize) -> Result<SetupChoices> {
        let mid = soc.core("mid").unwrap_or(&soc.cpu.cores[0]);
        let uniform = StagePlacement::uniform(mid, 1);
        let fused_all = if q_heads > 1 {
            vec![q_heads, 1]
        } else {
            vec![1]
        };
        Ok(match self {
            Setup::Paper => SetupChoices {
                ratio: 0.2,
                dense_layers: Vec::new(),
                sharing: None,
                launch: LaunchChoice {
                    graphs: Some(LaunchPath::QnnCopy),
                    pilot: Some(LaunchPath::QnnCopy),
                },
                placement: uniform,
                kernels: KernelSet::OURS,
                pilot_fused: shadowattn_pipeline::FUSED_HEADS.to_vec(),
                pilot: PilotGraph::Head,
                chunk_len: 256,
                linear_tile: 256,
                linear_graphs: LinearGraphs::PerMatmul,
            },
            Setup::MllmPort => SetupChoices {
                ratio: 0.139,
                dense_layers: vec![0, 1],
                sharing: Some(SelectionSharing::PerHead),
                launch: LaunchChoice {
                    graphs: Some(LaunchPath::QnnShared),
                    pilot: Some(LaunchPath::Fastrpc),
                },
                placement: uniform.with(
                    soc,
                    "topk=mid:2,attention=prime:1,dense=prime:1+mid:3,glue=prime:1+mid:3",
                )?,
                kernels: KernelSet::MLLM,
                pilot_fused: fused_all,
                pilot: PilotGraph::Head,
                chunk_len: 512,
                linear_tile: 256,
                linear_graphs: LinearGraphs::PerLayer,
            },
            Setup::LlmNpu => SetupChoices {
                ratio: 0.2,
                dense_layers: Vec::new(),
                sharing: None,
                launch: LaunchChoice {
                    graphs: Some(LaunchPath::QnnShared),
                    pilot: Some(LaunchPath::QnnShared),
                },
                placement: uniform.with(soc, "dense=prime:1+mid:3,glue=prime:1+mid:3")?,
                kernels: KernelSet::MLLM,
                pilot_fused: shadowattn_pipeline::FUSED_HEADS.to_vec(),
                pilot: PilotGraph::Head,
                chunk_len: 256,
                linear_tile: 256,
                linear_graphs: LinearGraphs::PerMatmul,
            },
        })
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Setup {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Setup::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown setup `{s}`; known: {}",
                    Setup::ALL.map(Setup::name).join(", ")
                )
            })
    }
}

/// What a setup sets; a caller's explicit options take precedence.
#[derive(Clone, Debug, PartialEq)]
pub struct SetupChoices {
    /// Mean fraction kept.
    pub ratio: f32,
    /// Layers kept dense.
    pub dense_layers: Vec<usize>,
    /// How the selection is shared (`None`: the caller's default).
    pub sharing: Option<SelectionSharing>,
    /// The launch paths.
    pub launch: LaunchChoice,
    /// The CPU stages' cores.
    pub placement: StagePlacement,
    /// The CPU kernels.
    pub kernels: KernelSet,
    /// Fused-unit counts of the pilot's launches.
    pub pilot_fused: Vec<usize>,
    /// The pilot graph (every setup measured so far runs a pilot per query head).
    pub pilot: PilotGraph,
    /// Query rows per chunk.
    pub chunk_len: usize,
    /// Rows per linear-graph execution.
    pub linear_tile: usize,
    /// How the linear layers are cut into graphs.
    pub linear_graphs: LinearGraphs,
}

impl SetupChoices {
    /// The prefill of `shape` over `prompt_len` tokens as the setup runs it (selection shared
    /// by GQA groups unless the setup says otherwise, the even budget rule; no decode; W8A8
    /// linear layers).
    pub fn spec(&self, shape: TransformerShape, prompt_len: usize) -> PrefillSpec {
        PrefillSpec {
            ratios: vec![vec![self.ratio; shape.q_heads]; shape.layers],
            prompt_len,
            chunk_len: self.chunk_len,
            placement: self.placement.clone(),
            kernels: self.kernels,
            sharing: self
                .sharing
                .unwrap_or(SelectionSharing::of_groups(shape.q_heads, shape.kv_heads)),
            dense_layers: self.dense_layers.clone(),
            pilot_fused: self.pilot_fused.clone(),
            pilot: self.pilot,
            // The published systems keep the same share of every row.
            budget: shadowattn_hal::BudgetRule::EVEN,
            decode_steps: 0,
            linear: LinearPrecision::W8A8,
            linear_graphs: self.linear_graphs,
            linear_tile: self.linear_tile,
            shape,
        }
    }
}

/// One end of the range of the numbers no phone measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Every unmeasured number at its favourable end.
    Fast,
    /// Every unmeasured number at its unfavourable end.
    Slow,
}

impl End {
    /// Both ends.
    pub const BOTH: [End; 2] = [End::Fast, End::Slow];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            End::Fast => "fast",
            End::Slow => "slow",
        }
    }
}

/// `soc` with its unmeasured numbers at `end`. Two kinds are unmeasured on a phone:
/// - **a kernel's fraction of the FMA peak on an ARM core** (every efficiency was measured on
///   x86): at the fast end every kernel reaches the highest fraction any of the core's kernels
///   was measured at, at the slow end the lowest;
/// - **a launch path's fixed overhead** on this phone: at the fast end no path costs more than
///   a bare FastRPC round trip (the floor of any launch), at the slow end each path costs its
///   profile figure.
pub fn at_end(soc: &SocProfile, end: End) -> SocProfile {
    let mut out = soc.clone();
    for core in &mut out.cpu.cores {
        let measured = [
            real(&core.dense_efficiency),
            real(&core.sparse_row_efficiency),
            real(&core.sparse_tiled_efficiency),
            real(&core.sparse_group_efficiency),
            real(&core.materialized_efficiency),
        ];
        let bound = match end {
            End::Fast => measured.into_iter().fold(0.0, f64::max),
            End::Slow => measured.into_iter().fold(1.0, f64::min),
        };
        for e in [
            &mut core.dense_efficiency,
            &mut core.sparse_row_efficiency,
            &mut core.sparse_tiled_efficiency,
            &mut core.sparse_group_efficiency,
            &mut core.materialized_efficiency,
        ] {
            e.get_mut().value = bound;
        }
    }
    if end == End::Fast {
        let floor = real(&out.npu.launch.fastrpc.fixed_us);
        for path in [&mut out.npu.launch.qnn_copy, &mut out.npu.launch.qnn_shared] {
            let v = &mut path.fixed_us.get_mut().value;
            *v = v.min(floor);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setups_parse_and_the_ends_bound_the_profile() {
        for s in Setup::ALL {
            assert_eq!(s.name().parse::<Setup>().unwrap(), s);
        }
        assert!("port".parse::<Setup>().unwrap_err().contains("mllm-port"));
        let soc = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
        let port = Setup::MllmPort.choices(&soc, 12).unwrap();
        assert_eq!(port.pilot_fused, vec![12, 1]);
        assert!(!port.placement.joint());
        let (fast, slow) = (at_end(&soc, End::Fast), at_end(&soc, End::Slow));
        let mid =
            |p: &SocProfile, f: fn(&crate::npu::profile::CpuCore) -> f64| f(p.core("mid").unwrap());
        let dense = |c: &crate::npu::profile::CpuCore| real(&c.dense_efficiency);
        let row = |c: &crate::npu::profile::CpuCore| real(&c.sparse_row_efficiency);
        assert!(mid(&fast, row) > mid(&soc, row) && mid(&slow, dense) < mid(&soc, dense));
        let fixed = |p: &SocProfile, path| real(&p.npu.launch.costs(path).fixed_us);
        assert!(fixed(&fast, LaunchPath::QnnCopy) < fixed(&soc, LaunchPath::QnnCopy));
        assert_eq!(
            fixed(&slow, LaunchPath::QnnShared),
            fixed(&soc, LaunchPath::QnnShared)
        );
    }
}
