//! A fake QNN backend library for fault-injection tests: it exports `QnnInterface_getProviders`
//! with a function table whose calls succeed (doing nothing) or fail with a chosen code at a
//! chosen call, reports a chosen API version, and counts live handles so tests can check that
//! every handle is freed.
//!
//! Controlled through `shadowattn_fake_qnn_configure(call, code, api_minor)`: `call` names the
//! QNN function to fail (e.g. `graphFinalize`, or NULL for none), `code` the status it returns.

#![allow(unsafe_code)]

use shadowattn_qnn::sys::{
    ApiVersion, Config, ErrorHandle, EventId, FunctionTable, Handle, Interface, OpConfig,
    ProfileEventData, Tensor, Version,
};
use std::ffi::{c_char, CStr};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

static FAIL_CALL: Mutex<Option<String>> = Mutex::new(None);
static FAIL_CODE: AtomicU64 = AtomicU64::new(0);
static API_MINOR: AtomicU32 = AtomicU32::new(40);
static LIVE: AtomicI64 = AtomicI64::new(0);
static NEXT: AtomicU64 = AtomicU64::new(1);

/// Chooses the call to fail (`NULL` for none), its status code, and the core API minor reported.
///
/// # Safety
/// `call` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shadowattn_fake_qnn_configure(
    call: *const c_char,
    code: u64,
    api_minor: u32,
) {
    let name = if call.is_null() {
        None
    } else {
        // SAFETY: the caller passes a NUL-terminated string.
        Some(
            unsafe { CStr::from_ptr(call) }
                .to_string_lossy()
                .into_owned(),
        )
    };
    *FAIL_CALL.lock().unwrap_or_else(|e| e.into_inner()) = name;
    FAIL_CODE.store(code, Ordering::SeqCst);
    API_MINOR.store(api_minor, Ordering::SeqCst);
}

/// Handles created and not yet freed.
#[no_mangle]
pub extern "C" fn shadowattn_fake_qnn_live_handles() -> i64 {
    LIVE.load(Ordering::SeqCst)
}

fn fails(call: &str) -> Option<ErrorHandle> {
    let failing = FAIL_CALL.lock().unwrap_or_else(|e| e.into_inner());
    (failing.as_deref() == Some(call)).then(|| FAIL_CODE.load(Ordering::SeqCst))
}

fn create(call: &str, out: *mut Handle) -> ErrorHandle {
    if let Some(code) = fails(call) {
        return code;
    }
    LIVE.fetch_add(1, Ordering::SeqCst);
    let h = NEXT.fetch_add(1, Ordering::SeqCst) as usize as Handle;
    // SAFETY: QNN out-pointers are valid for writes.
    unsafe { *out = h };
    0
}

fn free(call: &str) -> ErrorHandle {
    LIVE.fetch_sub(1, Ordering::SeqCst);
    fails(call).unwrap_or(0)
}

unsafe extern "C" fn log_create(
    _cb: Option<shadowattn_qnn::sys::LogCallback>,
    _level: u32,
    out: *mut Handle,
) -> ErrorHandle {
    create("logCreate", out)
}
unsafe extern "C" fn log_free(_h: Handle) -> ErrorHandle {
    free("logFree")
}
unsafe extern "C" fn backend_create(
    _log: Handle,
    _cfg: *const *const Config,
    out: *mut Handle,
) -> ErrorHandle {
    create("backendCreate", out)
}
unsafe extern "C" fn backend_free(_h: Handle) -> ErrorHandle {
    free("backendFree")
}
unsafe extern "C" fn backend_get_build_id(out: *mut *const c_char) -> ErrorHandle {
    // SAFETY: valid out-pointer; the string is static.
    unsafe { *out = c"fake-qnn".as_ptr() };
    0
}
unsafe extern "C" fn backend_validate_op_config(_b: Handle, _op: OpConfig) -> ErrorHandle {
    fails("backendValidateOpConfig").unwrap_or(0)
}
unsafe extern "C" fn device_create(
    _log: Handle,
    _cfg: *const *const Config,
    out: *mut Handle,
) -> ErrorHandle {
    create("deviceCreate", out)
}
unsafe extern "C" fn device_free(_h: Handle) -> ErrorHandle {
    free("deviceFree")
}
unsafe extern "C" fn context_create(
    _b: Handle,
    _d: Handle,
    _cfg: *const *const Config,
    out: *mut Handle,
) -> ErrorHandle {
    create("contextCreate", out)
}
unsafe extern "C" fn context_free(_c: Handle, _p: Handle) -> ErrorHandle {
    free("contextFree")
}
unsafe extern "C" fn graph_create(
    _c: Handle,
    _name: *const c_char,
    _cfg: *const *const Config,
    out: *mut Handle,
) -> ErrorHandle {
    // Graphs die with their context: not counted.
    if let Some(code) = fails("graphCreate") {
        return code;
    }
    // SAFETY: valid out-pointer.
    unsafe { *out = NEXT.fetch_add(1, Ordering::SeqCst) as usize as Handle };
    0
}
static TENSOR_ID: AtomicU32 = AtomicU32::new(1);
unsafe extern "C" fn tensor_create_graph_tensor(_g: Handle, t: *mut Tensor) -> ErrorHandle {
    if let Some(code) = fails("tensorCreateGraphTensor") {
        return code;
    }
    // SAFETY: the caller passes a version-1 tensor valid for writes.
    unsafe { (*t).u.v1.id = TENSOR_ID.fetch_add(1, Ordering::SeqCst) };
    0
}
unsafe extern "C" fn graph_add_node(_g: Handle, _op: OpConfig) -> ErrorHandle {
    fails("graphAddNode").unwrap_or(0)
}
unsafe extern "C" fn graph_finalize(_g: Handle, _p: Handle, _s: Handle) -> ErrorHandle {
    fails("graphFinalize").unwrap_or(0)
}
unsafe extern "C" fn graph_execute(
    _g: Handle,
    _i: *const Tensor,
    _ni: u32,
    _o: *mut Tensor,
    _no: u32,
    _p: Handle,
    _s: Handle,
) -> ErrorHandle {
    fails("graphExecute").unwrap_or(0)
}
unsafe extern "C" fn profile_create(_b: Handle, _level: u32, out: *mut Handle) -> ErrorHandle {
    create("profileCreate", out)
}
unsafe extern "C" fn profile_free(_h: Handle) -> ErrorHandle {
    free("profileFree")
}
unsafe extern "C" fn profile_get_events(
    _p: Handle,
    ids: *mut *const EventId,
    n: *mut u32,
) -> ErrorHandle {
    // SAFETY: valid out-pointers.
    unsafe {
        *ids = std::ptr::null();
        *n = 0;
    }
    0
}
unsafe extern "C" fn profile_get_sub_events(
    _e: EventId,
    ids: *mut *const EventId,
    n: *mut u32,
) -> ErrorHandle {
    // SAFETY: valid out-pointers.
    unsafe {
        *ids = std::ptr::null();
        *n = 0;
    }
    0
}
unsafe extern "C" fn profile_get_event_data(_e: EventId, _d: *mut ProfileEventData) -> ErrorHandle {
    1004
}
unsafe extern "C" fn error_get_message(err: ErrorHandle, out: *mut *const c_char) -> ErrorHandle {
    let msg: &'static CStr = match err & 0xFFFF {
        4000 => c"FAKE_BACKEND_ERROR_CANNOT_INITIALIZE: injected",
        5000 => c"FAKE_CONTEXT_ERROR_INVALID_ARGUMENT: injected",
        6022 => c"FAKE_GRAPH_ERROR_FINALIZE_FAILED: injected",
        6031 => c"FAKE_GRAPH_ERROR_ABORTED: injected",
        _ => c"FAKE_ERROR: injected",
    };
    // SAFETY: valid out-pointer; the message is static.
    unsafe { *out = msg.as_ptr() };
    0
}

struct SyncInterface(Interface);
// SAFETY: the interface is built once and never mutated; its pointers are to static data.
unsafe impl Sync for SyncInterface {}
// SAFETY: as above.
unsafe impl Send for SyncInterface {}

fn interface() -> &'static SyncInterface {
    static IFACE: OnceLock<SyncInterface> = OnceLock::new();
    IFACE.get_or_init(|| {
        // SAFETY: an all-NULL function table is valid (every slot is an Option of a fn pointer).
        let mut f: FunctionTable = unsafe { std::mem::zeroed() };
        f.log_create = Some(log_create);
        f.log_free = Some(log_free);
        f.backend_create = Some(backend_create);
        f.backend_free = Some(backend_free);
        f.backend_get_build_id = Some(backend_get_build_id);
        f.backend_validate_op_config = Some(backend_validate_op_config);
        f.device_create = Some(device_create);
        f.device_free = Some(device_free);
        f.context_create = Some(context_create);
        f.context_free = Some(context_free);
        f.graph_create = Some(graph_create);
        f.tensor_create_graph_tensor = Some(tensor_create_graph_tensor);
        f.graph_add_node = Some(graph_add_node);
        f.graph_finalize = Some(graph_finalize);
        f.graph_execute = Some(graph_execute);
        f.profile_create = Some(profile_create);
        f.profile_free = Some(profile_free);
        f.profile_get_events = Some(profile_get_events);
        f.profile_get_sub_events = Some(profile_get_sub_events);
        f.profile_get_event_data = Some(profile_get_event_data);
        f.error_get_message = Some(error_get_message);
        SyncInterface(Interface {
            backend_id: 6,
            provider_name: c"FAKE_QTI_AISW".as_ptr(),
            api_version: ApiVersion {
                core: Version {
                    major: 2,
                    minor: 40,
                    patch: 0,
                },
                backend: Version {
                    major: 5,
                    minor: 0,
                    patch: 0,
                },
            },
            functions: f,
        })
    })
}

/// The provider list, rebuilt on each call with the configured API minor.
struct Providers {
    iface: Interface,
    list: [*const Interface; 1],
}

/// `QnnInterface_getProviders`: one HTP-like provider.
///
/// # Safety
/// Both out-pointers are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn QnnInterface_getProviders(
    list: *mut *const *const Interface,
    count: *mut u32,
) -> ErrorHandle {
    static PROVIDERS: Mutex<Option<Box<Providers>>> = Mutex::new(None);
    let mut guard = PROVIDERS.lock().unwrap_or_else(|e| e.into_inner());
    let mut iface = interface().0;
    iface.api_version.core.minor = API_MINOR.load(Ordering::SeqCst);
    let mut p = Box::new(Providers {
        iface,
        list: [std::ptr::null()],
    });
    p.list[0] = &p.iface;
    // SAFETY: out-pointers are valid; the boxed list lives in the static until the next call.
    unsafe {
        *list = p.list.as_ptr();
        *count = 1;
    }
    *guard = Some(p);
    0
}

// The static holding raw pointers needs Send.
// SAFETY: the providers are only read by the loader while the lock-protected box is alive.
unsafe impl Send for Providers {}
