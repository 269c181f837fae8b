//! Reports of a real suite run: the summary, JSON round trip, JUnit XML parsed back, and
//! verdicts held against expectation files.

use quick_xml::events::Event;
use quick_xml::Reader;
use shadowattn_conformance::expectations::{KnownFailure, Unsupported};
use shadowattn_conformance::{run_suite, Expectations, Report, Status, Suite, Verdict};
use shadowattn_cpu::CpuBackend;
use shadowattn_simulator::SimBackend;

fn attribute(e: &quick_xml::events::BytesStart<'_>, name: &[u8]) -> Option<usize> {
    e.attributes()
        .map(|a| a.unwrap())
        .find(|a| a.key.as_ref() == name)
        .map(|a| {
            String::from_utf8(a.value.to_vec())
                .unwrap()
                .parse()
                .unwrap()
        })
}

#[test]
fn junit_xml_parses_back_with_the_same_counts() {
    let mut report = run_suite(&SimBackend::builtin("sa8255").unwrap(), |_| {});
    let file = Expectations::builtin(Suite::Npu, "sim:sa8255").unwrap().0;
    report.judge(&file, "built-in").unwrap();
    let counts = report.counts();
    assert!(
        // sim:sa8255 rounds integers as HTP does, so its pilots pass with a quality warning.
        counts.failed == 0
            && counts.passed >= 25
            && counts.passed_with_warning >= 30
            && counts.unsupported_as_expected == 32,
        "{}",
        report.summary()
    );
    assert!(counts.mutations_rejected > 400 && counts.mutations_accepted == 0);
    // One failure, so every element of the XML is exercised.
    report.results[0].verdict = Verdict::Failed;
    let counts = report.counts();
    let xml = report.to_junit();
    let mut reader = Reader::from_str(&xml);
    let (mut cases, mut failures, mut skipped, mut suite) = (0, 0, 0, None);
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"testsuite" => {
                    suite = Some((
                        attribute(&e, b"tests"),
                        attribute(&e, b"failures"),
                        attribute(&e, b"skipped"),
                    ))
                }
                b"testcase" => cases += 1,
                b"failure" => failures += 1,
                b"skipped" => skipped += 1,
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    let n = report.results.len();
    let skips = counts.unsupported_as_expected + counts.known_failure;
    assert_eq!(suite, Some((Some(n), Some(1), Some(skips))));
    assert_eq!((cases, failures, skipped), (n, counts.failed, skips));
}

#[test]
fn every_verdict_follows_from_status_and_expectation() {
    let mut report = run_suite(&CpuBackend::new(), |_| {});
    let name = |i: usize| report.results[i].case.clone();
    let mut file = Expectations::every_case_passes(Suite::Npu, "cpu");
    let unsupported = Unsupported {
        reason: "r".into(),
        source: "s".into(),
    };
    let known = KnownFailure { reason: "k".into() };
    // 0: failed, expected pass. 1: unsupported, expected pass (an unexpected skip).
    // 2: unsupported as expected. 3: passed, expected unsupported (an unexpected pass).
    // 4: known failure. 5: passed, expected to fail. 6: quality warning. 7: plain pass.
    file.unsupported.insert(name(2), unsupported.clone());
    file.unsupported.insert(name(3), unsupported);
    file.known_failure.insert(name(4), known.clone());
    file.known_failure.insert(name(5), known);
    report.results[0].status = Status::Failed("a < b & \"c\"".into());
    report.results[1].status = Status::Unsupported("declared unsupported".into());
    report.results[2].status = Status::Unsupported("declared unsupported".into());
    report.results[4].status = Status::Failed("wrong".into());
    report.results[6].status = Status::PassedWithWarning("1 LSB".into());
    report.judge(&file, "test file").unwrap();
    let verdicts: Vec<Verdict> = report.results[..8].iter().map(|r| r.verdict).collect();
    let expected = {
        use Verdict::*;
        [
            Failed,
            Failed,
            UnsupportedAsExpected,
            Failed,
            KnownFailure,
            Failed,
            PassedWithWarning,
            Passed,
        ]
    };
    assert_eq!(verdicts, expected);
    assert!(report.results[1]
        .verdict_reason
        .as_deref()
        .unwrap()
        .starts_with("unexpectedly declared unsupported"));
    assert!(report.results[3]
        .verdict_reason
        .as_deref()
        .unwrap()
        .starts_with("unexpected pass"));
    assert!(!report.conforms());
    let summary = report.summary();
    assert!(
        summary.contains("FAIL op/") && summary.contains("WARN op/"),
        "{summary}"
    );
    assert!(
        summary.lines().last().unwrap().ends_with(
            "1 passed with a quality warning, 1 unsupported as expected, 1 known failure, 4 failed"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("expectations: npu suite: test file"),
        "{summary}"
    );
    let xml = report.to_junit();
    assert!(
        xml.contains("message=\"a &lt; b &amp; &quot;c&quot;\""),
        "{xml}"
    );
    let back: Report = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(back, report);
}

#[test]
fn expectation_files_naming_unknown_cases_or_other_backends_are_refused() {
    let mut report = run_suite(&CpuBackend::new(), |_| {});
    let mut file = Expectations::every_case_passes(Suite::Npu, "cpu");
    file.known_failure
        .insert("no_such_case".into(), KnownFailure { reason: "k".into() });
    let e = report.judge(&file, "stale.toml").unwrap_err().to_string();
    assert!(
        e.contains("no_such_case") && e.contains("stale.toml"),
        "{e}"
    );
    let other = Expectations::every_case_passes(Suite::Npu, "neuron");
    assert!(other.check_for("x", Suite::Npu, "cpu", []).is_err());
    assert!(Expectations::parse("backend = 1", "bad.toml").is_err());
}

#[test]
fn written_expectations_reproduce_the_run_they_came_from() {
    let mut report = run_suite(&CpuBackend::new(), |_| {});
    report.results[0].status = Status::Unsupported("no INT32 output".into());
    report.results[1].status = Status::Failed("wrong".into());
    let file = Expectations::observed(Suite::Npu, "cpu", "v", &report.results);
    let back = Expectations::parse(&file.to_toml(), "written").unwrap();
    assert_eq!(back, file);
    report.judge(&back, "written").unwrap();
    assert!(report.conforms(), "{}", report.summary());
    assert_eq!(report.counts().unsupported_as_expected, 1);
    assert_eq!(report.counts().known_failure, 1);
}
