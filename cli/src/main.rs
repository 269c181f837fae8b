//! `shadowattn`: run shadowAttn prefill attention on a chosen backend pair and report accuracy
//! and (on the simulator) timing.

mod qnn_estimates;
mod registry;
mod run;

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
    /// Print Qualcomm's cost-model estimates beside the simulator's predictions (needs a QNN library).
    QnnEstimates(qnn_estimates::EstimateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => run::run(args),
        Command::QnnEstimates(args) => qnn_estimates::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
