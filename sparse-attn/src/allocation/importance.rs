//! Ratios from per-head importance: importance is clamped to `[lo, hi]`; each head gets
//! `clamp(λ · importance, min_ratio, 1.0)`, with the one λ (found by bisection) that makes the
//! mean ratio equal the global ratio. This is proportional allocation with the overflow above
//! 1.0 (and the shortfall below `min_ratio`) redistributed in proportion over the other heads
//! (water filling). The paper's artifact redistributes overflow sequentially in (layer, head)
//! order instead; proportional redistribution does not depend on head order.

use crate::error::{Result, SparseAttnError};
use serde::{Deserialize, Serialize};

/// How per-head ratios are allocated.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatioConfig {
    /// Mean fraction of keys kept over all heads, in (0, 1].
    pub global_ratio: f32,
    /// Smallest ratio any head gets, in (0, global_ratio].
    pub min_ratio: f32,
    /// Importance is clamped to this range first; the lower bound must be positive.
    pub importance_clamp: (f64, f64),
}

impl Default for RatioConfig {
    fn default() -> Self {
        RatioConfig {
            global_ratio: 0.2,
            min_ratio: 0.01,
            importance_clamp: (1e-6, 1e6),
        }
    }
}

/// Allocates per-head ratios (`[layer][head]`) from per-head importance.
pub fn allocate_ratios(importance: &[Vec<f64>], cfg: &RatioConfig) -> Result<Vec<Vec<f32>>> {
    let (r, min) = check_config(cfg)?;
    let (flat, heads) = clamped_importance(importance, cfg.importance_clamp)?;
    let lambda = water_level(&flat, r, min);
    let ratios: Vec<f64> = flat.iter().map(|&v| (lambda * v).clamp(min, 1.0)).collect();
    Ok(ratios
        .chunks(heads)
        .map(|c| c.iter().map(|&x| x as f32).collect())
        .collect())
}

/// Checks the settings; the global and the minimum ratio as `f64`.
fn check_config(cfg: &RatioConfig) -> Result<(f64, f64)> {
    let r = f64::from(cfg.global_ratio);
    if !(r > 0.0 && r <= 1.0) {
        return Err(SparseAttnError::config(
            "global_ratio",
            format!("must be in (0, 1], got {}", cfg.global_ratio),
        ));
    }
    let min = f64::from(cfg.min_ratio);
    if !(min > 0.0 && min <= r) {
        return Err(SparseAttnError::config(
            "min_ratio",
            format!("must be in (0, global_ratio = {r}], got {}", cfg.min_ratio),
        ));
    }
    let (lo, hi) = cfg.importance_clamp;
    if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
        return Err(SparseAttnError::config(
            "importance_clamp",
            format!("needs 0 < lo <= hi < inf, got ({lo}, {hi})"),
        ));
    }
    Ok((r, min))
}

/// Every head's importance (layer-major) clamped to `[lo, hi]`, and the heads per layer; refuses
/// empty or ragged layers and non-finite importance.
fn clamped_importance(importance: &[Vec<f64>], (lo, hi): (f64, f64)) -> Result<(Vec<f64>, usize)> {
    if importance.is_empty() || importance.iter().any(Vec::is_empty) {
        return Err(SparseAttnError::config(
            "importance",
            "needs at least one head per layer",
        ));
    }
    let heads = importance[0].len();
    let mut flat = Vec::new();
    for (l, row) in importance.iter().enumerate() {
        if row.len() != heads {
            return Err(SparseAttnError::config(
                "importance",
                format!("layer {l} has {} heads, layer 0 has {heads}", row.len()),
            ));
        }
        for (h, &v) in row.iter().enumerate() {
            if !v.is_finite() {
                return Err(SparseAttnError::config(
                    "importance",
                    format!("layer {l} head {h} is {v}"),
                ));
            }
            flat.push(v.clamp(lo, hi));
        }
    }
    Ok((flat, heads))
}

/// The λ (by 200 bisection steps) at which the mean of `clamp(λ · imp_i, min, 1)` is `r`: each
/// ratio grows with λ, so the mean does.
fn water_level(flat: &[f64], r: f64, min: f64) -> f64 {
    let n = flat.len();
    let mean_at = |lambda: f64| {
        flat.iter()
            .map(|&v| (lambda * v).clamp(min, 1.0))
            .sum::<f64>()
            / n as f64
    };
    let (mut lo_l, mut hi_l) = (
        0.0f64,
        1.0 / flat.iter().copied().fold(f64::INFINITY, f64::min),
    );
    for _ in 0..200 {
        let mid = 0.5 * (lo_l + hi_l);
        if mean_at(mid) < r {
            lo_l = mid;
        } else {
            hi_l = mid;
        }
    }
    hi_l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_average_to_the_budget_within_bounds() {
        let imp = vec![vec![100.0, 1.0, 1.0], vec![1.0, 1.0, 0.0]];
        let cfg = RatioConfig {
            global_ratio: 0.3,
            min_ratio: 0.05,
            importance_clamp: (0.01, 1e3),
        };
        let r = allocate_ratios(&imp, &cfg).unwrap();
        let flat: Vec<f32> = r.concat();
        let mean = flat.iter().map(|&x| f64::from(x)).sum::<f64>() / flat.len() as f64;
        assert!((mean - 0.3).abs() < 1e-6, "{mean}");
        assert_eq!(flat[0], 1.0, "capped");
        assert_eq!(flat[5], 0.05, "floored");
        assert!(flat.iter().all(|&x| (0.05..=1.0).contains(&x)));
        assert!(
            (flat[1] - flat[2]).abs() < 1e-7,
            "equal importance, equal ratio"
        );
        for bad in [
            RatioConfig {
                global_ratio: 0.0,
                ..cfg
            },
            RatioConfig {
                global_ratio: 1.5,
                ..cfg
            },
            RatioConfig {
                min_ratio: 0.5,
                ..cfg
            },
            RatioConfig {
                importance_clamp: (0.0, 1.0),
                ..cfg
            },
        ] {
            assert!(allocate_ratios(&imp, &bad).is_err(), "{bad:?}");
        }
        assert!(allocate_ratios(&[vec![1.0, f64::NAN]], &cfg).is_err());
        assert!(allocate_ratios(&[vec![1.0, 1.0], vec![1.0]], &cfg).is_err());
    }
}
