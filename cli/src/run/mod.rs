//! `shadowattn run`: one synthetic prefill chunk through the whole shadowAttn flow.
//!
//! The command is four steps: open a [`session::Session`] (backends, chunk, calibration, the
//! core), run the chunk into a [`report::RunReport`] value (with the layer simulated on the
//! device, [`simulated`], when the NPU has a device model), write the traces asked for, and
//! print the report.

mod report;
mod session;
mod simulated;

use crate::backends::DEFAULT_NPU;
use crate::pilot::PilotArg;
use crate::selection::SelectionArg;
use clap::{Args, ValueEnum};
use shadowattn_registry::{ComputeSpec, NpuSpec};
use shadowattn_simulator::LaunchPath;
use std::error::Error;
use std::path::PathBuf;

type Res<T> = Result<T, Box<dyn Error>>;

/// Pipeline order on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScheduleArg {
    /// The planner's two-level greedy order (FIFO when greedy is not better).
    Planned,
    /// Launches by bucket, heads by index.
    Fifo,
}

/// Output form of the pilot graph.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PilotOutputArg {
    /// Exact INT32 accumulators.
    I32,
    /// Scores requantized to INT8 with a static scale from a sample chunk (what HTP supports).
    I8,
}

/// Options of `shadowattn run`.
#[derive(Args)]
pub struct RunArgs {
    /// NPU graph backend that runs the INT8 pilot (`shadowattn devices` lists them; the
    /// grammar: `cpu`, `sim[:<soc>|:<profile.toml>]`, `qnn[:htp[:<socModel>]]`, `neuron`).
    #[arg(long, default_value = DEFAULT_NPU)]
    npu: NpuSpec,
    /// Compute backend for quantization, top-k and attention (`cpu`,
    /// `cpu-fast[:<threads>][:f16]`, `opencl[:<platform>[:<device>]][:f16]`).
    #[arg(long, default_value = "cpu-fast")]
    compute: ComputeSpec,
    /// Query heads (default: the paper's Qwen2-1.5B-like layer, 12 query / 2 KV heads, d 128).
    #[arg(long, default_value_t = 12)]
    q_heads: usize,
    /// Key/value heads (must divide the query heads).
    #[arg(long, default_value_t = 2)]
    kv_heads: usize,
    /// Query rows in the chunk.
    #[arg(long, default_value_t = 128)]
    q_len: usize,
    /// Keys (prefix plus chunk).
    #[arg(long, default_value_t = 2048)]
    kv_len: usize,
    /// Head dimension.
    #[arg(long, default_value_t = 128)]
    head_dim: usize,
    /// Which query rows and heads share a key set: `group` (the heads of a GQA group share each
    /// row's set) or `row` (a set per head and row).
    #[arg(long, value_enum, default_value_t = SelectionArg::Group)]
    selection: SelectionArg,
    /// Which pilot ranks the keys: `group` (a launch unit per GQA group, K sent once, the
    /// group's ranking summed on the NPU), `group-cpu` (summed on the CPU), `head` (a unit per
    /// query head), or `auto` (`group` where the NPU supports it and the groups share their
    /// selection, else `group-cpu`, else `head`).
    #[arg(long, value_enum, default_value_t = PilotArg::Auto)]
    pilot: PilotArg,
    /// Fraction of each row's valid keys that is kept, in (0, 1] (ignored with --calibration).
    #[arg(long, default_value_t = 0.2)]
    ratio: f32,
    /// A calibration file (`shadowattn-calibration` JSON) for the chunk's model shape.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Layer of the calibration whose ratios are used.
    #[arg(long, default_value_t = 0)]
    layer: usize,
    /// Minimum number of keys per row.
    #[arg(long, default_value_t = 1)]
    min_keys: usize,
    /// Fraction of keys planted as important in the synthetic data.
    #[arg(long, default_value_t = 0.1)]
    planted: f32,
    /// Random seed of the synthetic data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads for top-k and sparse attention on this machine.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Pipeline order.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Planned)]
    schedule: ScheduleArg,
    /// CPU cores of the SoC given to top-k and sparse attention in the simulated timing.
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Which core cluster of the SoC profile runs them (`mid`, `prime`).
    #[arg(long, default_value = "mid")]
    core: String,
    /// Write a Perfetto / chrome://tracing timeline of the simulated layer to this file.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Write a Perfetto / chrome://tracing timeline of the compute backend's measured commands
    /// (for `--compute opencl`: queue waits, transfers and kernels) to this file.
    #[arg(long)]
    compute_trace: Option<PathBuf>,
    /// How the simulated host drives the NPU's graphs (the NPU-only baselines): `qnn-copy`,
    /// `qnn-shared` or `fastrpc`; default the SoC profile's.
    #[arg(long)]
    launch_path: Option<LaunchPath>,
    /// How it drives the pilot's launches, where that differs from --launch-path.
    #[arg(long)]
    pilot_path: Option<LaunchPath>,
    /// Pilot output: `i8` (default: NPUs requantize integer MatMuls to 8 bits), or `i32` (default
    /// for `--npu cpu`).
    #[arg(long, value_enum)]
    pilot_output: Option<PilotOutputArg>,
    /// How each selecting unit's keys are spread over the chunk's rows (default the
    /// calibration's rule).
    #[command(flatten)]
    budget: crate::budget::BudgetArgs,
}

/// Runs the command.
pub fn run(args: &RunArgs) -> Res<()> {
    let session = session::Session::open(args)?;
    let report = session.run(args)?;
    report.write_traces(args)?;
    report.print(args);
    Ok(())
}
