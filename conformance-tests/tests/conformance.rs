//! The conformance suite as tests: one test per (backend, case), named
//! `<backend>::<group>::<case>`, for `cargo test` and `cargo nextest` (shardable with
//! `--partition hash:k/n`), on every NPU backend of the registry's list: `cpu`, `sim:<profile>`
//! for every built-in profile, `qnn:htp` on Qualcomm's emulator and `neuron` through the
//! simulator shim (both required in CI, skipped locally with a reason when absent).

use libtest_mimic::{Arguments, Failed, Trial};
use shadowattn_conformance::expectations::{verdict, Expectations, Suite, Verdict};
use shadowattn_conformance::{all_cases, run_case};
use shadowattn_registry::{npu_backends, NpuSpec, OpenOptions};
use shadowattn_test_support::{in_ci, missing_dependency, neuron_shim, qnn_emulator, target_dir};
use std::sync::Arc;

/// The runnable NPU backends with their options, and those without a test double.
type Backends = (Vec<(NpuSpec, OpenOptions)>, Vec<NpuSpec>);

/// Every NPU backend that can run here, with the libraries the vendor ones load; and the
/// registered backends this list gives no test double.
fn backends() -> Backends {
    let target = target_dir(env!("CARGO_TARGET_TMPDIR"));
    let mut options = OpenOptions::default();
    let mut list = Vec::new();
    let mut unregistered = Vec::new();
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
            // A backend registered after this list was written: `test_double_registered`
            // fails until its test double is given above.
            other => {
                unregistered.push(other.clone());
                continue;
            }
        }
        list.push(spec);
    }
    let runnable = list.into_iter().map(|s| (s, options.clone())).collect();
    (runnable, unregistered)
}

/// The backend's built-in expectations; a trial fails when it has none or names stale cases.
fn expectations_of(
    name: &str,
    cases: &[shadowattn_conformance::Case],
    trials: &mut Vec<Trial>,
) -> Expectations {
    let found = Expectations::builtin(Suite::Npu, name).map(|(e, _)| e);
    let check = found.as_ref().map(|e| {
        e.check_for(
            "built-in",
            Suite::Npu,
            name,
            cases.iter().map(|c| c.name.as_str()),
        )
        .map_err(|e| e.to_string())
    });
    trials.push(Trial::test(format!("{name}::expectations::file_is_current"), move || {
        match check {
            Some(r) => r.map_err(Failed::from),
            None => Err("no built-in expectation file: write one with `shadowattn conformance --write-expectations`".into()),
        }
    }));
    found.unwrap_or_else(|| Expectations::every_case_passes(Suite::Npu, name))
}

/// A trial's outcome: the verdict against the expectations.
fn judged(r: &shadowattn_conformance::CaseResult, expected: &Expectations) -> Result<(), Failed> {
    match verdict(r, expected.of(&r.case)) {
        (Verdict::Failed, why) => Err(why.unwrap_or_default().into()),
        _ => Ok(()),
    }
}

fn main() {
    let args = Arguments::from_args();
    let cases = Arc::new(all_cases());
    let mut trials = Vec::new();
    let (runnable, unregistered) = backends();
    for (spec, options) in runnable {
        let name = spec.to_string();
        let expected = Arc::new(expectations_of(&name, &cases, &mut trials));
        for i in 0..cases.len() {
            let (cases, spec, options) = (cases.clone(), spec.clone(), options.clone());
            let expected = expected.clone();
            let case = &cases[i];
            let test_name = format!("{name}::{}::{}", case.group.name(), case.name);
            trials.push(Trial::test(test_name, move || {
                let opened = spec
                    .open(&options)
                    .map_err(|e| Failed::from(format!("backend unavailable: {e}")))?;
                let r = run_case(opened.backend.as_ref(), &cases[i]);
                judged(&r, &expected)
            }));
        }
    }
    for spec in unregistered {
        trials.push(Trial::test(
            format!("{spec}::test_double_registered"),
            move || {
                Err(format!(
                    "`{spec}` is a registered NPU backend without a test double: give its library \
                 in backends() of conformance-tests/tests/conformance.rs"
                )
                .into())
            },
        ));
    }
    if in_ci() && trials.iter().all(|t| !t.name().starts_with("qnn:")) {
        trials.push(Trial::test("qnn:htp::emulator_present", || {
            Err("the HTP emulator is required in CI".into())
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}
