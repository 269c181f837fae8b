//! Scores and selections: a head's score matrix with its causal placement, how many keys a row
//! keeps, and the selected keys.

use super::inputs::AttentionShape;
use crate::error::{HalError, Result};
use serde::{Deserialize, Serialize};

/// Element values of a score matrix.
#[derive(Clone, Copy, Debug)]
pub enum ScoreData<'a> {
    /// Raw INT32 accumulators (the pilot's MatMul output).
    I32(&'a [i32]),
    /// Requantized INT8 scores.
    I8(&'a [i8]),
    /// Float scores.
    F32(&'a [f32]),
    /// Half-precision scores (a ranking reduced on the NPU), ranked like [`ScoreData::F32`].
    F16(&'a [half::f16]),
}

impl<'a> ScoreData<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ScoreData::I32(d) => d.len(),
            ScoreData::I8(d) => d.len(),
            ScoreData::F32(d) => d.len(),
            ScoreData::F16(d) => d.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements `range`, of the same type.
    pub fn slice(&self, range: std::ops::Range<usize>) -> ScoreData<'a> {
        match *self {
            ScoreData::I32(d) => ScoreData::I32(&d[range]),
            ScoreData::I8(d) => ScoreData::I8(&d[range]),
            ScoreData::F32(d) => ScoreData::F32(&d[range]),
            ScoreData::F16(d) => ScoreData::F16(&d[range]),
        }
    }
}

/// One head's `[rows, cols]` score matrix (query rows × keys) with its causal placement,
/// checked for size and placement.
#[derive(Clone, Copy, Debug)]
pub struct ScoreMatrix<'a> {
    data: ScoreData<'a>,
    rows: usize,
    cols: usize,
    q_offset: usize,
    causal: bool,
}

impl<'a> ScoreMatrix<'a> {
    /// A score matrix whose row `i` sits at absolute position `q_offset + i` and, if `causal`,
    /// sees keys `0..=q_offset + i`.
    pub fn new(
        data: ScoreData<'a>,
        rows: usize,
        cols: usize,
        q_offset: usize,
        causal: bool,
    ) -> Result<Self> {
        if rows == 0 || cols == 0 {
            return Err(HalError::invalid_argument(
                "scores",
                format!("rows and cols must be at least 1, got {rows}x{cols}"),
            ));
        }
        if Some(data.len()) != rows.checked_mul(cols) {
            return Err(HalError::BufferMismatch {
                tensor: "scores".into(),
                detail: format!("expected {rows}x{cols} values, got {}", data.len()),
            });
        }
        if causal && q_offset.checked_add(rows).is_none_or(|end| end > cols) {
            return Err(HalError::invalid_argument(
                "q_offset",
                format!(
                    "causal rows at positions {q_offset}..{} need as many keys but the scores have {cols} columns",
                    q_offset.saturating_add(rows)
                ),
            ));
        }
        Ok(ScoreMatrix {
            data,
            rows,
            cols,
            q_offset,
            causal,
        })
    }

    /// A causal score matrix, checked for size and placement.
    pub fn causal(data: ScoreData<'a>, rows: usize, cols: usize, q_offset: usize) -> Result<Self> {
        Self::new(data, rows, cols, q_offset, true)
    }

    /// The scores of one head of a chunk of `shape`, `[q_len, kv_len]`.
    pub fn for_chunk(data: ScoreData<'a>, shape: &AttentionShape) -> Result<Self> {
        Self::new(
            data,
            shape.q_len,
            shape.kv_len,
            shape.q_offset,
            shape.causal,
        )
    }

    /// The scores, row-major.
    pub fn data(&self) -> ScoreData<'a> {
        self.data
    }

    /// Query rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Keys.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Absolute position of row 0.
    pub fn q_offset(&self) -> usize {
        self.q_offset
    }

    /// Whether row `i` only sees keys `0..=q_offset + i`.
    pub fn is_causal(&self) -> bool {
        self.causal
    }

    /// Number of keys row `i` may select from.
    pub fn valid_keys(&self, row: usize) -> usize {
        if self.causal {
            (self.q_offset + row + 1).min(self.cols)
        } else {
            self.cols
        }
    }

    /// The valid scores of row `i` (its causal prefix); panics if there is no such row.
    pub fn row(&self, i: usize) -> ScoreData<'a> {
        let start = i * self.cols;
        self.data.slice(start..start + self.valid_keys(i))
    }

    /// [`ScoreMatrix::row`], or an error naming its first NaN (NaN has no order to rank by).
    pub fn ordered_row(&self, i: usize) -> Result<ScoreData<'a>> {
        let row = self.row(i);
        let nan = match row {
            ScoreData::F32(d) => d.iter().position(|v| v.is_nan()),
            ScoreData::F16(d) => d.iter().position(|v| v.is_nan()),
            ScoreData::I32(_) | ScoreData::I8(_) => None,
        };
        match nan {
            Some(j) => Err(HalError::invalid_value(
                "scores",
                format!("query row {i}, key {j} is NaN; NaN has no order"),
            )),
            None => Ok(row),
        }
    }
}

/// How many keys each query row keeps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum KeyBudget {
    /// Exactly `k` keys per row; a row with fewer valid keys is an error.
    Fixed(usize),
    /// `ceil(ratio · n)` keys for a row with `n` valid keys, at least `min(min_keys, n)`.
    Ratio {
        /// Fraction of the valid keys kept, in (0, 1].
        ratio: f32,
        /// Floor on the kept count.
        min_keys: usize,
    },
}

impl KeyBudget {
    /// Checks the budget's own parameters.
    pub fn validate(&self) -> Result<()> {
        match *self {
            KeyBudget::Fixed(0) => Err(HalError::invalid_argument("k", "must be at least 1")),
            KeyBudget::Ratio { ratio, .. } if !(ratio > 0.0 && ratio <= 1.0) => Err(
                HalError::invalid_argument("ratio", format!("must be in (0, 1], got {ratio}")),
            ),
            _ => Ok(()),
        }
    }

    /// Keys to keep for a row with `valid` keys; row `row` is named in the error.
    pub fn keys_for(&self, row: usize, valid: usize) -> Result<usize> {
        match *self {
            KeyBudget::Fixed(k) if k > valid => Err(HalError::invalid_argument(
                "k",
                format!("k = {k} exceeds the {valid} keys of the causal prefix of query row {row}"),
            )),
            KeyBudget::Fixed(k) => Ok(k),
            KeyBudget::Ratio { ratio, min_keys } => {
                // The ratio is an f32, exact to half an ulp (0.2 is 0.2000000030): a product
                // within that of a whole number is that number, so 20 % of 5m keys is m.
                let half_ulp = 1.0 - f64::from(f32::EPSILON) / 2.0;
                let k = (f64::from(ratio) * valid as f64 * half_ulp).ceil() as usize;
                Ok(k.max(min_keys.min(valid)).min(valid))
            }
        }
    }
}

/// Selected key indices per query row (compressed rows), each row in ascending key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    row_offsets: Vec<usize>,
    indices: Vec<u32>,
}

impl Default for Selection {
    fn default() -> Self {
        Self::new()
    }
}

impl Selection {
    /// An empty selection with no rows.
    pub fn new() -> Self {
        Selection {
            row_offsets: vec![0],
            indices: Vec::new(),
        }
    }

    /// A selection from compressed rows: `row_offsets[i]..row_offsets[i + 1]` is row `i`'s range
    /// of `indices`; the offsets start at 0, never decrease and end at `indices.len()`.
    pub fn from_parts(row_offsets: Vec<usize>, indices: Vec<u32>) -> Result<Self> {
        let consistent = row_offsets.first() == Some(&0)
            && row_offsets.windows(2).all(|w| w[0] <= w[1])
            && row_offsets.last() == Some(&indices.len());
        if !consistent {
            return Err(HalError::invalid_argument(
                "selection",
                format!(
                    "{} row offsets do not partition {} indices",
                    row_offsets.len(),
                    indices.len()
                ),
            ));
        }
        Ok(Selection {
            row_offsets,
            indices,
        })
    }

    /// Every valid key of each row of a chunk of `shape`: what dense attention attends to.
    pub fn all_keys(shape: &AttentionShape) -> Self {
        let mut s = Selection::new();
        for i in 0..shape.q_len {
            let n = shape.valid_keys(i) as u32;
            s.indices.extend(0..n);
            s.row_offsets.push(s.indices.len());
        }
        s
    }

    /// Appends a row.
    pub fn push_row(&mut self, indices: &[u32]) {
        self.indices.extend_from_slice(indices);
        self.row_offsets.push(self.indices.len());
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.row_offsets.len() - 1
    }

    /// The selected keys of row `i`; panics if there is no such row.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.indices[self.row_offsets[i]..self.row_offsets[i + 1]]
    }

    /// Every selected key, row after row.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    /// Where each row starts in [`Selection::indices`], and the end: `rows() + 1` offsets.
    pub fn row_offsets(&self) -> &[usize] {
        &self.row_offsets
    }

    /// Selected (row, key) pairs over all rows.
    pub fn kept(&self) -> usize {
        self.indices.len()
    }

    /// Checks that the selection fits a chunk: one row per query row, each index valid for its row
    /// (inside the causal prefix) and not repeated. `head` names it in errors.
    pub fn validate_for(&self, head: usize, shape: &AttentionShape) -> Result<()> {
        let what = format!("selection of head {head}");
        if self.rows() != shape.q_len {
            return Err(HalError::invalid_argument(
                what,
                format!("has {} rows but the chunk has {}", self.rows(), shape.q_len),
            ));
        }
        let mut seen = vec![u32::MAX; shape.kv_len];
        for i in 0..self.rows() {
            let valid = shape.valid_keys(i);
            let row = self.row(i);
            if row.is_empty() {
                return Err(HalError::invalid_argument(
                    what,
                    format!("query row {i} selects no key"),
                ));
            }
            for &j in row {
                if j as usize >= valid {
                    return Err(HalError::invalid_argument(
                        what,
                        format!("query row {i} selects key {j}, outside its {valid} valid keys"),
                    ));
                }
                if std::mem::replace(&mut seen[j as usize], i as u32) == i as u32 {
                    return Err(HalError::invalid_argument(
                        what,
                        format!("query row {i} selects key {j} twice"),
                    ));
                }
            }
        }
        Ok(())
    }
}
