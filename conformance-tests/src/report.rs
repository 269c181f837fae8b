//! Conformance reports: a human summary, JSON and JUnit XML, with counts per verdict.

use crate::expectations::{verdict, ExpectationError, Expectations, Suite, Verdict};
use crate::mutation::MutationOutcome;
use crate::runner::{CaseResult, Status};
use serde::{Deserialize, Serialize};

/// Every result of one backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Backend name.
    pub backend: String,
    /// Backend version.
    pub version: String,
    /// The expectation files the verdicts were judged by (or that there was none).
    pub expectations: Vec<String>,
    /// Results in case order.
    pub results: Vec<CaseResult>,
}

/// Cases per verdict, and mutation outcomes over all cases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Passed within the strict tier.
    pub passed: usize,
    /// Passed within the acceptable tier only.
    pub passed_with_warning: usize,
    /// Declared unsupported, as expected.
    pub unsupported_as_expected: usize,
    /// Failed, as expected.
    pub known_failure: usize,
    /// Unexpected failures, skips and passes.
    pub failed: usize,
    /// Wrong outputs the tolerances rejected.
    pub mutations_rejected: usize,
    /// Wrong outputs a tolerance accepted (each one fails its case).
    pub mutations_accepted: usize,
}

impl Counts {
    /// The count of one verdict.
    pub fn of(&self, v: Verdict) -> usize {
        match v {
            Verdict::Passed => self.passed,
            Verdict::PassedWithWarning => self.passed_with_warning,
            Verdict::UnsupportedAsExpected => self.unsupported_as_expected,
            Verdict::KnownFailure => self.known_failure,
            Verdict::Failed => self.failed,
        }
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

impl Report {
    /// A report of `results`, every case expected to pass until [`Report::judge`] applies a file.
    pub fn new(
        suite: Suite,
        backend: &str,
        version: impl Into<String>,
        results: Vec<CaseResult>,
    ) -> Self {
        Report {
            backend: backend.to_string(),
            version: version.into(),
            expectations: vec![format!(
                "{} suite: no expectation file; every case is expected to pass",
                suite.name()
            )],
            results,
        }
    }

    /// Judges the results of `file.suite` against `file`, which must be about this report's
    /// backend; `origin` names it in the report.
    pub fn judge(&mut self, file: &Expectations, origin: &str) -> Result<(), ExpectationError> {
        let suite = file.suite;
        file.check_for(
            origin,
            suite,
            &self.backend,
            self.results
                .iter()
                .filter(|r| r.suite == suite)
                .map(|r| r.case.as_str()),
        )?;
        for r in self.results.iter_mut().filter(|r| r.suite == suite) {
            let (v, why) = verdict(r, file.of(&r.case));
            r.verdict = v;
            r.verdict_reason = why;
        }
        let label = format!("{} suite: ", suite.name());
        self.expectations.retain(|e| !e.starts_with(&label));
        self.expectations.push(format!("{label}{origin}"));
        Ok(())
    }

    /// Counts per verdict and of mutation outcomes.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for r in &self.results {
            match r.verdict {
                Verdict::Passed => c.passed += 1,
                Verdict::PassedWithWarning => c.passed_with_warning += 1,
                Verdict::UnsupportedAsExpected => c.unsupported_as_expected += 1,
                Verdict::KnownFailure => c.known_failure += 1,
                Verdict::Failed => c.failed += 1,
            }
            for m in &r.mutations {
                match m.outcome {
                    MutationOutcome::Rejected => c.mutations_rejected += 1,
                    MutationOutcome::Accepted => c.mutations_accepted += 1,
                    MutationOutcome::NotApplicable => {}
                }
            }
        }
        c
    }

    /// Whether every verdict is one the expectations allow.
    pub fn conforms(&self) -> bool {
        self.counts().failed == 0
    }

    /// What a line of the summary says about one result, if anything.
    fn line(r: &CaseResult) -> Option<String> {
        let at = format!("{}/{}", r.group.name(), r.case);
        match (r.verdict, &r.status) {
            (Verdict::Failed, _) => Some(format!(
                "FAIL {at}: {}",
                r.verdict_reason.as_deref().unwrap_or("failed")
            )),
            (Verdict::PassedWithWarning, Status::PassedWithWarning(why)) => {
                Some(format!("WARN {at}: {why}"))
            }
            (Verdict::UnsupportedAsExpected, Status::Unsupported(why)) => {
                Some(format!("UNSUPPORTED (expected) {at}: {why}"))
            }
            (Verdict::KnownFailure, Status::Failed(why)) => {
                Some(format!("KNOWN FAILURE {at}: {why}"))
            }
            _ => None,
        }
    }

    /// A human summary: one line per case that did not simply pass, then the counts.
    pub fn summary(&self) -> String {
        let mut s = format!("conformance of {} ({})\n", self.backend, self.version);
        for e in &self.expectations {
            s.push_str(&format!("expectations: {e}\n"));
        }
        for line in self.results.iter().filter_map(Self::line) {
            s.push_str(&line);
            s.push('\n');
        }
        let c = self.counts();
        s.push_str(&format!(
            "mutations: {} wrong outputs rejected, {} accepted\n",
            c.mutations_rejected, c.mutations_accepted
        ));
        let counts: Vec<String> = Verdict::ALL
            .iter()
            .map(|v| format!("{} {}", c.of(*v), v.name()))
            .collect();
        s.push_str(&counts.join(", "));
        s.push('\n');
        s
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct WithCounts<'a> {
            #[serde(flatten)]
            report: &'a Report,
            counts: Counts,
        }
        serde_json::to_string_pretty(&WithCounts {
            report: self,
            counts: self.counts(),
        })
        .expect("reports serialize")
    }

    /// The report as JUnit XML (one testsuite, one testcase per case): unexpected results are
    /// failures, expected unsupported cases and known failures are skipped with their reason,
    /// quality warnings go to the case's system-out.
    pub fn to_junit(&self) -> String {
        let c = self.counts();
        let total: f64 = self.results.iter().map(|r| r.duration_ms).sum::<f64>() / 1e3;
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" errors=\"0\" time=\"{total:.3}\">\n",
            escape(&self.backend),
            self.results.len(),
            c.failed,
            c.unsupported_as_expected + c.known_failure
        ));
        for r in &self.results {
            x.push_str(&format!(
                "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{:.3}\"",
                escape(&self.backend),
                r.group.name(),
                escape(&r.case),
                r.duration_ms / 1e3
            ));
            let body = match (r.verdict, &r.status) {
                (Verdict::Failed, _) => format!(
                    "<failure message=\"{}\"/>",
                    escape(r.verdict_reason.as_deref().unwrap_or("failed"))
                ),
                (Verdict::UnsupportedAsExpected, Status::Unsupported(why)) => {
                    format!(
                        "<skipped message=\"unsupported as expected: {}\"/>",
                        escape(why)
                    )
                }
                (Verdict::KnownFailure, Status::Failed(why)) => {
                    format!("<skipped message=\"known failure: {}\"/>", escape(why))
                }
                (Verdict::PassedWithWarning, Status::PassedWithWarning(why)) => {
                    format!("<system-out>quality warning: {}</system-out>", escape(why))
                }
                _ => String::new(),
            };
            if body.is_empty() {
                x.push_str("/>\n");
            } else {
                x.push_str(&format!(">\n      {body}\n    </testcase>\n"));
            }
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }
}
