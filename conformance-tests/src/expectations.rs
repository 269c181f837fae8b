//! What each backend is expected to do with each case, in data files beside the suite (like the
//! expectation lists of the Vulkan CTS, the WebGPU CTS and wgpu's `FailureCase`): a case not
//! listed must pass; a listed one is unsupported (with the reason and its source) or a known
//! failure (with the reason). Any other outcome — an unexpected skip, failure or pass — fails.

use crate::outcome::{CaseResult, Status};
pub use crate::outcome::{Suite, Verdict};
use serde::{Deserialize, Serialize};
use shadowattn_registry::{NpuSpec, SocRef};
use std::collections::BTreeMap;

/// Why a backend does not support a case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsupported {
    /// What the backend lacks.
    pub reason: String,
    /// Where that is known from (a vendor error code, a document, a measurement).
    pub source: String,
}

/// Why a backend is known to fail a case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownFailure {
    /// What goes wrong.
    pub reason: String,
}

/// The expected results of one backend on one suite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// The backend's name, as the registry spells it.
    pub backend: String,
    /// The suite.
    pub suite: Suite,
    /// Cases the backend declares unsupported, by name.
    #[serde(default)]
    pub unsupported: BTreeMap<String, Unsupported>,
    /// Cases the backend is known to fail, by name.
    #[serde(default)]
    pub known_failure: BTreeMap<String, KnownFailure>,
}

/// The expected result of one case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected<'a> {
    /// Must pass (with or without a quality warning).
    Pass,
    /// Must be declared unsupported.
    Unsupported(&'a Unsupported),
    /// Must fail.
    KnownFailure(&'a KnownFailure),
}

/// An expectation file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExpectationError {
    /// Not valid TOML of the expected form.
    #[error("expectation file `{origin}` is not valid: {detail}")]
    Parse {
        /// Where it came from.
        origin: String,
        /// The parser's message.
        detail: String,
    },
    /// Written for another backend or suite.
    #[error("expectation file `{origin}` is for {found}, not {wanted}")]
    OtherBackend {
        /// Where it came from.
        origin: String,
        /// The file's backend and suite.
        found: String,
        /// The run's backend and suite.
        wanted: String,
    },
    /// Names cases the suite does not have (renamed or removed: update the file).
    #[error("expectation file `{origin}` names cases the {suite} suite does not have: {cases}")]
    UnknownCases {
        /// Where it came from.
        origin: String,
        /// The suite.
        suite: &'static str,
        /// The unknown names, comma-separated.
        cases: String,
    },
}

macro_rules! builtin_files {
    ($($suite:ident $file:literal),* $(,)?) => {
        &[$((Suite::$suite, $file, include_str!(concat!("../expectations/", $file)))),*]
    };
}

/// Every built-in expectation file (suite, path under `conformance-tests/expectations/`, TOML
/// text).
const BUILTIN: &[(Suite, &str, &str)] = builtin_files![
    Npu "npu/cpu.toml",
    Npu "npu/qnn-htp.toml",
    Npu "npu/qnn-htp-52.toml",
    Npu "npu/neuron.toml",
    Compute "compute/cpu.toml",
    Compute "compute/cpu-fast-1.toml",
    Compute "compute/cpu-fast-2.toml",
    Compute "compute/cpu-fast-2-f16.toml",
    Compute "compute/opencl.toml",
    Compute "compute/opencl-f16.toml",
];

/// Path (under `conformance-tests/expectations/`) and text of the cases a simulator profile's
/// `[limits]` refuse, per limit: one list for every `sim:` backend instead of a copied file per
/// profile.
const SIMULATOR_LIMITS: (&str, &str) = (
    "npu/limits/simulator.toml",
    include_str!("../expectations/npu/limits/simulator.toml"),
);

/// The cases one `[limits]` key refuses, with the reason.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// The `[limits]` key of a simulator profile.
    pub limit: String,
    /// What the NPU lacks when the key is false.
    pub reason: String,
    /// The cases it refuses.
    pub cases: Vec<String>,
}

/// The file of refusals.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Refusals {
    refusal: Vec<Refusal>,
}

/// Every refusal of the built-in limits file.
pub fn simulator_refusals() -> Vec<Refusal> {
    toml::from_str::<Refusals>(SIMULATOR_LIMITS.1)
        .expect("the built-in limits file parses")
        .refusal
}

impl Expectations {
    /// The expectations of simulator backend `backend` whose profile refuses the `[limits]`
    /// keys in `refused`: every case those keys refuse is unsupported, with `source` (the
    /// profile's `[limits]` and their source).
    pub fn of_simulator(backend: &str, refused: &[&str], source: &str) -> Self {
        let mut e = Self::every_case_passes(Suite::Npu, backend);
        for r in simulator_refusals() {
            if !refused.contains(&r.limit.as_str()) {
                continue;
            }
            for case in r.cases {
                let why = Unsupported {
                    reason: r.reason.clone(),
                    source: source.to_string(),
                };
                e.unsupported.insert(case, why);
            }
        }
        e
    }

    /// No file: every case is expected to pass.
    pub fn every_case_passes(suite: Suite, backend: &str) -> Self {
        Expectations {
            backend: backend.to_string(),
            suite,
            unsupported: BTreeMap::new(),
            known_failure: BTreeMap::new(),
        }
    }

    /// Parses a file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ExpectationError> {
        toml::from_str(text).map_err(|e| ExpectationError::Parse {
            origin: origin.to_string(),
            detail: e.to_string(),
        })
    }

    /// Where the file of `backend` on `suite` lives under `conformance-tests/expectations/`
    /// (and under a `--write-expectations` folder): `<suite>/<backend>.toml`, every character
    /// of the name outside `[A-Za-z0-9._-]` (`:`, `/`) made `-`.
    pub fn path_of(suite: Suite, backend: &str) -> String {
        let stem: String = backend
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{}/{stem}.toml", suite.name())
    }

    /// The built-in expectations of `backend` on `suite` and where they come from (a path
    /// under `conformance-tests/expectations/`): the project's file for the backend, or for a
    /// simulator backend without one (any `sim:<soc>` or `sim:<profile.toml>`) the refusals
    /// of its profile's `[limits]`.
    pub fn builtin(suite: Suite, backend: &str) -> Option<(Self, String)> {
        let path = Self::path_of(suite, backend);
        let Some(&(_, file, text)) = BUILTIN.iter().find(|(s, f, _)| *s == suite && *f == path)
        else {
            return Self::of_simulator_spec(suite, backend);
        };
        let e = Self::parse(text, file).expect("built-in expectation files parse");
        assert_eq!(
            (e.suite, e.backend.as_str()),
            (suite, backend),
            "built-in {file} is for another backend"
        );
        Some((e, file.to_string()))
    }

    /// The expectations of `backend` from its simulator profile's `[limits]`, when it names a
    /// simulator whose profile loads.
    fn of_simulator_spec(suite: Suite, backend: &str) -> Option<(Self, String)> {
        let Ok(NpuSpec::Sim(soc)) = backend.parse::<NpuSpec>() else {
            return None;
        };
        if suite != Suite::Npu {
            return None;
        }
        let profile = soc.load().ok()?;
        let origin = match &soc {
            SocRef::Builtin(name) => format!("simulator/socs/{name}.toml"),
            SocRef::File(path) => path.display().to_string(),
        };
        let source = format!("the [limits] of {origin}: {}", profile.limits.source);
        let e = Self::of_simulator(backend, &profile.limits.refused(), &source);
        Some((
            e,
            format!("{} (the [limits] of {origin})", SIMULATOR_LIMITS.0),
        ))
    }

    /// Checks the file is about `backend` on `suite` and names only cases in `names`.
    pub fn check_for<'a>(
        &self,
        origin: &str,
        suite: Suite,
        backend: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ExpectationError> {
        if self.suite != suite || self.backend != backend {
            return Err(ExpectationError::OtherBackend {
                origin: origin.to_string(),
                found: format!("`{}` ({} suite)", self.backend, self.suite.name()),
                wanted: format!("`{backend}` ({} suite)", suite.name()),
            });
        }
        let names: std::collections::BTreeSet<&str> = names.into_iter().collect();
        let unknown: Vec<&str> = self
            .unsupported
            .keys()
            .chain(self.known_failure.keys())
            .map(String::as_str)
            .filter(|n| !names.contains(n))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(ExpectationError::UnknownCases {
                origin: origin.to_string(),
                suite: suite.name(),
                cases: unknown.join(", "),
            })
        }
    }

    /// The expected result of `case`.
    pub fn of(&self, case: &str) -> Expected<'_> {
        if let Some(u) = self.unsupported.get(case) {
            Expected::Unsupported(u)
        } else if let Some(f) = self.known_failure.get(case) {
            Expected::KnownFailure(f)
        } else {
            Expected::Pass
        }
    }

    /// The file a run's observed behaviour implies, for a porting user to review: every
    /// unsupported case with the backend's reason, every failure as a known failure.
    pub fn observed(suite: Suite, backend: &str, version: &str, results: &[CaseResult]) -> Self {
        let mut e = Self::every_case_passes(suite, backend);
        for r in results {
            match &r.status {
                Status::Unsupported(why) => {
                    e.unsupported.insert(
                        r.case.clone(),
                        Unsupported {
                            reason: why.clone(),
                            source: format!("observed on {backend} ({version}); review"),
                        },
                    );
                }
                Status::Failed(why) => {
                    e.known_failure.insert(
                        r.case.clone(),
                        KnownFailure {
                            reason: format!("observed: {why}; review"),
                        },
                    );
                }
                Status::Passed | Status::PassedWithWarning(_) => {}
            }
        }
        e
    }

    /// The file as TOML.
    pub fn to_toml(&self) -> String {
        format!(
            "# Expected conformance results of `{}` on the {} suite: a case not listed must pass.\n{}",
            self.backend,
            self.suite.name(),
            toml::to_string_pretty(self).expect("expectations serialize")
        )
    }
}

/// The verdict on `result` under `expected`, with the reason when it is a failure.
pub fn verdict(result: &CaseResult, expected: Expected<'_>) -> (Verdict, Option<String>) {
    let accepted: Vec<String> = result
        .mutations
        .iter()
        .filter(|m| m.outcome == crate::mutation::MutationOutcome::Accepted)
        .map(|m| format!("output {} {}", m.output, m.mutation.name()))
        .collect();
    if !accepted.is_empty() {
        return (
            Verdict::Failed,
            Some(format!(
                "the tolerance accepts wrong outputs: {}",
                accepted.join(", ")
            )),
        );
    }
    match (&result.status, expected) {
        (Status::Passed, Expected::Pass) => (Verdict::Passed, None),
        (Status::PassedWithWarning(_), Expected::Pass) => (Verdict::PassedWithWarning, None),
        (Status::Unsupported(_), Expected::Unsupported(_)) => {
            (Verdict::UnsupportedAsExpected, None)
        }
        (Status::Failed(_), Expected::KnownFailure(_)) => (Verdict::KnownFailure, None),
        (Status::Failed(why), _) => (Verdict::Failed, Some(why.clone())),
        (Status::Unsupported(why), _) => (
            Verdict::Failed,
            Some(format!("unexpectedly declared unsupported: {why}")),
        ),
        (Status::Passed | Status::PassedWithWarning(_), Expected::Unsupported(u)) => (
            Verdict::Failed,
            Some(format!(
                "unexpected pass: expected unsupported ({}); update the expectation file",
                u.reason
            )),
        ),
        (Status::Passed | Status::PassedWithWarning(_), Expected::KnownFailure(f)) => (
            Verdict::Failed,
            Some(format!(
                "unexpected pass: expected a known failure ({}); update the expectation file",
                f.reason
            )),
        ),
    }
}
