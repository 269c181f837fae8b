//! What running a case produces: its status, and the verdict once held against the backend's
//! expectations ([`crate::expectations`]).

use crate::cases::Group;
use crate::mutation::MutationRecord;
use crate::tolerance::Comparison;
use serde::{Deserialize, Serialize};

/// Which list of cases a file is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suite {
    /// The NPU graph cases ([`crate::all_cases`]).
    Npu,
    /// The compute-kernel cases ([`crate::compute_cases`]).
    Compute,
}

impl Suite {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Npu => "npu",
            Suite::Compute => "compute",
        }
    }
}

/// How a case's result compares with its expectation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Passed within the strict tier.
    Passed,
    /// Passed within the acceptable tier only.
    PassedWithWarning,
    /// Declared unsupported, as expected.
    UnsupportedAsExpected,
    /// Failed, as expected.
    KnownFailure,
    /// Anything unexpected: a failure, a skip or a pass the file does not predict.
    Failed,
}

impl Verdict {
    /// Every verdict, in report order.
    pub const ALL: [Verdict; 5] = [
        Verdict::Passed,
        Verdict::PassedWithWarning,
        Verdict::UnsupportedAsExpected,
        Verdict::KnownFailure,
        Verdict::Failed,
    ];

    /// Lower-case words.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::PassedWithWarning => "passed with a quality warning",
            Verdict::UnsupportedAsExpected => "unsupported as expected",
            Verdict::KnownFailure => "known failure",
            Verdict::Failed => "failed",
        }
    }
}

/// The outcome of one case, before it is held against the backend's expectations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Status {
    /// Matched the reference within the strict tier.
    Passed,
    /// Matched within the acceptable tier only; by how much.
    PassedWithWarning(String),
    /// Did not match, or misbehaved; why.
    Failed(String),
    /// The backend declared the case unsupported; why.
    Unsupported(String),
}

/// One case run on one backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Case name.
    pub case: String,
    /// Case group.
    pub group: Group,
    /// The suite the case belongs to.
    pub suite: Suite,
    /// Backend name.
    pub backend: String,
    /// Outcome.
    pub status: Status,
    /// Wall time, ms.
    pub duration_ms: f64,
    /// Error statistics of each compared output.
    pub comparisons: Vec<Comparison>,
    /// What the acceptable tier made of each wrong output derived from the reference.
    #[serde(default)]
    pub mutations: Vec<MutationRecord>,
    /// The outcome held against the backend's expectations (every case expected to pass
    /// until [`crate::Report::judge`] applies a file).
    pub verdict: Verdict,
    /// Why the verdict is a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict_reason: Option<String>,
}
