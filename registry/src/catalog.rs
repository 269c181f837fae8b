//! The one list of known backends: what `shadowattn devices` reports and the conformance
//! suites run on.

use crate::spec::{ComputeSpec, NpuSpec, SocRef};
use shadowattn_simulator::npu::profile::builtin_names;

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

/// Every compute backend: the golden kernels, the fast kernels on one and two threads and with
/// f16 K/V storage, and OpenCL with f32 and f16 K/V storage.
pub fn compute_backends() -> Vec<ComputeSpec> {
    let fast = |threads, f16| ComputeSpec::CpuFast {
        threads: Some(threads),
        f16,
    };
    let opencl = |f16| ComputeSpec::OpenCl {
        platform: None,
        device: None,
        f16,
    };
    vec![
        ComputeSpec::Cpu,
        fast(1, false),
        fast(2, false),
        fast(2, true),
        opencl(false),
        opencl(true),
    ]
}
