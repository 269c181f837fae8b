//! What `run` works on: the opened backends, the synthetic chunk, its calibration and the core
//! assembled from them.

use super::report::{Accuracy, BankLine, RunReport, Timing};
use super::simulated::SimulatedLayer;
use super::{PilotOutputArg, Res, RunArgs, ScheduleArg};
use crate::backends::open_options;
use shadowattn_hal::{AttentionShape, ComputeBackend, DType, NpuBackend, OpKind};
use shadowattn_pipeline::{DeviceModel, LayerPrices, Placement};
use shadowattn_registry::{NpuSpec, OpenOptions, OpenedNpu};
use shadowattn_simulator::LaunchChoice;
use shadowattn_sparse_attn::bank::GraphBank;
use shadowattn_sparse_attn::calibration::{Calibration, LayerSample, ModelShape, RatioConfig};
use shadowattn_sparse_attn::metrics::evaluate;
use shadowattn_sparse_attn::pilot::{int8_accumulator_range, PilotOutput};
use shadowattn_sparse_attn::setup::{
    device_prices, selection_sharing, BankOrigin, CoreSetup, TablePricing,
};
use shadowattn_sparse_attn::shadow::ChunkResult;
use shadowattn_sparse_attn::shadow::{Schedule, ShadowConfig};
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};
use std::sync::Arc;
use std::time::Instant;

/// Runs of each figure when the stage costs are measured here.
const MEASURED_RUNS: usize = 5;

/// The backends, the chunk and its calibration.
pub(super) struct Session {
    npu: OpenedNpu,
    compute: Box<dyn ComputeBackend>,
    shape: AttentionShape,
    chunk: SyntheticChunk,
    calibration: Calibration,
}

impl Session {
    /// Opens the backends and makes the chunk and its calibration.
    pub(super) fn open(args: &RunArgs) -> Res<Self> {
        if !matches!(args.npu, NpuSpec::Sim(_))
            && (args.launch_path.is_some() || args.pilot_path.is_some())
        {
            return Err(format!(
                "--launch-path and --pilot-path price a simulated SoC (--npu sim:<soc>), not `{}`",
                args.npu
            )
            .into());
        }
        let options = OpenOptions {
            sim_launch: LaunchChoice {
                graphs: args.launch_path,
                pilot: args.pilot_path,
            },
            ..open_options()
        };
        let npu = args.npu.open(&options)?;
        match &npu.device {
            Some(device) => {
                device
                    .cluster(&placement(args))
                    .map_err(|e| format!("--core {} --cores {}: {e}", args.core, args.cores))?;
            }
            None if args.trace.is_some() => {
                return Err(
                    "--trace needs a simulator NPU backend (sim:<soc>): the timeline is simulated"
                        .into(),
                )
            }
            None => {}
        }
        let compute = args.compute.open(&open_options())?;
        let shape = AttentionShape::causal(
            args.q_heads,
            args.kv_heads,
            args.q_len,
            args.kv_len,
            args.head_dim,
        );
        shape.validate()?;
        let mut calibration = match &args.calibration {
            Some(path) => chunk_calibration(path, args)?,
            None => synthetic_calibration(args)?,
        };
        calibration.budget = args.budget.rule_over(calibration.budget)?;
        calibration.layer_ratios(args.layer)?;
        let chunk = SyntheticChunk::generate(synthetic_spec(args, shape, args.seed))?;
        Ok(Session {
            npu,
            compute,
            shape,
            chunk,
            calibration,
        })
    }

    /// Runs the chunk (once to warm every graph it launches, then the reported run), dense
    /// attention beside it, and the layer on the device when the NPU has a device model.
    pub(super) fn run(self, args: &RunArgs) -> Res<RunReport> {
        let npu: &dyn NpuBackend = self.npu.backend.as_ref();
        let compute: &dyn ComputeBackend = self.compute.as_ref();
        let device: Option<&dyn DeviceModel> = self.npu.device.as_deref();
        let inputs = self.chunk.inputs();
        let grid_len = self.calibration.grid.len();
        let core = CoreSetup::new(npu, self.calibration.clone(), args.q_len, args.kv_len)
            .pilot_output(pilot_output(args, npu, &self.shape)?)
            .config(config(args))
            .pilot(args.pilot.kind())
            .device(device, placement(args))
            .table(TablePricing::Measured {
                sample: inputs,
                layer: args.layer,
                runs: MEASURED_RUNS,
            })
            .build(compute)?;
        let bank = core.shadow.bank().ok_or("the graph bank is missing")?;
        let bank_line = BankLine {
            graphs: bank.len(),
            buckets: grid_len,
            fused: bank.fused_counts().to_vec(),
            unit: bank.spec().unit,
            ms: match core.bank {
                BankOrigin::Compiled { ms } | BankOrigin::Recompiled { ms, .. } => ms,
                BankOrigin::Loaded | BankOrigin::Missing => 0.0,
            },
        };
        let sim_compile_ms = SimulatedLayer::compile_ms(bank.compile_events());
        let (bank_spec, bank_grid) = (bank.spec().clone(), bank.grid().clone());
        let mut shadow = core.shadow;
        shadow.run_chunk(args.layer, inputs)?;
        compute.take_events();
        let t = Instant::now();
        let result = shadow.run_chunk(args.layer, inputs)?;
        let chunk_ms = t.elapsed().as_secs_f64() * 1e3;
        let compute_events = compute.take_events();
        let t = Instant::now();
        let mut dense = vec![0.0; inputs.output_len()];
        compute.dense_attention(inputs, &mut dense)?;
        let dense_ms = t.elapsed().as_secs_f64() * 1e3;
        let accuracy = evaluate(inputs, &result.selections, &result.output, &dense, compute)?;
        let plan = result.plan.clone().ok_or("the chunk ran dense")?;
        let price = |device: &dyn DeviceModel, prices: &Arc<dyn LayerPrices>| {
            SimulatedLayer::price(
                device,
                prices,
                &result,
                &plan,
                &self.shape,
                &args.core,
                args.cores,
                sim_compile_ms,
            )
        };
        let simulated = match (device, &core.prices) {
            (Some(device), Some(prices)) => Some(price(device, prices)?),
            _ => None,
        };
        let simulated = match (simulated, &args.trace) {
            (Some(layer), Some(_)) => Some(layer.with_trace(&result)),
            (layer, _) => layer,
        };
        let mut simulated_ends = Vec::new();
        if let (Some(device), Some(_)) = (device, &simulated) {
            let sharing = selection_sharing(
                bank_spec.unit,
                args.selection.granularity(),
                self.shape.q_heads,
                self.shape.kv_heads,
            );
            for (name, end) in device.ends() {
                let prices = device_prices(
                    end.as_ref(),
                    &placement(args),
                    (&bank_spec, &bank_grid),
                    sharing,
                    self.calibration.budget.split,
                )?;
                simulated_ends.push((name, price(end.as_ref(), &prices)?));
            }
        }
        let stage_ms = result.times(0).cpu_stage_ns as f64 / 1e6;
        let host_io = host_io(shadow.bank().ok_or("the graph bank is missing")?, &result);
        Ok(RunReport {
            npu: format!("{} {}", npu.name(), npu.version()),
            compute: compute.name().to_string(),
            compute_events,
            shape: self.shape,
            bank: bank_line,
            launch_sizes: result.launch_sizes(),
            budget: crate::budget::describe(&self.calibration.budget),
            host_io,
            pricing: core.pricing.to_string(),
            plan,
            mean_ratio: result.mean_ratio(),
            accuracy: Accuracy::of(&accuracy),
            fallback: result.fallback(),
            timing: Timing {
                chunk_ms,
                dense_ms,
                stage_ms,
            },
            simulated,
            simulated_ends,
        })
    }
}

/// Bytes the chunk's launches moved between host and NPU: (inputs, outputs), from the shapes of
/// the graphs they ran.
fn host_io(bank: &GraphBank, result: &ChunkResult) -> (u64, u64) {
    let bytes = |descs: &mut dyn Iterator<Item = &shadowattn_hal::TensorDesc>| -> u64 {
        descs.map(|d| d.size_bytes() as u64).sum()
    };
    result
        .launches
        .iter()
        .filter_map(|l| bank.graph(l.bucket, l.units.len()))
        .fold((0, 0), |(i, o), g| {
            let g = g.graph();
            (
                i + bytes(&mut g.input_descs()),
                o + bytes(&mut g.output_descs()),
            )
        })
}

/// Where the device runs the CPU steps in the simulated timing.
fn placement(args: &RunArgs) -> Placement {
    Placement {
        cluster: Some(args.core.clone()),
        cores: args.cores,
    }
}

/// The core's online settings.
fn config(args: &RunArgs) -> ShadowConfig {
    ShadowConfig {
        min_keys: args.min_keys,
        granularity: args.selection.granularity(),
        cpu_workers: args.workers,
        schedule: match args.schedule {
            ScheduleArg::Planned => Schedule::Planned,
            ScheduleArg::Fifo => Schedule::Fifo,
        },
        ..ShadowConfig::default()
    }
}

/// The synthetic data of `shape` under `seed`.
fn synthetic_spec(args: &RunArgs, shape: AttentionShape, seed: u64) -> SyntheticSpec {
    SyntheticSpec {
        shape,
        planted_fraction: args.planted,
        signal: 1.0,
        seed,
    }
}

/// A calibration file whose heads are those of the chunk `run` simulates (`--q-heads`,
/// `--kv-heads`, `--head-dim`), and which has the layer `--layer`.
fn chunk_calibration(path: &std::path::Path, args: &RunArgs) -> Res<Calibration> {
    let calibration = Calibration::load(path, None)?;
    let m = &calibration.model;
    if [m.q_heads, m.kv_heads, m.head_dim] != [args.q_heads, args.kv_heads, args.head_dim] {
        return Err(format!(
            "{}: calibrates `{}` with {} query / {} KV heads of head_dim {}, the chunk `run` simulates has {} / {} heads of {}: run it with --q-heads {} --kv-heads {} --head-dim {}",
            path.display(),
            m.name,
            m.q_heads,
            m.kv_heads,
            m.head_dim,
            args.q_heads,
            args.kv_heads,
            args.head_dim,
            m.q_heads,
            m.kv_heads,
            m.head_dim
        )
        .into());
    }
    if args.layer >= m.layers {
        return Err(format!(
            "--layer {}: {} calibrates layers 0 to {} of `{}`",
            args.layer,
            path.display(),
            m.layers - 1,
            m.name
        )
        .into());
    }
    Ok(calibration)
}

/// A calibration from synthetic samples (other seeds than the evaluated chunk), uniform ratios.
fn synthetic_calibration(args: &RunArgs) -> Res<Calibration> {
    let model = ModelShape {
        name: "synthetic".into(),
        layers: 1,
        q_heads: args.q_heads,
        kv_heads: args.kv_heads,
        head_dim: args.head_dim,
    };
    let shape = AttentionShape::causal(
        args.q_heads,
        args.kv_heads,
        args.q_len,
        args.q_len,
        args.head_dim,
    );
    let chunks: Vec<SyntheticChunk> = (0..4)
        .map(|i| {
            SyntheticChunk::generate(synthetic_spec(
                args,
                shape,
                args.seed.wrapping_add(1000 + i),
            ))
        })
        .collect::<Result<_, _>>()?;
    let samples: Vec<LayerSample<'_>> = chunks
        .iter()
        .map(|c| LayerSample {
            layer: 0,
            q: &c.q,
            k: &c.k,
            rows: args.q_len,
        })
        .collect();
    let ratio_config = RatioConfig {
        global_ratio: args.ratio,
        min_ratio: args.ratio,
        importance_clamp: (1e-6, 1e6),
    };
    let importance = vec![vec![1.0; args.q_heads]];
    Ok(Calibration::calibrate(
        model,
        &samples,
        &importance,
        ratio_config,
        1,
        0.5,
    )?)
}

/// The pilot's output form, with an INT8 scale from a sample chunk (another seed) when needed.
fn pilot_output(args: &RunArgs, npu: &dyn NpuBackend, shape: &AttentionShape) -> Res<PilotOutput> {
    // NPUs requantize integer MatMuls to 8 bits (HTP has no INT32 output), and the simulator
    // models them; only the golden CPU backend keeps exact INT32 scores by default.
    let choice = args.pilot_output.unwrap_or(match args.npu {
        NpuSpec::Cpu => PilotOutputArg::I32,
        _ => PilotOutputArg::I8,
    });
    Ok(match choice {
        PilotOutputArg::I32 => {
            if !npu
                .capabilities()
                .supports(OpKind::MatMul, DType::I8, DType::I32)
            {
                return Err(format!(
                    "{} has no INT32 output for an INT8 MatMul (its capabilities): use --pilot-output i8",
                    npu.name()
                )
                .into());
            }
            PilotOutput::Int32
        }
        PilotOutputArg::I8 => {
            let sample = SyntheticChunk::generate(synthetic_spec(
                args,
                *shape,
                args.seed.wrapping_add(2000),
            ))?;
            PilotOutput::Int8 {
                acc_range: int8_accumulator_range(sample.inputs())?,
            }
        }
    })
}
