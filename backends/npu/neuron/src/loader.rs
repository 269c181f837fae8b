//! Finding and opening a Neuron adapter library, resolving every symbol once.
//!
//! Search order: an explicit path → `SHADOWATTN_NEURON_LIB` → `libneuronusdk_adapter.mtk.so`,
//! `libneuron_adapter_mgvi.so`, `libneuron_adapter.so` through the dynamic loader. The first
//! library that opens, has every symbol and a runtime version this backend speaks (at least
//! [`RuntimeVersion::OLDEST`]; a major newer than [`RuntimeVersion::NEWEST_CHECKED_MAJOR`] is a
//! warning) wins; the error lists each attempt.

#![allow(unsafe_code)]

use crate::error::{NeuronError, Result};
use crate::sys::{fns, status::check, RuntimeVersion};
use shadowattn_hal::library::{DynamicLibrary, LibrarySearch};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Environment variable naming the library explicitly.
pub const ENV_LIB: &str = "SHADOWATTN_NEURON_LIB";
/// Candidate names, in order.
pub const CANDIDATES: &[&str] = &[
    "libneuronusdk_adapter.mtk.so",
    "libneuron_adapter_mgvi.so",
    "libneuron_adapter.so",
];

/// The names of the library's devices, where it exports the (optional) device functions.
fn device_names(library: &DynamicLibrary) -> Vec<String> {
    // SAFETY: each symbol's type is the documented C signature of that function; they are
    // called only here, while `library` is loaded.
    let resolved = unsafe {
        (
            library.symbol::<fns::GetDeviceCount>("Neuron_getDeviceCount"),
            library.symbol::<fns::GetDevice>("Neuron_getDevice"),
            library.symbol::<fns::DeviceGetName>("NeuronDevice_getName"),
        )
    };
    let (Ok(count), Ok(get), Ok(name)) = resolved else {
        return Vec::new();
    };
    let mut n = 0u32;
    // SAFETY: `n` is a valid out-pointer for the count.
    if unsafe { count(&mut n) } != 0 {
        return Vec::new();
    }
    (0..n.min(16))
        .filter_map(|i| {
            let mut device = std::ptr::null_mut();
            let mut text = std::ptr::null();
            // SAFETY: out-pointers are valid; the device handle comes from the library itself.
            let ok = unsafe { get(i, &mut device) == 0 && name(device, &mut text) == 0 };
            (ok && !text.is_null()).then(|| {
                // SAFETY: the library returns a NUL-terminated string it owns for its lifetime.
                unsafe { std::ffi::CStr::from_ptr(text) }
                    .to_string_lossy()
                    .into_owned()
            })
        })
        .collect()
}

/// Every function shadowattn calls, resolved once.
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)]
pub struct Api {
    pub get_version: fns::GetVersion,
    pub model_create: fns::ModelCreate,
    pub model_free: fns::ModelFree,
    pub model_finish: fns::ModelFinish,
    pub model_add_operand: fns::ModelAddOperand,
    pub model_set_operand_value: fns::ModelSetOperandValue,
    pub model_add_operation: fns::ModelAddOperation,
    pub model_identify_inputs_and_outputs: fns::ModelIdentifyInputsAndOutputs,
    pub compilation_create: fns::CompilationCreate,
    pub compilation_free: fns::CompilationFree,
    pub compilation_finish: fns::CompilationFinish,
    pub execution_create: fns::ExecutionCreate,
    pub execution_free: fns::ExecutionFree,
    pub execution_set_input: fns::ExecutionSetInput,
    pub execution_set_output: fns::ExecutionSetOutput,
    pub execution_compute: fns::ExecutionCompute,
}

/// An opened Neuron adapter library.
pub struct NeuronLibrary {
    // Keeps the resolved functions' code mapped for as long as any handle exists.
    library: DynamicLibrary,
    api: Api,
    version: RuntimeVersion,
    warnings: Vec<String>,
    devices: Vec<String>,
}

impl std::fmt::Debug for NeuronLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeuronLibrary")
            .field("path", &self.library.path())
            .field("version", &self.version)
            .finish()
    }
}

impl NeuronLibrary {
    /// Finds and opens a library: `explicit`, then `SHADOWATTN_NEURON_LIB`, then the candidates.
    pub fn find(explicit: Option<&Path>) -> Result<Arc<Self>> {
        Self::find_in(explicit, std::env::var_os(ENV_LIB).map(PathBuf::from))
    }

    /// [`NeuronLibrary::find`] with `SHADOWATTN_NEURON_LIB` given as `env_lib`.
    pub fn find_in(explicit: Option<&Path>, env_lib: Option<PathBuf>) -> Result<Arc<Self>> {
        LibrarySearch::new(explicit, ENV_LIB, env_lib)
            .candidates(CANDIDATES)
            .find("Neuron adapter library", |path| {
                Self::open(path).map(Arc::new)
            })
    }

    /// The names of the library's devices (empty where it does not export device functions).
    pub fn devices(&self) -> &[String] {
        &self.devices
    }

    /// Opens one library and resolves every symbol; a missing one is an error naming it.
    pub fn open(path: &str) -> Result<Self> {
        // SAFETY: loading runs the library's initializers; adapter libraries are plain shared objects.
        let library = unsafe { DynamicLibrary::open(path) }?;
        // SAFETY: each field's type is the documented C signature of the function named; `api`
        // is kept beside `library`, which stays loaded as long as it.
        let api = unsafe {
            Api {
                get_version: library.symbol("Neuron_getVersion")?,
                model_create: library.symbol("NeuronModel_create")?,
                model_free: library.symbol("NeuronModel_free")?,
                model_finish: library.symbol("NeuronModel_finish")?,
                model_add_operand: library.symbol("NeuronModel_addOperand")?,
                model_set_operand_value: library.symbol("NeuronModel_setOperandValue")?,
                model_add_operation: library.symbol("NeuronModel_addOperation")?,
                model_identify_inputs_and_outputs: library
                    .symbol("NeuronModel_identifyInputsAndOutputs")?,
                compilation_create: library.symbol("NeuronCompilation_create")?,
                compilation_free: library.symbol("NeuronCompilation_free")?,
                compilation_finish: library.symbol("NeuronCompilation_finish")?,
                execution_create: library.symbol("NeuronExecution_create")?,
                execution_free: library.symbol("NeuronExecution_free")?,
                execution_set_input: library.symbol("NeuronExecution_setInput")?,
                execution_set_output: library.symbol("NeuronExecution_setOutput")?,
                execution_compute: library.symbol("NeuronExecution_compute")?,
            }
        };
        let mut version = RuntimeVersion::default();
        // SAFETY: `version` is a valid out-pointer of the declared 3-byte layout.
        check("Neuron_getVersion", unsafe {
            (api.get_version)(&mut version)
        })?;
        let warnings = vet_version(path, version)?;
        let devices = device_names(&library);
        Ok(NeuronLibrary {
            library,
            api,
            version,
            warnings,
            devices,
        })
    }

    /// Path the library was opened from.
    pub fn path(&self) -> &str {
        self.library.path()
    }

    /// The runtime version.
    pub fn version(&self) -> RuntimeVersion {
        self.version
    }

    /// Notes about the library worth showing a user (a newer runtime than checked, …).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The resolved functions.
    pub fn api(&self) -> &Api {
        &self.api
    }
}

/// The version policy: refuse a runtime older than [`RuntimeVersion::OLDEST`], warn about a
/// major newer than [`RuntimeVersion::NEWEST_CHECKED_MAJOR`].
fn vet_version(path: &str, version: RuntimeVersion) -> Result<Vec<String>> {
    if version.triple() < RuntimeVersion::OLDEST.triple() {
        return Err(NeuronError::TooOld {
            path: path.to_string(),
            version: version.to_string(),
            oldest: RuntimeVersion::OLDEST.to_string(),
        });
    }
    let mut warnings = Vec::new();
    if version.major > RuntimeVersion::NEWEST_CHECKED_MAJOR {
        warnings.push(format!(
            "Neuron runtime {version} is newer than {}.x, the newest these declarations were checked against",
            RuntimeVersion::NEWEST_CHECKED_MAJOR
        ));
    }
    Ok(warnings)
}

// SAFETY: the API is a set of plain function pointers into a library kept alive by this value;
// nothing is mutated after open. The adapter's handles are used by one thread at a time (the
// backend serializes calls on shared handles).
unsafe impl Send for NeuronLibrary {}
// SAFETY: as above.
unsafe impl Sync for NeuronLibrary {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_runtimes_are_refused_and_newer_majors_warned_about() {
        let v = |major, minor, patch| RuntimeVersion {
            major,
            minor,
            patch,
        };
        let e = vet_version("lib.so", v(4, 0, 9)).unwrap_err();
        assert!(e.to_string().contains("older than 4.1.0"), "{e}");
        assert!(vet_version("lib.so", v(4, 1, 0)).unwrap().is_empty());
        assert!(vet_version("lib.so", v(8, 2, 0)).unwrap().is_empty());
        let w = vet_version("lib.so", v(9, 0, 0)).unwrap();
        assert!(w[0].contains("newer than 8.x"), "{w:?}");
    }
}
