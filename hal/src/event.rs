//! Profiling events: timed work reported by backends, kernels and the simulator.

use serde::{Deserialize, Serialize};

/// What a profiling event measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Building and compiling a graph.
    Compile,
    /// One graph launch (execution) on an NPU.
    Launch,
    /// A data movement (host↔device, DMA).
    Transfer,
    /// A compute stage on a CPU or GPU (top-k, sparse attention, …).
    ComputeStage,
}

/// Where the figure of an event comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FigureSource {
    /// Measured with a clock on this machine.
    Measured,
    /// Predicted by the simulator's cost model.
    Simulated,
    /// Estimated by a vendor library (for example QNN's finalize-time estimates).
    VendorEstimate,
}

/// One timed event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileEvent {
    /// What happened (graph, kernel or stage name).
    pub name: String,
    /// What kind of work it was.
    pub kind: EventKind,
    /// The engine it ran on (`npu`, `cpu0`, `dma`, …); timelines draw one track per value.
    pub track: String,
    /// Start in nanoseconds, relative to the reporter's own origin.
    pub start_ns: u64,
    /// Duration in nanoseconds.
    pub duration_ns: u64,
    /// Engine cycles, when the source reports them.
    pub cycles: Option<u64>,
    /// Where the figure comes from.
    pub source: FigureSource,
}

impl ProfileEvent {
    /// End of the event in nanoseconds.
    pub fn end_ns(&self) -> u64 {
        self.start_ns.saturating_add(self.duration_ns)
    }
}
