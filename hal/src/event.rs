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

/// The engines events run on: the `track` of a [`ProfileEvent`], one name per engine for every
/// backend, the executor and the simulator.
pub mod track {
    /// Whole NPU launches.
    pub const NPU: &str = "npu";
    /// The NPU's matrix unit.
    pub const MATRIX: &str = "npu:matrix";
    /// The NPU's vector units.
    pub const VECTOR: &str = "npu:vector";
    /// DMA between DDR and the NPU's on-chip memory.
    pub const DMA: &str = "npu:dma";
    /// NPU inputs and outputs through host-shared memory.
    pub const HOST_IO: &str = "npu:host-io";
    /// Graph compilation on the host.
    pub const COMPILE: &str = "compile";
    /// The host thread that issues NPU launches.
    pub const LAUNCHER: &str = "launcher";
    /// Prefix of the CPU workers' tracks.
    const CPU_PREFIX: &str = "cpu";

    /// CPU worker `worker`'s track (`cpu0`, `cpu1`, …).
    pub fn cpu(worker: usize) -> String {
        format!("{CPU_PREFIX}{worker}")
    }

    /// Whether `track` is a CPU worker's.
    pub fn is_cpu(track: &str) -> bool {
        track
            .strip_prefix(CPU_PREFIX)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Whether `track` is the NPU or one of its units.
    pub fn is_npu(track: &str) -> bool {
        track == NPU || track.strip_prefix(NPU).is_some_and(|r| r.starts_with(':'))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn tracks_are_told_apart() {
            assert!(is_cpu(&cpu(0)) && is_cpu(&cpu(12)));
            assert!(!is_cpu("cpu") && !is_cpu("cpux") && !is_cpu(NPU) && !is_cpu(LAUNCHER));
            for t in [NPU, MATRIX, VECTOR, DMA, HOST_IO] {
                assert!(is_npu(t) && !is_cpu(t), "{t}");
            }
            assert!(!is_npu("npux") && !is_npu(COMPILE) && !is_npu(&cpu(1)));
        }
    }
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
