//! shadowAttn for one prefill chunk of one layer: bucketed INT8 pilot on the NPU backend,
//! top-k and sparse attention on the compute backend, run as a planned pipeline.
//!
//! A chunk is checked, then prepared ([`crate::prepare`]: buckets, launches, plan, padded
//! inputs), then run ([`crate::executor`]: the launcher thread and the CPU workers), then
//! assembled into a [`ChunkResult`]. Decode steps (one query row) use dense attention, and so
//! does every chunk when the graph bank could not be built; both say so.

use crate::bank::GraphBank;
use crate::calibration::Calibration;
use crate::error::{Result, SparseAttnError};
use crate::executor::{run_plan, Executed, LaunchFailure, Work};
use crate::pilot::{head_scales, PilotUnit};
use crate::prepare::Preparation;
pub use crate::prepare::Schedule;
pub use crate::select::Granularity;
use shadowattn_hal::{
    track, AttentionInputs, AttentionShape, ComputeBackend, EventKind, FigureSource, ProfileEvent,
    Selection,
};
use shadowattn_pipeline::{CostModel, Launch, Pipeline, Plan, UnitWork};
use std::sync::Arc;

/// Settings of the online stage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShadowConfig {
    /// Fewest keys a query row keeps.
    pub min_keys: usize,
    /// How rows and heads share key sets: per GQA group (the default), per row, or per block.
    pub granularity: Granularity,
    /// CPU worker threads for top-k and sparse attention.
    pub cpu_workers: usize,
    /// Capacity of the queue between the NPU thread and the workers, in heads.
    pub queue_depth: usize,
    /// Pipeline order.
    pub schedule: Schedule,
    /// Whether one-row chunks (decode steps) use dense attention.
    pub decode_dense: bool,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        ShadowConfig {
            min_keys: 1,
            granularity: Granularity::Group,
            cpu_workers: 1,
            queue_depth: 4,
            schedule: Schedule::Planned,
            decode_dense: true,
        }
    }
}

impl ShadowConfig {
    /// Checks that every setting is in range.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("cpu_workers", self.cpu_workers),
            ("queue_depth", self.queue_depth),
        ] {
            if value == 0 {
                return Err(SparseAttnError::config(field, "must be at least 1"));
            }
        }
        if self.granularity == Granularity::Block(0) {
            return Err(SparseAttnError::config(
                "granularity",
                "blocks need at least one row",
            ));
        }
        Ok(())
    }

    /// The pipeline the executor runs with these settings.
    pub fn pipeline(&self) -> Result<Pipeline> {
        Ok(Pipeline::executor(self.cpu_workers)?)
    }
}

/// How one head was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadPath {
    /// The pilot in `bucket`, top-k and sparse attention.
    Sparse {
        /// The bucket its pilot ran in.
        bucket: usize,
    },
    /// Dense attention, as asked for (a decode step).
    Dense,
    /// Dense attention instead of sparse: the bank is missing or the head's launch failed.
    Fallback,
}

/// What happened to one head.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadReport {
    /// Query head.
    pub head: usize,
    /// Its actual Q scale in this chunk.
    pub q_scale: f32,
    /// Its KV head's actual K scale in this chunk.
    pub k_scale: f32,
    /// Calibrated fraction of keys kept.
    pub ratio: f32,
    /// Keys kept over all rows.
    pub kept: usize,
    /// How it was computed.
    pub path: HeadPath,
}

impl HeadReport {
    /// The bucket its pilot ran in (`None` for dense heads).
    pub fn bucket(&self) -> Option<usize> {
        match self.path {
            HeadPath::Sparse { bucket } => Some(bucket),
            HeadPath::Dense | HeadPath::Fallback => None,
        }
    }

    /// Whether it fell back to dense attention.
    pub fn fallback(&self) -> bool {
        self.path == HeadPath::Fallback
    }
}

/// How a chunk was computed.
#[derive(Clone, Debug, PartialEq)]
pub enum ChunkMode {
    /// shadowAttn: pilot, top-k, sparse attention (heads of failed launches fall back).
    Sparse,
    /// Dense attention for a decode step.
    DenseDecode,
    /// Dense attention because the graph bank could not be built.
    DenseNoBank {
        /// Why the bank is missing.
        reason: String,
    },
}

/// The result of one chunk.
#[derive(Clone, Debug)]
pub struct ChunkResult {
    /// Attention output, `[q_heads, q_len, head_dim]`.
    pub output: Vec<f32>,
    /// Selected keys per head (every valid key for dense heads).
    pub selections: Vec<Selection>,
    /// Per-head report.
    pub heads: Vec<HeadReport>,
    /// The fused launches of units.
    pub launches: Vec<Launch>,
    /// What a unit of the launches is.
    pub unit: PilotUnit,
    /// The plan that ordered them (`None` for dense chunks).
    pub plan: Option<Plan>,
    /// How the chunk was computed.
    pub mode: ChunkMode,
    /// The launches that failed on the NPU.
    pub failures: Vec<LaunchFailure>,
    /// NPU events from the backend, the launcher's measured launches and the measured CPU steps.
    pub events: Vec<ProfileEvent>,
}

/// The times of one chunk, ns: what the CLI prints and the C API hands out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkTimes {
    /// Wall time of the call on this machine.
    pub measured_ns: u64,
    /// The plan's projected layer time under the core's cost model (0 for dense chunks).
    pub projected_ns: u64,
    /// Simulated NPU time of the launches (the simulator's launch events; 0 elsewhere).
    pub simulated_npu_ns: u64,
    /// The CPU workers' busy time: each distinct measured step once (the heads of a group that
    /// shares its selection report the same steps).
    pub cpu_stage_ns: u64,
}

impl ChunkResult {
    /// The chunk's times, its call having taken `measured_ns` on this machine.
    pub fn times(&self, measured_ns: u64) -> ChunkTimes {
        let simulated_npu_ns = self
            .events
            .iter()
            .filter(|e| {
                e.kind == EventKind::Launch
                    && e.source == FigureSource::Simulated
                    && e.track == track::NPU
            })
            .map(|e| e.duration_ns)
            .sum();
        let mut steps: Vec<(&str, u64, u64)> = self
            .events
            .iter()
            .filter(|e| e.kind == EventKind::ComputeStage && track::is_cpu(&e.track))
            .map(|e| (e.track.as_str(), e.start_ns, e.duration_ns))
            .collect();
        steps.sort_unstable();
        steps.dedup();
        ChunkTimes {
            measured_ns,
            projected_ns: self
                .plan
                .as_ref()
                .map_or(0, |p| p.projected_ns.round() as u64),
            simulated_npu_ns,
            cpu_stage_ns: steps.iter().map(|s| s.2).sum(),
        }
    }

    /// The mean of the heads' calibrated ratios.
    pub fn mean_ratio(&self) -> f64 {
        self.heads.iter().map(|h| f64::from(h.ratio)).sum::<f64>() / self.heads.len() as f64
    }

    /// The work each unit did, indexed by unit: the valid keys its top-k ranked (every head's,
    /// or one group ranking the NPU reduced) and the pairs its heads attended to.
    pub fn unit_work(&self, shape: &AttentionShape) -> Vec<UnitWork> {
        let valid_keys: u64 = (0..shape.q_len).map(|i| shape.valid_keys(i) as u64).sum();
        let ranked = match self.unit.npu_ranking() {
            Some(_) => 1,
            None => self.unit.heads() as u64,
        };
        self.selections
            .chunks(self.unit.heads())
            .map(|heads| UnitWork {
                valid_keys: valid_keys * ranked,
                kept_pairs: heads.iter().map(|s| s.kept() as u64).sum(),
            })
            .collect()
    }

    /// The number of units in each launch, in launch order.
    pub fn launch_sizes(&self) -> Vec<usize> {
        self.launches.iter().map(|l| l.units.len()).collect()
    }

    /// Why heads fell back to dense attention, if any did: the missing bank or the first
    /// failed launch.
    pub fn fallback(&self) -> Option<String> {
        match &self.mode {
            ChunkMode::DenseNoBank { reason } => Some(format!("no graph bank: {reason}")),
            _ => self.failures.first().map(LaunchFailure::to_string),
        }
    }
}

/// Refuses a group pilot whose groups are not the model's or whose heads do not share their
/// selection.
fn check_unit(unit: PilotUnit, calibration: &Calibration, config: &ShadowConfig) -> Result<()> {
    let PilotUnit::Group { heads, .. } = unit else {
        return Ok(());
    };
    let m = &calibration.model;
    if heads * m.kv_heads != m.q_heads {
        return Err(SparseAttnError::config(
            "bank.unit",
            format!(
                "the group pilot stacks {heads} heads per group; `{}` has {} query heads over {} KV heads",
                m.name, m.q_heads, m.kv_heads
            ),
        ));
    }
    if config.granularity != Granularity::Group {
        return Err(SparseAttnError::config(
            "granularity",
            format!(
                "the group pilot ranks keys per GQA group; {:?} selection needs the per-head pilot",
                config.granularity
            ),
        ));
    }
    Ok(())
}

/// Whether the graph bank exists.
#[derive(Debug)]
enum BankState {
    /// Built or loaded.
    Ready(Box<GraphBank>),
    /// Could not be built; every chunk runs dense and says why.
    Missing {
        /// Why.
        reason: String,
    },
}

/// The compute backend shadowAttn runs on: borrowed for `'c`, or shared (for an owner that
/// cannot hold a borrow, such as a handle given to C).
#[derive(Clone, Debug)]
pub enum ComputeRef<'c> {
    /// Borrowed.
    Borrowed(&'c dyn ComputeBackend),
    /// Shared ownership.
    Shared(Arc<dyn ComputeBackend>),
}

impl<'c> std::ops::Deref for ComputeRef<'c> {
    type Target = dyn ComputeBackend + 'c;

    fn deref(&self) -> &Self::Target {
        match self {
            ComputeRef::Borrowed(c) => *c,
            ComputeRef::Shared(c) => c.as_ref(),
        }
    }
}

impl<'c> From<&'c dyn ComputeBackend> for ComputeRef<'c> {
    fn from(c: &'c dyn ComputeBackend) -> Self {
        ComputeRef::Borrowed(c)
    }
}

impl<'c, T: ComputeBackend> From<&'c T> for ComputeRef<'c> {
    fn from(c: &'c T) -> Self {
        ComputeRef::Borrowed(c)
    }
}

impl From<Arc<dyn ComputeBackend>> for ComputeRef<'_> {
    fn from(c: Arc<dyn ComputeBackend>) -> Self {
        ComputeRef::Shared(c)
    }
}

/// shadowAttn over a graph bank, a calibration and a compute backend.
#[derive(Debug)]
pub struct ShadowAttention<'c> {
    bank: BankState,
    calibration: Calibration,
    compute: ComputeRef<'c>,
    costs: Box<dyn CostModel + 'c>,
    config: ShadowConfig,
}

impl<'c> ShadowAttention<'c> {
    /// shadowAttn over a built (or loaded) bank, its plans priced by `costs`.
    pub fn new(
        bank: GraphBank,
        calibration: Calibration,
        compute: impl Into<ComputeRef<'c>>,
        costs: impl CostModel + 'c,
        config: ShadowConfig,
    ) -> Result<Self> {
        if bank.grid() != &calibration.grid {
            return Err(SparseAttnError::config(
                "bank",
                "the bank was built for another bucket grid than the calibration's",
            ));
        }
        if bank.spec().head_dim != calibration.model.head_dim {
            return Err(SparseAttnError::config(
                "bank.head_dim",
                format!(
                    "bank head_dim {} vs model head_dim {}",
                    bank.spec().head_dim,
                    calibration.model.head_dim
                ),
            ));
        }
        for &f in bank.fused_counts() {
            costs.launch_ns(f)?;
        }
        check_unit(bank.spec().unit, &calibration, &config)?;
        Self::with_bank(
            BankState::Ready(Box::new(bank)),
            calibration,
            compute,
            costs,
            config,
        )
    }

    /// shadowAttn whose bank could not be built: every chunk runs dense and reports `reason`.
    pub fn without_bank(
        reason: String,
        calibration: Calibration,
        compute: impl Into<ComputeRef<'c>>,
        costs: impl CostModel + 'c,
        config: ShadowConfig,
    ) -> Result<Self> {
        Self::with_bank(
            BankState::Missing { reason },
            calibration,
            compute,
            costs,
            config,
        )
    }

    fn with_bank(
        bank: BankState,
        calibration: Calibration,
        compute: impl Into<ComputeRef<'c>>,
        costs: impl CostModel + 'c,
        config: ShadowConfig,
    ) -> Result<Self> {
        calibration.validate()?;
        config.validate()?;
        costs.validate()?;
        Ok(ShadowAttention {
            bank,
            calibration,
            compute: compute.into(),
            costs: Box::new(costs),
            config,
        })
    }

    /// The graph bank, if it could be built.
    pub fn bank(&self) -> Option<&GraphBank> {
        match &self.bank {
            BankState::Ready(b) => Some(b),
            BankState::Missing { .. } => None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ShadowConfig {
        &self.config
    }

    /// Replaces the settings (validated as in construction).
    pub fn set_config(&mut self, config: ShadowConfig) -> Result<()> {
        config.validate()?;
        if let BankState::Ready(bank) = &self.bank {
            check_unit(bank.spec().unit, &self.calibration, &config)?;
        }
        self.config = config;
        Ok(())
    }

    /// The model that prices launches and steps for the planner.
    pub fn costs(&self) -> &dyn CostModel {
        self.costs.as_ref()
    }

    fn check_chunk(&self, layer: usize, inputs: &AttentionInputs<'_>) -> Result<()> {
        let s = inputs.shape();
        shadowattn_hal::compute::check_finite(inputs)?;
        let m = &self.calibration.model;
        if (s.q_heads, s.kv_heads, s.head_dim) != (m.q_heads, m.kv_heads, m.head_dim) {
            return Err(SparseAttnError::ChunkMismatch {
                detail: format!(
                    "the calibration is for `{}` ({} query heads, {} KV heads, head_dim {}); the chunk has {}, {}, {}",
                    m.name, m.q_heads, m.kv_heads, m.head_dim, s.q_heads, s.kv_heads, s.head_dim
                ),
            });
        }
        self.calibration.layer_ratios(layer)?;
        if let BankState::Ready(bank) = &self.bank {
            let spec = bank.spec();
            if s.q_len > spec.q_len || s.kv_len > spec.kv_len {
                return Err(SparseAttnError::ChunkMismatch {
                    detail: format!(
                        "{} query rows x {} keys exceed the bank's {} x {}; build a bank for longer chunks",
                        s.q_len, s.kv_len, spec.q_len, spec.kv_len
                    ),
                });
            }
        }
        Ok(())
    }

    /// Dense attention of the whole chunk, every head reported on `path`.
    fn dense(
        &self,
        inputs: AttentionInputs<'_>,
        layer: usize,
        mode: ChunkMode,
        path: HeadPath,
    ) -> Result<ChunkResult> {
        let mut output = vec![0.0; inputs.output_len()];
        self.compute.dense_attention(inputs, &mut output)?;
        let ratios = self.calibration.layer_ratios(layer)?;
        let s = inputs.shape();
        let selection = Selection::all_keys(&s);
        let heads = head_scales(&self.calibration.grid, &inputs)
            .iter()
            .enumerate()
            .map(|(h, sc)| HeadReport {
                head: h,
                q_scale: sc.q_scale,
                k_scale: sc.k_scale,
                ratio: ratios[h],
                kept: selection.kept(),
                path,
            })
            .collect();
        Ok(ChunkResult {
            output,
            selections: vec![selection; s.q_heads],
            heads,
            launches: Vec::new(),
            unit: PilotUnit::Head,
            plan: None,
            mode,
            failures: Vec::new(),
            events: Vec::new(),
        })
    }

    /// Runs one chunk of `layer`.
    pub fn run_chunk(&mut self, layer: usize, inputs: AttentionInputs<'_>) -> Result<ChunkResult> {
        self.check_chunk(layer, &inputs)?;
        if inputs.shape().q_len == 1 && self.config.decode_dense {
            return self.dense(inputs, layer, ChunkMode::DenseDecode, HeadPath::Dense);
        }
        let bank = match &mut self.bank {
            BankState::Ready(bank) => bank,
            BankState::Missing { reason } => {
                let mode = ChunkMode::DenseNoBank {
                    reason: reason.clone(),
                };
                return self.dense(inputs, layer, mode, HeadPath::Fallback);
            }
        };
        let ratios = self.calibration.ratios[layer].as_slice();
        let pipeline = self
            .config
            .pipeline()?
            .with_unit(bank.spec().unit.unit_kind());
        let mut keys = Vec::new();
        let pilot_view = if self.calibration.center_keys {
            crate::pilot::with_centered_keys(&inputs, &mut keys)?
        } else {
            inputs
        };
        let prepared = Preparation {
            bank,
            compute: &*self.compute,
            costs: self.costs.as_ref(),
            pipeline: &pipeline,
            schedule: self.config.schedule,
            ratios,
            min_keys: self.config.min_keys,
            budget: self.calibration.budget,
        }
        .prepare(&pilot_view)?;
        let work = Work {
            compute: &*self.compute,
            inputs,
            ratios,
            min_keys: self.config.min_keys,
            granularity: self.config.granularity,
            budget: self.calibration.budget,
            workers: self.config.cpu_workers,
            queue_depth: self.config.queue_depth,
        };
        let Executed {
            heads,
            npu_events,
            failures,
        } = run_plan(bank, &prepared, &work)?;
        let s = inputs.shape();
        let per_head = s.q_len * s.head_dim;
        let mut output = vec![0.0; inputs.output_len()];
        let mut events = npu_events;
        let mut selections = Vec::with_capacity(s.q_heads);
        let mut reports = Vec::with_capacity(s.q_heads);
        for (o, sc) in heads.into_iter().zip(&prepared.scales) {
            output[o.head * per_head..(o.head + 1) * per_head].copy_from_slice(&o.output);
            events.extend(o.events);
            reports.push(HeadReport {
                head: o.head,
                q_scale: sc.q_scale,
                k_scale: sc.k_scale,
                ratio: ratios[o.head],
                kept: o.selection.kept(),
                path: if o.fallback {
                    HeadPath::Fallback
                } else {
                    HeadPath::Sparse { bucket: sc.bucket }
                },
            });
            selections.push(o.selection);
        }
        Ok(ChunkResult {
            output,
            selections,
            heads: reports,
            launches: prepared.launches,
            unit: bank.spec().unit,
            plan: Some(prepared.plan),
            mode: ChunkMode::Sparse,
            failures,
            events,
        })
    }
}
