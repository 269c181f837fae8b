//! `shadowattn calibrate`: writes a calibration file (scales, bucket grid, per-head ratios, the
//! INT8 output's range, the budget rule) — of a real model on a calibration text (`--model
//! <gguf> --text <file>`, [`model`]: the file `eval --calibration-out` writes, from the same
//! code), or of a synthetic model (without `--model`, [`synthetic`]).

pub mod model;
mod synthetic;

use crate::backends::open_options;
use crate::budget::{describe, BudgetArgs};
use crate::selection::SelectionArg;
use clap::Args;
use model::{AllocationArg, CalibrationOptions, Loaded, Settings};
use shadowattn_cpu::fast::Arithmetic;
use shadowattn_hal::BudgetRule;
use shadowattn_models::ModelConfig;
use shadowattn_models::{Gguf, Model, ModelError, Tokenizer};
use shadowattn_registry::{ComputeSpec, OpenOptions};
use shadowattn_sparse_attn::calibration::Calibration;
use shadowattn_sparse_attn::metrics::percentile;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn Error>>;

/// Options of `shadowattn calibrate`.
#[derive(Args)]
pub struct CalibrateArgs {
    /// Output file (JSON).
    #[arg(long)]
    out: PathBuf,
    /// The model to calibrate on `--text` (GGUF: Llama, Qwen2 or Phi-3; `bash ci/model.sh` fetches
    /// SmolLM2-135M): its shape, scales and bucket grid from its real Q/K, the `mass` ratios per
    /// GQA group (or head, `--selection head`), the INT8 output's range tuned on the text — what
    /// `eval --calibration-out` writes. Without it, a synthetic calibration.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Calibration text of `--model` (`eval`'s default is /usr/share/common-licenses/Apache-2.0).
    #[arg(long)]
    text: Option<PathBuf>,
    /// Model name recorded in the file (default: the GGUF's `general.name` with `--model`, else
    /// `synthetic`).
    #[arg(long)]
    name: Option<String>,
    /// Mean fraction of keys kept.
    #[arg(long, default_value_t = model::FILE_RATIO)]
    ratio: f32,
    /// How each selecting unit's keys are spread over a chunk's rows (written into the file;
    /// default the measured best).
    #[command(flatten)]
    budget: BudgetArgs,
    #[command(flatten, next_help_heading = "With --model")]
    calibration: CalibrationOptions,
    /// Who selects keys: every GQA group one set for its heads (the `mass` ratios per group), or
    /// every query head its own.
    #[arg(long, value_enum, default_value_t = SelectionArg::Group, requires = "model")]
    selection: SelectionArg,
    /// Fewest keys a query row keeps in the accumulator range's tuning and the mass curves.
    #[arg(long, default_value_t = 1, requires = "model", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    min_keys: usize,
    /// Compute backend for attention, top-k and quantization.
    #[arg(long, default_value = "cpu-fast", requires = "model")]
    compute: ComputeSpec,
    /// Arithmetic of the tuning's sparse softmax·V on `cpu-fast` (`f32` or `f16`).
    #[arg(long, default_value = "f32", requires = "model")]
    cpu_arith: Arithmetic,
    /// Layers (default 2).
    #[arg(long, help_heading = "Synthetic (without --model)")]
    layers: Option<usize>,
    /// Query heads per layer (default 9).
    #[arg(long, help_heading = "Synthetic (without --model)")]
    q_heads: Option<usize>,
    /// KV heads per layer (default 3).
    #[arg(long, help_heading = "Synthetic (without --model)")]
    kv_heads: Option<usize>,
    /// Head dimension (default 64).
    #[arg(long, help_heading = "Synthetic (without --model)")]
    head_dim: Option<usize>,
    /// Smallest ratio of any head (default 0.02).
    #[arg(long, help_heading = "Synthetic (without --model)")]
    min_ratio: Option<f32>,
    /// Per-head importance as JSON `[[layer0 head0, …], …]`; uniform when absent.
    #[arg(long, help_heading = "Synthetic (without --model)")]
    importance: Option<PathBuf>,
    /// Calibration sample rows (synthetic Q/K per layer; default 128).
    #[arg(long, help_heading = "Synthetic (without --model)")]
    rows: Option<usize>,
    /// Seed of the synthetic samples (default 1).
    #[arg(long, help_heading = "Synthetic (without --model)")]
    seed: Option<u64>,
}

impl CalibrateArgs {
    /// The synthetic-model options given.
    fn synthetic_options(&self) -> Vec<&'static str> {
        [
            ("--layers", self.layers.is_some()),
            ("--q-heads", self.q_heads.is_some()),
            ("--kv-heads", self.kv_heads.is_some()),
            ("--head-dim", self.head_dim.is_some()),
            ("--min-ratio", self.min_ratio.is_some()),
            ("--importance", self.importance.is_some()),
            ("--rows", self.rows.is_some()),
            ("--seed", self.seed.is_some()),
        ]
        .into_iter()
        .filter_map(|(option, given)| given.then_some(option))
        .collect()
    }
}

/// What `calibrate` refuses, each naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// `--text` without `--model`.
    #[error("--text needs --model: the text calibrates a model (a GGUF file); without --model, `calibrate` makes a synthetic calibration")]
    TextWithoutModel,
    /// `--model` without `--text`.
    #[error("--model needs --text: the calibration text the model runs on (`eval`'s default calibration text is /usr/share/common-licenses/Apache-2.0)")]
    ModelWithoutText,
    /// Options of the synthetic calibration together with `--model`.
    #[error("{} belong{} to the synthetic calibration (without --model); with --model the layers, heads and samples come from the model file", .options.join(", "), if .options.len() == 1 { "s" } else { "" })]
    SyntheticOptions {
        /// The options given.
        options: Vec<&'static str>,
    },
    /// A model file that cannot be read.
    #[error("--model {}: cannot read the file: {detail}", .path.display())]
    UnreadableModel {
        /// The file.
        path: PathBuf,
        /// The OS error.
        detail: String,
    },
    /// A file that is not a model this tool runs.
    #[error("--model {}: not a GGUF model this tool runs (Llama, Qwen2 or Phi-3): {source}", .path.display())]
    NotAModel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: ModelError,
    },
    /// A calibration text that cannot be read.
    #[error("{option} {}: cannot read the text: {detail}", .path.display())]
    UnreadableText {
        /// The option that names it.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        detail: String,
    },
    /// A calibration text without tokens.
    #[error("{option} {}: the text is empty", .path.display())]
    EmptyText {
        /// The option that names it.
        option: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A calibration text shorter than one window.
    #[error("{option} {}: {tokens} tokens, shorter than one calibration window ({window_option} {window} takes {needed} tokens of text): give a longer text or a shorter window", .path.display())]
    ShortText {
        /// The option that names it.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// Its tokens.
        tokens: usize,
        /// The option of the window.
        window_option: &'static str,
        /// The window's tokens.
        window: usize,
        /// The text's tokens one window takes (the window less BOS).
        needed: usize,
    },
}

impl CalibrateError {
    /// `e` from opening or reading `--model` at `path`.
    fn model(path: &Path, e: ModelError) -> Self {
        match e {
            ModelError::Io { detail, .. } => CalibrateError::UnreadableModel {
                path: path.to_path_buf(),
                detail,
            },
            source => CalibrateError::NotAModel {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

/// Runs the command.
pub fn run(args: &CalibrateArgs) -> Res<()> {
    match (&args.model, &args.text) {
        (None, None) => synthetic::run(args),
        (None, Some(_)) => Err(CalibrateError::TextWithoutModel.into()),
        (Some(_), None) => Err(CalibrateError::ModelWithoutText.into()),
        (Some(model), Some(text)) => {
            let options = args.synthetic_options();
            if !options.is_empty() {
                return Err(CalibrateError::SyntheticOptions { options }.into());
            }
            from_model(args, model, text)
        }
    }
}

/// The name a calibration of `gguf` records: its `general.name`.
pub fn recorded_name(gguf: &Gguf) -> String {
    gguf.get("general.name")
        .and_then(|v| v.as_str())
        .unwrap_or("model")
        .to_string()
}

/// `calibrate --model`: the model's calibration on `text` (every window checked against the
/// model's context length, and the text against the windows, before the weights load), written
/// to `--out` and summarized.
fn from_model(args: &CalibrateArgs, path: &Path, text: &Path) -> Res<()> {
    let started = Instant::now();
    if !(args.ratio > 0.0 && args.ratio <= 1.0) {
        return Err(format!("--ratio {} is not in (0, 1]", args.ratio).into());
    }
    args.calibration.check()?;
    let settings = Settings {
        text: text.to_path_buf(),
        text_option: "--text",
        options: args.calibration.clone(),
        ratio: args.ratio,
        selection: args.selection,
        min_keys: args.min_keys,
        rule: args.budget.rule_over(BudgetRule::MEASURED_BEST)?,
        // The best rule of `eval`'s table (the README's), the one `--calibration-out` writes.
        allocations: vec![AllocationArg::Mass],
        ablation: None,
        ablation_out: None,
    };
    let gguf = Gguf::open(path).map_err(|e| CalibrateError::model(path, e))?;
    let config = ModelConfig::from_gguf(&gguf).map_err(|e| CalibrateError::model(path, e))?;
    settings.check_tokens(&config)?;
    let tokenizer = Tokenizer::from_gguf(&gguf).map_err(|e| CalibrateError::model(path, e))?;
    let tokens = settings.text_tokens(&tokenizer)?;
    let compute = args.compute.open(&OpenOptions {
        cpu_arithmetic: args.cpu_arith,
        ..open_options()
    })?;
    let transformer = Model::from_gguf(&gguf).map_err(|e| CalibrateError::model(path, e))?;
    let name = args.name.clone().unwrap_or_else(|| recorded_name(&gguf));
    drop(gguf);
    let c = &transformer.config;
    println!(
        "model: {name} ({} layers, {} query / {} KV heads, head_dim {}; {})",
        c.layers,
        c.q_heads,
        c.kv_heads,
        c.head_dim,
        path.display()
    );
    let calibrated = model::Calibrated::make(
        Loaded {
            model: &transformer,
            tokenizer: &tokenizer,
            name: &name,
            compute: compute.as_ref(),
        },
        settings,
        &tokens,
    )?;
    let file = calibrated.write(&args.out)?;
    let used: usize = calibrated.windows.iter().map(Vec::len).sum();
    println!(
        "tokens: {used} of the {} of {} ({} windows of up to {}; the scales from the first)",
        tokens.len(),
        text.display(),
        calibrated.windows.len(),
        args.calibration.calibration_window,
    );
    print_spread(&file, calibrated.file_rule().label(args.selection));
    println!("budget: {}", describe(&file.budget));
    println!("elapsed_s: {:.1}", started.elapsed().as_secs_f64());
    Ok(())
}

/// The spread of the file's ratios (`rule`'s) over its heads.
fn print_spread(file: &Calibration, rule: &str) {
    let ratios: Vec<f64> = file
        .ratios
        .iter()
        .flatten()
        .map(|&r| f64::from(r))
        .collect();
    let mean = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
    let max = ratios.iter().copied().fold(f64::NAN, f64::max);
    let min = ratios.iter().copied().fold(f64::NAN, f64::min);
    println!(
        "ratios: {rule}; mean {mean:.4}, min {min:.4}, p10 {:.4}, median {:.4}, p90 {:.4}, max {max:.4} over {} layers x {} query heads",
        percentile(&ratios, 10.0),
        percentile(&ratios, 50.0),
        percentile(&ratios, 90.0),
        file.model.layers,
        file.model.q_heads
    );
}

/// A calibration file of a model of `[layers, q_heads, kv_heads, head_dim]` (its free-text name
/// is not compared: `eval` and `calibrate` write the GGUF's `general.name`).
pub(crate) fn load_for_model(path: &Path, dims: [usize; 4]) -> Res<Calibration> {
    let c = Calibration::load(path, None)?;
    let m = &c.model;
    if [m.layers, m.q_heads, m.kv_heads, m.head_dim] != dims {
        return Err(format!(
            "{}: calibrates {} layers of {} query / {} KV heads of {}, the model has {} layers of {} / {} heads of {}",
            path.display(),
            m.layers,
            m.q_heads,
            m.kv_heads,
            m.head_dim,
            dims[0],
            dims[1],
            dims[2],
            dims[3]
        )
        .into());
    }
    Ok(c)
}
