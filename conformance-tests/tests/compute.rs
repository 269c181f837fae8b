//! The compute-kernel conformance cases as tests, one per (backend, case), named
//! `<backend>::<group>::<case>`, on every compute backend of the registry's list: the golden
//! `cpu` kernels, `cpu-fast` on 1 and 2 threads (and with f16 K/V storage), and `opencl` on
//! whatever OpenCL device is here (PoCL in CI; required there, skipped locally with a reason
//! when absent), with f32 and with f16 K/V storage. Backends that store K/V as f16 declare it
//! and are judged with f16 tolerances.

use libtest_mimic::{Arguments, Failed, Trial};
use shadowattn_conformance::expectations::{verdict, Expectations, Suite, Verdict};
use shadowattn_conformance::{compute_cases, run_compute_case};
use shadowattn_hal::ComputeBackend;
use shadowattn_registry::{compute_backends, BackendError, ComputeSpec, OpenOptions};
use shadowattn_test_support::{in_ci, missing_dependency};
use std::sync::{Arc, OnceLock};

type Shared = Arc<OnceLock<Result<Box<dyn ComputeBackend>, String>>>;

fn open(spec: &ComputeSpec) -> Result<Box<dyn ComputeBackend>, BackendError> {
    spec.open(&OpenOptions::default())
}

fn main() {
    let args = Arguments::from_args();
    let mut have_opencl = true;
    let mut backends = Vec::new();
    for spec in compute_backends() {
        if let ComputeSpec::OpenCl { .. } = spec {
            if let Err(e) = open(&spec) {
                if have_opencl {
                    missing_dependency(
                        "an OpenCL platform",
                        &format!(
                            "install PoCL with `bash ci/opencl.sh`: {}",
                            e.to_string().lines().next().unwrap_or_default()
                        ),
                    );
                }
                have_opencl = false;
                continue;
            }
        }
        backends.push(spec);
    }
    let cases = Arc::new(compute_cases());
    let mut trials = Vec::new();
    for spec in backends {
        let name = spec.to_string();
        let found = Expectations::builtin(Suite::Compute, &name).map(|(e, _)| e);
        let check = found.as_ref().map(|e| {
            e.check_for(
                "built-in",
                Suite::Compute,
                &name,
                cases.iter().map(|c| c.name.as_str()),
            )
            .map_err(|e| e.to_string())
        });
        trials.push(Trial::test(
            format!("{name}::expectations::file_is_current"),
            move || match check {
                Some(r) => r.map_err(Failed::from),
                None => Err("no built-in expectation file: write one with \
                             `shadowattn conformance --write-expectations`"
                    .into()),
            },
        ));
        let expected = Arc::new(
            found.unwrap_or_else(|| Expectations::every_case_passes(Suite::Compute, &name)),
        );
        // One backend per name, shared by its cases (building OpenCL kernels takes a while).
        let shared: Shared = Arc::new(OnceLock::new());
        for i in 0..cases.len() {
            let (cases, shared, spec) = (cases.clone(), shared.clone(), spec.clone());
            let expected = expected.clone();
            let case = &cases[i];
            let test_name = format!("{name}::{}::{}", case.group.name(), case.name);
            trials.push(Trial::test(test_name, move || {
                let backend = shared
                    .get_or_init(|| open(&spec).map_err(|e| e.to_string()))
                    .as_ref()
                    .map_err(|e| Failed::from(format!("backend unavailable: {e}")))?;
                let r = run_compute_case(backend.as_ref(), &cases[i]);
                match verdict(&r, expected.of(&r.case)) {
                    (Verdict::Failed, why) => Err(why.unwrap_or_default().into()),
                    _ => Ok(()),
                }
            }));
        }
    }
    if in_ci() && !have_opencl {
        trials.push(Trial::test("opencl::platform_present", || {
            Err("an OpenCL platform (PoCL) is required in CI".into())
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}
