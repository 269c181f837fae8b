//! `shadowattn conformance`: the conformance suite on one backend, with a report.

use crate::backends::open_options;
use crate::progress::progress_bar;
use clap::Args;
use shadowattn_conformance::{
    all_cases, compute_cases, run_compute_suite, run_suite, Expectations, Report, Suite,
};
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
    /// Judge the results by this expectation file instead of the backend's built-in one (one
    /// file per suite; repeat for `cpu`, which runs both). A backend with neither must pass
    /// every case.
    #[arg(long)]
    expectations: Vec<PathBuf>,
    /// Write the expectation files this run's results imply (every unsupported case with the
    /// backend's reason, every failure as a known failure) under this folder, laid out as
    /// `conformance-tests/expectations/`, to review and keep for a new backend.
    #[arg(long, value_name = "DIR")]
    write_expectations: Option<PathBuf>,
}

/// Exit code when cases fail.
pub const EXIT_FAILURES: u8 = 3;

/// The given expectation files, parsed, with their paths.
fn read_files(paths: &[PathBuf]) -> Result<Vec<(Expectations, String)>, Box<dyn Error>> {
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read expectation file {}: {e}", path.display()))?;
            let origin = path.display().to_string();
            Ok((Expectations::parse(&text, &origin)?, origin))
        })
        .collect()
}

/// Judges `report` (of `suite`) by the given file of that suite, else the built-in one.
fn judge(
    report: &mut Report,
    suite: Suite,
    name: &str,
    given: &[(Expectations, String)],
) -> Result<(), Box<dyn Error>> {
    // The report carries the name the user gave (`qnn:htp:52`), which the files are keyed by.
    report.backend = name.to_string();
    if let Some((e, origin)) = given.iter().find(|(e, _)| e.suite == suite) {
        report.judge(e, origin)?;
    } else if let Some((e, path)) = Expectations::builtin(suite, name) {
        report.judge(
            &e,
            &format!("built-in conformance-tests/expectations/{path}"),
        )?;
    }
    Ok(())
}

/// Runs every suite the backend takes part in; one report of all their results.
fn run_suites(args: &ConformanceArgs) -> Result<Report, Box<dyn Error>> {
    let spec = &args.backend;
    let given = read_files(&args.expectations)?;
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
    let name = spec.to_string();
    let mut reports = Vec::new();
    if let Some(npu) = &npu {
        let mut r = run_suite(npu.backend.as_ref(), tick);
        judge(&mut r, Suite::Npu, &name, &given)?;
        reports.push(r);
    }
    if let Some(compute) = &compute {
        let mut r = run_compute_suite(compute.as_ref(), tick);
        judge(&mut r, Suite::Compute, &name, &given)?;
        reports.push(r);
    }
    if let Some((e, origin)) = given.iter().find(|(e, _)| {
        !reports
            .iter()
            .any(|r| r.results.iter().any(|c| c.suite == e.suite))
    }) {
        return Err(format!(
            "expectation file {origin} is for the {} suite, which `{name}` does not run",
            e.suite.name()
        )
        .into());
    }
    bar.finish_and_clear();
    let mut report = reports.remove(0);
    for other in reports {
        report.version = format!("{}; {}", report.version, other.version);
        report.expectations.extend(other.expectations);
        report.results.extend(other.results);
    }
    report.backend = name;
    Ok(report)
}

/// Writes the expectation files the results imply under `dir`, one per suite run.
fn write_expectations(report: &Report, dir: &std::path::Path) -> Result<(), Box<dyn Error>> {
    for suite in [Suite::Npu, Suite::Compute] {
        let results: Vec<_> = report
            .results
            .iter()
            .filter(|r| r.suite == suite)
            .cloned()
            .collect();
        if results.is_empty() {
            continue;
        }
        let file = Expectations::observed(suite, &report.backend, &report.version, &results);
        let path = dir.join(Expectations::path_of(suite, &report.backend));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
            std::fs::write(&path, file.to_toml())
        };
        write().map_err(|e| format!("cannot write expectation file {}: {e}", path.display()))?;
        println!("expectations written: {}", path.display());
    }
    Ok(())
}

/// Runs the command; returns whether every verdict is one the expectations allow.
pub fn run(args: &ConformanceArgs) -> Result<bool, Box<dyn Error>> {
    let report = run_suites(args)?;
    print!("{}", report.summary());
    if let Some(path) = &args.write_expectations {
        write_expectations(&report, path)?;
    }
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
    Ok(report.conforms())
}
