//! `shadowattn soc numerics`, and the probe `soc fit` writes into `[numerics]` and `[limits]`:
//! the probe graphs of `shadowattn_simulator::fit::numerics_probe` run on QNN with one socModel
//! configured.

use crate::qnn_estimates::QnnEstimator;
use clap::Args;
use shadowattn_hal::{Capabilities, CompiledGraph, Graph, HalError, NpuBackend};
use shadowattn_qnn::loader::{log_position, log_since};
use shadowattn_qnn::QnnBackend;
use shadowattn_simulator::fit::numerics_probe::{self, rule_name, Decision, NumericsProbe};
use std::error::Error;
use std::path::PathBuf;

/// Options of `soc numerics`.
#[derive(Args, Debug)]
pub struct NumericsArgs {
    /// The QNN socModel to probe.
    #[arg(long)]
    soc_model: u32,
    /// QNN library (default: SHADOWATTN_QNN_LIB, QNN_SDK_ROOT, then libQnnHtp.so).
    #[arg(long)]
    library: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// A probe's results with what it ran on.
pub struct Probed {
    /// What ran the probe (library, version, socModel), as the sources say it.
    pub what: String,
    /// The measurements.
    pub probe: NumericsProbe,
    /// What they decide.
    pub decision: Decision,
}

/// Runs the probe on the estimator's QNN backend (its socModel configured).
pub fn probe_on(estimator: &QnnEstimator) -> Result<Probed, Box<dyn Error>> {
    let what = format!(
        "{} ({}) with socModel {}",
        estimator.library_file(),
        estimator.version(),
        estimator.soc_model()
    );
    let probe = numerics_probe::probe(&Explained(estimator.backend()))
        .map_err(|e| format!("socModel {}: numerics probe: {e}", estimator.soc_model()))?;
    let decision = probe.decide(&what);
    Ok(Probed {
        what,
        probe,
        decision,
    })
}

/// QNN whose refusals also say what the library logged about them: the lines that name what
/// is unsupported (`The SocModel doesn't support FP16`), which the refusal's own message (the
/// last error line, "Failed to validate op …") leaves out.
#[derive(Debug)]
struct Explained<'a>(&'a QnnBackend);

impl Explained<'_> {
    fn explain<T>(
        &self,
        call: impl FnOnce() -> shadowattn_hal::Result<T>,
    ) -> shadowattn_hal::Result<T> {
        let mark = log_position();
        call().map_err(|e| match e {
            HalError::Unsupported {
                backend,
                node,
                op,
                detail,
            } => {
                let mut lines: Vec<String> = Vec::new();
                for (_, line) in log_since(mark) {
                    let line = line.trim().trim_start_matches("<E>").trim().to_string();
                    let telling = line.to_lowercase().contains("support")
                        && !line.starts_with("Supported I/O")
                        && !line.contains("validateOpConfig failed");
                    if telling && !lines.contains(&line) {
                        lines.push(line);
                    }
                }
                let detail = if lines.is_empty() {
                    detail
                } else {
                    format!("{detail}; library log: {}", lines.join(" / "))
                };
                HalError::Unsupported {
                    backend,
                    node,
                    op,
                    detail,
                }
            }
            other => other,
        })
    }
}

impl NpuBackend for Explained<'_> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn version(&self) -> String {
        self.0.version()
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    fn compile(&self, graph: &Graph) -> shadowattn_hal::Result<Box<dyn CompiledGraph>> {
        self.explain(|| self.0.compile(graph))
    }

    fn check_support(&self, graph: &Graph) -> shadowattn_hal::Result<()> {
        self.explain(|| self.0.check_support(graph))
    }

    fn deserialize(&self, bytes: &[u8]) -> shadowattn_hal::Result<Box<dyn CompiledGraph>> {
        self.0.deserialize(bytes)
    }
}

/// One line per probe and limit, then the decision.
pub fn summary_lines(p: &Probed) -> Vec<String> {
    let mut lines = vec![format!("numerics probe on {}:", p.what)];
    for (label, c) in &p.probe.rounding {
        lines.push(match c {
            Ok(c) => format!(
                "  {label}: {} outputs, golden differs on {}, htp-v73 on {}",
                c.outputs, c.golden_differs, c.htp_v73_differs
            ),
            Err(why) => format!("  {label}: refused: {why}"),
        });
    }
    for (label, c) in &p.probe.float {
        lines.push(match c {
            Ok(c) => format!(
                "  {label}: {} outputs, {} informative: {} like f16, {} like f32; max error {:.2e} vs f32, {:.2e} vs f16",
                c.outputs, c.informative, c.like_f16, c.like_f32, c.error_vs_f32, c.error_vs_f16
            ),
            Err(why) => format!("  {label}: refused: {why}"),
        });
    }
    for l in &p.probe.limits {
        let state = match (&l.refused, &l.control_refused) {
            (Some(why), None) => format!("refused: {why}"),
            (None, None) => "accepted".into(),
            (_, Some(why)) => format!("undecided, control refused: {why}"),
        };
        lines.push(format!("  limit {} ({}): {state}", l.key, l.label));
    }
    let d = &p.decision;
    lines.push(format!(
        "decision: integer_rounding = \"{}\", f32_as_f16 = {}, refused limits: {}",
        rule_name(d.integer_rounding),
        d.f32_as_f16,
        d.refused_limits()
    ));
    lines
}

/// One line of what the probe decided and the counts it decided on (`soc fit`'s tables).
pub fn compact_line(p: &Probed) -> String {
    let d = &p.decision;
    let r = p.probe.rounding_counts();
    let f = p.probe.float_counts();
    format!(
        "numerics probe (`shadowattn soc numerics` prints it whole): integer_rounding = \"{}\" (golden differs on {}, htp-v73 on {} of {} outputs); f32_as_f16 = {} ({} of {} informative f32 outputs like f16, {} like f32); refused limits: {}",
        rule_name(d.integer_rounding),
        r.golden_differs,
        r.htp_v73_differs,
        r.outputs,
        d.f32_as_f16,
        f.like_f16,
        f.informative,
        f.like_f32,
        d.refused_limits()
    )
}

/// The probe's results as JSON.
pub fn json(p: &Probed) -> serde_json::Value {
    let d = &p.decision;
    serde_json::json!({
        "probed": p.what,
        "rounding": p.probe.rounding.iter().map(|(label, c)| match c {
            Ok(c) => serde_json::json!({"probe": label, "outputs": c.outputs,
                "golden_differs": c.golden_differs, "htp_v73_differs": c.htp_v73_differs}),
            Err(why) => serde_json::json!({"probe": label, "refused": why}),
        }).collect::<Vec<_>>(),
        "float": p.probe.float.iter().map(|(label, c)| match c {
            Ok(c) => serde_json::json!({"probe": label, "outputs": c.outputs,
                "informative": c.informative, "like_f16": c.like_f16, "like_f32": c.like_f32,
                "error_vs_f32": c.error_vs_f32, "error_vs_f16": c.error_vs_f16}),
            Err(why) => serde_json::json!({"probe": label, "refused": why}),
        }).collect::<Vec<_>>(),
        "limits": p.probe.limits.iter().map(|l| serde_json::json!({
            "key": l.key, "probe": l.label, "refused": l.refused,
            "control_refused": l.control_refused,
        })).collect::<Vec<_>>(),
        "decision": {
            "integer_rounding": rule_name(d.integer_rounding),
            "f32_as_f16": d.f32_as_f16,
            "numerics_source": d.numerics_source,
            "limits": d.limits.iter().map(|(k, v)| (k.to_string(), serde_json::Value::Bool(*v))).collect::<serde_json::Map<_, _>>(),
            "limits_source": d.limits_source,
        },
    })
}

/// Runs `soc numerics`: the probe alone, printed.
pub fn run(args: &NumericsArgs) -> Result<(), Box<dyn Error>> {
    let estimator = QnnEstimator::open(args.library.clone(), args.soc_model)?;
    let probed = probe_on(&estimator)?;
    // Printed once the estimator is closed: while it is open, stdout goes to stderr.
    drop(estimator);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json(&probed))?);
    } else {
        summary_lines(&probed).iter().for_each(|l| println!("{l}"));
    }
    Ok(())
}
