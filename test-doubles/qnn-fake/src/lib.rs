//! A fake QNN backend library for fault-injection tests: it exports `QnnInterface_getProviders`
//! with a function table whose calls succeed (doing nothing) or fail with a chosen code at a
//! chosen call, reports a chosen API version, and counts live handles so tests can check that
//! every handle is freed.
//!
//! Controlled through `shadowattn_fake_qnn_configure(call, code, api_minor)`: `call` names the
//! QNN function to fail (e.g. `graphFinalize`, or NULL for none), `code` the status it returns.
//!
//! Shared memory, strictly: the library also exports a fake rpcmem (`rpcmem_alloc`,
//! `rpcmem_free`, `rpcmem_to_fd`; point the backend's rpcmem library at this file) and
//! implements `memRegister`/`memDeRegister`, which validate every descriptor (ION memory, dims,
//! data type, a file descriptor of a live fake rpcmem buffer large enough for the tensor) and
//! refuse unknown handles. `graphExecute` checks every I/O tensor (client buffer of the tensor's
//! exact size, or a registered handle whose dims and type match) and computes each output from
//! the inputs (see [`fake_output_byte`]), reading and writing registered tensors through their
//! rpcmem buffers — so a test sees whether data went through the right memory.

#![allow(unsafe_code)]

use shadowattn_qnn::sys::{
    ApiVersion, Config, DataType, ErrorHandle, EventId, FunctionTable, Handle, Interface,
    MemDescriptor, MemHandle, MemType, OpConfig, ProfileEventData, Tensor, TensorMemType, Version,
    RPCMEM_DEFAULT_FLAGS, RPCMEM_HEAP_ID_SYSTEM,
};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
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
/// Whether the function table offers memRegister/memDeRegister (read by getProviders).
static MEM_REGISTER: AtomicBool = AtomicBool::new(true);
/// Graph I/O tensors executed through a registered handle.
static EXECUTED_HANDLES: AtomicU64 = AtomicU64::new(0);
/// Next fake rpcmem file descriptor.
static NEXT_FD: AtomicU32 = AtomicU32::new(100);

/// A fake rpcmem buffer.
struct RpcAlloc {
    fd: i32,
    bytes: Box<[u8]>,
}

/// A registration: the buffer's descriptor and the tensor it was registered for.
#[derive(Clone)]
struct Registration {
    fd: i32,
    data_type: u32,
    dims: Vec<u32>,
}

/// Live fake rpcmem buffers by address, and registrations by handle.
#[derive(Default)]
struct SharedMemory {
    buffers: HashMap<usize, RpcAlloc>,
    registered: HashMap<usize, Registration>,
}

fn shared_memory() -> std::sync::MutexGuard<'static, SharedMemory> {
    static SHM: OnceLock<Mutex<SharedMemory>> = OnceLock::new();
    SHM.get_or_init(|| Mutex::new(SharedMemory::default()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Offers (`true`, the default) or withholds memRegister/memDeRegister from the function table
/// returned by later `QnnInterface_getProviders` calls.
#[no_mangle]
pub extern "C" fn shadowattn_fake_qnn_set_mem_register(offered: bool) {
    MEM_REGISTER.store(offered, Ordering::SeqCst);
}

/// Live fake rpcmem buffers.
#[no_mangle]
pub extern "C" fn shadowattn_fake_rpcmem_live() -> i64 {
    shared_memory().buffers.len() as i64
}

/// Live registrations (memRegister not yet undone by memDeRegister).
#[no_mangle]
pub extern "C" fn shadowattn_fake_qnn_registered() -> i64 {
    shared_memory().registered.len() as i64
}

/// Graph I/O tensors that graphExecute read or wrote through a registered handle.
#[no_mangle]
pub extern "C" fn shadowattn_fake_qnn_executed_handles() -> i64 {
    EXECUTED_HANDLES.load(Ordering::SeqCst) as i64
}

/// Fake `rpcmem_alloc`: only the system heap with default flags; the buffer starts as 0xA5
/// bytes (garbage a caller must overwrite).
#[no_mangle]
pub extern "C" fn rpcmem_alloc(heap_id: c_int, flags: u32, size: c_int) -> *mut c_void {
    if heap_id != RPCMEM_HEAP_ID_SYSTEM || flags != RPCMEM_DEFAULT_FLAGS || size <= 0 {
        return std::ptr::null_mut();
    }
    let mut bytes = vec![0xA5u8; size as usize].into_boxed_slice();
    let ptr = bytes.as_mut_ptr() as usize;
    let fd = NEXT_FD.fetch_add(1, Ordering::SeqCst) as i32;
    shared_memory().buffers.insert(ptr, RpcAlloc { fd, bytes });
    ptr as *mut c_void
}

/// Fake `rpcmem_free`: frees a live buffer; anything else is ignored.
#[no_mangle]
pub extern "C" fn rpcmem_free(ptr: *mut c_void) {
    shared_memory().buffers.remove(&(ptr as usize));
}

/// Fake `rpcmem_to_fd`: the descriptor of a live buffer, −1 for anything else.
#[no_mangle]
pub extern "C" fn rpcmem_to_fd(ptr: *mut c_void) -> c_int {
    shared_memory()
        .buffers
        .get(&(ptr as usize))
        .map_or(-1, |a| a.fd)
}

/// Bytes per element of a tensor data type this fake knows.
fn element_size(data_type: u32) -> Option<usize> {
    let known = [
        DataType::INT_8,
        DataType::INT_16,
        DataType::INT_32,
        DataType::UINT_8,
        DataType::UINT_16,
        DataType::UINT_32,
        DataType::FLOAT_16,
        DataType::FLOAT_32,
        DataType::SFIXED_POINT_8,
        DataType::SFIXED_POINT_16,
        DataType::SFIXED_POINT_32,
        DataType::UFIXED_POINT_8,
        DataType::UFIXED_POINT_16,
        DataType::BOOL_8,
    ];
    known
        .iter()
        .any(|d| d.0 == data_type)
        .then_some(match data_type & 0xFF {
            0x08 => 1,
            0x16 => 2,
            _ => 4,
        })
}

/// MEM error: a descriptor or handle this fake refuses.
const MEM_INVALID_ARGUMENT: ErrorHandle = 8001;
/// MEM error: a handle that is not registered.
const MEM_INVALID_HANDLE: ErrorHandle = 8002;
/// GRAPH_INVALID_TENSOR.
const GRAPH_INVALID_TENSOR: ErrorHandle = 6004;

/// Checks one descriptor: the registration it makes, or why it is refused.
///
/// # Safety
/// `d` is a valid descriptor whose dims pointer (if not NULL) holds `num_dim` values.
unsafe fn registration(shm: &SharedMemory, d: &MemDescriptor) -> Option<Registration> {
    if d.mem_type != MemType::ION || d.shape.num_dim == 0 || d.shape.dim_size.is_null() {
        return None;
    }
    // SAFETY: the caller vouches for the dims.
    let dims =
        unsafe { std::slice::from_raw_parts(d.shape.dim_size, d.shape.num_dim as usize) }.to_vec();
    if dims.contains(&0) {
        return None;
    }
    let size = element_size(d.data_type.0)?;
    // SAFETY: ION descriptors carry the ion member.
    let fd = unsafe { d.info.ion.fd };
    let buffer = shm.buffers.values().find(|a| a.fd == fd)?;
    let needed = dims.iter().map(|&x| x as usize).product::<usize>() * size;
    (needed <= buffer.bytes.len()).then_some(Registration {
        fd,
        data_type: d.data_type.0,
        dims,
    })
}

unsafe extern "C" fn mem_register(
    context: Handle,
    descriptors: *const MemDescriptor,
    count: u32,
    handles: *mut MemHandle,
) -> ErrorHandle {
    if let Some(code) = fails("memRegister") {
        return code;
    }
    if context.is_null() || descriptors.is_null() || handles.is_null() || count == 0 {
        return MEM_INVALID_ARGUMENT;
    }
    let mut shm = shared_memory();
    // SAFETY: the caller passes `count` descriptors.
    let descriptors = unsafe { std::slice::from_raw_parts(descriptors, count as usize) };
    let mut made = Vec::new();
    for d in descriptors {
        // SAFETY: a descriptor from the caller, dims as it says.
        match unsafe { registration(&shm, d) } {
            Some(r) => made.push(r),
            None => return MEM_INVALID_ARGUMENT,
        }
    }
    for (i, r) in made.into_iter().enumerate() {
        let h = NEXT.fetch_add(1, Ordering::SeqCst) as usize;
        shm.registered.insert(h, r);
        // SAFETY: the caller passes room for `count` handles.
        unsafe { *handles.add(i) = h as MemHandle };
    }
    0
}

unsafe extern "C" fn mem_de_register(handles: *const MemHandle, count: u32) -> ErrorHandle {
    if let Some(code) = fails("memDeRegister") {
        return code;
    }
    if handles.is_null() || count == 0 {
        return MEM_INVALID_ARGUMENT;
    }
    let mut shm = shared_memory();
    // SAFETY: the caller passes `count` handles.
    let handles = unsafe { std::slice::from_raw_parts(handles, count as usize) };
    if handles
        .iter()
        .any(|h| !shm.registered.contains_key(&(*h as usize)))
    {
        return MEM_INVALID_HANDLE;
    }
    for h in handles {
        shm.registered.remove(&(*h as usize));
    }
    0
}

/// Byte `j` of an output that the fake computes from the inputs: a sum of every input's byte
/// at `j` (wrapping around shorter inputs), mixed with `j` and the output's index.
pub fn fake_output_byte(inputs: &[&[u8]], output: usize, j: usize) -> u8 {
    let sum = inputs
        .iter()
        .filter(|i| !i.is_empty())
        .fold(0u8, |acc, i| acc.wrapping_add(i[j % i.len()]));
    sum ^ (j as u8).wrapping_mul(31) ^ (output as u8)
}

/// Where one execute tensor's bytes are: (address, length).
///
/// # Safety
/// `t` is a valid version-1 tensor whose dims pointer holds `rank` values.
unsafe fn tensor_memory(shm: &SharedMemory, t: &Tensor) -> Result<(*mut u8, usize), ErrorHandle> {
    if t.version != 1 {
        return Err(GRAPH_INVALID_TENSOR);
    }
    // SAFETY: checked version 1.
    let v1 = unsafe { &t.u.v1 };
    let dims: &[u32] = if v1.rank == 0 {
        &[]
    } else {
        // SAFETY: the caller vouches for the dims.
        unsafe { std::slice::from_raw_parts(v1.dimensions, v1.rank as usize) }
    };
    let size = element_size(v1.data_type.0).ok_or(GRAPH_INVALID_TENSOR)?
        * dims.iter().map(|&d| d as usize).product::<usize>();
    match v1.mem_type {
        TensorMemType::RAW => {
            // SAFETY: RAW tensors carry a client buffer.
            let buf = unsafe { v1.memory.client_buf };
            if buf.data.is_null() || buf.data_size as usize != size {
                return Err(GRAPH_INVALID_TENSOR);
            }
            Ok((buf.data.cast(), size))
        }
        TensorMemType::MEMHANDLE => {
            // SAFETY: MEMHANDLE tensors carry a handle.
            let h = unsafe { v1.memory.mem_handle } as usize;
            let r = shm.registered.get(&h).ok_or(GRAPH_INVALID_TENSOR)?;
            if r.dims != dims || r.data_type != v1.data_type.0 {
                return Err(GRAPH_INVALID_TENSOR);
            }
            let buffer = shm
                .buffers
                .values()
                .find(|a| a.fd == r.fd)
                .ok_or(GRAPH_INVALID_TENSOR)?;
            EXECUTED_HANDLES.fetch_add(1, Ordering::SeqCst);
            Ok((buffer.bytes.as_ptr().cast_mut(), size))
        }
        _ => Err(GRAPH_INVALID_TENSOR),
    }
}

unsafe extern "C" fn graph_execute(
    _g: Handle,
    inputs: *const Tensor,
    n_inputs: u32,
    outputs: *mut Tensor,
    n_outputs: u32,
    _p: Handle,
    _s: Handle,
) -> ErrorHandle {
    if let Some(code) = fails("graphExecute") {
        return code;
    }
    let shm = shared_memory();
    let mut ins = Vec::new();
    for i in 0..n_inputs as usize {
        // SAFETY: the caller passes `n_inputs` valid tensors.
        match unsafe { tensor_memory(&shm, &*inputs.add(i)) } {
            // SAFETY: the memory is valid for `len` bytes during the call.
            Ok((p, len)) => ins.push(unsafe { std::slice::from_raw_parts(p.cast_const(), len) }),
            Err(code) => return code,
        }
    }
    let mut outs = Vec::new();
    for o in 0..n_outputs as usize {
        // SAFETY: the caller passes `n_outputs` valid tensors.
        match unsafe { tensor_memory(&shm, &*outputs.add(o)) } {
            Ok(m) => outs.push(m),
            Err(code) => return code,
        }
    }
    for (o, (p, len)) in outs.into_iter().enumerate() {
        for j in 0..len {
            let b = fake_output_byte(&ins, o, j);
            // SAFETY: output memory is valid for `len` writable bytes and not one of the inputs.
            unsafe { *p.add(j) = b };
        }
    }
    0
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
        6004 => c"FAKE_GRAPH_ERROR_INVALID_TENSOR: an execute tensor this fake refuses",
        8001 => c"FAKE_MEM_ERROR_INVALID_ARGUMENT: a descriptor this fake refuses",
        8002 => c"FAKE_MEM_ERROR_INVALID_HANDLE: not a registered handle",
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
        f.mem_register = Some(mem_register);
        f.mem_de_register = Some(mem_de_register);
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
    if !MEM_REGISTER.load(Ordering::SeqCst) {
        iface.functions.mem_register = None;
        iface.functions.mem_de_register = None;
    }
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
