//! Loads private copies of the simulator-backed Neuron shim and drives its fault injection.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::path::PathBuf;

/// A private copy of the shim (its fault-injection setting is per loaded copy).
pub struct Shim {
    pub path: PathBuf,
    lib: libloading::Library,
}

impl Shim {
    pub fn new(tag: &str) -> Shim {
        let target = shadowattn_test_support::target_dir(env!("CARGO_TARGET_TMPDIR"));
        let built = shadowattn_test_support::neuron_shim(&target).unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("neuron-shim");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("libneuron_{tag}_{}.so", std::process::id()));
        std::fs::copy(&built, &path).unwrap();
        // SAFETY: loading our own shim, whose initializers do nothing.
        let lib = unsafe { libloading::Library::new(&path) }.unwrap();
        Shim { path, lib }
    }

    /// Makes `function` return `code` (None clears).
    pub fn fail(&self, function: Option<&str>, code: i32) {
        let c = function.map(|f| CString::new(f).unwrap());
        // SAFETY: the symbol has this signature in the shim.
        unsafe {
            let f: libloading::Symbol<'_, unsafe extern "C" fn(*const std::ffi::c_char, i32)> =
                self.lib.get(b"shadowattn_neuron_shim_fail\0").unwrap();
            f(c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()), code);
        }
    }
}
