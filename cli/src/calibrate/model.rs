//! A calibration of a real model (GGUF) on a calibration text — the paper's offline stage: the
//! scales and bucket grid from the model's real Q/K, per-head or per-group ratios, the INT8
//! output's accumulator range tuned on the text, the budget rule. The one implementation that
//! `shadowattn calibrate --model` and `shadowattn eval` (its sparse runs and `--calibration-out`)
//! share: the same options ([`CalibrationOptions`]), the same steps ([`Calibrated::make`]), the
//! same file ([`Calibrated::file`]).

use super::CalibrateError;
use crate::progress::progress_bar;
use crate::selection::SelectionArg;
use clap::Args;
use indicatif::ProgressBar;
use shadowattn_hal::{BudgetRule, ComputeBackend};
use shadowattn_models::attention::Sparse;
use shadowattn_models::eval::{
    self, ablate, calibrate, mass_curves, ratios_from_curves, tune_accumulator_range, Ablation,
    ImportanceRule, RANGE_STEPS,
};
use shadowattn_models::ModelConfig;
use shadowattn_models::{Model, ModelError, Tokenizer};
use shadowattn_sparse_attn::allocation::MassCurve;
use shadowattn_sparse_attn::calibration::{Calibration, RatioConfig};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn Error>>;

/// The mean ratio of a calibration file's ratios: what `eval --calibration-out` writes, and
/// `calibrate --ratio`'s default.
pub const FILE_RATIO: f32 = 0.2;

/// The calibration options of `eval` and `calibrate --model`: the same names, defaults and
/// meaning in both.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct CalibrationOptions {
    /// Tokens per calibration window (the text must fill one).
    #[arg(long, default_value_t = 256, requires = "model")]
    pub calibration_window: usize,
    /// Tokens per calibration window of the `mass` allocation (one dense pass, so it can afford
    /// the evaluation's length; default `--calibration-window`).
    #[arg(long, requires = "model")]
    pub mass_window: Option<usize>,
    /// Calibration windows (the first of the text): the ablation, the `mass` allocation's
    /// curves and the accumulator range's tuning run on them, the scales on the first.
    #[arg(long, default_value_t = 2, requires = "model", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub calibration_windows: usize,
    /// Smallest per-head ratio, as a fraction of each mean ratio.
    #[arg(long, default_value_t = 0.1, requires = "model")]
    pub min_ratio_fraction: f32,
    /// Whether the pilot subtracts each KV head's mean key before quantizing K (the ranking is
    /// unchanged, K's range shrinks; calibrated so): on by default (measured better),
    /// `--center-keys false` turns it off.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, requires = "model")]
    pub center_keys: bool,
}

impl CalibrationOptions {
    /// Refuses a smallest ratio outside (0, 1] of the mean.
    pub fn check(&self) -> Res<()> {
        if !(self.min_ratio_fraction > 0.0 && self.min_ratio_fraction <= 1.0) {
            return Err("--min-ratio-fraction must be in (0, 1]".into());
        }
        Ok(())
    }
}

/// How mean ratios are split among heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AllocationArg {
    /// Every head the mean ratio.
    Uniform,
    /// Per head from the ablated-perplexity product (the authors' artifact).
    PplProduct,
    /// Per head from the loss increase (the paper's Eq. 1–3).
    LossIncrease,
    /// Per head or per GQA group (as `--selection`) from the attention mass kept.
    Mass,
}

impl AllocationArg {
    /// The label in reports.
    pub fn label(self, selection: SelectionArg) -> &'static str {
        match (self, selection) {
            (AllocationArg::Uniform, _) => "uniform",
            (AllocationArg::PplProduct, _) => "per-head:ppl-product",
            (AllocationArg::LossIncrease, _) => "per-head:loss-increase",
            (AllocationArg::Mass, SelectionArg::Group) => "per-group:mass",
            (AllocationArg::Mass, SelectionArg::Row) => "per-head:mass",
        }
    }

    fn needs_ablation(self) -> bool {
        matches!(
            self,
            AllocationArg::PplProduct | AllocationArg::LossIncrease
        )
    }
}

/// The model a calibration is made for, loaded.
#[derive(Clone, Copy)]
pub struct Loaded<'a> {
    /// The weights.
    pub model: &'a Model,
    /// Its tokenizer (the windows' BOS).
    pub tokenizer: &'a Tokenizer,
    /// The name the file records.
    pub name: &'a str,
    /// The backend of attention, top-k and quantization.
    pub compute: &'a dyn ComputeBackend,
}

/// What a calibration is made with: the shared options and those of the calling command.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The calibration text.
    pub text: PathBuf,
    /// The option that names it (`--text`, `--calibration-text`), for errors.
    pub text_option: &'static str,
    /// The shared options.
    pub options: CalibrationOptions,
    /// The mean ratio of the file's ratios, and of the accumulator range's tuning.
    pub ratio: f32,
    /// Who shares a key set (the `mass` rule's units, the tuning's sparse runs).
    pub selection: SelectionArg,
    /// Fewest keys a query row keeps.
    pub min_keys: usize,
    /// How each selecting unit's keys are spread over its rows (recorded in the file).
    pub rule: BudgetRule,
    /// The allocation rules to prepare: the ablation runs when one of them needs it, the mass
    /// curves are measured when `mass` is among them.
    pub allocations: Vec<AllocationArg>,
    /// Ablation losses to read instead of ablating (`eval --ablation`).
    pub ablation: Option<PathBuf>,
    /// Where to write the ablation losses (`eval --ablation-out`).
    pub ablation_out: Option<PathBuf>,
}

impl Settings {
    /// Tokens per window of the mass curves.
    fn mass_window(&self) -> usize {
        self.options
            .mass_window
            .unwrap_or(self.options.calibration_window)
    }

    fn mass(&self) -> bool {
        self.allocations.contains(&AllocationArg::Mass)
    }

    /// Checks every window against the model's context length (before the weights load).
    pub fn check_tokens(&self, config: &ModelConfig) -> Result<(), ModelError> {
        config.check_tokens("--calibration-window", self.options.calibration_window)?;
        if let Some(mass) = self.options.mass_window {
            config.check_tokens("--mass-window", mass)?;
        }
        Ok(())
    }

    /// The calibration text's tokens; refused when the file is unreadable, empty, or shorter
    /// than one calibration window (or one window of the mass curves).
    pub fn text_tokens(&self, tokenizer: &Tokenizer) -> Res<Vec<u32>> {
        let (option, path) = (self.text_option, self.text.clone());
        let text =
            std::fs::read_to_string(&self.text).map_err(|e| CalibrateError::UnreadableText {
                option,
                path: path.clone(),
                detail: e.to_string(),
            })?;
        let tokens = tokenizer.encode(&text)?;
        if tokens.is_empty() {
            return Err(CalibrateError::EmptyText { option, path }.into());
        }
        let mut windows = vec![("--calibration-window", self.options.calibration_window)];
        if self.mass() && self.options.mass_window.is_some() {
            windows.push(("--mass-window", self.mass_window()));
        }
        for (window_option, window) in windows {
            // A window is BOS (when the model has one) and the text's next tokens.
            let needed = window.saturating_sub(usize::from(tokenizer.bos.is_some()));
            if tokens.len() < needed {
                return Err(CalibrateError::ShortText {
                    option,
                    path,
                    tokens: tokens.len(),
                    window_option,
                    window,
                    needed,
                }
                .into());
            }
        }
        Ok(tokens)
    }
}

/// What the calibration text gives: its windows, the ablation, the mass curves and the base
/// calibration (scales, bucket grid, the INT8 output's tuned range, the budget rule).
pub struct Calibrated<'a> {
    model: Loaded<'a>,
    settings: Settings,
    /// The calibration windows.
    pub windows: Vec<Vec<u32>>,
    /// The ablation losses, when an allocation needs them.
    pub ablation: Option<Ablation>,
    /// The kept-mass curves `[layer][unit]`, when `mass` is asked for.
    pub curves: Option<Vec<Vec<MassCurve>>>,
    /// The base calibration at the settings' ratio: its ratios from the ablated perplexity
    /// product (uniform without an ablation).
    pub base: Calibration,
}

impl<'a> Calibrated<'a> {
    /// Ablation (when an allocation needs it), mass curves (for `mass`), the base calibration
    /// with its tuned accumulator range; each printed, with a progress bar on a terminal.
    /// `tokens` is the calibration text ([`Settings::text_tokens`]).
    pub fn make(model: Loaded<'a>, settings: Settings, tokens: &[u32]) -> Res<Self> {
        let (o, bos) = (&settings.options, model.tokenizer.bos);
        let c = &model.model.config;
        let windows = eval::windows(tokens, o.calibration_window, bos, o.calibration_windows)?;
        let mass_windows = match settings.mass() {
            true => Some(eval::windows(
                tokens,
                settings.mass_window(),
                bos,
                o.calibration_windows,
            )?),
            false => None,
        };
        let ablate = settings.allocations.iter().any(|a| a.needs_ablation());
        let steps = match ablate && settings.ablation.is_none() {
            true => c.layers * (c.q_heads + 1),
            false => 0,
        } + mass_windows.as_ref().map_or(0, Vec::len)
            + 1
            + RANGE_STEPS as usize
            + 1;
        let bar = progress_bar(steps);
        let ablation = match ablate {
            true => Some(ablation(model, &settings, &windows, &bar)?),
            false => None,
        };
        if let (Some(path), Some(a)) = (&settings.ablation_out, &ablation) {
            std::fs::write(path, serde_json::to_string(a)?)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if let Some(a) = &ablation {
            let layer_ppl: Vec<String> =
                a.layers.iter().map(|l| format!("{:.1}", l.exp())).collect();
            bar.suspend(|| {
                println!(
                    "ablation_ppl: intact {:.2}; without layer 0..{}: {}",
                    a.base.exp(),
                    c.layers - 1,
                    layer_ppl.join(" ")
                )
            });
        }
        let curves = match &mass_windows {
            Some(w) => Some(curves(model, &settings, w, &bar)?),
            None => None,
        };
        bar.set_message("scales and bucket grid");
        let base = calibration_at(
            model,
            &settings,
            &windows,
            ablation.as_ref(),
            settings.ratio,
            ImportanceRule::PerplexityProduct,
        )?;
        bar.inc(1);
        let mut calibrated = Calibrated {
            model,
            settings,
            windows,
            ablation,
            curves,
            base,
        };
        calibrated.tune_range(&bar)?;
        bar.finish_and_clear();
        Ok(calibrated)
    }

    /// Tunes the INT8 output's accumulator range on the calibration text (printed).
    fn tune_range(&mut self, bar: &ProgressBar) -> Res<()> {
        let (m, s) = (self.model, &self.settings);
        let t = Instant::now();
        bar.set_message("accumulator range");
        let (acc_range, tried) = tune_accumulator_range(
            m.model,
            m.compute,
            &self.windows,
            &self.base,
            (s.ratio, s.selection.sharing(), s.min_keys, s.rule),
            |_, _| bar.inc(1),
        )?;
        self.base.pilot_acc_range = Some(acc_range);
        let tried: Vec<String> = tried
            .iter()
            .map(|(r, ppl)| format!("{r:.0}: {ppl:.3}"))
            .collect();
        let base = &self.base;
        bar.suspend(|| {
            println!(
                "accumulator_range: {acc_range:.0} (calibration-text perplexity with the INT8-output pilot, uniform {} %, per range: {}; {:.1} s)",
                percent(s.ratio),
                tried.join(", "),
                t.elapsed().as_secs_f64()
            );
            println!("calibration: {}", summary(base));
        });
        Ok(())
    }

    /// The rule of the file: the best of the measured table (the README's) among those that
    /// ran — `mass`, else the ablated perplexity product, else uniform.
    pub fn file_rule(&self) -> AllocationArg {
        match (&self.curves, &self.ablation) {
            (Some(_), _) => AllocationArg::Mass,
            (None, Some(_)) => AllocationArg::PplProduct,
            (None, None) => AllocationArg::Uniform,
        }
    }

    /// The calibration file: the base calibration with the ratios of [`Self::file_rule`] at the
    /// settings' ratio.
    pub fn file(&self) -> Res<Calibration> {
        Ok(match self.file_rule() {
            AllocationArg::Mass => Calibration {
                ratios: self.ratios(AllocationArg::Mass, self.settings.ratio)?,
                ..self.base.clone()
            },
            _ => self.base.clone(),
        })
    }

    /// Writes [`Self::file`] to `path` (printed) and returns it.
    pub fn write(&self, path: &Path) -> Res<Calibration> {
        let file = self.file()?;
        file.save(path)?;
        println!(
            "calibration_file: {} (ratios: {} at {} %)",
            path.display(),
            self.file_rule().label(self.settings.selection),
            percent(self.settings.ratio)
        );
        Ok(file)
    }

    /// The per-head ratios `[layer][query head]` of `allocation` at mean `ratio`.
    pub fn ratios(&self, allocation: AllocationArg, ratio: f32) -> Res<Vec<Vec<f32>>> {
        let (m, s) = (self.model, &self.settings);
        let c = &m.model.config;
        let at = |rule| calibration_at(m, s, &self.windows, self.ablation.as_ref(), ratio, rule);
        Ok(match allocation {
            AllocationArg::Uniform => Sparse::uniform(c.layers, c.q_heads, ratio),
            AllocationArg::PplProduct => at(ImportanceRule::PerplexityProduct)?.ratios,
            AllocationArg::LossIncrease => at(ImportanceRule::LossIncrease)?.ratios,
            AllocationArg::Mass => ratios_from_curves(
                m.model,
                self.curves
                    .as_ref()
                    .ok_or("the mass curves were not measured")?,
                (s.selection.sharing(), s.rule),
                (ratio, ratio * s.options.min_ratio_fraction),
            )?,
        })
    }
}

/// `ratio` in percent, as short as it is exact (0.2 → `20`).
fn percent(ratio: f32) -> String {
    format!("{}", (f64::from(ratio) * 1e5).round() / 1e3)
}

/// A calibration of the model on the first calibration window at mean `ratio`, heads weighted
/// by the ablation's `rule` (uniformly without an ablation), for the settings' budget rule.
fn calibration_at(
    m: Loaded<'_>,
    s: &Settings,
    windows: &[Vec<u32>],
    ablation: Option<&Ablation>,
    ratio: f32,
    rule: ImportanceRule,
) -> Res<Calibration> {
    let c = &m.model.config;
    let cfg = RatioConfig {
        global_ratio: ratio,
        min_ratio: ratio * s.options.min_ratio_fraction,
        importance_clamp: (1e-8, 1e8),
    };
    let importance = ablation.map_or_else(
        || vec![vec![1.0; c.q_heads]; c.layers],
        |a| a.importance(rule),
    );
    let calibration = calibrate(
        m.model,
        m.name,
        m.compute,
        &windows[0],
        &importance,
        cfg,
        s.options.center_keys,
    )?;
    Ok(Calibration {
        budget: s.rule,
        ..calibration
    })
}

/// The attention-mass curves of every selecting unit on the mass windows (printed).
fn curves(
    m: Loaded<'_>,
    s: &Settings,
    windows: &[Vec<u32>],
    bar: &ProgressBar,
) -> Res<Vec<Vec<MassCurve>>> {
    let t = Instant::now();
    bar.set_message("mass curves");
    let curves = mass_curves(
        m.model,
        m.compute,
        windows,
        (s.selection.sharing(), s.min_keys, s.rule),
        |_, _| bar.inc(1),
    )?;
    bar.suspend(|| {
        println!(
            "mass_curves: {} units on {} ({} windows of {}) in {:.1} s",
            curves.iter().map(Vec::len).sum::<usize>(),
            s.text.display(),
            windows.len(),
            s.mass_window(),
            t.elapsed().as_secs_f64()
        )
    });
    Ok(curves)
}

/// The ablation losses: read from `--ablation`, or measured on `windows` (printed).
fn ablation(m: Loaded<'_>, s: &Settings, windows: &[Vec<u32>], bar: &ProgressBar) -> Res<Ablation> {
    let c = &m.model.config;
    if let Some(path) = &s.ablation {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let a: Ablation = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not an ablation file: {e}", path.display()))?;
        if a.layers.len() != c.layers
            || a.heads.iter().any(|h| h.len() != c.q_heads)
            || a.heads.len() != c.layers
        {
            return Err(format!("{}: ablation of another model shape", path.display()).into());
        }
        return Ok(a);
    }
    let t = Instant::now();
    bar.set_message("ablation");
    let a = ablate(m.model, m.compute, windows, |done, total| {
        bar.inc(1);
        // Without a bar (stderr not a terminal), a line now and then.
        if bar.is_hidden() && done % 30 == 0 {
            eprintln!("ablation {done}/{total}");
        }
    })?;
    bar.suspend(|| {
        println!(
            "ablation: {} heads + {} layers on {} ({} windows of {}) in {:.0} s",
            c.layers * c.q_heads,
            c.layers,
            s.text.display(),
            windows.len(),
            s.options.calibration_window,
            t.elapsed().as_secs_f64()
        )
    });
    Ok(a)
}

/// A calibration's scales, bucket count, INT8 output range and key centring, as printed.
pub fn summary(c: &Calibration) -> String {
    format!(
        "mean scales q {:.5} k {:.5}, {} buckets, INT8-output accumulator range {:.0}, keys centered: {}",
        c.mean_q_scale,
        c.mean_k_scale,
        c.grid.len(),
        c.pilot_acc_range.unwrap_or(f32::NAN),
        c.center_keys
    )
}
