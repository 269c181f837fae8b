//! A broken op encoding on QNN must fail the suite, not pass as more skips: with Softmax
//! encoded wrongly (the QNN backend's test switch), HTP refuses every Softmax case, and the
//! expectation file, which expects them to pass, turns each refusal into a failure.

use shadowattn_conformance::{run_suite, Expectations, Suite, Verdict};
use shadowattn_registry::{NpuSpec, OpenOptions};
use shadowattn_test_support::{missing_dependency, qnn_emulator, target_dir};

#[test]
fn a_misencoded_qnn_op_fails_the_suite() {
    let Some(lib) = qnn_emulator(&target_dir(env!("CARGO_TARGET_TMPDIR"))) else {
        // Fails in CI (CI=true), skips locally with a reason.
        missing_dependency(
            "Qualcomm HTP emulator",
            "run `bash ci/qnn-emulator.sh` or set SHADOWATTN_QNN_LIB",
        );
        return;
    };
    // This test binary runs this one test, so the variable reaches no other test.
    std::env::set_var("SHADOWATTN_QNN_MISENCODE", "Softmax");
    let options = OpenOptions {
        qnn_library: Some(lib),
        ..OpenOptions::default()
    };
    let spec = NpuSpec::Qnn { soc_model: None };
    let opened = spec.open(&options).unwrap();
    let mut report = run_suite(opened.backend.as_ref(), |_| {});
    let file = Expectations::builtin(Suite::Npu, &spec.to_string())
        .unwrap()
        .0;
    report.judge(&file, "built-in").unwrap();
    let softmax: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.case.starts_with("softmax_") && !file.unsupported.contains_key(&r.case))
        .collect();
    assert!(softmax.len() >= 3, "{}", report.summary());
    for r in &softmax {
        assert_eq!(r.verdict, Verdict::Failed, "{}: {:?}", r.case, r.status);
        assert!(
            r.verdict_reason
                .as_deref()
                .unwrap()
                .starts_with("unexpectedly declared unsupported"),
            "{:?}",
            r.verdict_reason
        );
    }
    assert!(!report.conforms());
}
