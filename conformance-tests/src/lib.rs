//! The shadowattn conformance suite: one list of cases ([`cases`]) run against any NPU backend
//! ([`runner`]), and one list of compute-kernel cases run against any `ComputeBackend`
//! ([`compute`]), judged against the golden CPU reference with tolerances that are a spec
//! ([`tolerance`]), reported as a summary, JSON or JUnit XML ([`report`]).
//!
//! A backend that declares a graph unsupported (`NpuBackend::check_support`) does not run that
//! case; one that declares support must compile it, run it and match. Each backend's expected
//! results live in data files ([`expectations`]): a skip, failure or pass the file does not
//! predict fails the suite, and every tolerance is proven to reject wrong outputs ([`mutation`]).

use shadowattn_hal::{ComputeBackend, NpuBackend};

pub mod cases;
pub mod compute;
pub mod expectations;
mod layer;
pub mod mutation;
pub mod outcome;
pub mod report;
pub mod runner;
pub mod seeded;
pub mod tolerance;

pub use cases::{all_cases, Case, CaseKind, Group};
pub use compute::{compute_cases, run_compute_case, ComputeCase, ComputeCaseKind, Logits};
pub use expectations::{Expectations, Suite, Verdict};
pub use report::{Counts, Report};
pub use runner::{run_case, CaseResult, Status};
pub use tolerance::{Comparison, Tiers, Tolerance};

/// Runs every NPU case on `backend`, calling `progress` after each.
pub fn run_suite(backend: &dyn NpuBackend, mut progress: impl FnMut(&CaseResult)) -> Report {
    let results = all_cases()
        .iter()
        .map(|c| {
            let r = run_case(backend, c);
            progress(&r);
            r
        })
        .collect();
    Report::new(Suite::Npu, backend.name(), backend.version(), results)
}

/// Runs every compute-kernel case on `backend`, calling `progress` after each.
pub fn run_compute_suite(
    backend: &dyn ComputeBackend,
    mut progress: impl FnMut(&CaseResult),
) -> Report {
    let results = compute_cases()
        .iter()
        .map(|c| {
            let r = run_compute_case(backend, c);
            progress(&r);
            r
        })
        .collect();
    Report::new(
        Suite::Compute,
        backend.name(),
        format!(
            "kernels with {:?} K/V storage",
            backend.capabilities().kv_storage
        ),
        results,
    )
}
