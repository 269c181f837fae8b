//! The chunk's layer on the NPU's device model: shadowAttn's pipeline as the device would run
//! the core's plan (and FIFO), beside the three other strategies a user could run.

use super::Res;
use shadowattn_hal::{track, AttentionShape, EventKind, FigureSource, ProfileEvent};
use shadowattn_pipeline::{
    fifo, simulate, DeviceModel, LayerCosts, LayerPrices, NpuStrategies, Pipeline, Plan, Timeline,
    UnitWork,
};
use shadowattn_sparse_attn::shadow::ChunkResult;
use std::sync::Arc;

/// The simulated layer and the strategies it is ranked against.
pub(super) struct SimulatedLayer {
    /// Who runs the CPU steps: "`n` `cluster` core(s) of `device`".
    pub who: String,
    /// The device's name.
    pub device: String,
    /// Simulated compile time of the bank, ms.
    pub compile_ms: f64,
    /// The layer under the core's plan.
    pub planned: Timeline,
    /// The layer in FIFO order.
    pub fifo: Timeline,
    /// Dense attention of every head on the cores, ns.
    pub dense_ns: f64,
    /// The NPU-only strategies.
    pub npu: NpuStrategies,
    /// The NPU launches of the reported run (on the simulator's clock, from 0) and the
    /// simulated CPU stages: the trace's events, made only when a trace is asked for
    /// ([`SimulatedLayer::with_trace`]).
    pub trace: Vec<ProfileEvent>,
}

impl SimulatedLayer {
    /// The simulated compile time among a bank's compile events, ms.
    pub(super) fn compile_ms(events: &[ProfileEvent]) -> f64 {
        events
            .iter()
            .filter(|e| e.kind == EventKind::Compile && e.source == FigureSource::Simulated)
            .map(|e| e.duration_ns as f64 / 1e6)
            .sum()
    }

    /// `result`'s launches and heads priced by the device, with the keys each head really kept,
    /// on `cores` cores of `cluster`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn price(
        device: &dyn DeviceModel,
        prices: &Arc<dyn LayerPrices>,
        result: &ChunkResult,
        plan: &Plan,
        shape: &AttentionShape,
        cluster: &str,
        cores: usize,
        compile_ms: f64,
    ) -> Res<Self> {
        let valid_keys: u64 = (0..shape.q_len).map(|i| shape.valid_keys(i) as u64).sum();
        let work: Vec<UnitWork> = result.unit_work(shape);
        let costs = LayerCosts::priced(prices, &result.launches, &work)?;
        let pipeline = Pipeline::executor(cores)?.with_unit(result.unit.unit_kind());
        let planned = simulate(&pipeline, &result.launches, &costs, plan)?;
        let fifo_order = fifo(&pipeline, &result.launches, &costs)?;
        let fifo = simulate(&pipeline, &result.launches, &costs, &fifo_order)?;
        let dense_ns = prices.dense_ns(valid_keys) * shape.q_heads as f64 / cores as f64;
        Ok(SimulatedLayer {
            who: format!("{cores} {cluster} core(s) of {}", device.name()),
            device: device.name().to_string(),
            compile_ms,
            planned,
            fifo,
            dense_ns,
            npu: device.npu_strategies(shape)?,
            trace: Vec::new(),
        })
    }

    /// The layer with the events of its trace: `result`'s NPU launches and the simulated CPU
    /// stages.
    pub(super) fn with_trace(mut self, result: &ChunkResult) -> Self {
        self.trace = trace(result, &self.planned);
        self
    }

    /// The four strategies, fastest first, with their times in ns.
    pub(super) fn ranking(&self) -> Vec<(&'static str, f64)> {
        let mut strategies = vec![
            ("c/g-full", self.dense_ns),
            ("npu-full-int8", self.npu.full_int8.total_ns()),
            ("npu-fp16-flash", self.npu.fp16_flash.total_ns()),
            ("shadowattn", self.planned.makespan_ns as f64),
        ];
        strategies.sort_by(|a, b| a.1.total_cmp(&b.1));
        strategies
    }
}

/// The NPU launches of the reported run (moved to start at 0) and the simulated CPU stages,
/// aligned.
fn trace(result: &ChunkResult, planned: &Timeline) -> Vec<ProfileEvent> {
    let launches: Vec<&ProfileEvent> = result
        .events
        .iter()
        .filter(|e| track::is_npu(&e.track))
        .collect();
    let origin = launches.iter().map(|e| e.start_ns).min().unwrap_or(0);
    let mut events: Vec<ProfileEvent> = launches
        .into_iter()
        .map(|e| ProfileEvent {
            start_ns: e.start_ns - origin,
            ..e.clone()
        })
        .collect();
    events.extend(
        planned
            .events
            .iter()
            .filter(|e| track::is_cpu(&e.track))
            .cloned(),
    );
    events
}
