//! How the host drives the NPU for one launch, and what each way costs.
//!
//! A launch pays a fixed host↔NPU overhead and moves its inputs and outputs at a per-byte rate.
//! Both depend on the path the host takes, not on the NPU:
//! - `qnn-copy`: a QNN graph execute with client buffers, copied into and out of buffers the
//!   NPU can see (what the paper's per-op figures measured);
//! - `qnn-shared`: a QNN graph execute whose inputs and outputs are registered shared memory
//!   (rpcmem / dma-buf, `memRegister`): no copy, only cache maintenance per byte;
//! - `fastrpc`: a direct kernel on the NPU's DSP called over FastRPC with shared buffers, no
//!   QNN graph around it (the mllm port's pilot).
//!
//! Every profile prices the three, each number with its source; which one a prediction uses is
//! the profile's `npu.launch.default` unless the caller picks another ([`LaunchChoice`]).

use crate::error::SimError;
use crate::npu::profile::{real, Real, Sourced};
use serde::Deserialize;
use std::fmt;
use std::str::FromStr;
use toml::Spanned;

/// How the host drives one NPU launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LaunchPath {
    /// A QNN graph execute with client buffers (copied).
    QnnCopy,
    /// A QNN graph execute with registered shared buffers (zero copy).
    QnnShared,
    /// A direct NPU kernel over FastRPC with shared buffers (no QNN graph).
    Fastrpc,
}

impl LaunchPath {
    /// Every path, in the order the profile lists them.
    pub const ALL: [LaunchPath; 3] = [
        LaunchPath::QnnCopy,
        LaunchPath::QnnShared,
        LaunchPath::Fastrpc,
    ];

    /// The path's name on the command line, in profiles and in reports.
    pub fn name(self) -> &'static str {
        match self {
            LaunchPath::QnnCopy => "qnn-copy",
            LaunchPath::QnnShared => "qnn-shared",
            LaunchPath::Fastrpc => "fastrpc",
        }
    }

    /// What the path is, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            LaunchPath::QnnCopy => "QNN graph execute, client buffers copied",
            LaunchPath::QnnShared => "QNN graph execute, registered shared buffers",
            LaunchPath::Fastrpc => "direct NPU kernel over FastRPC, shared buffers",
        }
    }
}

impl fmt::Display for LaunchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LaunchPath {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, SimError> {
        LaunchPath::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| SimError::UnknownLaunchPath {
                name: s.to_string(),
                known: LaunchPath::ALL.map(LaunchPath::name).join(", "),
            })
    }
}

/// The cost of one launch path: fixed overhead and per-byte rate of the launch's I/O.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchCosts {
    /// Host↔NPU overhead of one warm launch, µs.
    pub fixed_us: Real,
    /// Rate of moving the launch's inputs and outputs, GB/s.
    pub host_gbps: Real,
}

/// The profile's launch paths.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchProfile {
    /// The path predictions use unless told otherwise.
    pub default: Spanned<Sourced<LaunchPath>>,
    /// QNN graph execute with client buffers.
    #[serde(rename = "qnn-copy")]
    pub qnn_copy: LaunchCosts,
    /// QNN graph execute with registered shared buffers.
    #[serde(rename = "qnn-shared")]
    pub qnn_shared: LaunchCosts,
    /// A direct kernel over FastRPC.
    pub fastrpc: LaunchCosts,
    /// What the first launch of a graph adds to its path's overhead (acquiring on-chip memory,
    /// powering the units on), µs.
    pub cold_extra_us: Real,
}

impl LaunchProfile {
    /// The costs of `path`.
    pub fn costs(&self, path: LaunchPath) -> &LaunchCosts {
        match path {
            LaunchPath::QnnCopy => &self.qnn_copy,
            LaunchPath::QnnShared => &self.qnn_shared,
            LaunchPath::Fastrpc => &self.fastrpc,
        }
    }

    /// Every sourced real with its key under `npu.launch`.
    pub(crate) fn reals(&self) -> Vec<(String, &Real)> {
        let mut v = vec![("npu.launch.cold_extra_us".to_string(), &self.cold_extra_us)];
        for p in LaunchPath::ALL {
            let c = self.costs(p);
            v.push((format!("npu.launch.{p}.fixed_us"), &c.fixed_us));
            v.push((format!("npu.launch.{p}.host_gbps"), &c.host_gbps));
        }
        v
    }

    /// The default path.
    pub fn default_path(&self) -> LaunchPath {
        self.default.get_ref().value
    }

    /// Warm overhead of one launch on `path`, ns.
    pub fn warm_ns(&self, path: LaunchPath) -> f64 {
        real(&self.costs(path).fixed_us) * 1e3
    }

    /// Cold overhead of one launch on `path`, ns.
    pub fn cold_ns(&self, path: LaunchPath) -> f64 {
        self.warm_ns(path) + real(&self.cold_extra_us) * 1e3
    }

    /// Time of moving `bytes` of launch I/O on `path`, ns.
    pub fn io_ns(&self, path: LaunchPath, bytes: u64) -> f64 {
        bytes as f64 / real(&self.costs(path).host_gbps)
    }
}

/// Which path the linear layers' graphs and the pilot take; `None` is the profile's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaunchChoice {
    /// Every graph but the pilot (linear layers, NPU attention graphs).
    pub graphs: Option<LaunchPath>,
    /// The pilot (defaults to the graphs' path).
    pub pilot: Option<LaunchPath>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npu::profile::SocProfile;

    #[test]
    fn a_launch_costs_its_paths_figures() {
        let soc = SocProfile::builtin("snapdragon-8-gen-3").unwrap();
        let l = &soc.npu.launch;
        for path in LaunchPath::ALL {
            let c = l.costs(path);
            assert_eq!(l.warm_ns(path), real(&c.fixed_us) * 1e3, "{path}");
            assert_eq!(
                l.cold_ns(path),
                (real(&c.fixed_us) + real(&l.cold_extra_us)) * 1e3,
                "{path}"
            );
            // GB/s is bytes per ns.
            assert_eq!(l.io_ns(path, 1_000_000), 1e6 / real(&c.host_gbps), "{path}");
            assert!(l
                .reals()
                .iter()
                .any(|(k, _)| k == &format!("npu.launch.{path}.fixed_us")));
        }
        assert_eq!(l.reals().len(), 7);
        assert!(l.warm_ns(LaunchPath::QnnCopy) > l.warm_ns(LaunchPath::QnnShared));
        assert!(l.warm_ns(LaunchPath::QnnShared) > l.warm_ns(LaunchPath::Fastrpc));
        assert!(l.cold_ns(LaunchPath::Fastrpc) > l.warm_ns(LaunchPath::Fastrpc));
    }

    #[test]
    fn a_launch_figure_is_checked_like_any_other() {
        let text = crate::npu::profile::BUILTIN
            .iter()
            .find(|(n, _)| *n == "snapdragon-8-gen-3")
            .unwrap()
            .1;
        let bad = text.replace(
            "launch.fastrpc.fixed_us = { value = 159.4",
            "launch.fastrpc.fixed_us = { value = -1.0",
        );
        let e = SocProfile::parse("x.toml", &bad).unwrap_err().to_string();
        assert!(
            e.contains("npu.launch.fastrpc.fixed_us") && e.contains("positive"),
            "{e}"
        );
    }

    #[test]
    fn paths_parse_by_name_and_unknown_names_list_the_known() {
        for p in LaunchPath::ALL {
            assert_eq!(p.name().parse::<LaunchPath>().unwrap(), p);
        }
        let e = "qnn".parse::<LaunchPath>().unwrap_err().to_string();
        assert!(e.contains("qnn-copy, qnn-shared, fastrpc"), "{e}");
    }
}
