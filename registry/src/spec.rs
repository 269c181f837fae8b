//! Backend names as typed specs: one grammar, parsed with `FromStr`, printed with `Display`
//! (`parse(spec.to_string()) == spec`).

use crate::compute::{compute_grammar, ComputeSpec, COMPUTE_HEADS};
use crate::npu::{npu_grammar, NpuSpec, NPU_HEADS};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// The grammar of backend names, for help texts and errors.
pub const GRAMMAR: &str = concat!(npu_grammar!(), compute_grammar!());

/// A backend name that does not follow [`GRAMMAR`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("`{name}` is not a backend name: {why}\n{GRAMMAR}")]
pub struct SpecError {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub why: String,
}

pub(crate) fn bad<T>(name: &str, why: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError {
        name: name.to_string(),
        why: why.into(),
    })
}

/// Any backend: `cpu` is both the golden interpreter and the golden kernels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendSpec {
    /// The golden CPU backend, in both roles.
    Cpu,
    /// An NPU graph backend.
    Npu(NpuSpec),
    /// A compute-kernel backend.
    Compute(ComputeSpec),
}

impl BackendSpec {
    /// The NPU role of this backend, if it has one.
    pub fn npu(&self) -> Option<NpuSpec> {
        match self {
            BackendSpec::Cpu => Some(NpuSpec::Cpu),
            BackendSpec::Npu(n) => Some(n.clone()),
            BackendSpec::Compute(_) => None,
        }
    }

    /// The compute role of this backend, if it has one.
    pub fn compute(&self) -> Option<ComputeSpec> {
        match self {
            BackendSpec::Cpu => Some(ComputeSpec::Cpu),
            BackendSpec::Compute(c) => Some(c.clone()),
            BackendSpec::Npu(_) => None,
        }
    }
}

impl FromStr for BackendSpec {
    type Err = SpecError;

    fn from_str(name: &str) -> Result<Self, SpecError> {
        if name == "cpu" {
            return Ok(BackendSpec::Cpu);
        }
        let head = name.split(':').next().unwrap_or_default();
        if COMPUTE_HEADS.contains(&head) {
            name.parse().map(BackendSpec::Compute)
        } else if NPU_HEADS.contains(&head) {
            name.parse().map(BackendSpec::Npu)
        } else {
            bad(name, "unknown backend")
        }
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendSpec::Cpu => f.write_str("cpu"),
            BackendSpec::Npu(n) => n.fmt(f),
            BackendSpec::Compute(c) => c.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SocRef;
    use proptest::prelude::*;

    #[test]
    fn every_form_of_the_grammar_parses_and_prints_back() {
        for (name, printed) in [
            ("cpu", "cpu"),
            ("sim", "sim:snapdragon-8-gen-3"),
            ("sim:sa8255", "sim:sa8255"),
            ("sim:my/soc.toml", "sim:my/soc.toml"),
            ("qnn", "qnn:htp"),
            ("qnn:htp", "qnn:htp"),
            ("qnn:htp:52", "qnn:htp:52"),
            ("neuron", "neuron"),
        ] {
            let spec: NpuSpec = name.parse().unwrap();
            assert_eq!(spec.to_string(), printed, "{name}");
            assert_eq!(printed.parse::<NpuSpec>().unwrap(), spec);
        }
        for (name, printed) in [
            ("cpu", "cpu"),
            ("cpu-fast", "cpu-fast"),
            ("cpu-fast:2", "cpu-fast:2"),
            ("cpu-fast:f16", "cpu-fast:f16"),
            ("cpu-fast:2:f16", "cpu-fast:2:f16"),
            ("opencl", "opencl"),
            ("opencl:f16", "opencl:f16"),
            ("opencl:0:1", "opencl:0:1"),
            ("opencl:Portable:cpu:f16", "opencl:Portable:cpu:f16"),
        ] {
            let spec: ComputeSpec = name.parse().unwrap();
            assert_eq!(spec.to_string(), printed, "{name}");
            assert_eq!(printed.parse::<ComputeSpec>().unwrap(), spec);
        }
        assert_eq!("cpu".parse::<BackendSpec>().unwrap(), BackendSpec::Cpu);
        assert!(matches!(
            "opencl:0".parse::<BackendSpec>().unwrap(),
            BackendSpec::Compute(ComputeSpec::OpenCl { .. })
        ));
        assert_eq!(
            "sim:sa8255".parse::<BackendSpec>().unwrap().npu(),
            Some(NpuSpec::Sim(SocRef::Builtin("sa8255".into())))
        );
    }

    #[test]
    fn bad_names_say_why_and_list_the_grammar() {
        for (name, why) in [
            ("nope", "unknown"),
            ("sim:nowhere", "unknown SoC profile `nowhere`"),
            ("qnn:gpu", "HTP only"),
            ("qnn:htp:x", "not a number"),
            ("cpu-fast:0", "1..=1024"),
            ("cpu-fast:1000000000", "1..=1024"),
            ("cpu-fast:-1", "not a thread count"),
            ("cpu-fast:f32", "not a thread count"),
            ("cpu-fast:2:bf16", "not a thread count"),
            ("cpu-fastf16", "unknown"),
            ("opencl:0:0:7", "opencl:<platform>:<device>"),
            ("opencl::0", "empty"),
        ] {
            let e = name
                .parse::<BackendSpec>()
                .map(|_| ())
                .and_then(|()| name.parse::<ComputeSpec>().map(|_| ()))
                .unwrap_err();
            assert!(e.to_string().contains(why), "{name}: {e}");
            assert!(e.to_string().contains("cpu-fast[:<threads>][:f16]"), "{e}");
        }
        let e = "opencl".parse::<NpuSpec>().unwrap_err();
        assert!(e.why.contains("compute backend"), "{e}");
        let e = "sim".parse::<ComputeSpec>().unwrap_err();
        assert!(e.why.contains("NPU backend"), "{e}");
    }

    fn names() -> impl Strategy<Value = String> {
        let prefixes = prop::sample::select(vec![
            "",
            "cpu",
            "cpu-fast",
            "cpu-fast:",
            "cpu-fast:2:f",
            "sim:",
            "sim:sa8255",
            "qnn",
            "qnn:",
            "qnn:htp:",
            "neuron",
            "opencl:",
            "opencl:0:",
            "opencl:x:y:",
        ]);
        (prefixes, "[ -~\u{00e9}\u{4e2d}]{0,12}").prop_map(|(p, s)| format!("{p}{s}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: shadowattn_test_support::proptest_cases(256),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Names are free text from the command line: whatever the text, parsing gives a spec
        /// that prints back to itself, or a typed error, never a panic.
        /// `PROPTEST_CASES=1000000` for a long run.
        #[test]
        fn any_name_is_a_spec_that_round_trips_or_a_typed_error(name in names()) {
            if let Ok(spec) = name.parse::<BackendSpec>() {
                prop_assert_eq!(spec.to_string().parse::<BackendSpec>().unwrap(), spec);
            }
            if let Ok(spec) = name.parse::<NpuSpec>() {
                prop_assert_eq!(spec.to_string().parse::<NpuSpec>().unwrap(), spec);
            }
            if let Ok(spec) = name.parse::<ComputeSpec>() {
                prop_assert_eq!(spec.to_string().parse::<ComputeSpec>().unwrap(), spec);
            }
        }
    }
}
