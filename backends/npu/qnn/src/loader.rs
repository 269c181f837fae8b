//! Finding, opening and vetting a QNN backend library at run time.
//!
//! Search order: an explicit path → `SHADOWATTN_QNN_LIB` → `$QNN_SDK_ROOT/lib/<target>/libQnnHtp.so`
//! → the candidate names, resolved by the dynamic loader. The error lists every attempt and why
//! it failed. A library is opened at most once per process and never unloaded (the HTP library
//! rejects a second connection after an unload), so every backend shares one [`QnnLibrary`].

#![allow(unsafe_code)]

use crate::error::{QnnError, Result};
use crate::sys;
use shadowattn_hal::library::{DynamicLibrary, LibrarySearch};
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Environment variable naming the library explicitly.
pub const ENV_LIB: &str = "SHADOWATTN_QNN_LIB";
/// Environment variable of an installed QNN SDK.
pub const ENV_SDK: &str = "QNN_SDK_ROOT";
/// Environment variable that turns on verbose QNN logging to stderr.
pub const ENV_VERBOSE: &str = "SHADOWATTN_QNN_VERBOSE";
/// Library names tried last, through the dynamic loader's own search path.
pub const CANDIDATES: &[&str] = &["libQnnHtp.so"];
/// Environment variable naming the rpcmem (shared memory) library explicitly.
pub const ENV_RPCMEM_LIB: &str = "SHADOWATTN_CDSPRPC_LIB";
/// Names of the rpcmem library tried last, through the dynamic loader's own search path.
pub const RPCMEM_CANDIDATES: &[&str] = &["libcdsprpc.so"];

/// The SDK's library folder for this target.
pub fn sdk_target_dir() -> &'static str {
    if cfg!(all(target_arch = "aarch64", target_os = "android")) {
        "aarch64-android"
    } else if cfg!(target_arch = "aarch64") {
        "aarch64-oe-linux-gcc11.2"
    } else {
        "x86_64-linux-clang"
    }
}

/// An opened QNN backend library and its vetted provider.
pub struct QnnLibrary {
    // Keeps the code of `interface`'s functions mapped; never dropped (see the registry).
    library: DynamicLibrary,
    interface: sys::Interface,
    provider_name: String,
    warnings: Vec<String>,
}

impl std::fmt::Debug for QnnLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QnnLibrary")
            .field("path", &self.library.path())
            .field("provider", &self.provider_name)
            .field("api", &self.interface.api_version)
            .finish()
    }
}

// SAFETY: the interface is an immutable copy of a table of function pointers into a library
// that stays loaded for the life of the process; the provider-name pointer is only read at
// open time. Calls through it are serialized by the safe layer.
unsafe impl Send for QnnLibrary {}
// SAFETY: as above; nothing in QnnLibrary is mutated after open.
unsafe impl Sync for QnnLibrary {}

fn registry() -> &'static Mutex<HashMap<String, Arc<QnnLibrary>>> {
    static LOADED: OnceLock<Mutex<HashMap<String, Arc<QnnLibrary>>>> = OnceLock::new();
    LOADED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Sends standard output to standard error while it lives: QNN libraries print notices to
/// stdout (the emulator's libnative: `# LIBNATIVE: No alternate configuration …`), which
/// would land in the program's own output and break machine-readable output such as JSON.
///
/// Hold it while calling the library and print results after it is dropped; whatever C's
/// buffered `stdout` holds when it is dropped is flushed to stderr.
#[derive(Debug)]
pub struct StdoutToStderr {
    saved: i32,
}

impl StdoutToStderr {
    /// Starts the diversion; `None` if the descriptors cannot be duplicated (nothing changes).
    pub fn new() -> Option<Self> {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // SAFETY: dup and dup2 only duplicate descriptors 1 and 2, which the process owns for
        // its whole life; no memory is passed.
        unsafe {
            let saved = libc::dup(1);
            if saved < 0 {
                return None;
            }
            if libc::dup2(2, 1) < 0 {
                libc::close(saved);
                return None;
            }
            Some(StdoutToStderr { saved })
        }
    }
}

impl Drop for StdoutToStderr {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // SAFETY: `fflush(NULL)` flushes every C stream and takes no other pointer; `saved` is
        // the descriptor `new` duplicated, and nothing else closes it.
        unsafe {
            libc::fflush(std::ptr::null_mut());
            libc::dup2(self.saved, 1);
            libc::close(self.saved);
        }
    }
}

/// Writes what loaded QNN libraries left in C's `stdout` buffer to standard error instead of
/// letting the C runtime flush it into standard output at exit (see [`StdoutToStderr`]);
/// does nothing when no QNN library was loaded. Call it once the program's output is written.
pub fn divert_buffered_output_to_stderr() {
    if registry().lock().map_or(true, |l| l.is_empty()) {
        return;
    }
    drop(StdoutToStderr::new());
}

impl QnnLibrary {
    /// Finds and opens a library: `explicit` first, then the environment, then the candidates.
    pub fn find(explicit: Option<&Path>) -> Result<Arc<Self>> {
        Self::find_in(
            explicit,
            std::env::var_os(ENV_LIB).map(PathBuf::from),
            std::env::var_os(ENV_SDK).map(PathBuf::from),
        )
    }

    /// [`QnnLibrary::find`] with the environment given: `env_lib` for `SHADOWATTN_QNN_LIB`,
    /// `sdk_root` for `QNN_SDK_ROOT`.
    pub fn find_in(
        explicit: Option<&Path>,
        env_lib: Option<PathBuf>,
        sdk_root: Option<PathBuf>,
    ) -> Result<Arc<Self>> {
        let mut search = LibrarySearch::new(explicit, ENV_LIB, env_lib);
        if let Some(root) = sdk_root {
            let p = root.join("lib").join(sdk_target_dir()).join("libQnnHtp.so");
            search = search.then(p.display().to_string(), format!("${ENV_SDK}"));
        }
        search
            .candidates(CANDIDATES)
            .find("QNN library", Self::open)
    }

    /// Opens one library (or returns the already opened one) and vets its provider.
    pub fn open(path: &str) -> Result<Arc<Self>> {
        let key = std::fs::canonicalize(path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.to_string());
        let mut loaded = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lib) = loaded.get(&key) {
            return Ok(lib.clone());
        }
        let lib = Arc::new(Self::load(path)?);
        loaded.insert(key, lib.clone());
        Ok(lib)
    }

    fn load(path: &str) -> Result<Self> {
        // SAFETY: loading runs the library's initializers; QNN libraries are plain shared
        // objects meant to be dlopen'ed by applications.
        let library = unsafe { DynamicLibrary::open(path) }?;
        // SAFETY: the symbol's type is the documented `QnnInterface_getProviders` signature; it
        // is called only here, while `library` is loaded.
        let get_providers =
            unsafe { library.symbol::<sys::GetProvidersFn>(sys::GET_PROVIDERS_SYMBOL) }?;
        let mut list: *const *const sys::Interface = std::ptr::null();
        let mut count: u32 = 0;
        // SAFETY: both out-pointers are valid for writes; the library owns the returned array.
        let status = unsafe { get_providers(&mut list, &mut count) };
        if status != 0 || list.is_null() || count == 0 {
            return Err(QnnError::Provider {
                path: path.to_string(),
                detail: format!(
                    "QnnInterface_getProviders returned status {status} with {count} providers"
                ),
            });
        }
        let mut rejected = Vec::new();
        for i in 0..count as usize {
            // SAFETY: `list` holds `count` provider pointers, valid while the library is loaded.
            let p = unsafe { *list.add(i) };
            if p.is_null() {
                continue;
            }
            // SAFETY: first read only the fixed header (id, name, versions), valid for every
            // API version; its layout is asserted at compile time.
            let header = unsafe { std::ptr::read(p.cast::<sys::ProviderHeader>()) };
            let (id, core, backend) = (
                header.backend_id,
                header.api_version.core,
                header.api_version.backend,
            );
            let name = if header.provider_name.is_null() {
                String::new()
            } else {
                // SAFETY: a non-NULL provider name is a NUL-terminated string owned by the library.
                unsafe { CStr::from_ptr(header.provider_name) }
                    .to_string_lossy()
                    .into_owned()
            };
            let describe = format!(
                "provider `{name}` (backend id {id}, core API {}.{}.{}, backend API {}.{}.{})",
                core.major, core.minor, core.patch, backend.major, backend.minor, backend.patch
            );
            if core.major != sys::CORE_API_MAJOR {
                rejected.push(format!(
                    "{describe}: core API major {} is not {}",
                    core.major,
                    sys::CORE_API_MAJOR
                ));
                continue;
            }
            if core.minor < sys::CORE_API_MIN_MINOR {
                rejected.push(format!(
                    "{describe}: core API {}.{} is older than the required 2.{}",
                    core.major,
                    core.minor,
                    sys::CORE_API_MIN_MINOR
                ));
                continue;
            }
            if id != sys::BACKEND_ID_HTP {
                rejected.push(format!(
                    "{describe}: not the HTP backend (id {})",
                    sys::BACKEND_ID_HTP
                ));
                continue;
            }
            // SAFETY: minor >= 14 guarantees the table holds at least the 51 slots we declare.
            let interface = unsafe { std::ptr::read(p) };
            let mut warnings = Vec::new();
            if core.minor > 32 {
                warnings.push(format!(
                    "core API 2.{} is newer than 2.32, the newest these declarations were checked against",
                    core.minor
                ));
            }
            return Ok(QnnLibrary {
                library,
                interface,
                provider_name: name,
                warnings,
            });
        }
        Err(QnnError::Provider {
            path: path.to_string(),
            detail: format!("no usable provider: {}", rejected.join("; ")),
        })
    }

    /// Path the library was opened from.
    pub fn path(&self) -> &str {
        self.library.path()
    }

    /// The provider's name.
    pub fn provider_name(&self) -> &str {
        &self.provider_name
    }

    /// Core and backend API versions.
    pub fn api_version(&self) -> sys::ApiVersion {
        self.interface.api_version
    }

    /// Notes about the library worth showing a user (a newer API than checked, …).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The function table.
    pub fn functions(&self) -> &sys::FunctionTable {
        &self.interface.functions
    }

    /// `errorGetMessage` text for a status, or a note that there is none.
    pub fn error_message(&self, status: sys::ErrorHandle) -> String {
        let Some(f) = self.functions().error_get_message else {
            return "no message (errorGetMessage not provided)".into();
        };
        let mut msg: *const c_char = std::ptr::null();
        // SAFETY: `msg` is a valid out-pointer; the returned string is owned by the library.
        let rc = unsafe { f(status, &mut msg) };
        if rc != 0 || msg.is_null() {
            return "no message".into();
        }
        // SAFETY: checked non-NULL; NUL-terminated per the API.
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

/// The rpcmem allocator of Qualcomm devices (`libcdsprpc.so`): buffers the DSP shares with the
/// process, which `memRegister` turns into QNN memory handles. Optional: without it graph I/O
/// goes through client buffers. Opened at most once per path and never unloaded.
pub struct RpcMemLibrary {
    // Keeps the code behind the three function pointers mapped.
    library: DynamicLibrary,
    alloc: sys::RpcMemAllocFn,
    free: sys::RpcMemFreeFn,
    to_fd: sys::RpcMemToFdFn,
}

impl std::fmt::Debug for RpcMemLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcMemLibrary")
            .field("path", &self.library.path())
            .finish()
    }
}

fn rpcmem_registry() -> &'static Mutex<HashMap<String, Arc<RpcMemLibrary>>> {
    static LOADED: OnceLock<Mutex<HashMap<String, Arc<RpcMemLibrary>>>> = OnceLock::new();
    LOADED.get_or_init(|| Mutex::new(HashMap::new()))
}

impl RpcMemLibrary {
    /// Finds and opens the library: `explicit` first, then `SHADOWATTN_CDSPRPC_LIB`, then
    /// `libcdsprpc.so` through the dynamic loader.
    pub fn find(explicit: Option<&Path>) -> Result<Arc<Self>> {
        Self::find_in(
            explicit,
            std::env::var_os(ENV_RPCMEM_LIB).map(PathBuf::from),
        )
    }

    /// [`RpcMemLibrary::find`] with the environment given: `env_lib` for
    /// `SHADOWATTN_CDSPRPC_LIB`.
    pub fn find_in(explicit: Option<&Path>, env_lib: Option<PathBuf>) -> Result<Arc<Self>> {
        LibrarySearch::new(explicit, ENV_RPCMEM_LIB, env_lib)
            .candidates(RPCMEM_CANDIDATES)
            .find("rpcmem library (libcdsprpc.so)", Self::open)
    }

    /// Opens one library (or returns the already opened one) and resolves its three functions.
    pub fn open(path: &str) -> Result<Arc<Self>> {
        let key = std::fs::canonicalize(path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.to_string());
        let mut loaded = rpcmem_registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lib) = loaded.get(&key) {
            return Ok(lib.clone());
        }
        // SAFETY: loading runs the library's initializers; libcdsprpc.so is the FastRPC client
        // library that applications dlopen to share memory with the DSP.
        let library = unsafe { DynamicLibrary::open(path) }?;
        // SAFETY: the three types are the documented rpcmem signatures (`void *rpcmem_alloc(int,
        // uint32, int)`, `void rpcmem_free(void *)`, `int rpcmem_to_fd(void *)`); the pointers
        // are stored beside `library`, which is never dropped while they are used (the registry
        // keeps it for the life of the process).
        let (alloc, free, to_fd) = unsafe {
            (
                library.symbol::<sys::RpcMemAllocFn>(sys::RPCMEM_ALLOC_SYMBOL)?,
                library.symbol::<sys::RpcMemFreeFn>(sys::RPCMEM_FREE_SYMBOL)?,
                library.symbol::<sys::RpcMemToFdFn>(sys::RPCMEM_TO_FD_SYMBOL)?,
            )
        };
        let lib = Arc::new(RpcMemLibrary {
            library,
            alloc,
            free,
            to_fd,
        });
        loaded.insert(key, lib.clone());
        Ok(lib)
    }

    /// Path the library was opened from.
    pub fn path(&self) -> &str {
        self.library.path()
    }
}

/// A buffer from `rpcmem_alloc` (system heap, default flags), freed with `rpcmem_free` when
/// dropped. Zero-filled at allocation.
pub struct RpcBuffer {
    lib: Arc<RpcMemLibrary>,
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    fd: i32,
}

impl std::fmt::Debug for RpcBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcBuffer")
            .field("len", &self.len)
            .field("fd", &self.fd)
            .finish()
    }
}

// SAFETY: the buffer is memory this value owns alone (no other Rust value points into it);
// rpcmem_free may be called from any thread.
unsafe impl Send for RpcBuffer {}
// SAFETY: shared access only reads the buffer (`as_slice`); writes need `&mut self`.
unsafe impl Sync for RpcBuffer {}

impl RpcBuffer {
    /// Allocates `len` bytes (at least 1) and looks up the buffer's file descriptor.
    pub fn alloc(lib: &Arc<RpcMemLibrary>, len: usize) -> Result<Self> {
        let len = len.max(1);
        let size = std::ffi::c_int::try_from(len).map_err(|_| QnnError::SharedMemory {
            call: "rpcmem_alloc",
            detail: format!("{len} bytes exceed the allocator's 32-bit size"),
        })?;
        // SAFETY: plain allocation call with the heap and flags QNN's users pass; no pointer
        // arguments.
        let raw =
            unsafe { (lib.alloc)(sys::RPCMEM_HEAP_ID_SYSTEM, sys::RPCMEM_DEFAULT_FLAGS, size) };
        let Some(ptr) = std::ptr::NonNull::new(raw.cast::<u8>()) else {
            return Err(QnnError::SharedMemory {
                call: "rpcmem_alloc",
                detail: format!("returned NULL for {len} bytes"),
            });
        };
        // SAFETY: `ptr` was just returned by rpcmem_alloc and is owned here.
        let fd = unsafe { (lib.to_fd)(ptr.as_ptr().cast()) };
        let buffer = RpcBuffer {
            lib: lib.clone(),
            ptr,
            len,
            fd,
        };
        if fd < 0 {
            return Err(QnnError::SharedMemory {
                call: "rpcmem_to_fd",
                detail: format!("returned {fd} for a fresh {len}-byte buffer"),
            });
        }
        // SAFETY: `ptr` is valid for `len` writable bytes (rpcmem_alloc succeeded for `size`
        // = `len` bytes), and nothing else refers to it yet.
        unsafe { std::ptr::write_bytes(buffer.ptr.as_ptr(), 0, len) };
        Ok(buffer)
    }

    /// The buffer's file descriptor (what `memRegister` is given).
    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty (never: at least one byte is allocated).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialized bytes (zeroed at allocation) for as long
        // as `self` lives; writes need `&mut self`, so none happen during this borrow.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as `as_slice`; `&mut self` makes this the only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for RpcBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from this library's rpcmem_alloc and is freed once, here.
        unsafe { (self.lib.free)(self.ptr.as_ptr().cast()) };
    }
}

/// Recent messages logged by QNN libraries through [`log_callback`], from any thread, newest
/// last.
static LOG: Mutex<VecDeque<(u32, String)>> = Mutex::new(VecDeque::new());
const LOG_KEEP: usize = 64;
/// How many messages [`LOG`] has ever received (changed under its lock).
static LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

std::thread_local! {
    /// The last error-level message QNN logged on this thread: a QNN call logs on the thread
    /// that makes it, so one thread's failure never reports another thread's message.
    static LAST_ERROR: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Takes the most recent error-level message logged on this thread since the last call, if any.
pub fn take_last_error_log() -> Option<String> {
    LAST_ERROR.with(|e| e.borrow_mut().take())
}

/// The position of the log now: [`log_since`] of it returns what is logged after.
pub fn log_position() -> u64 {
    let _log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    LOGGED.load(std::sync::atomic::Ordering::SeqCst)
}

/// The messages of every thread logged since `position` ([`log_position`]), newest last; at
/// most the 64 newest.
pub fn log_since(position: u64) -> Vec<(u32, String)> {
    let log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    let new = LOGGED
        .load(std::sync::atomic::Ordering::SeqCst)
        .saturating_sub(position);
    let new = usize::try_from(new).unwrap_or(usize::MAX).min(log.len());
    log.iter().skip(log.len() - new).cloned().collect()
}

/// Recent log messages of every thread, newest last.
pub fn recent_log() -> Vec<(u32, String)> {
    LOG.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect()
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod libc_format {
    use std::ffi::{c_char, c_int, c_void};
    extern "C" {
        /// C's `vsnprintf`; `args` is the caller's `va_list`, pointer-sized on these targets.
        pub fn vsnprintf(
            buf: *mut c_char,
            size: usize,
            fmt: *const c_char,
            args: *mut c_void,
        ) -> c_int;
    }
}

/// Log callback handed to `logCreate`: formats the message and keeps it for error reports.
///
/// # Safety
/// Called by the QNN library with a valid format string and its `va_list`.
pub unsafe extern "C" fn log_callback(
    fmt: *const c_char,
    level: u32,
    _timestamp: u64,
    args: *mut c_void,
) {
    if fmt.is_null() {
        return;
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    let text = {
        let mut buf = [0 as c_char; 1024];
        // SAFETY: `buf` has room for 1024 bytes; `fmt` and `args` come from the library's
        // call, and a `va_list` argument is passed as a pointer on x86-64 and AArch64.
        let n = unsafe { libc_format::vsnprintf(buf.as_mut_ptr(), buf.len(), fmt, args) };
        if n < 0 {
            return;
        }
        // SAFETY: vsnprintf NUL-terminates within the buffer.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .trim_end()
            .to_string()
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    // SAFETY: `fmt` is a NUL-terminated string from the library.
    let text = unsafe { CStr::from_ptr(fmt) }
        .to_string_lossy()
        .trim_end()
        .to_string();
    let _ = args;
    if std::env::var_os(ENV_VERBOSE).is_some() {
        eprintln!("qnn[{level}] {text}");
    }
    record(level, text);
}

/// Keeps a logged message: in the recent log of every thread and, for an error, as this
/// thread's last error.
fn record(level: u32, text: String) {
    if level == sys::LogLevel::ERROR.0 {
        // `try_with`: a library may log while this thread is being torn down.
        let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = Some(text.clone()));
    }
    if let Ok(mut log) = LOG.lock() {
        if log.len() == LOG_KEEP {
            log.pop_front();
        }
        log.push_back((level, text));
        LOGGED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_since_returns_what_came_after_the_position() {
        let mark = log_position();
        record(sys::LogLevel::WARN.0, "after the mark 1".into());
        record(sys::LogLevel::ERROR.0, "after the mark 2".into());
        let since: Vec<String> = log_since(mark).into_iter().map(|(_, m)| m).collect();
        // Other tests may log concurrently: ours are there, in order.
        let mine: Vec<&String> = since
            .iter()
            .filter(|m| m.starts_with("after the mark"))
            .collect();
        assert_eq!(mine, ["after the mark 1", "after the mark 2"]);
    }

    #[test]
    fn an_error_logged_on_one_thread_is_not_another_threads_failure() {
        record(sys::LogLevel::ERROR.0, "on the main thread".into());
        let other = std::thread::spawn(|| {
            let before = take_last_error_log();
            record(sys::LogLevel::ERROR.0, "on the other thread".into());
            (before, take_last_error_log(), take_last_error_log())
        })
        .join()
        .unwrap();
        assert_eq!(other, (None, Some("on the other thread".into()), None));
        assert_eq!(take_last_error_log().as_deref(), Some("on the main thread"));
        record(sys::LogLevel::WARN.0, "a warning".into());
        assert_eq!(
            take_last_error_log(),
            None,
            "only errors are a call's failure"
        );
        assert!(recent_log().iter().any(|(_, m)| m == "on the other thread"));
    }
}
