//! `shadowattn calibrate --model <gguf> --text <file>`: a porting user's calibration of their own
//! model, on SmolLM2-135M and a slice of real text small enough for CI (windows of 24 tokens);
//! the very file `eval --calibration-out` writes on the same options; the file read back by
//! `eval`, `run` and `prefill`; and each refusal, naming its problem. The model comes from
//! `bash ci/model.sh`; its tests skip locally with a reason when it is absent and fail in CI.

mod common;
use common::shadowattn;
use shadowattn_models::{Gguf, ModelConfig};
use shadowattn_sparse_attn::calibration::Calibration;
use shadowattn_test_support::{smollm2_or_skip, target_dir};
use std::path::{Path, PathBuf};

const TEXT: &str = "/usr/share/common-licenses/Apache-2.0";

/// The calibration options of every real-model run here: one window of 24 tokens.
const SMALL: [&str; 4] = ["--calibration-window", "24", "--calibration-windows", "1"];

fn model() -> Option<PathBuf> {
    smollm2_or_skip(&target_dir(env!("CARGO_TARGET_TMPDIR")))
}

/// A fresh folder for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("calibrate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `shadowattn args`, requiring success; its stdout.
fn ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = shadowattn(args);
    assert_eq!(code, 0, "{args:?}: {stderr}\n{stdout}");
    stdout
}

/// Runs `shadowattn args`, requiring it to fail with exit code `code` and nothing on stdout;
/// its stderr.
fn refused(args: &[&str], code: i32) -> String {
    let (got, stdout, stderr) = shadowattn(args);
    assert_eq!(got, code, "{args:?}: {stderr}\n{stdout}");
    assert!(stdout.is_empty(), "{args:?}: {stdout}");
    stderr
}

/// `calibrate --model <model> --text TEXT --out <out>` with `extra`.
fn calibrate(model: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "calibrate",
        "--model",
        path(model),
        "--text",
        TEXT,
        "--out",
        path(out),
    ];
    args.extend(extra);
    ok(&args)
}

/// The value of `key: ` in `stdout`.
fn line<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no `{key}` in:\n{stdout}"))
}

/// The table rows `(allocation, ranking, ppl, vs_dense)` of `eval`'s stdout.
fn rows(stdout: &str) -> Vec<[String; 4]> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("ratio\t"))
        .skip(1)
        .take_while(|l| !l.starts_with("elapsed_s"))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            [f[1], f[2], f[3], f[4]].map(String::from)
        })
        .collect()
}

#[test]
fn calibrate_writes_the_models_calibration_with_its_shape_and_mass_ratios() {
    let Some(model) = model() else {
        return;
    };
    let dir = scratch("model");
    let out = dir.join("cal.json");
    let mut extra = SMALL.to_vec();
    extra.extend(["--name", "my-port", "--split", "even"]);
    let stdout = calibrate(&model, &out, &extra);
    let c = ModelConfig::from_gguf(&Gguf::open(&model).unwrap()).unwrap();
    let file = Calibration::load(&out, None).unwrap();
    let m = &file.model;
    assert_eq!(m.name, "my-port");
    assert_eq!(
        [m.layers, m.q_heads, m.kv_heads, m.head_dim],
        [c.layers, c.q_heads, c.kv_heads, c.head_dim]
    );
    assert_eq!(file.ratios.len(), c.layers);
    assert!(file.ratios.iter().all(|l| l.len() == c.q_heads));
    // The `mass` rule per GQA group at 20 %: the ratios average the target, the heads of a
    // group share their group's ratio, and the groups differ (not the uniform base).
    let all: Vec<f32> = file.ratios.iter().flatten().copied().collect();
    let mean = all.iter().sum::<f32>() / all.len() as f32;
    assert!((mean - 0.2).abs() < 1e-3, "mean ratio {mean}");
    let group = c.q_heads / c.kv_heads;
    for layer in &file.ratios {
        for heads in layer.chunks(group) {
            assert!(heads.iter().all(|&r| r == heads[0]), "{layer:?}");
        }
    }
    let (min, max) = all
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    assert!(max > 2.0 * min, "ratios {min}..{max}: no allocation");
    // The floor, 10 % of the mean, recorded with the mean.
    assert!((file.ratio_config.global_ratio - 0.2).abs() < 1e-6);
    assert!((file.ratio_config.min_ratio - 0.02).abs() < 1e-6);
    assert!(min >= file.ratio_config.min_ratio, "{min}");
    // The tuned INT8 output range, centered keys (the default) and the budget flags.
    assert!(file.pilot_acc_range.is_some_and(|r| r > 0.0));
    assert!(file.center_keys);
    assert_eq!(file.budget.split, shadowattn_hal::RowSplit::Even);
    // The summary: model, shape, tokens used, the spread, where the file went.
    assert!(
        line(&stdout, "model").starts_with(&format!(
            "my-port ({} layers, {} query / {} KV heads, head_dim {}",
            c.layers, c.q_heads, c.kv_heads, c.head_dim
        )),
        "{stdout}"
    );
    let tokens = line(&stdout, "tokens");
    assert!(tokens.starts_with("24 of the "), "{stdout}");
    assert!(
        tokens.contains(&format!(" of {TEXT} (1 windows of up to 24;")),
        "{stdout}"
    );
    assert!(
        line(&stdout, "ratios").starts_with(&format!("per-group:mass; mean 0.2000, min {min:.4}")),
        "{stdout}"
    );
    assert!(line(&stdout, "ratios").contains(&format!("max {max:.4}")));
    assert_eq!(
        line(&stdout, "calibration_file"),
        format!("{} (ratios: per-group:mass at 20 %)", out.display())
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn calibrate_and_eval_calibration_out_write_the_same_file() {
    let Some(model) = model() else {
        return;
    };
    let dir = scratch("same");
    // The defaults, and every shared option away from its default.
    for (name, options) in [
        ("defaults", vec![]),
        (
            "options",
            vec![
                "--selection",
                "head",
                "--min-ratio-fraction",
                "0.3",
                "--center-keys",
                "false",
                "--mass-window",
                "32",
                "--min-keys",
                "2",
                "--split",
                "top-p",
                "--sinks",
                "1",
            ],
        ),
    ] {
        let (from_eval, from_calibrate) = (
            dir.join(format!("{name}-eval.json")),
            dir.join(format!("{name}-calibrate.json")),
        );
        let mut eval = vec![
            "eval",
            "--model",
            path(&model),
            "--window",
            "32",
            "--max-windows",
            "1",
            "--ratios",
            "0.2",
            "--allocations",
            "mass",
            "--rankings",
            "pilot-i8",
            "--calibration-out",
            path(&from_eval),
        ];
        eval.extend(SMALL);
        eval.extend(&options);
        ok(&eval);
        let mut extra = SMALL.to_vec();
        extra.extend(&options);
        calibrate(&model, &from_calibrate, &extra);
        let (a, b) = (
            std::fs::read_to_string(&from_eval).unwrap(),
            std::fs::read_to_string(&from_calibrate).unwrap(),
        );
        if let Some((n, (x, y))) = a
            .lines()
            .zip(b.lines())
            .enumerate()
            .find(|(_, (x, y))| x != y)
        {
            panic!(
                "{name}: line {} differs: eval `{x}`, calibrate `{y}`",
                n + 1
            );
        }
        assert_eq!(a, b, "{name}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn eval_prefill_and_run_read_the_file_instead_of_calibrating() {
    let Some(model) = model() else {
        return;
    };
    let dir = scratch("read");
    let out = dir.join("cal.json");
    calibrate(&model, &out, &SMALL);
    let window = ["--window", "32", "--max-windows", "1"];
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--model", path(&model), "--rankings", "pilot-i8"];
        args.extend(window);
        args.extend(extra);
        ok(&args)
    };
    // `eval` calibrating on the text gives its `mass` row at 20 % the perplexity `eval
    // --calibration` gives the file's own ratios.
    let mut calibrating = vec!["--ratios", "0.2", "--allocations", "mass"];
    calibrating.extend(SMALL);
    let made = eval(&calibrating);
    let given = eval(&["--calibration", path(&out)]);
    assert!(!given.contains("accumulator_range:"), "{given}");
    assert!(!given.contains("mass_curves:"), "{given}");
    let (made, given) = (rows(&made), rows(&given));
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(given.len(), 1, "{given:?}");
    assert_eq!(made[0][0], "per-group:mass");
    assert_eq!(given[0][0], "file");
    assert_eq!(made[0][2], given[0][2]);
    // The file's ratios are what runs: all 1 is dense attention.
    let mut dense = Calibration::load(&out, None).unwrap();
    for r in dense.ratios.iter_mut().flatten() {
        *r = 1.0;
    }
    let all = dir.join("all.json");
    dense.save(&all).unwrap();
    let kept = rows(&eval(&["--calibration", path(&all)]));
    assert_eq!(kept[0][3], "+0.00%", "{kept:?}");
    // `prefill` prices the file's ratios; `run` simulates one of its layers.
    let p = ok(&[
        "prefill",
        "--model",
        path(&model),
        "--calibration",
        path(&out),
        "--len",
        "256",
    ]);
    assert!(p.contains("shadow_ttft_ms: "), "{p}");
    ok(&[
        "run",
        "--calibration",
        path(&out),
        "--q-heads",
        "9",
        "--kv-heads",
        "3",
        "--head-dim",
        "64",
        "--layer",
        "7",
        "--q-len",
        "16",
        "--kv-len",
        "96",
    ]);
    std::fs::remove_dir_all(&dir).ok();
}

/// A calibration of another shape is refused by every command, naming both shapes.
#[test]
fn a_calibration_of_another_shape_is_refused_naming_both() {
    let dir = scratch("shape");
    let file = dir.join("synthetic.json");
    ok(&[
        "calibrate",
        "--out",
        path(&file),
        "--layers",
        "2",
        "--q-heads",
        "9",
        "--kv-heads",
        "3",
        "--head-dim",
        "64",
        "--name",
        "tiny",
    ]);
    assert_eq!(Calibration::load(&file, None).unwrap().model.name, "tiny");
    let e = refused(&["run", "--calibration", path(&file)], 1);
    assert!(
        e.contains(&format!(
            "{}: calibrates `tiny` with 9 query / 3 KV heads of head_dim 64, the chunk `run` simulates has 12 / 2 heads of 128: run it with --q-heads 9 --kv-heads 3 --head-dim 64",
            file.display()
        )),
        "{e}"
    );
    let e = refused(
        &[
            "run",
            "--calibration",
            path(&file),
            "--q-heads",
            "9",
            "--kv-heads",
            "3",
            "--head-dim",
            "64",
            "--layer",
            "2",
        ],
        1,
    );
    assert!(e.contains("--layer 2: "), "{e}");
    assert!(e.contains("calibrates layers 0 to 1 of `tiny`"), "{e}");
    let e = refused(
        &[
            "prefill",
            "--shape",
            "qwen2-1.5b",
            "--calibration",
            path(&file),
        ],
        1,
    );
    assert!(
        e.contains("calibrates 2 layers of 9 query / 3 KV heads of 64, the model has 28 layers of 12 / 2 heads of 128"),
        "{e}"
    );
    if let Some(model) = model() {
        // Before the weights load: a model of 30 layers.
        let e = refused(
            &[
                "eval",
                "--model",
                path(&model),
                "--calibration",
                path(&file),
            ],
            1,
        );
        assert!(
            e.contains("calibrates 2 layers of 9 query / 3 KV heads of 64, the model has 30 layers of 9 / 3 heads of 64"),
            "{e}"
        );
    }
    // `eval --calibration` does not calibrate: the calibration options are refused with it.
    for option in [
        &["--ratios", "0.1"][..],
        &["--allocations", "mass"],
        &["--calibration-window", "64"],
        &["--center-keys", "false"],
        &["--calibration-out", "x.json"],
    ] {
        let mut args = vec!["eval", "--model", "m.gguf", "--calibration", path(&file)];
        args.extend(option);
        let e = refused(&args, 2);
        assert!(e.contains("cannot be used with"), "{option:?}: {e}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Every refusal of `calibrate` names its problem, exits 1 and writes no file.
#[test]
fn calibrate_refuses_each_problem_by_name() {
    let dir = scratch("errors");
    let out = dir.join("never.json");
    let o = path(&out);
    let not_gguf = dir.join("not.gguf");
    std::fs::write(&not_gguf, "plain text, no GGUF magic").unwrap();
    let missing = dir.join("missing.gguf");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--text", TEXT],
            "--text needs --model: the text calibrates a model (a GGUF file); without --model, `calibrate` makes a synthetic calibration".into(),
        ),
        (
            vec!["--model", path(&not_gguf)],
            "--model needs --text".into(),
        ),
        (
            vec!["--model", path(&not_gguf), "--text", TEXT, "--layers", "3", "--seed", "2"],
            "--layers, --seed belong to the synthetic calibration (without --model); with --model the layers, heads and samples come from the model file".into(),
        ),
        (
            vec!["--model", path(&not_gguf), "--text", TEXT, "--head-dim", "32"],
            "--head-dim belongs to the synthetic calibration".into(),
        ),
        (
            vec!["--model", path(&missing), "--text", TEXT],
            format!("--model {}: cannot read the file: ", missing.display()),
        ),
        (
            vec!["--model", path(&not_gguf), "--text", TEXT],
            format!(
                "--model {}: not a GGUF model this tool runs (Llama, Qwen2 or Phi-3): GGUF at byte 0: not a GGUF file",
                not_gguf.display()
            ),
        ),
    ];
    for (args, needle) in cases {
        let mut full = vec!["calibrate", "--out", o];
        full.extend(&args);
        let e = refused(&full, 1);
        assert!(e.starts_with("error: "), "{args:?}: {e}");
        assert!(e.contains(&needle), "{args:?}: {e}");
        assert!(!out.exists(), "{args:?}");
    }
    // The options of a model's calibration mean nothing without one: a usage error.
    for option in [
        &["--calibration-window", "64"][..],
        &["--selection", "head"],
    ] {
        let mut full = vec!["calibrate", "--out", o];
        full.extend(option);
        let e = refused(&full, 2);
        assert!(e.contains("--model <MODEL>"), "{option:?}: {e}");
    }
    let Some(model) = model() else {
        return;
    };
    let m = path(&model);
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let short = dir.join("short.txt");
    std::fs::write(
        &short,
        "A calibration text of a dozen words or so, far from a window.",
    )
    .unwrap();
    let no_text = dir.join("missing.txt");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--text", path(&empty)],
            format!("--text {}: the text is empty", empty.display()),
        ),
        (
            vec!["--text", path(&short)],
            format!(
                "--text {}: 15 tokens, shorter than one calibration window (--calibration-window 256 takes 256 tokens of text)",
                short.display()
            ),
        ),
        (
            vec!["--text", path(&short), "--calibration-window", "8", "--mass-window", "64"],
            "15 tokens, shorter than one calibration window (--mass-window 64 takes 64 tokens of text)".into(),
        ),
        (
            vec!["--text", path(&no_text)],
            format!("--text {}: cannot read the text: ", no_text.display()),
        ),
        // Past the context length, before the weights load.
        (
            vec!["--text", TEXT, "--calibration-window", "8193"],
            "--calibration-window 8193 is past the model's context length of 8192 tokens (from the GGUF metadata `llama.context_length`)".into(),
        ),
        (
            vec!["--text", TEXT, "--mass-window", "9000"],
            "--mass-window 9000 is past the model's context length of 8192 tokens".into(),
        ),
    ];
    for (args, needle) in cases {
        let mut full = vec!["calibrate", "--out", o, "--model", m];
        full.extend(&args);
        let e = refused(&full, 1);
        assert!(e.contains(&needle), "{args:?}: {e}");
        assert!(!out.exists(), "{args:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
