//! Thin wrappers of the QNN calls shadowattn makes: each checks its slot, makes the call and
//! turns the status into a `Result` carrying the QNN code, `errorGetMessage` text and the last
//! error the library logged.

#![allow(unsafe_code)]

use super::types::*;
use crate::error::{QnnError, Result};
use crate::loader::{take_last_error_log, QnnLibrary, RpcBuffer};
use std::ffi::{c_void, CStr, CString};

/// An opaque QNN handle that may move between threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawHandle(pub Handle);

// SAFETY: QNN handles are opaque tokens, not pointers we dereference; the safe layer serializes
// every call that uses one, so moving or sharing the token between threads is sound.
unsafe impl Send for RawHandle {}
// SAFETY: see `Send`.
unsafe impl Sync for RawHandle {}

impl RawHandle {
    /// The NULL handle (optional arguments).
    pub const NULL: RawHandle = RawHandle(std::ptr::null_mut());
}

/// Op package of the built-in ops.
pub const PACKAGE: &CStr = c"qti.aisw";

fn check(lib: &QnnLibrary, call: &'static str, status: ErrorHandle) -> Result<()> {
    if status == 0 {
        // Log lines up to a successful call belong to it; a later failure reports only its own.
        let _ = take_last_error_log();
        return Ok(());
    }
    let mut message = lib.error_message(status);
    if let Some(log) = take_last_error_log() {
        message.push_str(&format!(" (library log: {log})"));
    }
    Err(QnnError::Call {
        call,
        code: error_code(status),
        message,
    })
}

macro_rules! func {
    ($lib:expr, $slot:ident, $name:literal) => {
        $lib.functions()
            .$slot
            .ok_or(QnnError::MissingFunction($name))?
    };
}

/// `logCreate` with shadowattn's callback.
pub fn log_create(lib: &QnnLibrary, level: LogLevel) -> Result<RawHandle> {
    let f = func!(lib, log_create, "logCreate");
    let mut h: Handle = std::ptr::null_mut();
    // SAFETY: the callback has the documented signature and lives for the whole program; `h` is
    // a valid out-pointer.
    check(lib, "logCreate", unsafe {
        f(Some(crate::loader::log_callback), level.0, &mut h)
    })?;
    Ok(RawHandle(h))
}

/// `logFree`.
pub fn log_free(lib: &QnnLibrary, log: RawHandle) -> Result<()> {
    let f = func!(lib, log_free, "logFree");
    // SAFETY: `log` came from logCreate and is freed once, by its owner's Drop.
    check(lib, "logFree", unsafe { f(log.0) })
}

/// `backendCreate` with default configs.
pub fn backend_create(lib: &QnnLibrary, log: RawHandle) -> Result<RawHandle> {
    let f = func!(lib, backend_create, "backendCreate");
    let mut h: Handle = std::ptr::null_mut();
    // SAFETY: `log` is a live log handle; NULL configs mean defaults; `h` is a valid out-pointer.
    check(lib, "backendCreate", unsafe {
        f(log.0, std::ptr::null(), &mut h)
    })?;
    Ok(RawHandle(h))
}

/// `backendFree`.
pub fn backend_free(lib: &QnnLibrary, backend: RawHandle) -> Result<()> {
    let f = func!(lib, backend_free, "backendFree");
    // SAFETY: `backend` came from backendCreate and is freed once, after everything made from it.
    check(lib, "backendFree", unsafe { f(backend.0) })
}

/// `backendGetBuildId`.
pub fn backend_build_id(lib: &QnnLibrary) -> Result<String> {
    let f = func!(lib, backend_get_build_id, "backendGetBuildId");
    let mut s: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: `s` is a valid out-pointer; the string is owned by the library.
    check(lib, "backendGetBuildId", unsafe { f(&mut s) })?;
    if s.is_null() {
        return Ok(String::new());
    }
    // SAFETY: checked non-NULL, NUL-terminated per the API.
    Ok(unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
}

fn create_device(
    lib: &QnnLibrary,
    log: RawHandle,
    customs: &[*const c_void],
) -> (ErrorHandle, Handle) {
    let Some(f) = lib.functions().device_create else {
        return (STATUS_NOT_SUPPORTED, std::ptr::null_mut());
    };
    let generic: Vec<Config> = customs
        .iter()
        .map(|&value| Config {
            option: CONFIG_OPTION_CUSTOM,
            value,
        })
        .collect();
    let mut list: Vec<*const Config> = generic.iter().map(|c| c as *const Config).collect();
    list.push(std::ptr::null());
    let configs = if customs.is_empty() {
        std::ptr::null()
    } else {
        list.as_ptr()
    };
    let mut h: Handle = std::ptr::null_mut();
    // SAFETY: `configs` is NULL or a NULL-terminated array of configs whose custom payloads
    // outlive the call; `h` is a valid out-pointer.
    let status = unsafe { f(log.0, configs, &mut h) };
    (status, h)
}

/// `deviceCreate`, selecting `soc_model` and a minimum HTP `arch` when given. The HTP device
/// config's payload sits at offset 8 in current libraries; older ones expect offset 4, so a
/// 14001 answer is retried once with that layout.
pub fn device_create(
    lib: &QnnLibrary,
    log: RawHandle,
    soc_model: Option<u32>,
    arch: Option<u32>,
) -> Result<RawHandle> {
    lib.functions()
        .device_create
        .ok_or(QnnError::MissingFunction("deviceCreate"))?;
    let mut current = Vec::new();
    let mut legacy: Vec<[u32; 3]> = Vec::new();
    if let Some(soc) = soc_model {
        current.push(HtpDeviceCustomConfig {
            option: HtpDeviceOption::SOC,
            value: HtpDevicePayload { soc_model: soc },
        });
        legacy.push([HtpDeviceOption::SOC.0, soc, 0]);
    }
    if let Some(arch) = arch {
        current.push(HtpDeviceCustomConfig {
            option: HtpDeviceOption::ARCH,
            value: HtpDevicePayload { arch: [0, arch] },
        });
        legacy.push([HtpDeviceOption::ARCH.0, 0, arch]);
    }
    let pointers: Vec<*const c_void> = current
        .iter()
        .map(|c| (c as *const HtpDeviceCustomConfig).cast())
        .collect();
    let (status, h) = create_device(lib, log, &pointers);
    if error_code(status) == STATUS_DEVICE_CONFIG_UNPARSED && !legacy.is_empty() {
        let _ = take_last_error_log();
        let pointers: Vec<*const c_void> = legacy.iter().map(|c| c.as_ptr().cast()).collect();
        let (status, h) = create_device(lib, log, &pointers);
        check(lib, "deviceCreate", status)?;
        return Ok(RawHandle(h));
    }
    check(lib, "deviceCreate", status)?;
    Ok(RawHandle(h))
}

/// `deviceFree`.
pub fn device_free(lib: &QnnLibrary, device: RawHandle) -> Result<()> {
    let f = func!(lib, device_free, "deviceFree");
    // SAFETY: `device` came from deviceCreate and is freed once, after its contexts.
    check(lib, "deviceFree", unsafe { f(device.0) })
}

/// `contextCreate` with default configs.
pub fn context_create(
    lib: &QnnLibrary,
    backend: RawHandle,
    device: RawHandle,
) -> Result<RawHandle> {
    let f = func!(lib, context_create, "contextCreate");
    let mut h: Handle = std::ptr::null_mut();
    // SAFETY: live backend and device (or NULL) handles; `h` is a valid out-pointer.
    check(lib, "contextCreate", unsafe {
        f(backend.0, device.0, std::ptr::null(), &mut h)
    })?;
    Ok(RawHandle(h))
}

/// `contextFree` (frees the context's graphs too).
pub fn context_free(lib: &QnnLibrary, context: RawHandle) -> Result<()> {
    let f = func!(lib, context_free, "contextFree");
    // SAFETY: `context` came from contextCreate(FromBinary) and is freed once.
    check(lib, "contextFree", unsafe {
        f(context.0, std::ptr::null_mut())
    })
}

/// `contextGetBinarySize` + `contextGetBinary`.
pub fn context_binary(lib: &QnnLibrary, context: RawHandle) -> Result<Vec<u8>> {
    let size_f = func!(lib, context_get_binary_size, "contextGetBinarySize");
    let get_f = func!(lib, context_get_binary, "contextGetBinary");
    let mut size: u64 = 0;
    // SAFETY: live context; `size` is a valid out-pointer.
    check(lib, "contextGetBinarySize", unsafe {
        size_f(context.0, &mut size)
    })?;
    let len = usize::try_from(size).map_err(|_| QnnError::ContextBinaryTooLarge { bytes: size })?;
    let mut buf = vec![0u8; len];
    let mut written: u64 = 0;
    // SAFETY: `buf` has `size` writable bytes; `written` is a valid out-pointer.
    check(lib, "contextGetBinary", unsafe {
        get_f(context.0, buf.as_mut_ptr().cast(), size, &mut written)
    })?;
    buf.truncate(written as usize);
    Ok(buf)
}

/// `contextCreateFromBinary`.
pub fn context_from_binary(
    lib: &QnnLibrary,
    backend: RawHandle,
    device: RawHandle,
    bytes: &[u8],
) -> Result<RawHandle> {
    let f = func!(lib, context_create_from_binary, "contextCreateFromBinary");
    let mut h: Handle = std::ptr::null_mut();
    // SAFETY: `bytes` is readable for its length through the call; handles are live.
    check(lib, "contextCreateFromBinary", unsafe {
        f(
            backend.0,
            device.0,
            std::ptr::null(),
            bytes.as_ptr().cast(),
            bytes.len() as u64,
            &mut h,
            std::ptr::null_mut(),
        )
    })?;
    Ok(RawHandle(h))
}

/// HTP graph options.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GraphOptions {
    /// 0 FP32, 1 FP16.
    pub precision: Option<u32>,
    /// VTCM size in MB (0 = maximum).
    pub vtcm_mb: Option<u32>,
    /// Finalize optimization level.
    pub optimization_level: Option<u32>,
}

/// `graphCreate` with HTP custom configs.
pub fn graph_create(
    lib: &QnnLibrary,
    context: RawHandle,
    name: &CStr,
    options: &GraphOptions,
) -> Result<RawHandle> {
    let f = func!(lib, graph_create, "graphCreate");
    let mut customs = Vec::new();
    if let Some(p) = options.precision {
        customs.push(HtpGraphCustomConfig {
            option: HtpGraphOption::PRECISION,
            value: HtpGraphPayload { u32_value: p },
        });
    }
    if let Some(v) = options.vtcm_mb {
        customs.push(HtpGraphCustomConfig {
            option: HtpGraphOption::VTCM_SIZE_IN_MB,
            value: HtpGraphPayload { u32_value: v },
        });
    }
    if let Some(o) = options.optimization_level {
        customs.push(HtpGraphCustomConfig {
            option: HtpGraphOption::OPTIMIZATION,
            value: HtpGraphPayload {
                optimization: HtpOptimization {
                    kind: HTP_OPTIMIZATION_FINALIZE_FLAG,
                    value: o as f32,
                },
            },
        });
    }
    let generic: Vec<Config> = customs
        .iter()
        .map(|c| Config {
            option: CONFIG_OPTION_CUSTOM,
            value: (c as *const HtpGraphCustomConfig).cast(),
        })
        .collect();
    let mut list: Vec<*const Config> = generic.iter().map(|c| c as *const Config).collect();
    list.push(std::ptr::null());
    let mut h: Handle = std::ptr::null_mut();
    let configs = if generic.is_empty() {
        std::ptr::null()
    } else {
        list.as_ptr()
    };
    // SAFETY: `name` is NUL-terminated; `configs` is NULL or a NULL-terminated array whose
    // entries outlive the call; `h` is a valid out-pointer.
    check(lib, "graphCreate", unsafe {
        f(context.0, name.as_ptr(), configs, &mut h)
    })?;
    Ok(RawHandle(h))
}

/// `graphRetrieve`.
pub fn graph_retrieve(lib: &QnnLibrary, context: RawHandle, name: &CStr) -> Result<RawHandle> {
    let f = func!(lib, graph_retrieve, "graphRetrieve");
    let mut h: Handle = std::ptr::null_mut();
    // SAFETY: live context, NUL-terminated name, valid out-pointer.
    check(lib, "graphRetrieve", unsafe {
        f(context.0, name.as_ptr(), &mut h)
    })?;
    Ok(RawHandle(h))
}

/// A tensor description that owns everything its C struct points to.
#[derive(Clone, Debug)]
pub struct TensorDef {
    /// Unique name.
    pub name: CString,
    /// Role.
    pub tensor_type: TensorType,
    /// Element type.
    pub data_type: DataType,
    /// Dimensions.
    pub dims: Vec<u32>,
    /// Scale and offset of a quantized tensor.
    pub quant: Option<ScaleOffset>,
    /// Id assigned by `tensorCreateGraphTensor` (0 before).
    pub id: u32,
    /// Constant data of a STATIC tensor.
    pub static_data: Option<Vec<u8>>,
}

impl TensorDef {
    /// The C struct, pointing into `self` and at client buffer `data`.
    fn raw(&mut self, data: *mut c_void, size: u32) -> Tensor {
        self.raw_memory(
            TensorMemType::RAW,
            TensorMemory {
                client_buf: ClientBuffer {
                    data,
                    data_size: size,
                },
            },
        )
    }

    /// The C struct, pointing into `self` and at registered memory `handle`.
    fn raw_registered(&mut self, handle: MemHandle) -> Tensor {
        self.raw_memory(
            TensorMemType::MEMHANDLE,
            TensorMemory { mem_handle: handle },
        )
    }

    /// The C struct, pointing into `self`, with `memory` of type `mem_type`.
    fn raw_memory(&mut self, mem_type: TensorMemType, memory: TensorMemory) -> Tensor {
        let quantize_params = match self.quant {
            Some(so) => QuantizeParams {
                encoding_definition: Definition::DEFINED,
                quantization_encoding: Encoding::SCALE_OFFSET,
                params: QuantizeUnion { scale_offset: so },
            },
            None => QuantizeParams {
                encoding_definition: Definition::UNDEFINED,
                quantization_encoding: Encoding::UNDEFINED,
                params: QuantizeUnion { reserved: [0; 4] },
            },
        };
        Tensor {
            version: 1,
            u: TensorUnion {
                v1: TensorV1 {
                    id: self.id,
                    name: self.name.as_ptr(),
                    tensor_type: self.tensor_type,
                    data_format: 0,
                    data_type: self.data_type,
                    quantize_params,
                    rank: self.dims.len() as u32,
                    dimensions: self.dims.as_mut_ptr(),
                    mem_type,
                    memory,
                },
            },
        }
    }

    fn raw_static(&mut self) -> Tensor {
        let (ptr, len) = match &mut self.static_data {
            Some(d) => (d.as_mut_ptr().cast(), d.len() as u32),
            None => (std::ptr::null_mut(), 0),
        };
        self.raw(ptr, len)
    }
}

/// `tensorCreateGraphTensor`; stores the assigned id in `def`.
pub fn tensor_create(lib: &QnnLibrary, graph: RawHandle, def: &mut TensorDef) -> Result<()> {
    let f = func!(lib, tensor_create_graph_tensor, "tensorCreateGraphTensor");
    let mut t = def.raw_static();
    // SAFETY: `t` points into `def`, which outlives the call; the backend copies what it keeps
    // and writes the id into `t`.
    check(lib, "tensorCreateGraphTensor", unsafe {
        f(graph.0, &mut t)
    })?;
    // SAFETY: we built `t` as version 1.
    def.id = unsafe { t.u.v1.id };
    Ok(())
}

/// An op parameter that owns its data.
#[derive(Clone, Debug)]
pub enum ParamDef {
    /// BOOL_8 scalar.
    Bool(CString, bool),
    /// UINT_32 scalar.
    U32(CString, u32),
    /// FLOAT_32 scalar.
    F32(CString, f32),
    /// A static UINT_32 tensor.
    TensorU32(CString, TensorDef),
}

/// An op that owns its strings and parameters; inputs and outputs index a tensor table.
#[derive(Clone, Debug)]
pub struct OpDef {
    /// Node name.
    pub name: CString,
    /// QNN op type.
    pub type_name: CString,
    /// Parameters.
    pub params: Vec<ParamDef>,
    /// Input tensors (indices).
    pub inputs: Vec<usize>,
    /// Output tensors (indices).
    pub outputs: Vec<usize>,
}

fn with_op_config(
    op: &mut OpDef,
    tensors: &mut [TensorDef],
    call: impl FnOnce(OpConfig) -> ErrorHandle,
) -> ErrorHandle {
    let mut inputs: Vec<Tensor> = op
        .inputs
        .iter()
        .map(|&i| tensors[i].raw(std::ptr::null_mut(), 0))
        .collect();
    let mut outputs: Vec<Tensor> = op
        .outputs
        .iter()
        .map(|&i| tensors[i].raw(std::ptr::null_mut(), 0))
        .collect();
    let mut params: Vec<Param> = op
        .params
        .iter_mut()
        .map(|p| match p {
            ParamDef::Bool(n, v) => Param {
                param_type: ParamType::SCALAR,
                name: n.as_ptr(),
                value: ParamValue {
                    scalar: Scalar {
                        data_type: DataType::BOOL_8,
                        value: ScalarValue {
                            u8_value: u8::from(*v),
                        },
                    },
                },
            },
            ParamDef::U32(n, v) => Param {
                param_type: ParamType::SCALAR,
                name: n.as_ptr(),
                value: ParamValue {
                    scalar: Scalar {
                        data_type: DataType::UINT_32,
                        value: ScalarValue { u32_value: *v },
                    },
                },
            },
            ParamDef::F32(n, v) => Param {
                param_type: ParamType::SCALAR,
                name: n.as_ptr(),
                value: ParamValue {
                    scalar: Scalar {
                        data_type: DataType::FLOAT_32,
                        value: ScalarValue { f32_value: *v },
                    },
                },
            },
            ParamDef::TensorU32(n, t) => Param {
                param_type: ParamType::TENSOR,
                name: n.as_ptr(),
                value: ParamValue {
                    tensor: t.raw_static(),
                },
            },
        })
        .collect();
    let cfg = OpConfig {
        version: 1,
        v1: OpConfigV1 {
            name: op.name.as_ptr(),
            package_name: PACKAGE.as_ptr(),
            type_name: op.type_name.as_ptr(),
            num_of_params: params.len() as u32,
            params: params.as_mut_ptr(),
            num_of_inputs: inputs.len() as u32,
            input_tensors: inputs.as_mut_ptr(),
            num_of_outputs: outputs.len() as u32,
            output_tensors: outputs.as_mut_ptr(),
        },
    };
    call(cfg)
}

/// `backendValidateOpConfig`.
pub fn validate_op(
    lib: &QnnLibrary,
    backend: RawHandle,
    op: &mut OpDef,
    tensors: &mut [TensorDef],
) -> Result<()> {
    let f = func!(lib, backend_validate_op_config, "backendValidateOpConfig");
    // SAFETY: the config points into `op`, `tensors` and vectors that live through the call.
    let status = with_op_config(op, tensors, |cfg| unsafe { f(backend.0, cfg) });
    check(lib, "backendValidateOpConfig", status)
}

/// `graphAddNode`; static tensor parameters are first created in the graph.
pub fn add_node(
    lib: &QnnLibrary,
    graph: RawHandle,
    op: &mut OpDef,
    tensors: &mut [TensorDef],
) -> Result<()> {
    let f = func!(lib, graph_add_node, "graphAddNode");
    // Static tensor parameters must exist in the graph (with an id) before the node refers to them.
    for p in op.params.iter_mut() {
        if let ParamDef::TensorU32(_, t) = p {
            tensor_create(lib, graph, t)?;
        }
    }
    // SAFETY: the config points into `op`, `tensors` and vectors that live through the call;
    // the tensors carry the ids assigned at creation.
    let status = with_op_config(op, tensors, |cfg| unsafe { f(graph.0, cfg) });
    check(lib, "graphAddNode", status)
}

/// `graphFinalize`, filling `profile` when it is not NULL.
pub fn graph_finalize(lib: &QnnLibrary, graph: RawHandle, profile: RawHandle) -> Result<()> {
    let f = func!(lib, graph_finalize, "graphFinalize");
    // SAFETY: live graph and profile (or NULL) handles; no signal.
    check(lib, "graphFinalize", unsafe {
        f(graph.0, profile.0, std::ptr::null_mut())
    })
}

/// Shared memory registered with `memRegister` in one context, for one graph input or output.
/// Deregister it with [`mem_de_register`] before its context is freed; dropping it unregistered
/// frees the memory under QNN.
#[derive(Debug)]
pub struct Registered {
    handle: RawHandle,
    buffer: RpcBuffer,
}

impl Registered {
    /// The memory handle, as tensors carry it.
    pub fn handle(&self) -> RawHandle {
        self.handle
    }

    /// The shared bytes.
    pub fn bytes(&self) -> &[u8] {
        self.buffer.as_slice()
    }

    /// The shared bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut_slice()
    }
}

/// `memRegister` of `buffer` (an rpcmem buffer, by its file descriptor) for the tensor `def`
/// in `context`; `buffer` is freed on failure.
pub fn mem_register(
    lib: &QnnLibrary,
    context: RawHandle,
    def: &mut TensorDef,
    buffer: RpcBuffer,
) -> Result<Registered> {
    let f = func!(lib, mem_register, "memRegister");
    let descriptor = MemDescriptor {
        shape: MemShape {
            num_dim: def.dims.len() as u32,
            dim_size: def.dims.as_mut_ptr(),
            shape_config: std::ptr::null(),
        },
        data_type: def.data_type,
        mem_type: MemType::ION,
        info: MemInfo {
            ion: MemIonInfo { fd: buffer.fd() },
        },
    };
    let mut handle: MemHandle = std::ptr::null_mut();
    // SAFETY: `descriptor` and the dimensions it points into (`def`) live through the call; one
    // descriptor and one out-handle, as the count says; `handle` is a valid out-pointer.
    check(lib, "memRegister", unsafe {
        f(context.0, &descriptor, 1, &mut handle)
    })?;
    Ok(Registered {
        handle: RawHandle(handle),
        buffer,
    })
}

/// `memDeRegister` of `registered`; its memory is freed afterwards, whatever QNN answers.
pub fn mem_de_register(lib: &QnnLibrary, registered: Registered) -> Result<()> {
    let f = func!(lib, mem_de_register, "memDeRegister");
    let handle = registered.handle.0;
    // SAFETY: one handle from memRegister, deregistered once (`registered` is consumed); the
    // memory it names is freed only after the call, when `registered` drops.
    let status = unsafe { f(&handle, 1) };
    drop(registered);
    check(lib, "memDeRegister", status)
}

/// The memory of one graph input during `graphExecute`.
#[derive(Debug)]
pub enum InputData<'a> {
    /// A client buffer, copied in by QNN.
    Client(&'a [u8]),
    /// Registered shared memory, already holding the input.
    Registered(&'a Registered),
}

/// The memory of one graph output during `graphExecute`.
#[derive(Debug)]
pub enum OutputData<'a> {
    /// A client buffer QNN copies the output into.
    Client(&'a mut [u8]),
    /// Registered shared memory QNN writes.
    Registered(&'a mut Registered),
}

/// `graphExecute`: `inputs` are read, `outputs` written, each through a client buffer or
/// registered memory.
pub fn graph_execute(
    lib: &QnnLibrary,
    graph: RawHandle,
    inputs: &mut [(&mut TensorDef, InputData<'_>)],
    outputs: &mut [(&mut TensorDef, OutputData<'_>)],
    profile: RawHandle,
) -> Result<()> {
    let f = func!(lib, graph_execute, "graphExecute");
    let ins: Vec<Tensor> = inputs
        .iter_mut()
        .map(|(def, data)| match data {
            InputData::Client(d) => def.raw(d.as_ptr().cast_mut().cast(), d.len() as u32),
            InputData::Registered(r) => def.raw_registered(r.handle.0),
        })
        .collect();
    let mut outs: Vec<Tensor> = outputs
        .iter_mut()
        .map(|(def, data)| match data {
            OutputData::Client(d) => def.raw(d.as_mut_ptr().cast(), d.len() as u32),
            OutputData::Registered(r) => def.raw_registered(r.handle.0),
        })
        .collect();
    // SAFETY: every tensor's client buffer or registered memory is live and sized for its
    // tensor for the whole call (registered memory was sized from the same definition); QNN only
    // reads inputs (the pointer is mutable in the C struct only) and writes outputs, which are
    // borrowed mutably here, so nothing else reads them meanwhile.
    check(lib, "graphExecute", unsafe {
        f(
            graph.0,
            ins.as_ptr(),
            ins.len() as u32,
            outs.as_mut_ptr(),
            outs.len() as u32,
            profile.0,
            std::ptr::null_mut(),
        )
    })
}

/// `profileCreate`.
pub fn profile_create(
    lib: &QnnLibrary,
    backend: RawHandle,
    level: ProfileLevel,
) -> Result<RawHandle> {
    let f = func!(lib, profile_create, "profileCreate");
    let mut h: Handle = std::ptr::null_mut();
    // SAFETY: live backend; valid out-pointer.
    check(lib, "profileCreate", unsafe {
        f(backend.0, level.0, &mut h)
    })?;
    Ok(RawHandle(h))
}

/// `profileFree`.
pub fn profile_free(lib: &QnnLibrary, profile: RawHandle) -> Result<()> {
    let f = func!(lib, profile_free, "profileFree");
    // SAFETY: `profile` came from profileCreate and is freed once.
    check(lib, "profileFree", unsafe { f(profile.0) })
}

/// One profiling event and its sub-events.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Event type.
    pub event_type: u32,
    /// Unit (1 µs, 2 bytes, 3 cycles, 4 count, 6 none).
    pub unit: u32,
    /// Value.
    pub value: u64,
    /// Name.
    pub name: String,
    /// Sub-events.
    pub sub: Vec<Event>,
}

fn event_tree(lib: &QnnLibrary, id: EventId, depth: usize) -> Result<Event> {
    let data_f = func!(lib, profile_get_event_data, "profileGetEventData");
    let sub_f = func!(lib, profile_get_sub_events, "profileGetSubEvents");
    let mut data = ProfileEventData {
        event_type: 0,
        unit: 0,
        value: 0,
        identifier: std::ptr::null(),
    };
    // SAFETY: `id` was returned by the library for a live profile; `data` is a valid out-pointer.
    check(lib, "profileGetEventData", unsafe { data_f(id, &mut data) })?;
    let name = if data.identifier.is_null() {
        String::new()
    } else {
        // SAFETY: non-NULL identifiers are NUL-terminated strings owned by the profile.
        unsafe { CStr::from_ptr(data.identifier) }
            .to_string_lossy()
            .into_owned()
    };
    let mut sub = Vec::new();
    if depth < 4 {
        let mut ids: *const EventId = std::ptr::null();
        let mut n: u32 = 0;
        // SAFETY: valid out-pointers; the id array is owned by the profile.
        check(lib, "profileGetSubEvents", unsafe {
            sub_f(id, &mut ids, &mut n)
        })?;
        for i in 0..n as usize {
            // SAFETY: `ids` holds `n` event ids.
            sub.push(event_tree(lib, unsafe { *ids.add(i) }, depth + 1)?);
        }
    }
    Ok(Event {
        event_type: data.event_type,
        unit: data.unit,
        value: data.value,
        name,
        sub,
    })
}

/// Every top-level event of a profile, with sub-events.
pub fn profile_events(lib: &QnnLibrary, profile: RawHandle) -> Result<Vec<Event>> {
    let f = func!(lib, profile_get_events, "profileGetEvents");
    let mut ids: *const EventId = std::ptr::null();
    let mut n: u32 = 0;
    // SAFETY: live profile; valid out-pointers; the id array is owned by the profile.
    check(lib, "profileGetEvents", unsafe {
        f(profile.0, &mut ids, &mut n)
    })?;
    (0..n as usize)
        // SAFETY: `ids` holds `n` event ids.
        .map(|i| event_tree(lib, unsafe { *ids.add(i) }, 0))
        .collect()
}
