//! `shadowattn`: shadowAttn sparse attention on NPU backends — run it, check a backend's
//! conformance, calibrate, and manage SoC profiles.
//!
//! Exit codes: 0 success, 1 error (the message on stderr starts with `error:`), 2 usage error,
//! 3 conformance failures.

mod backends;
mod bench;
mod budget;
mod calibrate;
mod conformance;
mod devices;
mod eval;
mod pilot;
mod plot;
mod prefill;
mod progress;
mod qnn_estimates;
mod run;
mod selection;
mod soak;
mod soc;
mod soc_derive;
mod soc_fit;
mod soc_numerics;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "shadowattn",
    version,
    about = "NPU-centric sparse attention for LLMs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one prefill attention chunk (synthetic data) with shadowAttn and dense; print accuracy and times.
    Run(run::RunArgs),
    /// Time to first token of a whole model's prefill on a simulated SoC, per attention strategy.
    Prefill(prefill::PrefillArgs),
    /// Perplexity of a real model (GGUF) with dense and shadowAttn sparse attention.
    Eval(eval::EvalArgs),
    /// List the backends that load here, with versions, or every path tried and why.
    Devices,
    /// Run the conformance suite on one backend.
    Conformance(conformance::ConformanceArgs),
    /// Write a calibration file (scales, bucket grid, per-head ratios, INT8 output range, budget
    /// rule) of a real model (GGUF) on a calibration text, or of a synthetic model.
    Calibrate(calibrate::CalibrateArgs),
    /// SoC profiles of the simulator.
    #[command(subcommand)]
    Soc(soc::SocCommand),
    /// Print Qualcomm's cost-model estimates beside the simulator's predictions (needs a QNN library).
    QnnEstimates(qnn_estimates::EstimateArgs),
    /// Time the CPU stage (top-k and sparse attention) beside dense attention on the paper's shapes.
    Bench(bench::BenchArgs),
    /// Run one NPU backend for a long time: repeated pilot executions and bank rebuilds.
    Soak(soak::SoakArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => run::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Prefill(args) => prefill::run(args),
        Command::Devices => {
            devices::run();
            Ok(())
        }
        Command::Conformance(args) => match conformance::run(args) {
            Ok(true) => Ok(()),
            Ok(false) => {
                shadowattn_qnn::loader::divert_buffered_output_to_stderr();
                return ExitCode::from(conformance::EXIT_FAILURES);
            }
            Err(e) => Err(e),
        },
        Command::Calibrate(args) => calibrate::run(args),
        Command::Soc(cmd) => soc::run(cmd),
        Command::QnnEstimates(args) => qnn_estimates::run(args),
        Command::Soak(args) => soak::run(args),
        Command::Bench(args) => bench::run(args),
    };
    // Our output is complete: what a vendor library buffered for stdout goes to stderr.
    shadowattn_qnn::loader::divert_buffered_output_to_stderr();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
