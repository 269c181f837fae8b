//! What shadowattn's tests share, for dev-dependencies only (it runs `cargo build`, which no
//! library user wants): the policy for optional test dependencies, fuzz case counts, where
//! the test libraries and Qualcomm's emulator are, and the kernel tests' numeric helpers
//! ([`noise`], [`close`]).
//!
//! An optional dependency (Qualcomm's emulator, the model, PoCL) may be absent on a developer's
//! machine, where its tests skip with one line; in CI (`CI=true`) a missing dependency is a
//! failure.

use std::path::{Path, PathBuf};

#[cfg(feature = "fake-npu")]
pub mod counting_npu;
#[cfg(feature = "fake-npu")]
pub mod fake_npu;
mod numeric;
pub use numeric::{close, close_f32, noise};

/// Whether this process runs in CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Cases of a fuzz property: `PROPTEST_CASES` for a long run, else the CI default.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reports a missing test dependency: panics in CI, prints a one-line skip reason elsewhere.
/// The caller returns from the test after it.
pub fn missing_dependency(dependency: &str, reason: &str) {
    if in_ci() {
        panic!("{dependency} is required in CI but is missing: {reason}");
    }
    eprintln!("skipped: {dependency} is missing ({reason})");
}

/// The workspace's target directory, from an integration test's `CARGO_TARGET_TMPDIR`
/// (`<target>/tmp`): call as `target_dir(env!("CARGO_TARGET_TMPDIR"))`.
pub fn target_dir(cargo_target_tmpdir: &str) -> PathBuf {
    let tmp = Path::new(cargo_target_tmpdir);
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

/// Path of a `cdylib` built from workspace package `package` (library file `lib<name>.so`),
/// building it with cargo into `<target>/test-cdylibs` when it is not there yet.
pub fn cdylib(target: &Path, package: &str, name: &str) -> Result<PathBuf, String> {
    let file = format!("lib{name}.so");
    let prebuilt = target.join("debug").join(&file);
    if prebuilt.exists() {
        return Ok(prebuilt);
    }
    let dir = target.join("test-cdylibs");
    let built = dir.join("debug").join(&file);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--target-dir"])
        .arg(&dir)
        .status()
        .map_err(|e| format!("cannot run cargo to build {package}: {e}"))?;
    if !status.success() || !built.exists() {
        return Err(format!("building {package} failed ({status})"));
    }
    Ok(built)
}

/// The simulator-backed Neuron shim (`test-doubles/neuron-shim`), built when missing.
pub fn neuron_shim(target: &Path) -> Result<PathBuf, String> {
    cdylib(target, "shadowattn-neuron-shim", "shadowattn_neuron_shim")
}

/// The fake QNN library that fails on demand (`test-doubles/qnn-fake`), built when missing.
pub fn qnn_fake(target: &Path) -> Result<PathBuf, String> {
    cdylib(target, "shadowattn-qnn-fake", "shadowattn_qnn_fake")
}

/// Environment variable naming the QNN library (read by the QNN loader too).
const QNN_LIB: &str = "SHADOWATTN_QNN_LIB";

/// [`qnn_emulator`]'s path as text, or `None` after reporting the missing dependency (a
/// failure under `CI=true`, see [`missing_dependency`]).
pub fn qnn_emulator_or_skip(target: &Path) -> Option<String> {
    let path = qnn_emulator(target).map(|p| p.display().to_string());
    if path.is_none() {
        missing_dependency("Qualcomm HTP emulator", "run `bash ci/qnn-emulator.sh`");
    }
    path
}

/// Qualcomm's HTP emulator: `SHADOWATTN_QNN_LIB` if set, else the copy `ci/qnn-emulator.sh`
/// caches under `<target>/qnn-emulator/`, if it is there.
pub fn qnn_emulator(target: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(QNN_LIB) {
        return Some(PathBuf::from(p));
    }
    let cached = target.join("qnn-emulator/onnxruntime_qnn/libQnnHtp.so");
    cached.exists().then_some(cached)
}

/// SmolLM2-135M-Instruct (Q4_1 GGUF): `SHADOWATTN_MODEL` if set, else the copy `ci/model.sh`
/// caches under `<target>/model/`; reports it missing (a failure in CI) when it is not there.
pub fn smollm2_or_skip(target: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("SHADOWATTN_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("model/SmolLM2-135M-Instruct.Q4_1.gguf"));
    if path.exists() {
        Some(path)
    } else {
        missing_dependency(
            "the SmolLM2 model",
            "run `bash ci/model.sh` or set SHADOWATTN_MODEL",
        );
        None
    }
}
