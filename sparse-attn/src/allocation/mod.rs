//! Per-head retention ratios (the fraction of keys each head keeps): the two allocation rules,
//! side by side. Both give every unit a ratio in `[min_ratio, 1]` whose mean is the global
//! ratio, but they are different rules on different measurements, so both stay:
//!
//! - [`allocate_ratios`] (by **importance**, settings [`RatioConfig`]): one number per head
//!   (from ablation: the paper's Eq. 1–3 or the authors' artifact), each ratio proportional to
//!   it, the overflow above 1 and the shortfall below the floor water-filled over the rest.
//!   Continuous ratios; [`crate::calibration::Calibration::calibrate`] uses it and stores its
//!   settings in the calibration file.
//! - [`allocate_by_mass`] (by **attention mass**, [`MassCurve`]): a whole curve per unit (mass
//!   kept against keys kept, from one dense pass), every next `1/STEPS` of keys given to the
//!   unit whose kept mass grows most. Ratios on the `1/STEPS` grid; `shadowattn eval
//!   --allocations mass` (`models::eval::ratios_from_curves`).
//!
//! Proportional allocation follows the size of one number; the greedy follows the slope of a
//! curve, so a head whose mass sits in its first few keys gets the floor however much mass it
//! has. Neither is the other with other inputs, and `eval` reports them as separate rows.

mod importance;
mod mass;

pub use importance::{allocate_ratios, RatioConfig};
pub use mass::{allocate_by_mass, grid_ratio, Gains, MassCurve, STEPS};
