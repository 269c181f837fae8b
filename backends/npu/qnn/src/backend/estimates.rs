//! Qualcomm's cost-model estimate of one execution, read from finalize's profile events.

use super::profiling::find_event;
use crate::sys::calls::Event;
use crate::sys::ProfileEventType;
use serde::{Deserialize, Serialize};
use shadowattn_hal::{track, EventKind, FigureSource, ProfileEvent};

/// Qualcomm's finalize-time cost-model estimate of one execution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct VendorEstimate {
    /// Simulated accelerator cycles.
    pub cycles: u64,
    /// Lower estimate.
    pub cycles_lower: u64,
    /// Upper estimate.
    pub cycles_upper: u64,
    /// Simulated time, µs.
    pub micros: u64,
    /// The estimate's DDR traffic (0 where QNN reports none).
    #[serde(default)]
    pub traffic: DdrTraffic,
    /// Ops of the compiled graph the estimate has no cost for (they add nothing to `cycles`).
    #[serde(default)]
    pub missing_ops: u64,
}

/// The DDR traffic of Qualcomm's estimated execution ("Bandwidth Stats"), bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DdrTraffic {
    /// Graph inputs read.
    pub input_fill: u64,
    /// Intermediates read back.
    pub intermediate_fill: u64,
    /// Intermediates written out.
    pub intermediate_spill: u64,
    /// Graph outputs written.
    pub output_spill: u64,
}

impl VendorEstimate {
    /// The estimate in `events`, when they hold the simulated cycle count.
    pub(super) fn from_events(events: &[Event]) -> Option<Self> {
        let v = |t| find_event(events, t).map(|e| e.value);
        Some(VendorEstimate {
            cycles: v(ProfileEventType::HTP_SIM_EXEC_CYCLES)?,
            cycles_lower: v(ProfileEventType::HTP_SIM_EXEC_LOWER_CYCLES).unwrap_or(0),
            cycles_upper: v(ProfileEventType::HTP_SIM_EXEC_UPPER_CYCLES).unwrap_or(0),
            micros: v(ProfileEventType::HTP_SIM_EXEC_TIME_US).unwrap_or(0),
            traffic: DdrTraffic {
                input_fill: v(ProfileEventType::HTP_BW_INPUT_FILL).unwrap_or(0),
                intermediate_fill: v(ProfileEventType::HTP_BW_INTERMEDIATE_FILL).unwrap_or(0),
                intermediate_spill: v(ProfileEventType::HTP_BW_INTERMEDIATE_SPILL).unwrap_or(0),
                output_spill: v(ProfileEventType::HTP_BW_OUTPUT_SPILL).unwrap_or(0),
            },
            missing_ops: v(ProfileEventType::HTP_MISSING_OPS).unwrap_or(0),
        })
    }

    /// The estimate as a launch event of graph `graph_name` on the NPU track.
    pub(super) fn launch_event(&self, graph_name: &str) -> ProfileEvent {
        ProfileEvent {
            name: format!(
                "qnn estimate {} ({} cycles, {}..{})",
                graph_name, self.cycles, self.cycles_lower, self.cycles_upper
            ),
            kind: EventKind::Launch,
            track: track::NPU.into(),
            start_ns: 0,
            duration_ns: self.micros * 1000,
            cycles: Some(self.cycles),
            source: FigureSource::VendorEstimate,
        }
    }
}
