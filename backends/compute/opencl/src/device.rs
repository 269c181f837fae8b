//! Platforms and devices: listing what the library exposes and choosing one by index or name.

use crate::error::{OpenClError, Result};
use crate::loader::OpenClLibrary;
use crate::sys::calls::{self, RawHandle};
use crate::sys::{DeviceInfo, DeviceType, PlatformInfo, Status};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

/// One OpenCL device and the limits the backend plans with.
#[derive(Clone, Debug)]
pub struct Device {
    /// Index of its platform in the library's platform list.
    pub platform_index: usize,
    /// Name of its platform.
    pub platform_name: String,
    /// Index within its platform.
    pub index: usize,
    /// Device name.
    pub name: String,
    /// Device vendor.
    pub vendor: String,
    /// OpenCL version string.
    pub version: String,
    /// Driver version.
    pub driver_version: String,
    /// Device type (`gpu`, `cpu`…).
    pub device_type: DeviceType,
    /// Compute units.
    pub compute_units: u64,
    /// Largest work-group.
    pub max_work_group_size: u64,
    /// Largest single buffer, bytes.
    pub max_mem_alloc_size: u64,
    /// Global memory, bytes.
    pub global_mem_size: u64,
    /// Local memory per work-group, bytes.
    pub local_mem_size: u64,
    /// Extensions.
    pub extensions: Vec<String>,
    pub(crate) platform: RawHandle,
    pub(crate) handle: RawHandle,
}

impl Device {
    /// Whether the device has the extension `name`.
    pub fn has_extension(&self, name: &str) -> bool {
        self.extensions.iter().any(|e| e == name)
    }

    /// Whether the device computes in half precision (`cl_khr_fp16`).
    pub fn has_fp16(&self) -> bool {
        self.has_extension("cl_khr_fp16")
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}: {} ({}, {}, {} CUs, {} MiB, fp16 {})",
            self.platform_index,
            self.index,
            self.name,
            self.device_type.label(),
            self.version,
            self.compute_units,
            self.global_mem_size >> 20,
            if self.has_fp16() { "yes" } else { "no" }
        )
    }
}

/// Choosing a platform or a device: by index, or by a case-insensitive part of its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The n-th (from 0).
    Index(usize),
    /// The first whose name contains this text (case-insensitive).
    Name(String),
}

impl Selector {
    fn matches(&self, index: usize, name: &str) -> bool {
        match self {
            Selector::Index(i) => *i == index,
            Selector::Name(n) => name.to_lowercase().contains(&n.to_lowercase()),
        }
    }
}

impl FromStr for Selector {
    type Err = OpenClError;

    /// A number is an index; anything else non-empty is a name.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(OpenClError::InvalidOption {
                option: "selector",
                detail: "an empty platform or device selector; give an index or part of a name"
                    .into(),
            });
        }
        Ok(s.parse::<usize>()
            .map(Selector::Index)
            .unwrap_or_else(|_| Selector::Name(s.to_string())))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Index(i) => write!(f, "index {i}"),
            Selector::Name(n) => write!(f, "name containing `{n}`"),
        }
    }
}

/// Serialises enumeration: PoCL 3.1 initialises its devices lazily and, when two threads list
/// them at once, one of them can see no device at all (seen with the test harness's threads).
static ENUMERATION: Mutex<()> = Mutex::new(());

/// Every device of every platform the library exposes; no platform at all is an error.
pub fn list(lib: &OpenClLibrary) -> Result<Vec<Device>> {
    let _serial = ENUMERATION.lock().unwrap_or_else(|p| p.into_inner());
    let platforms = match calls::platform_ids(lib) {
        Ok(p) => p,
        Err(OpenClError::Call { code, name, .. }) if code == Status::PLATFORM_NOT_FOUND_KHR.0 => {
            return Err(OpenClError::NoPlatform {
                library: lib.path().to_string(),
                status: name.to_string(),
            })
        }
        Err(e) => return Err(e),
    };
    if platforms.is_empty() {
        return Err(OpenClError::NoPlatform {
            library: lib.path().to_string(),
            status: "clGetPlatformIDs returned an empty list".into(),
        });
    }
    let mut out = Vec::new();
    for (pi, &platform) in platforms.iter().enumerate() {
        let platform_name = calls::platform_string(lib, platform, PlatformInfo::NAME)?;
        for (di, &handle) in calls::device_ids(lib, platform)?.iter().enumerate() {
            let s = |what| calls::device_string(lib, handle, what);
            let n = |what| calls::device_number(lib, handle, what);
            out.push(Device {
                platform_index: pi,
                platform_name: platform_name.clone(),
                index: di,
                name: s(DeviceInfo::NAME)?,
                vendor: s(DeviceInfo::VENDOR)?,
                version: s(DeviceInfo::VERSION)?,
                driver_version: s(DeviceInfo::DRIVER_VERSION)?,
                device_type: DeviceType(n(DeviceInfo::TYPE)?),
                compute_units: n(DeviceInfo::MAX_COMPUTE_UNITS)?,
                max_work_group_size: n(DeviceInfo::MAX_WORK_GROUP_SIZE)?,
                max_mem_alloc_size: n(DeviceInfo::MAX_MEM_ALLOC_SIZE)?,
                global_mem_size: n(DeviceInfo::GLOBAL_MEM_SIZE)?,
                local_mem_size: n(DeviceInfo::LOCAL_MEM_SIZE)?,
                extensions: s(DeviceInfo::EXTENSIONS)?
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
                platform,
                handle,
            });
        }
    }
    Ok(out)
}

/// The device chosen by the selectors; with neither, the first GPU, else the first device.
pub fn select(
    devices: &[Device],
    platform: Option<&Selector>,
    device: Option<&Selector>,
) -> Result<Device> {
    let candidates: Vec<&Device> = devices
        .iter()
        .filter(|d| platform.is_none_or(|p| p.matches(d.platform_index, &d.platform_name)))
        .filter(|d| device.is_none_or(|s| s.matches(d.index, &d.name)))
        .collect();
    let chosen = if platform.is_none() && device.is_none() {
        candidates
            .iter()
            .find(|d| d.device_type.0 & DeviceType::GPU.0 != 0)
            .or(candidates.first())
            .copied()
    } else {
        candidates.first().copied()
    };
    chosen.cloned().ok_or_else(|| OpenClError::NoDevice {
        wanted: match (platform, device) {
            (None, None) => "any device".into(),
            (p, d) => format!(
                "platform {} and device {}",
                p.map_or("any".into(), ToString::to_string),
                d.map_or("any".into(), ToString::to_string)
            ),
        },
        available: devices
            .iter()
            .map(|d| format!("{d} on {}", d.platform_name))
            .collect(),
    })
}
