//! `--selection`, the same in every subcommand: who shares a key set per query row.

use clap::ValueEnum;
use shadowattn_models::attention::Sharing;
use shadowattn_pipeline::SelectionSharing;
use shadowattn_sparse_attn::select::Granularity;

/// Who shares a key set per query row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SelectionArg {
    /// The query heads of each GQA group share each row's key set, ranked by the sum of their
    /// softmax probabilities; the group keeps the mean of its heads' ratios.
    Group,
    /// Each query head ranks and keeps its own keys per row (`head` is the same).
    #[value(alias = "head")]
    Row,
}

impl SelectionArg {
    /// The core's granularity.
    pub fn granularity(self) -> Granularity {
        match self {
            SelectionArg::Group => Granularity::Group,
            SelectionArg::Row => Granularity::Row,
        }
    }

    /// The real-model harness's sharing.
    pub fn sharing(self) -> Sharing {
        match self {
            SelectionArg::Group => Sharing::PerGroup,
            SelectionArg::Row => Sharing::PerHead,
        }
    }

    /// Who shares a key set in a layer of `q_heads` query and `kv_heads` KV heads: a one-head
    /// group is a key set per head.
    pub fn sharing_of(self, q_heads: usize, kv_heads: usize) -> SelectionSharing {
        match self {
            SelectionArg::Group => SelectionSharing::of_groups(q_heads, kv_heads),
            SelectionArg::Row => SelectionSharing::PerHead,
        }
    }

    /// What the choice means, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            SelectionArg::Group => "per GQA group, shared by the sum of softmax probabilities",
            SelectionArg::Row => "per query head",
        }
    }
}
