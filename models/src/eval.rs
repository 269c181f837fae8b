//! Perplexity over windows of a text, per-head importance by ablation, and the Q/K samples
//! that calibrate the bucket grid.

use crate::attention::{Ablated, Dense, MassProbe, Sharing};
use crate::error::{ModelError, Result};
use crate::model::{Attention, Model};
use shadowattn_hal::{AttentionInputs, ComputeBackend};
use shadowattn_sparse_attn::allocation::{allocate_by_mass, Gains, MassCurve};

/// Perplexity of a text under one attention implementation.
#[derive(Clone, Debug, PartialEq)]
pub struct Perplexity {
    /// exp(mean negative log-likelihood).
    pub ppl: f64,
    /// Mean negative log-likelihood, nats per token.
    pub nll: f64,
    /// Predictions scored.
    pub scored: usize,
    /// Windows run.
    pub windows: usize,
}

/// Non-overlapping windows of `window` tokens (each starting with `bos` when given); the tail
/// shorter than a quarter window is dropped. At most `max_windows` windows.
pub fn windows(
    tokens: &[u32],
    window: usize,
    bos: Option<u32>,
    max_windows: usize,
) -> Result<Vec<Vec<u32>>> {
    let body = window.saturating_sub(usize::from(bos.is_some()));
    if body < 2 {
        return Err(ModelError::InvalidArgument {
            argument: "window",
            detail: format!("{window} tokens is too short to score a prediction"),
        });
    }
    let out: Vec<Vec<u32>> = tokens
        .chunks(body)
        .filter(|c| c.len() >= (body / 4).max(2))
        .take(max_windows)
        .map(|c| bos.into_iter().chain(c.iter().copied()).collect())
        .collect();
    if out.is_empty() {
        return Err(ModelError::InvalidArgument {
            argument: "text",
            detail: format!("{} tokens make no window of {window}", tokens.len()),
        });
    }
    Ok(out)
}

/// Perplexity of `model` over `windows` with `attention` (every prediction of every window).
pub fn perplexity(
    model: &Model,
    windows: &[Vec<u32>],
    attention: &mut dyn Attention,
) -> Result<Perplexity> {
    let (mut total, mut scored) = (0.0f64, 0usize);
    for w in windows {
        let hidden = model.forward(w, attention)?;
        let (nll, n) = model.nll(&hidden, w, 0);
        total += nll * n as f64;
        scored += n;
    }
    let nll = total / scored.max(1) as f64;
    Ok(Perplexity {
        ppl: nll.exp(),
        nll,
        scored,
        windows: windows.len(),
    })
}

/// Losses (mean NLL, nats) with each head, and each layer's attention, zeroed.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ablation {
    /// Loss of the intact model.
    pub base: f64,
    /// Loss with head `[layer][head]` zeroed.
    pub heads: Vec<Vec<f64>>,
    /// Loss with the whole attention of layer `[layer]` zeroed.
    pub layers: Vec<f64>,
}

/// How ablation losses become importance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportanceRule {
    /// The paper's Eq. 1–3: (head loss increase) × (layer loss increase), each floored at 1e-4.
    LossIncrease,
    /// The authors' artifact (`get_ratios.py`): (ablated-head perplexity) × (ablated-layer
    /// perplexity), capped at 102,400.
    PerplexityProduct,
}

impl Ablation {
    /// Importance `[layer][head]` under `rule`.
    pub fn importance(&self, rule: ImportanceRule) -> Vec<Vec<f64>> {
        self.heads
            .iter()
            .zip(&self.layers)
            .map(|(heads, &layer)| {
                heads
                    .iter()
                    .map(|&head| match rule {
                        ImportanceRule::LossIncrease => {
                            (head - self.base).max(1e-4) * (layer - self.base).max(1e-4)
                        }
                        ImportanceRule::PerplexityProduct => {
                            (head.exp() * layer.exp()).min(102_400.0)
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

/// Ablation losses of every head and layer on `windows` (`progress(done, total)` after each).
pub fn ablate(
    model: &Model,
    compute: &dyn ComputeBackend,
    windows: &[Vec<u32>],
    mut progress: impl FnMut(usize, usize),
) -> Result<Ablation> {
    let c = &model.config;
    // Layers before the ablated one are unchanged: restart from the cached residual stream.
    let states: Vec<Vec<Vec<f32>>> = windows
        .iter()
        .map(|w| model.layer_inputs(w, &mut Dense { compute }))
        .collect::<Result<_>>()?;
    let base = perplexity(model, windows, &mut Dense { compute })?.nll;
    let total = c.layers * (c.q_heads + 1);
    let mut done = 0;
    let (mut heads, mut layers) = (Vec::with_capacity(c.layers), Vec::with_capacity(c.layers));
    for layer in 0..c.layers {
        let mut loss = |head: Option<usize>| -> Result<f64> {
            let mut a = Ablated {
                compute,
                layer,
                head,
            };
            let (mut sum, mut count) = (0.0, 0);
            for (w, s) in windows.iter().zip(&states) {
                let hidden = model.forward_from_layer(s[layer].clone(), w.len(), layer, &mut a)?;
                let (nll, k) = model.nll(&hidden, w, 0);
                sum += nll * k as f64;
                count += k;
            }
            done += 1;
            progress(done, total);
            Ok(sum / count.max(1) as f64)
        };
        layers.push(loss(None)?);
        heads.push(
            (0..c.q_heads)
                .map(|h| loss(Some(h)))
                .collect::<Result<Vec<_>>>()?,
        );
    }
    Ok(Ablation {
        base,
        heads,
        layers,
    })
}

/// The kept-mass curves `[layer][unit]` of every selecting unit on `windows` ([`MassProbe`])
/// (`progress(done, total)` after each window).
pub fn mass_curves(
    model: &Model,
    compute: &dyn ComputeBackend,
    windows: &[Vec<u32>],
    (sharing, min_keys, rule): (Sharing, usize, shadowattn_hal::BudgetRule),
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<Vec<MassCurve>>> {
    let mut probe = MassProbe {
        compute,
        sharing,
        min_keys,
        rule,
        sums: Vec::new(),
        rows: Vec::new(),
    };
    for (done, w) in windows.iter().enumerate() {
        model.forward(w, &mut probe)?;
        progress(done + 1, windows.len());
    }
    Ok(probe.curves())
}

/// Per-head ratios `[layer][query head]` from kept-mass curves ([`mass_curves`]): each
/// selecting unit (head, or GQA group with [`Sharing::PerGroup`], whose heads all get the
/// group's ratio) gets the ratio that maximizes the mass kept by all units together at mean
/// `global_ratio`, each at least `min_ratio` ([`allocate_by_mass`]), stepping along each curve's
/// concave envelope when the budget `rule` has anchors (their curves are flat at first).
pub fn ratios_from_curves(
    model: &Model,
    curves: &[Vec<MassCurve>],
    (sharing, rule): (Sharing, shadowattn_hal::BudgetRule),
    (global_ratio, min_ratio): (f32, f32),
) -> Result<Vec<Vec<f32>>> {
    let c = &model.config;
    let flat: Vec<MassCurve> = curves.iter().flatten().cloned().collect();
    let gains = if rule.anchors == shadowattn_hal::Anchors::NONE {
        Gains::Curve
    } else {
        Gains::Envelope
    };
    let per_unit = allocate_by_mass(&flat, global_ratio, min_ratio, gains)?;
    let heads_per_unit = match sharing {
        Sharing::PerHead => 1,
        Sharing::PerGroup => c.q_heads / c.kv_heads,
    };
    Ok(per_unit
        .chunks(c.q_heads / heads_per_unit)
        .map(|layer| {
            layer
                .iter()
                .flat_map(|&r| std::iter::repeat_n(r, heads_per_unit))
                .collect()
        })
        .collect())
}

/// Candidate accumulator ranges of [`tune_accumulator_range`]: the calibration's largest
/// accumulator times 2^(-j/2) for j in 0..=RANGE_STEPS (down to 1/64).
pub const RANGE_STEPS: u32 = 12;

/// The INT8-output pilot's accumulator range that serves the model best on calibration text:
/// of the calibration's range (the largest accumulator, which never clips) and its reductions by
/// steps of √2 (finer steps, the largest scores saturating), the one with the lowest perplexity
/// of sparse attention on `windows` with uniform `ratio`, `sharing` and the budget `rule` (ties to
/// the larger).
/// Returns it with every candidate's perplexity (`progress(done, total)` after each candidate).
pub fn tune_accumulator_range(
    model: &Model,
    compute: &dyn ComputeBackend,
    windows: &[Vec<u32>],
    calibration: &shadowattn_sparse_attn::calibration::Calibration,
    (ratio, sharing, min_keys, rule): (f32, Sharing, usize, shadowattn_hal::BudgetRule),
    mut progress: impl FnMut(usize, usize),
) -> Result<(f32, Vec<(f32, f64)>)> {
    use crate::attention::{Ranking, Sparse};
    use shadowattn_sparse_attn::pilot::PilotOutput;
    let max = match PilotOutput::int8_of(calibration)? {
        PilotOutput::Int8 { acc_range } => acc_range,
        PilotOutput::Int32 => unreachable!("int8_of is INT8"),
    };
    let c = &model.config;
    let mut tried = Vec::new();
    for j in 0..=RANGE_STEPS {
        let acc_range = max / 2f32.powf(j as f32 / 2.0);
        let ranking = Ranking::pilot(calibration, PilotOutput::Int8 { acc_range });
        let ratios = Sparse::uniform(c.layers, c.q_heads, ratio);
        let mut sparse = Sparse::new(compute, ratios, ranking)
            .with_sharing(sharing)
            .with_rule(rule);
        sparse.min_keys = min_keys;
        tried.push((acc_range, perplexity(model, windows, &mut sparse)?.ppl));
        progress(tried.len(), RANGE_STEPS as usize + 1);
    }
    let best = tried
        .iter()
        .fold(tried[0], |b, &t| if t.1 < b.1 { t } else { b });
    Ok((best.0, tried))
}

/// Copies of every layer's Q and K (`[heads, rows, dim]`) on one window, for the bucket grid.
pub fn qk_samples(
    model: &Model,
    compute: &dyn ComputeBackend,
    window: &[u32],
) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
    let mut samples = Vec::with_capacity(model.config.layers);
    let mut keep =
        |_: usize, i: AttentionInputs<'_>| samples.push((i.q().to_vec(), i.k().to_vec()));
    model.forward_from(window, &mut Dense { compute }, &mut keep)?;
    Ok(samples)
}

/// The model's shape as the calibration file records it.
pub fn model_shape(model: &Model, name: &str) -> shadowattn_sparse_attn::calibration::ModelShape {
    let c = &model.config;
    shadowattn_sparse_attn::calibration::ModelShape {
        name: name.to_string(),
        layers: c.layers,
        q_heads: c.q_heads,
        kv_heads: c.kv_heads,
        head_dim: c.head_dim,
    }
}

/// A calibration from real Q/K (every layer on `window`) and per-head `importance`, at the mean
/// ratio `ratio_config.global_ratio`, with the paper's 3×3 bucket grid (σ = 0.5), for a pilot
/// that centers keys when `center_keys`.
pub fn calibrate(
    model: &Model,
    name: &str,
    compute: &dyn ComputeBackend,
    window: &[u32],
    importance: &[Vec<f64>],
    ratio_config: shadowattn_sparse_attn::calibration::RatioConfig,
    center_keys: bool,
) -> Result<shadowattn_sparse_attn::calibration::Calibration> {
    let samples = qk_samples(model, compute, window)?;
    let layers: Vec<shadowattn_sparse_attn::calibration::LayerSample<'_>> = samples
        .iter()
        .enumerate()
        .map(
            |(layer, (q, k))| shadowattn_sparse_attn::calibration::LayerSample {
                layer,
                q,
                k,
                rows: window.len(),
            },
        )
        .collect();
    let calibrate = if center_keys {
        shadowattn_sparse_attn::calibration::Calibration::calibrate_centered
    } else {
        shadowattn_sparse_attn::calibration::Calibration::calibrate
    };
    Ok(calibrate(
        model_shape(model, name),
        &layers,
        importance,
        ratio_config,
        1,
        0.5,
    )?)
}
