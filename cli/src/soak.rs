//! `shadowattn soak`: runs one NPU backend for a long time (repeated pilot executions and bank
//! rebuilds) and checks that every execution gives the first one's bytes; `ci/leak-check.sh`
//! runs it under valgrind.

use clap::Args;
use shadowattn_conformance::seeded::seeded_inputs;
use shadowattn_hal::{AttentionShape, HostTensor};
use shadowattn_sparse_attn::calibration::BucketGrid;
use shadowattn_sparse_attn::pilot::PilotOutput;
use shadowattn_sparse_attn::setup::BankSetup;
use std::error::Error;
use std::time::Instant;

use crate::backends::{open_options, DEFAULT_NPU};
use shadowattn_registry::NpuSpec;

/// Options of `shadowattn soak`.
#[derive(Args)]
pub struct SoakArgs {
    /// NPU graph backend (as for `run --npu`).
    #[arg(long, default_value = DEFAULT_NPU)]
    npu: NpuSpec,
    /// Executions of one compiled INT8 pilot graph.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    executions: u64,
    /// Times the whole graph bank is compiled and dropped.
    #[arg(long, default_value_t = 3)]
    bank_rebuilds: u64,
    /// Query rows of the pilot graphs.
    #[arg(long, default_value_t = 16)]
    q_len: usize,
    /// Keys of the pilot graphs.
    #[arg(long, default_value_t = 64)]
    kv_len: usize,
    /// Head dimension of the pilot graphs.
    #[arg(long, default_value_t = 32)]
    head_dim: usize,
}

/// A repeated execution that did not reproduce the first one's output.
#[derive(Debug, thiserror::Error)]
#[error("execution {execution} of `{graph}` on {backend} differs from the first execution in {differing} of {total} output bytes")]
pub struct NotReproducible {
    /// Index of the execution, from 0.
    pub execution: u64,
    /// Graph name.
    pub graph: String,
    /// Backend name.
    pub backend: String,
    /// Output bytes that differ.
    pub differing: usize,
    /// Output bytes.
    pub total: usize,
}

/// Runs the command.
pub fn run(args: &SoakArgs) -> Result<(), Box<dyn Error>> {
    // The pilot graphs have the score shape of a two-head chunk: refuse sizes no run could hold.
    AttentionShape::causal(2, 2, args.q_len, args.kv_len, args.head_dim).validate()?;
    let choice = args.npu.open(&open_options())?;
    let npu = choice.backend.as_ref();
    println!("backend: {} {}", npu.name(), npu.version());
    let grid = BucketGrid::new(0.02, 0.03, 1, 0.5)?;
    // Launches of one and two heads: every bucket twice, a small bank to rebuild many times.
    let bank = BankSetup::new(
        npu,
        grid.clone(),
        args.q_len,
        args.kv_len,
        args.head_dim,
        PilotOutput::Int8 {
            acc_range: 20_000.0,
        },
    )
    .fused(&[1, 2]);

    let start = Instant::now();
    let mut graphs = 0;
    for _ in 0..args.bank_rebuilds {
        let (built, _) = bank.build()?;
        graphs += built.len();
    }
    let rebuild_time = start.elapsed();
    println!(
        "bank rebuilds: {} ({graphs} graphs compiled and dropped) in {:.2} s",
        args.bank_rebuilds,
        rebuild_time.as_secs_f64()
    );

    let pilot = bank.spec().pilot(&grid, grid.len() / 2, 2).graph()?;
    let mut compiled = npu.compile(&pilot)?;
    let inputs = seeded_inputs(&pilot, 0x5eed);
    let mut outputs: Vec<HostTensor> = pilot
        .output_descs()
        .map(|d| HostTensor::zeros(d.clone()))
        .collect::<Result<_, _>>()?;
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    let mut first: Option<Vec<Vec<u8>>> = None;
    let start = Instant::now();
    for execution in 0..args.executions {
        {
            let mut out_views: Vec<_> = outputs.iter_mut().map(|t| t.view_mut()).collect();
            compiled.execute(&views, &mut out_views)?;
        }
        match &first {
            None => first = Some(outputs.iter().map(|t| t.bytes().to_vec()).collect()),
            Some(want) => {
                let differing: usize = want
                    .iter()
                    .zip(&outputs)
                    .map(|(w, g)| w.iter().zip(g.bytes()).filter(|(a, b)| a != b).count())
                    .sum();
                if differing > 0 {
                    return Err(Box::new(NotReproducible {
                        execution,
                        graph: pilot.name().to_string(),
                        backend: npu.name().to_string(),
                        differing,
                        total: want.iter().map(Vec::len).sum(),
                    }));
                }
            }
        }
    }
    let exec_time = start.elapsed();
    println!(
        "executions: {} of `{}`, all identical to the first, in {:.2} s ({:.1} µs each)",
        args.executions,
        pilot.name(),
        exec_time.as_secs_f64(),
        exec_time.as_secs_f64() * 1e6 / args.executions.max(1) as f64
    );
    Ok(())
}
