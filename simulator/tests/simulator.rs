//! The simulator as users meet it: profiles, functional results, timing, traces, calibration.

use proptest::prelude::*;
use shadowattn_cpu::{reference, CpuBackend};
use shadowattn_hal::{
    DType, Graph, GraphBuilder, HalError, HostTensor, NpuBackend, OutType, QuantParams,
    Quantization, TensorDesc,
};
use shadowattn_pipeline::{fifo, simulate, Launch, LayerCosts, Pipeline, StepCosts};
use shadowattn_simulator::fit::launch::{fit_fastrpc, fit_points, fit_sd8gen3};
use shadowattn_simulator::npu::graphs::int8_pilot_graph;
use shadowattn_simulator::npu::profile::{builtin_names, real, NpuLimits, BUILTIN};
use shadowattn_simulator::predict::timeline::chrome_trace;
use shadowattn_simulator::LaunchPath;
use shadowattn_simulator::{ExecutionMode, SimBackend, SimError, SocProfile};

fn inputs_for(graph: &Graph, seed: u64) -> Vec<HostTensor> {
    let mut s = seed | 1;
    graph
        .input_descs()
        .map(|d| {
            let mut t = HostTensor::zeros(d.clone()).unwrap();
            for b in t.bytes_mut() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                *b = s as u8;
            }
            t
        })
        .collect()
}

fn execute(
    backend: &dyn NpuBackend,
    graph: &Graph,
    inputs: &[HostTensor],
) -> (Vec<HostTensor>, Vec<shadowattn_hal::ProfileEvent>) {
    let mut compiled = backend.compile(graph).unwrap();
    let mut outs: Vec<HostTensor> = graph
        .output_descs()
        .map(|d| HostTensor::zeros(d.clone()).unwrap())
        .collect();
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    let mut out_views: Vec<_> = outs.iter_mut().map(|t| t.view_mut()).collect();
    let events = compiled.execute(&views, &mut out_views).unwrap();
    (outs, events)
}

fn launch_ns(sim: &SimBackend, graph: &Graph) -> f64 {
    sim.cost(graph).launch_ns(false)
}

#[test]
fn every_builtin_profile_loads() {
    // Every profile file of `simulator/socs/` is built in, and nothing else is.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("socs");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut names = builtin_names();
    names.sort_unstable();
    assert_eq!(
        names,
        files,
        "the profiles in {} and BUILTIN in simulator/src/npu/profile.rs differ: register a new \
         profile there",
        dir.display()
    );
    for name in builtin_names() {
        let p = SocProfile::builtin(name).unwrap();
        assert_eq!(p.name, name);
        assert!(p.core("mid").is_some(), "{name} has a mid core");
    }
    let e = SocProfile::builtin("snapdragon-9000").unwrap_err();
    assert!(e.to_string().contains("snapdragon-8-gen-3"), "{e}");
}

fn sa8255_text() -> String {
    BUILTIN
        .iter()
        .find(|(n, _)| *n == "sa8255")
        .unwrap()
        .1
        .to_string()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.starts_with(needle)).unwrap() + 1
}

#[test]
fn profile_errors_name_file_key_and_line() {
    let text = sa8255_text();
    // The first `key = { value = …, source = "…" }` line with its value or source replaced.
    let with = |key: &str, value: &str, source: Option<&str>| -> String {
        let mut done = false;
        text.lines()
            .map(|l| {
                if !done && l.starts_with(&format!("{key} = {{")) {
                    done = true;
                    let src = l.split("source = ").nth(1).unwrap_or("\"\" }");
                    let src = source.map_or(src.to_string(), |s| format!("\"{s}\" }}"));
                    format!("{key} = {{ value = {value}, source = {src}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    };
    // Non-positive value.
    let bad = with("ddr_gbps", "-3.0", None);
    let e = SocProfile::parse("my.toml", &bad).unwrap_err();
    let line = line_of(&text, "ddr_gbps");
    assert!(
        matches!(&e, SimError::Profile { file, key, line: l, .. } if file == "my.toml" && key == "npu.ddr_gbps" && *l == line),
        "{e}"
    );
    // Zero tile.
    let bad = text.replacen("m = { value = 64", "m = { value = 0", 1);
    let e = SocProfile::parse("my.toml", &bad).unwrap_err();
    assert!(e.to_string().contains("npu.matrix.int8.m"), "{e}");
    // Unknown key.
    let bad = text.replace("[npu]\n", "[npu]\nturbo = 3\n");
    let e = SocProfile::parse("my.toml", &bad).unwrap_err();
    let line = line_of(&bad, "turbo");
    assert!(
        matches!(&e, SimError::Profile { key, line: l, .. } if key == "turbo" && *l == line),
        "{e}"
    );
    // Missing field.
    let bad: String = text
        .lines()
        .filter(|l| !l.starts_with("launch.qnn-shared.host_gbps"))
        .map(|l| format!("{l}\n"))
        .collect();
    let e = SocProfile::parse("my.toml", &bad).unwrap_err();
    assert!(e.to_string().contains("host_gbps"), "{e}");
    // A launch path that does not exist.
    let bad = text.replace("value = \"qnn-shared\"", "value = \"usb\"");
    let e = SocProfile::parse("my.toml", &bad).unwrap_err();
    assert!(e.to_string().contains("usb"), "{e}");
    // A number without a proper source.
    let bad = with("clock_ghz", "1.5", Some("guess"));
    let e = SocProfile::parse("my.toml", &bad).unwrap_err();
    assert!(
        e.to_string().contains("npu.clock_ghz") && e.to_string().contains("source"),
        "{e}"
    );
    // Physically impossible: DMA faster than DRAM.
    let bad = with("dma_bytes_per_cycle", "500.0", None);
    let e = SocProfile::parse("my.toml", &bad).unwrap_err();
    assert!(e.to_string().contains("DDR peak"), "{e}");
    // Usable fraction above 1 and NaN.
    let bad = with("onchip_usable_fraction", "1.5", None);
    assert!(SocProfile::parse("my.toml", &bad).is_err());
    let bad = with("clock_ghz", "nan", None);
    assert!(SocProfile::parse("my.toml", &bad).is_err());
    // A file that does not exist.
    let e = SocProfile::load(std::path::Path::new("/nonexistent/soc.toml")).unwrap_err();
    assert!(matches!(e, SimError::Io { .. }), "{e}");
}

#[test]
fn unsupported_ops_are_refused_at_compile_time() {
    let text = sa8255_text().replace(
        "npu_arch = \"HTP V73\"\n",
        "npu_arch = \"HTP V73\"\nunsupported_ops = [\"TopK\"]\n",
    );
    let sim = SimBackend::new(SocProfile::parse("no-topk.toml", &text).unwrap());
    let mut b = GraphBuilder::new("g");
    let x = b.input("x", TensorDesc::new(DType::F16, [4, 8])).unwrap();
    let (v, _) = b.topk("best", x, 2).unwrap();
    b.output(v).unwrap();
    let e = sim.compile(&b.build().unwrap()).unwrap_err();
    assert!(
        matches!(&e, HalError::Unsupported { node, .. } if node == "best"),
        "{e}"
    );
    assert!(!sim
        .capabilities()
        .accepts_input(shadowattn_hal::OpKind::TopK, DType::F16));
}

#[test]
fn time_grows_with_size_and_fusing_beats_separate_launches() {
    let sim = SimBackend::builtin("snapdragon-8-gen-3").unwrap();
    let mut last = 0.0;
    for kv in [256, 512, 1024, 2048, 4096] {
        let t = launch_ns(&sim, &int8_pilot_graph(1, 128, kv, 64));
        assert!(t > last, "kv {kv}: {t} <= {last}");
        last = t;
    }
    for heads in [2, 4, 8] {
        let fused = launch_ns(&sim, &int8_pilot_graph(heads, 128, 2048, 64));
        let separate = heads as f64 * launch_ns(&sim, &int8_pilot_graph(1, 128, 2048, 64));
        assert!(
            fused < separate,
            "{heads} heads: fused {fused} vs separate {separate}"
        );
    }
    let c = sim.cost(&int8_pilot_graph(1, 128, 2048, 64));
    assert!(c.launch_ns(true) > c.launch_ns(false));
    // Padding: 72 rows (a multiple of 8: folded into crouton blocks) cost as much matrix work
    // as 128 (two 64-row tiles); 65 rows lie unfolded, padded to 8 · 72 = 576 rows (nine
    // tiles, simulator/src/npu/layout.rs).
    let tiles = |rows| sim.cost(&int8_pilot_graph(1, rows, 2048, 64)).nodes[0].tiles;
    assert_eq!(tiles(72), tiles(128));
    assert_eq!(tiles(65), tiles(128) / 2 * 9);
}

#[test]
fn executions_advance_the_clock_and_first_launch_is_cold() {
    let sim = SimBackend::builtin("snapdragon-8-gen-2").unwrap();
    let g = int8_pilot_graph(2, 16, 64, 32);
    let ins = inputs_for(&g, 3);
    let mut compiled = sim.compile(&g).unwrap();
    assert_eq!(compiled.compile_events().len(), 1);
    let mut out = HostTensor::zeros(g.output_descs().next().unwrap().clone()).unwrap();
    let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
    let first = compiled.execute(&views, &mut [out.view_mut()]).unwrap();
    let second = compiled.execute(&views, &mut [out.view_mut()]).unwrap();
    assert!(
        first[0].duration_ns > second[0].duration_ns,
        "cold launch costs more"
    );
    assert_eq!(second[0].start_ns, first[0].end_ns());
    assert_eq!(sim.now_ns(), second[0].end_ns());
    for e in first.iter().chain(&second) {
        assert!(e.duration_ns > 0);
        assert!(e.start_ns >= first[0].start_ns && e.end_ns() <= second[0].end_ns());
    }
}

#[test]
fn working_sets_larger_than_onchip_memory_are_tiled_not_refused() {
    let sim = SimBackend::builtin("snapdragon-8-gen-3").unwrap();
    // A: 4096 x 1024 fp16 = 8 MiB (> 4 MiB usable): B is re-read per block of A.
    let mut b = GraphBuilder::new("big");
    let a = b
        .input("a", TensorDesc::new(DType::F16, [4096, 1024]))
        .unwrap();
    let w = b
        .input("w", TensorDesc::new(DType::F16, [1024, 256]))
        .unwrap();
    let y = b
        .matmul("mm", a, w, false, false, OutType::plain(DType::F16))
        .unwrap();
    b.output(y).unwrap();
    let g = b.build().unwrap();
    let c = sim.cost(&g);
    let plain = (4096 * 1024 + 1024 * 256 + 4096 * 256) * 2;
    assert!(
        c.nodes[0].dma_bytes > plain,
        "B re-read: {} vs {plain}",
        c.nodes[0].dma_bytes
    );
    assert!(c.accelerator_cycles.is_finite() && c.accelerator_cycles > 0.0);
    sim.compile(&g).unwrap();
}

/// A MatMul graph `[m, k] · [k, n]` of `dtype` whose second input is a graph input or a
/// constant.
fn matmul_graph(dtype: DType, (m, k, n): (usize, usize, usize), constant_b: bool) -> Graph {
    use shadowattn_simulator::fit::graph_families::{GraphSpec, Second, Tail};
    GraphSpec {
        dtype,
        tail: Tail::None,
        second: if constant_b {
            Second::Static
        } else {
            Second::Dynamic
        },
        transpose_b: false,
        heads: 1,
        m,
        k,
        n,
    }
    .graph()
    .unwrap()
}

#[test]
fn a_matmul_spills_what_of_its_activations_exceeds_vtcm_and_constants_stream() {
    // sa8255: 8 MiB VTCM, half usable. A [64, 4096] f16 = 0.5 MiB, B [4096, 2048] f16 = 16 MiB,
    // out [64, 2048] = 0.25 MiB: a dynamic B makes 16.75 MiB of activations, 12.75 MiB over.
    let sim = SimBackend::builtin("sa8255").unwrap();
    let (a, b, out) = (64 * 4096 * 2, 4096 * 2048 * 2, 64 * 2048 * 2);
    let usable = 4 << 20;
    let dynamic = sim.cost(&matmul_graph(DType::F16, (64, 4096, 2048), false));
    assert_eq!(
        dynamic.nodes[0].dma_bytes,
        (a + b + out) + 2 * (a + b + out - usable),
        "read A and B, write the output, spill and fill the excess"
    );
    // The same weights as a constant stream once: no spill.
    let constant = sim.cost(&matmul_graph(DType::F16, (64, 4096, 2048), true));
    assert_eq!(constant.nodes[0].dma_bytes, a + b + out);
    // Within VTCM nothing spills.
    let small = sim.cost(&matmul_graph(DType::F16, (64, 512, 512), false));
    assert_eq!(
        small.nodes[0].dma_bytes,
        (64 * 512 + 512 * 512 + 64 * 512) * 2
    );
    // INT8 activations take one byte each on chip: A [64, 8192], B [8192, 1024] (8 MiB),
    // out [64, 1024] make 8.56 MiB, 4.56 MiB over.
    let (a, b, out) = (64 * 8192, 8192 * 1024, 64 * 1024);
    let i8 = sim.cost(&matmul_graph(DType::I8, (64, 8192, 1024), false));
    assert_eq!(
        i8.nodes[0].dma_bytes,
        (a + b + out) + 2 * (a + b + out - usable)
    );
}

#[test]
fn a_matmuls_compute_is_its_laid_out_tiles_transposes_and_read_out_exactly() {
    // sa8255, rank 3 with both operands read transposed: A [2, 256, 100] (K 256, M 100)
    // against B [2, 512, 256] (N 512 keys as rows): 2 batches, M's 100 rows unfolded to
    // 8 · 104 = 832 (13 INT8 tiles of 64), N 512 (16 tiles of 32), K 256 (8 of 32).
    let soc = SocProfile::builtin("sa8255").unwrap();
    let q = |shape: [usize; 3]| {
        TensorDesc::new(DType::I8, shape).with_quant(Quantization::per_tensor(0.05, 0))
    };
    let mut b = GraphBuilder::new("exact");
    let a = b.input("a", q([2, 256, 100])).unwrap();
    let w = b.input("w", q([2, 512, 256])).unwrap();
    let out = OutType::quantized(DType::I8, QuantParams::symmetric(0.5));
    let y = b.matmul("mm", a, w, true, true, out).unwrap();
    b.output(y).unwrap();
    let g = b.build().unwrap();
    let node = SimBackend::new(soc.clone()).cost(&g).nodes[0].clone();
    let tiles = 2 * 13 * 16 * 8;
    assert_eq!(node.tiles, tiles);
    let npu = &soc.npu;
    // Both operands are transposed on the vector units (channels rounded to 32: 100 → 128),
    // the output read out over its laid-out rows (832 × 512 per batch); two heads of 512 keys
    // × 256 B are in the relayout window.
    let expected = real(&npu.matrix.int8.node_fixed_cycles)
        + real(npu.matrix.fused_relayout_cycles.as_ref().unwrap())
        + tiles as f64 * real(&npu.matrix.int8.cycles_per_tile)
        + (2 * 256 * 128 + 2 * 512 * 256) as f64 * real(&npu.vector.transpose_cycles_per_element)
        + (2 * 832 * 512) as f64 * real(&npu.matrix.requantized_output_cycles_per_element);
    assert!(
        (node.compute_cycles - expected).abs() <= 1e-9 * expected,
        "{} vs {expected}",
        node.compute_cycles
    );
}

#[test]
fn fused_int8_heads_in_the_relayout_window_pay_one_relayout() {
    // The window of RULES.md §6: 2+ heads, keys as rows, a multiple of 8 keys up to 1,024, at
    // least 40 KiB of keys per head. A profile without the number pays nothing.
    let with = SocProfile::builtin("sa8255").unwrap();
    let relayout = real(with.npu.matrix.fused_relayout_cycles.as_ref().unwrap());
    let mut without = with.clone();
    without.npu.matrix.fused_relayout_cycles = None;
    let extra = |g: &Graph| {
        SimBackend::new(with.clone()).cost(g).nodes[0].compute_cycles
            - SimBackend::new(without.clone()).cost(g).nodes[0].compute_cycles
    };
    for (heads, keys, d, pays) in [
        (2, 1024, 64, true),  // 64 KiB per head
        (3, 600, 80, true),   // 48,000 B
        (4, 512, 128, true),  // 64 KiB
        (1, 1024, 64, false), // one head
        (2, 1000, 64, true),  // 64,000 B, keys a multiple of 8
        (2, 1001, 64, false), // not a multiple of 8
        (2, 1032, 64, false), // past 1,024 keys
        (2, 512, 64, false),  // 32 KiB per head
        (2, 300, 128, false), // 38,400 B
    ] {
        let e = extra(&int8_pilot_graph(heads, 64, keys, d));
        let want = if pays { relayout } else { 0.0 };
        assert!(
            (e - want).abs() < 1e-6 * relayout,
            "{heads} heads x {keys} keys x d {d}: {e} extra cycles, want {want}"
        );
    }
    // The same shape with the keys as a constant, or in f16, does not.
    use shadowattn_simulator::fit::graph_families::{GraphSpec, Second};
    let pilot = GraphSpec::pilot(2, 64, 1024, 64);
    for other in [
        GraphSpec {
            second: Second::Static,
            ..pilot
        },
        GraphSpec {
            dtype: DType::F16,
            ..pilot
        },
    ] {
        assert_eq!(extra(&other.graph().unwrap()), 0.0, "{other}");
    }
    assert!(extra(&pilot.graph().unwrap()) > 0.0);
}

#[test]
fn rows_off_the_crouton_grid_pay_their_padding_on_htp_only() {
    // 100 rows lie unfolded in HTP's crouton layout (8 · 104 = 832 rows at 8 bits), 104 rows
    // fold into blocks: the matrix work and the requantized read-out of 100 rows are dearer.
    // A flat-layout NPU (Dimensity 9300's profile) pays for the rows it has.
    let compute = |soc: &str, m: usize| {
        SimBackend::builtin(soc)
            .unwrap()
            .cost(&matmul_graph(DType::I8, (m, 256, 512), false))
            .nodes[0]
            .clone()
    };
    let (odd, even) = (compute("sa8255", 100), compute("sa8255", 104));
    assert!(
        odd.tiles > 4 * even.tiles,
        "{} vs {}",
        odd.tiles,
        even.tiles
    );
    assert!(
        odd.compute_cycles > 2.0 * even.compute_cycles,
        "{odd:?} vs {even:?}"
    );
    let (odd, even) = (
        compute("dimensity-9300", 100),
        compute("dimensity-9300", 104),
    );
    assert!(odd.tiles <= even.tiles && odd.compute_cycles <= even.compute_cycles);
}

#[test]
fn timing_only_mode_skips_arithmetic_but_times_the_same() {
    let functional = SimBackend::builtin("dimensity-9300").unwrap();
    let timing = SimBackend::builtin("dimensity-9300")
        .unwrap()
        .with_mode(ExecutionMode::TimingOnly);
    let g = int8_pilot_graph(1, 8, 32, 16);
    let ins = inputs_for(&g, 11);
    let (out_f, ev_f) = execute(&functional, &g, &ins);
    let (out_t, ev_t) = execute(&timing, &g, &ins);
    assert!(out_f[0].as_slice::<i8>().unwrap().iter().any(|&v| v != 0));
    assert!(out_t[0].as_slice::<i8>().unwrap().iter().all(|&v| v == 0));
    assert_eq!(ev_f, ev_t);
}

#[test]
fn compiled_graphs_round_trip_and_are_soc_specific() {
    let g3 = SimBackend::builtin("snapdragon-8-gen-3").unwrap();
    let g2 = SimBackend::builtin("snapdragon-8-gen-2").unwrap();
    let g = int8_pilot_graph(1, 4, 8, 8);
    let bytes = g3.compile(&g).unwrap().serialize().unwrap();
    assert_eq!(g3.deserialize(&bytes).unwrap().graph(), &g);
    let e = g2.deserialize(&bytes).unwrap_err();
    assert!(e.to_string().contains("SoC specific"), "{e}");
    assert!(g3.deserialize(b"garbage").is_err());
}

#[test]
fn the_launch_fit_matches_the_profile_and_the_papers_figures() {
    // The 8 Gen 3 profile's launch numbers are the fit of its own accelerator model to the
    // paper's three figures: refitting reproduces them (0.5 %: the profile rounds to 4 digits).
    let g3 = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
    let close = |fitted: f64, profile: &shadowattn_simulator::npu::profile::Real, what: &str| {
        assert!(
            (fitted - real(profile)).abs() / fitted < 0.005,
            "refit {what} {fitted} vs profile {}",
            real(profile)
        )
    };
    let (warm, host) = fit_sd8gen3(&g3);
    let copy = g3.npu.launch.costs(LaunchPath::QnnCopy);
    close(warm, &copy.fixed_us, "qnn-copy fixed µs");
    close(host, &copy.host_gbps, "qnn-copy GB/s");
    // The fastrpc path is the fit to a different measurement (FastRPC round trips), and its
    // slope is the qnn-shared path's per-byte rate, in every built-in profile.
    let (fixed, gbps) = fit_fastrpc();
    for name in shadowattn_simulator::npu::profile::builtin_names() {
        let p = SocProfile::builtin(name).unwrap();
        close(fixed, &p.npu.launch.fastrpc.fixed_us, "fastrpc fixed µs");
        close(gbps, &p.npu.launch.fastrpc.host_gbps, "fastrpc GB/s");
        close(gbps, &p.npu.launch.qnn_shared.host_gbps, "qnn-shared GB/s");
    }
    // Two parameters, three figures: the line through them misses none by more than 10 %
    // (the paper's figures are whole milliseconds, ±0.5 ms of rounding is ±12–25 %).
    for p in fit_points() {
        assert!(
            p.relative_error().abs() <= 0.10,
            "{} off by {:.1} %",
            p.label,
            p.relative_error() * 100.0
        );
    }
}

#[test]
fn perfetto_trace_has_the_chrome_trace_event_structure() {
    let sim = SimBackend::builtin("snapdragon-8-gen-3").unwrap();
    let g = int8_pilot_graph(2, 8, 32, 16);
    let ins = inputs_for(&g, 5);
    let (_, mut events) = execute(&sim, &g, &ins);
    let launches = vec![Launch::new(0, vec![0, 1]), Launch::new(1, vec![2])];
    let costs = LayerCosts {
        launches: vec![2e6, 1.5e6],
        units: vec![
            StepCosts {
                topk_ns: 2e5,
                attention_ns: 9e5
            };
            3
        ],
    };
    let pipeline = Pipeline::executor(2).unwrap();
    let mut order = fifo(&pipeline, &launches, &costs).unwrap();
    order.unit_order = vec![1, 0, 2];
    let layer = simulate(&pipeline, &launches, &costs, &order).unwrap();
    events.extend(layer.events);
    let text = serde_json::to_string(&chrome_trace(&events)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let list = v["traceEvents"].as_array().unwrap();
    let mut named = std::collections::HashMap::new();
    let mut complete = 0;
    for e in list {
        assert!(
            e["name"].is_string() && e["pid"].is_u64() && e["tid"].is_u64(),
            "{e}"
        );
        match e["ph"].as_str().unwrap() {
            "M" => {
                if e["name"] == "thread_name" {
                    named.insert(
                        e["tid"].as_u64().unwrap(),
                        e["args"]["name"].as_str().unwrap().to_string(),
                    );
                }
            }
            "X" => {
                complete += 1;
                assert!(
                    e["ts"].as_f64().unwrap() >= 0.0 && e["dur"].as_f64().unwrap() > 0.0,
                    "{e}"
                );
                assert!(e["cat"].is_string());
            }
            other => panic!("unexpected phase {other}"),
        }
    }
    assert_eq!(complete, events.len());
    for e in list.iter().filter(|e| e["ph"] == "X") {
        assert!(
            named.contains_key(&e["tid"].as_u64().unwrap()),
            "every track is named"
        );
    }
    let tracks: Vec<&String> = named.values().collect();
    for t in ["npu", "npu:matrix", "npu:host-io", "cpu0", "cpu1"] {
        assert!(tracks.iter().any(|x| *x == t), "track {t} in {tracks:?}");
    }
}

fn q8(shape: &[usize], scale: f32, zp: i32) -> TensorDesc {
    TensorDesc::new(DType::I8, shape.to_vec()).with_quant(Quantization::per_tensor(scale, zp))
}

/// A random quantized graph: pilot MatMul, requantize, a quantized Add or Mul, optional TopK.
fn random_graph(m: usize, k: usize, n: usize, s: [f32; 4], zp: i32, op: u8) -> Graph {
    let mut b = GraphBuilder::new("random");
    let a = b.input("a", q8(&[1, m, k], s[0], zp)).unwrap();
    let w = b.input("w", q8(&[1, n, k], s[1], -zp)).unwrap();
    let acc = b
        .matmul("acc", a, w, false, true, OutType::plain(DType::I32))
        .unwrap();
    let r = b
        .requantize(
            "r",
            acc,
            OutType::quantized(DType::I8, QuantParams::new(s[2], zp)),
        )
        .unwrap();
    let y = match op % 3 {
        0 => b
            .add(
                "y",
                r,
                r,
                OutType::quantized(DType::U8, QuantParams::new(s[3], 128)),
            )
            .unwrap(),
        1 => b
            .mul(
                "y",
                r,
                r,
                OutType::quantized(DType::I16, QuantParams::new(s[3], 0)),
            )
            .unwrap(),
        _ => b.topk("y", r, 1.max(n / 2)).unwrap().0,
    };
    b.output(y).unwrap();
    b.output(acc).unwrap();
    b.build().unwrap()
}

#[test]
fn the_built_in_npus_refuse_what_their_compilers_refuse() {
    let g = random_graph(4, 8, 4, [0.1, 0.1, 0.5, 0.5], 0, 0);
    for name in builtin_names() {
        let sim = SimBackend::builtin(name).unwrap();
        let e = sim.check_support(&g).unwrap_err();
        assert!(
            matches!(&e, HalError::Unsupported { node, detail, .. }
                if node == "acc" && detail.contains("no INT32 MatMul output")),
            "{name}: {e}"
        );
        assert!(matches!(sim.compile(&g), Err(HalError::Unsupported { .. })));
    }
    // A profile without limits takes it.
    let mut open = SocProfile::builtin("sa8255").unwrap();
    open.limits = NpuLimits::default();
    assert!(SimBackend::new(open).check_support(&g).is_ok());
}

/// `[limits] float_ops = false` (socModel 95) refuses float-to-float nodes but an f32
/// Transpose or Reshape, and leaves the integer/float boundary (Dequantize) alone.
#[test]
fn an_npu_without_float_ops_refuses_float_to_float_nodes() {
    let mut profile = SocProfile::builtin("sa8255").unwrap();
    profile.limits.float_ops = false;
    let sim = SimBackend::new(profile);
    let one = |dtype: DType,
               op: &dyn Fn(
        &mut GraphBuilder,
        shadowattn_hal::ValueId,
    ) -> shadowattn_hal::ValueId| {
        let mut b = GraphBuilder::new("g");
        let x = b
            .input(
                "x",
                TensorDesc::new(dtype, [1, 1, 4, 8]).with_quant(match dtype {
                    DType::I8 => Quantization::per_tensor(0.1, 0),
                    _ => Quantization::None,
                }),
            )
            .unwrap();
        let y = op(&mut b, x);
        b.output(y).unwrap();
        b.build().unwrap()
    };
    let add = |b: &mut GraphBuilder, x| {
        b.add("op", x, x, OutType::plain(b.desc(x).unwrap().dtype))
            .unwrap()
    };
    let transpose = |b: &mut GraphBuilder, x| b.transpose("op", x, &[0, 1, 3, 2]).unwrap();
    let dequantize = |b: &mut GraphBuilder, x| b.dequantize("op", x, DType::F16).unwrap();
    for (what, graph, refused) in [
        ("f16 Add", one(DType::F16, &add), true),
        ("f32 Add", one(DType::F32, &add), true),
        ("f16 Transpose", one(DType::F16, &transpose), true),
        ("f32 Transpose", one(DType::F32, &transpose), false),
        ("Dequantize i8 to f16", one(DType::I8, &dequantize), false),
    ] {
        let r = sim.check_support(&graph);
        assert_eq!(r.is_err(), refused, "{what}: {r:?}");
        if let Err(e) = r {
            assert!(
                e.to_string().contains("no op from float to float"),
                "{what}: {e}"
            );
        }
    }
    let caps = sim.capabilities();
    let sigs = &caps.ops[&shadowattn_hal::OpKind::Add];
    assert!(!sigs
        .iter()
        .any(|s| s.input == DType::F16 && s.output == DType::F16));
    assert!(sigs
        .iter()
        .any(|s| s.input == DType::I8 && s.output == DType::I8));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn functional_results_are_bit_exact_with_the_cpu_reference(
        m in 1usize..20, k in 1usize..70, n in 1usize..40,
        s in proptest::array::uniform4(0.001f32..4.0), zp in -5i32..5, op in any::<u8>(), seed in any::<u64>(),
    ) {
        let g = random_graph(m, k, n, s, zp, op);
        let ins = inputs_for(&g, seed);
        let names = builtin_names();
        let soc = names[(seed % names.len() as u64) as usize];
        // The graph keeps INT32 accumulators, which the built-in NPUs refuse (their limits);
        // the functional model is checked on the profile with its limits lifted.
        let mut profile = SocProfile::builtin(soc).unwrap();
        profile.limits = NpuLimits::default();
        let sim = SimBackend::new(profile);
        let (sim_out, events) = execute(&sim, &g, &ins);
        let (cpu_out, _) = execute(&CpuBackend::new(), &g, &ins);
        let views: Vec<_> = ins.iter().map(|t| t.view()).collect();
        let direct = reference::graph::run(&g, &views).unwrap();
        for ((a, b), c) in sim_out.iter().zip(&cpu_out).zip(&direct) {
            prop_assert_eq!(a.bytes(), b.bytes());
            prop_assert_eq!(a.bytes(), c.bytes());
        }
        prop_assert!(events.iter().all(|e| e.duration_ns > 0));
    }
}
