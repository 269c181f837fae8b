//! A simulator whose profile says `[limits] float_ops = false` refuses what Qualcomm's HTP
//! refuses on socModel 95 (SAR2230P, "The SocModel doesn't support FP16"). Its own test binary:
//! the emulator keeps one socModel per process, so it cannot share one with `sim_vs_qnn.rs`'s
//! socModel 52.

use shadowattn_conformance::{all_cases, CaseKind};
use shadowattn_hal::NpuBackend;
use shadowattn_registry::{NpuSpec, OpenOptions};
use shadowattn_test_support::{missing_dependency, qnn_emulator, target_dir};

/// socModel 95 (SAR2230P) refuses every op from float to float tensors ("The SocModel doesn't
/// support FP16"; `soc fit` probes it into `[limits] float_ops = false`): the simulator of such
/// a profile refuses exactly the cases it refuses.
#[test]
fn sim_without_float_ops_supports_what_qnn_htp_95_supports() {
    let Some(lib) = qnn_emulator(&target_dir(env!("CARGO_TARGET_TMPDIR"))) else {
        missing_dependency(
            "Qualcomm HTP emulator",
            "run `bash ci/qnn-emulator.sh` or set SHADOWATTN_QNN_LIB",
        );
        return;
    };
    let options = OpenOptions {
        qnn_library: Some(lib),
        ..OpenOptions::default()
    };
    let qnn = NpuSpec::Qnn {
        soc_model: Some(95),
    }
    .open(&options)
    .unwrap()
    .backend;
    let mut profile = shadowattn_simulator::SocProfile::builtin("sa8255").unwrap();
    profile.limits.float_ops = false;
    let sim = shadowattn_simulator::SimBackend::new(profile);
    let (mut mismatches, mut refused) = (Vec::new(), 0);
    for case in all_cases() {
        let CaseKind::Graph { graph, .. } = &case.kind else {
            continue;
        };
        let (q, s) = (qnn.check_support(graph), sim.check_support(graph));
        if q.is_err() != s.is_err() {
            mismatches.push(format!("{}: qnn {q:?}, sim {s:?}", case.name));
        }
        refused += usize::from(q.is_err());
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // Every case both refuse (checked one by one above), counted so that a change of the case
    // list shows here: HTP's 32 refusals and the float cases.
    assert_eq!(refused, 60);
}
