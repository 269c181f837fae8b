//! Loads private copies of the fake QNN library and drives its control functions.

#![allow(unsafe_code)]

use shadowattn_qnn::{QnnBackend, QnnError, QnnOptions};
use std::ffi::CString;
use std::path::PathBuf;

fn target_dir() -> PathBuf {
    shadowattn_test_support::target_dir(env!("CARGO_TARGET_TMPDIR"))
}

/// A private copy of the fake library (its settings are process-global per loaded copy).
pub struct Fake {
    pub path: PathBuf,
    lib: libloading::Library,
}

impl Fake {
    pub fn new(tag: &str) -> Fake {
        let built = shadowattn_test_support::qnn_fake(&target_dir()).unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fake-qnn");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("libfake_{tag}_{}.so", std::process::id()));
        std::fs::copy(&built, &path).unwrap();
        // SAFETY: loading our own test library, which only defines functions.
        let lib = unsafe { libloading::Library::new(&path) }.unwrap();
        Fake { path, lib }
    }

    pub fn configure(&self, call: Option<&str>, code: u64, api_minor: u32) {
        let c = call.map(|c| CString::new(c).unwrap());
        // SAFETY: the symbol has this signature in the fake library.
        unsafe {
            let f: libloading::Symbol<'_, unsafe extern "C" fn(*const std::ffi::c_char, u64, u32)> =
                self.lib.get(b"shadowattn_fake_qnn_configure\0").unwrap();
            f(
                c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                code,
                api_minor,
            );
        }
    }

    pub fn live(&self) -> i64 {
        // SAFETY: the symbol has this signature in the fake library.
        unsafe {
            let f: libloading::Symbol<'_, unsafe extern "C" fn() -> i64> =
                self.lib.get(b"shadowattn_fake_qnn_live_handles\0").unwrap();
            f()
        }
    }

    #[allow(dead_code)]
    pub fn open(&self) -> Result<QnnBackend, QnnError> {
        QnnBackend::open(QnnOptions {
            library: Some(self.path.clone()),
            ..Default::default()
        })
    }

    /// Opens a backend on this fake with `options` (the library path is set here).
    #[allow(dead_code)]
    pub fn open_with(&self, options: QnnOptions) -> Result<QnnBackend, QnnError> {
        QnnBackend::open(QnnOptions {
            library: Some(self.path.clone()),
            ..options
        })
    }

    /// Opens a backend on this fake whose rpcmem library is this fake too.
    #[allow(dead_code)]
    pub fn open_shared(&self) -> Result<QnnBackend, QnnError> {
        self.open_with(QnnOptions {
            rpcmem_library: Some(self.path.clone()),
            ..Default::default()
        })
    }

    /// Offers or withholds memRegister/memDeRegister in providers read from now on.
    #[allow(dead_code)]
    pub fn set_mem_register(&self, offered: bool) {
        // SAFETY: the symbol has this signature in the fake library.
        unsafe {
            let f: libloading::Symbol<'_, unsafe extern "C" fn(bool)> = self
                .lib
                .get(b"shadowattn_fake_qnn_set_mem_register\0")
                .unwrap();
            f(offered)
        }
    }

    fn counter(&self, symbol: &[u8]) -> i64 {
        // SAFETY: the counters of the fake library have this signature.
        unsafe {
            let f: libloading::Symbol<'_, unsafe extern "C" fn() -> i64> =
                self.lib.get(symbol).unwrap();
            f()
        }
    }

    /// Live fake rpcmem buffers.
    #[allow(dead_code)]
    pub fn rpcmem_live(&self) -> i64 {
        self.counter(b"shadowattn_fake_rpcmem_live\0")
    }

    /// Live registrations.
    #[allow(dead_code)]
    pub fn registered(&self) -> i64 {
        self.counter(b"shadowattn_fake_qnn_registered\0")
    }

    /// I/O tensors executed through a registered handle so far.
    #[allow(dead_code)]
    pub fn executed_handles(&self) -> i64 {
        self.counter(b"shadowattn_fake_qnn_executed_handles\0")
    }
}
