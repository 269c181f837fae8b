//! The scale-bucket grid: the static (Q scale, K scale) pairs pilot graphs are compiled for,
//! {λ̄Q·σ^a} × {λ̄K·σ^b} for a, b ∈ −steps..=steps (default σ = 0.5, steps = 1: 9 buckets).

use crate::error::{Result, SparseAttnError};
use serde::{Deserialize, Serialize};

/// The grid of static (Q scale, K scale) pairs that pilot graphs are compiled for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketGrid {
    /// Q scales, ascending.
    pub q_scales: Vec<f32>,
    /// K scales, ascending.
    pub k_scales: Vec<f32>,
}

/// Refuses a scale (named `field`) that is not finite and positive.
pub(super) fn positive(field: &str, v: f32) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(SparseAttnError::config(
            field,
            format!("must be finite and positive, got {v}"),
        ))
    }
}

impl BucketGrid {
    /// The grid {mean_q·σ^a} × {mean_k·σ^b} for a, b in −steps..=steps.
    pub fn new(mean_q: f32, mean_k: f32, steps: usize, sigma: f32) -> Result<Self> {
        positive("mean_q_scale", mean_q)?;
        positive("mean_k_scale", mean_k)?;
        if !(sigma.is_finite() && sigma > 0.0 && sigma != 1.0) {
            return Err(SparseAttnError::config(
                "sigma",
                format!("the grid step must be positive and not 1, got {sigma}"),
            ));
        }
        let steps = steps as i32;
        let mut factors: Vec<f32> = (-steps..=steps).map(|a| sigma.powi(a)).collect();
        factors.sort_by(f32::total_cmp);
        let grid = BucketGrid {
            q_scales: factors.iter().map(|f| mean_q * f).collect(),
            k_scales: factors.iter().map(|f| mean_k * f).collect(),
        };
        grid.validate()?;
        Ok(grid)
    }

    /// Checks every scale.
    pub fn validate(&self) -> Result<()> {
        if self.q_scales.is_empty() || self.k_scales.is_empty() {
            return Err(SparseAttnError::config(
                "grid",
                "needs at least one Q and one K scale",
            ));
        }
        for &s in self.q_scales.iter().chain(&self.k_scales) {
            positive("grid scale", s)?;
        }
        Ok(())
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.q_scales.len() * self.k_scales.len()
    }

    /// Whether the grid has no bucket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The (Q scale, K scale) of bucket `i` (row-major over Q then K).
    pub fn bucket(&self, i: usize) -> (f32, f32) {
        let nk = self.k_scales.len();
        (self.q_scales[i / nk], self.k_scales[i % nk])
    }

    /// The bucket with the smallest squared error to (λQ, λK); ties go to the lower index.
    pub fn nearest(&self, q_scale: f32, k_scale: f32) -> usize {
        let err = |i: usize| {
            let (q, k) = self.bucket(i);
            let (dq, dk) = (f64::from(q - q_scale), f64::from(k - k_scale));
            dq * dq + dk * dk
        };
        (0..self.len())
            .min_by(|&a, &b| err(a).total_cmp(&err(b)).then(a.cmp(&b)))
            .expect("a grid has buckets")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_has_nine_buckets_and_picks_the_nearest() {
        let g = BucketGrid::new(0.1, 0.2, 1, 0.5).unwrap();
        assert_eq!(g.len(), 9);
        assert_eq!(g.q_scales, vec![0.05, 0.1, 0.2]);
        assert_eq!(g.k_scales, vec![0.1, 0.2, 0.4]);
        assert_eq!(g.bucket(g.nearest(0.1, 0.2)), (0.1, 0.2));
        assert_eq!(g.bucket(g.nearest(0.01, 0.9)), (0.05, 0.4));
        assert_eq!(BucketGrid::new(0.1, 0.2, 2, 0.5).unwrap().len(), 25);
        assert!(BucketGrid::new(0.0, 0.2, 1, 0.5).is_err());
        assert!(BucketGrid::new(f32::NAN, 0.2, 1, 0.5).is_err());
        assert!(BucketGrid::new(0.1, 0.2, 1, 1.0).is_err());
    }
}
