//! `prefill --plot`: each strategy's predicted time to first token as a bar stacked from where
//! the time goes, one group of bars per prompt length.

use super::bars::{Bar, BarChart, Group};
use super::{time_unit, PlotError};
use std::path::Path;

/// The segments of a bar, bottom up: the stages the TTFT adds up (`StageTimes::total_ns`).
pub const SEGMENTS: [&str; 5] = ["linear", "transfers", "attention", "glue", "output head"];

/// One strategy's bar.
pub struct TtftBar {
    /// The strategy's name, under its bar.
    pub strategy: String,
    /// Seconds per segment of [`SEGMENTS`], or `None` when the SoC cannot run the strategy.
    pub stages_s: Option<[f64; 5]>,
}

/// The bars of one prompt length.
pub struct TtftGroup {
    /// Tokens of the prompt.
    pub prompt_len: usize,
    /// One bar per strategy, in the order asked.
    pub bars: Vec<TtftBar>,
}

/// Draws the chart titled `title` to `path`.
pub fn draw(path: &Path, title: &str, groups: &[TtftGroup]) -> Result<(), PlotError> {
    let max = groups
        .iter()
        .flat_map(|g| &g.bars)
        .filter_map(|b| b.stages_s.map(|s| s.iter().sum::<f64>()))
        .fold(0.0, f64::max);
    let (unit, per_unit) = time_unit(max);
    let chart = BarChart {
        title: title.into(),
        y_desc: format!("time to first token ({unit})"),
        series: SEGMENTS.map(String::from).to_vec(),
        groups: groups
            .iter()
            .map(|g| Group {
                label: vec![format!("{} tokens", g.prompt_len)],
                bars: g
                    .bars
                    .iter()
                    .map(|b| Bar {
                        label: Some(b.strategy.clone()),
                        stack: b.stages_s.map(|s| {
                            s.iter()
                                .enumerate()
                                .map(|(i, v)| (i, v / per_unit))
                                .collect()
                        }),
                    })
                    .collect(),
            })
            .collect(),
        slot_px: 64,
        totals: Some(match unit {
            "s" => |t| format!("{t:.2}"),
            _ => |t| format!("{t:.0}"),
        }),
        x_desc: None,
    };
    chart.draw(path)
}
