//! The conformance suite as tests: one test per (backend, case), named
//! `<backend>::<group>::<case>`, for `cargo test` and `cargo nextest` (shardable with
//! `--partition hash:k/n`). Backends: `cpu`, `sim:<profile>` for every built-in profile,
//! `qnn:htp` on Qualcomm's emulator and `neuron` through the simulator shim (both required in CI,
//! skipped locally with a reason when absent).

use libtest_mimic::{Arguments, Failed, Trial};
use shadowattn_conformance::{all_cases, run_case, Status};
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::testing::{in_ci, missing_dependency};
use shadowattn_hal::NpuBackend;
use shadowattn_neuron::{NeuronBackend, NeuronOptions};
use shadowattn_qnn::{QnnBackend, QnnOptions};
use shadowattn_simulator::profile::builtin_names;
use shadowattn_simulator::SimBackend;
use std::path::PathBuf;
use std::sync::Arc;

type Factory = Arc<dyn Fn() -> Result<Box<dyn NpuBackend>, String> + Send + Sync>;

fn qnn_library() -> Option<PathBuf> {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()?
        .to_path_buf();
    shadowattn_qnn::loader::emulator_library(&target)
}

fn backends() -> Vec<(String, Factory)> {
    let mut list: Vec<(String, Factory)> = vec![(
        "cpu".into(),
        Arc::new(|| Ok(Box::new(CpuBackend::new()) as Box<dyn NpuBackend>)),
    )];
    for soc in builtin_names() {
        list.push((
            format!("sim:{soc}"),
            Arc::new(move || {
                SimBackend::builtin(soc)
                    .map(|b| Box::new(b) as Box<dyn NpuBackend>)
                    .map_err(|e| e.to_string())
            }),
        ));
    }
    match qnn_library() {
        Some(lib) => list.push((
            "qnn:htp".into(),
            Arc::new(move || {
                QnnBackend::open(QnnOptions {
                    library: Some(lib.clone()),
                    ..Default::default()
                })
                .map(|b| Box::new(b) as Box<dyn NpuBackend>)
                .map_err(|e| e.to_string())
            }),
        )),
        None => missing_dependency(
            "Qualcomm HTP emulator",
            "run `bash ci/qnn-emulator.sh` or set SHADOWATTN_QNN_LIB",
        ),
    }
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    match shadowattn_hal::testing::cdylib(
        &target,
        "shadowattn-neuron-shim",
        "shadowattn_neuron_shim",
    ) {
        Ok(shim) => list.push((
            "neuron".into(),
            Arc::new(move || {
                NeuronBackend::open(NeuronOptions {
                    library: Some(shim.clone()),
                })
                .map(|b| Box::new(b) as Box<dyn NpuBackend>)
                .map_err(|e| e.to_string())
            }),
        )),
        Err(e) => missing_dependency("Neuron simulator shim", &e),
    }
    list
}

fn main() {
    let args = Arguments::from_args();
    let cases = Arc::new(all_cases());
    let mut trials = Vec::new();
    for (name, factory) in backends() {
        for i in 0..cases.len() {
            let (cases, factory) = (cases.clone(), factory.clone());
            let case = &cases[i];
            let test_name = format!("{name}::{}::{}", case.group.name(), case.name);
            trials.push(Trial::test(test_name, move || {
                let backend =
                    factory().map_err(|e| Failed::from(format!("backend unavailable: {e}")))?;
                let r = run_case(backend.as_ref(), &cases[i]);
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
