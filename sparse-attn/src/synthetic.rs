//! Seeded synthetic attention chunks with planted important keys.
//!
//! Q, K and V are Gaussian. Each KV head has a hidden direction `u`; a fraction of its keys (the
//! planted ones, plus key 0 as an attention sink) get `signal · u` added, and every query of the
//! heads reading that KV head gets `u` added, so planted keys score higher. Each query head's Q
//! and each KV head's K are multiplied by their own factor in [½, 2] so heads need different
//! quantization scales, as real heads do.

use crate::error::{Result, SparseAttnError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use shadowattn_hal::{AttentionInputs, AttentionShape};

/// Parameters of a synthetic chunk.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SyntheticSpec {
    /// Shape and masking.
    pub shape: AttentionShape,
    /// Fraction of keys planted as important, in [0, 1].
    pub planted_fraction: f32,
    /// Strength of the planted keys' alignment with the queries.
    pub signal: f32,
    /// Random seed.
    pub seed: u64,
}

/// A generated chunk.
#[derive(Clone, Debug)]
pub struct SyntheticChunk {
    /// Queries, `[q_heads, q_len, head_dim]`.
    pub q: Vec<f32>,
    /// Keys, `[kv_heads, kv_len, head_dim]`.
    pub k: Vec<f32>,
    /// Values, `[kv_heads, kv_len, head_dim]`.
    pub v: Vec<f32>,
    /// Shape and masking.
    pub shape: AttentionShape,
    /// Planted key indices per KV head, ascending.
    pub planted: Vec<Vec<usize>>,
}

impl SyntheticChunk {
    /// Generates a chunk.
    pub fn generate(spec: SyntheticSpec) -> Result<Self> {
        let s = spec.shape;
        s.validate()?;
        if !(0.0..=1.0).contains(&spec.planted_fraction) {
            return Err(SparseAttnError::config(
                "planted_fraction",
                format!("must be in [0, 1], got {}", spec.planted_fraction),
            ));
        }
        if !spec.signal.is_finite() || spec.signal < 0.0 {
            return Err(SparseAttnError::config(
                "signal",
                format!("must be finite and non-negative, got {}", spec.signal),
            ));
        }
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let d = s.head_dim;
        let normal = |n: usize, rng: &mut StdRng| -> Vec<f32> {
            (0..n)
                .map(|_| rng.sample::<f32, _>(StandardNormal))
                .collect()
        };
        let directions: Vec<Vec<f32>> = (0..s.kv_heads).map(|_| normal(d, &mut rng)).collect();
        let mut k = normal(s.kv_heads * s.kv_len * d, &mut rng);
        let v = normal(s.kv_heads * s.kv_len * d, &mut rng);
        let mut q = normal(s.q_heads * s.q_len * d, &mut rng);
        let mut planted = Vec::with_capacity(s.kv_heads);
        for (kv, u) in directions.iter().enumerate() {
            let factor = 2f32.powf(rng.random_range(-1.0..=1.0));
            let mut keys: Vec<usize> = (1..s.kv_len)
                .filter(|_| rng.random::<f32>() < spec.planted_fraction)
                .collect();
            keys.insert(0, 0);
            for &j in &keys {
                let row = &mut k[(kv * s.kv_len + j) * d..][..d];
                row.iter_mut()
                    .zip(u)
                    .for_each(|(x, u)| *x += spec.signal * u);
            }
            k[kv * s.kv_len * d..(kv + 1) * s.kv_len * d]
                .iter_mut()
                .for_each(|x| *x *= factor);
            planted.push(keys);
        }
        for h in 0..s.q_heads {
            let u = &directions[s.kv_head_of(h)];
            let factor = 2f32.powf(rng.random_range(-1.0..=1.0));
            for row in q[h * s.q_len * d..(h + 1) * s.q_len * d].chunks_exact_mut(d) {
                row.iter_mut()
                    .zip(u)
                    .for_each(|(x, u)| *x = (*x + u) * factor);
            }
        }
        Ok(SyntheticChunk {
            q,
            k,
            v,
            shape: s,
            planted,
        })
    }

    /// Borrowed inputs for the kernels.
    pub fn inputs(&self) -> AttentionInputs<'_> {
        AttentionInputs::new(&self.q, &self.k, &self.v, self.shape)
            .expect("generated buffers match their shape")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_and_validates() {
        // Miri (`ci/miri.sh`) interprets StdRng's ChaCha at some milliseconds per value: a
        // smaller chunk there.
        let shape = if cfg!(miri) {
            AttentionShape::causal(2, 1, 4, 8, 8)
        } else {
            AttentionShape::causal(4, 2, 8, 32, 16)
        };
        let spec = SyntheticSpec {
            shape,
            planted_fraction: 0.1,
            signal: 1.0,
            seed: 42,
        };
        let a = SyntheticChunk::generate(spec).unwrap();
        let b = SyntheticChunk::generate(spec).unwrap();
        assert_eq!(a.q, b.q);
        assert_eq!(a.planted[0][0], 0);
        a.inputs();
        assert!(SyntheticChunk::generate(SyntheticSpec {
            planted_fraction: 1.5,
            ..spec
        })
        .is_err());
        assert!(SyntheticChunk::generate(SyntheticSpec {
            signal: f32::NAN,
            ..spec
        })
        .is_err());
    }
}
