//! Offline calibration: the scale-bucket grid and per-head retention ratios, saved as a
//! versioned file. One job per file, every item re-exported here:
//!
//! - the model a calibration belongs to ([`ModelShape`]);
//! - **scales** ([`mean_scales`], [`accumulator_range`]): each head's quantization scale is
//!   `max|x| / 127` of its Q (per query head) or K (per KV head) on a calibration sample; λ̄Q
//!   and λ̄K are the means over every layer, head and sample;
//! - the **bucket grid** ([`BucketGrid`]) {λ̄Q·σ^a} × {λ̄K·σ^b}, a, b ∈ −steps..=steps
//!   (default σ = 0.5, steps = 1: 9 buckets);
//! - **key centring** ([`center_keys`]) for a pilot that subtracts each KV head's mean key;
//! - **ratios** (fraction of keys kept per head) from per-head importance ([`allocate_ratios`],
//!   [`RatioConfig`]), which live in [`crate::allocation`] next to the other allocation rule;
//! - the versioned **file** ([`FORMAT`], [`VERSION`], [`Calibration::from_json`]).

mod centering;
mod file;
mod grid;
mod scales;
mod shape;

pub use crate::allocation::{allocate_ratios, RatioConfig};
pub use centering::center_keys;
pub use file::{FORMAT, VERSION};
pub use grid::BucketGrid;
pub use scales::{absmax_scale, accumulator_range, mean_scales, LayerSample};
pub use shape::ModelShape;

use crate::error::{Result, SparseAttnError};
use serde::{Deserialize, Serialize};

/// A model's calibration: bucket grid and per-head ratios.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`] when written by this build.
    pub version: u32,
    /// The model.
    pub model: ModelShape,
    /// Mean Q scale λ̄Q.
    pub mean_q_scale: f32,
    /// Mean K scale λ̄K.
    pub mean_k_scale: f32,
    /// The bucket grid.
    pub grid: BucketGrid,
    /// The allocation settings used.
    pub ratio_config: RatioConfig,
    /// Fraction of keys kept, `[layer][query head]`.
    pub ratios: Vec<Vec<f32>>,
    /// The INT8-output pilot's accumulator range (integer units mapped to ±127, the pilot
    /// module's `PilotOutput::Int8`): [`Calibration::calibrate`] takes the largest causal
    /// |q·k| of any head of the samples ([`accumulator_range`]); a caller may tune it on
    /// calibration text (`shadowattn eval` does). Absent in version-1 files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pilot_acc_range: Option<f32>,
    /// Whether the pilot subtracts each KV head's mean key from its keys before quantizing
    /// them ([`center_keys`]), the grid and range measured so. Absent (false) in version-1 files.
    #[serde(default)]
    pub center_keys: bool,
    /// How each selecting unit's keys are spread over the rows of a chunk, the rule the ratios
    /// were allocated for. Absent (the even rule) in version-1 and version-2 files.
    #[serde(default)]
    pub budget: shadowattn_hal::BudgetRule,
}

impl Calibration {
    /// Calibrates from samples and importance (`[layer][query head]`).
    pub fn calibrate(
        model: ModelShape,
        samples: &[LayerSample<'_>],
        importance: &[Vec<f64>],
        ratio_config: RatioConfig,
        grid_steps: usize,
        sigma: f32,
    ) -> Result<Self> {
        let (mean_q, mean_k) = mean_scales(&model, samples)?;
        let grid = BucketGrid::new(mean_q, mean_k, grid_steps, sigma)?;
        let ratios = allocate_ratios(importance, &ratio_config)?;
        let pilot_acc_range = Some(accumulator_range(&model, samples)?);
        let c = Calibration {
            center_keys: false,
            budget: shadowattn_hal::BudgetRule::MEASURED_BEST,
            format: FORMAT.into(),
            version: VERSION,
            model,
            mean_q_scale: mean_q,
            mean_k_scale: mean_k,
            grid,
            ratio_config,
            ratios,
            pilot_acc_range,
        };
        c.validate()?;
        Ok(c)
    }

    /// [`Calibration::calibrate`] for a pilot that centers keys ([`center_keys`]): the samples'
    /// keys are centered before the scales and the accumulator range are measured.
    pub fn calibrate_centered(
        model: ModelShape,
        samples: &[LayerSample<'_>],
        importance: &[Vec<f64>],
        ratio_config: RatioConfig,
        grid_steps: usize,
        sigma: f32,
    ) -> Result<Self> {
        model.validate()?;
        let d = model.head_dim;
        let keys: Vec<Vec<f32>> = samples
            .iter()
            .map(|s| center_keys(s.k, s.rows, d))
            .collect();
        let centered: Vec<LayerSample<'_>> = samples
            .iter()
            .zip(&keys)
            .map(|(s, k)| LayerSample { k, ..*s })
            .collect();
        let mut c = Self::calibrate(
            model,
            &centered,
            importance,
            ratio_config,
            grid_steps,
            sigma,
        )?;
        c.center_keys = true;
        Ok(c)
    }

    /// Checks internal consistency (ratios shape and range, grid, model).
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.grid.validate()?;
        if let Some(r) = self.pilot_acc_range {
            grid::positive("pilot_acc_range", r)?;
        }
        self.budget
            .validate()
            .map_err(|e| SparseAttnError::calibration("budget", e.to_string()))?;
        if self.ratios.len() != self.model.layers {
            return Err(SparseAttnError::calibration(
                "ratios",
                format!(
                    "{} layers of ratios for a {}-layer model",
                    self.ratios.len(),
                    self.model.layers
                ),
            ));
        }
        for (l, row) in self.ratios.iter().enumerate() {
            if row.len() != self.model.q_heads {
                return Err(SparseAttnError::calibration(
                    "ratios",
                    format!(
                        "layer {l} has {} ratios for {} query heads",
                        row.len(),
                        self.model.q_heads
                    ),
                ));
            }
            if let Some((h, r)) = row
                .iter()
                .enumerate()
                .find(|(_, r)| !(**r > 0.0 && **r <= 1.0))
            {
                return Err(SparseAttnError::calibration(
                    "ratios",
                    format!("layer {l} head {h} has ratio {r}, outside (0, 1]"),
                ));
            }
        }
        Ok(())
    }

    /// Ratios of one layer.
    pub fn layer_ratios(&self, layer: usize) -> Result<&[f32]> {
        self.ratios
            .get(layer)
            .map(Vec::as_slice)
            .ok_or(SparseAttnError::NoLayer {
                layer,
                layers: self.model.layers,
            })
    }
}
