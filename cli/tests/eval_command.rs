//! `shadowattn eval --npu` on a slice of real text small enough for CI: SmolLM2-135M's pilot of
//! every layer through the sparse-attention core on the golden CPU backend, the simulated
//! SA8255P and Qualcomm's HTP emulator (`libQnnHtp.so`, SoC model 52 = SA8255P), each with the
//! pilot's INT8 output. The model comes from `bash ci/model.sh` and the emulator from
//! `bash ci/qnn-emulator.sh`; both skip locally with a reason when absent and fail in CI.

mod common;
use common::svg::{Chart, Element};
use shadowattn_test_support::{qnn_emulator_or_skip, smollm2_or_skip, target_dir};
use std::path::PathBuf;
use std::process::Command;

fn model() -> Option<PathBuf> {
    smollm2_or_skip(&target_dir(env!("CARGO_TARGET_TMPDIR")))
}

/// The table rows of `eval` on 1 window of 48 tokens at 30 % kept, uniform and mass
/// allocations, the host's INT8-output pilot and the core's on `npu`: `(allocation, ranking,
/// ppl)` as printed, and the dense perplexity.
fn eval(model: &PathBuf, qnn: &str, npu: &str) -> (Vec<(String, String, String)>, f64) {
    let out = Command::new(env!("CARGO_BIN_EXE_shadowattn"))
        .env("SHADOWATTN_QNN_LIB", qnn)
        .args(["eval", "--model"])
        .arg(model)
        .args([
            "--window",
            "48",
            "--max-windows",
            "1",
            "--calibration-window",
            "24",
            "--calibration-windows",
            "1",
            "--ratios",
            "0.3",
            "--allocations",
            "uniform,mass",
            "--rankings",
            "pilot-i8",
            "--npu",
            npu,
            // The scenario this test pins: the pilot's scores as they were before keys were
            // centered by default (centered, the HTP's f16 softmax moves the NPU-reduced
            // ranking's 48-token perplexity by 8.5 % against the simulator's).
            "--center-keys",
            "false",
            "--split",
            "even",
            "--pilots",
            "head,group-cpu,group",
        ])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "eval --npu {npu}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dense = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ppl_dense: "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no ppl_dense in:\n{stdout}"));
    let rows = stdout
        .lines()
        .filter(|l| l.starts_with("0.3\t"))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[1].to_string(), f[2].to_string(), f[3].to_string())
        })
        .collect();
    (rows, dense)
}

/// The perplexity of `ranking` under `allocation`.
fn ppl<'a>(rows: &'a [(String, String, String)], allocation: &str, ranking: &str) -> &'a str {
    &rows
        .iter()
        .find(|r| r.0 == allocation && r.1 == ranking)
        .unwrap_or_else(|| panic!("no {allocation} {ranking} row in {rows:?}"))
        .2
}

#[test]
fn the_emulator_the_simulator_and_the_host_give_their_pilots_perplexity_exactly() {
    let (Some(model), Some(qnn)) = (
        model(),
        qnn_emulator_or_skip(&target_dir(env!("CARGO_TARGET_TMPDIR"))),
    ) else {
        return;
    };
    let (cpu, dense) = eval(&model, &qnn, "cpu");
    let (sim, _) = eval(&model, &qnn, "sim:sa8255");
    let (htp, _) = eval(&model, &qnn, "qnn:htp:52");
    for allocation in ["uniform", "per-group:mass"] {
        let host = ppl(&cpu, allocation, "pilot:i8");
        // The golden CPU backend's pilot graphs round as the host's model of them does, and the
        // CPU-ranked group pilot's scores are the per-head pilot's, bit for bit.
        for pilot in ["h", "g3"] {
            let row = format!("pilot:i8@cpu[{pilot}]");
            assert_eq!(ppl(&cpu, allocation, &row), host, "{allocation} {pilot}");
        }
        // The simulator rounds as HTP V73 does: the same scores, so the same perplexity to the
        // last printed digit (the conformance suite's bit-equality, on the real model), for
        // the pilots that output scores.
        for pilot in ["h", "g3"] {
            assert_eq!(
                ppl(&sim, allocation, &format!("pilot:i8@sim:sa8255[{pilot}]")),
                ppl(&htp, allocation, &format!("pilot:i8@qnn:htp[{pilot}]")),
                "{allocation} {pilot}"
            );
        }
        // HTP's f16 softmax rounds otherwise than the simulator's (the conformance suite judges
        // the ranking within 32 f16 ulps): keys near the k-th place swap, which moves this
        // 48-token perplexity by 0.8 % (uniform ratios) here; the bound is 2.5 times that.
        let at = |rows: &[(String, String, String)], npu: &str| -> f64 {
            ppl(rows, allocation, &format!("pilot:i8@{npu}[g3r]"))
                .parse()
                .unwrap()
        };
        let (s, h) = (at(&sim, "sim:sa8255"), at(&htp, "qnn:htp"));
        assert!((s / h - 1.0).abs() < 0.02, "{allocation}: {s} against {h}");
        // The NPU-reduced ranking (f16 probabilities) keeps nearly the CPU rule's keys.
        let reduced: f64 = ppl(&cpu, allocation, "pilot:i8@cpu[g3r]").parse().unwrap();
        let host: f64 = host.parse().unwrap();
        assert!(
            (reduced / host - 1.0).abs() < 0.01,
            "{allocation}: NPU-reduced ranking {reduced} against the host's {host}"
        );
        // A sparse run is not the dense one: 30 % of at most 48 keys changes the perplexity.
        let p: f64 = ppl(&htp, allocation, "pilot:i8@qnn:htp[g3r]")
            .parse()
            .unwrap();
        assert!(
            p.is_finite() && (p / dense - 1.0).abs() > 1e-3,
            "{allocation}: {p} against dense {dense}"
        );
    }
}

/// A window past the model's `llama.context_length` is refused before the weights load.
#[test]
fn a_window_past_the_context_length_is_refused() {
    let Some(model) = model() else {
        return;
    };
    for (option, value) in [
        ("--window", "8193"),
        ("--calibration-window", "9000"),
        ("--mass-window", "100000000"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_shadowattn"))
            .args(["eval", "--model"])
            .arg(&model)
            .args([option, value])
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{option}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{option} {value} is past the model's context length of 8192 tokens (from the GGUF metadata `llama.context_length`)"
            )),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "{option}");
    }
}

/// The largest residual of the least-squares line through `points`.
fn fit(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), p| (a + p.0 / n, b + p.1 / n));
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let slope = sxy / sxx;
    points
        .iter()
        .map(|p| (my + slope * (p.0 - mx) - p.1).abs())
        .fold(0.0, f64::max)
}

/// The marker centred on `(x, y)` of colour `colour`: a `circle` or a `polygon` (a triangle).
fn marker_at<'a>(chart: &'a Chart, colour: &str, (x, y): (f64, f64)) -> Option<&'a Element> {
    chart.elements.iter().find(|e| {
        e.attr("fill") == colour
            && match e.name.as_str() {
                "circle" => (e.num("cx") - x).abs() < 1.0 && (e.num("cy") - y).abs() < 1.0,
                "polygon" => {
                    let first = e.points()[0];
                    (first.0 - x).abs() < 1.0 && (first.1 + 5.0 - y).abs() < 1.0
                }
                _ => false,
            }
    })
}

/// `eval --plot` on a slice of real text: a line per allocation and ranking through the table's
/// perplexities at their kept fractions, and the dense perplexity as a horizontal line.
#[test]
fn the_plot_draws_a_line_per_allocation_and_ranking_over_the_dense_perplexity() {
    let Some(model) = model() else {
        return;
    };
    let dir = target_dir(env!("CARGO_TARGET_TMPDIR")).join("tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("eval-plot-{}.svg", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_shadowattn"))
        .args(["eval", "--model"])
        .arg(&model)
        .args([
            "--window",
            "32",
            "--max-windows",
            "1",
            "--calibration-window",
            "24",
            "--calibration-windows",
            "1",
            "--ratios",
            "0.1,0.2,0.3",
            "--allocations",
            "uniform,mass",
            "--rankings",
            "pilot-i32,exact",
            "--plot",
        ])
        .arg(&path)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dense: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ppl_dense: "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    // (allocation, ranking, kept, ppl) of the table.
    let rows: Vec<(String, String, f64, f64)> = stdout
        .lines()
        .filter(|l| l.starts_with("0."))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[1].into(),
                f[2].into(),
                f[5].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 12, "{stdout}");
    let chart = Chart::read(&path);
    std::fs::remove_file(&path).unwrap();
    let legend = chart.legend();
    let names: Vec<&str> = legend.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        names,
        [
            &*format!("dense ({dense:.3})"),
            "uniform, pilot:i32",
            "uniform, exact-topk",
            "per-group:mass, pilot:i32",
            "per-group:mass, exact-topk"
        ]
    );
    // A colour per allocation, a marker per ranking.
    assert_eq!(legend[1].1, legend[2].1);
    assert_ne!(legend[1].1, legend[3].1);
    let log = chart.texts().contains(&"perplexity (log scale)");
    assert!(log || chart.texts().contains(&"perplexity"));
    // The dense line: horizontal, in the legend's grey.
    let reference = chart
        .named("polyline")
        .filter(|p| p.attr("stroke") == legend[0].1 && p.attr("stroke-width") == "1")
        .map(Element::points)
        .collect::<Vec<_>>();
    assert_eq!(reference.len(), 1, "{reference:?}");
    assert_eq!(reference[0][0].1, reference[0][1].1);
    let y_of = |ppl: f64| if log { ppl.ln() } else { ppl };
    let (mut xs, mut ys) = (Vec::new(), vec![(y_of(dense), reference[0][0].1)]);
    // Every series: one line through its three runs, a marker on each, the marker its
    // legend entry shows.
    let lines: Vec<Vec<(f64, f64)>> = chart
        .named("polyline")
        .map(Element::points)
        .filter(|p| p.len() == 3)
        .collect();
    assert_eq!(lines.len(), 4, "a line per series");
    for (name, colour) in &legend[1..] {
        let (allocation, ranking) = name.split_once(", ").unwrap();
        // The legend entry: its line, its marker, its name.
        let at = chart
            .elements
            .iter()
            .position(|e| e.name == "text" && e.text == *name)
            .unwrap();
        let legend_marker = &chart.elements[at - 1];
        assert_eq!(chart.elements[at - 2].attr("stroke"), colour, "{name}");
        assert_eq!(legend_marker.attr("fill"), colour, "{name}");
        let line = lines
            .iter()
            .find(|l| {
                chart
                    .named("polyline")
                    .any(|p| p.attr("stroke") == colour && p.points() == **l)
                    && marker_at(&chart, colour, l[0]).is_some_and(|m| m.name == legend_marker.name)
            })
            .unwrap_or_else(|| panic!("{name}: no line"));
        let mut runs: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.0 == allocation && r.1 == ranking)
            .map(|r| (r.2, r.3))
            .collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(runs.len(), 3, "{name}");
        for (run, &point) in runs.iter().zip(line) {
            assert!(
                marker_at(&chart, colour, point).is_some(),
                "{name}: marker at {point:?}"
            );
            xs.push((run.0, point.0));
            ys.push((y_of(run.1), point.1));
        }
    }
    // One linear (or log) scale maps every run to its point, to the pixel.
    assert!(fit(&xs) <= 1.0, "{xs:?}");
    assert!(fit(&ys) <= 1.0, "{ys:?}");
}

#[test]
fn a_plot_path_is_checked_before_any_work() {
    let out = Command::new(env!("CARGO_BIN_EXE_shadowattn"))
        .args([
            "eval",
            "--model",
            "/no/such/model.gguf",
            "--plot",
            "/no/such/folder/ppl.svg",
        ])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write the plot /no/such/folder/ppl.svg: no folder /no/such/folder"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_shadowattn"))
        .args([
            "eval",
            "--model",
            "m.gguf",
            "--dense-only",
            "--plot",
            "p.svg",
        ])
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(2));
}
