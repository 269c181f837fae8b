//! `bench --plot`: each kernel's median time, one group of bars per shape (and thread count).

use super::bars::{Bar, BarChart, Group};
use super::{time_unit, PlotError};
use std::path::Path;

/// The kernels' times on one shape and thread count.
pub struct KernelGroup {
    /// The label's lines, under the group (the shape, the threads).
    pub label: Vec<String>,
    /// `(kernel, median seconds)`, in the table's order.
    pub times: Vec<(String, f64)>,
}

/// Draws the chart titled `title` to `path`: a series per kernel, in order of first appearance.
pub fn draw(path: &Path, title: &str, groups: &[KernelGroup]) -> Result<(), PlotError> {
    let mut series: Vec<String> = Vec::new();
    for (kernel, _) in groups.iter().flat_map(|g| &g.times) {
        if !series.contains(kernel) {
            series.push(kernel.clone());
        }
    }
    let max = groups
        .iter()
        .flat_map(|g| &g.times)
        .map(|t| t.1)
        .fold(0.0, f64::max);
    let (unit, per_unit) = time_unit(max);
    let chart = BarChart {
        title: title.into(),
        y_desc: format!("median time of one call ({unit})"),
        groups: groups
            .iter()
            .map(|g| Group {
                label: g.label.clone(),
                bars: series
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| {
                        let (_, t) = g.times.iter().find(|(k, _)| k == s)?;
                        Some(Bar {
                            label: None,
                            stack: Some(vec![(i, t / per_unit)]),
                        })
                    })
                    .collect(),
            })
            .collect(),
        series,
        slot_px: 22,
        totals: None,
        x_desc: Some("shape: query heads / KV heads / head dimension / keys".into()),
    };
    chart.draw(path)
}
