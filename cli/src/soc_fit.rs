//! `shadowattn soc fit` and `soc check`: a profile fitted to Qualcomm's cost model of one
//! socModel, and its error on graph families the fit never saw.

use crate::progress::progress_bar;
use crate::qnn_estimates::{load_profile, Estimate, QnnEstimator};
use crate::soc_numerics::{compact_line, json as numerics_json, probe_on, Probed};
use clap::{Args, ValueEnum};
use shadowattn_simulator::fit::graph_families::{Second, Tail};
use shadowattn_simulator::fit::profile_edit::Key;
use shadowattn_simulator::fit::profile_edit::{fitted_profile_text, round_sig, Identity};
use shadowattn_simulator::fit::validation::{family_error, markdown, FamilyError};
use shadowattn_simulator::fit::vendor::{
    fit, fit_families, held_out_families, residuals, FamilySet, Fit, GridSize, Observation,
    Parameter, FREE_PARAMETERS,
};
use shadowattn_simulator::npu::profile::{real, BUILTIN};
use shadowattn_simulator::SocProfile;
use std::error::Error;
use std::path::{Path, PathBuf};

/// A SoC Qualcomm's emulator has a cost model for.
#[derive(Clone, Copy, Debug)]
pub struct EstimatedSoc {
    /// QNN socModel.
    pub soc_model: u32,
    /// Short profile name.
    pub name: &'static str,
    /// Part.
    pub part: &'static str,
    /// HTP generation.
    pub arch: &'static str,
    /// VTCM in MB where public (`pytorch/executorch` qc_schema.py SoC table).
    pub vtcm_mb: Option<u64>,
}

/// The SoCs with estimates in the emulator (`../shared/reference/qnn-htp-emulator.md` §5).
pub const ESTIMATED_SOCS: [EstimatedSoc; 7] = [
    soc(52, "sa8255", "SA8255 (socModel 52)", "HTP V73", None),
    soc(62, "sa8540", "SA8540 (socModel 62)", "HTP V68", None),
    soc(
        63,
        "aic100",
        "AIC100 (socModel 63)",
        "AIC100 (not an HTP generation)",
        None,
    ),
    soc(72, "sa8797", "SA8797 (socModel 72)", "HTP V81", Some(16)),
    soc(77, "qcs9100", "QCS9100 (socModel 77)", "HTP V73", None),
    soc(95, "sar2230p", "SAR2230P (socModel 95)", "HTP V81", Some(4)),
    soc(114, "sa8787", "SA8787 (socModel 114)", "HTP V85", None),
];

const fn soc(
    soc_model: u32,
    name: &'static str,
    part: &'static str,
    arch: &'static str,
    vtcm_mb: Option<u64>,
) -> EstimatedSoc {
    EstimatedSoc {
        soc_model,
        name,
        part,
        arch,
        vtcm_mb,
    }
}

/// The grid sizes on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GridChoice {
    /// The designed grid (about 150 graphs with the held-out families).
    Full,
    /// A few graphs per family (for CI).
    Small,
}

impl From<GridChoice> for GridSize {
    fn from(g: GridChoice) -> GridSize {
        match g {
            GridChoice::Full => GridSize::Full,
            GridChoice::Small => GridSize::Small,
        }
    }
}

/// Options of `soc fit`.
#[derive(Args, Debug)]
pub struct FitArgs {
    /// The QNN socModel whose cost model the profile is fitted to.
    #[arg(long)]
    soc_model: u32,
    /// QNN library (default: SHADOWATTN_QNN_LIB, QNN_SDK_ROOT, then libQnnHtp.so).
    #[arg(long)]
    library: Option<PathBuf>,
    /// The profile whose other numbers the new one copies (a built-in name or a .toml file).
    #[arg(long, default_value = "sa8255")]
    base: String,
    /// Where to write the fitted profile.
    #[arg(long)]
    out: PathBuf,
    /// The profile's short name (default: the SoC's, e.g. `sa8540`).
    #[arg(long)]
    name: Option<String>,
    /// Graph grid.
    #[arg(long, value_enum, default_value_t = GridChoice::Full)]
    grid: GridChoice,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Also write every estimate (fitted and held out) with the fitted prediction as JSON.
    #[arg(long)]
    estimates_out: Option<PathBuf>,
    /// Keep QNN's estimates in this JSON file and reuse them (keyed by QNN build, socModel
    /// and graph; QNN's estimates are deterministic).
    #[arg(long)]
    estimate_cache: Option<PathBuf>,
}

/// Options of `soc check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The QNN socModel to compare with.
    #[arg(long)]
    soc_model: u32,
    /// The profile to check (a built-in name or a .toml file).
    #[arg(long)]
    soc: String,
    /// QNN library (default: SHADOWATTN_QNN_LIB, QNN_SDK_ROOT, then libQnnHtp.so).
    #[arg(long)]
    library: Option<PathBuf>,
    /// Graph grid.
    #[arg(long, value_enum, default_value_t = GridChoice::Full)]
    grid: GridChoice,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Keep QNN's estimates in this JSON file and reuse them (as `soc fit`).
    #[arg(long)]
    estimate_cache: Option<PathBuf>,
}

/// The observations of one set of families: what QNN estimated, and what it refused.
struct Collected {
    /// Per family: its name and its observations.
    families: Vec<(&'static str, Vec<Observation>)>,
    /// Graphs QNN refused: their family, the graph and QNN's reason.
    refused: Vec<(&'static str, String, String)>,
    /// Total estimated cycles and microseconds, whose ratio is the clock QNN assumes.
    cycles_and_micros: (u64, u64),
}

impl Collected {
    fn all(&self) -> Vec<Observation> {
        self.families
            .iter()
            .flat_map(|(_, o)| o.iter().copied())
            .collect()
    }
}

fn collect(
    estimator: &QnnEstimator,
    soc_model: u32,
    sets: &[FamilySet],
) -> Result<Collected, Box<dyn Error>> {
    let total: usize = sets.iter().map(|s| s.specs.len()).sum();
    let bar = progress_bar(total);
    let mut out = Collected {
        families: Vec::new(),
        refused: Vec::new(),
        cycles_and_micros: (0, 0),
    };
    for set in sets {
        let mut obs = Vec::new();
        for spec in &set.specs {
            bar.set_message(format!("socModel {soc_model}: {spec}"));
            match estimator.estimate(spec)? {
                Estimate::Cycles(e) => {
                    out.cycles_and_micros.0 += e.cycles;
                    out.cycles_and_micros.1 += e.micros;
                    obs.push(Observation {
                        spec: *spec,
                        cycles: e.cycles as f64,
                    })
                }
                Estimate::NoCostModel => {
                    bar.finish_and_clear();
                    return Err(format!(
                        "socModel {soc_model} has no cost model in this QNN library (no estimate for {spec}); the emulator estimates {}",
                        ESTIMATED_SOCS.map(|s| s.soc_model.to_string()).join(", ")
                    )
                    .into());
                }
                Estimate::Refused(why) => out.refused.push((set.name, spec.to_string(), why)),
            }
            bar.inc(1);
        }
        if !obs.is_empty() {
            out.families.push((set.name, obs));
        }
    }
    bar.finish_and_clear();
    Ok(out)
}

/// The error table of `profile` on `collected`: one row per family, then "all" (each graph
/// priced once).
fn errors_by_family(
    profile: &SocProfile,
    collected: &Collected,
) -> Result<Vec<FamilyError>, Box<dyn Error>> {
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for (name, obs) in &collected.families {
        let family = residuals(profile, obs)?;
        rows.extend(family_error(name, &family));
        all.extend(family);
    }
    rows.extend(family_error("all", &all));
    Ok(rows)
}

/// One line per family with refused graphs: how many, one example and QNN's reason.
fn refused_lines(c: &Collected) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut families: Vec<&str> = c.refused.iter().map(|r| r.0).collect();
    families.dedup();
    for family in families {
        let graphs: Vec<_> = c.refused.iter().filter(|r| r.0 == family).collect();
        let (_, example, why) = graphs[0];
        lines.push(format!(
            "refused by QNN: {family}: {} graph(s), e.g. {example}: {why}",
            graphs.len()
        ));
    }
    lines
}

fn refused_json(c: &Collected) -> Vec<serde_json::Value> {
    c.refused
        .iter()
        .map(|(family, graph, why)| serde_json::json!({"family": family, "graph": graph, "error": why}))
        .collect()
}

fn base_text(base: &str) -> Result<String, Box<dyn Error>> {
    if base.ends_with(".toml") {
        std::fs::read_to_string(base).map_err(|e| format!("cannot read {base}: {e}").into())
    } else {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == base)
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| format!("unknown base profile `{base}`").into())
    }
}

/// Everything one fit measured and found.
struct FitRun {
    /// The QNN library's version line.
    library: String,
    /// Estimates of the fit's families.
    fitted_on: Collected,
    /// Estimates of the held-out families.
    held_out: Collected,
    /// The fit.
    result: Fit,
    /// Errors per family of the fitted profile on the fit's graphs, the base's on the same,
    /// and the fitted profile's on the held-out graphs (each ending with "all").
    fit_rows: Vec<FamilyError>,
    base_rows: Vec<FamilyError>,
    held_rows: Vec<FamilyError>,
    /// The numerics and refusals probed on the socModel (written into `[numerics]` and
    /// `[limits]`).
    probed: Probed,
}

/// Runs `soc fit`.
pub fn run_fit(args: &FitArgs) -> Result<(), Box<dyn Error>> {
    let known = ESTIMATED_SOCS
        .iter()
        .find(|s| s.soc_model == args.soc_model);
    let mut base = load_profile(&args.base)?;
    if let Some(mb) = known.and_then(|s| s.vtcm_mb) {
        base.npu.onchip_bytes.get_mut().value = mb << 20;
    }
    let run = measure_and_fit(args, &base)?;
    let text = fitted_profile_text(
        &base.name,
        &base_text(&args.base)?,
        &identity(args, known, &run),
        &fitted_numbers(args, known, &base, &run),
        &run.probed.decision.sections(),
    )?;
    std::fs::write(&args.out, &text)
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    if let Some(path) = &args.estimates_out {
        write_estimates(path, &run)?;
    }
    if args.json {
        print_fit_json(args, &base, &run)
    } else {
        print_fit_tables(args, known, &base, &run);
        Ok(())
    }
}

/// Collects both grids' estimates on QNN and fits `base` to the fit's.
fn measure_and_fit(args: &FitArgs, base: &SocProfile) -> Result<FitRun, Box<dyn Error>> {
    let estimator = QnnEstimator::open_cached(
        args.library.clone(),
        args.soc_model,
        args.estimate_cache.clone(),
    )?;
    let size = GridSize::from(args.grid);
    let fitted_on = collect(&estimator, args.soc_model, &fit_families(size))?;
    let held_out = collect(&estimator, args.soc_model, &held_out_families(size))?;
    estimator.save_cache()?;
    let probed = probe_on(&estimator)?;
    let library = estimator.version();
    drop(estimator);
    let result = fit(base, &FREE_PARAMETERS, &fitted_on.all())?;
    Ok(FitRun {
        fit_rows: errors_by_family(&result.profile, &fitted_on)?,
        base_rows: errors_by_family(base, &fitted_on)?,
        held_rows: errors_by_family(&result.profile, &held_out)?,
        library,
        fitted_on,
        held_out,
        result,
        probed,
    })
}

/// The written profile's name, part, architecture and header comment.
fn identity(args: &FitArgs, known: Option<&EstimatedSoc>, run: &FitRun) -> Identity {
    let name = args.name.clone().unwrap_or_else(|| {
        known.map_or(format!("qnn-soc-model-{}", args.soc_model), |s| {
            s.name.to_string()
        })
    });
    let part = known.map_or(format!("QNN socModel {}", args.soc_model), |s| {
        s.part.to_string()
    });
    let mut header = vec![
        format!(
            "{part} fitted to Qualcomm's cost model of socModel {} by `shadowattn soc fit --soc-model {} --base {}`.",
            args.soc_model, args.soc_model, args.base
        ),
        format!("QNN: {}.", run.library),
        "Fitted numbers say what they were fitted to; [limits] and [numerics] what the probe measured; every other number is copied from the base.".into(),
    ];
    if let Some(h) = run.held_rows.last() {
        header.push(format!(
            "Held-out families ({} graphs): median |log error| {:.1} %, {:.0} % within ±10 %, {:.0} % within ±25 %, worst {:+.1} % ({}).",
            h.cells,
            h.median_abs_log_error * 100.0,
            h.within_10_percent * 100.0,
            h.within_25_percent * 100.0,
            h.worst_relative_error * 100.0,
            h.worst_graph
        ));
    }
    Identity {
        name,
        soc: part,
        npu_arch: known
            .map_or("unknown HTP generation", |s| s.arch)
            .to_string(),
        header,
    }
}

/// The numbers the fit sets, each with its source: the fitted parameters, the clock QNN's
/// estimates imply, the public VTCM size and, if the DMA rate exceeds the base's DDR peak, a
/// DDR lower bound.
fn fitted_numbers(
    args: &FitArgs,
    known: Option<&EstimatedSoc>,
    base: &SocProfile,
    run: &FitRun,
) -> Vec<(Key, f64, String)> {
    let n = run.fitted_on.all().len();
    let all = run.fit_rows.last();
    let source = format!(
        "derived: fitted by `shadowattn soc fit` to {n} QNN cost-model estimates (socModel {}, {}) of: {}; fit median |log error| {:.1} %, worst {:+.1} % ({})",
        args.soc_model,
        run.library,
        run.fitted_on
            .families
            .iter()
            .map(|(f, _)| *f)
            .collect::<Vec<_>>()
            .join("; "),
        all.map_or(f64::NAN, |a| a.median_abs_log_error * 100.0),
        all.map_or(f64::NAN, |a| a.worst_relative_error * 100.0),
        all.map_or("-", |a| a.worst_graph.as_str()),
    );
    let mut numbers: Vec<_> = run
        .result
        .values
        .iter()
        .map(|&(p, v)| (Key::Fitted(p), round_sig(v), source.clone()))
        .collect();
    let (cycles, micros) = run.fitted_on.cycles_and_micros;
    let clock_ghz = round_sig(cycles as f64 / micros.max(1) as f64 / 1e3);
    numbers.push((
        Key::Other("npu.clock_ghz"),
        clock_ghz,
        format!(
            "measured: {cycles} estimated cycles over {micros} estimated µs of the fit's {n} graphs (QNN socModel {}, {})",
            args.soc_model, run.library
        ),
    ));
    if let Some(mb) = known.and_then(|s| s.vtcm_mb) {
        numbers.push((
            Key::Other("npu.onchip_bytes"),
            (mb << 20) as f64,
            format!("code/doc: executorch qc_schema.py SoC table: {mb} MB VTCM"),
        ));
    }
    let dma_gbps = Parameter::DmaBytesPerCycle.get(&run.result.profile) * clock_ghz;
    if dma_gbps > real(&base.npu.ddr_gbps) {
        numbers.push((
            Key::Other("npu.ddr_gbps"),
            round_sig(dma_gbps.ceil()),
            "derived: a lower bound, the fitted DMA rate times the clock (the SoC's DDR peak is not in the estimates)".into(),
        ));
    }
    numbers
}

/// Every estimate with the fitted prediction, as JSON (`--estimates-out`).
fn write_estimates(path: &Path, run: &FitRun) -> Result<(), Box<dyn Error>> {
    let mut rows = Vec::new();
    for (held, c) in [(false, &run.fitted_on), (true, &run.held_out)] {
        for (family, obs) in &c.families {
            for r in residuals(&run.result.profile, obs)? {
                rows.push(serde_json::json!({
                    "family": family, "held_out": held, "graph": r.spec.to_string(),
                    "dtype": r.spec.dtype.to_string(), "softmax": r.spec.tail == Tail::Softmax,
                    "attention": r.spec.tail == Tail::Attention,
                    "static": r.spec.second == Second::Static, "transpose_b": r.spec.transpose_b,
                    "heads": r.spec.heads, "m": r.spec.m, "k": r.spec.k, "n": r.spec.n,
                    "qnn_cycles": r.reference, "simulator_cycles": r.predicted,
                }));
            }
        }
    }
    std::fs::write(path, serde_json::to_string_pretty(&rows)?)
        .map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

fn print_fit_json(args: &FitArgs, base: &SocProfile, run: &FitRun) -> Result<(), Box<dyn Error>> {
    let json = serde_json::json!({
        "soc_model": args.soc_model,
        "library": run.library,
        "profile": args.out.display().to_string(),
        "fitted": run.result.values.iter().map(|(p, v)| serde_json::json!({
            "key": p.key(), "base": p.get(base), "fitted": v,
        })).collect::<Vec<_>>(),
        "fit_families": run.fit_rows,
        "fit_families_with_the_base": run.base_rows,
        "held_out_families": run.held_rows,
        "refused": ([refused_json(&run.fitted_on), refused_json(&run.held_out)].concat()),
        "numerics_probe": numerics_json(&run.probed),
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

fn print_fit_tables(args: &FitArgs, known: Option<&EstimatedSoc>, base: &SocProfile, run: &FitRun) {
    println!(
        "soc fit: socModel {} ({}), {} estimates fitted, {} held out; {}",
        args.soc_model,
        known.map_or("?", |s| s.part),
        run.fitted_on.all().len(),
        run.held_out.all().len(),
        run.library
    );
    println!("| parameter | base ({}) | fitted |", base.name);
    println!("|---|---|---|");
    for (p, v) in &run.result.values {
        println!("| {} | {:.4} | {:.4} |", p.key(), p.get(base), v);
    }
    println!("\nthe fit's own graphs:");
    print!("{}", markdown(&run.fit_rows));
    if let Some(b) = run.base_rows.last() {
        println!(
            "(the base {} on the same graphs: median |log error| {:.1} %, {:.0} % within ±10 %, {:.0} % within ±25 %)",
            base.name,
            b.median_abs_log_error * 100.0,
            b.within_10_percent * 100.0,
            b.within_25_percent * 100.0
        );
    }
    println!("\nheld out of the fit:");
    print!("{}", markdown(&run.held_rows));
    for l in refused_lines(&run.fitted_on)
        .into_iter()
        .chain(refused_lines(&run.held_out))
    {
        println!("{l}");
    }
    println!("{}", compact_line(&run.probed));
    println!("wrote: {}", args.out.display());
}

/// Runs `soc check`.
pub fn run_check(args: &CheckArgs) -> Result<(), Box<dyn Error>> {
    let profile = load_profile(&args.soc)?;
    let estimator = QnnEstimator::open_cached(
        args.library.clone(),
        args.soc_model,
        args.estimate_cache.clone(),
    )?;
    let held_out = collect(
        &estimator,
        args.soc_model,
        &held_out_families(args.grid.into()),
    )?;
    estimator.save_cache()?;
    let library = estimator.version();
    drop(estimator);
    let rows = errors_by_family(&profile, &held_out)?;
    if args.json {
        let json = serde_json::json!({
            "soc_model": args.soc_model,
            "library": library,
            "profile": profile.name,
            "held_out_families": rows,
            "refused": refused_json(&held_out),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!(
        "soc check: profile {} against socModel {} on the held-out families; {}",
        profile.name, args.soc_model, library
    );
    print!("{}", markdown(&rows));
    for l in refused_lines(&held_out) {
        println!("{l}");
    }
    Ok(())
}
