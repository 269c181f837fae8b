//! `--split`, `--sinks`, `--recent`, `--floor`, `--cap`, the same in every subcommand: how a
//! selecting unit's keys are spread over the query rows of a chunk.

use clap::{Args, ValueEnum};
use shadowattn_hal::{Anchors, BudgetRule, RowSplit};

/// How a unit's keys are spread over its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    /// Every row keeps the same share of its valid keys.
    Even,
    /// Every row keeps its best keys up to one common share of its probability mass (the share
    /// that spends the budget exactly).
    TopP,
    /// Every row keeps the keys above one common probability (the most mass the budget keeps).
    Threshold,
}

impl SplitArg {
    fn split(self) -> RowSplit {
        match self {
            SplitArg::Even => RowSplit::Even,
            SplitArg::TopP => RowSplit::TopP,
            SplitArg::Threshold => RowSplit::Threshold,
        }
    }
}

/// The budget rule's flags.
#[derive(Args, Clone, Debug)]
pub struct BudgetArgs {
    /// How each selecting unit's keys are spread over its query rows (the unit keeps the same
    /// number of pairs under every split).
    #[arg(long, value_enum)]
    pub split: Option<SplitArg>,
    /// Keys 0..N of every row kept outside the ranking (attention sinks), counted in the budget.
    #[arg(long)]
    pub sinks: Option<usize>,
    /// The last N keys of every row's prefix kept outside the ranking, counted in the budget.
    #[arg(long)]
    pub recent: Option<usize>,
    /// A row keeps at least this fraction of its even share (0 to 1).
    #[arg(long)]
    pub floor: Option<f32>,
    /// A row keeps at most this multiple of its even share (at least 1; `none` for no cap).
    #[arg(long, value_parser = parse_cap)]
    pub cap: Option<Cap>,
}

/// `--cap`: a multiple, or none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cap(pub Option<f32>);

fn parse_cap(s: &str) -> Result<Cap, String> {
    if s == "none" {
        return Ok(Cap(None));
    }
    s.parse::<f32>()
        .map(|c| Cap(Some(c)))
        .map_err(|e| format!("`{s}` is neither a number nor `none`: {e}"))
}

impl BudgetArgs {
    /// `base` with every flag given applied, checked.
    pub fn rule_over(&self, base: BudgetRule) -> Result<BudgetRule, shadowattn_hal::HalError> {
        let rule = BudgetRule {
            split: self.split.map_or(base.split, SplitArg::split),
            anchors: Anchors {
                sinks: self.sinks.unwrap_or(base.anchors.sinks),
                recent: self.recent.unwrap_or(base.anchors.recent),
            },
            floor: self.floor.unwrap_or(base.floor),
            cap: self.cap.map_or(base.cap, |c| c.0),
        };
        rule.validate()?;
        Ok(rule)
    }
}

/// A rule in one line, for reports.
pub fn describe(rule: &BudgetRule) -> String {
    let split = match rule.split {
        RowSplit::Even => "even",
        RowSplit::TopP => "top-p",
        RowSplit::Threshold => "threshold",
    };
    let cap = rule.cap.map_or("none".to_string(), |c| c.to_string());
    format!(
        "split {split}, sinks {}, recent {}, floor {}, cap {cap}",
        rule.anchors.sinks, rule.anchors.recent, rule.floor
    )
}
