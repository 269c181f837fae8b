//! Simulated NPU cycles per wall-clock second in timing-only mode.
use divan::counter::ItemsCount;
use divan::Bencher;
use shadowattn_hal::{HostTensor, NpuBackend};
use shadowattn_simulator::fit::int8_pilot_graph;
use shadowattn_simulator::{ExecutionMode, SimBackend};

fn main() {
    divan::main();
}

/// Execute (timing only) a compiled 4-head pilot graph; items = simulated accelerator cycles.
#[divan::bench(args = [512, 2048, 4096])]
fn execute_timing_only(bencher: Bencher, kv_len: usize) {
    let sim = SimBackend::builtin("snapdragon-8-gen-3")
        .unwrap()
        .with_mode(ExecutionMode::TimingOnly);
    let graph = int8_pilot_graph(4, 128, kv_len, 64);
    let mut compiled = sim.compile(&graph).unwrap();
    let cycles = sim.cost(&graph).accelerator_cycles as u64;
    let ins: Vec<HostTensor> = graph
        .input_descs()
        .map(|d| HostTensor::zeros(d.clone()).unwrap())
        .collect();
    let mut outs: Vec<HostTensor> = graph
        .output_descs()
        .map(|d| HostTensor::zeros(d.clone()).unwrap())
        .collect();
    bencher.counter(ItemsCount::new(cycles)).bench_local(|| {
        let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
        let mut out_views: Vec<_> = outs.iter_mut().map(|t| t.view_mut()).collect();
        compiled.execute(&views, &mut out_views).unwrap()
    });
}

/// Compile (validate + cost model) a fresh pilot graph each time; items = simulated cycles.
#[divan::bench(args = [512, 2048, 4096])]
fn compile_and_cost(bencher: Bencher, kv_len: usize) {
    let sim = SimBackend::builtin("snapdragon-8-gen-3")
        .unwrap()
        .with_mode(ExecutionMode::TimingOnly);
    let graph = int8_pilot_graph(4, 128, kv_len, 64);
    let cycles = sim.cost(&graph).accelerator_cycles as u64;
    bencher
        .counter(ItemsCount::new(cycles))
        .bench_local(|| sim.compile(&graph).unwrap());
}
