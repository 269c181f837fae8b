//! Reports of a real suite run: the summary, JSON round trip, and JUnit XML parsed back.

use quick_xml::events::Event;
use quick_xml::Reader;
use shadowattn_conformance::{run_suite, Report, Status};
use shadowattn_cpu::CpuBackend;
use shadowattn_simulator::SimBackend;

#[test]
fn junit_xml_parses_back_with_the_same_counts() {
    let report = run_suite(&SimBackend::builtin("sa8255").unwrap(), |_| {});
    let counts = report.counts();
    assert!(
        counts.passed == report.results.len() && counts.passed >= 80,
        "{}",
        report.summary()
    );
    let xml = report.to_junit();
    let mut reader = Reader::from_str(&xml);
    let (mut cases, mut failures, mut skipped, mut suite_tests) = (0, 0, 0, None);
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"testsuite" => {
                    for a in e.attributes() {
                        let a = a.unwrap();
                        if a.key.as_ref() == b"tests" {
                            suite_tests = Some(
                                String::from_utf8(a.value.to_vec())
                                    .unwrap()
                                    .parse::<usize>()
                                    .unwrap(),
                            );
                        }
                    }
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
    assert_eq!(suite_tests, Some(report.results.len()));
    assert_eq!(cases, report.results.len());
    assert_eq!(failures, counts.failed);
    assert_eq!(skipped, counts.skipped);
}

#[test]
fn failures_and_skips_are_reported_with_reasons_and_escaped() {
    let mut report = run_suite(&CpuBackend::new(), |_| {});
    report.results[0].status = Status::Failed("a < b & \"c\"".into());
    report.results[1].status = Status::Skipped("declared unsupported".into());
    let summary = report.summary();
    assert!(
        summary.contains("FAIL op/") && summary.contains("SKIP op/"),
        "{summary}"
    );
    assert!(
        summary
            .lines()
            .last()
            .unwrap()
            .ends_with("1 failed, 1 skipped"),
        "{summary}"
    );
    let xml = report.to_junit();
    assert!(
        xml.contains("message=\"a &lt; b &amp; &quot;c&quot;\""),
        "{xml}"
    );
    let mut reader = Reader::from_str(&xml);
    while !matches!(reader.read_event().unwrap(), Event::Eof) {}
    let back: Report = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(back, report);
}
