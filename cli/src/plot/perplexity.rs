//! `eval --plot`: perplexity against the mean fraction of keys kept, a line per allocation and
//! ranking, the dense perplexity as a horizontal reference.

use super::{
    colour, draw_legend, label, legend_layout, nice_max, render, style, text_width, tick,
    DrawResult, Marker, PlotError, Swatch, INK, REFERENCE, SMALL_PX, TEXT_PX, TITLE_PX,
};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use std::path::Path;

/// One sparse run of the table.
pub struct PplRow {
    /// The allocation's label (the series' colour).
    pub allocation: String,
    /// The ranking's label (the series' marker).
    pub ranking: String,
    /// Mean fraction of the valid (row, key) pairs kept.
    pub kept: f64,
    /// Its perplexity.
    pub ppl: f64,
}

/// A line of the chart.
struct Series {
    name: String,
    colour: RGBColor,
    marker: Marker,
    /// `(kept, ppl)` by kept fraction.
    points: Vec<(f64, f64)>,
}

/// The rows as series, one per (allocation, ranking) in order of first appearance: a colour
/// per allocation, a marker per ranking.
fn series(rows: &[PplRow]) -> Vec<Series> {
    let index = |names: &mut Vec<String>, name: &str| match names.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            names.push(name.to_string());
            names.len() - 1
        }
    };
    let (mut allocations, mut rankings) = (Vec::new(), Vec::new());
    let mut series: Vec<Series> = Vec::new();
    for r in rows {
        let name = format!("{}, {}", r.allocation, r.ranking);
        let s = match series.iter().position(|s| s.name == name) {
            Some(i) => &mut series[i],
            None => {
                let a = index(&mut allocations, &r.allocation);
                let k = index(&mut rankings, &r.ranking);
                series.push(Series {
                    name,
                    colour: colour(a),
                    marker: Marker::ALL[k % Marker::ALL.len()],
                    points: Vec::new(),
                });
                series.last_mut().expect("just pushed")
            }
        };
        s.points.push((r.kept, r.ppl));
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    series
}

const MARGIN: i32 = 16;
const WIDTH: i32 = 820;
const PLOT_HEIGHT: i32 = 420;

/// Draws the chart titled `title` to `path`: the rows' series over the `dense` perplexity.
pub fn draw(path: &Path, title: &str, dense: f64, rows: &[PplRow]) -> Result<(), PlotError> {
    if rows.is_empty() {
        return Err(PlotError::Empty {
            path: path.to_path_buf(),
            what: "no sparse runs".into(),
        });
    }
    let series = series(rows);
    let width = WIDTH.max(text_width(title, TITLE_PX) + 2 * MARGIN);
    let mut names = vec![dense_label(dense)];
    names.extend(series.iter().map(|s| s.name.clone()));
    let (legend_at, legend_h) = legend_layout(&names, MARGIN, 44, width - 2 * MARGIN);
    let top = 44 + legend_h + 8;
    let height = top + PLOT_HEIGHT + 64;
    render(path, (width as u32, height as u32), |root| {
        draw_on(
            root,
            title,
            dense,
            &series,
            (width, top),
            (&names, &legend_at),
        )
    })
}

fn dense_label(dense: f64) -> String {
    format!("dense ({dense:.3})")
}

fn draw_on(
    root: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    dense: f64,
    series: &[Series],
    (width, top): (i32, i32),
    (names, legend_at): (&[String], &[(i32, i32)]),
) -> DrawResult {
    label(
        root,
        title,
        (width / 2, 12),
        TITLE_PX,
        (HPos::Center, VPos::Top),
    )?;
    let mut entries = vec![(names[0].clone(), Swatch::Line(REFERENCE, None))];
    entries.extend(
        series
            .iter()
            .map(|s| (s.name.clone(), Swatch::Line(s.colour, Some(s.marker)))),
    );
    draw_legend(root, &entries, legend_at)?;
    let points = || series.iter().flat_map(|s| &s.points);
    let x_max = nice_max(points().map(|p| p.0).fold(0.0, f64::max) * 1.05).min(1.0);
    let (lo, hi) = points()
        .map(|p| p.1)
        .fold((dense, dense), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (_, body) = root.split_vertically(top);
    let mut builder = ChartBuilder::on(&body);
    builder
        .margin_left(MARGIN)
        .margin_right(MARGIN + 8)
        .x_label_area_size(56)
        .y_label_area_size(84);
    // Perplexities that span more than a factor of 4 (few keys kept) on a log scale, so that
    // the differences near dense stay visible.
    if hi > 4.0 * lo && lo > 0.0 {
        let (y0, y1) = (lo / 1.1, hi * 1.1);
        let y = (y0..y1).log_scale().with_key_points(log_ticks(y0, y1));
        let chart = builder.build_cartesian_2d(0.0..x_max, y)?;
        draw_lines(root, chart, dense, series, "perplexity (log scale)")
    } else {
        let pad = ((hi - lo) * 0.06).max(hi.abs() * 1e-3).max(1e-6);
        let chart = builder.build_cartesian_2d(0.0..x_max, (lo - pad).max(0.0)..hi + pad)?;
        draw_lines(root, chart, dense, series, "perplexity")
    }
}

/// The axes, the dense line and the series on `chart`, whose y axis is `y_desc`.
fn draw_lines<Y>(
    root: &DrawingArea<SVGBackend, Shift>,
    mut chart: ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    dense: f64,
    series: &[Series],
    y_desc: &str,
) -> DrawResult
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let x_max = chart.x_range().end;
    let y = chart.y_range();
    let x_ticks = |v: &f64| format!("{} %", tick(v * 100.0, x_max * 100.0));
    let y_ticks = |v: &f64| tick(*v, y.end - y.start);
    chart
        .configure_mesh()
        .x_labels(10)
        .y_labels(8)
        .max_light_lines(0)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .axis_style(INK)
        .x_label_formatter(&x_ticks)
        .y_label_formatter(&y_ticks)
        .label_style(style(SMALL_PX))
        .x_desc("mean fraction of the valid (query, key) pairs kept")
        .y_desc(y_desc)
        .axis_desc_style(style(TEXT_PX))
        .draw()?;
    chart.draw_series([PathElement::new(
        vec![(0.0, dense), (x_max, dense)],
        REFERENCE.stroke_width(1),
    )])?;
    let end = chart.backend_coord(&(x_max, dense));
    label(
        root,
        "dense",
        (end.0 - 4, end.1 - 4),
        SMALL_PX,
        (HPos::Right, VPos::Bottom),
    )?;
    for s in series {
        chart.draw_series([PathElement::new(s.points.clone(), s.colour.stroke_width(2))])?;
        for p in &s.points {
            s.marker.draw(root, chart.backend_coord(p), s.colour)?;
        }
    }
    Ok(())
}

/// Round values from `lo` to `hi` for a log axis: 1-2-5 per decade, or finer for a short range.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let grid = |mantissas: &[f64]| {
        let mut ticks = Vec::new();
        let mut decade = 10f64.powf(lo.log10().floor());
        while decade <= hi {
            ticks.extend(
                mantissas
                    .iter()
                    .map(|m| m * decade)
                    .filter(|t| (lo..=hi).contains(t)),
            );
            decade *= 10.0;
        }
        ticks
    };
    let coarse = grid(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 4 {
        coarse
    } else {
        grid(&[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_are_round_and_inside() {
        assert_eq!(log_ticks(15.0, 700.0), [20.0, 50.0, 100.0, 200.0, 500.0]);
        assert_eq!(log_ticks(25.0, 130.0), [30.0, 40.0, 50.0, 70.0, 100.0]);
    }

    fn row(allocation: &str, ranking: &str, kept: f64) -> PplRow {
        PplRow {
            allocation: allocation.into(),
            ranking: ranking.into(),
            kept,
            ppl: 20.0 / kept,
        }
    }

    #[test]
    fn rows_become_a_series_per_allocation_and_ranking() {
        let rows = [
            row("uniform", "exact", 0.3),
            row("uniform", "pilot", 0.3),
            row("mass", "exact", 0.3),
            row("uniform", "exact", 0.1),
        ];
        let s = series(&rows);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["uniform, exact", "uniform, pilot", "mass, exact"]);
        // Sorted by kept fraction.
        assert_eq!(
            s[0].points.iter().map(|p| p.0).collect::<Vec<_>>(),
            [0.1, 0.3]
        );
        // A colour per allocation, a marker per ranking.
        assert_eq!(s[0].colour, s[1].colour);
        assert_ne!(s[0].colour, s[2].colour);
        assert_eq!(s[0].marker, s[2].marker);
        assert_ne!(s[0].marker, s[1].marker);
    }
}
