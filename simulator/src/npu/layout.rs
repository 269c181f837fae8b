//! How an NPU lays a tensor out in its on-chip memory, and the padding that layout costs.
//!
//! **HTP's crouton layout** (`simulator/socs/qnn/RULES.md` holds the measurements and the
//! commands that show them): an activation `[.., rows, channels]` is stored in blocks of
//! height 8 × width `w` × depth 32, `w` = 8 for 1-byte elements and 4 for wider ones (f16;
//! f32 graphs run in f16). The rows fill height and width:
//! - when `rows` is a multiple of 8 and at least 16, the compiler reshapes them to height 8 ×
//!   width `rows / 8` (its `Reshape_to_h8` ops) and they cost as `rows` rows: QNN's estimates
//!   grow smoothly over 16, 24, …, 64 rows (the width's rounding to `w` shows in the f16
//!   output bytes it writes, not in its cycles);
//! - otherwise the rows lie along the width alone and the height is padded from 1 to 8: 500
//!   rows occupy 8 · 504 = 4,032 at 8 bits, 8 · 500 = 4,000 at 16 (QNN writes that many rows
//!   of output, and prices a 500-row MatMul up to 13× a 512-row one).
//!
//! Channels are rounded up to the depth 32. Constants (weights) keep their own layout and are
//! not padded this way.

use serde::Deserialize;

/// A tensor layout rule (`npu.layout` of a SoC profile).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Rows and channels as they are (no padding beyond the matrix unit's tiles).
    #[default]
    Flat,
    /// HTP's crouton blocks of height 8, width 8 (1-byte) or 4 (wider), depth 32.
    HtpCrouton,
}

/// Rows of a crouton block's height.
const CROUTON_HEIGHT: usize = 8;
/// Channels of a crouton block's depth.
const CROUTON_DEPTH: usize = 32;

impl Layout {
    /// The rows `rows` rows of `elem_bytes`-byte elements occupy.
    pub fn rows(self, rows: usize, elem_bytes: usize) -> usize {
        match self {
            Layout::Flat => rows,
            Layout::HtpCrouton => {
                let width = if elem_bytes <= 1 { 8 } else { 4 };
                let h = CROUTON_HEIGHT;
                if rows.is_multiple_of(h) && rows >= 2 * h {
                    rows
                } else {
                    h * rows.max(1).next_multiple_of(width)
                }
            }
        }
    }

    /// The channels `channels` channels occupy.
    pub fn channels(self, channels: usize) -> usize {
        match self {
            Layout::Flat => channels,
            Layout::HtpCrouton => channels.max(1).next_multiple_of(CROUTON_DEPTH),
        }
    }

    /// The elements a tensor of `shape` (channels its last axis) occupies with its channels
    /// rounded to the depth; its rows as they are (the vector units stream rows, and QNN does
    /// not price a Softmax or a conversion of unfolded rows eightfold: RULES.md §2).
    pub fn elements(self, shape: &[usize]) -> usize {
        match shape {
            [] => 1,
            [outer @ .., c] => outer.iter().product::<usize>() * self.channels(*c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crouton_rows_fold_multiples_of_eight_and_pad_the_rest_eightfold() {
        let c = Layout::HtpCrouton;
        // Unfolded: the output rows QNN writes (its "Output Spill" bytes / columns), socModel
        // 52, RULES.md §2; folded: the rows themselves.
        for (rows, f16_rows, i8_rows) in [
            (1, 32, 64),
            (5, 64, 64),
            (8, 64, 64),
            (9, 96, 128),
            (16, 16, 16),
            (24, 24, 24),
            (100, 800, 832),
            (127, 1024, 1024),
            (128, 128, 128),
            (200, 200, 200),
            (500, 4000, 4032),
            (512, 512, 512),
        ] {
            assert_eq!(c.rows(rows, 2), f16_rows, "f16, {rows} rows");
            assert_eq!(c.rows(rows, 1), i8_rows, "i8, {rows} rows");
        }
        assert_eq!(Layout::Flat.rows(500, 1), 500);
    }

    #[test]
    fn channels_round_to_the_depth_and_elements_multiply_out() {
        let c = Layout::HtpCrouton;
        assert_eq!(c.channels(1), 32);
        assert_eq!(c.channels(80), 96);
        assert_eq!(c.channels(128), 128);
        assert_eq!(c.elements(&[1, 3, 100, 80]), 3 * 100 * 96);
        assert_eq!(Layout::Flat.elements(&[1, 3, 100, 80]), 3 * 100 * 80);
        assert_eq!(c.elements(&[7]), 32);
    }
}
