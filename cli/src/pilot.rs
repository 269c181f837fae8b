//! `--pilot`, the same in every subcommand: which INT8 pilot ranks the keys.

use clap::ValueEnum;
use shadowattn_sparse_attn::setup::PilotKind;

/// Which pilot ranks the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PilotArg {
    /// `group` where the layer has GQA groups that share their selection and the NPU backend
    /// supports the graph, `group-cpu` where it does not, else `head`.
    Auto,
    /// One launch unit per query head, each carrying its group's K.
    Head,
    /// One launch unit per GQA group (K sent once); the NPU sums the heads' softmax
    /// probabilities and sends one f16 ranking per group.
    Group,
    /// One launch unit per GQA group (K sent once); every head's INT8 scores go to the CPU,
    /// which sums the probabilities.
    GroupCpu,
}

impl PilotArg {
    /// The core's pilot.
    pub fn kind(self) -> PilotKind {
        match self {
            PilotArg::Auto => PilotKind::Auto,
            PilotArg::Head => PilotKind::Head,
            PilotArg::Group => PilotKind::GroupNpuRanked,
            PilotArg::GroupCpu => PilotKind::GroupCpuRanked,
        }
    }
}
