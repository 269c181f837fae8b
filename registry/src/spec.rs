//! Backend names as typed specs: one grammar, parsed with `FromStr`, printed with `Display`
//! (`parse(spec.to_string()) == spec`).

use shadowattn_cpu::fast::FastCpuBackend;
use shadowattn_opencl::Selector;
use shadowattn_simulator::npu::profile::builtin_names;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use thiserror::Error;

/// The grammar of backend names, for help texts and errors.
pub const GRAMMAR: &str = "\
NPU backends (--npu):
  cpu                                    the golden interpreter (the reference NPU)
  sim[:<soc>]                            the simulator with a built-in SoC profile (default snapdragon-8-gen-3)
  sim:<profile.toml>                     the simulator with a SoC profile file
  qnn[:htp[:<socModel>]]                 Qualcomm QNN on HTP; socModel is QNN's SoC number (52 = SA8255)
  neuron                                 MediaTek NeuroPilot (Neuron Adapter)
compute backends (--compute):
  cpu                                    the golden kernels
  cpu-fast[:<threads>][:f16]             the fast CPU kernels on <threads> threads (default: every core); f16 K/V storage with :f16
  opencl[:<platform>[:<device>]][:f16]   OpenCL, platform and device by index or part of a name; f16 K/V storage with :f16";

/// A backend name that does not follow [`GRAMMAR`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("`{name}` is not a backend name: {why}\n{GRAMMAR}")]
pub struct SpecError {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub why: String,
}

fn bad<T>(name: &str, why: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError {
        name: name.to_string(),
        why: why.into(),
    })
}

/// The SoC profile of a simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocRef {
    /// A built-in profile, by name.
    Builtin(String),
    /// A profile file (`.toml`).
    File(PathBuf),
}

/// The default SoC of the simulator: the paper's phone.
pub const DEFAULT_SOC: &str = "snapdragon-8-gen-3";

/// An NPU graph backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NpuSpec {
    /// The golden CPU interpreter, standing in for an NPU.
    Cpu,
    /// The simulator of a SoC.
    Sim(SocRef),
    /// Qualcomm QNN on HTP, optionally for one QNN SoC model.
    Qnn {
        /// QNN's SoC model number (52 = SA8255); `None` keeps the library's default.
        soc_model: Option<u32>,
    },
    /// MediaTek's Neuron Adapter.
    Neuron,
}

/// A compute-kernel backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComputeSpec {
    /// The golden CPU kernels.
    Cpu,
    /// The fast CPU kernels.
    CpuFast {
        /// Worker threads; `None` uses every core.
        threads: Option<usize>,
        /// Whether K and V are stored as f16.
        f16: bool,
    },
    /// OpenCL kernels on a GPU (or PoCL).
    OpenCl {
        /// The platform; `None` for any.
        platform: Option<Selector>,
        /// The device; `None` prefers a GPU.
        device: Option<Selector>,
        /// Whether K and V are stored as f16.
        f16: bool,
    },
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

impl Default for NpuSpec {
    fn default() -> Self {
        NpuSpec::Sim(SocRef::Builtin(DEFAULT_SOC.into()))
    }
}

fn parse_soc(name: &str, soc: &str) -> Result<SocRef, SpecError> {
    if soc.ends_with(".toml") {
        return Ok(SocRef::File(PathBuf::from(soc)));
    }
    if builtin_names().contains(&soc) {
        return Ok(SocRef::Builtin(soc.to_string()));
    }
    bad(
        name,
        format!(
            "unknown SoC profile `{soc}`; built in: {} (or a .toml profile file)",
            builtin_names().join(", ")
        ),
    )
}

impl FromStr for NpuSpec {
    type Err = SpecError;

    fn from_str(name: &str) -> Result<Self, SpecError> {
        match name {
            "cpu" => return Ok(NpuSpec::Cpu),
            "neuron" => return Ok(NpuSpec::Neuron),
            "sim" => return Ok(NpuSpec::default()),
            "qnn" | "qnn:htp" => return Ok(NpuSpec::Qnn { soc_model: None }),
            _ => {}
        }
        if let Some(soc) = name.strip_prefix("sim:") {
            return Ok(NpuSpec::Sim(parse_soc(name, soc)?));
        }
        if let Some(n) = name.strip_prefix("qnn:htp:") {
            return match n.parse::<u32>() {
                Ok(soc_model) => Ok(NpuSpec::Qnn {
                    soc_model: Some(soc_model),
                }),
                Err(_) => bad(name, format!("the QNN SoC model `{n}` is not a number")),
            };
        }
        if name.starts_with("qnn:") {
            return bad(
                name,
                "the QNN backend drives HTP only: use `qnn`, `qnn:htp` or `qnn:htp:<socModel>`",
            );
        }
        if matches!(name.split(':').next(), Some("cpu-fast" | "opencl")) {
            return bad(
                name,
                "that is a compute backend; NPU backends are cpu, sim, qnn and neuron",
            );
        }
        bad(name, "unknown NPU backend")
    }
}

/// Splits a trailing `:f16` off.
fn f16_suffix(rest: &str) -> (&str, bool) {
    match rest.strip_suffix("f16") {
        Some(r) if r.is_empty() || r.ends_with(':') => (r.trim_end_matches(':'), true),
        _ => (rest, false),
    }
}

fn parse_threads(name: &str, t: &str) -> Result<usize, SpecError> {
    let max = FastCpuBackend::MAX_THREADS;
    match t.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        Ok(n) => bad(name, format!("{n} threads: must be in 1..={max}")),
        Err(_) => bad(
            name,
            format!("`{t}` is not a thread count; use cpu-fast, cpu-fast:<threads>, cpu-fast:f16 or cpu-fast:<threads>:f16"),
        ),
    }
}

fn parse_selector(name: &str, s: &str) -> Result<Selector, SpecError> {
    s.parse::<Selector>().or_else(|e| bad(name, e.to_string()))
}

impl FromStr for ComputeSpec {
    type Err = SpecError;

    fn from_str(name: &str) -> Result<Self, SpecError> {
        if name == "cpu" {
            return Ok(ComputeSpec::Cpu);
        }
        let (head, rest) = name.split_once(':').unwrap_or((name, ""));
        match head {
            "cpu-fast" => {
                let (rest, f16) = f16_suffix(rest);
                let threads = match rest {
                    "" => None,
                    t => Some(parse_threads(name, t)?),
                };
                Ok(ComputeSpec::CpuFast { threads, f16 })
            }
            "opencl" => {
                let (rest, f16) = f16_suffix(rest);
                let mut parts = rest
                    .split(':')
                    .filter(|p| !rest.is_empty() || !p.is_empty());
                let platform = parts.next().map(|p| parse_selector(name, p)).transpose()?;
                let device = parts.next().map(|d| parse_selector(name, d)).transpose()?;
                if parts.next().is_some() {
                    return bad(
                        name,
                        "use opencl, opencl:<platform> or opencl:<platform>:<device>, each with an optional :f16",
                    );
                }
                Ok(ComputeSpec::OpenCl {
                    platform,
                    device,
                    f16,
                })
            }
            "sim" | "qnn" | "neuron" => bad(
                name,
                "that is an NPU backend; compute backends are cpu, cpu-fast and opencl",
            ),
            _ => bad(name, "unknown compute backend"),
        }
    }
}

impl FromStr for BackendSpec {
    type Err = SpecError;

    fn from_str(name: &str) -> Result<Self, SpecError> {
        if name == "cpu" {
            return Ok(BackendSpec::Cpu);
        }
        match name.split(':').next().unwrap_or_default() {
            "cpu-fast" | "opencl" => name.parse().map(BackendSpec::Compute),
            "sim" | "qnn" | "neuron" => name.parse().map(BackendSpec::Npu),
            _ => bad(name, "unknown backend"),
        }
    }
}

impl fmt::Display for SocRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocRef::Builtin(n) => f.write_str(n),
            SocRef::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl fmt::Display for NpuSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NpuSpec::Cpu => f.write_str("cpu"),
            NpuSpec::Sim(soc) => write!(f, "sim:{soc}"),
            NpuSpec::Qnn { soc_model: None } => f.write_str("qnn:htp"),
            NpuSpec::Qnn { soc_model: Some(n) } => write!(f, "qnn:htp:{n}"),
            NpuSpec::Neuron => f.write_str("neuron"),
        }
    }
}

fn selector_text(s: &Selector) -> String {
    match s {
        Selector::Index(i) => i.to_string(),
        Selector::Name(n) => n.clone(),
    }
}

impl fmt::Display for ComputeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let f16 = |on: bool| if on { ":f16" } else { "" };
        match self {
            ComputeSpec::Cpu => f.write_str("cpu"),
            ComputeSpec::CpuFast { threads, f16: h } => match threads {
                Some(t) => write!(f, "cpu-fast:{t}{}", f16(*h)),
                None => write!(f, "cpu-fast{}", f16(*h)),
            },
            ComputeSpec::OpenCl {
                platform,
                device,
                f16: h,
            } => {
                f.write_str("opencl")?;
                for s in platform.iter().chain(device) {
                    write!(f, ":{}", selector_text(s))?;
                }
                f.write_str(f16(*h))
            }
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
