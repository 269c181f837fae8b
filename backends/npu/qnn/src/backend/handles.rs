//! RAII owners of QNN handles, freed in dependency order: a context keeps the shared backend,
//! device and log alive; a profile lives inside one locked call sequence.

use super::io::{ClientReason, IoState};
use super::options::QnnOptions;
use crate::error::Result;
use crate::loader::QnnLibrary;
use crate::sys::calls::{self, Event, RawHandle};
use crate::sys::{LogLevel, ProfileLevel};
use std::sync::{Arc, Mutex, MutexGuard};

/// Backend, device and log of one open backend; freed together, last.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) lib: Arc<QnnLibrary>,
    log: RawHandle,
    pub(super) backend: RawHandle,
    pub(super) device: RawHandle,
    lock: Mutex<()>,
    pub(super) options: QnnOptions,
    /// How graph I/O is exchanged (set by `io::probe` after open).
    io: Mutex<IoState>,
}

impl Shared {
    /// Creates the log, backend and device of `lib`; a failed step frees what came before it.
    pub(super) fn open(lib: Arc<QnnLibrary>, options: QnnOptions) -> Result<Self> {
        let level = if std::env::var_os(crate::loader::ENV_VERBOSE).is_some() {
            LogLevel::DEBUG
        } else {
            LogLevel::WARN
        };
        let log = calls::log_create(&lib, level)?;
        let backend = match calls::backend_create(&lib, log) {
            Ok(b) => b,
            Err(e) => {
                let _ = calls::log_free(&lib, log);
                return Err(e);
            }
        };
        let device = match calls::device_create(&lib, log, options.soc_model, options.arch) {
            Ok(d) => d,
            Err(e) => {
                let _ = calls::backend_free(&lib, backend);
                let _ = calls::log_free(&lib, log);
                return Err(e);
            }
        };
        Ok(Shared {
            lib,
            log,
            backend,
            device,
            lock: Mutex::new(()),
            options,
            io: Mutex::new(IoState::client(ClientReason::RpcMem(
                "not probed yet".into(),
            ))),
        })
    }

    /// How graph I/O is exchanged.
    pub(super) fn io_state(&self) -> MutexGuard<'_, IoState> {
        self.io.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serializes QNN calls on this backend's handles.
    pub(super) fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = calls::device_free(&self.lib, self.device);
        let _ = calls::backend_free(&self.lib, self.backend);
        let _ = calls::log_free(&self.lib, self.log);
    }
}

/// A context and the graph inside it; freed when dropped.
#[derive(Debug)]
pub(super) struct Context {
    pub(super) shared: Arc<Shared>,
    pub(super) handle: RawHandle,
}

impl Drop for Context {
    fn drop(&mut self) {
        let _g = self.shared.lock();
        let _ = calls::context_free(&self.shared.lib, self.handle);
    }
}

/// A profile; freed when dropped.
pub(super) struct Profile<'a> {
    shared: &'a Shared,
    pub(super) handle: RawHandle,
}

impl<'a> Profile<'a> {
    /// A basic-level profile on `shared`'s backend.
    pub(super) fn new(shared: &'a Shared) -> Result<Self> {
        let handle = calls::profile_create(&shared.lib, shared.backend, ProfileLevel::BASIC)?;
        Ok(Profile { shared, handle })
    }

    /// The events recorded so far.
    pub(super) fn events(&self) -> Result<Vec<Event>> {
        calls::profile_events(&self.shared.lib, self.handle)
    }
}

impl Drop for Profile<'_> {
    fn drop(&mut self) {
        let _ = calls::profile_free(&self.shared.lib, self.handle);
    }
}
