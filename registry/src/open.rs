//! What opening a backend takes and how it fails: the options names do not carry, and each
//! backend's own error.

use shadowattn_hal::HalError;
use shadowattn_neuron::NeuronError;
use shadowattn_opencl::OpenClError;
use shadowattn_qnn::QnnError;
use shadowattn_simulator::SimError;
use std::path::PathBuf;
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
    /// The launch paths a simulated SoC prices (`None`s: its profile's default).
    pub sim_launch: shadowattn_simulator::LaunchChoice,
    /// The arithmetic of `cpu-fast`'s sparse softmax·V (F16 on another compute backend is an
    /// error).
    pub cpu_arithmetic: shadowattn_cpu::fast::Arithmetic,
}
