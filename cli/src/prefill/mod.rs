//! `shadowattn prefill`: the time to first token of a whole model's prefill on a simulated SoC,
//! per attention strategy, with where the time goes; with `--functional`, the prefill's real
//! logits with the linear layers on the NPU backend.

mod functional;

use crate::backends::{open_options, DEFAULT_NPU};
use crate::pilot::PilotArg;
use crate::plot;
use crate::progress::progress_bar;
use crate::selection::SelectionArg;
use clap::{ArgGroup, Args, ValueEnum};
use indicatif::ProgressBar;
use shadowattn_cpu::fast::Arithmetic;
use shadowattn_models::gguf::Gguf;
use shadowattn_models::model::ModelConfig;
use shadowattn_pipeline::{Placement, SelectionSharing};
use shadowattn_registry::{ComputeSpec, NpuSpec};
use shadowattn_simulator::npu::graphs::PilotGraph;
use shadowattn_simulator::predict::cpu_model::KernelSet;
use shadowattn_simulator::predict::device::placed_core;
use shadowattn_simulator::predict::placement::StagePlacement;
use shadowattn_simulator::predict::prefill::{
    predict_prefill_with_progress, Activation, AttentionStrategy, LinearGraphs, LinearPrecision,
    PrefillPrediction, PrefillSpec, StageTimes, TransformerShape,
};
use shadowattn_simulator::predict::setups::{at_end, End, Setup, SetupChoices};
use shadowattn_simulator::predict::timeline::write_chrome_trace;
use shadowattn_simulator::SimError;
use shadowattn_simulator::{LaunchChoice, LaunchPath, SocProfile};
use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

type Res<T> = Result<T, Box<dyn Error>>;

/// An attention strategy on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttentionArg {
    /// shadowAttn: INT8 pilot on the NPU, top-k and sparse FP32 attention on the CPU.
    Shadow,
    /// Dense FP32 attention on the CPU cores (the paper's C/G-Full).
    DenseCpu,
    /// INT8 attention as one static NPU graph (the paper's NPU-Full).
    NpuInt8,
    /// FP16 flash attention on the NPU's matrix and vector units.
    NpuFp16Fa,
}

impl AttentionArg {
    fn strategy(self) -> AttentionStrategy {
        match self {
            AttentionArg::Shadow => AttentionStrategy::Shadow,
            AttentionArg::DenseCpu => AttentionStrategy::DenseCpu,
            AttentionArg::NpuInt8 => AttentionStrategy::NpuInt8,
            AttentionArg::NpuFp16Fa => AttentionStrategy::NpuFp16Flash,
        }
    }
}

/// The precision of the linear layers' graphs on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LinearArg {
    /// INT8 weights and activations, one scale per tensor (llm.npu's W8A8).
    W8a8,
    /// FP16 weights and activations (what --functional runs).
    Fp16,
}

/// How the linear layers are cut into graphs, on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LinearGraphsArg {
    /// Four graphs per layer: qkv, o, gate_up, down.
    PerMatmul,
    /// One graph per layer: o, MLP, residual adds, the next RMSNorm and qkv.
    PerLayer,
}

/// Options of `shadowattn prefill`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("which").required(true).args(["model", "shape"])))]
pub struct PrefillArgs {
    /// A GGUF model (Llama, Qwen2 or Phi-3; its shape is read from the metadata).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A model by shape alone: the paper's phonelm-0.5b, phonelm-1.5b, qwen2-0.5b, qwen2-1.5b,
    /// or qwen2.5-1.5b, qwen1.5-1.8b, qwen1.5-0.5b (the public on-device measurements').
    #[arg(long)]
    shape: Option<String>,
    /// A named configuration a public measurement used (`paper`, `mllm-port`, `llm-npu`): the
    /// retention, dense layers, selection, launch paths, CPU placement and kernels it sets;
    /// explicit options take precedence.
    #[arg(long)]
    setup: Option<Setup>,
    /// Tokens of the prompt; several, comma-separated, predict each in turn (a report each, a
    /// group of bars each in --plot).
    #[arg(long, value_delimiter = ',', default_value = "1024")]
    len: Vec<usize>,
    /// Price prompts up to this many tokens instead of the model's context length (the paper
    /// runs PhoneLM, whose context is 2048, at 3840 and 4096 tokens).
    #[arg(long)]
    context_len: Option<usize>,
    /// Query rows per prefill chunk (default 256, llm.npu's, or the setup's).
    #[arg(long)]
    chunk: Option<usize>,
    /// Rows per execution of the linear layers' graphs: a chunk runs as tiles of at most this
    /// many (default: the chunk, or the setup's).
    #[arg(long)]
    linear_tile: Option<usize>,
    /// How the linear layers are cut into NPU graphs: `per-matmul` (default: qkv, o, gate_up,
    /// down) or `per-layer` (one graph per layer, norms and residual adds inside).
    #[arg(long, value_enum)]
    linear_graphs: Option<LinearGraphsArg>,
    /// Our CPU kernels with sparse softmax·V in `f32` or `f16` (`cpu-fast`'s arithmetic;
    /// default: the setup's kernels, else f32).
    #[arg(long)]
    cpu_arith: Option<Arithmetic>,
    /// The simulated SoC (`sim:<soc>` or `sim:<profile.toml>`): the times are the simulator's.
    #[arg(long, default_value = DEFAULT_NPU)]
    npu: NpuSpec,
    /// Attention strategies to compare, comma-separated; the first is the one `--trace` draws.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "shadow,dense-cpu,npu-int8,npu-fp16-fa"
    )]
    attention: Vec<AttentionArg>,
    /// shadowAttn's fraction of each row's valid keys kept, in (0, 1] (ignored with
    /// --calibration; default 0.2, or the setup's).
    #[arg(long)]
    ratio: Option<f32>,
    /// Layers whose attention stays dense under shadowAttn, comma-separated (e.g. `0,1`).
    #[arg(long, value_delimiter = ',')]
    dense_layers: Option<Vec<usize>>,
    /// A calibration file (`shadowattn-calibration` JSON) whose per-layer, per-head ratios
    /// shadowAttn keeps; its model shape must be the model's.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Which query rows and heads share a key set: `group` (default) or `row`.
    #[arg(long, value_enum)]
    selection: Option<SelectionArg>,
    /// Which pilot shadowAttn launches: `group` (a unit per GQA group, K sent once, the ranking
    /// summed on the NPU), `group-cpu` (summed on the CPU), `head`, or `auto` (of those the layer
    /// can run, the one whose prefill is fastest); default the setup's (`head`), else `auto`.
    #[arg(long, value_enum)]
    pilot: Option<PilotArg>,
    /// Which core cluster of the SoC runs every CPU stage (`mid`, `prime`; default `mid`).
    #[arg(long)]
    core: Option<String>,
    /// How many of its cores (the paper's default budget is one mid core).
    #[arg(long)]
    cores: Option<usize>,
    /// Per-stage CPU placement over --core/--cores: `stage=cluster:threads[+cluster:threads]`,
    /// comma-separated, stages `topk`, `attention`, `dense`, `glue` (e.g.
    /// `topk=mid:2,attention=prime:1,dense=prime:1+mid:3`).
    #[arg(long)]
    placement: Option<String>,
    /// How the host drives the NPU's graphs: `qnn-copy` (client buffers), `qnn-shared`
    /// (registered shared buffers) or `fastrpc` (a direct kernel); default the profile's.
    #[arg(long)]
    launch_path: Option<LaunchPath>,
    /// The pilot's launch path where it differs from --launch-path.
    #[arg(long)]
    pilot_path: Option<LaunchPath>,
    /// The precision of the priced linear-layer graphs.
    #[arg(long, value_enum, default_value_t = LinearArg::W8a8)]
    linear: LinearArg,
    /// Dense decode steps after the prefill, timed per output token.
    #[arg(long, default_value_t = 0)]
    decode: usize,
    /// Write a Perfetto / chrome://tracing timeline of the first strategy's prefill here.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Draw every strategy's time to first token as an SVG bar chart here, each bar stacked
    /// from where the time goes (linear, transfers, attention, glue, output head), a group of
    /// bars per --len.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Also run the prefill for real (needs --model): the first --len tokens of --text with
    /// every linear layer as a static graph on --npu (any functional backend: `cpu`, `sim:*`,
    /// `qnn:htp`), compared with the host's forward pass.
    #[arg(long)]
    functional: bool,
    /// Text whose first --len tokens the functional prefill runs.
    #[arg(long, default_value = "/usr/share/common-licenses/GPL-3")]
    text: PathBuf,
    /// Text whose first 256 tokens calibrate the functional shadowAttn run without
    /// --calibration (uniform --ratio, keys centered; not the evaluated text).
    #[arg(long, default_value = "/usr/share/common-licenses/Apache-2.0")]
    calibration_text: PathBuf,
    /// A folder that keeps the functional prefill's compiled linear-layer graphs (the backend's
    /// own serialization: QNN context binaries, the IR with raw constant bytes for `cpu` and
    /// `sim:*`), so that a second run loads instead of compiling.
    #[arg(long)]
    graph_cache: Option<PathBuf>,
    /// Compute backend of the functional prefill's dense attention.
    #[arg(long, default_value = "cpu-fast")]
    compute: ComputeSpec,
    /// How shadowAttn spreads each unit's keys over a chunk's rows (default the calibration's
    /// rule, else the setup's, else the measured best).
    #[command(flatten)]
    budget: crate::budget::BudgetArgs,
}

/// The model's shape, from the GGUF's metadata or the preset, with every `--len` (and `--len`
/// plus `--decode`) checked against its context length (or `--context-len`) before any work.
fn transformer_shape(args: &PrefillArgs) -> Res<TransformerShape> {
    let mut shape = read_shape(args)?;
    if let Some(n) = args.context_len {
        shape.context_len = n;
        shape.context_source = "--context-len".into();
    }
    for &len in &args.len {
        shape.check_tokens("--len", len)?;
        shape.check_tokens("--len + --decode", len.saturating_add(args.decode))?;
    }
    Ok(shape)
}

/// Refuses what needs one prompt length when several are given.
fn check_lengths(args: &PrefillArgs) -> Res<()> {
    if args.len.len() > 1 {
        for (asked, what) in [
            (args.functional, "--functional"),
            (args.trace.is_some(), "--trace"),
        ] {
            if asked {
                return Err(format!(
                    "{what} runs one prompt: give one --len, not {}",
                    args.len.len()
                )
                .into());
            }
        }
    }
    Ok(())
}

/// The model's shape, from the GGUF's metadata or the preset.
fn read_shape(args: &PrefillArgs) -> Res<TransformerShape> {
    if let Some(name) = &args.shape {
        return Ok(TransformerShape::preset(name)?);
    }
    let path = args
        .model
        .as_ref()
        .expect("clap requires --model or --shape");
    let c = ModelConfig::from_gguf(&Gguf::open(path)?)?;
    let name = path
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    Ok(TransformerShape {
        name,
        layers: c.layers,
        hidden: c.hidden,
        ffn: c.ffn,
        q_heads: c.q_heads,
        kv_heads: c.kv_heads,
        head_dim: c.head_dim,
        vocab: c.vocab,
        // Every architecture the harness runs has a SwiGLU MLP.
        activation: Activation::Silu,
        context_len: c.max_tokens(),
        context_source: format!("{} of {}", c.max_tokens_source(), path.display()),
    })
}

/// shadowAttn's ratios per layer and head: the calibration's, or `ratio` everywhere.
fn ratios(args: &PrefillArgs, ratio: f32, s: &TransformerShape) -> Res<Vec<Vec<f32>>> {
    let Some(path) = &args.calibration else {
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(format!("--ratio {ratio} is outside (0, 1]").into());
        }
        return Ok(vec![vec![ratio; s.q_heads]; s.layers]);
    };
    Ok(
        crate::calibrate::load_for_model(path, [s.layers, s.q_heads, s.kv_heads, s.head_dim])?
            .ratios,
    )
}

/// The command's predictions, with a progress bar on a terminal (stderr): layer by layer of
/// every prediction, since a long prompt takes a while.
struct Predictions {
    bar: ProgressBar,
    layers: u64,
}

impl Predictions {
    /// A bar over `count` predictions of a model of `layers` layers.
    fn new(count: usize, layers: usize) -> Self {
        Predictions {
            bar: progress_bar(count * layers),
            layers: layers as u64,
        }
    }

    /// [`predict_prefill_with_progress`] with the bar moving by layer, `what` its message.
    fn predict(
        &self,
        soc: &SocProfile,
        spec: &PrefillSpec,
        strategy: AttentionStrategy,
        trace: bool,
        what: &str,
    ) -> Result<PrefillPrediction, SimError> {
        let (bar, base) = (&self.bar, self.bar.position());
        bar.set_message(what.to_string());
        let predicted =
            predict_prefill_with_progress(soc, spec, strategy, trace, &mut |done, _| {
                bar.set_position(base + done as u64)
            });
        bar.set_position(base + self.layers);
        predicted
    }

    /// Runs `print` with the bar out of the way.
    fn print(&self, print: impl FnOnce()) {
        self.bar.suspend(print)
    }
}

fn ms(ns: f64) -> f64 {
    ns / 1e6
}

fn print_prediction(p: &PrefillPrediction, decode: bool) {
    let st = &p.stages;
    let name = p.strategy.name().replace('-', "_");
    println!(
        "{name}_ttft_ms: {:.1} (linear {:.1} + transfers {:.1} + attention {:.1} + glue {:.1} + output head {:.1}; attention NPU busy {:.1}, CPU busy {:.1} per core of which top-k {:.1}; {} NPU launches)",
        ms(p.ttft_ns()),
        ms(st.linear_ns),
        ms(st.transfers_ns),
        ms(st.attention_ns),
        ms(st.glue_ns),
        ms(st.lm_head_ns),
        ms(st.attention_npu_ns),
        ms(st.attention_cpu_ns),
        ms(st.attention_topk_ns),
        p.launches
    );
    if decode {
        println!(
            "{name}_decode_ms_per_token: {:.2} (dense attention on the CPU, linear layers on the NPU)",
            ms(p.decode_ns_per_token)
        );
    }
}

/// Runs the command: the functional prefill when asked, then the prediction of every
/// strategy on the simulated SoC.
pub fn run(args: &PrefillArgs) -> Res<()> {
    let started = Instant::now();
    // Checked first: a prompt past the model's context is refused before any work.
    let shape = transformer_shape(args)?;
    check_lengths(args)?;
    if let Some(path) = &args.plot {
        plot::check_target(path)?;
    }
    let opened = args.npu.open(&open_options())?;
    if args.functional {
        run_functional(args, opened.backend.as_ref())?;
        if opened.device.is_none() {
            return Ok(());
        }
    }
    let profile = match &args.npu {
        NpuSpec::Sim(soc) => Some(soc.load()?),
        _ => None,
    };
    let soc = profile.as_ref().ok_or_else(|| {
        format!(
            "prefill predicts the time on a simulated SoC: --npu sim:<soc> (`{}` has no SoC profile; --functional runs the prefill on it)",
            args.npu
        )
    })?;
    let setup = args
        .setup
        .map(|s| s.choices(soc, shape.q_heads))
        .transpose()?;
    let launch = LaunchChoice {
        graphs: args
            .launch_path
            .or(setup.as_ref().and_then(|s| s.launch.graphs)),
        pilot: args
            .pilot_path
            .or(setup.as_ref().and_then(|s| s.launch.pilot)),
    };
    let launched = soc.clone().with_launch(launch);
    // Every length's prefill checked before the first report.
    let specs = args
        .len
        .iter()
        .map(|&len| prefill_spec(args, soc, shape.clone(), setup.as_ref(), len))
        .collect::<Res<Vec<_>>>()?;
    let mut groups = Vec::new();
    let mut title = String::new();
    for (i, (spec, &len)) in specs.into_iter().zip(&args.len).enumerate() {
        // The reports of several lengths one after the other, a blank line between them.
        let started = if i == 0 {
            started
        } else {
            println!();
            Instant::now()
        };
        let (spec, results) = report(args, &launched, spec, setup.is_some())?;
        println!(
            "prediction_ms: {:.0} (wall time of this prediction on this machine)",
            started.elapsed().as_secs_f64() * 1e3
        );
        title = format!(
            "Predicted time to first token: {} on {}",
            spec.shape.name, launched.name
        );
        groups.push(plot::ttft::TtftGroup {
            prompt_len: len,
            bars: results
                .iter()
                .map(|(strategy, stages)| plot::ttft::TtftBar {
                    strategy: strategy.name().to_string(),
                    stages_s: stages.map(|s| {
                        [
                            s.linear_ns,
                            s.transfers_ns,
                            s.attention_ns,
                            s.glue_ns,
                            s.lm_head_ns,
                        ]
                        .map(|ns| ns / 1e9)
                    }),
                })
                .collect(),
        });
    }
    if let Some(path) = &args.plot {
        plot::ttft::draw(path, &title, &groups)?;
        println!(
            "plot: {} (time to first token of {} strategies at {} prompt length(s))",
            path.display(),
            groups[0].bars.len(),
            groups.len()
        );
    }
    Ok(())
}

/// Every strategy asked for and where its time went (`None`: the SoC cannot run it).
type Stages = Vec<(AttentionStrategy, Option<StageTimes>)>;

/// One prompt length's report: the pilot `--pilot auto` picks, the setup, every strategy's
/// prediction, the speedups and the ranges; the spec predicted and every strategy's stages
/// (`None` for a baseline the SoC cannot run).
fn report(
    args: &PrefillArgs,
    soc: &SocProfile,
    spec: PrefillSpec,
    has_setup: bool,
) -> Res<(PrefillSpec, Stages)> {
    let strategies = strategies(args);
    // The pilot candidates, every strategy, and every strategy at both ends of the range.
    let count = pilot_candidates(args, &spec, has_setup).len() + 3 * strategies.len();
    let predictions = Predictions::new(count, spec.shape.layers);
    let spec = choose_pilot(args, soc, spec, has_setup, &predictions)?;
    predictions.print(|| print_setup(&spec, soc, args.setup));
    let stages = predict_strategies(args, soc, &spec, &strategies, &predictions)?;
    let results: Vec<(AttentionStrategy, Option<f64>)> = stages
        .iter()
        .map(|(s, st)| (*s, st.as_ref().map(StageTimes::total_ns)))
        .collect();
    predictions.print(|| print_speedups(&results));
    print_ranges(soc, &spec, &results, &predictions)?;
    Ok((spec, stages))
}

/// `--functional`: the model's prefill for real with its linear layers on `npu`.
fn run_functional(args: &PrefillArgs, npu: &dyn shadowattn_hal::NpuBackend) -> Res<()> {
    let model = args
        .model
        .as_ref()
        .ok_or("--functional needs --model: a shape preset has no weights")?;
    let compute = args.compute.open(&open_options())?;
    let shadow = args
        .attention
        .contains(&AttentionArg::Shadow)
        .then(|| functional::ShadowRun {
            calibration: args.calibration.clone(),
            calibration_text: args.calibration_text.clone(),
            ratio: args.ratio.unwrap_or(0.2),
            granularity: args.selection.unwrap_or(SelectionArg::Group).granularity(),
        });
    let run = functional::FunctionalRun {
        model,
        text: &args.text,
        len: args.len[0],
        chunk: args.chunk.unwrap_or(256),
        shadow,
        graph_cache: args.graph_cache.clone(),
    };
    functional::run(&run, npu, compute.as_ref())?;
    Ok(())
}

/// The CPU placement: --core/--cores (or the setup's), then --placement over it.
fn placement(
    args: &PrefillArgs,
    soc: &SocProfile,
    setup: Option<&SetupChoices>,
) -> Res<StagePlacement> {
    let base = match (setup, &args.core, args.cores) {
        (Some(s), None, None) => s.placement.clone(),
        (_, core, cores) => {
            let (core, cores) = (
                core.clone().unwrap_or_else(|| "mid".into()),
                cores.unwrap_or(1),
            );
            let placed = placed_core(
                soc,
                &Placement {
                    cluster: Some(core.clone()),
                    cores,
                },
            )
            .map_err(|e| format!("--core {core} --cores {cores}: {e}"))?;
            StagePlacement::uniform(placed, cores)
        }
    };
    match &args.placement {
        Some(text) => Ok(base
            .with(soc, text)
            .map_err(|e| format!("--placement {text}: {e}"))?),
        None => Ok(base),
    }
}

/// The prefill of a `len`-token prompt the options describe, checked: the setup's (or the
/// defaults'), then every explicit option over it.
fn prefill_spec(
    args: &PrefillArgs,
    soc: &SocProfile,
    shape: TransformerShape,
    setup: Option<&SetupChoices>,
    len: usize,
) -> Res<PrefillSpec> {
    let placement = placement(args, soc, setup)?;
    let mut spec = match setup {
        Some(choices) => choices.spec(shape, len),
        None => PrefillSpec {
            ratios: Vec::new(),
            prompt_len: len,
            chunk_len: 256,
            placement: placement.clone(),
            kernels: KernelSet::OURS,
            sharing: SelectionArg::Group.sharing_of(shape.q_heads, shape.kv_heads),
            dense_layers: Vec::new(),
            pilot_fused: shadowattn_pipeline::FUSED_HEADS.to_vec(),
            pilot: PilotGraph::Head,
            budget: shadowattn_hal::BudgetRule::MEASURED_BEST,
            decode_steps: 0,
            linear: LinearPrecision::W8A8,
            linear_graphs: LinearGraphs::PerMatmul,
            linear_tile: usize::MAX,
            shape,
        },
    };
    let s = &spec.shape;
    if let Some(selection) = args.selection {
        spec.sharing = selection.sharing_of(s.q_heads, s.kv_heads);
    }
    if let Some(pilot) = args.pilot.filter(|&p| p != PilotArg::Auto) {
        (spec.pilot, spec.sharing) = pilot_graph(pilot, s, spec.sharing)?;
    }
    let ratio = args.ratio.or(setup.map(|c| c.ratio)).unwrap_or(0.2);
    spec.ratios = ratios(args, ratio, s)?;
    let base = match &args.calibration {
        Some(path) => {
            crate::calibrate::load_for_model(path, [s.layers, s.q_heads, s.kv_heads, s.head_dim])?
                .budget
        }
        None => spec.budget,
    };
    spec.budget = args.budget.rule_over(base)?;
    spec.placement = placement;
    if let Some(layers) = &args.dense_layers {
        spec.dense_layers = layers.clone();
    }
    if let Some(chunk) = args.chunk {
        spec.chunk_len = chunk;
    }
    spec.linear_tile = args
        .linear_tile
        .unwrap_or(spec.linear_tile)
        .min(spec.chunk_len);
    if let Some(graphs) = args.linear_graphs {
        spec.linear_graphs = match graphs {
            LinearGraphsArg::PerMatmul => LinearGraphs::PerMatmul,
            LinearGraphsArg::PerLayer => LinearGraphs::PerLayer,
        };
    }
    if let Some(arithmetic) = args.cpu_arith {
        spec.kernels = match arithmetic {
            Arithmetic::F32 => KernelSet::OURS,
            Arithmetic::F16 => KernelSet::OURS_FP16,
        };
    }
    spec.decode_steps = args.decode;
    spec.linear = match args.linear {
        LinearArg::W8a8 => LinearPrecision::W8A8,
        LinearArg::Fp16 => LinearPrecision::Fp16,
    };
    spec.validate()?;
    Ok(spec)
}

/// `spec` with the pilot `--pilot auto` (the default without a setup) picks: of the pilots the
/// layer can run (the group pilots need GQA groups that share their selection), the one whose
/// shadowAttn prefill is fastest on `soc`; printed with every candidate's time.
fn choose_pilot(
    args: &PrefillArgs,
    soc: &SocProfile,
    spec: PrefillSpec,
    has_setup: bool,
    predictions: &Predictions,
) -> Res<PrefillSpec> {
    let candidates = pilot_candidates(args, &spec, has_setup);
    if candidates.is_empty() {
        return Ok(spec);
    }
    let mut best: Option<(f64, PrefillSpec)> = None;
    let mut tried = Vec::new();
    for (pilot, candidate) in candidates {
        let ttft = predictions
            .predict(
                soc,
                &candidate,
                AttentionStrategy::Shadow,
                false,
                &format!("pilot {pilot:?}"),
            )?
            .ttft_ns();
        tried.push(format!("{pilot:?} {:.1} ms", ttft / 1e6));
        if best.as_ref().is_none_or(|(t, _)| ttft < *t) {
            best = Some((ttft, candidate));
        }
    }
    let (_, chosen) = best.ok_or("no pilot fits the layer")?;
    predictions.print(|| {
        println!(
            "pilot_auto: {:?} (the fastest shadowAttn prefill of {})",
            chosen.pilot,
            tried.join(", ")
        )
    });
    Ok(chosen)
}

/// The specs `--pilot auto` (the default without a setup) tries, one per pilot the layer can
/// run; none when the pilot is set or shadowAttn is not asked for.
fn pilot_candidates(
    args: &PrefillArgs,
    spec: &PrefillSpec,
    has_setup: bool,
) -> Vec<(PilotArg, PrefillSpec)> {
    let auto = match args.pilot {
        Some(p) => p == PilotArg::Auto,
        None => !has_setup,
    };
    if !auto || !args.attention.contains(&AttentionArg::Shadow) {
        return Vec::new();
    }
    [PilotArg::Head, PilotArg::GroupCpu, PilotArg::Group]
        .into_iter()
        .filter_map(|pilot| {
            let (graph, sharing) = pilot_graph(pilot, &spec.shape, spec.sharing).ok()?;
            Some((
                pilot,
                PrefillSpec {
                    pilot: graph,
                    sharing,
                    ..spec.clone()
                },
            ))
        })
        .collect()
}

/// The strategies asked for, each once, in order.
fn strategies(args: &PrefillArgs) -> Vec<AttentionStrategy> {
    let mut strategies: Vec<AttentionStrategy> = Vec::new();
    for a in &args.attention {
        if !strategies.contains(&a.strategy()) {
            strategies.push(a.strategy());
        }
    }
    strategies
}

/// The pilot graph `pilot` names for `shape` with selections shared as `sharing`, and the
/// sharing it leaves: a group pilot needs shared selections, and its NPU-reduced ranking prices
/// the CPU's top-k without exponentials.
fn pilot_graph(
    pilot: PilotArg,
    shape: &TransformerShape,
    sharing: SelectionSharing,
) -> Res<(PilotGraph, SelectionSharing)> {
    let heads = shape.q_heads / shape.kv_heads.max(1);
    let shared = sharing != SelectionSharing::PerHead && heads > 1;
    let group = |ranked_on_npu| PilotGraph::Group {
        heads,
        ranked_on_npu,
    };
    Ok(match pilot {
        PilotArg::Head | PilotArg::Auto => (PilotGraph::Head, sharing),
        PilotArg::Group if shared => (group(true), SelectionSharing::PerGroupRanked),
        PilotArg::GroupCpu if shared => (group(false), SelectionSharing::PerGroup),
        PilotArg::Group | PilotArg::GroupCpu => {
            return Err(format!(
                "--pilot {pilot:?}: the group pilot needs GQA groups (here {} query / {} KV heads) that share their selection (--selection group)",
                shape.q_heads, shape.kv_heads
            )
            .into())
        }
    })
}

/// The model, the SoC and its cores, the prompt and the linear layers' graphs.
fn print_setup(spec: &PrefillSpec, soc: &SocProfile, setup: Option<Setup>) {
    let s = &spec.shape;
    println!(
        "model: {} ({} layers, hidden {}, MLP {}, {} query / {} KV heads of {}, vocabulary {})",
        s.name, s.layers, s.hidden, s.ffn, s.q_heads, s.kv_heads, s.head_dim, s.vocab
    );
    println!(
        "setup: {}",
        setup.map_or("none (the options' defaults)", Setup::name)
    );
    println!("soc: {} ({})", soc.name, spec.placement.describe());
    println!(
        "cpu kernels: {}; dense layers: {:?}; pilot {:?}, launches of {:?} fused units",
        spec.kernels.name, spec.dense_layers, spec.pilot, spec.pilot_fused
    );
    println!(
        "launch: graphs {} ({}), pilot {} ({})",
        soc.graph_path(),
        soc.graph_path().describe(),
        soc.pilot_path(),
        soc.pilot_path().describe()
    );
    println!(
        "prompt: {} tokens in {} chunk(s) of up to {} rows, linear graphs {} on tiles of up to {} rows",
        spec.prompt_len,
        spec.prompt_len.div_ceil(spec.chunk_len),
        spec.chunk_len.min(spec.prompt_len),
        match spec.linear_graphs {
            LinearGraphs::PerMatmul => "per matmul (qkv, o, gate_up, down)",
            LinearGraphs::PerLayer => "per layer (o + MLP + next RMSNorm + qkv)",
        },
        spec.linear_tile.min(spec.chunk_len).min(spec.prompt_len)
    );
    match spec.linear {
        LinearPrecision::W8A8 => println!(
            "linear: W8A8 static NPU graphs (INT8 weights as STATIC tensors, INT8 activations, one scale per tensor, as llm.npu): {:.1} MB of weights per layer",
            spec.shape.layer_weight_bytes() as f64 / 1e6
        ),
        LinearPrecision::Fp16 => println!(
            "linear: FP16 static NPU graphs (FP16 weights as STATIC tensors, FP16 activations): {:.1} MB of weights per layer",
            2.0 * spec.shape.layer_weight_bytes() as f64 / 1e6
        ),
    }
}

/// Every strategy asked for, predicted and printed (and the first traced): where its TTFT goes,
/// `None` for a baseline the SoC cannot run.
fn predict_strategies(
    args: &PrefillArgs,
    soc: &SocProfile,
    spec: &PrefillSpec,
    strategies: &[AttentionStrategy],
    predictions: &Predictions,
) -> Res<Stages> {
    let mut results: Stages = Vec::new();
    for (i, &strategy) in strategies.iter().enumerate() {
        let traced = i == 0 && args.trace.is_some();
        match predictions.predict(soc, spec, strategy, traced, strategy.name()) {
            Ok(p) => {
                predictions.print(|| print_prediction(&p, args.decode > 0));
                if let (true, Some(path)) = (traced, &args.trace) {
                    write_chrome_trace(path, &p.events)
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    predictions.print(|| {
                        println!(
                            "trace: {} ({} events of the {strategy} prefill)",
                            path.display(),
                            p.events.len()
                        )
                    });
                }
                results.push((strategy, Some(p.stages)));
            }
            // A baseline whose graph cannot run on this SoC is reported, not fatal.
            Err(e) if strategy != AttentionStrategy::Shadow => {
                predictions.print(|| {
                    println!(
                        "{}_ttft_ms: unavailable ({e})",
                        strategy.name().replace('-', "_")
                    )
                });
                results.push((strategy, None));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(results)
}

/// shadowAttn's speedup over every other strategy that could run.
fn print_speedups(results: &[(AttentionStrategy, Option<f64>)]) {
    let Some((_, Some(shadow))) = results
        .iter()
        .find(|(s, _)| *s == AttentionStrategy::Shadow)
    else {
        return;
    };
    for (other, ttft) in results {
        if let (AttentionStrategy::Shadow, _) | (_, None) = (other, ttft) {
            continue;
        }
        println!(
            "speedup_over_{}: {:.2} (TTFT of {other} / TTFT of shadowAttn)",
            other.name().replace('-', "_"),
            ttft.unwrap_or(f64::NAN) / shadow
        );
    }
}

/// Every strategy's TTFT at both ends of the unmeasured numbers
/// ([`shadowattn_simulator::predict::setups::at_end`]), and the ranking at each end.
fn print_ranges(
    soc: &SocProfile,
    spec: &PrefillSpec,
    results: &[(AttentionStrategy, Option<f64>)],
    predictions: &Predictions,
) -> Res<()> {
    let mut ends: Vec<Vec<(AttentionStrategy, f64)>> = Vec::new();
    for end in End::BOTH {
        let at = at_end(soc, end);
        let spec = PrefillSpec {
            placement: spec.placement.rebound(&at),
            ..spec.clone()
        };
        let mut times = Vec::new();
        for (strategy, central) in results {
            if central.is_some() {
                let what = format!("{strategy} at the {} end", end.name());
                times.push((
                    *strategy,
                    predictions
                        .predict(&at, &spec, *strategy, false, &what)?
                        .ttft_ns(),
                ));
            } else {
                // An unavailable baseline's share of the bar.
                predictions.bar.inc(predictions.layers);
            }
        }
        ends.push(times);
    }
    predictions.bar.finish_and_clear();
    for (i, (strategy, _)) in ends[0].iter().enumerate() {
        let (fast, slow) = (ends[0][i].1, ends[1][i].1);
        println!(
            "{}_ttft_range_ms: {:.1} – {:.1} ({:.2}× wide; unmeasured on a phone: ARM kernel efficiencies between the core's lowest and highest x86-measured fractions, launch overheads between a bare FastRPC round trip and the path's figure)",
            strategy.name().replace('-', "_"),
            ms(fast),
            ms(slow),
            slow / fast
        );
    }
    for (end, times) in End::BOTH.iter().zip(&mut ends) {
        times.sort_by(|a, b| a.1.total_cmp(&b.1));
        let order: Vec<&str> = times.iter().map(|(s, _)| s.name()).collect();
        println!("ranking_at_{}_end: {}", end.name(), order.join(" < "));
    }
    Ok(())
}
