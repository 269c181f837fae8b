//! The compute-kernel contract for CPU/GPU: quantization, causal top-k, sparse and dense attention.
//!
//! # Layouts
//! Q is `[q_heads, q_len, head_dim]`, K and V are `[kv_heads, kv_len, head_dim]`, outputs are
//! `[q_heads, q_len, head_dim]`, all row-major f32. Query head `h` reads KV head
//! `h / (q_heads / kv_heads)` (grouped-query attention). Query row `i` sits at absolute position
//! `q_offset + i`; with a causal mask it sees keys `0..=q_offset + i`.
//!
//! # Top-k selection
//! The k keys with the highest scores; among equal scores, the **lower key index** is kept.
//! A selection row lists its keys in **ascending key order** (which also makes the gather of K
//! and V rows sequential). Every backend must select exactly this set.

use crate::error::{HalError, Result};
use serde::{Deserialize, Serialize};

/// Shape and masking of one prefill attention chunk.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionShape {
    /// Number of query heads.
    pub q_heads: usize,
    /// Number of key/value heads; divides `q_heads`.
    pub kv_heads: usize,
    /// Query rows in the chunk.
    pub q_len: usize,
    /// Keys available (prefix plus chunk).
    pub kv_len: usize,
    /// Dimension of each head.
    pub head_dim: usize,
    /// Absolute position of the chunk's first query row.
    pub q_offset: usize,
    /// Whether row `i` only sees keys `0..=q_offset + i`.
    pub causal: bool,
    /// Multiplier of the scores before softmax (usually `1/√head_dim`).
    pub scale: f32,
}

impl AttentionShape {
    /// Largest score matrix accepted, in elements over all query heads (`q_heads × q_len × kv_len`):
    /// 1 GiB of f32 scores, far above a phone's prefill chunk and below what one machine can hold.
    pub const MAX_SCORE_ELEMENTS: usize = 1 << 28;

    /// A causal chunk with the default scale `1/√head_dim`.
    pub fn causal(
        q_heads: usize,
        kv_heads: usize,
        q_len: usize,
        kv_len: usize,
        head_dim: usize,
    ) -> Self {
        AttentionShape {
            q_heads,
            kv_heads,
            q_len,
            kv_len,
            head_dim,
            q_offset: kv_len.saturating_sub(q_len),
            causal: true,
            scale: 1.0 / (head_dim as f32).sqrt(),
        }
    }

    /// Checks that the numbers describe a real chunk.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("q_heads", self.q_heads),
            ("kv_heads", self.kv_heads),
            ("q_len", self.q_len),
            ("kv_len", self.kv_len),
            ("head_dim", self.head_dim),
        ] {
            if v == 0 {
                return Err(HalError::invalid_argument(name, "must be at least 1"));
            }
        }
        if self.causal && self.q_len > self.kv_len {
            return Err(HalError::invalid_argument(
                "q_len",
                format!(
                    "{} causal query rows need at least as many keys, but kv_len is {}",
                    self.q_len, self.kv_len
                ),
            ));
        }
        if self.q_heads % self.kv_heads != 0 {
            return Err(HalError::invalid_argument(
                "kv_heads",
                format!(
                    "{} query heads cannot be grouped over {} KV heads",
                    self.q_heads, self.kv_heads
                ),
            ));
        }
        if self.causal && self.q_offset + self.q_len > self.kv_len {
            return Err(HalError::invalid_argument(
                "q_offset",
                format!(
                    "causal rows at positions {}..{} need {} keys but kv_len is {}",
                    self.q_offset,
                    self.q_offset + self.q_len,
                    self.q_offset + self.q_len,
                    self.kv_len
                ),
            ));
        }
        let scores = self
            .q_heads
            .checked_mul(self.q_len)
            .and_then(|n| n.checked_mul(self.kv_len));
        if scores.is_none_or(|n| n > Self::MAX_SCORE_ELEMENTS) {
            return Err(HalError::invalid_argument(
                "kv_len",
                format!(
                    "{} heads × {} rows × {} keys exceed the limit of {} score elements per chunk; split the prefill into smaller chunks",
                    self.q_heads,
                    self.q_len,
                    self.kv_len,
                    Self::MAX_SCORE_ELEMENTS
                ),
            ));
        }
        if !self.scale.is_finite() || self.scale <= 0.0 {
            return Err(HalError::invalid_argument(
                "scale",
                format!("must be finite and positive, got {}", self.scale),
            ));
        }
        Ok(())
    }

    /// The KV head read by query head `h`.
    pub fn kv_head_of(&self, h: usize) -> usize {
        h / (self.q_heads / self.kv_heads)
    }

    /// Number of keys query row `i` may attend to.
    pub fn valid_keys(&self, row: usize) -> usize {
        if self.causal {
            (self.q_offset + row + 1).min(self.kv_len)
        } else {
            self.kv_len
        }
    }
}

/// Borrowed Q, K and V of one chunk, checked against its shape.
#[derive(Clone, Copy, Debug)]
pub struct AttentionInputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    shape: AttentionShape,
}

impl<'a> AttentionInputs<'a> {
    /// Borrowed inputs, checked against `shape`: Q `[q_heads, q_len, head_dim]`, K and V
    /// `[kv_heads, kv_len, head_dim]`.
    pub fn new(q: &'a [f32], k: &'a [f32], v: &'a [f32], shape: AttentionShape) -> Result<Self> {
        shape.validate()?;
        let s = &shape;
        for (name, got, want) in [
            ("q", q.len(), s.q_heads * s.q_len * s.head_dim),
            ("k", k.len(), s.kv_heads * s.kv_len * s.head_dim),
            ("v", v.len(), s.kv_heads * s.kv_len * s.head_dim),
        ] {
            if got != want {
                return Err(HalError::BufferMismatch {
                    tensor: name.into(),
                    detail: format!("expected {want} elements for {s:?}, got {got}"),
                });
            }
        }
        Ok(AttentionInputs { q, k, v, shape })
    }

    /// Shape and masking.
    pub fn shape(&self) -> AttentionShape {
        self.shape
    }

    /// Every query, `[q_heads, q_len, head_dim]`.
    pub fn q(&self) -> &'a [f32] {
        self.q
    }

    /// Every key, `[kv_heads, kv_len, head_dim]`.
    pub fn k(&self) -> &'a [f32] {
        self.k
    }

    /// Every value, `[kv_heads, kv_len, head_dim]`.
    pub fn v(&self) -> &'a [f32] {
        self.v
    }

    /// The queries of query head `h`, `[q_len, head_dim]`; panics if there is no such head.
    pub fn q_head(&self, h: usize) -> &'a [f32] {
        let n = self.shape.q_len * self.shape.head_dim;
        &self.q[h * n..(h + 1) * n]
    }

    /// Query row `i` of query head `h`, `[head_dim]`; panics if there is no such row.
    pub fn q_row(&self, h: usize, i: usize) -> &'a [f32] {
        let d = self.shape.head_dim;
        &self.q_head(h)[i * d..(i + 1) * d]
    }

    /// The keys of KV head `g`, `[kv_len, head_dim]`; panics if there is no such head.
    pub fn k_head(&self, g: usize) -> &'a [f32] {
        let n = self.shape.kv_len * self.shape.head_dim;
        &self.k[g * n..(g + 1) * n]
    }

    /// The values of KV head `g`, `[kv_len, head_dim]`; panics if there is no such head.
    pub fn v_head(&self, g: usize) -> &'a [f32] {
        let n = self.shape.kv_len * self.shape.head_dim;
        &self.v[g * n..(g + 1) * n]
    }

    /// Query head `h` with its KV head as single-head inputs; panics if there is no such head.
    pub fn head(&self, h: usize) -> AttentionInputs<'a> {
        let g = self.shape.kv_head_of(h);
        AttentionInputs {
            q: self.q_head(h),
            k: self.k_head(g),
            v: self.v_head(g),
            shape: AttentionShape {
                q_heads: 1,
                kv_heads: 1,
                ..self.shape
            },
        }
    }

    /// KV head `g` with the query heads that read it, as single-KV-head inputs; panics if there
    /// is no such KV head.
    pub fn group(&self, g: usize) -> AttentionInputs<'a> {
        let per_group = self.shape.q_heads / self.shape.kv_heads;
        let n = self.shape.q_len * self.shape.head_dim;
        AttentionInputs {
            q: &self.q[g * per_group * n..(g + 1) * per_group * n],
            k: self.k_head(g),
            v: self.v_head(g),
            shape: AttentionShape {
                q_heads: per_group,
                kv_heads: 1,
                ..self.shape
            },
        }
    }

    /// Number of elements of the output, `q_heads · q_len · head_dim`.
    pub fn output_len(&self) -> usize {
        self.shape.q_heads * self.shape.q_len * self.shape.head_dim
    }

    /// Exact unscaled scores `q·kᵀ` of query head `head` (f64 accumulation), `[q_len, kv_len]`.
    pub fn exact_scores(&self, head: usize) -> Result<Vec<f32>> {
        let s = self.shape;
        if head >= s.q_heads {
            return Err(HalError::invalid_argument(
                "head",
                format!("head {head} does not exist ({} query heads)", s.q_heads),
            ));
        }
        let d = s.head_dim;
        let keys = self.k_head(s.kv_head_of(head));
        let mut scores = Vec::with_capacity(s.q_len * s.kv_len);
        for q in self.q_head(head).chunks_exact(d) {
            for k in keys.chunks_exact(d) {
                let dot: f64 = q
                    .iter()
                    .zip(k)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum();
                scores.push(dot as f32);
            }
        }
        Ok(scores)
    }
}

/// Borrowed f32 data laid out `[heads, rows, dim]`, checked against its size.
#[derive(Clone, Copy, Debug)]
pub struct HeadsView<'a> {
    data: &'a [f32],
    heads: usize,
    rows: usize,
    dim: usize,
}

impl<'a> HeadsView<'a> {
    /// A view, checking that `data` holds `heads · rows · dim` values.
    pub fn new(data: &'a [f32], heads: usize, rows: usize, dim: usize) -> Result<Self> {
        if heads == 0 || rows == 0 || dim == 0 {
            return Err(HalError::invalid_argument(
                "heads/rows/dim",
                format!("must all be at least 1, got {heads}/{rows}/{dim}"),
            ));
        }
        if Some(data.len()) != heads.checked_mul(rows).and_then(|n| n.checked_mul(dim)) {
            return Err(HalError::BufferMismatch {
                tensor: "heads".into(),
                detail: format!("expected {heads}·{rows}·{dim} values, got {}", data.len()),
            });
        }
        Ok(HeadsView {
            data,
            heads,
            rows,
            dim,
        })
    }

    /// Every value.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Rows per head.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The values of head `h`; panics if there is no such head.
    pub fn head(&self, h: usize) -> &'a [f32] {
        let n = self.rows * self.dim;
        &self.data[h * n..(h + 1) * n]
    }
}

/// Symmetric INT8 data with one scale per head (zero point 0), laid out `[heads, rows, dim]`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedHeads {
    data: Vec<i8>,
    scales: Vec<f32>,
    rows: usize,
    dim: usize,
}

impl QuantizedHeads {
    /// Quantized heads, checking that `data` holds `scales.len() · rows · dim` values and that
    /// every scale is finite and positive.
    pub fn new(data: Vec<i8>, scales: Vec<f32>, rows: usize, dim: usize) -> Result<Self> {
        let heads = scales.len();
        if heads == 0 || rows == 0 || dim == 0 {
            return Err(HalError::invalid_argument(
                "heads/rows/dim",
                format!("must all be at least 1, got {heads}/{rows}/{dim}"),
            ));
        }
        if data.len() != heads * rows * dim {
            return Err(HalError::BufferMismatch {
                tensor: "quantized heads".into(),
                detail: format!("expected {heads}·{rows}·{dim} values, got {}", data.len()),
            });
        }
        check_scales(&scales)?;
        Ok(QuantizedHeads {
            data,
            scales,
            rows,
            dim,
        })
    }

    /// Every quantized value.
    pub fn data(&self) -> &[i8] {
        &self.data
    }

    /// The quantized values, taken.
    pub fn into_data(self) -> Vec<i8> {
        self.data
    }

    /// One scale per head.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.scales.len()
    }

    /// Rows per head.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The quantized values of head `h`; panics if there is no such head.
    pub fn head(&self, h: usize) -> &[i8] {
        let n = self.rows * self.dim;
        &self.data[h * n..(h + 1) * n]
    }
}

/// Element values of a score matrix.
#[derive(Clone, Copy, Debug)]
pub enum ScoreData<'a> {
    /// Raw INT32 accumulators (the pilot's MatMul output).
    I32(&'a [i32]),
    /// Requantized INT8 scores.
    I8(&'a [i8]),
    /// Float scores.
    F32(&'a [f32]),
}

impl<'a> ScoreData<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ScoreData::I32(d) => d.len(),
            ScoreData::I8(d) => d.len(),
            ScoreData::F32(d) => d.len(),
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

/// What a compute backend computes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeCapabilities {
    /// The type K and V are stored in for attention: `F32`, or `F16` (accumulation stays f32);
    /// attention results are judged with this type's tolerances.
    pub kv_storage: crate::DType,
}

/// Compute kernels on host memory (CPU now, GPU later).
///
/// Object safe, so a kernel backend can be chosen by name at run time.
pub trait ComputeBackend: Send + Sync + std::fmt::Debug {
    /// The backend's registry name.
    fn name(&self) -> &str;

    /// What the backend computes with.
    fn capabilities(&self) -> ComputeCapabilities;

    /// Symmetric INT8 quantization, one scale per head. With `scales = None` each head's scale is
    /// `max|x| / 127` (1.0 for an all-zero head); with given scales, values saturate to ±127.
    fn quantize_heads(&self, x: HeadsView<'_>, scales: Option<&[f32]>) -> Result<QuantizedHeads>;

    /// Top-k keys per query row over the row's causal prefix (see the module docs for ties), each
    /// row in ascending key order.
    fn topk(&self, scores: ScoreMatrix<'_>, budget: KeyBudget) -> Result<Selection>;

    /// Softmax·V over each row's selected keys only (renormalised), one selection per query head.
    /// Writes `[q_heads, q_len, head_dim]` into `out`.
    fn sparse_attention(
        &self,
        inputs: AttentionInputs<'_>,
        selections: &[Selection],
        out: &mut [f32],
    ) -> Result<()>;

    /// Full softmax attention over every valid key. Writes `[q_heads, q_len, head_dim]` into `out`.
    fn dense_attention(&self, inputs: AttentionInputs<'_>, out: &mut [f32]) -> Result<()>;

    /// Top-k keys per query row shared by a GQA group's heads, ranked by the sum of their softmax
    /// probabilities ([`crate::group`] defines the ranking exactly), each row ascending.
    ///
    /// The default computes the ranking on the host and calls [`ComputeBackend::topk`] on it.
    fn topk_group(&self, group: &crate::GroupScores<'_>, budget: KeyBudget) -> Result<Selection> {
        budget.validate()?;
        let m = group.placement();
        let (rows, cols) = (m.rows(), m.cols());
        let mut ranks = vec![0.0f32; rows * cols];
        let mut row = Vec::new();
        for i in 0..rows {
            group.ranking(i, &mut row);
            ranks[i * cols..i * cols + row.len()].copy_from_slice(&row);
        }
        let scores = ScoreMatrix::new(
            ScoreData::F32(&ranks),
            rows,
            cols,
            m.q_offset(),
            m.is_causal(),
        )?;
        self.topk(scores, budget)
    }

    /// Softmax·V where the query heads of each KV head share one selection (`selections` has one
    /// per KV head). Writes `[q_heads, q_len, head_dim]` into `out`.
    ///
    /// The default gives every head its group's selection and calls
    /// [`ComputeBackend::sparse_attention`].
    fn sparse_attention_grouped(
        &self,
        inputs: AttentionInputs<'_>,
        selections: &[Selection],
        out: &mut [f32],
    ) -> Result<()> {
        crate::group::check_grouped_call(&inputs, selections, out)?;
        self.sparse_attention(inputs, &crate::group::per_head(&inputs, selections), out)
    }

    /// Measured profiling events of the calls since the last take, for timelines; empty for
    /// backends that do not record them.
    fn take_events(&self) -> Vec<crate::ProfileEvent> {
        Vec::new()
    }
}

/// Checks an output buffer's length for `inputs`.
pub fn check_output_len(inputs: &AttentionInputs<'_>, out: &[f32]) -> Result<()> {
    if out.len() != inputs.output_len() {
        return Err(HalError::BufferMismatch {
            tensor: "out".into(),
            detail: format!(
                "expected {} elements, got {}",
                inputs.output_len(),
                out.len()
            ),
        });
    }
    Ok(())
}

/// Errors on any non-finite Q, K or V value (`InvalidValue` naming the tensor and element).
pub fn check_finite(inputs: &AttentionInputs<'_>) -> Result<()> {
    for (name, data) in [("q", inputs.q), ("k", inputs.k), ("v", inputs.v)] {
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(HalError::invalid_value(
                name,
                format!("element {i} is {}", data[i]),
            ));
        }
    }
    Ok(())
}

/// Checks a dense-attention call for every backend: shape, output length and finite inputs.
pub fn check_dense_call(inputs: &AttentionInputs<'_>, out: &[f32]) -> Result<()> {
    inputs.shape.validate()?;
    check_output_len(inputs, out)?;
    check_finite(inputs)
}

/// Checks a sparse-attention call: as [`check_dense_call`], plus one valid selection per head.
pub fn check_sparse_call(
    inputs: &AttentionInputs<'_>,
    selections: &[Selection],
    out: &[f32],
) -> Result<()> {
    check_dense_call(inputs, out)?;
    let s = inputs.shape;
    if selections.len() != s.q_heads {
        return Err(HalError::invalid_argument(
            "selections",
            format!(
                "{} selections for {} query heads",
                selections.len(),
                s.q_heads
            ),
        ));
    }
    for (h, sel) in selections.iter().enumerate() {
        sel.validate_for(h, &s)?;
    }
    Ok(())
}

/// K or V (named `name` in errors) converted to f16 storage; a value beyond the f16 range is
/// refused rather than stored as infinity.
pub fn kv_to_f16(name: &str, data: &[f32]) -> Result<Vec<half::f16>> {
    let max = f32::from(half::f16::MAX);
    if let Some(i) = data.iter().position(|v| v.abs() > max) {
        return Err(HalError::invalid_value(
            name,
            format!(
                "element {i} is {}, beyond the f16 range (±{max}) of f16 K/V storage; use f32 storage",
                data[i]
            ),
        ));
    }
    let mut halves = vec![half::f16::ZERO; data.len()];
    half::slice::HalfFloatSliceExt::convert_from_f32_slice(&mut halves[..], data);
    Ok(halves)
}

/// Errors on the first per-head scale that is not finite and positive.
fn check_scales(scales: &[f32]) -> Result<()> {
    match scales
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v > 0.0))
    {
        Some((h, v)) => Err(HalError::InvalidQuantization {
            what: format!("scale of head {h}"),
            detail: format!("must be finite and positive, got {v}"),
        }),
        None => Ok(()),
    }
}

/// Checks a quantization call: finite values, and given scales (one per head, finite, positive).
pub fn check_quantize_call(x: &HeadsView<'_>, scales: Option<&[f32]>) -> Result<()> {
    if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
        return Err(HalError::invalid_value(
            "heads",
            format!(
                "element {i} is {}; only finite values can be quantized",
                x.data[i]
            ),
        ));
    }
    if let Some(s) = scales {
        if s.len() != x.heads {
            return Err(HalError::invalid_argument(
                "scales",
                format!("{} scales for {} heads", s.len(), x.heads),
            ));
        }
        check_scales(s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_clamp_and_reject() {
        let r = KeyBudget::Ratio {
            ratio: 0.2,
            min_keys: 4,
        };
        assert_eq!(r.keys_for(0, 1).unwrap(), 1);
        assert_eq!(r.keys_for(0, 10).unwrap(), 4);
        assert_eq!(r.keys_for(0, 101).unwrap(), 21);
        // The decimal ratio, not its f32 image: 20 % of 2000 keys is 400, 10 % of 1000 is 100.
        let ratio = |ratio| KeyBudget::Ratio { ratio, min_keys: 1 };
        assert_eq!(ratio(0.2).keys_for(0, 2000).unwrap(), 400);
        assert_eq!(ratio(0.2).keys_for(0, 2001).unwrap(), 401);
        assert_eq!(ratio(0.1).keys_for(0, 1000).unwrap(), 100);
        assert_eq!(ratio(0.3).keys_for(0, 10).unwrap(), 3);
        assert_eq!(ratio(1.0).keys_for(0, 7).unwrap(), 7);
        assert!(KeyBudget::Fixed(5).keys_for(3, 4).is_err());
        assert!(KeyBudget::Ratio {
            ratio: 0.0,
            min_keys: 1
        }
        .validate()
        .is_err());
        assert!(KeyBudget::Ratio {
            ratio: f32::NAN,
            min_keys: 1
        }
        .validate()
        .is_err());
        assert!(KeyBudget::Ratio {
            ratio: 1.5,
            min_keys: 1
        }
        .validate()
        .is_err());
        assert!(KeyBudget::Fixed(0).validate().is_err());
    }

    #[test]
    fn shapes_are_validated() {
        let mut s = AttentionShape::causal(4, 2, 8, 16, 32);
        assert_eq!(s.q_offset, 8);
        s.validate().unwrap();
        assert_eq!(s.kv_head_of(3), 1);
        assert_eq!(s.valid_keys(0), 9);
        s.kv_heads = 3;
        assert!(s.validate().is_err());
        let mut s = AttentionShape::causal(4, 2, 8, 16, 32);
        s.q_offset = 9;
        assert!(s.validate().is_err());
        s.q_offset = 0;
        s.scale = f32::NAN;
        assert!(s.validate().is_err());
        // Score matrices beyond the limit (or beyond usize) are refused, not allocated.
        AttentionShape::causal(16, 2, 4096, 4096, 64)
            .validate()
            .unwrap();
        let big = AttentionShape::causal(2, 2, 100_000, 100_000, 64).validate();
        assert!(
            big.unwrap_err().to_string().contains("score elements"),
            "too large"
        );
        assert!(AttentionShape::causal(usize::MAX / 2, 1, 4, 4, 8)
            .validate()
            .is_err());
        assert!(
            AttentionInputs::new(&[0.0; 3], &[], &[], AttentionShape::causal(1, 1, 1, 1, 3))
                .is_err()
        );
    }

    #[test]
    fn selections_outside_the_prefix_are_rejected() {
        let shape = AttentionShape::causal(1, 1, 2, 2, 4);
        let mut s = Selection::new();
        s.push_row(&[0]);
        s.push_row(&[1, 0]);
        s.validate_for(0, &shape).unwrap();
        let mut bad = Selection::new();
        bad.push_row(&[1]);
        bad.push_row(&[0]);
        assert!(bad
            .validate_for(0, &shape)
            .unwrap_err()
            .to_string()
            .contains("outside"));
        let mut dup = Selection::new();
        dup.push_row(&[0]);
        dup.push_row(&[1, 1]);
        assert!(dup
            .validate_for(0, &shape)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }
}
