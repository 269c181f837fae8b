//! Hand-written declarations of the OpenCL 1.2 subset shadowattn uses, written from the Khronos
//! OpenCL API specification (LP64 and ILP32 alike: handles are pointers, sizes are `size_t`).

use shadowattn_hal::int_newtype as newtype;
use std::ffi::{c_char, c_void};

/// `cl_platform_id`.
pub type PlatformId = *mut c_void;
/// `cl_device_id`.
pub type DeviceId = *mut c_void;
/// `cl_context`.
pub type ContextH = *mut c_void;
/// `cl_command_queue`.
pub type QueueH = *mut c_void;
/// `cl_mem`.
pub type MemH = *mut c_void;
/// `cl_program`.
pub type ProgramH = *mut c_void;
/// `cl_kernel`.
pub type KernelH = *mut c_void;
/// `cl_event`.
pub type EventH = *mut c_void;

newtype!(
    /// `cl_int` status codes returned by every call.
    Status(i32) {
        /// Success.
        SUCCESS = 0,
        /// No device of the requested type.
        DEVICE_NOT_FOUND = -1,
        /// A program failed to build.
        BUILD_PROGRAM_FAILURE = -11,
        /// An argument value is invalid.
        INVALID_VALUE = -30,
        /// The ICD loader found no platform.
        PLATFORM_NOT_FOUND_KHR = -1001,
    }
);

impl Status {
    /// The status's name in the OpenCL specification.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "CL_SUCCESS",
            -1 => "CL_DEVICE_NOT_FOUND",
            -2 => "CL_DEVICE_NOT_AVAILABLE",
            -3 => "CL_COMPILER_NOT_AVAILABLE",
            -4 => "CL_MEM_OBJECT_ALLOCATION_FAILURE",
            -5 => "CL_OUT_OF_RESOURCES",
            -6 => "CL_OUT_OF_HOST_MEMORY",
            -7 => "CL_PROFILING_INFO_NOT_AVAILABLE",
            -8 => "CL_MEM_COPY_OVERLAP",
            -9 => "CL_IMAGE_FORMAT_MISMATCH",
            -10 => "CL_IMAGE_FORMAT_NOT_SUPPORTED",
            -11 => "CL_BUILD_PROGRAM_FAILURE",
            -12 => "CL_MAP_FAILURE",
            -13 => "CL_MISALIGNED_SUB_BUFFER_OFFSET",
            -14 => "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST",
            -15 => "CL_COMPILE_PROGRAM_FAILURE",
            -16 => "CL_LINKER_NOT_AVAILABLE",
            -17 => "CL_LINK_PROGRAM_FAILURE",
            -18 => "CL_DEVICE_PARTITION_FAILED",
            -19 => "CL_KERNEL_ARG_INFO_NOT_AVAILABLE",
            -30 => "CL_INVALID_VALUE",
            -31 => "CL_INVALID_DEVICE_TYPE",
            -32 => "CL_INVALID_PLATFORM",
            -33 => "CL_INVALID_DEVICE",
            -34 => "CL_INVALID_CONTEXT",
            -35 => "CL_INVALID_QUEUE_PROPERTIES",
            -36 => "CL_INVALID_COMMAND_QUEUE",
            -37 => "CL_INVALID_HOST_PTR",
            -38 => "CL_INVALID_MEM_OBJECT",
            -39 => "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR",
            -40 => "CL_INVALID_IMAGE_SIZE",
            -41 => "CL_INVALID_SAMPLER",
            -42 => "CL_INVALID_BINARY",
            -43 => "CL_INVALID_BUILD_OPTIONS",
            -44 => "CL_INVALID_PROGRAM",
            -45 => "CL_INVALID_PROGRAM_EXECUTABLE",
            -46 => "CL_INVALID_KERNEL_NAME",
            -47 => "CL_INVALID_KERNEL_DEFINITION",
            -48 => "CL_INVALID_KERNEL",
            -49 => "CL_INVALID_ARG_INDEX",
            -50 => "CL_INVALID_ARG_VALUE",
            -51 => "CL_INVALID_ARG_SIZE",
            -52 => "CL_INVALID_KERNEL_ARGS",
            -53 => "CL_INVALID_WORK_DIMENSION",
            -54 => "CL_INVALID_WORK_GROUP_SIZE",
            -55 => "CL_INVALID_WORK_ITEM_SIZE",
            -56 => "CL_INVALID_GLOBAL_OFFSET",
            -57 => "CL_INVALID_EVENT_WAIT_LIST",
            -58 => "CL_INVALID_EVENT",
            -59 => "CL_INVALID_OPERATION",
            -60 => "CL_INVALID_GL_OBJECT",
            -61 => "CL_INVALID_BUFFER_SIZE",
            -62 => "CL_INVALID_MIP_LEVEL",
            -63 => "CL_INVALID_GLOBAL_WORK_SIZE",
            -64 => "CL_INVALID_PROPERTY",
            -65 => "CL_INVALID_IMAGE_DESCRIPTOR",
            -66 => "CL_INVALID_COMPILER_OPTIONS",
            -67 => "CL_INVALID_LINKER_OPTIONS",
            -68 => "CL_INVALID_DEVICE_PARTITION_COUNT",
            -1001 => "CL_PLATFORM_NOT_FOUND_KHR",
            _ => "unknown OpenCL status",
        }
    }
}

newtype!(
    /// `cl_device_type` bits.
    DeviceType(u64) {
        /// The platform's default device.
        DEFAULT = 1,
        /// A host CPU.
        CPU = 1 << 1,
        /// A GPU.
        GPU = 1 << 2,
        /// A dedicated accelerator.
        ACCELERATOR = 1 << 3,
        /// Every device.
        ALL = 0xFFFF_FFFF,
    }
);

impl DeviceType {
    /// A readable name of the type bits (`gpu`, `cpu`, `accelerator`, or `other`).
    pub fn label(self) -> &'static str {
        if self.0 & Self::GPU.0 != 0 {
            "gpu"
        } else if self.0 & Self::CPU.0 != 0 {
            "cpu"
        } else if self.0 & Self::ACCELERATOR.0 != 0 {
            "accelerator"
        } else {
            "other"
        }
    }
}

newtype!(
    /// `cl_platform_info` parameter names.
    PlatformInfo(u32) {
        /// Version string.
        VERSION = 0x0901,
        /// Name.
        NAME = 0x0902,
        /// Vendor.
        VENDOR = 0x0903,
    }
);

newtype!(
    /// `cl_device_info` parameter names.
    DeviceInfo(u32) {
        /// `cl_device_type`.
        TYPE = 0x1000,
        /// Compute units (`cl_uint`).
        MAX_COMPUTE_UNITS = 0x1002,
        /// Largest work-group (`size_t`).
        MAX_WORK_GROUP_SIZE = 0x1004,
        /// Largest single buffer (`cl_ulong`).
        MAX_MEM_ALLOC_SIZE = 0x1010,
        /// Global memory (`cl_ulong`).
        GLOBAL_MEM_SIZE = 0x101F,
        /// Local memory per work-group (`cl_ulong`).
        LOCAL_MEM_SIZE = 0x1023,
        /// Name.
        NAME = 0x102B,
        /// Vendor.
        VENDOR = 0x102C,
        /// Driver version.
        DRIVER_VERSION = 0x102D,
        /// OpenCL version string.
        VERSION = 0x102F,
        /// Space-separated extensions.
        EXTENSIONS = 0x1030,
    }
);

newtype!(
    /// `cl_context_properties` keys.
    ContextProperty(isize) {
        /// The platform of the context.
        PLATFORM = 0x1084,
    }
);

newtype!(
    /// `cl_command_queue_properties` bits.
    QueueProperties(u64) {
        /// Record queued/submit/start/end timestamps of every command.
        PROFILING_ENABLE = 1 << 1,
    }
);

newtype!(
    /// `cl_mem_flags` bits.
    MemFlags(u64) {
        /// Kernels read and write.
        READ_WRITE = 1,
        /// Kernels only write.
        WRITE_ONLY = 1 << 1,
        /// Kernels only read.
        READ_ONLY = 1 << 2,
    }
);

newtype!(
    /// `cl_program_build_info` parameter names.
    ProgramBuildInfo(u32) {
        /// The compiler's log.
        LOG = 0x1183,
    }
);

newtype!(
    /// `cl_kernel_work_group_info` parameter names.
    KernelWorkGroupInfo(u32) {
        /// Largest work-group this kernel can run with on the device (`size_t`).
        WORK_GROUP_SIZE = 0x11B0,
    }
);

newtype!(
    /// `cl_profiling_info` parameter names (`cl_ulong` nanoseconds of the device clock).
    ProfilingInfo(u32) {
        /// The host enqueued the command.
        QUEUED = 0x1280,
        /// The command was submitted to the device.
        SUBMIT = 0x1281,
        /// The device started it.
        START = 0x1282,
        /// The device finished it.
        END = 0x1283,
    }
);

/// Function-pointer types of every call shadowattn makes (`CL_API_CALL` is the system ABI).
#[allow(missing_docs)]
pub mod fns {
    use super::*;

    pub type GetPlatformIds = unsafe extern "system" fn(u32, *mut PlatformId, *mut u32) -> i32;
    pub type GetPlatformInfo =
        unsafe extern "system" fn(PlatformId, u32, usize, *mut c_void, *mut usize) -> i32;
    pub type GetDeviceIds =
        unsafe extern "system" fn(PlatformId, u64, u32, *mut DeviceId, *mut u32) -> i32;
    pub type GetDeviceInfo =
        unsafe extern "system" fn(DeviceId, u32, usize, *mut c_void, *mut usize) -> i32;
    pub type CreateContext = unsafe extern "system" fn(
        *const isize,
        u32,
        *const DeviceId,
        Option<unsafe extern "system" fn(*const c_char, *const c_void, usize, *mut c_void)>,
        *mut c_void,
        *mut i32,
    ) -> ContextH;
    pub type CreateCommandQueue =
        unsafe extern "system" fn(ContextH, DeviceId, u64, *mut i32) -> QueueH;
    pub type CreateProgramWithSource = unsafe extern "system" fn(
        ContextH,
        u32,
        *const *const c_char,
        *const usize,
        *mut i32,
    ) -> ProgramH;
    pub type BuildProgram = unsafe extern "system" fn(
        ProgramH,
        u32,
        *const DeviceId,
        *const c_char,
        Option<unsafe extern "system" fn(ProgramH, *mut c_void)>,
        *mut c_void,
    ) -> i32;
    pub type GetProgramBuildInfo =
        unsafe extern "system" fn(ProgramH, DeviceId, u32, usize, *mut c_void, *mut usize) -> i32;
    pub type CreateKernel = unsafe extern "system" fn(ProgramH, *const c_char, *mut i32) -> KernelH;
    pub type SetKernelArg = unsafe extern "system" fn(KernelH, u32, usize, *const c_void) -> i32;
    pub type GetKernelWorkGroupInfo =
        unsafe extern "system" fn(KernelH, DeviceId, u32, usize, *mut c_void, *mut usize) -> i32;
    pub type CreateBuffer =
        unsafe extern "system" fn(ContextH, u64, usize, *mut c_void, *mut i32) -> MemH;
    pub type EnqueueWriteBuffer = unsafe extern "system" fn(
        QueueH,
        MemH,
        u32,
        usize,
        usize,
        *const c_void,
        u32,
        *const EventH,
        *mut EventH,
    ) -> i32;
    pub type EnqueueReadBuffer = unsafe extern "system" fn(
        QueueH,
        MemH,
        u32,
        usize,
        usize,
        *mut c_void,
        u32,
        *const EventH,
        *mut EventH,
    ) -> i32;
    pub type EnqueueNdRangeKernel = unsafe extern "system" fn(
        QueueH,
        KernelH,
        u32,
        *const usize,
        *const usize,
        *const usize,
        u32,
        *const EventH,
        *mut EventH,
    ) -> i32;
    pub type Finish = unsafe extern "system" fn(QueueH) -> i32;
    pub type GetEventProfilingInfo =
        unsafe extern "system" fn(EventH, u32, usize, *mut c_void, *mut usize) -> i32;
    pub type Release = unsafe extern "system" fn(*mut c_void) -> i32;
}
