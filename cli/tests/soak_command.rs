//! The `shadowattn soak` command: long runs that check executions reproduce, and its input checks.

mod common;
use common::shadowattn;

#[test]
fn soak_on_the_simulator_reports_executions_and_rebuilds() {
    let (code, stdout, stderr) = shadowattn(&[
        "soak",
        "--npu",
        "sim:sa8255",
        "--executions",
        "25",
        "--bank-rebuilds",
        "2",
        "--q-len",
        "8",
        "--kv-len",
        "32",
        "--head-dim",
        "16",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("bank rebuilds: 2 (36 graphs"), "{stdout}");
    assert!(
        stdout.contains("executions: 25 of `pilot_h2_q8_k32_d16"),
        "{stdout}"
    );
}

#[test]
fn soak_refuses_bad_input_with_a_clear_error() {
    for (args, needle) in [
        (&["soak", "--head-dim", "0"][..], "head_dim"),
        (&["soak", "--q-len", "64", "--kv-len", "8"][..], "q_len"),
        (
            &["soak", "--q-len", "100000", "--kv-len", "100000"][..],
            "score elements",
        ),
    ] {
        let (code, _, stderr) = shadowattn(args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let (code, _, _) = shadowattn(&["soak", "--executions", "0"]);
    assert_eq!(code, 2, "zero executions is a usage error");
    let (code, _, stderr) = shadowattn(&["soak", "--npu", "nope"]);
    assert_eq!(
        code, 2,
        "a backend name outside the grammar is a usage error"
    );
    assert!(stderr.contains("unknown NPU backend"), "{stderr}");
}
