//! `shadowattn eval`: perplexity of a real model (GGUF) with dense attention and with
//! shadowAttn's sparse attention (uniform or calibrated per-head ratios; the INT8 pilot with
//! INT32 or INT8 output, keys centered or not, or the exact top-k; a key set per query head or
//! per GQA group; optionally the core itself on an NPU backend), per-head importance by
//! ablation, and the pilot's top-k recall on real heads.

use crate::backends::open_options;
use crate::budget::{describe, BudgetArgs};
use crate::calibrate::model::{self, AllocationArg, CalibrationOptions};
use crate::pilot::PilotArg;
use crate::plot::perplexity::PplRow;
use crate::progress::progress_bar;
use crate::selection::SelectionArg;
use clap::Args;
use shadowattn_cpu::fast::Arithmetic;
use shadowattn_hal::{BudgetRule, ComputeBackend, NpuBackend};
use shadowattn_models::attention::{CoreAttention, Dense, KeptPairs, Ranking, RecallProbe, Sparse};
use shadowattn_models::eval::{perplexity, windows};
use shadowattn_models::model::ModelConfig;
use shadowattn_models::{Attention, Gguf, Model, Tokenizer};
use shadowattn_registry::{ComputeSpec, NpuSpec, OpenOptions};
use shadowattn_sparse_attn::calibration::Calibration;
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
    /// The calibration options (the same in `calibrate --model`).
    #[command(flatten)]
    calibration_options: CalibrationOptions,
    /// Evaluate this calibration file (`calibrate --model` or `--calibration-out` wrote it for
    /// this model) instead of calibrating on the calibration text: its scales, bucket grid,
    /// INT8 output range and budget rule (the budget options override it), and a table of its
    /// own ratios (allocation `file`, at their mean).
    #[arg(long, conflicts_with_all = [
        "ratios", "allocations", "calibration_text", "calibration_window", "mass_window",
        "calibration_windows", "min_ratio_fraction", "center_keys", "ablation", "ablation_out",
        "calibration_out",
    ])]
    calibration: Option<PathBuf>,
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

pub(crate) fn read(path: &PathBuf) -> Result<String, Box<dyn Error>> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Runs the command: the dense perplexity, then (unless `--dense-only`) the calibration on the
/// calibration text (or `--calibration`'s file) and the table of sparse runs.
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
    let text = Evaluation::load(args, compute)?;
    if args.dense_only {
        return Ok(());
    }
    let calibrated = Calibrated::new(&text)?;
    calibrated.print_pilot_recall()?;
    println!(
        "selection: {} (min_keys {}; {})",
        args.selection.describe(),
        args.min_keys,
        describe(&text.rule)
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
    args.calibration_options.check()
}

/// What the calibration of `eval` is made with (the sparse runs' budget `rule`), `mass` ratios
/// at 20 % in `--calibration-out`.
fn calibration_settings(args: &EvalArgs, rule: BudgetRule) -> model::Settings {
    model::Settings {
        text: args.calibration_text.clone(),
        text_option: "--calibration-text",
        options: args.calibration_options.clone(),
        ratio: model::FILE_RATIO,
        selection: args.selection,
        min_keys: args.min_keys,
        rule,
        allocations: args.allocations.clone(),
        ablation: args.ablation.clone(),
        ablation_out: args.ablation_out.clone(),
    }
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
    /// `--calibration`'s file, its budget rule the run's.
    calibration: Option<Calibration>,
}

impl<'a> Evaluation<'a> {
    /// Opens the model (and `--calibration`'s file), tokenizes the text and measures the dense
    /// perplexity (printed).
    fn load(args: &'a EvalArgs, compute: &'a dyn ComputeBackend) -> Result<Self, Box<dyn Error>> {
        let gguf = Gguf::open(&args.model)?;
        // Every window must fit the model, and a calibration file must be the model's: checked
        // before the weights load.
        let config = ModelConfig::from_gguf(&gguf)?;
        config.check_tokens("--window", args.window)?;
        let (calibration, rule) = match &args.calibration {
            Some(path) => {
                let c = &config;
                let mut file = crate::calibrate::load_for_model(
                    path,
                    [c.layers, c.q_heads, c.kv_heads, c.head_dim],
                )?;
                file.budget = args.budget.rule_over(file.budget)?;
                let rule = file.budget;
                (Some(file), rule)
            }
            None => {
                let rule = args.budget.rule_over(BudgetRule::MEASURED_BEST)?;
                calibration_settings(args, rule).check_tokens(&config)?;
                (None, rule)
            }
        };
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let model = Model::from_gguf(&gguf)?;
        let name = crate::calibrate::recorded_name(&gguf);
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
            calibration,
        })
    }

    /// A table row: the perplexity of `attention` and its change from dense, %.
    fn row(&self, attention: &mut dyn Attention) -> Result<(f64, f64), Box<dyn Error>> {
        let p = perplexity(&self.model, &self.windows, attention)?;
        Ok((p.ppl, (p.ppl / self.dense_ppl - 1.0) * 100.0))
    }
}

/// The table's runs by mean ratio: each allocation's label and ratios `[layer][query head]`.
type Runs = Vec<(f32, Vec<(&'static str, Vec<Vec<f32>>)>)>;

/// The calibration of the sparse runs: made on the calibration text (its windows, ablation, mass
/// curves and base calibration), or `--calibration`'s file.
struct Calibrated<'e> {
    text: &'e Evaluation<'e>,
    /// What the calibration text gave; `None` with `--calibration`.
    from_text: Option<model::Calibrated<'e>>,
    /// The scales, bucket grid, INT8 output range and budget rule of the sparse runs.
    base: Calibration,
}

impl<'e> Calibrated<'e> {
    /// `--calibration`'s file (printed), or the calibration on the calibration text (each step
    /// printed) and `--calibration-out`.
    fn new(text: &'e Evaluation<'e>) -> Result<Self, Box<dyn Error>> {
        if let (Some(file), Some(path)) = (&text.calibration, &text.args.calibration) {
            println!(
                "calibration: {} (from {}; ratios mean {:.4})",
                model::summary(file),
                path.display(),
                mean(&file.ratios)
            );
            return Ok(Calibrated {
                text,
                from_text: None,
                base: file.clone(),
            });
        }
        let args = text.args;
        let settings = calibration_settings(args, text.rule);
        let tokens = settings.text_tokens(&text.tokenizer)?;
        let loaded = model::Loaded {
            model: &text.model,
            tokenizer: &text.tokenizer,
            name: &text.name,
            compute: text.compute,
        };
        let from_text = model::Calibrated::make(loaded, settings, &tokens)?;
        if let Some(path) = &args.calibration_out {
            from_text.write(path)?;
        }
        Ok(Calibrated {
            text,
            base: from_text.base.clone(),
            from_text: Some(from_text),
        })
    }

    /// The table's runs: the ratios of every allocation rule at each of `--ratios`, or the
    /// file's own (allocation `file`) at their mean.
    fn runs(&self) -> Result<Runs, Box<dyn Error>> {
        let args = self.text.args;
        let Some(from_text) = &self.from_text else {
            // The mean to 4 places (a mean of f32 ratios is off by a few ulps).
            return Ok(vec![(
                (mean(&self.base.ratios) * 1e4).round() / 1e4,
                vec![("file", self.base.ratios.clone())],
            )]);
        };
        args.ratios
            .iter()
            .map(|&ratio| {
                let sets = args
                    .allocations
                    .iter()
                    .map(|&a| Ok((a.label(args.selection), from_text.ratios(a, ratio)?)))
                    .collect::<Result<_, Box<dyn Error>>>()?;
                Ok((ratio, sets))
            })
            .collect()
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
        let runs = self.runs()?;
        let bar = progress_bar(
            runs.iter().map(|r| r.1.len()).sum::<usize>()
                * (args.rankings.len() + usize::from(npu.is_some()) * args.pilots.len()),
        );
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
        for (ratio, sets) in runs {
            for (allocation, ratios) in sets {
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

/// The mean of `ratios` over every layer and head.
fn mean(ratios: &[Vec<f32>]) -> f32 {
    let n = ratios.iter().map(Vec::len).sum::<usize>().max(1);
    ratios.iter().flatten().sum::<f32>() / n as f32
}
