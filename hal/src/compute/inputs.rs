//! The inputs of the compute kernels: a chunk's shape, its borrowed Q/K/V, per-head views and
//! INT8 heads, and K/V converted to f16 storage.

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
        if !self.q_heads.is_multiple_of(self.kv_heads) {
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

/// K or V (named `name` in errors) converted to f16 storage; a value beyond the f16 range is
/// refused rather than stored as infinity.
pub fn kv_to_f16(name: &str, data: &[f32]) -> Result<Vec<half::f16>> {
    if let Some(i) = first_beyond_f16(data) {
        return Err(beyond_f16_value(name, i, data[i]));
    }
    let mut halves = vec![half::f16::ZERO; data.len()];
    half::slice::HalfFloatSliceExt::convert_from_f32_slice(&mut halves[..], data);
    Ok(halves)
}

/// The index of the first value of `data` beyond the f16 range (±65504), NaN excluded.
/// Blocks are tested without an early exit so the test vectorizes, as `first_non_finite`.
pub fn first_beyond_f16(data: &[f32]) -> Option<usize> {
    const BLOCK: usize = 256;
    let max = f32::from(half::f16::MAX);
    data.chunks(BLOCK).enumerate().find_map(|(b, block)| {
        let inside = block
            .iter()
            .fold(true, |ok, v| ok & (v.abs() <= max || v.is_nan()));
        if inside {
            None
        } else {
            block
                .iter()
                .position(|v| v.abs() > max)
                .map(|i| b * BLOCK + i)
        }
    })
}

/// The error for element `index` of K or V (`name`), `value`, beyond the f16 range of f16
/// K/V storage.
pub fn beyond_f16_value(name: &str, index: usize, value: f32) -> HalError {
    HalError::invalid_value(
        name,
        format!(
            "element {index} is {value}, beyond the f16 range (±{}) of f16 K/V storage; use f32 storage",
            f32::from(half::f16::MAX)
        ),
    )
}

/// Errors on the first per-head scale that is not finite and positive.
pub(super) fn check_scales(scales: &[f32]) -> Result<()> {
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
