//! Hand-written `#[repr(C)]` declarations of the subset of the QNN C ABI that shadowattn uses.
//!
//! Written from the layout facts in the project's reference notes (LP64; QNN core API 2.14 and
//! later), not from Qualcomm's headers. Enums are integer newtypes: the library may return
//! values this file does not name. Every layout is checked at compile time below; the `bindgen`
//! feature cross-checks them against a user's own SDK headers at build time.

use std::ffi::{c_char, c_int, c_void};
use std::mem::{offset_of, size_of};

/// An opaque QNN handle (log, backend, device, context, graph, profile, signal).
pub type Handle = *mut c_void;
/// A QNN status: 0 is success; the code is the low 16 bits.
pub type ErrorHandle = u64;
/// A profiling event id.
pub type EventId = u64;

/// Low 16 bits of a status: the error code.
pub fn error_code(e: ErrorHandle) -> u64 {
    e & 0xFFFF
}

/// COMMON_ERROR_NOT_SUPPORTED: what a missing optional function is reported as.
pub const STATUS_NOT_SUPPORTED: ErrorHandle = 1000;
/// The HTP library's answer to a device config it cannot parse (seen on the emulator when the
/// config's payload sits at another offset than the library expects).
pub const STATUS_DEVICE_CONFIG_UNPARSED: u64 = 14001;

use shadowattn_hal::int_newtype as newtype;

newtype!(
    /// Element type of a tensor or scalar.
    DataType(u32) {
        /// Signed 8-bit integer.
        INT_8 = 0x0008,
        /// Signed 16-bit integer.
        INT_16 = 0x0016,
        /// Signed 32-bit integer.
        INT_32 = 0x0032,
        /// Unsigned 8-bit integer.
        UINT_8 = 0x0108,
        /// Unsigned 16-bit integer.
        UINT_16 = 0x0116,
        /// Unsigned 32-bit integer.
        UINT_32 = 0x0132,
        /// IEEE half.
        FLOAT_16 = 0x0216,
        /// IEEE single.
        FLOAT_32 = 0x0232,
        /// Signed 8-bit fixed point (quantized).
        SFIXED_POINT_8 = 0x0308,
        /// Signed 16-bit fixed point (quantized).
        SFIXED_POINT_16 = 0x0316,
        /// Signed 32-bit fixed point (quantized).
        SFIXED_POINT_32 = 0x0332,
        /// Unsigned 8-bit fixed point (quantized).
        UFIXED_POINT_8 = 0x0408,
        /// Unsigned 16-bit fixed point (quantized).
        UFIXED_POINT_16 = 0x0416,
        /// Boolean byte.
        BOOL_8 = 0x0508,
    }
);

newtype!(
    /// Role of a tensor in a graph.
    TensorType(u32) {
        /// Graph input written by the application.
        APP_WRITE = 0,
        /// Graph output read by the application.
        APP_READ = 1,
        /// Intermediate tensor owned by the backend.
        NATIVE = 3,
        /// Constant data copied at creation.
        STATIC = 4,
    }
);

newtype!(
    /// Whether quantization parameters are defined.
    Definition(u32) {
        /// Parameters are given.
        DEFINED = 1,
        /// No parameters (float tensors).
        UNDEFINED = 0x7FFF_FFFF,
    }
);

newtype!(
    /// Quantization encoding.
    Encoding(u32) {
        /// One scale and offset.
        SCALE_OFFSET = 0,
        /// One scale and offset per index of an axis.
        AXIS_SCALE_OFFSET = 1,
        /// Unused (float tensors).
        UNDEFINED = 0x7FFF_FFFF,
    }
);

newtype!(
    /// Kind of an op parameter.
    ParamType(u32) {
        /// A scalar.
        SCALAR = 0,
        /// A static tensor.
        TENSOR = 1,
    }
);

newtype!(
    /// Profiling detail.
    ProfileLevel(u32) {
        /// Summary events.
        BASIC = 1,
        /// Per-node events.
        DETAILED = 2,
    }
);

newtype!(
    /// Log verbosity.
    LogLevel(u32) {
        /// Errors only.
        ERROR = 1,
        /// Warnings and errors.
        WARN = 2,
        /// Informational.
        INFO = 3,
        /// Verbose.
        VERBOSE = 4,
        /// Everything, for debugging.
        DEBUG = 5,
    }
);

newtype!(
    /// Type of a profiling event (generic ones, and the HTP backend's).
    ProfileEventType(u32) {
        /// Graph finalize, µs.
        FINALIZE = 300,
        /// Graph execute, µs.
        EXECUTE = 400,
        /// HTP: simulated execution cycles (finalize-time cost model).
        HTP_SIM_EXEC_CYCLES = 2006,
        /// HTP: lower bound of the simulated execution cycles.
        HTP_SIM_EXEC_LOWER_CYCLES = 2007,
        /// HTP: upper bound of the simulated execution cycles.
        HTP_SIM_EXEC_UPPER_CYCLES = 2008,
        /// HTP: simulated execution time, µs.
        HTP_SIM_EXEC_TIME_US = 2019,
        /// HTP: bytes the estimated execution reads from DDR for graph inputs.
        HTP_BW_INPUT_FILL = 2011,
        /// HTP: bytes of intermediates read back from DDR (filled).
        HTP_BW_INTERMEDIATE_FILL = 2012,
        /// HTP: bytes of intermediates written to DDR (spilled).
        HTP_BW_INTERMEDIATE_SPILL = 2013,
        /// HTP: bytes the estimated execution writes to DDR for graph outputs.
        HTP_BW_OUTPUT_SPILL = 2016,
        /// HTP: how many ops the estimate has no cost for (each named in a sub-event).
        HTP_MISSING_OPS = 2017,
    }
);

/// `float = (quantized + offset) · scale`; QNN's offset is the negated zero point.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ScaleOffset {
    /// Scale.
    pub scale: f32,
    /// Offset (−zero point).
    pub offset: i32,
}

/// Per-axis scales and offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AxisScaleOffset {
    /// The axis.
    pub axis: i32,
    /// Number of entries.
    pub num_scale_offsets: u32,
    /// The entries.
    pub scale_offset: *mut ScaleOffset,
}

/// The encoding-specific part of quantization parameters (32 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub union QuantizeUnion {
    /// [`Encoding::SCALE_OFFSET`].
    pub scale_offset: ScaleOffset,
    /// [`Encoding::AXIS_SCALE_OFFSET`].
    pub axis_scale_offset: AxisScaleOffset,
    /// Size of the largest member.
    pub reserved: [u64; 4],
}

/// Quantization parameters of a tensor (40 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct QuantizeParams {
    /// [`Definition`].
    pub encoding_definition: Definition,
    /// [`Encoding`].
    pub quantization_encoding: Encoding,
    /// Parameters.
    pub params: QuantizeUnion,
}

/// An application buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ClientBuffer {
    /// Data.
    pub data: *mut c_void,
    /// Size in bytes (32-bit in the ABI).
    pub data_size: u32,
}

newtype!(
    /// Which member of a tensor's [`TensorMemory`] is set.
    TensorMemType(u32) {
        /// A client buffer (`client_buf`): QNN copies it in and out.
        RAW = 0,
        /// A handle from `memRegister` (`mem_handle`): shared memory, no copy.
        MEMHANDLE = 1,
    }
);

/// Where tensor memory lives (16 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub union TensorMemory {
    /// Memory type 0: a client buffer.
    pub client_buf: ClientBuffer,
    /// Memory type 1: a registered memory handle.
    pub mem_handle: MemHandle,
}

/// A handle to memory registered with `memRegister`.
pub type MemHandle = *mut c_void;

newtype!(
    /// Kind of memory a [`MemDescriptor`] registers.
    MemType(u32) {
        /// An ION / rpcmem buffer named by its file descriptor.
        ION = 0,
        /// Backend-specific memory described by a pointer.
        CUSTOM = 1,
        /// A DMA-BUF named by its file descriptor and mapping.
        DMA_BUF = 2,
    }
);

/// Shape of registered memory (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemShape {
    /// Number of dimensions.
    pub num_dim: u32,
    /// The dimensions.
    pub dim_size: *mut u32,
    /// Backend-specific shape configuration; NULL for none.
    pub shape_config: *const c_char,
}

/// [`MemType::ION`]: the buffer's file descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemIonInfo {
    /// File descriptor (`rpcmem_to_fd`).
    pub fd: i32,
}

/// [`MemType::DMA_BUF`]: the buffer's file descriptor and mapping.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemDmaBufInfo {
    /// File descriptor.
    pub fd: i32,
    /// The buffer mapped in this process.
    pub data: *mut c_void,
}

/// What identifies the memory, by [`MemType`] (16 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub union MemInfo {
    /// [`MemType::ION`].
    pub ion: MemIonInfo,
    /// [`MemType::CUSTOM`].
    pub custom: *mut c_void,
    /// [`MemType::DMA_BUF`].
    pub dma_buf: MemDmaBufInfo,
}

/// What `memRegister` registers (48 bytes): layout as QNN's public users fill it
/// (`{{rank, dims, NULL}, dataType, ION, {{fd}}}` in llama.cpp's ggml-qnn `register_rpcmem`,
/// executorch's `QnnMemManager::RegisterIonMem`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MemDescriptor {
    /// Shape of the tensor the memory holds.
    pub shape: MemShape,
    /// Element type of that tensor.
    pub data_type: DataType,
    /// Kind of memory.
    pub mem_type: MemType,
    /// The memory.
    pub info: MemInfo,
}

/// `rpcmem_alloc(heapid, flags, size)` of `libcdsprpc.so`: NULL on failure.
pub type RpcMemAllocFn = unsafe extern "C" fn(c_int, u32, c_int) -> *mut c_void;
/// `rpcmem_free(buffer)`.
pub type RpcMemFreeFn = unsafe extern "C" fn(*mut c_void);
/// `rpcmem_to_fd(buffer)`: the buffer's file descriptor, −1 if it is not an rpcmem buffer.
pub type RpcMemToFdFn = unsafe extern "C" fn(*mut c_void) -> c_int;
/// Exported symbol of [`RpcMemAllocFn`].
pub const RPCMEM_ALLOC_SYMBOL: &str = "rpcmem_alloc";
/// Exported symbol of [`RpcMemFreeFn`].
pub const RPCMEM_FREE_SYMBOL: &str = "rpcmem_free";
/// Exported symbol of [`RpcMemToFdFn`].
pub const RPCMEM_TO_FD_SYMBOL: &str = "rpcmem_to_fd";
/// RPCMEM_HEAP_ID_SYSTEM: the heap QNN's users allocate shared graph I/O from.
pub const RPCMEM_HEAP_ID_SYSTEM: c_int = 25;
/// RPCMEM_DEFAULT_FLAGS (cached).
pub const RPCMEM_DEFAULT_FLAGS: u32 = 1;

/// Tensor, version 1 (112 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TensorV1 {
    /// Id assigned by the backend at creation.
    pub id: u32,
    /// Unique name.
    pub name: *const c_char,
    /// Role.
    pub tensor_type: TensorType,
    /// 0 = dense.
    pub data_format: u32,
    /// Element type.
    pub data_type: DataType,
    /// Quantization.
    pub quantize_params: QuantizeParams,
    /// Number of dimensions.
    pub rank: u32,
    /// Dimensions.
    pub dimensions: *mut u32,
    /// Which member of `memory` is set.
    pub mem_type: TensorMemType,
    /// The buffer.
    pub memory: TensorMemory,
}

/// The versioned part of a tensor (sized for version 2, 136 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub union TensorUnion {
    /// Version 1.
    pub v1: TensorV1,
    /// Size of version 2.
    pub reserved: [u64; 17],
}

/// A tensor (144 bytes since core API 2.14).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Tensor {
    /// 1 for [`TensorV1`].
    pub version: u32,
    /// The tensor.
    pub u: TensorUnion,
}

/// The value of a scalar (8 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub union ScalarValue {
    /// FLOAT_32.
    pub f32_value: f32,
    /// UINT_32.
    pub u32_value: u32,
    /// INT_32.
    pub i32_value: i32,
    /// BOOL_8, UINT_8.
    pub u8_value: u8,
    /// Size.
    pub reserved: u64,
}

/// A scalar (16 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Scalar {
    /// Element type.
    pub data_type: DataType,
    /// Value.
    pub value: ScalarValue,
}

/// The value of an op parameter.
#[repr(C)]
#[derive(Clone, Copy)]
pub union ParamValue {
    /// [`ParamType::SCALAR`].
    pub scalar: Scalar,
    /// [`ParamType::TENSOR`] (static).
    pub tensor: Tensor,
}

/// An op parameter (160 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Param {
    /// Scalar or tensor.
    pub param_type: ParamType,
    /// Parameter name.
    pub name: *const c_char,
    /// Value.
    pub value: ParamValue,
}

/// An op, version 1 (72 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OpConfigV1 {
    /// Node name.
    pub name: *const c_char,
    /// Op package (`qti.aisw`).
    pub package_name: *const c_char,
    /// Op type (`MatMul`).
    pub type_name: *const c_char,
    /// Number of parameters.
    pub num_of_params: u32,
    /// Parameters.
    pub params: *mut Param,
    /// Number of inputs.
    pub num_of_inputs: u32,
    /// Inputs.
    pub input_tensors: *mut Tensor,
    /// Number of outputs.
    pub num_of_outputs: u32,
    /// Outputs.
    pub output_tensors: *mut Tensor,
}

/// An op (80 bytes), passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OpConfig {
    /// 1.
    pub version: u32,
    /// The op.
    pub v1: OpConfigV1,
}

/// A create-time config of a backend, context, graph or device (16 bytes): option 0 is CUSTOM.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// The option.
    pub option: u32,
    /// Its value: a pointer for CUSTOM.
    pub value: *const c_void,
}

/// Option value of a vendor custom config.
pub const CONFIG_OPTION_CUSTOM: u32 = 0;

newtype!(
    /// Option of the HTP device custom config.
    HtpDeviceOption(u32) {
        /// Select a SoC model.
        SOC = 0,
        /// Select a minimum architecture.
        ARCH = 1,
    }
);

/// The HTP device custom config (16 bytes, payload at offset 8 in the 2.40 library).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HtpDeviceCustomConfig {
    /// [`HtpDeviceOption`].
    pub option: HtpDeviceOption,
    /// Payload.
    pub value: HtpDevicePayload,
}

/// Payload of the HTP device custom config.
#[repr(C)]
#[derive(Clone, Copy)]
pub union HtpDevicePayload {
    /// [`HtpDeviceOption::SOC`].
    pub soc_model: u32,
    /// [`HtpDeviceOption::ARCH`]: (device id, arch).
    pub arch: [u32; 2],
    /// Pointer-sized member of newer libraries (fixes the 8-byte alignment).
    pub extension: *const c_void,
}

newtype!(
    /// Option of the HTP graph custom config.
    HtpGraphOption(u32) {
        /// Optimization: `{type, value}`.
        OPTIMIZATION = 1,
        /// Float precision: 0 FP32, 1 FP16.
        PRECISION = 2,
        /// VTCM size in MB (0 = maximum).
        VTCM_SIZE_IN_MB = 3,
    }
);

/// The HTP graph custom config (56 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HtpGraphCustomConfig {
    /// [`HtpGraphOption`].
    pub option: HtpGraphOption,
    /// Payload.
    pub value: HtpGraphPayload,
}

/// Payload of the HTP graph custom config.
#[repr(C)]
#[derive(Clone, Copy)]
pub union HtpGraphPayload {
    /// PRECISION, VTCM_SIZE_IN_MB.
    pub u32_value: u32,
    /// OPTIMIZATION.
    pub optimization: HtpOptimization,
    /// Size of the largest member.
    pub reserved: [u64; 6],
}

/// Kind of the HTP graph OPTIMIZATION option that sets the finalize optimization level.
pub const HTP_OPTIMIZATION_FINALIZE_FLAG: u32 = 3;

/// Value of the HTP graph OPTIMIZATION option.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HtpOptimization {
    /// [`HTP_OPTIMIZATION_FINALIZE_FLAG`].
    pub kind: u32,
    /// The optimization level.
    pub value: f32,
}

/// One profiling event (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProfileEventData {
    /// Event type (see [`ProfileEventType`]).
    pub event_type: u32,
    /// Unit: 1 µs, 2 bytes, 3 cycles, 4 count, 6 none.
    pub unit: u32,
    /// Value.
    pub value: u64,
    /// Name.
    pub identifier: *const c_char,
}

/// A version triple.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

/// Core and backend API versions.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ApiVersion {
    /// Core API.
    pub core: Version,
    /// Backend API.
    pub backend: Version,
}

/// Log callback: `(format, level, timestamp, va_list)`.
pub type LogCallback = unsafe extern "C" fn(*const c_char, u32, u64, *mut c_void);

type F<Args> = Option<Args>;

/// The function table, up to slot 50 (errorFreeVerboseMessage); a prefix of every provider
/// with core API minor ≥ 14.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(missing_docs)]
pub struct FunctionTable {
    pub property_has_capability: F<unsafe extern "C" fn(u32) -> ErrorHandle>,
    pub backend_create:
        F<unsafe extern "C" fn(Handle, *const *const Config, *mut Handle) -> ErrorHandle>,
    pub backend_set_config: F<unsafe extern "C" fn(Handle, *const *const Config) -> ErrorHandle>,
    pub backend_get_api_version: F<unsafe extern "C" fn(*mut ApiVersion) -> ErrorHandle>,
    pub backend_get_build_id: F<unsafe extern "C" fn(*mut *const c_char) -> ErrorHandle>,
    pub backend_register_op_package: F<
        unsafe extern "C" fn(Handle, *const c_char, *const c_char, *const c_char) -> ErrorHandle,
    >,
    pub backend_get_supported_operations:
        F<unsafe extern "C" fn(Handle, *mut u32, *mut *const c_void) -> ErrorHandle>,
    pub backend_validate_op_config: F<unsafe extern "C" fn(Handle, OpConfig) -> ErrorHandle>,
    pub backend_free: F<unsafe extern "C" fn(Handle) -> ErrorHandle>,
    pub context_create:
        F<unsafe extern "C" fn(Handle, Handle, *const *const Config, *mut Handle) -> ErrorHandle>,
    pub context_set_config: F<unsafe extern "C" fn(Handle, *const *const Config) -> ErrorHandle>,
    pub context_get_binary_size: F<unsafe extern "C" fn(Handle, *mut u64) -> ErrorHandle>,
    pub context_get_binary:
        F<unsafe extern "C" fn(Handle, *mut c_void, u64, *mut u64) -> ErrorHandle>,
    pub context_create_from_binary: F<
        unsafe extern "C" fn(
            Handle,
            Handle,
            *const *const Config,
            *const c_void,
            u64,
            *mut Handle,
            Handle,
        ) -> ErrorHandle,
    >,
    pub context_free: F<unsafe extern "C" fn(Handle, Handle) -> ErrorHandle>,
    pub graph_create: F<
        unsafe extern "C" fn(
            Handle,
            *const c_char,
            *const *const Config,
            *mut Handle,
        ) -> ErrorHandle,
    >,
    pub graph_create_subgraph:
        F<unsafe extern "C" fn(Handle, *const c_char, *mut Handle) -> ErrorHandle>,
    pub graph_set_config: F<unsafe extern "C" fn(Handle, *const *const Config) -> ErrorHandle>,
    pub graph_add_node: F<unsafe extern "C" fn(Handle, OpConfig) -> ErrorHandle>,
    pub graph_finalize: F<unsafe extern "C" fn(Handle, Handle, Handle) -> ErrorHandle>,
    pub graph_retrieve: F<unsafe extern "C" fn(Handle, *const c_char, *mut Handle) -> ErrorHandle>,
    pub graph_execute: F<
        unsafe extern "C" fn(
            Handle,
            *const Tensor,
            u32,
            *mut Tensor,
            u32,
            Handle,
            Handle,
        ) -> ErrorHandle,
    >,
    pub graph_execute_async: F<unsafe extern "C" fn()>,
    pub tensor_create_context_tensor: F<unsafe extern "C" fn(Handle, *mut Tensor) -> ErrorHandle>,
    pub tensor_create_graph_tensor: F<unsafe extern "C" fn(Handle, *mut Tensor) -> ErrorHandle>,
    pub log_create: F<unsafe extern "C" fn(Option<LogCallback>, u32, *mut Handle) -> ErrorHandle>,
    pub log_set_log_level: F<unsafe extern "C" fn(Handle, u32) -> ErrorHandle>,
    pub log_free: F<unsafe extern "C" fn(Handle) -> ErrorHandle>,
    pub profile_create: F<unsafe extern "C" fn(Handle, u32, *mut Handle) -> ErrorHandle>,
    pub profile_set_config: F<unsafe extern "C" fn(Handle, *const *const c_void) -> ErrorHandle>,
    pub profile_get_events:
        F<unsafe extern "C" fn(Handle, *mut *const EventId, *mut u32) -> ErrorHandle>,
    pub profile_get_sub_events:
        F<unsafe extern "C" fn(EventId, *mut *const EventId, *mut u32) -> ErrorHandle>,
    pub profile_get_event_data:
        F<unsafe extern "C" fn(EventId, *mut ProfileEventData) -> ErrorHandle>,
    pub profile_get_extended_event_data: F<unsafe extern "C" fn()>,
    pub profile_free: F<unsafe extern "C" fn(Handle) -> ErrorHandle>,
    pub mem_register:
        F<unsafe extern "C" fn(Handle, *const MemDescriptor, u32, *mut MemHandle) -> ErrorHandle>,
    pub mem_de_register: F<unsafe extern "C" fn(*const MemHandle, u32) -> ErrorHandle>,
    pub device_get_platform_info: F<unsafe extern "C" fn()>,
    pub device_free_platform_info: F<unsafe extern "C" fn()>,
    pub device_get_infrastructure: F<unsafe extern "C" fn()>,
    pub device_create:
        F<unsafe extern "C" fn(Handle, *const *const Config, *mut Handle) -> ErrorHandle>,
    pub device_set_config: F<unsafe extern "C" fn()>,
    pub device_get_info: F<unsafe extern "C" fn()>,
    pub device_free: F<unsafe extern "C" fn(Handle) -> ErrorHandle>,
    pub signal_create: F<unsafe extern "C" fn()>,
    pub signal_set_config: F<unsafe extern "C" fn()>,
    pub signal_trigger: F<unsafe extern "C" fn()>,
    pub signal_free: F<unsafe extern "C" fn()>,
    pub error_get_message: F<unsafe extern "C" fn(ErrorHandle, *mut *const c_char) -> ErrorHandle>,
    pub error_get_verbose_message:
        F<unsafe extern "C" fn(ErrorHandle, *mut *const c_char) -> ErrorHandle>,
    pub error_free_verbose_message: F<unsafe extern "C" fn(*const c_char) -> ErrorHandle>,
}

/// A provider returned by `QnnInterface_getProviders` (prefix up to slot 50).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Interface {
    /// 6 for HTP.
    pub backend_id: u32,
    /// `HTP_QTI_AISW` for HTP; may be NULL.
    pub provider_name: *const c_char,
    /// API versions.
    pub api_version: ApiVersion,
    /// Functions.
    pub functions: FunctionTable,
}

/// The fixed head of every [`Interface`], valid to read whatever the provider's API version:
/// the loader reads it first and the function table only once the version is vetted.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProviderHeader {
    /// 6 for HTP.
    pub backend_id: u32,
    /// `HTP_QTI_AISW` for HTP; may be NULL.
    pub provider_name: *const c_char,
    /// API versions.
    pub api_version: ApiVersion,
}

/// `QnnInterface_getProviders(list, count)`.
pub type GetProvidersFn =
    unsafe extern "C" fn(*mut *const *const Interface, *mut u32) -> ErrorHandle;

/// Exported symbol of every QNN backend library.
pub const GET_PROVIDERS_SYMBOL: &str = "QnnInterface_getProviders";

/// Backend id of HTP.
pub const BACKEND_ID_HTP: u32 = 6;
/// Core API major version this crate speaks.
pub const CORE_API_MAJOR: u32 = 2;
/// Lowest core API minor accepted: Tensor V2 sizing (144-byte tensors) and every slot used.
pub const CORE_API_MIN_MINOR: u32 = 14;

const _: () = {
    assert!(size_of::<ProviderHeader>() == 40);
    assert!(offset_of!(ProviderHeader, provider_name) == offset_of!(Interface, provider_name));
    assert!(offset_of!(ProviderHeader, api_version) == offset_of!(Interface, api_version));
    assert!(offset_of!(ProviderHeader, api_version) == 16);
    assert!(offset_of!(Interface, functions) == size_of::<ProviderHeader>());
    assert!(size_of::<ScaleOffset>() == 8);
    assert!(size_of::<QuantizeUnion>() == 32);
    assert!(size_of::<QuantizeParams>() == 40);
    assert!(offset_of!(QuantizeParams, params) == 8);
    assert!(size_of::<ClientBuffer>() == 16);
    assert!(size_of::<TensorMemory>() == 16);
    assert!(size_of::<TensorV1>() == 112);
    assert!(offset_of!(TensorV1, name) == 8);
    assert!(offset_of!(TensorV1, tensor_type) == 16);
    assert!(offset_of!(TensorV1, data_format) == 20);
    assert!(offset_of!(TensorV1, data_type) == 24);
    assert!(offset_of!(TensorV1, quantize_params) == 32);
    assert!(offset_of!(TensorV1, rank) == 72);
    assert!(offset_of!(TensorV1, dimensions) == 80);
    assert!(offset_of!(TensorV1, mem_type) == 88);
    assert!(offset_of!(TensorV1, memory) == 96);
    assert!(size_of::<TensorMemType>() == 4);
    assert!(size_of::<MemType>() == 4);
    assert!(size_of::<MemShape>() == 24);
    assert!(offset_of!(MemShape, dim_size) == 8);
    assert!(offset_of!(MemShape, shape_config) == 16);
    assert!(size_of::<MemIonInfo>() == 4);
    assert!(size_of::<MemDmaBufInfo>() == 16);
    assert!(offset_of!(MemDmaBufInfo, data) == 8);
    assert!(size_of::<MemInfo>() == 16);
    assert!(std::mem::align_of::<MemInfo>() == 8);
    assert!(size_of::<MemDescriptor>() == 48);
    assert!(offset_of!(MemDescriptor, data_type) == 24);
    assert!(offset_of!(MemDescriptor, mem_type) == 28);
    assert!(offset_of!(MemDescriptor, info) == 32);
    assert!(size_of::<Tensor>() == 144);
    assert!(offset_of!(Tensor, u) == 8);
    assert!(size_of::<Scalar>() == 16);
    assert!(offset_of!(Scalar, value) == 8);
    assert!(size_of::<Param>() == 160);
    assert!(offset_of!(Param, name) == 8);
    assert!(offset_of!(Param, value) == 16);
    assert!(size_of::<OpConfigV1>() == 72);
    assert!(offset_of!(OpConfigV1, num_of_params) == 24);
    assert!(offset_of!(OpConfigV1, params) == 32);
    assert!(offset_of!(OpConfigV1, num_of_inputs) == 40);
    assert!(offset_of!(OpConfigV1, input_tensors) == 48);
    assert!(offset_of!(OpConfigV1, num_of_outputs) == 56);
    assert!(offset_of!(OpConfigV1, output_tensors) == 64);
    assert!(size_of::<OpConfig>() == 80);
    assert!(offset_of!(OpConfig, v1) == 8);
    assert!(size_of::<Config>() == 16);
    assert!(size_of::<HtpDeviceCustomConfig>() == 16);
    assert!(offset_of!(HtpDeviceCustomConfig, value) == 8);
    assert!(size_of::<HtpGraphCustomConfig>() == 56);
    assert!(offset_of!(HtpGraphCustomConfig, value) == 8);
    assert!(size_of::<ProfileEventData>() == 24);
    assert!(offset_of!(ProfileEventData, value) == 8);
    assert!(offset_of!(ProfileEventData, identifier) == 16);
    assert!(size_of::<Version>() == 12);
    assert!(size_of::<ApiVersion>() == 24);
    assert!(offset_of!(Interface, provider_name) == 8);
    assert!(offset_of!(Interface, api_version) == 16);
    assert!(offset_of!(Interface, functions) == 40);
    assert!(offset_of!(FunctionTable, backend_validate_op_config) == 96 - 40);
    assert!(offset_of!(FunctionTable, context_create) == 112 - 40);
    assert!(offset_of!(FunctionTable, graph_execute) == 208 - 40);
    assert!(offset_of!(FunctionTable, log_create) == 240 - 40);
    assert!(offset_of!(FunctionTable, profile_free) == 312 - 40);
    assert!(offset_of!(FunctionTable, mem_register) == 320 - 40);
    assert!(offset_of!(FunctionTable, mem_de_register) == 328 - 40);
    assert!(offset_of!(FunctionTable, device_create) == 360 - 40);
    assert!(offset_of!(FunctionTable, device_free) == 384 - 40);
    assert!(offset_of!(FunctionTable, error_get_message) == 424 - 40);
    assert!(size_of::<FunctionTable>() == 51 * 8);
};

/// Compile-time comparison with bindings generated from the user's QNN SDK (feature `bindgen`).
#[cfg(feature = "bindgen")]
#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    missing_docs,
    clippy::all
)]
pub mod sdk_check {
    mod sdk {
        include!(concat!(env!("OUT_DIR"), "/qnn_sdk.rs"));
    }
    use std::mem::size_of;

    const _: () = {
        assert!(
            size_of::<sdk::Qnn_Tensor_t>() == size_of::<super::Tensor>(),
            "Tensor size differs from the SDK"
        );
        assert!(
            size_of::<sdk::Qnn_TensorV1_t>() == size_of::<super::TensorV1>(),
            "TensorV1 size differs from the SDK"
        );
        assert!(
            size_of::<sdk::Qnn_QuantizeParams_t>() == size_of::<super::QuantizeParams>(),
            "QuantizeParams size differs from the SDK"
        );
        assert!(
            size_of::<sdk::Qnn_Param_t>() == size_of::<super::Param>(),
            "Param size differs from the SDK"
        );
        assert!(
            size_of::<sdk::Qnn_Scalar_t>() == size_of::<super::Scalar>(),
            "Scalar size differs from the SDK"
        );
        assert!(
            size_of::<sdk::Qnn_OpConfig_t>() == size_of::<super::OpConfig>(),
            "OpConfig size differs from the SDK"
        );
        assert!(
            size_of::<sdk::Qnn_ClientBuffer_t>() == size_of::<super::ClientBuffer>(),
            "ClientBuffer size differs from the SDK"
        );
        assert!(
            size_of::<sdk::Qnn_MemDescriptor_t>() == size_of::<super::MemDescriptor>(),
            "MemDescriptor size differs from the SDK"
        );
        assert!(
            size_of::<sdk::QnnProfile_EventData_t>() == size_of::<super::ProfileEventData>(),
            "ProfileEventData size differs from the SDK"
        );
        assert!(
            size_of::<sdk::Qnn_ApiVersion_t>() == size_of::<super::ApiVersion>(),
            "ApiVersion size differs from the SDK"
        );
        assert!(
            std::mem::offset_of!(sdk::QnnInterface_t, coreApiVersion)
                == std::mem::offset_of!(super::Interface, api_version)
        );
    };
}
