//! `shadowattn eval`: perplexity of a real model (GGUF) with dense attention and with
//! shadowAttn's sparse attention (uniform or calibrated per-head ratios; the INT8 pilot with
//! INT32 or INT8 output, keys centered or not, or the exact top-k; a key set per query head or
//! per GQA group; optionally the core itself on an NPU backend), per-head importance by
//! ablation, and the pilot's top-k recall on real heads.

use crate::backends::open_options;
use crate::budget::{describe, BudgetArgs};
use crate::pilot::PilotArg;
use crate::plot::perplexity::PplRow;
use crate::progress::progress_bar;
use crate::selection::SelectionArg;
use clap::Args;
use shadowattn_cpu::fast::Arithmetic;
use shadowattn_hal::{BudgetRule, ComputeBackend, NpuBackend};
use shadowattn_models::attention::{CoreAttention, Dense, KeptPairs, Ranking, RecallProbe, Sparse};
use shadowattn_models::eval::{
    ablate, calibrate, mass_curves, perplexity, ratios_from_curves, tune_accumulator_range,
    windows, Ablation, ImportanceRule,
};
use shadowattn_models::model::ModelConfig;
use shadowattn_models::{Attention, Gguf, Model, Tokenizer};
use shadowattn_registry::{ComputeSpec, NpuSpec, OpenOptions};
use shadowattn_sparse_attn::allocation::MassCurve;
use shadowattn_sparse_attn::calibration::{Calibration, RatioConfig};
use shadowattn_sparse_attn::metrics::percentile;
use shadowattn_sparse_attn::pilot::PilotOutput;
use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `shadowattn eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// The model (GGUF: Llama, Qwen2 or Phi-3); `bash ci/model.sh` fetches SmolLM2-135M.
    #[arg(long)]
    model: PathBuf,
    /// Evaluation text.
    #[arg(long, default_value = "/usr/share/common-licenses/GPL-3")]
    text: PathBuf,
    /// Tokens per evaluation window (each window is one prefill chunk).
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// Most evaluation windows (the first ones of the text).
    #[arg(long, default_value_t = 1000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_windows: usize,
    /// Who selects keys in the sparse runs: every query head its own, or every GQA group one
    /// set for its heads (also the core's granularity with `--npu`).
    #[arg(long, value_enum, default_value_t = SelectionArg::Group)]
    selection: SelectionArg,
    /// Fewest keys a query row keeps in the sparse runs (a row with fewer valid keys keeps them
    /// all).
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    min_keys: usize,
    /// Mean fractions of keys kept, comma-separated.
    #[arg(long, default_value = "0.05,0.1,0.2,0.3", value_delimiter = ',')]
    ratios: Vec<f32>,
    /// Allocation rules of the sparse runs, comma-separated: `uniform`, `ppl-product` and
    /// `loss-increase` (per-head importance by ablation: ~15 min for a 135M model; the ablation
    /// runs only if one of them is asked for) and `mass` (each selecting unit's ratio from the
    /// attention mass it keeps on the calibration text: one dense pass).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "uniform,ppl-product,loss-increase,mass"
    )]
    allocations: Vec<AllocationArg>,
    /// Calibration text for importance and scales (not the evaluation text).
    #[arg(long, default_value = "/usr/share/common-licenses/Apache-2.0")]
    calibration_text: PathBuf,
    /// Tokens per calibration window.
    #[arg(long, default_value_t = 256)]
    calibration_window: usize,
    /// Tokens per calibration window of the `mass` allocation (one dense pass, so it can afford
    /// the evaluation's length; default `--calibration-window`).
    #[arg(long)]
    mass_window: Option<usize>,
    /// Calibration windows used for ablation and for the `mass` allocation.
    #[arg(long, default_value_t = 2)]
    calibration_windows: usize,
    /// Read the ablation losses (JSON written by `--ablation-out`) instead of ablating again.
    #[arg(long)]
    ablation: Option<PathBuf>,
    /// Write the ablation losses (JSON) here.
    #[arg(long)]
    ablation_out: Option<PathBuf>,
    /// Write the calibration file (bucket grid, per-head ratios at 20 %: from the `mass` rule
    /// when it is in `--allocations`, else from the ablated perplexity product, else uniform)
    /// here.
    #[arg(long)]
    calibration_out: Option<PathBuf>,
    /// Smallest per-head ratio, as a fraction of each mean ratio.
    #[arg(long, default_value_t = 0.1)]
    min_ratio_fraction: f32,
    /// Compute backend for attention, top-k and quantization.
    #[arg(long, default_value = "cpu-fast")]
    compute: ComputeSpec,
    /// Arithmetic of the sparse runs' softmax·V on `cpu-fast`: `f32`, or `f16` (weights and V
    /// rounded to f16, f16 multiply-adds; NEON FP16 on CPUs that have it, emulated elsewhere).
    #[arg(long, default_value = "f32")]
    cpu_arith: Arithmetic,
    /// Print the dense perplexity only (no calibration, no sparse runs).
    #[arg(long)]
    dense_only: bool,
    /// Draw the table as an SVG chart here: perplexity against the mean fraction of keys kept,
    /// a line per allocation and ranking, the dense perplexity as a horizontal line.
    #[arg(long, conflicts_with = "dense_only")]
    plot: Option<PathBuf>,
    /// Rankings of the sparse runs, comma-separated: the INT8 pilot ranking on its exact INT32
    /// accumulators (`pilot-i32`) or on scores requantized to INT8 as an NPU outputs them
    /// (`pilot-i8`, accumulator range from the calibration text), and the exact top-k (`exact`).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "pilot-i32,pilot-i8,exact"
    )]
    rankings: Vec<RankingArg>,
    /// Whether the pilot subtracts each KV head's mean key before quantizing K (the ranking is
    /// unchanged, K's range shrinks; calibrated so): on by default (measured better),
    /// `--center-keys false` turns it off.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    center_keys: bool,
    /// Also run the INT8 pilot through the sparse-attention core on this NPU backend (`cpu`,
    /// `sim:<soc>`, `qnn:htp`, …): the graph bank, planner and threaded executor of `shadowattn
    /// run`, on the real model, with the pilot's INT8 output.
    #[arg(long)]
    npu: Option<NpuSpec>,
    /// The pilots the `--npu` runs use, comma-separated, a row each: `group` (a launch unit per
    /// GQA group, the ranking summed on the NPU), `group-cpu`, `head`, `auto`.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "auto")]
    pilots: Vec<PilotArg>,
    /// How the sparse runs spread each unit's keys over its rows.
    #[command(flatten)]
    budget: BudgetArgs,
}

/// How keys are ranked in the sparse runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RankingArg {
    /// The INT8 pilot's exact INT32 accumulators.
    PilotI32,
    /// The INT8 pilot's scores requantized to INT8 (the NPU's output form).
    PilotI8,
    /// Exact f32 scores (the oracle).
    Exact,
}

impl RankingArg {
    /// The label in the table.
    fn label(self) -> &'static str {
        match self {
            RankingArg::PilotI32 => "pilot:i32",
            RankingArg::PilotI8 => "pilot:i8",
            RankingArg::Exact => "exact-topk",
        }
    }

    /// The ranking on `calibration`'s grid.
    fn ranking(self, calibration: &Calibration) -> Result<Ranking, Box<dyn Error>> {
        Ok(match self {
            RankingArg::PilotI32 => Ranking::pilot(calibration, PilotOutput::Int32),
            RankingArg::PilotI8 => Ranking::pilot(calibration, PilotOutput::int8_of(calibration)?),
            RankingArg::Exact => Ranking::Exact,
        })
    }
}

/// How mean ratios are split among heads in the sparse runs.
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
    /// The label in the table.
    fn label(self, selection: SelectionArg) -> &'static str {
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

pub(crate) fn read(path: &PathBuf) -> Result<String, Box<dyn Error>> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Runs the command: the dense perplexity, then (unless `--dense-only`) the calibration on the
/// calibration text and the table of sparse runs.
pub fn run(args: &EvalArgs) -> Result<(), Box<dyn Error>> {
    check(args)?;
    if let Some(path) = &args.plot {
        crate::plot::check_target(path)?;
    }
    let compute_box = args.compute.open(&OpenOptions {
        cpu_arithmetic: args.cpu_arith,
        ..open_options()
    })?;
    let compute = compute_box.as_ref();
    let npu = match &args.npu {
        Some(spec) => Some(spec.open(&open_options())?),
        None => None,
    };
    let started = Instant::now();
    let rule = args
        .budget
        .rule_over(shadowattn_hal::BudgetRule::MEASURED_BEST)?;
    let text = Evaluation::load(args, compute, rule)?;
    if args.dense_only {
        return Ok(());
    }
    let calibrated = Calibrated::on_calibration_text(&text)?;
    calibrated.print_pilot_recall()?;
    println!(
        "selection: {} (min_keys {}; {})",
        args.selection.describe(),
        args.min_keys,
        describe(&rule)
    );
    let rows = calibrated.table(npu.as_ref().map(|o| o.backend.as_ref()))?;
    println!("elapsed_s: {:.0}", started.elapsed().as_secs_f64());
    if let Some(path) = &args.plot {
        let title = format!(
            "Perplexity of {} on {}: {} window(s) of {} tokens",
            text.name,
            args.text.file_name().unwrap_or_default().to_string_lossy(),
            text.windows.len(),
            args.window
        );
        crate::plot::perplexity::draw(path, &title, text.dense_ppl, &rows)?;
        println!("plot: {}", path.display());
    }
    Ok(())
}

/// Refuses ratios outside (0, 1].
fn check(args: &EvalArgs) -> Result<(), Box<dyn Error>> {
    for &r in &args.ratios {
        if !(r > 0.0 && r <= 1.0) {
            return Err(format!("--ratios: {r} is not in (0, 1]").into());
        }
    }
    if !(args.min_ratio_fraction > 0.0 && args.min_ratio_fraction <= 1.0) {
        return Err("--min-ratio-fraction must be in (0, 1]".into());
    }
    Ok(())
}

/// The model, its tokenizer and the evaluation windows, with the dense perplexity.
struct Evaluation<'a> {
    args: &'a EvalArgs,
    compute: &'a dyn ComputeBackend,
    model: Model,
    tokenizer: Tokenizer,
    name: String,
    windows: Vec<Vec<u32>>,
    dense_ppl: f64,
    rule: BudgetRule,
}

impl<'a> Evaluation<'a> {
    /// Opens the model, tokenizes the text and measures the dense perplexity (printed).
    fn load(
        args: &'a EvalArgs,
        compute: &'a dyn ComputeBackend,
        rule: BudgetRule,
    ) -> Result<Self, Box<dyn Error>> {
        let gguf = Gguf::open(&args.model)?;
        // Every window must fit the model: checked before the weights load.
        let config = ModelConfig::from_gguf(&gguf)?;
        config.check_tokens("--window", args.window)?;
        config.check_tokens("--calibration-window", args.calibration_window)?;
        if let Some(mass) = args.mass_window {
            config.check_tokens("--mass-window", mass)?;
        }
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let model = Model::from_gguf(&gguf)?;
        let name = gguf
            .get("general.name")
            .and_then(|v| v.as_str())
            .unwrap_or("model")
            .to_string();
        drop(gguf);
        let c = &model.config;
        println!(
            "model: {name} ({} layers, {} query / {} KV heads, head_dim {})",
            c.layers, c.q_heads, c.kv_heads, c.head_dim
        );
        let text = read(&args.text)?;
        let ids = tokenizer.encode(&text)?;
        let eval = windows(&ids, args.window, tokenizer.bos, args.max_windows)?;
        println!(
            "text: {} ({} tokens, {} windows of up to {})",
            args.text.display(),
            ids.len(),
            eval.len(),
            args.window
        );
        let dense = perplexity(&model, &eval, &mut Dense { compute })?;
        println!("ppl_dense: {:.6} ({} predictions)", dense.ppl, dense.scored);
        Ok(Evaluation {
            args,
            compute,
            model,
            tokenizer,
            name,
            windows: eval,
            dense_ppl: dense.ppl,
            rule,
        })
    }

    /// A table row: the perplexity of `attention` and its change from dense, %.
    fn row(&self, attention: &mut dyn Attention) -> Result<(f64, f64), Box<dyn Error>> {
        let p = perplexity(&self.model, &self.windows, attention)?;
        Ok((p.ppl, (p.ppl / self.dense_ppl - 1.0) * 100.0))
    }
}

/// What the calibration text gives: its windows, the ablation, the mass curves and the base
/// calibration (scales, bucket grid, the INT8 output's range).
struct Calibrated<'e> {
    text: &'e Evaluation<'e>,
    windows: Vec<Vec<u32>>,
    ablation: Option<Ablation>,
    curves: Option<Vec<Vec<MassCurve>>>,
    base: Calibration,
}

impl<'e> Calibrated<'e> {
    /// Ablation (when an allocation needs it), mass curves (for `mass`), the base calibration
    /// with its tuned accumulator range, and `--calibration-out`; each printed.
    fn on_calibration_text(text: &'e Evaluation<'e>) -> Result<Self, Box<dyn Error>> {
        let args = text.args;
        let calib_text = read(&args.calibration_text)?;
        let calib_ids = text.tokenizer.encode(&calib_text)?;
        let windows = windows(
            &calib_ids,
            args.calibration_window,
            text.tokenizer.bos,
            args.calibration_windows,
        )?;
        let ablation = if args.allocations.iter().any(|a| a.needs_ablation()) {
            Some(ablation(args, &text.model, text.compute, &windows)?)
        } else {
            None
        };
        if let (Some(path), Some(a)) = (&args.ablation_out, &ablation) {
            std::fs::write(path, serde_json::to_string(a)?)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if let Some(a) = &ablation {
            let layer_ppl: Vec<String> =
                a.layers.iter().map(|l| format!("{:.1}", l.exp())).collect();
            println!(
                "ablation_ppl: intact {:.2}; without layer 0..{}: {}",
                a.base.exp(),
                text.model.config.layers - 1,
                layer_ppl.join(" ")
            );
        }
        let curves = match args.allocations.contains(&AllocationArg::Mass) {
            true => Some(curves(text, &calib_ids)?),
            false => None,
        };
        let base = calibration_at(
            text,
            &windows,
            ablation.as_ref(),
            0.2,
            ImportanceRule::PerplexityProduct,
        )?;
        let mut calibrated = Calibrated {
            text,
            windows,
            ablation,
            curves,
            base,
        };
        calibrated.tune_range()?;
        calibrated.write_file()?;
        Ok(calibrated)
    }

    /// Tunes the INT8 output's accumulator range on the calibration text (printed).
    fn tune_range(&mut self) -> Result<(), Box<dyn Error>> {
        let (text, args) = (self.text, self.text.args);
        let t = Instant::now();
        let (acc_range, tried) = tune_accumulator_range(
            &text.model,
            text.compute,
            &self.windows,
            &self.base,
            (0.2, args.selection.sharing(), args.min_keys, text.rule),
        )?;
        self.base.pilot_acc_range = Some(acc_range);
        let tried: Vec<String> = tried
            .iter()
            .map(|(r, ppl)| format!("{r:.0}: {ppl:.3}"))
            .collect();
        println!(
            "accumulator_range: {acc_range:.0} (calibration-text perplexity with the INT8-output pilot, uniform 20 %, per range: {}; {:.1} s)",
            tried.join(", "),
            t.elapsed().as_secs_f64()
        );
        let base = &self.base;
        println!(
            "calibration: mean scales q {:.5} k {:.5}, {} buckets, INT8-output accumulator range {:.0}, keys centered: {}",
            base.mean_q_scale,
            base.mean_k_scale,
            base.grid.len(),
            base.pilot_acc_range.unwrap_or(f32::NAN),
            base.center_keys
        );
        Ok(())
    }

    /// Writes `--calibration-out`: the best rule of the measured table (the README's), mass
    /// where it ran.
    fn write_file(&self) -> Result<(), Box<dyn Error>> {
        let args = self.text.args;
        let Some(path) = &args.calibration_out else {
            return Ok(());
        };
        let rule = match (&self.curves, &self.ablation) {
            (Some(_), _) => AllocationArg::Mass,
            (None, Some(_)) => AllocationArg::PplProduct,
            (None, None) => AllocationArg::Uniform,
        };
        let file = match rule {
            AllocationArg::Mass => Calibration {
                ratios: self.ratios(AllocationArg::Mass, 0.2)?,
                ..self.base.clone()
            },
            _ => self.base.clone(),
        };
        file.save(path)?;
        println!(
            "calibration_file: {} (ratios: {} at 20 %)",
            path.display(),
            rule.label(args.selection)
        );
        Ok(())
    }

    /// The per-head ratios of `allocation` at mean `ratio`.
    fn ratios(
        &self,
        allocation: AllocationArg,
        ratio: f32,
    ) -> Result<Vec<Vec<f32>>, Box<dyn Error>> {
        let text = self.text;
        let c = &text.model.config;
        let at = |rule| calibration_at(text, &self.windows, self.ablation.as_ref(), ratio, rule);
        Ok(match allocation {
            AllocationArg::Uniform => Sparse::uniform(c.layers, c.q_heads, ratio),
            AllocationArg::PplProduct => at(ImportanceRule::PerplexityProduct)?.ratios,
            AllocationArg::LossIncrease => at(ImportanceRule::LossIncrease)?.ratios,
            AllocationArg::Mass => ratios_from_curves(
                &text.model,
                self.curves
                    .as_ref()
                    .ok_or("the mass curves were not measured")?,
                (text.args.selection.sharing(), text.rule),
                (ratio, ratio * text.args.min_ratio_fraction),
            )?,
        })
    }

    /// The pilot's top-k recall on the first evaluation window, INT32 and INT8 output (printed).
    fn print_pilot_recall(&self) -> Result<(), Box<dyn Error>> {
        let (text, base) = (self.text, &self.base);
        for output in [PilotOutput::Int32, PilotOutput::int8_of(base)?] {
            let mut probe = RecallProbe {
                compute: text.compute,
                grid: base.grid.clone(),
                output,
                center_keys: base.center_keys,
                ratio: 0.2,
                recalls: Vec::new(),
            };
            text.model.forward(&text.windows[0], &mut probe)?;
            let recalls: Vec<f64> = probe.recalls.iter().map(|r| r.2).collect();
            println!(
                "pilot_recall_20pct ({}): mean {:.4}, p5 {:.4} over {} heads (first window; pilot top-k per head vs exact top-k of the same size)",
                match output {
                    PilotOutput::Int32 => RankingArg::PilotI32.label(),
                    PilotOutput::Int8 { .. } => RankingArg::PilotI8.label(),
                },
                recalls.iter().sum::<f64>() / recalls.len().max(1) as f64,
                percentile(&recalls, 5.0),
                recalls.len()
            );
        }
        Ok(())
    }

    /// The table: every ratio, allocation and ranking (and the core on `npu`), one row each
    /// (returned for `--plot`).
    fn table(&self, npu: Option<&dyn NpuBackend>) -> Result<Vec<PplRow>, Box<dyn Error>> {
        let (text, args) = (self.text, self.text.args);
        println!("ratio\tallocation\tranking\tppl\tvs_dense\tkept");
        let runs = args.ratios.len()
            * args.allocations.len()
            * (args.rankings.len() + usize::from(npu.is_some()) * args.pilots.len());
        let bar = progress_bar(runs);
        let mut rows = Vec::new();
        let mut print = |ratio: f32,
                         allocation: &str,
                         ranking: &str,
                         (ppl, pct): (f64, f64),
                         kept: KeptPairs| {
            bar.suspend(|| {
                println!(
                    "{ratio}\t{allocation}\t{ranking}\t{ppl:.4}\t{pct:+.2}%\t{:.4}",
                    kept.fraction()
                )
            });
            bar.inc(1);
            rows.push(PplRow {
                allocation: allocation.into(),
                ranking: ranking.into(),
                kept: kept.fraction(),
                ppl,
            });
        };
        for &ratio in &args.ratios {
            for &allocation in &args.allocations {
                let ratios = self.ratios(allocation, ratio)?;
                let allocation = allocation.label(args.selection);
                for &ranking in &args.rankings {
                    bar.set_message(format!("{ratio} {allocation} {}", ranking.label()));
                    let mut sparse =
                        Sparse::new(text.compute, ratios.clone(), ranking.ranking(&self.base)?)
                            .with_sharing(args.selection.sharing())
                            .with_rule(text.rule);
                    sparse.min_keys = args.min_keys;
                    let row = text.row(&mut sparse)?;
                    print(ratio, allocation, ranking.label(), row, sparse.pairs);
                }
                for (npu, &pilot) in npu
                    .iter()
                    .flat_map(|n| args.pilots.iter().map(move |p| (n, p)))
                {
                    let calibration = Calibration {
                        ratios: ratios.clone(),
                        ..self.base.clone()
                    };
                    let mut core = CoreAttention::build(
                        *npu,
                        text.compute,
                        calibration,
                        args.window,
                        (args.selection.granularity(), pilot.kind()),
                        args.min_keys,
                    )?;
                    let unit = core.pilot_label();
                    bar.set_message(format!("{ratio} {allocation} @{} {unit}", npu.name()));
                    let ranking = format!("{}@{}[{unit}]", RankingArg::PilotI8.label(), npu.name());
                    let row = text.row(&mut core)?;
                    print(ratio, allocation, &ranking, row, core.pairs);
                }
            }
        }
        bar.finish_and_clear();
        Ok(rows)
    }
}

/// A calibration of the model on the calibration text at mean `ratio`, heads weighted by the
/// ablation's `rule` (uniformly without an ablation), for the run's budget rule.
fn calibration_at(
    text: &Evaluation<'_>,
    windows: &[Vec<u32>],
    ablation: Option<&Ablation>,
    ratio: f32,
    rule: ImportanceRule,
) -> Result<Calibration, Box<dyn Error>> {
    let args = text.args;
    let c = &text.model.config;
    let cfg = RatioConfig {
        global_ratio: ratio,
        min_ratio: ratio * args.min_ratio_fraction,
        importance_clamp: (1e-8, 1e8),
    };
    let importance = ablation.map_or_else(
        || vec![vec![1.0; c.q_heads]; c.layers],
        |a| a.importance(rule),
    );
    let calibration = calibrate(
        &text.model,
        &text.name,
        text.compute,
        &windows[0],
        &importance,
        cfg,
        args.center_keys,
    )?;
    Ok(Calibration {
        budget: text.rule,
        ..calibration
    })
}

/// The attention-mass curves of every selecting unit on the calibration text (printed).
fn curves(text: &Evaluation<'_>, calib_ids: &[u32]) -> Result<Vec<Vec<MassCurve>>, Box<dyn Error>> {
    let args = text.args;
    let t = Instant::now();
    let mass_window = args.mass_window.unwrap_or(args.calibration_window);
    let mass_calib = windows(
        calib_ids,
        mass_window,
        text.tokenizer.bos,
        args.calibration_windows,
    )?;
    let curves = mass_curves(
        &text.model,
        text.compute,
        &mass_calib,
        (args.selection.sharing(), args.min_keys, text.rule),
    )?;
    println!(
        "mass_curves: {} units on {} ({} windows of {}) in {:.1} s",
        curves.iter().map(Vec::len).sum::<usize>(),
        args.calibration_text.display(),
        mass_calib.len(),
        mass_window,
        t.elapsed().as_secs_f64()
    );
    Ok(curves)
}

/// The ablation losses: read from `--ablation`, or measured on `calib`.
fn ablation(
    args: &EvalArgs,
    model: &Model,
    compute: &dyn shadowattn_hal::ComputeBackend,
    calib: &[Vec<u32>],
) -> Result<Ablation, Box<dyn Error>> {
    let c = &model.config;
    if let Some(path) = &args.ablation {
        let a: Ablation = serde_json::from_str(&read(path)?)
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
    let a = ablate(model, compute, calib, |done, total| {
        if done % 30 == 0 {
            eprintln!("ablation {done}/{total}");
        }
    })?;
    println!(
        "ablation: {} heads + {} layers on {} ({} windows of {}) in {:.0} s",
        c.layers * c.q_heads,
        c.layers,
        args.calibration_text.display(),
        calib.len(),
        args.calibration_window,
        t.elapsed().as_secs_f64()
    );
    Ok(a)
}
