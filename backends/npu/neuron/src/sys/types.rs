//! Hand-written `#[repr(C)]` declarations of the Neuron Adapter subset shadowattn uses, written
//! from the layout facts in the project's reference notes (LP64), with compile-time checks.

use std::ffi::c_void;
use std::mem::{offset_of, size_of};

use shadowattn_hal::int_newtype as newtype;

newtype!(
    /// `NeuronAdapterResultCode`.
    ResultCode(i32) {
        /// Success.
        NO_ERROR = 0,
        /// Out of memory.
        OUT_OF_MEMORY = 1,
        /// Incomplete.
        INCOMPLETE = 2,
        /// A required pointer was NULL.
        UNEXPECTED_NULL = 3,
        /// Bad data (types, sizes, indices).
        BAD_DATA = 4,
        /// The operation failed.
        OP_FAILED = 5,
        /// Memory cannot be mapped.
        UNMAPPABLE = 6,
        /// Called in the wrong state (order of calls).
        BAD_STATE = 7,
        /// Version mismatch.
        BAD_VERSION = 8,
    }
);

impl ResultCode {
    /// The code's name.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "NEURON_NO_ERROR",
            1 => "NEURON_OUT_OF_MEMORY",
            2 => "NEURON_INCOMPLETE",
            3 => "NEURON_UNEXPECTED_NULL",
            4 => "NEURON_BAD_DATA",
            5 => "NEURON_OP_FAILED",
            6 => "NEURON_UNMAPPABLE",
            7 => "NEURON_BAD_STATE",
            8 => "NEURON_BAD_VERSION",
            9 => "NEURON_OUTPUT_INSUFFICIENT_SIZE",
            10 => "NEURON_UNAVAILABLE_DEVICE",
            15 => "NEURON_DEAD_OBJECT",
            _ => "unknown Neuron result code",
        }
    }
}

newtype!(
    /// Operand type codes.
    OperandCode(i32) {
        /// FLOAT32 scalar.
        FLOAT32 = 0,
        /// INT32 scalar.
        INT32 = 1,
        /// UINT32 scalar.
        UINT32 = 2,
        /// f32 tensor.
        TENSOR_FLOAT32 = 3,
        /// i32 tensor (with a scale when quantized).
        TENSOR_INT32 = 4,
        /// u8 asymmetric quantized tensor.
        TENSOR_QUANT8_ASYMM = 5,
        /// BOOL scalar.
        BOOL = 6,
        /// i16 symmetric quantized tensor.
        TENSOR_QUANT16_SYMM = 7,
        /// f16 tensor.
        TENSOR_FLOAT16 = 8,
        /// f16 scalar.
        FLOAT16 = 10,
        /// u16 asymmetric quantized tensor.
        TENSOR_QUANT16_ASYMM = 12,
        /// i8 asymmetric quantized tensor.
        TENSOR_QUANT8_ASYMM_SIGNED = 14,
    }
);

newtype!(
    /// Operation codes (NNAPI numbering).
    OperationCode(i32) {
        /// ADD.
        ADD = 0,
        /// DEQUANTIZE.
        DEQUANTIZE = 6,
        /// FULLY_CONNECTED.
        FULLY_CONNECTED = 9,
        /// MUL.
        MUL = 18,
        /// RESHAPE.
        RESHAPE = 22,
        /// SOFTMAX.
        SOFTMAX = 25,
        /// TRANSPOSE.
        TRANSPOSE = 37,
        /// CAST.
        CAST = 45,
        /// QUANTIZE.
        QUANTIZE = 72,
        /// TOPK_V2.
        TOPK_V2 = 90,
        /// BATCH_MATMUL (runtime 5.1.2).
        BATCH_MATMUL = 102,
    }
);

/// An operand's type (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OperandType {
    /// [`OperandCode`].
    pub code: OperandCode,
    /// Number of dimensions (0 for scalars).
    pub dimension_count: u32,
    /// Dimensions (NULL for scalars).
    pub dimensions: *const u32,
    /// Quantization scale.
    pub scale: f32,
    /// Quantization zero point.
    pub zero_point: i32,
}

/// The runtime version (3 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Patch.
    pub patch: u8,
}

impl RuntimeVersion {
    /// The oldest runtime whose functions match these declarations: every function shadowattn
    /// calls exists since 4.1.0, the first version the adapter's header dates its items by.
    pub const OLDEST: RuntimeVersion = RuntimeVersion {
        major: 4,
        minor: 1,
        patch: 0,
    };
    /// The newest major these declarations were checked against (the 8.2.x drivers of current
    /// phones); a newer one is used with a warning.
    pub const NEWEST_CHECKED_MAJOR: u8 = 8;

    /// The version as (major, minor, patch), for comparisons.
    pub fn triple(self) -> (u8, u8, u8) {
        (self.major, self.minor, self.patch)
    }
}

impl std::fmt::Display for RuntimeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Opaque `NeuronModel*`.
pub type Model = *mut c_void;
/// Opaque `NeuronCompilation*`.
pub type Compilation = *mut c_void;
/// Opaque `NeuronExecution*`.
pub type Execution = *mut c_void;

/// The exported functions used, with their C signatures.
pub mod fns {
    use super::*;
    /// `Neuron_getVersion`.
    pub type GetVersion = unsafe extern "C" fn(*mut RuntimeVersion) -> i32;
    /// `Neuron_getDeviceCount`.
    pub type GetDeviceCount = unsafe extern "C" fn(*mut u32) -> i32;
    /// `Neuron_getDevice`: an opaque device handle by index.
    pub type GetDevice = unsafe extern "C" fn(u32, *mut *mut std::ffi::c_void) -> i32;
    /// `NeuronDevice_getName`: a NUL-terminated name owned by the library.
    pub type DeviceGetName =
        unsafe extern "C" fn(*const std::ffi::c_void, *mut *const std::ffi::c_char) -> i32;
    /// `NeuronModel_create`.
    pub type ModelCreate = unsafe extern "C" fn(*mut Model) -> i32;
    /// `NeuronModel_free`.
    pub type ModelFree = unsafe extern "C" fn(Model);
    /// `NeuronModel_finish`.
    pub type ModelFinish = unsafe extern "C" fn(Model) -> i32;
    /// `NeuronModel_addOperand`.
    pub type ModelAddOperand = unsafe extern "C" fn(Model, *const OperandType) -> i32;
    /// `NeuronModel_setOperandValue`.
    pub type ModelSetOperandValue = unsafe extern "C" fn(Model, i32, *const c_void, usize) -> i32;
    /// `NeuronModel_addOperation`.
    pub type ModelAddOperation =
        unsafe extern "C" fn(Model, i32, u32, *const u32, u32, *const u32) -> i32;
    /// `NeuronModel_identifyInputsAndOutputs`.
    pub type ModelIdentifyInputsAndOutputs =
        unsafe extern "C" fn(Model, u32, *const u32, u32, *const u32) -> i32;
    /// `NeuronCompilation_create`.
    pub type CompilationCreate = unsafe extern "C" fn(Model, *mut Compilation) -> i32;
    /// `NeuronCompilation_free`.
    pub type CompilationFree = unsafe extern "C" fn(Compilation);
    /// `NeuronCompilation_finish`.
    pub type CompilationFinish = unsafe extern "C" fn(Compilation) -> i32;
    /// `NeuronExecution_create`.
    pub type ExecutionCreate = unsafe extern "C" fn(Compilation, *mut Execution) -> i32;
    /// `NeuronExecution_free`.
    pub type ExecutionFree = unsafe extern "C" fn(Execution);
    /// `NeuronExecution_setInput`.
    pub type ExecutionSetInput =
        unsafe extern "C" fn(Execution, i32, *const OperandType, *const c_void, usize) -> i32;
    /// `NeuronExecution_setOutput`.
    pub type ExecutionSetOutput =
        unsafe extern "C" fn(Execution, i32, *const OperandType, *mut c_void, usize) -> i32;
    /// `NeuronExecution_compute`.
    pub type ExecutionCompute = unsafe extern "C" fn(Execution) -> i32;
}

const _: () = {
    assert!(size_of::<OperandType>() == 24);
    assert!(offset_of!(OperandType, dimension_count) == 4);
    assert!(offset_of!(OperandType, dimensions) == 8);
    assert!(offset_of!(OperandType, scale) == 16);
    assert!(offset_of!(OperandType, zero_point) == 20);
    assert!(size_of::<RuntimeVersion>() == 3);
    assert!(std::mem::align_of::<RuntimeVersion>() == 1);
};
