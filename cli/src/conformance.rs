//! `shadowattn conformance`: the conformance suite on one backend, with a report.

use crate::backends::open_options;
use crate::progress::progress_bar;
use clap::Args;
use shadowattn_conformance::{all_cases, compute_cases, run_compute_suite, run_suite, Report};
use shadowattn_registry::BackendSpec;
use std::error::Error;
use std::path::PathBuf;

/// Options of `shadowattn conformance`.
#[derive(Args)]
pub struct ConformanceArgs {
    /// Any backend: an NPU backend runs the graph cases, a compute backend the kernel cases,
    /// `cpu` both (`cpu`, `sim[:<soc>|:<profile.toml>]`, `qnn[:htp[:<socModel>]]`, `neuron`,
    /// `cpu-fast[:<threads>][:f16]`, `opencl[:<platform>[:<device>]][:f16]`).
    #[arg(long)]
    backend: BackendSpec,
    /// Write a report: `.json`, `.xml` (JUnit) or any other name for the text summary.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Exit code when cases fail.
pub const EXIT_FAILURES: u8 = 3;

/// Runs every suite the backend takes part in; one report of all their results.
fn run_suites(spec: &BackendSpec) -> Result<Report, Box<dyn Error>> {
    let npu = spec.npu().map(|s| s.open(&open_options())).transpose()?;
    let compute = spec
        .compute()
        .map(|s| s.open(&open_options()))
        .transpose()?;
    let cases = npu.as_ref().map_or(0, |_| all_cases().len())
        + compute.as_ref().map_or(0, |_| compute_cases().len());
    let bar = progress_bar(cases);
    let tick = |r: &shadowattn_conformance::CaseResult| {
        bar.set_message(r.case.clone());
        bar.inc(1);
    };
    let mut reports = Vec::new();
    if let Some(npu) = &npu {
        reports.push(run_suite(npu.backend.as_ref(), tick));
    }
    if let Some(compute) = &compute {
        reports.push(run_compute_suite(compute.as_ref(), tick));
    }
    bar.finish_and_clear();
    let mut report = reports.remove(0);
    for other in reports {
        report.version = format!("{}; {}", report.version, other.version);
        report.results.extend(other.results);
    }
    report.backend = spec.to_string();
    Ok(report)
}

/// Runs the command; returns whether every case passed or was skipped.
pub fn run(args: &ConformanceArgs) -> Result<bool, Box<dyn Error>> {
    let report = run_suites(&args.backend)?;
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
