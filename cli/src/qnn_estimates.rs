//! `shadowattn qnn-estimates`: Qualcomm's finalize-time cost-model estimates of any grid of
//! graphs beside a simulator profile's predictions.

use crate::progress::progress_bar;
use clap::{Args, ValueEnum};
use shadowattn_hal::{DType, Graph};
use shadowattn_qnn::{QnnBackend, QnnError, QnnOptions, StdoutToStderr, VendorEstimate};
use shadowattn_simulator::fit::graph_families::{GraphSpec, Grid, Second, Tail};
use shadowattn_simulator::npu::cost::graph_cost;
use shadowattn_simulator::npu::graphs::PilotGraph;
use shadowattn_simulator::SocProfile;
use std::error::Error;
use std::path::PathBuf;

/// Element types of the graph families.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FamilyDType {
    /// FP16 inputs and output.
    F16,
    /// FP32 inputs and output (HTP computes them in FP16).
    F32,
    /// Symmetric INT8 inputs, requantized INT8 output.
    I8,
    /// Asymmetric UINT8 inputs (zero point 128), requantized UINT8 output.
    U8,
}

impl From<FamilyDType> for DType {
    fn from(d: FamilyDType) -> DType {
        match d {
            FamilyDType::F16 => DType::F16,
            FamilyDType::F32 => DType::F32,
            FamilyDType::I8 => DType::I8,
            FamilyDType::U8 => DType::U8,
        }
    }
}

/// The second MatMul input.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SecondInput {
    /// A graph input.
    Dynamic,
    /// A constant (STATIC) tensor.
    Static,
}

/// The grid of graphs, as options (shared by `qnn-estimates` and `soc check`).
#[derive(Args, Clone, Debug)]
pub struct GridArgs {
    /// Element types of the MatMul (repeatable).
    #[arg(long = "dtype", value_enum, default_values_t = [FamilyDType::F16, FamilyDType::I8])]
    dtypes: Vec<FamilyDType>,
    /// Second input dynamic or STATIC (repeatable).
    #[arg(long = "second", value_enum, default_values_t = [SecondInput::Dynamic])]
    seconds: Vec<SecondInput>,
    /// Follow the MatMul by Softmax on the last axis.
    #[arg(long)]
    softmax: bool,
    /// The NPU-Full INT8 attention graph instead (Q·Kᵀ, Softmax, P·V; needs --dtype i8
    /// --transpose-b; K is the head dimension, N the keys).
    #[arg(long, conflicts_with = "softmax")]
    attention: bool,
    /// The second input is [1, h, N, K] (keys as rows, as the pilot).
    #[arg(long)]
    transpose_b: bool,
    /// Fused heads (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1])]
    heads: Vec<usize>,
    /// Rows M (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [128])]
    m: Vec<usize>,
    /// Inner dimension K (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [64])]
    k: Vec<usize>,
    /// Output columns N (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [512, 2048])]
    n: Vec<usize>,
}

impl GridArgs {
    /// The grid these options describe.
    pub fn grid(&self) -> Grid {
        Grid {
            dtypes: self.dtypes.iter().map(|&d| d.into()).collect(),
            tails: vec![if self.attention {
                Tail::Attention
            } else if self.softmax {
                Tail::Softmax
            } else {
                Tail::None
            }],
            seconds: self
                .seconds
                .iter()
                .map(|s| match s {
                    SecondInput::Dynamic => Second::Dynamic,
                    SecondInput::Static => Second::Static,
                })
                .collect(),
            transpose_b: vec![self.transpose_b],
            heads: self.heads.clone(),
            m: self.m.clone(),
            k: self.k.clone(),
            n: self.n.clone(),
        }
    }
}

/// Options of `shadowattn qnn-estimates`.
#[derive(Args)]
pub struct EstimateArgs {
    /// QNN SoC models to ask (52 = SA8255; the emulator estimates 52, 62, 63, 72, 77, 95, 114).
    #[arg(long = "soc-model", default_values_t = [52])]
    soc_models: Vec<u32>,
    /// QNN library (default: SHADOWATTN_QNN_LIB, QNN_SDK_ROOT, then libQnnHtp.so).
    #[arg(long)]
    library: Option<PathBuf>,
    /// Simulator profile to compare (a built-in name or a .toml file; default: the profile
    /// fitted to that socModel, if one is built in).
    #[arg(long)]
    soc: Option<String>,
    /// The graphs.
    #[command(flatten)]
    grid: GridArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Estimate the pilot graphs instead of the grid: per-head (`--heads` fused heads), and the
    /// group pilot of `--group-heads` query heads per group with its ranking summed on the CPU
    /// and on the NPU (`--heads` fused groups); `--m` query rows, `--n` keys, `--k` head dims.
    #[arg(long, conflicts_with_all = ["softmax", "attention", "json"])]
    pilots: bool,
    /// Query heads per GQA group of the group pilot (with --pilots).
    #[arg(long, default_value_t = 6)]
    group_heads: usize,
}

/// The built-in simulator profile fitted to a QNN SoC model.
pub fn profile_of(soc_model: u32) -> Option<&'static str> {
    match soc_model {
        52 => Some("sa8255"),
        _ => None,
    }
}

/// What QNN says of one graph.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Estimate {
    /// Its cost-model estimate.
    Cycles(VendorEstimate),
    /// The graph compiled but this SoC has no cost model.
    NoCostModel,
    /// QNN refused the graph (its validation error).
    Refused(String),
}

/// Qualcomm's cost model of one socModel, through the QNN library.
pub struct QnnEstimator {
    qnn: QnnBackend,
    soc_model: u32,
    /// Estimates kept on disk between runs (`--estimate-cache`).
    cache: Option<EstimateCache>,
    /// The library's stdout notices go to stderr while it works (results print after).
    _quiet: Option<StdoutToStderr>,
}

/// Estimates kept in a JSON file, keyed by QNN build, socModel and graph: QNN's estimates are
/// deterministic for one build (bit-identical across runs), so a refit reads them back instead
/// of compiling every graph again.
struct EstimateCache {
    path: PathBuf,
    entries: std::cell::RefCell<std::collections::BTreeMap<String, Estimate>>,
}

impl EstimateCache {
    /// The cache in `path` (empty if the file does not exist yet).
    fn open(path: PathBuf) -> Result<Self, Box<dyn Error>> {
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| format!("estimate cache {}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display()).into()),
        };
        Ok(EstimateCache {
            path,
            entries: std::cell::RefCell::new(entries),
        })
    }

    /// Writes the cache back.
    fn save(&self) -> Result<(), Box<dyn Error>> {
        let text = serde_json::to_string(&*self.entries.borrow())?;
        std::fs::write(&self.path, text)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()).into())
    }
}

impl QnnEstimator {
    /// Opens QNN with `soc_model` configured on its device.
    pub fn open(library: Option<PathBuf>, soc_model: u32) -> Result<Self, Box<dyn Error>> {
        Self::open_cached(library, soc_model, None)
    }

    /// [`Self::open`], reading and adding estimates to the JSON file `cache` if given.
    pub fn open_cached(
        library: Option<PathBuf>,
        soc_model: u32,
        cache: Option<PathBuf>,
    ) -> Result<Self, Box<dyn Error>> {
        let quiet = StdoutToStderr::new();
        let qnn = QnnBackend::open(QnnOptions {
            library,
            soc_model: Some(soc_model),
            ..Default::default()
        })?;
        Ok(QnnEstimator {
            qnn,
            soc_model,
            cache: cache.map(EstimateCache::open).transpose()?,
            _quiet: quiet,
        })
    }

    /// Writes the estimate cache, if there is one.
    pub fn save_cache(&self) -> Result<(), Box<dyn Error>> {
        self.cache.as_ref().map_or(Ok(()), EstimateCache::save)
    }

    /// The library's version line.
    pub fn version(&self) -> String {
        self.qnn.library_version().to_string()
    }

    /// The library's file name (`libQnnHtp.so`).
    pub fn library_file(&self) -> String {
        let path = self.qnn.library().path();
        std::path::Path::new(path)
            .file_name()
            .map_or(path.to_string(), |f| f.to_string_lossy().into_owned())
    }

    /// The socModel configured.
    pub fn soc_model(&self) -> u32 {
        self.soc_model
    }

    /// The QNN backend, its socModel configured (to run graphs on).
    pub fn backend(&self) -> &QnnBackend {
        &self.qnn
    }

    /// Compiles `spec`'s graph and reads the estimate; errors other than QNN refusing the
    /// graph are returned.
    pub fn estimate(&self, spec: &GraphSpec) -> Result<Estimate, Box<dyn Error>> {
        let Some(cache) = &self.cache else {
            return self.estimate_graph(spec, &spec.graph()?);
        };
        let key = format!("{} | socModel {} | {spec}", self.version(), self.soc_model);
        if let Some(e) = cache.entries.borrow().get(&key) {
            return Ok(e.clone());
        }
        let estimate = self.estimate_graph(spec, &spec.graph()?)?;
        cache.entries.borrow_mut().insert(key, estimate.clone());
        Ok(estimate)
    }

    /// [`Self::estimate`] of a graph already built, named `what` in errors.
    pub fn estimate_graph(
        &self,
        what: &dyn std::fmt::Display,
        graph: &Graph,
    ) -> Result<Estimate, Box<dyn Error>> {
        match self.qnn.compile_qnn(graph) {
            Ok(compiled) => Ok(compiled
                .executable()
                .estimate()
                .map_or(Estimate::NoCostModel, Estimate::Cycles)),
            Err(e @ QnnError::Unsupported { .. }) => Ok(Estimate::Refused(e.to_string())),
            Err(e) => Err(format!("socModel {}: {what}: {e}", self.soc_model).into()),
        }
    }
}

/// The estimate's cycles, if QNN gave one.
pub fn cycles(e: &Estimate) -> Option<VendorEstimate> {
    match e {
        Estimate::Cycles(v) => Some(*v),
        _ => None,
    }
}

/// Loads a profile by built-in name or file.
pub fn load_profile(name: &str) -> Result<SocProfile, Box<dyn Error>> {
    Ok(if name.ends_with(".toml") {
        SocProfile::load(std::path::Path::new(name))?
    } else {
        SocProfile::builtin(name)?
    })
}

/// The pilot graphs `--pilots` estimates, labelled.
fn pilot_graphs(args: &EstimateArgs) -> Vec<(String, Graph)> {
    let g = &args.grid;
    let mut graphs = Vec::new();
    for &units in &g.heads {
        for &m in &g.m {
            for &k in &g.k {
                for &n in &g.n {
                    let shape = format!("q{m} k{n} d{k}");
                    for (label, pilot) in [
                        (format!("head x{units}"), PilotGraph::Head),
                        (
                            format!("group-cpu {}h x{units}", args.group_heads),
                            PilotGraph::Group {
                                heads: args.group_heads,
                                ranked_on_npu: false,
                            },
                        ),
                        (
                            format!("group {}h x{units}", args.group_heads),
                            PilotGraph::Group {
                                heads: args.group_heads,
                                ranked_on_npu: true,
                            },
                        ),
                    ] {
                        graphs.push((format!("{label} {shape}"), pilot.graph(units, m, n, k)));
                    }
                }
            }
        }
    }
    graphs
}

/// The simulator profile compared with socModel `soc`: `--soc`, else the one fitted to it.
fn compared_profile(args: &EstimateArgs, soc: u32) -> Result<Option<SocProfile>, Box<dyn Error>> {
    Ok(match (&args.soc, profile_of(soc)) {
        (Some(name), _) => Some(load_profile(name)?),
        (None, Some(name)) => Some(SocProfile::builtin(name)?),
        (None, None) => None,
    })
}

/// `--pilots`: QNN's estimate of each pilot graph beside the simulator's, a table.
fn run_pilots(args: &EstimateArgs) -> Result<(), Box<dyn Error>> {
    let graphs = pilot_graphs(args);
    let mut rows = Vec::new();
    for &soc in &args.soc_models {
        let profile = compared_profile(args, soc)?;
        let estimator = QnnEstimator::open(args.library.clone(), soc)?;
        for (label, graph) in &graphs {
            let qnn = estimator.estimate_graph(label, graph)?;
            let sim = profile
                .as_ref()
                .map(|p| graph_cost(p, graph).accelerator_cycles);
            rows.push(table_row(soc, label, &qnn, sim));
        }
    }
    // Printed once the estimators are closed: while one is open, stdout goes to stderr.
    println!("| soc model | pilot graph | QNN cycles [lower, upper] | simulator cycles | error |");
    println!("|---|---|---|---|---|");
    rows.iter().for_each(|r| println!("{r}"));
    Ok(())
}

/// One row of the tables: the estimate beside the simulator's cycles and the relative error.
fn table_row(soc: u32, graph: &str, qnn: &Estimate, sim: Option<f64>) -> String {
    let qnn_text = match qnn {
        Estimate::Cycles(e) => format!("{} [{}, {}]", e.cycles, e.cycles_lower, e.cycles_upper),
        Estimate::NoCostModel => "no estimate for this SoC".into(),
        Estimate::Refused(why) => format!("refused: {why}"),
    };
    let sim_text = sim.map_or("-".into(), |s| format!("{s:.0}"));
    let err = match (cycles(qnn), sim) {
        (Some(e), Some(s)) => format!("{:+.1} %", (s / e.cycles as f64 - 1.0) * 100.0),
        (Some(_), None) => "no profile (--soc)".into(),
        _ => "-".into(),
    };
    format!("| {soc} | {graph} | {qnn_text} | {sim_text} | {err} |")
}

/// Runs the command.
pub fn run(args: &EstimateArgs) -> Result<(), Box<dyn Error>> {
    if args.pilots {
        return run_pilots(args);
    }
    let specs = args.grid.grid().specs();
    let mut rows = Vec::new();
    let bar = progress_bar(specs.len() * args.soc_models.len());
    for &soc in &args.soc_models {
        let profile = compared_profile(args, soc)?;
        let estimator = QnnEstimator::open(args.library.clone(), soc)?;
        for spec in &specs {
            bar.set_message(format!("socModel {soc}: {spec}"));
            let graph = spec.graph()?;
            let qnn = estimator.estimate_graph(spec, &graph)?;
            let sim = profile
                .as_ref()
                .map(|p| graph_cost(p, &graph).accelerator_cycles);
            rows.push((
                soc,
                *spec,
                qnn,
                sim,
                profile.as_ref().map(|p| p.name.clone()),
            ));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if args.json {
        let json: Vec<_> = rows
            .iter()
            .map(|(soc, spec, qnn, sim, profile)| {
                serde_json::json!({
                    "soc_model": soc,
                    "graph": spec.to_string(),
                    "family": spec.family().to_string(),
                    "heads": spec.heads, "m": spec.m, "k": spec.k, "n": spec.n,
                    "qnn_cycles": cycles(qnn).map(|e| e.cycles),
                    "qnn_cycles_lower": cycles(qnn).map(|e| e.cycles_lower),
                    "qnn_cycles_upper": cycles(qnn).map(|e| e.cycles_upper),
                    "qnn_traffic": cycles(qnn).map(|e| e.traffic),
                    "qnn_missing_ops": cycles(qnn).map(|e| e.missing_ops),
                    "qnn_refused": match qnn { Estimate::Refused(why) => Some(why.as_str()), _ => None },
                    "profile": profile,
                    "simulator_cycles": sim,
                    "log_error": match (cycles(qnn), sim) {
                        (Some(e), Some(s)) => Some((s / e.cycles as f64).ln()),
                        _ => None,
                    },
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!("| soc model | graph | QNN cycles [lower, upper] | simulator cycles | error |");
    println!("|---|---|---|---|---|");
    for (soc, spec, qnn, sim, _) in &rows {
        println!("{}", table_row(*soc, &spec.to_string(), qnn, *sim));
    }
    Ok(())
}
