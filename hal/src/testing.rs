//! Test policy shared by every crate: an optional dependency (Qualcomm's emulator, the model,
//! PoCL) may be absent on a developer's machine, where its tests skip with one line; in CI
//! (`CI=true`) a missing dependency is a failure.

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

/// Path of a `cdylib` built from workspace package `package` (library file `lib<name>.so`),
/// building it with cargo into `<target>/test-cdylibs` when it is not there yet. `target` is
/// the workspace's target directory.
pub fn cdylib(
    target: &std::path::Path,
    package: &str,
    name: &str,
) -> Result<std::path::PathBuf, String> {
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
