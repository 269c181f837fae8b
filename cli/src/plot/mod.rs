//! The SVG charts of `--plot`: one file per chart ([`ttft`] for `prefill`, [`bench`] for
//! `bench`, [`perplexity`] for `eval`); the commands gather the numbers and call these.
//!
//! Drawn with plotters' SVG backend and no font feature: every title, axis label, tick label and
//! legend entry is an SVG `<text>` element (the viewer's sans-serif draws it); layout measures
//! text with a per-character estimate, so it leaves generous room. Each legend entry is its
//! swatch followed by its `<text>`, in series order, and a series' marks share the swatch's
//! colour.

mod bars;
pub mod bench;
pub mod perplexity;
pub mod ttft;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

/// Why a chart was not written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The folder the chart goes to does not exist (or is not a folder).
    #[error("cannot write the plot {path}: no folder {folder}")]
    NoFolder {
        /// The chart's path.
        path: PathBuf,
        /// Its folder.
        folder: PathBuf,
    },
    /// Writing the file failed.
    #[error("cannot write the plot {path}: {source}")]
    Write {
        /// The chart's path.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Drawing failed (plotters' error, as text).
    #[error("cannot draw the plot {path}: {message}")]
    Draw {
        /// The chart's path.
        path: PathBuf,
        /// plotters' message.
        message: String,
    },
    /// There is nothing to draw.
    #[error("cannot draw the plot {path}: {what}")]
    Empty {
        /// The chart's path.
        path: PathBuf,
        /// What is missing.
        what: String,
    },
}

/// Refuses a chart path whose folder does not exist, before a command spends its time.
pub fn check_target(path: &Path) -> Result<(), PlotError> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if folder.is_dir() {
        Ok(())
    } else {
        Err(PlotError::NoFolder {
            path: path.to_path_buf(),
            folder: folder.to_path_buf(),
        })
    }
}

/// A drawing error of plotters, with its message.
type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draws a `width`×`height` chart with `draw` into an SVG string and writes it to `path`.
fn render(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> DrawResult,
) -> Result<(), PlotError> {
    check_target(path)?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(Into::into)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(Into::into));
        drawn.map_err(|e| PlotError::Draw {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    std::fs::write(path, svg).map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Tableau's ten colours: distinct, and readable for most colour-blind readers.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
];

/// The `i`-th series' colour (the palette repeats past ten series).
fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Text and line grey.
const INK: RGBColor = RGBColor(0x33, 0x33, 0x33);
/// The reference lines' grey.
const REFERENCE: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// Font sizes in plotters' unit (the SVG's `font-size` is this over 1.24).
const TITLE_PX: u32 = 22;
const TEXT_PX: u32 = 16;
const SMALL_PX: u32 = 14;

/// A generous estimate of `text`'s width at `px` (sans-serif averages about half an em per
/// character; digits and capitals are wider).
fn text_width(text: &str, px: u32) -> i32 {
    (text.chars().count() as f64 * px as f64 / 1.24 * 0.62).ceil() as i32
}

fn style(px: u32) -> TextStyle<'static> {
    ("sans-serif", px).into_font().color(&INK)
}

/// `text` at pixel `at` of `root`, anchored at `anchor`.
fn label(
    root: &DrawingArea<SVGBackend, Shift>,
    text: &str,
    at: (i32, i32),
    px: u32,
    anchor: (HPos, VPos),
) -> DrawResult {
    root.draw(&Text::new(
        text.to_string(),
        at,
        style(px).pos(Pos::new(anchor.0, anchor.1)),
    ))?;
    Ok(())
}

/// What a legend entry's swatch looks like.
enum Swatch {
    /// A filled square (bars).
    Block(RGBColor),
    /// A short line with a marker on it (line series).
    Line(RGBColor, Option<Marker>),
}

/// A point marker of a line series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    Circle,
    Triangle,
    Square,
    Diamond,
}

impl Marker {
    const ALL: [Marker; 4] = [
        Marker::Circle,
        Marker::Triangle,
        Marker::Square,
        Marker::Diamond,
    ];

    /// Draws the marker centred on pixel `at`.
    fn draw(
        self,
        root: &DrawingArea<SVGBackend, Shift>,
        at: (i32, i32),
        c: RGBColor,
    ) -> DrawResult {
        let (x, y) = at;
        let fill = c.filled();
        match self {
            Marker::Circle => root.draw(&Circle::new(at, 4, fill))?,
            Marker::Square => root.draw(&Rectangle::new([(x - 4, y - 4), (x + 4, y + 4)], fill))?,
            Marker::Triangle => root.draw(&Polygon::new(
                vec![(x, y - 5), (x + 5, y + 4), (x - 5, y + 4)],
                fill,
            ))?,
            Marker::Diamond => root.draw(&Polygon::new(
                vec![(x, y - 5), (x + 5, y), (x, y + 5), (x - 5, y)],
                fill,
            ))?,
        }
        Ok(())
    }
}

/// Lays the legend out in rows from `(left, top)` within `width` px: returns the entries'
/// positions and the height the rows take.
fn legend_layout(names: &[String], left: i32, top: i32, width: i32) -> (Vec<(i32, i32)>, i32) {
    const ROW: i32 = 22;
    let (mut x, mut y) = (left, top);
    let mut at = Vec::new();
    for name in names {
        let w = 22 + text_width(name, TEXT_PX) + 18;
        if x > left && x + w > left + width {
            (x, y) = (left, y + ROW);
        }
        at.push((x, y));
        x += w;
    }
    let rows = if names.is_empty() { 0 } else { y - top + ROW };
    (at, rows)
}

/// Draws the legend laid out by [`legend_layout`]: each entry its swatch, then its name.
fn draw_legend(
    root: &DrawingArea<SVGBackend, Shift>,
    entries: &[(String, Swatch)],
    at: &[(i32, i32)],
) -> DrawResult {
    for ((name, swatch), &(x, y)) in entries.iter().zip(at) {
        let mid = y + 8;
        match swatch {
            Swatch::Block(c) => root.draw(&Rectangle::new(
                [(x, mid - 6), (x + 12, mid + 6)],
                c.filled(),
            ))?,
            Swatch::Line(c, marker) => {
                root.draw(&PathElement::new(
                    vec![(x - 2, mid), (x + 16, mid)],
                    c.stroke_width(2),
                ))?;
                if let Some(m) = marker {
                    m.draw(root, (x + 7, mid), *c)?;
                }
            }
        }
        label(
            root,
            name,
            (x + 22, mid),
            TEXT_PX,
            (HPos::Left, VPos::Center),
        )?;
    }
    Ok(())
}

/// A round axis top at or above `max` (1 for an empty or invalid range).
fn nice_max(max: f64) -> f64 {
    if !(max > 0.0 && max.is_finite()) {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// A time unit for values up to `max_s` seconds: its name and seconds per unit.
fn time_unit(max_s: f64) -> (&'static str, f64) {
    if max_s < 1e-3 {
        ("µs", 1e-6)
    } else if max_s < 10.0 {
        ("ms", 1e-3)
    } else {
        ("s", 1.0)
    }
}

/// `v` with the decimals that ticks at least `span / 8` apart on a 1-2-5 grid need.
fn tick(v: f64, span: f64) -> String {
    let least = span / 8.0;
    let magnitude = 10f64.powf(least.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= least * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round_and_cover_the_data() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.3), 8.0);
        assert_eq!(nice_max(1234.0), 1500.0);
        assert_eq!(nice_max(0.011), 0.012);
        for x in [0.3, 1.0, 9.99, 10.0, 17.0, 123.0] {
            assert!(nice_max(x) >= x, "{x}");
        }
    }

    #[test]
    fn ticks_show_the_digits_their_spacing_needs() {
        assert_eq!(tick(250.0, 1000.0), "250");
        assert_eq!(tick(0.5, 2.0), "0.5");
        assert_eq!(tick(0.05, 0.4), "0.05");
        assert_eq!(tick(15.0, 40.0), "15");
        assert_eq!(tick(17.0, 80.0), "17");
    }

    #[test]
    fn legend_rows_wrap_at_the_width() {
        let names: Vec<String> = ["linear", "transfers", "attention"]
            .map(String::from)
            .to_vec();
        let (at, h) = legend_layout(&names, 10, 40, 10_000);
        assert!(at.iter().all(|p| p.1 == 40) && h == 22);
        let (at, h) = legend_layout(&names, 10, 40, 120);
        assert_eq!(at.iter().map(|p| p.1).collect::<Vec<_>>(), [40, 62, 84]);
        assert_eq!(h, 66);
    }

    #[test]
    fn a_missing_folder_is_named() {
        let e = check_target(Path::new("/no/such/folder/x.svg")).unwrap_err();
        assert!(matches!(e, PlotError::NoFolder { .. }));
        assert!(e.to_string().contains("/no/such/folder/x.svg"), "{e}");
        check_target(Path::new("x.svg")).unwrap();
    }
}
