//! Grouped bar charts whose bars may stack several series (the TTFT and bench charts).

use super::{
    colour, draw_legend, label, legend_layout, nice_max, render, style, text_width, tick,
    DrawResult, PlotError, Swatch, INK, SMALL_PX, TEXT_PX, TITLE_PX,
};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use std::path::Path;

/// A grouped bar chart.
pub(super) struct BarChart {
    pub title: String,
    /// The y axis' description, with its unit.
    pub y_desc: String,
    /// The series, in legend order: series `i` has colour `i`.
    pub series: Vec<String>,
    pub groups: Vec<Group>,
    /// Least width of a bar's slot, px.
    pub slot_px: i32,
    /// Writes each bar's total above it.
    pub totals: Option<fn(f64) -> String>,
    /// What the groups are, under their labels.
    pub x_desc: Option<String>,
}

/// Bars side by side under a label.
pub(super) struct Group {
    /// The label's lines, under the group.
    pub label: Vec<String>,
    pub bars: Vec<Bar>,
}

/// One bar: its segments bottom up, or `None` for a bar that has no value (drawn as `n/a`).
pub(super) struct Bar {
    /// A label under the bar.
    pub label: Option<String>,
    /// `(series, value)` from the bottom up.
    pub stack: Option<Vec<(usize, f64)>>,
}

/// Gap between groups, in slots.
const GAP: f64 = 0.8;
const MARGIN: i32 = 16;
const Y_AREA: i32 = 84;
const PLOT_HEIGHT: i32 = 360;
const LINE: i32 = 18;

impl BarChart {
    /// The slot's width: the least, or what the widest bar label needs.
    fn slot_px(&self) -> i32 {
        self.groups
            .iter()
            .flat_map(|g| &g.bars)
            .filter_map(|b| b.label.as_deref())
            .map(|l| text_width(l, SMALL_PX) + 10)
            .fold(self.slot_px, i32::max)
    }

    /// Each group's first slot and width in slots, and the slots in all.
    fn layout(&self, slot_px: i32) -> (Vec<(f64, f64)>, f64) {
        let mut x = GAP / 2.0;
        let mut at = Vec::new();
        for g in &self.groups {
            let label = g
                .label
                .iter()
                .map(|l| text_width(l, TEXT_PX) + 8)
                .max()
                .unwrap_or(0);
            let width = (g.bars.len() as f64).max(label as f64 / slot_px as f64);
            at.push((x, width));
            x += width + GAP;
        }
        (at, x - GAP / 2.0)
    }

    /// Draws the chart to `path`.
    pub fn draw(&self, path: &Path) -> Result<(), PlotError> {
        let empty = |what: &str| PlotError::Empty {
            path: path.to_path_buf(),
            what: what.into(),
        };
        if self.groups.iter().all(|g| g.bars.is_empty()) {
            return Err(empty("no bars"));
        }
        let slot_px = self.slot_px();
        let (at, slots) = self.layout(slot_px);
        let plot_width = (slots * slot_px as f64).ceil() as i32;
        let width = (2 * MARGIN + Y_AREA + plot_width)
            .max(text_width(&self.title, TITLE_PX) + 2 * MARGIN)
            .max(560);
        let (legend_at, legend_h) = legend_layout(&self.series, MARGIN, 44, width - 2 * MARGIN);
        let top = 44 + legend_h + 8;
        let bar_labels = bars_labelled(&self.groups);
        let group_lines = self.groups.iter().map(|g| g.label.len()).max().unwrap_or(0);
        let lines = i32::from(bar_labels) + group_lines as i32 + i32::from(self.x_desc.is_some());
        let x_area = 8 + LINE * lines + 8;
        let height = top + PLOT_HEIGHT + x_area;
        render(path, (width as u32, height as u32), |root| {
            self.draw_on(root, (width, top, x_area), (&at, slots), &legend_at)
        })
    }

    fn draw_on(
        &self,
        root: &DrawingArea<SVGBackend, Shift>,
        (width, top, x_area): (i32, i32, i32),
        (at, slots): (&[(f64, f64)], f64),
        legend_at: &[(i32, i32)],
    ) -> DrawResult {
        label(
            root,
            &self.title,
            (width / 2, 12),
            TITLE_PX,
            (HPos::Center, VPos::Top),
        )?;
        let entries: Vec<(String, Swatch)> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), Swatch::Block(colour(i))))
            .collect();
        draw_legend(root, &entries, legend_at)?;
        let total = |b: &Bar| b.stack.as_ref().map(|s| s.iter().map(|p| p.1).sum::<f64>());
        let max = self
            .groups
            .iter()
            .flat_map(|g| &g.bars)
            .filter_map(total)
            .fold(0.0, f64::max);
        let y_max = nice_max(max * if self.totals.is_some() { 1.08 } else { 1.0 });
        let (_, body) = root.split_vertically(top);
        let mut chart = ChartBuilder::on(&body)
            .margin_left(MARGIN)
            .margin_right(MARGIN)
            .x_label_area_size(x_area)
            .y_label_area_size(Y_AREA)
            .build_cartesian_2d(0.0..slots, 0.0..y_max)?;
        let ticks = |v: &f64| tick(*v, y_max);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(8)
            .y_max_light_lines(0)
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
            .axis_style(INK)
            .y_label_formatter(&ticks)
            .label_style(style(SMALL_PX))
            .y_desc(&self.y_desc)
            .axis_desc_style(style(TEXT_PX))
            .draw()?;
        // Bar `j` of group `g` spans the middle 80 % of its slot.
        let bar_x = |g: usize, j: usize| {
            let (x0, w) = at[g];
            let n = self.groups[g].bars.len() as f64;
            x0 + (w - n) / 2.0 + j as f64
        };
        // One series after the other, so that a series' bars are drawn together.
        for s in 0..self.series.len() {
            let mut rects = Vec::new();
            for (g, group) in self.groups.iter().enumerate() {
                for (j, bar) in group.bars.iter().enumerate() {
                    let Some(stack) = &bar.stack else { continue };
                    let mut bottom = 0.0;
                    for &(series, v) in stack {
                        if series == s {
                            let x = bar_x(g, j);
                            rects.push(Rectangle::new(
                                [(x + 0.1, bottom), (x + 0.9, bottom + v)],
                                colour(s).filled(),
                            ));
                        }
                        bottom += v;
                    }
                }
            }
            chart.draw_series(rects)?;
        }
        let base = chart.backend_coord(&(0.0, 0.0)).1;
        for (g, group) in self.groups.iter().enumerate() {
            for (j, bar) in group.bars.iter().enumerate() {
                let x = chart.backend_coord(&(bar_x(g, j) + 0.5, 0.0)).0;
                match (total(bar), self.totals) {
                    (Some(t), Some(format)) => {
                        let y = chart.backend_coord(&(0.0, t)).1;
                        label(
                            root,
                            &format(t),
                            (x, y - 3),
                            SMALL_PX,
                            (HPos::Center, VPos::Bottom),
                        )?;
                    }
                    (None, _) => label(
                        root,
                        "n/a",
                        (x, base - 3),
                        SMALL_PX,
                        (HPos::Center, VPos::Bottom),
                    )?,
                    _ => {}
                }
                if let Some(l) = &bar.label {
                    label(root, l, (x, base + 8), SMALL_PX, (HPos::Center, VPos::Top))?;
                }
            }
            let (x0, w) = at[g];
            let x = chart.backend_coord(&(x0 + w / 2.0, 0.0)).0;
            let first = base + 8 + if bars_labelled(&self.groups) { LINE } else { 0 };
            for (k, line) in group.label.iter().enumerate() {
                label(
                    root,
                    line,
                    (x, first + LINE * k as i32),
                    TEXT_PX,
                    (HPos::Center, VPos::Top),
                )?;
            }
        }
        if let Some(desc) = &self.x_desc {
            let lines = self.groups.iter().map(|g| g.label.len()).max().unwrap_or(0);
            let first = base + 8 + if bars_labelled(&self.groups) { LINE } else { 0 };
            let (left, right) = (
                chart.backend_coord(&(0.0, 0.0)).0,
                chart.backend_coord(&(slots, 0.0)).0,
            );
            label(
                root,
                desc,
                ((left + right) / 2, first + LINE * lines as i32 + 4),
                SMALL_PX,
                (HPos::Center, VPos::Top),
            )?;
        }
        Ok(())
    }
}

fn bars_labelled(groups: &[Group]) -> bool {
    groups
        .iter()
        .flat_map(|g| &g.bars)
        .any(|b| b.label.is_some())
}
