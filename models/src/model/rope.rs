//! Rotary position embedding: which dimensions pair up, how many rotate, and each pair's
//! frequency (base, linear position scaling, Model 3's per-frequency factors).

use rayon::prelude::*;

/// Which dimensions of a head rotate together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// `(x[2i], x[2i+1])`: Model GGUFs, whose converter permutes the Q/K rows (llama.cpp's
    /// "normal" RoPE).
    Adjacent,
    /// `(x[i], x[i + dims/2])`: Hugging Face's `rotate_half` (llama.cpp's "NeoX" RoPE).
    Halves,
}

/// A model's rotary position embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    /// How dimensions pair up.
    pub style: RopeStyle,
    /// The leading dimensions of each head that rotate (even); the rest pass through.
    pub dims: usize,
    /// Base frequency θ: pair `i` turns by `base^(−2i/dims)` per position.
    pub base: f32,
    /// Positions are multiplied by this (1 / the linear scaling factor).
    pub position_scale: f32,
    /// Per-pair divisors of the frequency (Model 3's `rope_freqs`), `dims / 2` of them.
    pub factors: Option<Vec<f32>>,
}

impl Rope {
    /// Radians per position of each of the `dims / 2` pairs.
    pub fn frequencies(&self) -> Vec<f64> {
        (0..self.dims / 2)
            .map(|i| {
                let f = f64::from(self.base).powf(-2.0 * i as f64 / self.dims as f64)
                    * f64::from(self.position_scale);
                match &self.factors {
                    Some(factors) => f / f64::from(factors[i]),
                    None => f,
                }
            })
            .collect()
    }

    /// Rotates every head of `x` (`[rows, heads · head_dim]`, row `t` at position `t`).
    pub fn apply(&self, x: &mut [f32], heads: usize, head_dim: usize) {
        let freqs = self.frequencies();
        let half = self.dims / 2;
        let pair = |i: usize| match self.style {
            RopeStyle::Adjacent => (2 * i, 2 * i + 1),
            RopeStyle::Halves => (i, i + half),
        };
        x.par_chunks_mut(heads * head_dim)
            .enumerate()
            .for_each(|(t, row)| {
                for head in row.chunks_exact_mut(head_dim) {
                    for (i, f) in freqs.iter().enumerate() {
                        let (s, c) = (t as f64 * f).sin_cos();
                        let (ia, ib) = pair(i);
                        let (a, b) = (f64::from(head[ia]), f64::from(head[ib]));
                        head[ia] = (a * c - b * s) as f32;
                        head[ib] = (a * s + b * c) as f32;
                    }
                }
            });
    }
}
