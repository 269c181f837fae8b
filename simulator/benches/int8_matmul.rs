//! INT8 MatMul rate of the functional model: the golden interpreter and the fast integer path
//! side by side on the same pilot graph (items = multiply-accumulates).
use divan::counter::ItemsCount;
use divan::Bencher;
use shadowattn_cpu::reference::graph as interpreter;
use shadowattn_hal::HostTensor;
use shadowattn_simulator::npu::functional;
use shadowattn_simulator::npu::graphs::int8_pilot_graph;

fn main() {
    divan::main();
}

/// A 1-head pilot, 128 query rows × `kv_len` keys × head dim 128, seeded inputs.
fn pilot(kv_len: usize) -> (shadowattn_hal::Graph, Vec<HostTensor>, HostTensor, u64) {
    let graph = int8_pilot_graph(1, 128, kv_len, 128);
    let mut seed = 0x9E37_79B9u32;
    let ins: Vec<HostTensor> = graph
        .input_descs()
        .map(|d| {
            let mut t = HostTensor::zeros(d.clone()).unwrap();
            for b in t.bytes_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *b = seed as u8;
            }
            t
        })
        .collect();
    let out = HostTensor::zeros(graph.output_descs().next().unwrap().clone()).unwrap();
    (graph, ins, out, 128 * kv_len as u64 * 128)
}

/// Times `execute` on the pilot of `kv_len` keys.
fn bench(bencher: Bencher, kv_len: usize, execute: ExecuteFn) {
    let (graph, ins, mut out, macs) = pilot(kv_len);
    bencher.counter(ItemsCount::new(macs)).bench_local(|| {
        let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
        execute(&graph, &views, &mut [out.view_mut()]).unwrap()
    });
}

type ExecuteFn = fn(
    &shadowattn_hal::Graph,
    &[shadowattn_hal::TensorView<'_>],
    &mut [shadowattn_hal::TensorViewMut<'_>],
) -> shadowattn_hal::Result<()>;

#[divan::bench(args = [512, 2048])]
fn golden_interpreter(bencher: Bencher, kv_len: usize) {
    bench(bencher, kv_len, interpreter::execute);
}

#[divan::bench(args = [512, 2048])]
fn fast_integer_path(bencher: Bencher, kv_len: usize) {
    bench(bencher, kv_len, functional::execute);
}
