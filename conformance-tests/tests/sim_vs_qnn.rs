//! The simulator predicts the device: on every case, `sim:sa8255` declares unsupported exactly
//! what Qualcomm's HTP (the emulator, socModel 52 = SA8255) refuses, and both pass or warn on
//! the rest. (Their integer results are not yet bit-equal: HTP's requantization rounds
//! differently from the golden rule the simulator follows; the suite reports it as quality
//! warnings on `qnn:htp`.)

use shadowattn_conformance::{all_cases, run_case, Status};
use shadowattn_registry::{NpuSpec, OpenOptions, SocRef};
use shadowattn_test_support::{missing_dependency, qnn_emulator, target_dir};

#[test]
fn sim_sa8255_supports_what_qnn_htp_52_supports() {
    let Some(lib) = qnn_emulator(&target_dir(env!("CARGO_TARGET_TMPDIR"))) else {
        // Fails in CI (CI=true), skips locally with a reason.
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
        soc_model: Some(52),
    }
    .open(&options)
    .unwrap();
    let sim = NpuSpec::Sim(SocRef::Builtin("sa8255".into()))
        .open(&options)
        .unwrap();
    let mut mismatches = Vec::new();
    let mut unsupported = 0;
    for case in all_cases() {
        let (q, s) = (
            run_case(qnn.backend.as_ref(), &case),
            run_case(sim.backend.as_ref(), &case),
        );
        let refused = |st: &Status| matches!(st, Status::Unsupported(_));
        if refused(&q.status) != refused(&s.status) {
            mismatches.push(format!(
                "{}: qnn {:?}, sim {:?}",
                case.name, q.status, s.status
            ));
        }
        for (who, st) in [("qnn", &q.status), ("sim", &s.status)] {
            if let Status::Failed(why) = st {
                mismatches.push(format!("{}: {who} failed: {why}", case.name));
            }
        }
        unsupported += usize::from(refused(&q.status));
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(unsupported, 31, "the INT32 pilots and ops HTP refuses");
}
