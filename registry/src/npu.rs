//! The NPU backends, registered in this one file: their names (grammar, parsing, printing),
//! the list `devices` and the conformance suite run on, and opening each. Adding an NPU backend
//! adds a variant to [`NpuSpec`] and its arms here (the compiler points at each), its error to
//! [`crate::BackendError`], and the crate to the registry's manifest.

use crate::open::{BackendError, OpenOptions};
use crate::spec::{bad, SpecError};
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::NpuBackend;
use shadowattn_neuron::{NeuronBackend, NeuronOptions};
use shadowattn_pipeline::DeviceModel;
use shadowattn_qnn::{QnnBackend, QnnOptions};
use shadowattn_simulator::npu::profile::builtin_names;
use shadowattn_simulator::{SimBackend, SimError, SimulatedSoc, SocProfile};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// The NPU lines of [`crate::GRAMMAR`].
macro_rules! npu_grammar {
    () => {
        "\
NPU backends (--npu):
  cpu                                    the golden interpreter (the reference NPU)
  sim[:<soc>]                            the simulator with a built-in SoC profile (default snapdragon-8-gen-3)
  sim:<profile.toml>                     the simulator with a SoC profile file
  qnn[:htp[:<socModel>]]                 Qualcomm QNN on HTP; socModel is QNN's SoC number (52 = SA8255)
  neuron                                 MediaTek NeuroPilot (Neuron Adapter)
"
    };
}
pub(crate) use npu_grammar;

/// The first word of every NPU backend's name.
pub const NPU_HEADS: [&str; 4] = ["cpu", "sim", "qnn", "neuron"];

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
#[non_exhaustive]
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
        if crate::compute::COMPUTE_HEADS.contains(&name.split(':').next().unwrap_or_default()) {
            return bad(
                name,
                "that is a compute backend; NPU backends are cpu, sim, qnn and neuron",
            );
        }
        bad(name, "unknown NPU backend")
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

/// Every NPU backend: the golden interpreter, the simulator of every built-in SoC, QNN's HTP
/// and Neuron.
pub fn npu_backends() -> Vec<NpuSpec> {
    let mut list = vec![NpuSpec::Cpu];
    list.extend(
        builtin_names()
            .into_iter()
            .map(|n| NpuSpec::Sim(SocRef::Builtin(n.into()))),
    );
    list.push(NpuSpec::Qnn { soc_model: None });
    list.push(NpuSpec::Neuron);
    list
}

/// An opened NPU backend, with a model of the device behind it when there is one (the
/// simulator's SoC): it prices a layer and the NPU-only strategies.
#[derive(Debug)]
pub struct OpenedNpu {
    /// The backend.
    pub backend: Box<dyn NpuBackend>,
    /// The model of the device, when the backend is a simulated SoC.
    pub device: Option<Arc<dyn DeviceModel>>,
}

impl SocRef {
    /// Loads the profile.
    pub fn load(&self) -> Result<SocProfile, SimError> {
        match self {
            SocRef::Builtin(name) => SocProfile::builtin(name),
            SocRef::File(path) => SocProfile::load(path),
        }
    }
}

impl NpuSpec {
    /// Opens the backend.
    pub fn open(&self, options: &OpenOptions) -> Result<OpenedNpu, BackendError> {
        let (backend, device): (Box<dyn NpuBackend>, Option<Arc<dyn DeviceModel>>) = match self {
            NpuSpec::Cpu => (Box::new(CpuBackend::new()), None),
            NpuSpec::Sim(soc) => {
                let profile = soc.load()?.with_launch(options.sim_launch);
                let device = Arc::new(SimulatedSoc::new(profile.clone()));
                (Box::new(SimBackend::new(profile)), Some(device))
            }
            NpuSpec::Qnn { soc_model } => {
                let qnn = QnnBackend::open(QnnOptions {
                    library: options.qnn_library.clone(),
                    soc_model: *soc_model,
                    ..Default::default()
                })?;
                (Box::new(qnn), None)
            }
            NpuSpec::Neuron => {
                let neuron = NeuronBackend::open(NeuronOptions {
                    library: options.neuron_library.clone(),
                })?;
                (Box::new(neuron), None)
            }
        };
        Ok(OpenedNpu { backend, device })
    }
}
