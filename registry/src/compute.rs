//! The compute backends, registered in this one file: their names (grammar, parsing,
//! printing), the list `devices` and the conformance suite run on, and opening each.

use crate::open::{BackendError, OpenOptions};
use crate::spec::{bad, SpecError};
use shadowattn_cpu::fast::{Arithmetic, FastCpuBackend, KvStorage};
use shadowattn_cpu::CpuBackend;
use shadowattn_hal::{ComputeBackend, HalError};
use shadowattn_opencl::{OpenClBackend, OpenClOptions, Selector, Storage};
use std::fmt;
use std::str::FromStr;

/// The compute lines of [`crate::GRAMMAR`].
macro_rules! compute_grammar {
    () => {
        "\
compute backends (--compute):
  cpu                                    the golden kernels
  cpu-fast[:<threads>][:f16]             the fast CPU kernels on <threads> threads (default: every core); f16 K/V storage with :f16
  opencl[:<platform>[:<device>]][:f16]   OpenCL, platform and device by index or part of a name; f16 K/V storage with :f16"
    };
}
pub(crate) use compute_grammar;

/// The first word of every compute backend's name but `cpu` (which is both roles).
pub const COMPUTE_HEADS: [&str; 2] = ["cpu-fast", "opencl"];

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
            h if crate::npu::NPU_HEADS.contains(&h) => bad(
                name,
                "that is an NPU backend; compute backends are cpu, cpu-fast and opencl",
            ),
            _ => bad(name, "unknown compute backend"),
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

impl ComputeSpec {
    /// Opens the backend.
    pub fn open(&self, options: &OpenOptions) -> Result<Box<dyn ComputeBackend>, BackendError> {
        let fp16 = options.cpu_arithmetic == Arithmetic::F16;
        if fp16 && !matches!(self, ComputeSpec::CpuFast { .. }) {
            return Err(BackendError::Hal(HalError::invalid_argument(
                "arithmetic",
                format!("f16 arithmetic exists on cpu-fast only, not on `{self}`"),
            )));
        }
        Ok(match self {
            ComputeSpec::Cpu => Box::new(CpuBackend::new()),
            ComputeSpec::CpuFast { threads, f16 } => {
                let threads = threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                let storage = if *f16 { KvStorage::F16 } else { KvStorage::F32 };
                Box::new(
                    FastCpuBackend::new(threads)?
                        .with_storage(storage)
                        .with_arithmetic(options.cpu_arithmetic),
                )
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
