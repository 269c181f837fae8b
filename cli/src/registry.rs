//! The one place where backend names become backends.

use shadowattn_cpu::fast::{FastCpuBackend, KvStorage};
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{ComputeBackend, HalError, NpuBackend};
use shadowattn_neuron::{NeuronBackend, NeuronOptions};
use shadowattn_opencl::{OpenClBackend, OpenClOptions, Selector};
use shadowattn_qnn::{QnnBackend, QnnOptions};
use shadowattn_simulator::{profile::builtin_names, SimBackend, SocProfile};
use std::path::Path;

/// The default NPU backend: the simulator with the paper's phone.
pub const DEFAULT_NPU: &str = "sim:snapdragon-8-gen-3";

/// An NPU backend, with the SoC profile behind it when it is the simulator.
pub struct NpuChoice {
    /// The backend.
    pub backend: Box<dyn NpuBackend>,
    /// The simulator's profile, if the backend is the simulator.
    pub soc: Option<SocProfile>,
}

/// Names accepted for NPU graph backends, for messages.
pub fn npu_names() -> String {
    let sims: Vec<String> = builtin_names().iter().map(|n| format!("sim:{n}")).collect();
    format!(
        "cpu, neuron, qnn[:htp[:<socModel>]], {}, sim:<path to a SoC profile .toml>",
        sims.join(", ")
    )
}

/// The NPU graph backend called `name`: `cpu`, `neuron`, `qnn[:htp[:<socModel>]]`, `sim:<built-in SoC>`
/// or `sim:<profile.toml>`.
pub fn npu_backend(name: &str) -> Result<NpuChoice, HalError> {
    if name == "cpu" {
        return Ok(NpuChoice {
            backend: Box::new(CpuBackend::new()),
            soc: None,
        });
    }
    if name == "neuron" {
        let neuron = NeuronBackend::open(NeuronOptions::default())?;
        return Ok(NpuChoice {
            backend: Box::new(neuron),
            soc: None,
        });
    }
    if name == "qnn" || name.starts_with("qnn:") {
        let mut parts = name.split(':').skip(1);
        if let Some(kind) = parts.next() {
            if kind != "htp" {
                return Err(HalError::Unavailable {
                    backend: name.to_string(),
                    detail: "the QNN backend drives HTP only: use `qnn`, `qnn:htp` or `qnn:htp:<socModel>`".into(),
                });
            }
        }
        let soc_model = parts
            .next()
            .map(|s| {
                s.parse::<u32>().map_err(|_| {
                    HalError::invalid_argument("socModel", format!("`{s}` is not a number"))
                })
            })
            .transpose()?;
        let qnn = QnnBackend::open(QnnOptions {
            soc_model,
            ..Default::default()
        })?;
        return Ok(NpuChoice {
            backend: Box::new(qnn),
            soc: None,
        });
    }
    let soc = match name.strip_prefix("sim:") {
        Some(soc) if soc.ends_with(".toml") => SocProfile::load(Path::new(soc)),
        Some(soc) => SocProfile::builtin(soc),
        None if name == "sim" => SocProfile::builtin("snapdragon-8-gen-3"),
        None => {
            return Err(HalError::Unavailable {
                backend: name.to_string(),
                detail: format!("unknown NPU backend; known: {}", npu_names()),
            })
        }
    }
    .map_err(HalError::from)?;
    Ok(NpuChoice {
        backend: Box::new(SimBackend::new(soc.clone())),
        soc: Some(soc),
    })
}

/// The compute-kernel backend called `name`: `cpu` (golden), `cpu-fast[:<threads>][:f16]` (f16
/// K/V storage with `:f16`) or
/// `opencl[:<platform>[:<device>]]` (index or part of a name; profiling on, so its commands can
/// be written as a timeline).
pub fn compute_backend(name: &str) -> Result<Box<dyn ComputeBackend>, HalError> {
    if name == "cpu" {
        return Ok(Box::new(CpuBackend::new()));
    }
    if name == "opencl" || name.starts_with("opencl:") {
        let mut parts = name.split(':').skip(1);
        let selector = |p: Option<&str>| -> Result<Option<Selector>, HalError> {
            p.map(|s| s.parse::<Selector>().map_err(HalError::from))
                .transpose()
        };
        let platform = selector(parts.next())?;
        let device = selector(parts.next())?;
        if parts.next().is_some() {
            return Err(HalError::Unavailable {
                backend: name.to_string(),
                detail: "use `opencl`, `opencl:<platform>` or `opencl:<platform>:<device>`".into(),
            });
        }
        let backend = OpenClBackend::open(OpenClOptions {
            platform,
            device,
            profiling: true,
            ..Default::default()
        })?;
        return Ok(Box::new(backend));
    }
    if let Some(rest) = name.strip_prefix("cpu-fast") {
        let (rest, storage) = match rest.strip_suffix(":f16") {
            Some(rest) => (rest, KvStorage::F16),
            None => (rest, KvStorage::F32),
        };
        let threads = match rest.strip_prefix(':') {
            Some(t) => t.parse::<usize>().map_err(|_| {
                HalError::invalid_argument("threads", format!("`{t}` is not a number"))
            })?,
            None if rest.is_empty() => std::thread::available_parallelism().map_or(1, |n| n.get()),
            None => {
                return Err(HalError::Unavailable {
                    backend: name.to_string(),
                    detail: "use `cpu-fast`, `cpu-fast:<threads>`, `cpu-fast:f16` or `cpu-fast:<threads>:f16`".into(),
                })
            }
        };
        return Ok(Box::new(
            FastCpuBackend::new(threads)?.with_storage(storage),
        ));
    }
    Err(HalError::Unavailable {
        backend: name.to_string(),
        detail: "unknown compute backend; known: cpu, cpu-fast[:<threads>][:f16], opencl[:<platform>[:<device>]]"
            .into(),
    })
}

#[cfg(test)]
mod fuzz {
    //! Backend names are free text from the command line: whatever the text, the registry
    //! returns a backend or a typed error, never a panic. `PROPTEST_CASES=1000000` for a long run.

    use super::*;
    use proptest::prelude::*;

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
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_backend_name_is_a_backend_or_a_typed_error(name in names()) {
            // Names that would open a vendor NPU library are left to the backends' own tests.
            let opens_library = name == "neuron" || name.starts_with("qnn");
            if !opens_library {
                let _ = npu_backend(&name).map(|c| c.backend.name().to_string());
                let _ = compute_backend(&name).map(|b| b.name().to_string());
            }
        }
    }

    #[test]
    fn absurd_thread_counts_are_refused() {
        let err = compute_backend("cpu-fast:1000000000").unwrap_err();
        assert!(err.to_string().contains("1..=1024"), "{err}");
        assert!(compute_backend("cpu-fast:0").is_err());
        assert!(compute_backend("cpu-fast:-1").is_err());
        assert_eq!(compute_backend("cpu-fast:2").unwrap().name(), "cpu-fast");
    }

    #[test]
    fn f16_storage_is_a_suffix() {
        for name in ["cpu-fast:f16", "cpu-fast:2:f16"] {
            assert_eq!(compute_backend(name).unwrap().name(), "cpu-fast", "{name}");
        }
        for name in ["cpu-fast:f32", "cpu-fast:2:bf16", "cpu-fastf16"] {
            assert!(compute_backend(name).is_err(), "{name}");
        }
    }
}
