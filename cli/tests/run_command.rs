//! The `shadowattn run` command as a user runs it.

mod common;
use common::{qnn_emulator, shadowattn, shadowattn_with};

fn value(stdout: &str, key: &str) -> f64 {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no `{key}` in:\n{stdout}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn run_prints_parseable_accuracy() {
    let (code, stdout, stderr) =
        shadowattn(&["run", "--q-len", "16", "--kv-len", "96", "--head-dim", "32"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(value(&stdout, "topk_recall_mean") >= 0.9, "{stdout}");
    assert!(value(&stdout, "cosine_mean") > 0.9, "{stdout}");
    assert!(value(&stdout, "oracle_mass_mean") >= value(&stdout, "attention_mass_mean") - 1e-4);
}

#[test]
fn full_ratio_reproduces_dense() {
    let (code, stdout, stderr) = shadowattn(&[
        "run",
        "--q-len",
        "8",
        "--kv-len",
        "40",
        "--head-dim",
        "16",
        "--ratio",
        "1",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(value(&stdout, "rel_l2_p95") < 1e-5, "{stdout}");
}

#[test]
fn the_budget_rule_comes_from_the_defaults_the_calibration_file_and_the_flags() {
    let small = ["--q-len", "16", "--kv-len", "96", "--head-dim", "32"];
    let budget_line = |stdout: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("budget: "))
            .unwrap_or_else(|| panic!("no budget line in:\n{stdout}"))
            .to_string()
    };
    let run = |extra: &[&str]| {
        let mut args = vec!["run"];
        args.extend(small);
        args.extend(extra);
        let (code, stdout, stderr) = shadowattn(&args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        stdout
    };
    // The measured best by default; the kept fraction is the ratio's, whatever the split.
    let default = run(&[]);
    assert_eq!(
        budget_line(&default),
        "split threshold, sinks 0, recent 0, floor 0.5, cap none"
    );
    let even = run(&["--split", "even", "--floor", "0"]);
    assert_eq!(
        budget_line(&even),
        "split even, sinks 0, recent 0, floor 0, cap none"
    );
    let kept = |s: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix("ratio: mean 0.2000 (kept "))
            .unwrap_or_else(|| panic!("no ratio line in:\n{s}"))
            .to_string()
    };
    assert_eq!(kept(&default), kept(&even));
    // A calibration file carries its rule to `run`; flags override it.
    let dir = std::env::temp_dir().join(format!("budget-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("calibration.json");
    let (code, _, stderr) = shadowattn(&[
        "calibrate",
        "--out",
        file.to_str().unwrap(),
        "--layers",
        "1",
        "--q-heads",
        "9",
        "--kv-heads",
        "3",
        "--head-dim",
        "32",
        "--split",
        "top-p",
        "--sinks",
        "2",
        "--cap",
        "3",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let calibrated = [
        "--calibration",
        file.to_str().unwrap(),
        "--q-heads",
        "9",
        "--kv-heads",
        "3",
    ];
    let from_file = run(&calibrated);
    assert_eq!(
        budget_line(&from_file),
        "split top-p, sinks 2, recent 0, floor 0.5, cap 3"
    );
    let mut overridden = calibrated.to_vec();
    overridden.extend(["--recent", "4", "--cap", "none"]);
    assert_eq!(
        budget_line(&run(&overridden)),
        "split top-p, sinks 2, recent 4, floor 0.5, cap none"
    );
    std::fs::remove_dir_all(&dir).ok();
    for (args, needle) in [
        (&["run", "--floor", "1.5"][..], "floor"),
        (&["run", "--cap", "0.5"][..], "cap"),
    ] {
        let (code, _, stderr) = shadowattn(args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = shadowattn(&["run", "--cap", "lots"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn bad_input_is_a_clear_error_and_exit_code() {
    for (args, needle) in [
        (&["run", "--kv-heads", "5"][..], "cannot be grouped"),
        (&["run", "--ratio", "1.5"][..], "ratio"),
        (&["run", "--q-len", "3000"][..], "q_len"),
        (&["run", "--head-dim", "0"][..], "head_dim"),
    ] {
        let (code, _, stderr) = shadowattn(args);
        assert_eq!(code, 1, "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let (code, _, _) = shadowattn(&["run", "--ratio", "abc"]);
    assert_eq!(code, 2, "usage errors exit with 2");
    // A backend name outside the grammar is a usage error that lists the grammar.
    for (args, needle) in [
        (&["run", "--npu", "nope"][..], "unknown NPU backend"),
        (&["run", "--npu", "opencl"][..], "that is a compute backend"),
        (&["run", "--compute", "cpu-fast:0"][..], "1..=1024"),
        (&["conformance", "--backend", "gpu"][..], "unknown backend"),
    ] {
        let (code, stdout, stderr) = shadowattn(args);
        assert_eq!(code, 2, "{args:?}");
        assert!(stdout.is_empty(), "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(stderr.contains("qnn[:htp[:<socModel>]]"), "{stderr}");
    }
}

#[test]
fn default_run_is_simulated_and_writes_a_perfetto_trace() {
    let dir = std::env::temp_dir().join(format!("shadowattn-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("layer.json");
    let (code, stdout, stderr) = shadowattn(&[
        "run",
        "--q-len",
        "16",
        "--kv-len",
        "96",
        "--head-dim",
        "32",
        "--cores",
        "2",
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("npu_backend: sim:snapdragon-8-gen-3"),
        "{stdout}"
    );
    let layer = value(&stdout, "sim_layer_ms");
    let npu = value(&stdout, "sim_npu_ms");
    assert!(layer >= npu && npu > 0.0, "{stdout}");
    // The four strategies side by side, and which wins.
    let times: Vec<f64> = [
        "sim_dense_cpu_ms",
        "sim_npu_full_int8_ms",
        "sim_npu_fp16_flash_ms",
        "sim_layer_ms",
    ]
    .iter()
    .map(|k| value(&stdout, k))
    .collect();
    assert!(times.iter().all(|t| t.is_finite() && *t > 0.0), "{stdout}");
    let fastest = stdout
        .lines()
        .find_map(|l| l.strip_prefix("sim_fastest: "))
        .unwrap_or_else(|| panic!("no sim_fastest in:\n{stdout}"));
    let names = ["c/g-full", "npu-full-int8", "npu-fp16-flash", "shadowattn"];
    let winner = fastest.split_whitespace().next().unwrap();
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let i = names.iter().position(|n| *n == winner).expect(fastest);
    assert_eq!(times[i], best, "{stdout}");
    // Each strategy's range over the unmeasured numbers holds its prediction, and the ranking
    // at both ends is printed.
    for (key, name) in [
        ("sim_dense_cpu_ms", "c_g_full"),
        ("sim_npu_full_int8_ms", "npu_full_int8"),
        ("sim_npu_fp16_flash_ms", "npu_fp16_flash"),
        ("sim_layer_ms", "shadowattn"),
    ] {
        let central = value(&stdout, key);
        let range = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("sim_{name}_range_ms: ")))
            .unwrap_or_else(|| panic!("no range of {name} in:\n{stdout}"));
        let b: Vec<f64> = range
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .take(2)
            .collect();
        assert!(
            b[0] <= central + 1e-3 && central <= b[1] + 1e-3,
            "{name}: {range}"
        );
    }
    assert!(stdout.contains("sim_ranking_at_fast_end: "), "{stdout}");
    assert!(stdout.contains("sim_ranking_at_slow_end: "), "{stdout}");
    assert!(
        stdout.contains("pilot launches priced as qnn-shared"),
        "{stdout}"
    );
    let json: String = std::fs::read_to_string(&trace).unwrap();
    assert!(
        json.contains("\"traceEvents\"") && json.contains("cpu1"),
        "{json}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn simulator_options_are_checked_before_any_work() {
    for (args, needle, exit) in [
        (&["run", "--cores", "9"][..], "--cores 9", 1),
        (&["run", "--core", "big"][..], "no core cluster `big`", 1),
        (
            &["run", "--npu", "sim:nowhere"][..],
            "unknown SoC profile",
            2,
        ),
        (
            &["run", "--npu", "sim:/nonexistent/x.toml"][..],
            "cannot read SoC profile",
            1,
        ),
        (
            &["run", "--npu", "cpu", "--trace", "/tmp/x.json"][..],
            "--trace needs",
            1,
        ),
        (
            &["run", "--npu", "cpu", "--pilot-path", "fastrpc"][..],
            "--launch-path and --pilot-path price a simulated SoC",
            1,
        ),
        (
            &["run", "--launch-path", "pcie"][..],
            "unknown launch path `pcie`",
            2,
        ),
    ] {
        let (code, stdout, stderr) = shadowattn(args);
        assert_eq!(code, exit, "{args:?}");
        assert!(stdout.is_empty(), "{args:?} did work first: {stdout}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn conformance_runs_compute_backends_too() {
    let (code, stdout, stderr) = shadowattn(&["conformance", "--backend", "cpu-fast:2:f16"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("conformance of cpu-fast:2:f16"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with(" 0 failed"), "{stdout}");
    assert!(
        stdout.contains("expectations: compute suite: built-in conformance-tests/expectations/compute/cpu-fast-2-f16.toml"),
        "{stdout}"
    );
}

#[test]
fn conformance_writes_the_expectations_a_new_backend_starts_from() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("written-expectations");
    let _ = std::fs::remove_dir_all(&dir);
    let (code, stdout, stderr) = shadowattn(&[
        "conformance",
        "--backend",
        "sim:sa8255",
        "--write-expectations",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let file = dir.join("npu/sim-sa8255.toml");
    assert!(stdout.contains("expectations written:"), "{stdout}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("backend = \"sim:sa8255\""), "{text}");
    // A file that expects a case to fail turns its pass into a failure of the suite.
    let stale = format!("{text}\n[known_failure.cast_f32_to_f16]\nreason = \"test\"\n");
    std::fs::write(&file, stale).unwrap();
    let (code, stdout, _) = shadowattn(&[
        "conformance",
        "--backend",
        "sim:sa8255",
        "--expectations",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("FAIL op/cast_f32_to_f16: unexpected pass"),
        "{stdout}"
    );
}

#[test]
fn run_on_qualcomms_htp_emulator() {
    let Some(lib) = qnn_emulator() else { return };
    let env = [("SHADOWATTN_QNN_LIB", lib.as_str())];
    let (code, stdout, stderr) = shadowattn_with(
        &[
            "run",
            "--npu",
            "qnn",
            "--q-heads",
            "4",
            "--kv-heads",
            "2",
            "--q-len",
            "16",
            "--kv-len",
            "64",
            "--head-dim",
            "32",
        ],
        &env,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("npu_backend: qnn:htp"), "{stdout}");
    assert!(value(&stdout, "topk_recall_mean") >= 0.85, "{stdout}");
    // HTP's capabilities have no INT32 MatMul output: asking for it is refused before any work.
    let (code, stdout, stderr) = shadowattn_with(
        &[
            "run",
            "--npu",
            "qnn",
            "--pilot-output",
            "i32",
            "--q-len",
            "16",
            "--kv-len",
            "64",
        ],
        &env,
    );
    assert_eq!(code, 1, "{stderr}");
    // (The emulator library itself prints a line to stdout when it loads.)
    assert!(!stdout.contains("npu_backend"));
    assert!(stderr.contains("has no INT32 output"), "{stderr}");
}

#[test]
fn run_through_the_neuron_backend_and_its_simulator_shim() {
    let target = shadowattn_test_support::target_dir(env!("CARGO_TARGET_TMPDIR"));
    let shim = shadowattn_test_support::neuron_shim(&target).unwrap();
    let (code, stdout, stderr) = shadowattn_with(
        &[
            "run",
            "--npu",
            "neuron",
            "--q-heads",
            "4",
            "--kv-heads",
            "2",
            "--q-len",
            "16",
            "--kv-len",
            "64",
            "--head-dim",
            "32",
        ],
        &[("SHADOWATTN_NEURON_LIB", shim.to_str().unwrap())],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("npu_backend: neuron Neuron runtime 8.2.0"),
        "{stdout}"
    );
    assert!(value(&stdout, "topk_recall_mean") >= 0.85, "{stdout}");
}

#[test]
fn run_on_opencl_matches_the_cpu_and_writes_the_gpu_timeline() {
    let (code, devices, _) = shadowattn(&["devices"]);
    assert_eq!(code, 0);
    if !devices.contains("opencl:0:0\tavailable") {
        shadowattn_test_support::missing_dependency(
            "an OpenCL platform",
            "install PoCL with `bash ci/opencl.sh`",
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("shadowattn-opencl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("gpu.json");
    // The even rule: its top-k runs on the GPU (a mass split's selection runs on the host).
    let common = [
        "run",
        "--q-len",
        "16",
        "--kv-len",
        "96",
        "--head-dim",
        "32",
        "--split",
        "even",
    ];
    let (code, cpu, stderr) = shadowattn(&common);
    assert_eq!(code, 0, "{stderr}");
    let mut args = common.to_vec();
    args.extend([
        "--compute",
        "opencl:0:0",
        "--compute-trace",
        trace.to_str().unwrap(),
    ]);
    let (code, gpu, stderr) = shadowattn(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(gpu.contains("compute_backend: opencl"), "{gpu}");
    // Same selections (top-k is exact on every backend), outputs within float tolerance.
    assert_eq!(
        value(&gpu, "topk_recall_mean"),
        value(&cpu, "topk_recall_mean")
    );
    assert!((value(&gpu, "cosine_mean") - value(&cpu, "cosine_mean")).abs() < 1e-5);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let text = json.to_string();
    for kernel in ["quantize_heads", "topk_rows", "attend", "(queued)"] {
        assert!(text.contains(kernel), "{kernel} missing from the timeline");
    }
    // The CPU kernels record nothing: asking for their timeline is a clear error.
    let (code, _, stderr) = shadowattn(&["run", "--compute-trace", trace.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(stderr.contains("records no events"), "{stderr}");
    let (code, _, stderr) = shadowattn(&["run", "--compute", "opencl:0:0:7"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("opencl:<platform>:<device>"), "{stderr}");
    let (code, _, stderr) = shadowattn(&["run", "--compute", "opencl:no-such-platform"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no OpenCL device matches"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
