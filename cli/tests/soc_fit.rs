//! `qnn-estimates`, `soc fit` and `soc check` on Qualcomm's emulator (socModel 52 has a cost
//! model in it): the emulator's own numbers, a fit on the small grid, typed failures.

mod common;
use common::{qnn_emulator, shadowattn_with};

/// `shadowattn` on Qualcomm's emulator at `lib`.
fn shadowattn(lib: &str, args: &[&str]) -> (i32, String, String) {
    shadowattn_with(args, &[("SHADOWATTN_QNN_LIB", lib)])
}

#[test]
fn qnn_estimates_reads_qualcomms_cost_model_for_any_grid() {
    let Some(lib) = qnn_emulator() else { return };
    // The reference notes' anchor: FP16 [64,128]x[128,512] + Softmax on socModel 52.
    let grid = [
        "qnn-estimates",
        "--soc-model",
        "52",
        "--dtype",
        "f16",
        "--softmax",
        "--m",
        "64",
        "--k",
        "128",
        "--n",
        "512",
    ];
    let (code, stdout, stderr) = shadowattn(&lib, &grid);
    assert_eq!(code, 0, "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| 52 | f16 matmul +softmax h1 m64 k128 n512 |"))
        .unwrap_or_else(|| panic!("the anchor row: {stdout}"));
    assert!(row.contains("48002 [45179, 51201]"), "{row}");
    // JSON is the whole of stdout (the emulator's own stdout notice goes to stderr).
    let (code, stdout, stderr) = shadowattn(
        &lib,
        &[&grid[..], &["--json", "--second", "static"]].concat(),
    );
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"));
    let row = &json[0];
    assert_eq!(row["graph"], "f16 matmul static +softmax h1 m64 k128 n512");
    let qnn = row["qnn_cycles"].as_f64().unwrap();
    let sim = row["simulator_cycles"].as_f64().unwrap();
    assert!(qnn > 1000.0 && sim > 1000.0, "{row}");
    assert!(
        (row["log_error"].as_f64().unwrap() - (sim / qnn).ln()).abs() < 1e-9,
        "{row}"
    );
}

#[test]
fn soc_fit_writes_a_profile_that_beats_its_base_and_validates_it() {
    let Some(lib) = qnn_emulator() else { return };
    let dir = std::env::temp_dir().join(format!("shadowattn-soc-fit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out_path = dir.join("fitted.toml");
    let (code, stdout, stderr) = shadowattn(
        &lib,
        &[
            "soc",
            "fit",
            "--soc-model",
            "52",
            "--base",
            "snapdragon-8-gen-3",
            "--grid",
            "small",
            "--name",
            "my-sa8255",
            "--out",
            out_path.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"));
    let held = json["held_out_families"].as_array().unwrap();
    let small_grid: usize = shadowattn_simulator::fit::vendor::fit_families(
        shadowattn_simulator::fit::vendor::GridSize::Small,
    )
    .iter()
    .map(|f| f.specs.len())
    .sum();
    assert!(held.len() >= 5, "{json}");
    assert_eq!(held.last().unwrap()["family"], "all");
    // The written profile loads, names what it was fitted to, and marks what it copied.
    let fitted = std::fs::read_to_string(&out_path).unwrap();
    assert!(fitted.contains("name = \"my-sa8255\""), "{fitted}");
    assert!(
        fitted.contains("fixed_cycles = { value = ")
            && fitted.contains(&format!("derived: fitted by `shadowattn soc fit` to {small_grid} QNN cost-model estimates (socModel 52")),
        "{fitted}"
    );
    assert!(
        fitted.contains("source = \"assumption: copied from snapdragon-8-gen-3 ("),
        "{fitted}"
    );
    assert!(
        fitted.contains("clock_ghz = { value = 1.5"),
        "QNN's cycles per µs: {fitted}"
    );
    // [numerics] and [limits] are what the probe measured on socModel 52, not the base's.
    let profile = shadowattn_simulator::SocProfile::load(&out_path).unwrap();
    assert_eq!(
        profile.numerics.integer_rounding,
        shadowattn_simulator::npu::numerics::IntegerRounding::HtpV73
    );
    assert!(profile.numerics.f32_as_f16);
    assert!(
        profile
            .numerics
            .source
            .contains("with socModel 52: integer rounding htp-v73: equals every output"),
        "{}",
        profile.numerics.source
    );
    assert_eq!(
        profile.limits.refused(),
        [
            "int32_matmul_output",
            "requantize_from_int32",
            "softmax_any_axis"
        ]
    );
    assert_eq!(
        json["numerics_probe"]["decision"]["integer_rounding"],
        "htp-v73"
    );
    // The fit improves on its base over the fit's own graphs.
    let median = |rows: &serde_json::Value| {
        let all = rows.as_array().unwrap().last().unwrap();
        assert_eq!(all["family"], "all");
        all["median_abs_log_error"].as_f64().unwrap()
    };
    let fitted_error = median(&json["fit_families"]);
    let base_error = median(&json["fit_families_with_the_base"]);
    assert!(
        fitted_error < base_error,
        "fit graphs' median |log error|: fitted {fitted_error} vs base {base_error}"
    );
    // `soc check` of the written profile computes the same held-out table the fit printed.
    let (code, stdout, stderr) = shadowattn(
        &lib,
        &[
            "soc",
            "check",
            "--soc-model",
            "52",
            "--soc",
            out_path.to_str().unwrap(),
            "--grid",
            "small",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let check: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let (a, b) = (
        median(&check["held_out_families"]),
        median(&json["held_out_families"]),
    );
    // The written profile rounds its numbers to 5 significant digits.
    assert!((a - b).abs() < 1e-3, "soc check {a} vs soc fit {b}");
    // The table form names every held-out family.
    let (code, stdout, stderr) = shadowattn(
        &lib,
        &[
            "soc",
            "check",
            "--soc-model",
            "52",
            "--soc",
            "sa8255",
            "--grid",
            "small",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    for family in [
        "u8 MatMul (asymmetric), STATIC",
        "f32 MatMul (computed in f16), dynamic",
        "| all |",
    ] {
        assert!(stdout.contains(family), "{family}: {stdout}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_soc_without_a_cost_model_or_a_bad_base_is_a_clear_error() {
    let Some(lib) = qnn_emulator() else { return };
    let out_path = std::env::temp_dir().join("shadowattn-never-written.toml");
    // socModel 30 (SM8350) compiles but has no estimates in the emulator.
    let (code, _, stderr) = shadowattn(
        &lib,
        &[
            "soc",
            "fit",
            "--soc-model",
            "30",
            "--grid",
            "small",
            "--out",
            out_path.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("socModel 30 has no cost model"), "{stderr}");
    assert!(stderr.contains("52, 62, 63, 72, 77, 95, 114"), "{stderr}");
    assert!(!out_path.exists());
    let (code, _, stderr) = shadowattn(
        &lib,
        &[
            "soc",
            "fit",
            "--soc-model",
            "52",
            "--base",
            "no-such-soc",
            "--out",
            out_path.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("unknown SoC profile `no-such-soc`"),
        "{stderr}"
    );
}

/// `soc numerics` runs the probe `soc fit` writes into `[numerics]` and `[limits]`, on three
/// socModels that differ: 52 (V73), 62 (V68: neither rounding rule) and 95 (no FP16).
#[test]
fn soc_numerics_probes_what_each_soc_model_computes_and_refuses() {
    let Some(lib) = qnn_emulator() else { return };
    let probe = |model: &str| {
        let (code, stdout, stderr) =
            shadowattn(&lib, &["soc", "numerics", "--soc-model", model, "--json"]);
        assert_eq!(code, 0, "{stderr}");
        let json: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"));
        json["decision"].clone()
    };
    let d = probe("52");
    assert_eq!(d["integer_rounding"], "htp-v73", "{d}");
    assert_eq!(d["f32_as_f16"], true, "{d}");
    assert_eq!(d["limits"]["float_ops"], true, "{d}");
    let d = probe("62");
    assert_eq!(d["integer_rounding"], "golden", "{d}");
    let source = d["numerics_source"].as_str().unwrap();
    assert!(
        source.contains("golden (nearest; neither rule equals every output)"),
        "{source}"
    );
    assert_eq!(d["f32_as_f16"], true, "{d}");
    let d = probe("95");
    assert_eq!(d["limits"]["float_ops"], false, "{d}");
    let limits = d["limits_source"].as_str().unwrap();
    assert!(
        limits.contains("The SocModel doesn't support FP16"),
        "{limits}"
    );
    assert!(
        limits.contains("accepts f32 Transpose, f32 Reshape"),
        "{limits}"
    );
    assert_eq!(d["f32_as_f16"], false, "{d}");
    let source = d["numerics_source"].as_str().unwrap();
    assert!(
        source.contains("not measured: no f32 probe ran"),
        "{source}"
    );
}
