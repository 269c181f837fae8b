//! The conformance suite as tests: one test per (backend, case), named
//! `<backend>::<group>::<case>`, for `cargo test` and `cargo nextest` (shardable with
//! `--partition hash:k/n`), on every NPU backend of the registry's list: `cpu`, `sim:<profile>`
//! for every built-in profile, `qnn:htp` on Qualcomm's emulator and `neuron` through the
//! simulator shim (both required in CI, skipped locally with a reason when absent).

use libtest_mimic::{Arguments, Failed, Trial};
use shadowattn_conformance::{all_cases, run_case, Status};
use shadowattn_registry::{npu_backends, NpuSpec, OpenOptions};
use shadowattn_test_support::{in_ci, missing_dependency, neuron_shim, qnn_emulator, target_dir};
use std::sync::Arc;

/// Every NPU backend that can run here, with the libraries the vendor ones load.
fn backends() -> Vec<(NpuSpec, OpenOptions)> {
    let target = target_dir(env!("CARGO_TARGET_TMPDIR"));
    let mut options = OpenOptions::default();
    let mut list = Vec::new();
    for spec in npu_backends() {
        match &spec {
            NpuSpec::Qnn { .. } => match qnn_emulator(&target) {
                Some(lib) => options.qnn_library = Some(lib),
                None => {
                    missing_dependency(
                        "Qualcomm HTP emulator",
                        "run `bash ci/qnn-emulator.sh` or set SHADOWATTN_QNN_LIB",
                    );
                    continue;
                }
            },
            NpuSpec::Neuron => match neuron_shim(&target) {
                Ok(shim) => options.neuron_library = Some(shim),
                Err(e) => {
                    missing_dependency("Neuron simulator shim", &e);
                    continue;
                }
            },
            NpuSpec::Cpu | NpuSpec::Sim(_) => {}
        }
        list.push(spec);
    }
    list.into_iter().map(|s| (s, options.clone())).collect()
}

fn main() {
    let args = Arguments::from_args();
    let cases = Arc::new(all_cases());
    let mut trials = Vec::new();
    for (spec, options) in backends() {
        let name = spec.to_string();
        for i in 0..cases.len() {
            let (cases, spec, options) = (cases.clone(), spec.clone(), options.clone());
            let case = &cases[i];
            let test_name = format!("{name}::{}::{}", case.group.name(), case.name);
            trials.push(Trial::test(test_name, move || {
                let opened = spec
                    .open(&options)
                    .map_err(|e| Failed::from(format!("backend unavailable: {e}")))?;
                let r = run_case(opened.backend.as_ref(), &cases[i]);
                match r.status {
                    Status::Passed => Ok(()),
                    Status::Skipped(why) => {
                        // Declared unsupported: the case does not apply to this backend.
                        eprintln!("skipped: {why}");
                        Ok(())
                    }
                    Status::Failed(why) => Err(why.into()),
                }
            }));
        }
    }
    if in_ci() && trials.iter().all(|t| !t.name().starts_with("qnn:")) {
        trials.push(Trial::test("qnn:htp::emulator_present", || {
            Err("the HTP emulator is required in CI".into())
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}
