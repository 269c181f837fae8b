//! `shadowattn conformance`: the conformance suite on one backend, with a report.

use crate::registry;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shadowattn_conformance::{all_cases, run_suite};
use std::error::Error;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Options of `shadowattn conformance`.
#[derive(Args)]
pub struct ConformanceArgs {
    /// Backend: `cpu`, `sim`, `qnn[:htp[:<socModel>]]`, `neuron`, or `sim:<profile>`.
    #[arg(long)]
    backend: String,
    /// SoC profile for `--backend sim` (a built-in name or a .toml file).
    #[arg(long)]
    soc: Option<String>,
    /// Write a report: `.json`, `.xml` (JUnit) or any other name for the text summary.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Exit code when cases fail.
pub const EXIT_FAILURES: u8 = 3;

/// Runs the command; returns whether every case passed or was skipped.
pub fn run(args: &ConformanceArgs) -> Result<bool, Box<dyn Error>> {
    let name = match (&args.soc, args.backend.as_str()) {
        (Some(soc), "sim") => format!("sim:{soc}"),
        (Some(_), other) => {
            return Err(format!("--soc applies to `--backend sim`, not `{other}`").into())
        }
        (None, other) => other.to_string(),
    };
    let choice = registry::npu_backend(&name)?;
    let bar = ProgressBar::new(all_cases().len() as u64);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("valid template"),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let report = run_suite(choice.backend.as_ref(), |r| {
        bar.set_message(r.case.clone());
        bar.inc(1);
    });
    bar.finish_and_clear();
    print!("{}", report.summary());
    if let Some(path) = &args.report {
        let text = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => report.to_json(),
            Some("xml") => report.to_junit(),
            _ => report.summary(),
        };
        std::fs::write(path, text)
            .map_err(|e| format!("cannot write report {}: {e}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(report.counts().failed == 0)
}
