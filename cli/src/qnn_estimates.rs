//! `shadowattn qnn-estimates`: Qualcomm's finalize-time cost-model estimates beside the
//! simulator's predictions, for the pilot graph and the calibration anchors.

use clap::Args;
use shadowattn_hal::Graph;
use shadowattn_qnn::{QnnBackend, QnnOptions};
use shadowattn_simulator::cost::graph_cost;
use shadowattn_simulator::fit::{int8_pilot_graph, matmul_softmax_graph};
use shadowattn_simulator::SocProfile;
use std::error::Error;
use std::path::PathBuf;

/// Options of `shadowattn qnn-estimates`.
#[derive(Args)]
pub struct EstimateArgs {
    /// QNN SoC models to compare (52 = SA8255; phone SoCs have no estimates in the emulator).
    #[arg(long = "soc-model", default_values_t = [52])]
    soc_models: Vec<u32>,
    /// QNN library (default: SHADOWATTN_QNN_LIB, QNN_SDK_ROOT, then libQnnHtp.so).
    #[arg(long)]
    library: Option<PathBuf>,
}

/// The simulator profile of a QNN SoC model.
pub fn profile_of(soc_model: u32) -> Option<&'static str> {
    match soc_model {
        52 => Some("sa8255"),
        43 => Some("snapdragon-8-gen-2"),
        57 => Some("snapdragon-8-gen-3"),
        69 => Some("snapdragon-8-elite"),
        _ => None,
    }
}

/// The graphs compared: the SA8255 anchors and pilot shapes.
pub fn graphs() -> Vec<(String, Graph)> {
    let mut g: Vec<(String, Graph)> = [128, 256, 1024, 4096]
        .iter()
        .map(|&k| {
            (
                format!("fp16 matmul [64,{k}]x[{k},512] + softmax"),
                matmul_softmax_graph(k),
            )
        })
        .collect();
    for (h, q, k) in [
        (1, 128, 512),
        (1, 128, 2048),
        (2, 128, 2048),
        (4, 128, 2048),
        (4, 128, 4096),
    ] {
        g.push((
            format!("int8 pilot {h} head(s) q{q} k{k} d64"),
            int8_pilot_graph(h, q, k, 64),
        ));
    }
    g
}

/// Runs the command.
pub fn run(args: &EstimateArgs) -> Result<(), Box<dyn Error>> {
    println!("| soc model | graph | QNN cycles [lower, upper] | simulator cycles | error |");
    println!("|---|---|---|---|---|");
    for &soc in &args.soc_models {
        let qnn = QnnBackend::open(QnnOptions {
            library: args.library.clone(),
            soc_model: Some(soc),
            ..Default::default()
        })?;
        let profile = profile_of(soc).map(SocProfile::builtin).transpose()?;
        for (label, graph) in graphs() {
            let compiled = qnn.compile_qnn(&graph)?;
            let sim = profile
                .as_ref()
                .map(|p| graph_cost(p, &graph).accelerator_cycles);
            let (qnn_text, err) = match (compiled.executable().estimate(), sim) {
                (Some(e), Some(s)) => (
                    format!("{} [{}, {}]", e.cycles, e.cycles_lower, e.cycles_upper),
                    format!("{:+.1} %", (s - e.cycles as f64) / e.cycles as f64 * 100.0),
                ),
                (Some(e), None) => (
                    format!("{} [{}, {}]", e.cycles, e.cycles_lower, e.cycles_upper),
                    "no profile".into(),
                ),
                (None, _) => ("no estimate for this SoC".into(), "-".into()),
            };
            let sim_text = sim.map_or("-".into(), |s| format!("{s:.0}"));
            println!("| {soc} | {label} | {qnn_text} | {sim_text} | {err} |");
        }
    }
    Ok(())
}
