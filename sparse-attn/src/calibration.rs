//! Offline calibration: the scale-bucket grid and per-head retention ratios, saved as a
//! versioned file.
//!
//! - **Scales**: each head's quantization scale is `max|x| / 127` of its Q (per query head) or K
//!   (per KV head) on a calibration sample; λ̄Q and λ̄K are the means over every layer, head and
//!   sample. The bucket grid is {λ̄Q·σ^a} × {λ̄K·σ^b}, a, b ∈ −steps..=steps (default σ = 0.5,
//!   steps = 1: 9 buckets).
//! - **Ratios** (fraction of keys kept per head): importance is clamped to `[lo, hi]`; each head
//!   gets `clamp(λ · importance, min_ratio, 1.0)`, with the one λ (found by bisection) that
//!   makes the mean ratio equal the global ratio. This is proportional allocation with the
//!   overflow above 1.0 (and the shortfall below `min_ratio`) redistributed in proportion over
//!   the other heads (water filling). The paper's artifact redistributes overflow sequentially
//!   in (layer, head) order instead; proportional redistribution does not depend on head order.

use crate::error::{Result, SparseAttnError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Shape of the model a calibration belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelShape {
    /// Model name (free text, shown in errors).
    pub name: String,
    /// Transformer layers.
    pub layers: usize,
    /// Query heads per layer.
    pub q_heads: usize,
    /// KV heads per layer.
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
}

impl ModelShape {
    /// Checks that the numbers describe a model.
    pub fn validate(&self) -> Result<()> {
        for (f, v) in [
            ("layers", self.layers),
            ("q_heads", self.q_heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
        ] {
            if v == 0 {
                return Err(SparseAttnError::config(f, "must be at least 1"));
            }
        }
        if self.q_heads % self.kv_heads != 0 {
            return Err(SparseAttnError::config(
                "kv_heads",
                format!(
                    "{} query heads cannot be grouped over {} KV heads",
                    self.q_heads, self.kv_heads
                ),
            ));
        }
        Ok(())
    }
}

/// The grid of static (Q scale, K scale) pairs that pilot graphs are compiled for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketGrid {
    /// Q scales, ascending.
    pub q_scales: Vec<f32>,
    /// K scales, ascending.
    pub k_scales: Vec<f32>,
}

fn positive(field: &str, v: f32) -> Result<()> {
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
    let n = flat.len();
    // r_i(λ) = clamp(λ · imp_i, min, 1) grows with λ; find the λ whose mean is the global ratio.
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
    let ratios: Vec<f64> = flat.iter().map(|&v| (hi_l * v).clamp(min, 1.0)).collect();
    Ok(ratios
        .chunks(heads)
        .map(|c| c.iter().map(|&x| x as f32).collect())
        .collect())
}

/// Absmax scale `max|x| / 127` of one head's values (1.0 for an all-zero head).
pub fn absmax_scale(x: &[f32]) -> f32 {
    let m = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if m > 0.0 {
        m / 127.0
    } else {
        1.0
    }
}

/// One calibration sample of a layer: its Q and K on one text window.
#[derive(Clone, Copy, Debug)]
pub struct LayerSample<'a> {
    /// Layer index.
    pub layer: usize,
    /// Queries, `[q_heads, rows, head_dim]`.
    pub q: &'a [f32],
    /// Keys, `[kv_heads, rows, head_dim]`.
    pub k: &'a [f32],
    /// Rows (tokens) of the sample.
    pub rows: usize,
}

/// Mean Q and K scales over samples (every head of every sample counts once).
pub fn mean_scales(model: &ModelShape, samples: &[LayerSample<'_>]) -> Result<(f32, f32)> {
    model.validate()?;
    if samples.is_empty() {
        return Err(SparseAttnError::config(
            "samples",
            "at least one sample is needed",
        ));
    }
    let d = model.head_dim;
    let (mut sq, mut nq, mut sk, mut nk) = (0.0f64, 0usize, 0.0f64, 0usize);
    for (i, s) in samples.iter().enumerate() {
        if s.layer >= model.layers || s.rows == 0 {
            return Err(SparseAttnError::config(
                "samples",
                format!(
                    "sample {i}: layer {} of {} with {} rows",
                    s.layer, model.layers, s.rows
                ),
            ));
        }
        if s.q.len() != model.q_heads * s.rows * d || s.k.len() != model.kv_heads * s.rows * d {
            return Err(SparseAttnError::config(
                "samples",
                format!(
                    "sample {i}: Q has {} values and K {}, expected {} and {}",
                    s.q.len(),
                    s.k.len(),
                    model.q_heads * s.rows * d,
                    model.kv_heads * s.rows * d
                ),
            ));
        }
        if let Some(v) = s.q.iter().chain(s.k).find(|v| !v.is_finite()) {
            return Err(SparseAttnError::config(
                "samples",
                format!("sample {i} holds a non-finite value {v}"),
            ));
        }
        for h in s.q.chunks_exact(s.rows * d) {
            sq += f64::from(absmax_scale(h));
            nq += 1;
        }
        for h in s.k.chunks_exact(s.rows * d) {
            sk += f64::from(absmax_scale(h));
            nk += 1;
        }
    }
    Ok(((sq / nq as f64) as f32, (sk / nk as f64) as f32))
}

/// Keys `[heads, rows, d]` with each head's mean key (over its rows) subtracted. Every score
/// of a query row then moves by the same q·k̄, so each row's ranking, and each head's softmax,
/// is unchanged, while the keys' range (and so their quantization step) shrinks: SageAttention's
/// smoothing of K for INT8 Q·Kᵀ.
pub fn center_keys(k: &[f32], rows: usize, d: usize) -> Vec<f32> {
    let mut out = k.to_vec();
    if rows == 0 || d == 0 {
        return out;
    }
    for head in out.chunks_exact_mut(rows * d) {
        let mut mean = vec![0.0f64; d];
        for key in head.chunks_exact(d) {
            for (m, &x) in mean.iter_mut().zip(key) {
                *m += f64::from(x);
            }
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / rows as f64) as f32).collect();
        for key in head.chunks_exact_mut(d) {
            for (x, m) in key.iter_mut().zip(&mean) {
                *x -= m;
            }
        }
    }
    out
}

/// The largest causal |q·k| / (λQ·λK) of any query head in `samples`, each head's Q and its KV
/// head's K scaled by their own absmax scales ([`absmax_scale`]): the accumulator magnitude of
/// an INT8 pilot on data like the samples (row `i` scores keys `0..=i`).
pub fn accumulator_range(model: &ModelShape, samples: &[LayerSample<'_>]) -> Result<f32> {
    mean_scales(model, samples)?;
    let d = model.head_dim;
    let group = model.q_heads / model.kv_heads;
    let mut max = 0.0f32;
    for s in samples {
        let per_head = s.rows * d;
        for (h, q) in s.q.chunks_exact(per_head).enumerate() {
            let k = &s.k[h / group * per_head..][..per_head];
            let scale = absmax_scale(q) * absmax_scale(k);
            max = max.max(causal_score_absmax(q, k, d) / scale);
        }
    }
    if !(max.is_finite() && max > 0.0) {
        return Err(SparseAttnError::config(
            "samples",
            format!("their largest scaled score is {max}"),
        ));
    }
    Ok(max)
}

/// The largest |q_i·k_j| over `j ≤ i` of one head's `[rows, d]` queries and keys.
fn causal_score_absmax(q: &[f32], k: &[f32], d: usize) -> f32 {
    q.chunks_exact(d)
        .enumerate()
        .flat_map(|(i, qi)| {
            k.chunks_exact(d)
                .take(i + 1)
                .map(move |kj| qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>().abs())
        })
        .fold(0.0, f32::max)
}

/// Format name written into calibration files.
pub const FORMAT: &str = "shadowattn-calibration";
/// The calibration file version this build writes. Version 2 added
/// [`Calibration::pilot_acc_range`] and [`Calibration::center_keys`]; version-1 files are read
/// with the range absent and keys not centered.
pub const VERSION: u32 = 2;

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
            positive("pilot_acc_range", r)?;
        }
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

    /// The calibration as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("calibrations serialize")
    }

    /// Reads a calibration, checking its format, version and that it belongs to `expected`.
    pub fn from_json(text: &str, expected: Option<&ModelShape>) -> Result<Self> {
        let head: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| SparseAttnError::calibration("calibration", format!("not JSON: {e}")))?;
        if head.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(SparseAttnError::calibration(
                "calibration.format",
                format!(
                    "expected \"{FORMAT}\", got {}",
                    head.get("format").unwrap_or(&serde_json::Value::Null)
                ),
            ));
        }
        match head.get("version").and_then(|v| v.as_u64()) {
            // Version 1 lacks only the optional accumulator range: read as it is.
            Some(v) if v == 1 || v == u64::from(VERSION) => {}
            other => {
                return Err(SparseAttnError::calibration(
                    "calibration.version",
                    format!(
                        "this build reads versions 1 to {VERSION}, the file is version {other:?}"
                    ),
                ))
            }
        }
        let c: Calibration = serde_json::from_value(head)
            .map_err(|e| SparseAttnError::calibration("calibration", e.to_string()))?;
        c.validate()?;
        if let Some(m) = expected {
            if &c.model != m {
                return Err(SparseAttnError::calibration(
                    "calibration.model",
                    format!("the file calibrates {:?}, not {:?}", c.model, m),
                ));
            }
        }
        Ok(c)
    }

    /// Writes the calibration to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()).map_err(|e| SparseAttnError::Io {
            action: "write",
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// Reads a calibration from `path` (see [`Calibration::from_json`]).
    pub fn load(path: &Path, expected: Option<&ModelShape>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| SparseAttnError::Io {
            action: "read",
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Self::from_json(&text, expected)
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

    #[test]
    fn files_round_trip_and_reject_other_versions_and_models() {
        let model = ModelShape {
            name: "m".into(),
            layers: 2,
            q_heads: 2,
            kv_heads: 1,
            head_dim: 4,
        };
        let q = vec![0.5f32; 2 * 3 * 4];
        let k = vec![-1.0f32; 3 * 4];
        let samples = [
            LayerSample {
                layer: 0,
                q: &q,
                k: &k,
                rows: 3,
            },
            LayerSample {
                layer: 1,
                q: &q,
                k: &k,
                rows: 3,
            },
        ];
        let imp = vec![vec![1.0, 2.0], vec![3.0, 4.0]];
        let c = Calibration::calibrate(
            model.clone(),
            &samples,
            &imp,
            RatioConfig::default(),
            1,
            0.5,
        )
        .unwrap();
        assert!((c.mean_q_scale - 0.5 / 127.0).abs() < 1e-9);
        let text = c.to_json();
        assert_eq!(Calibration::from_json(&text, Some(&model)).unwrap(), c);
        let other = ModelShape {
            layers: 3,
            ..model.clone()
        };
        let e = Calibration::from_json(&text, Some(&other)).unwrap_err();
        assert!(e.to_string().contains("calibration.model"), "{e}");
        let e = Calibration::from_json(&text.replace("\"version\": 2", "\"version\": 7"), None)
            .unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
        // q·k = 4 · (0.5 · −1) = −2 on every pair; scales 0.5/127 and 1/127.
        let range = c.pilot_acc_range.unwrap();
        assert!((range - 2.0 * 127.0 * 127.0 / 0.5).abs() < 1e-2, "{range}");
        // A version-1 file (no range) is read, and asking it for an INT8 pilot names the fix.
        let old = Calibration {
            version: 1,
            pilot_acc_range: None,
            ..c.clone()
        };
        let migrated = Calibration::from_json(&old.to_json(), Some(&model)).unwrap();
        assert_eq!(migrated, old);
        let bad_range = Calibration {
            pilot_acc_range: Some(f32::NAN),
            ..c.clone()
        };
        assert!(bad_range.validate().is_err());
        let e =
            Calibration::from_json(&text.replace("shadowattn-calibration", "x"), None).unwrap_err();
        assert!(e.to_string().contains("format"), "{e}");
        let bad_ratio = text.replacen(
            "\"ratios\": [\n    [\n      ",
            "\"ratios\": [\n    [\n      7.0, ",
            1,
        );
        assert!(Calibration::from_json(&bad_ratio, None).is_err());
        let bad = ModelShape {
            kv_heads: 3,
            ..model
        };
        assert!(mean_scales(&bad, &samples).is_err());
    }
}
