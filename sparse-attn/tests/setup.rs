//! The one assembly point of the core: the pricing rule, the bank's cache and what happens
//! when the NPU cannot compile the bank; and the figures a chunk's report derives.

use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{track, AttentionShape, EventKind, FigureSource, NpuBackend, ProfileEvent};
use shadowattn_pipeline::{
    CostModel, DeviceModel, Launch, Placement, Plan, Step, Strategy, UnitWork,
};
use shadowattn_simulator::{SimBackend, SimulatedSoc, SocProfile};
use shadowattn_sparse_attn::calibration::{BucketGrid, Calibration, ModelShape, RatioConfig};
use shadowattn_sparse_attn::cost_table::CostTable;
use shadowattn_sparse_attn::pilot::PilotOutput;
use shadowattn_sparse_attn::setup::{
    BankOrigin, CoreSetup, MissingBank, PricingSource, TablePricing, FUSED_HEADS,
};
use shadowattn_sparse_attn::shadow::{ChunkMode, ChunkResult, ChunkTimes, HeadPath, HeadReport};
use shadowattn_sparse_attn::synthetic::{SyntheticChunk, SyntheticSpec};
use shadowattn_sparse_attn::SparseAttnError;
use shadowattn_test_support::counting_npu::CountingNpu;

const SOC: &str = "snapdragon-8-gen-3";
/// Query heads, KV heads, rows, keys, head dimension of every chunk here.
const SHAPE: (usize, usize, usize, usize, usize) = (4, 2, 16, 64, 32);

fn calibration() -> Calibration {
    let (q_heads, kv_heads, _, _, head_dim) = SHAPE;
    Calibration {
        format: shadowattn_sparse_attn::calibration::FORMAT.into(),
        version: shadowattn_sparse_attn::calibration::VERSION,
        grid: BucketGrid::new(0.02, 0.03, 1, 0.5).unwrap(),
        mean_q_scale: 0.02,
        mean_k_scale: 0.03,
        ratio_config: RatioConfig {
            global_ratio: 0.25,
            min_ratio: 0.25,
            ..RatioConfig::default()
        },
        ratios: vec![vec![0.25; q_heads]],
        model: ModelShape {
            name: "setup".into(),
            layers: 1,
            q_heads,
            kv_heads,
            head_dim,
        },
        pilot_acc_range: Some(20_000.0),
        budget: shadowattn_hal::BudgetRule::EVEN,
        center_keys: false,
    }
}

fn chunk() -> SyntheticChunk {
    let (q, kv, rows, keys, d) = SHAPE;
    SyntheticChunk::generate(SyntheticSpec {
        shape: AttentionShape::causal(q, kv, rows, keys, d),
        planted_fraction: 0.1,
        signal: 1.0,
        seed: 3,
    })
    .unwrap()
}

fn setup(npu: &dyn NpuBackend) -> CoreSetup<'_> {
    CoreSetup::new(npu, calibration(), SHAPE.2, SHAPE.3)
}

fn work() -> UnitWork {
    UnitWork {
        valid_keys: 1000,
        kept_pairs: 200,
    }
}

#[test]
fn a_device_model_prices_the_layer_and_the_core_plans_with_its_prices() {
    let profile = SocProfile::builtin(SOC).unwrap();
    let npu = SimBackend::new(profile.clone());
    let device = SimulatedSoc::new(profile);
    let cpu = CpuBackend::new();
    let placement = Placement {
        cluster: Some("prime".into()),
        cores: 1,
    };
    let core = setup(&npu)
        .device(Some(&device as &dyn DeviceModel), placement.clone())
        .build(&cpu)
        .unwrap();
    assert_eq!(
        core.pricing,
        PricingSource::Device {
            device: device.describe(),
            cluster: "prime".into()
        }
    );
    let prices = core.prices.as_ref().expect("the device priced the layer");
    let uniform = CostTable::uniform(&FUSED_HEADS);
    for f in FUSED_HEADS {
        let ns = prices.launch_ns(f).unwrap();
        assert_eq!(core.shadow.costs().launch_ns(f).unwrap(), ns);
        assert!(ns > 0.0 && ns != uniform.launch_ns(f).unwrap(), "{f}: {ns}");
    }
    let attention = core.shadow.costs().step_ns(Step::Attention, work());
    assert_eq!(attention, prices.step_ns(Step::Attention, work()));
    // The mid core is slower than the prime core: the placement reached the prices.
    let mid = setup(&npu)
        .device(Some(&device as &dyn DeviceModel), Placement::default())
        .build(&cpu)
        .unwrap();
    assert!(mid.shadow.costs().step_ns(Step::Attention, work()) > attention);
    // A cluster the device lacks is refused with its name.
    let e = setup(&npu)
        .device(
            Some(&device as &dyn DeviceModel),
            Placement {
                cluster: Some("little".into()),
                cores: 1,
            },
        )
        .build(&cpu)
        .unwrap_err();
    assert!(e.to_string().contains("no core cluster `little`"), "{e}");
}

#[test]
fn without_a_device_model_the_table_asked_for_prices_the_layer() {
    let cpu = CpuBackend::new();
    let core = setup(&cpu).build(&cpu).unwrap();
    assert_eq!(core.pricing, PricingSource::Uniform);
    assert!(core.prices.is_none());
    let uniform = CostTable::uniform(&FUSED_HEADS);
    for f in FUSED_HEADS {
        assert_eq!(
            core.shadow.costs().launch_ns(f).unwrap(),
            uniform.launch_ns(f).unwrap()
        );
    }
    let c = chunk();
    let measured = setup(&cpu)
        .table(TablePricing::Measured {
            sample: c.inputs(),
            layer: 0,
            runs: 2,
        })
        .build(&cpu)
        .unwrap();
    assert_eq!(measured.pricing, PricingSource::Measured { runs: 2 });
    assert_eq!(
        measured.pricing.to_string(),
        "measured here, median of 2 runs"
    );
    // Measured on this machine: not the uniform table's figures.
    assert_ne!(
        measured.shadow.costs().step_ns(Step::Attention, work()),
        uniform.step_ns(Step::Attention, work())
    );
}

#[test]
fn the_bank_cache_is_written_then_loaded_and_an_unwritable_one_is_an_error() {
    let cpu = CpuBackend::new();
    let dir = std::env::temp_dir().join(format!("shadowattn-setup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bank.bin");
    let _ = std::fs::remove_file(&path);
    let first = setup(&cpu).cache(Some(path.clone())).build(&cpu).unwrap();
    assert!(matches!(first.bank, BankOrigin::Compiled { ms } if ms >= 0.0));
    assert!(path.exists());
    let second = setup(&cpu).cache(Some(path.clone())).build(&cpu).unwrap();
    assert_eq!(second.bank, BankOrigin::Loaded);
    // Another bank (another output form) is not taken from the file: compiled again.
    let other = setup(&cpu)
        .pilot_output(PilotOutput::Int32)
        .cache(Some(path.clone()))
        .build(&cpu)
        .unwrap();
    assert!(matches!(other.bank, BankOrigin::Recompiled { .. }));
    std::fs::remove_dir_all(&dir).unwrap();

    let missing_dir = dir.join("no/such/dir/bank.bin");
    for policy in [MissingBank::Fail, MissingBank::RunDense] {
        let e = setup(&cpu)
            .cache(Some(missing_dir.clone()))
            .missing_bank(policy)
            .build(&cpu)
            .unwrap_err();
        assert!(matches!(e, SparseAttnError::Io { .. }), "{e:?}");
        assert!(e.to_string().contains("bank cache"), "{e}");
    }
}

#[test]
fn a_damaged_or_foreign_bank_cache_is_compiled_again_with_a_warning_naming_it() {
    let dir = std::env::temp_dir().join(format!("shadowattn-refused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bank.bin");
    let cpu = CpuBackend::new();
    setup(&cpu).cache(Some(path.clone())).build(&cpu).unwrap();
    let good = std::fs::read(&path).unwrap();
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let foreign = {
        let other = CountingNpu::named(CpuBackend::new(), "other");
        let _ = std::fs::remove_file(&path);
        setup(&other).cache(Some(path.clone())).build(&cpu).unwrap();
        std::fs::read(&path).unwrap()
    };
    for (what, bytes, reason) in [
        ("truncated", &good[..good.len() / 2], "truncated"),
        ("damaged", &flipped[..], "digest"),
        ("foreign", &foreign[..], "written by `other "),
    ] {
        std::fs::write(&path, bytes).unwrap();
        let npu = CountingNpu::new(CpuBackend::new());
        let core = setup(&npu).cache(Some(path.clone())).build(&cpu).unwrap();
        assert_eq!(npu.deserializes(), 0, "{what}: parsed");
        let BankOrigin::Recompiled { path: named, .. } = &core.bank else {
            panic!("{what}: {:?}", core.bank);
        };
        assert_eq!(named, &path);
        let warning = core.bank.warning().unwrap();
        assert!(warning.contains(&path.display().to_string()), "{warning}");
        assert!(warning.contains(reason), "{what}: {warning}");
        // The file was written again, whole: the next start loads it.
        assert_eq!(std::fs::read(&path).unwrap(), good, "{what}");
        let again = setup(&npu).cache(Some(path.clone())).build(&cpu).unwrap();
        assert_eq!(again.bank.warning(), None);
        assert_eq!(again.bank, BankOrigin::Loaded);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bank_the_npu_cannot_compile_fails_or_runs_dense_as_asked() {
    // HTP (and its simulator) has no INT32 MatMul output: the INT32 pilot does not compile.
    let npu = SimBackend::builtin(SOC).unwrap();
    let cpu = CpuBackend::new();
    let int32 = || setup(&npu).pilot_output(PilotOutput::Int32);
    assert!(int32().build(&cpu).is_err());
    let mut core = int32()
        .missing_bank(MissingBank::RunDense)
        .build(&cpu)
        .unwrap();
    assert_eq!(core.bank, BankOrigin::Missing);
    assert!(core.shadow.bank().is_none());
    let c = chunk();
    let r = core.shadow.run_chunk(0, c.inputs()).unwrap();
    assert!(
        matches!(r.mode, ChunkMode::DenseNoBank { .. }),
        "{:?}",
        r.mode
    );
    assert!(
        r.fallback().unwrap().contains("could not compile"),
        "{:?}",
        r.fallback()
    );
    // The INT8 pilot of the same calibration compiles and runs sparse.
    let mut sparse = setup(&npu).build(&cpu).unwrap();
    let r = sparse.shadow.run_chunk(0, c.inputs()).unwrap();
    assert_eq!(r.mode, ChunkMode::Sparse);
}

/// One event of `kind` on `track` from `source`.
fn event(
    kind: EventKind,
    source: FigureSource,
    track: &str,
    start_ns: u64,
    duration_ns: u64,
) -> ProfileEvent {
    ProfileEvent {
        name: "e".into(),
        kind,
        track: track.into(),
        start_ns,
        duration_ns,
        cycles: None,
        source,
    }
}

#[test]
fn a_chunks_times_count_each_figure_once_and_nothing_else() {
    use EventKind::{Compile, ComputeStage, Launch as LaunchEvent};
    use FigureSource::{Measured, Simulated};
    let head = |head: usize, ratio: f32| HeadReport {
        head,
        q_scale: 0.02,
        k_scale: 0.03,
        ratio,
        kept: 10,
        path: HeadPath::Sparse { bucket: 0 },
    };
    let result = ChunkResult {
        output: vec![],
        selections: vec![],
        heads: vec![head(0, 0.1), head(1, 0.3), head(2, 0.2)],
        launches: vec![Launch::new(0, vec![0, 1]), Launch::new(1, vec![2])],
        unit: shadowattn_sparse_attn::pilot::PilotUnit::Head,
        plan: Some(Plan {
            launch_order: vec![0, 1],
            unit_order: vec![0, 1, 2],
            projected_ns: 1234.6,
            strategy: Strategy::Fifo,
        }),
        mode: ChunkMode::Sparse,
        failures: vec![],
        events: vec![
            // Simulated launches on the NPU's track count; its units, measured launches and
            // compiles do not.
            event(LaunchEvent, Simulated, track::NPU, 0, 100),
            event(LaunchEvent, Simulated, track::NPU, 100, 40),
            event(LaunchEvent, Simulated, track::MATRIX, 0, 50),
            event(LaunchEvent, Measured, track::NPU, 0, 70),
            event(Compile, Simulated, track::NPU, 0, 30),
            // The CPU workers' steps count once each (a shared selection reports them per head);
            // the launcher's and the NPU's do not.
            event(ComputeStage, Measured, &track::cpu(0), 0, 10),
            event(ComputeStage, Measured, &track::cpu(0), 0, 10),
            event(ComputeStage, Measured, &track::cpu(0), 10, 5),
            event(ComputeStage, Measured, &track::cpu(1), 0, 20),
            event(ComputeStage, Measured, track::LAUNCHER, 0, 1000),
            event(ComputeStage, Simulated, track::NPU, 0, 2000),
            event(LaunchEvent, Measured, &track::cpu(0), 0, 3000),
        ],
    };
    assert_eq!(
        result.times(77),
        ChunkTimes {
            measured_ns: 77,
            projected_ns: 1235,
            simulated_npu_ns: 140,
            cpu_stage_ns: 35,
        }
    );
    assert!(
        (result.mean_ratio() - 0.2).abs() < 1e-7,
        "{}",
        result.mean_ratio()
    );
    assert_eq!(result.launch_sizes(), vec![2, 1]);
    let dense = ChunkResult {
        plan: None,
        ..result
    };
    assert_eq!(dense.times(0).projected_ns, 0);
}
