//! Opening the backend a spec names; failures keep each backend's own error.

use crate::spec::{ComputeSpec, NpuSpec, SocRef};
use shadowattn_cpu::fast::{FastCpuBackend, KvStorage};
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{ComputeBackend, HalError, NpuBackend};
use shadowattn_neuron::{NeuronBackend, NeuronError, NeuronOptions};
use shadowattn_opencl::{OpenClBackend, OpenClError, OpenClOptions, Storage};
use shadowattn_pipeline::DeviceModel;
use shadowattn_qnn::{QnnBackend, QnnError, QnnOptions};
use shadowattn_simulator::{SimBackend, SimError, SimulatedSoc, SocProfile};
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

/// A backend that could not be opened, with its own error (a program can match on the cause:
/// every library a loader tried, a vendor status, a profile's file and line).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The simulator's SoC profile.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// Qualcomm QNN.
    #[error(transparent)]
    Qnn(#[from] QnnError),
    /// MediaTek Neuron.
    #[error(transparent)]
    Neuron(#[from] NeuronError),
    /// OpenCL.
    #[error(transparent)]
    OpenCl(#[from] OpenClError),
    /// A CPU backend (its thread pool).
    #[error(transparent)]
    Hal(#[from] HalError),
}

/// Where to find vendor libraries, overriding the loaders' search, and backend options that
/// names do not carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// The QNN library (`libQnnHtp.so`); `None` searches.
    pub qnn_library: Option<PathBuf>,
    /// The Neuron adapter library; `None` searches.
    pub neuron_library: Option<PathBuf>,
    /// The OpenCL library; `None` searches.
    pub opencl_library: Option<PathBuf>,
    /// Whether OpenCL records every command's timestamps as events.
    pub opencl_profiling: bool,
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
                let profile = soc.load()?;
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

impl ComputeSpec {
    /// Opens the backend.
    pub fn open(&self, options: &OpenOptions) -> Result<Box<dyn ComputeBackend>, BackendError> {
        Ok(match self {
            ComputeSpec::Cpu => Box::new(CpuBackend::new()),
            ComputeSpec::CpuFast { threads, f16 } => {
                let threads = threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                let storage = if *f16 { KvStorage::F16 } else { KvStorage::F32 };
                Box::new(FastCpuBackend::new(threads)?.with_storage(storage))
            }
            ComputeSpec::OpenCl {
                platform,
                device,
                f16,
            } => Box::new(OpenClBackend::open(OpenClOptions {
                library: options.opencl_library.clone(),
                platform: platform.clone(),
                device: device.clone(),
                storage: if *f16 { Storage::F16 } else { Storage::Auto },
                // f16 storage goes through the core `vload_half`, which needs no cl_khr_fp16.
                f16_without_extension: *f16,
                profiling: options.opencl_profiling,
                ..Default::default()
            })?),
        })
    }
}
