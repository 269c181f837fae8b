//! What the `shadowattn` binary's integration tests share: running the binary, reading its
//! `--plot` charts ([`svg`]), tiny models of every architecture ([`tiny_model`]), and finding
//! Qualcomm's emulator for the tests that need it.

// Each test binary includes this module and uses only some of it.
#![allow(dead_code)]

use std::process::Command;

/// Runs `shadowattn` with `args`: its exit code (-1 when a signal ended it), stdout and stderr.
pub fn shadowattn(args: &[&str]) -> (i32, String, String) {
    shadowattn_with(args, &[])
}

/// [`shadowattn`] with environment variables set for the run (a vendor library's path).
pub fn shadowattn_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shadowattn"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Qualcomm's HTP emulator, or `None` after reporting it missing (a failure under `CI=true`).
pub fn qnn_emulator() -> Option<String> {
    let target = shadowattn_test_support::target_dir(env!("CARGO_TARGET_TMPDIR"));
    shadowattn_test_support::qnn_emulator_or_skip(&target)
}

pub mod svg;
pub mod tiny_model;
