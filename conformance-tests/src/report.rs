//! Conformance reports: a human summary, JSON and JUnit XML.

use crate::runner::{CaseResult, Status};
use serde::{Deserialize, Serialize};

/// Every result of one backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Backend name.
    pub backend: String,
    /// Backend version.
    pub version: String,
    /// Results in case order.
    pub results: Vec<CaseResult>,
}

/// Counts of a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Passed cases.
    pub passed: usize,
    /// Failed cases.
    pub failed: usize,
    /// Skipped cases.
    pub skipped: usize,
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
    /// Pass, fail and skip counts.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for r in &self.results {
            match r.status {
                Status::Passed => c.passed += 1,
                Status::Failed(_) => c.failed += 1,
                Status::Skipped(_) => c.skipped += 1,
            }
        }
        c
    }

    /// A human summary: one line per failure and skip, then the counts.
    pub fn summary(&self) -> String {
        let mut s = format!("conformance of {} ({})\n", self.backend, self.version);
        for r in &self.results {
            match &r.status {
                Status::Failed(why) => {
                    s.push_str(&format!("FAIL {}/{}: {why}\n", r.group.name(), r.case))
                }
                Status::Skipped(why) => {
                    s.push_str(&format!("SKIP {}/{}: {why}\n", r.group.name(), r.case))
                }
                Status::Passed => {}
            }
        }
        let c = self.counts();
        s.push_str(&format!(
            "{} passed, {} failed, {} skipped\n",
            c.passed, c.failed, c.skipped
        ));
        s
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }

    /// The report as JUnit XML (one testsuite, one testcase per case).
    pub fn to_junit(&self) -> String {
        let c = self.counts();
        let total: f64 = self.results.iter().map(|r| r.duration_ms).sum::<f64>() / 1e3;
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" errors=\"0\" time=\"{total:.3}\">\n",
            escape(&self.backend),
            self.results.len(),
            c.failed,
            c.skipped
        ));
        for r in &self.results {
            x.push_str(&format!(
                "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{:.3}\"",
                escape(&self.backend),
                r.group.name(),
                escape(&r.case),
                r.duration_ms / 1e3
            ));
            match &r.status {
                Status::Passed => x.push_str("/>\n"),
                Status::Failed(why) => x.push_str(&format!(
                    ">\n      <failure message=\"{}\"/>\n    </testcase>\n",
                    escape(why)
                )),
                Status::Skipped(why) => x.push_str(&format!(
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    escape(why)
                )),
            }
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }
}
