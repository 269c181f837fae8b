//! Ratios from attention mass: each selecting unit (a query head, or a GQA group) gets the
//! fraction of keys that maximizes the attention mass all units keep together, under a mean
//! ratio and a floor — a greedy that gives every next step of keys to the unit whose kept mass
//! grows most by it (optimal where the curves are concave, as kept mass against keys kept is:
//! the keys kept first are the heaviest). The curves come from one dense pass over calibration
//! text with exact scores, no ablation.

use crate::error::{Result, SparseAttnError};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Steps of the ratio grid the mass curves are sampled on: ratios `1/STEPS ..= 1`.
pub const STEPS: usize = 100;

/// The ratio of grid point `g` (1-based: `g / STEPS`).
pub fn grid_ratio(g: usize) -> f32 {
    g as f32 / STEPS as f32
}

/// Mean attention mass (in [0, 1]) one unit keeps at each ratio `grid_ratio(g)`, `g = 1..=STEPS`
/// (index `g − 1`); non-decreasing.
pub type MassCurve = Vec<f64>;

/// What the greedy's steps gain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gains {
    /// Each step's own gain on the curve: the best where the curves are concave, as they are
    /// when every row ranks all its keys.
    Curve,
    /// The gain along each curve's concave envelope: for curves that stay flat before they rise
    /// (a budget that always-kept anchors fill), whose first zero gains would otherwise leave
    /// every step to the lowest units.
    Envelope,
}

/// One ratio per unit: the mean of them is `global_ratio`, each is at least `min_ratio` and at
/// most 1, and together they keep the most attention mass the greedy finds stepping by `gains`.
pub fn allocate_by_mass(
    curves: &[MassCurve],
    global_ratio: f32,
    min_ratio: f32,
    gains: Gains,
) -> Result<Vec<f32>> {
    check_inputs(curves, global_ratio, min_ratio)?;
    // Budget in grid steps; every unit starts at the floor's grid point (not above the mean).
    let budget = f64::from(global_ratio) * STEPS as f64 * curves.len() as f64;
    let floor = ((f64::from(min_ratio) * STEPS as f64).ceil() as usize)
        .clamp(1, (budget / curves.len() as f64).floor().max(1.0) as usize);
    let mut at = vec![floor; curves.len()];
    let mut used = (floor * curves.len()) as f64;
    let stepped: Vec<MassCurve> = match gains {
        Gains::Curve => curves.to_vec(),
        Gains::Envelope => curves.iter().map(|c| concave_envelope(c)).collect(),
    };
    let gain = |u: usize, g: usize| stepped[u][g] - stepped[u][g - 1];
    let mut heap: BinaryHeap<Step> = (0..curves.len())
        .filter(|&u| at[u] < STEPS)
        .map(|u| Step {
            gain: gain(u, at[u]),
            unit: u,
        })
        .collect();
    while used + 1.0 <= budget + 1e-9 {
        let Some(best) = heap.pop() else { break };
        at[best.unit] += 1;
        used += 1.0;
        if at[best.unit] < STEPS {
            heap.push(Step {
                gain: gain(best.unit, at[best.unit]),
                unit: best.unit,
            });
        }
    }
    let mut ratios: Vec<f32> = at.iter().map(|&g| grid_ratio(g)).collect();
    // The part of a step left over goes to the unit that would take the next step.
    let rest = budget - used;
    if rest > 1e-9 {
        if let Some(next) = heap.pop() {
            ratios[next.unit] = ((at[next.unit] as f64 + rest) / STEPS as f64) as f32;
        }
    }
    Ok(ratios)
}

/// The least concave curve on or above `curve` (its upper envelope, linear between the points it
/// touches): the greedy's gains along it never grow.
fn concave_envelope(curve: &[f64]) -> MassCurve {
    // Upper hull of the points (g, curve[g]) by a monotone chain.
    let mut hull: Vec<usize> = Vec::with_capacity(curve.len());
    for g in 0..curve.len() {
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            // b lies on or below the chord from a to g: drop it.
            let cross =
                (curve[b] - curve[a]) * (g - a) as f64 - (curve[g] - curve[a]) * (b - a) as f64;
            if cross <= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(g);
    }
    let mut out = vec![0.0; curve.len()];
    for w in hull.windows(2) {
        let (a, b) = (w[0], w[1]);
        for (g, slot) in out.iter_mut().enumerate().take(b + 1).skip(a) {
            *slot = curve[a] + (curve[b] - curve[a]) * (g - a) as f64 / (b - a) as f64;
        }
    }
    if let [only] = hull[..] {
        out[only] = curve[only];
    }
    out
}

/// Checks the curves (at least one, each `STEPS` finite points) and the mean and floor ratios.
fn check_inputs(curves: &[MassCurve], global_ratio: f32, min_ratio: f32) -> Result<()> {
    let bad = |field: &'static str, detail: String| SparseAttnError::InvalidConfig {
        field: field.into(),
        detail,
    };
    if curves.is_empty() {
        return Err(bad("curves", "no units to allocate to".into()));
    }
    if !(global_ratio > 0.0 && global_ratio <= 1.0) {
        return Err(bad(
            "global_ratio",
            format!("{global_ratio} is not in (0, 1]"),
        ));
    }
    if !(min_ratio > 0.0 && min_ratio <= global_ratio) {
        return Err(bad(
            "min_ratio",
            format!("{min_ratio} is not in (0, global ratio {global_ratio}]"),
        ));
    }
    for (u, c) in curves.iter().enumerate() {
        if c.len() != STEPS || c.iter().any(|m| !m.is_finite()) {
            return Err(bad(
                "curves",
                format!("unit {u}: {} finite points wanted, got {}", STEPS, c.len()),
            ));
        }
    }
    Ok(())
}

/// A unit's next step of keys and the mass it adds; the heap pops the largest gain, and among
/// equal gains the lowest unit.
#[derive(Debug)]
struct Step {
    gain: f64,
    unit: usize,
}

impl PartialEq for Step {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Step {}

impl PartialOrd for Step {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Step {
    fn cmp(&self, other: &Self) -> Ordering {
        self.gain
            .total_cmp(&other.gain)
            .then(other.unit.cmp(&self.unit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A concave curve: mass `1 − (1 − r)^p` (p > 1: mass in few keys).
    fn curve(p: f64) -> MassCurve {
        (1..=STEPS)
            .map(|g| 1.0 - (1.0 - f64::from(grid_ratio(g))).powf(p))
            .collect()
    }

    fn kept(curves: &[MassCurve], ratios: &[f32]) -> f64 {
        curves
            .iter()
            .zip(ratios)
            .map(|(c, &r)| c[((r * STEPS as f32).round() as usize).clamp(1, STEPS) - 1])
            .sum()
    }

    #[test]
    fn keeps_the_mean_and_the_floor() {
        let curves: Vec<MassCurve> = [1.0, 2.0, 8.0, 30.0, 1.5].map(curve).to_vec();
        for (mean, floor) in [
            (0.05, 0.005),
            (0.1, 0.01),
            (0.2, 0.02),
            (0.3, 0.3),
            (1.0, 0.1),
        ] {
            let r = allocate_by_mass(&curves, mean, floor, Gains::Curve).unwrap();
            let got = r.iter().sum::<f32>() / r.len() as f32;
            assert!((got - mean).abs() < 1e-5, "mean {got} for {mean}");
            assert!(r.iter().all(|&x| x >= floor - 1e-6 && x <= 1.0), "{r:?}");
        }
    }

    #[test]
    fn a_head_whose_mass_is_in_few_keys_gets_the_floor_and_a_flat_one_gets_more() {
        // p = 1: mass grows linearly (attention spread evenly); p = 60: all in the first keys.
        let curves = vec![curve(1.0), curve(60.0), curve(60.0)];
        let r = allocate_by_mass(&curves, 0.2, 0.02, Gains::Curve).unwrap();
        assert!(r[0] > 0.4 && r[1] < 0.1 && r[2] < 0.1, "{r:?}");
    }

    #[test]
    fn keeps_more_mass_than_uniform_or_any_other_allocation_of_the_budget() {
        let curves: Vec<MassCurve> = [1.2, 3.0, 9.0, 25.0].map(curve).to_vec();
        let r = allocate_by_mass(&curves, 0.2, 0.02, Gains::Curve).unwrap();
        let best = kept(&curves, &r);
        assert!(best > kept(&curves, &[0.2; 4]) + 0.05);
        // Every reallocation of one grid step between two units keeps no more.
        for from in 0..4 {
            for to in 0..4 {
                let mut other = r.clone();
                other[from] -= 0.01;
                other[to] += 0.01;
                if from == to || other[from] < 0.02 || other[to] > 1.0 {
                    continue;
                }
                assert!(
                    kept(&curves, &other) <= best + 1e-12,
                    "{from}→{to}: {other:?}"
                );
            }
        }
    }

    #[test]
    fn a_curve_flat_before_it_rises_is_not_starved() {
        // Anchors fill the first 10 % of the budget: the mass stays at 0.3, then rises steeply.
        let late: MassCurve = (1..=STEPS)
            .map(|g| {
                let r = f64::from(grid_ratio(g));
                if r <= 0.1 {
                    0.3
                } else {
                    0.3 + 0.7 * (1.0 - (1.0 - (r - 0.1) / 0.9).powf(12.0))
                }
            })
            .collect();
        let curves = vec![late.clone(), curve(1.0), late, curve(1.0)];
        let r = allocate_by_mass(&curves, 0.2, 0.02, Gains::Envelope).unwrap();
        // The steep units get past their flat start; the even ones do not take everything.
        assert!(r[0] > 0.1 && r[2] > 0.1, "{r:?}");
        assert!(r[1] < 0.5 && r[3] < 0.5, "{r:?}");
        let env = concave_envelope(&curves[0]);
        assert!(env.iter().zip(&curves[0]).all(|(e, c)| e >= &(c - 1e-12)));
        assert!(env.windows(3).all(|w| w[2] - w[1] <= w[1] - w[0] + 1e-12));
    }

    #[test]
    fn bad_input_gets_typed_errors() {
        let c = vec![curve(2.0)];
        assert!(allocate_by_mass(&[], 0.2, 0.02, Gains::Curve).is_err());
        assert!(allocate_by_mass(&c, 0.0, 0.0, Gains::Curve).is_err());
        assert!(allocate_by_mass(&c, 0.2, 0.3, Gains::Curve).is_err());
        assert!(allocate_by_mass(&[vec![0.5; 3]], 0.2, 0.02, Gains::Curve).is_err());
        assert!(allocate_by_mass(&[vec![f64::NAN; STEPS]], 0.2, 0.02, Gains::Curve).is_err());
    }
}
