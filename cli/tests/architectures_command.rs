//! A porting user's whole path on models other than SmolLM2: `calibrate --model`, then `eval`
//! and `prefill` with `--calibration`, on tiny random-weight Qwen2 (biases, byte-level BPE) and
//! Phi-3 (fused weights, SentencePiece) files written here. The forward pass of each
//! architecture is checked against a float64 reference in `models/tests/architectures.rs`;
//! these check that every command reads them.

mod common;

use common::shadowattn;
use common::tiny_model::{self, Arch, SHAPE};
use shadowattn_sparse_attn::calibration::Calibration;
use std::path::PathBuf;

const TEXT: &str = "/usr/share/common-licenses/Apache-2.0";

fn ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = shadowattn(args);
    assert_eq!(code, 0, "{args:?}: {stderr}\n{stdout}");
    stdout
}

fn line<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no `{key}` in:\n{stdout}"))
}

fn calibrate_eval_and_prefill(arch: Arch) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("arch-{arch:?}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("tiny.gguf");
    tiny_model::write(arch, &model, 7);
    let (model, out) = (model.to_str().unwrap(), dir.join("cal.json"));
    let out = out.to_str().unwrap();
    let small = ["--calibration-window", "48", "--calibration-windows", "1"];
    let mut args = vec!["calibrate", "--model", model, "--text", TEXT, "--out", out];
    args.extend(small);
    let stdout = ok(&args);
    assert!(
        stdout.contains(&format!("tiny-{}", format!("{arch:?}").to_lowercase())),
        "{stdout}"
    );
    let file = Calibration::load(std::path::Path::new(out), None).unwrap();
    let (layers, q_heads, kv_heads) = SHAPE;
    let m = &file.model;
    assert_eq!(
        (m.layers, m.q_heads, m.kv_heads, m.head_dim),
        (layers, q_heads, kv_heads, 16)
    );
    let mean = file.ratios.iter().flatten().sum::<f32>() / (layers * q_heads) as f32;
    assert!((mean - 0.2).abs() < 0.02, "mean ratio {mean}");
    let eval = ok(&[
        "eval",
        "--model",
        model,
        "--calibration",
        out,
        "--window",
        "48",
        "--max-windows",
        "1",
        "--rankings",
        "pilot-i8",
    ]);
    // Random weights over a 256-byte (or 259-token) vocabulary: a perplexity near the
    // vocabulary's size, finite.
    let dense: f64 = line(&eval, "ppl_dense")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        dense.is_finite() && dense > 50.0 && dense < 2000.0,
        "{eval}"
    );
    let prefill = ok(&[
        "prefill",
        "--model",
        model,
        "--calibration",
        out,
        "--len",
        "64",
    ]);
    assert!(prefill.contains("shadow_ttft_ms: "), "{prefill}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_qwen2_model_calibrates_evaluates_and_prefills() {
    calibrate_eval_and_prefill(Arch::Qwen2);
}

#[test]
fn a_phi3_model_calibrates_evaluates_and_prefills() {
    calibrate_eval_and_prefill(Arch::Phi3);
}
