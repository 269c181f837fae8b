//! The compute-kernel conformance cases as tests, one per (backend, case), named
//! `<backend>::<group>::<case>`: the golden `cpu` kernels, `cpu-fast` on 1 and 2 threads (and
//! with f16 K/V storage), and
//! `opencl` on whatever OpenCL device is here (PoCL in CI; required there, skipped locally with a
//! reason when absent), with f32 and with f16 K/V storage.

use libtest_mimic::{Arguments, Failed, Trial};
use shadowattn_conformance::{compute_cases, run_compute_case, Status};
use shadowattn_cpu::fast::{FastCpuBackend, KvStorage};
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::testing::{in_ci, missing_dependency};
use shadowattn_hal::ComputeBackend;
use shadowattn_opencl::{OpenClBackend, OpenClOptions, Storage};
use std::sync::{Arc, OnceLock};

type Shared = Arc<OnceLock<Result<Box<dyn ComputeBackend>, String>>>;
type Factory = Arc<dyn Fn() -> Result<Box<dyn ComputeBackend>, String> + Send + Sync>;

fn opencl(storage: Storage) -> Result<Box<dyn ComputeBackend>, String> {
    OpenClBackend::open(OpenClOptions {
        storage,
        // PoCL has no cl_khr_fp16; the f16 path still runs through the core vload_half.
        f16_without_extension: storage == Storage::F16,
        ..Default::default()
    })
    .map(|b| Box::new(b) as Box<dyn ComputeBackend>)
    .map_err(|e| e.to_string())
}

fn main() {
    let args = Arguments::from_args();
    let mut backends: Vec<(&str, bool, Factory)> = vec![
        (
            "cpu",
            false,
            Arc::new(|| Ok(Box::new(CpuBackend::new()) as Box<dyn ComputeBackend>)),
        ),
        (
            "cpu-fast:1",
            false,
            Arc::new(|| {
                FastCpuBackend::new(1)
                    .map(|b| Box::new(b) as _)
                    .map_err(|e| e.to_string())
            }),
        ),
        (
            "cpu-fast:2",
            false,
            Arc::new(|| {
                FastCpuBackend::new(2)
                    .map(|b| Box::new(b) as _)
                    .map_err(|e| e.to_string())
            }),
        ),
        (
            "cpu-fast:2:f16",
            true,
            Arc::new(|| {
                FastCpuBackend::new(2)
                    .map(|b| Box::new(b.with_storage(KvStorage::F16)) as _)
                    .map_err(|e| e.to_string())
            }),
        ),
    ];
    let have_opencl = match opencl(Storage::F32) {
        Ok(_) => true,
        Err(e) => {
            missing_dependency(
                "an OpenCL platform",
                &format!(
                    "install PoCL with `bash ci/opencl.sh`: {}",
                    e.lines().next().unwrap_or_default()
                ),
            );
            false
        }
    };
    if have_opencl {
        backends.push(("opencl", false, Arc::new(|| opencl(Storage::F32))));
        backends.push(("opencl:f16", true, Arc::new(|| opencl(Storage::F16))));
    }
    let cases = Arc::new(compute_cases());
    let mut trials = Vec::new();
    for (name, relaxed, factory) in backends {
        // One backend per name, shared by its cases (building OpenCL kernels takes a while).
        let shared: Shared = Arc::new(OnceLock::new());
        for i in 0..cases.len() {
            let (cases, shared, factory) = (cases.clone(), shared.clone(), factory.clone());
            let case = &cases[i];
            let test_name = format!("{name}::{}::{}", case.group.name(), case.name);
            trials.push(Trial::test(test_name, move || {
                let backend = shared
                    .get_or_init(|| factory())
                    .as_ref()
                    .map_err(|e| Failed::from(format!("backend unavailable: {e}")))?;
                match run_compute_case(backend.as_ref(), &cases[i], relaxed).status {
                    Status::Passed | Status::Skipped(_) => Ok(()),
                    Status::Failed(why) => Err(why.into()),
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
