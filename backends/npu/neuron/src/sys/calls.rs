//! Thin wrappers of the Neuron calls shadowattn makes; each turns a result code into a `Result`.

#![allow(unsafe_code)]

use super::status::check;
use super::types::*;
use crate::error::Result;
use crate::loader::NeuronLibrary;
use std::ffi::c_void;

/// An opaque Neuron handle that may move between threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawHandle(pub *mut c_void);

// SAFETY: Neuron handles are opaque tokens; the safe layer uses each from one thread at a time.
unsafe impl Send for RawHandle {}
// SAFETY: see `Send`.
unsafe impl Sync for RawHandle {}

/// `NeuronModel_create`.
pub fn model_create(lib: &NeuronLibrary) -> Result<RawHandle> {
    let mut h: Model = std::ptr::null_mut();
    // SAFETY: `h` is a valid out-pointer.
    check("NeuronModel_create", unsafe {
        (lib.api().model_create)(&mut h)
    })?;
    Ok(RawHandle(h))
}

/// `NeuronModel_free`.
pub fn model_free(lib: &NeuronLibrary, model: RawHandle) {
    // SAFETY: `model` came from NeuronModel_create and is freed once, after its compilations.
    unsafe { (lib.api().model_free)(model.0) }
}

/// `NeuronModel_addOperand` with an owned dimension list; returns the operand index.
pub fn add_operand(
    lib: &NeuronLibrary,
    model: RawHandle,
    code: OperandCode,
    dims: &[u32],
    scale: f32,
    zero_point: i32,
) -> Result<()> {
    let t = OperandType {
        code,
        dimension_count: dims.len() as u32,
        dimensions: if dims.is_empty() {
            std::ptr::null()
        } else {
            dims.as_ptr()
        },
        scale,
        zero_point,
    };
    // SAFETY: `t` and `dims` live through the call; the adapter copies the type.
    check("NeuronModel_addOperand", unsafe {
        (lib.api().model_add_operand)(model.0, &t)
    })
}

/// `NeuronModel_setOperandValue`. Values over 128 bytes are referenced, not copied, until the
/// compilation finishes: the caller keeps `value` alive until then.
pub fn set_operand_value(
    lib: &NeuronLibrary,
    model: RawHandle,
    index: u32,
    value: &[u8],
) -> Result<()> {
    // SAFETY: `value` is readable for its length; the caller keeps it alive as documented.
    check("NeuronModel_setOperandValue", unsafe {
        (lib.api().model_set_operand_value)(
            model.0,
            index as i32,
            value.as_ptr().cast(),
            value.len(),
        )
    })
}

/// `NeuronModel_addOperation`.
pub fn add_operation(
    lib: &NeuronLibrary,
    model: RawHandle,
    op: OperationCode,
    inputs: &[u32],
    outputs: &[u32],
) -> Result<()> {
    // SAFETY: the index arrays live through the call.
    check("NeuronModel_addOperation", unsafe {
        (lib.api().model_add_operation)(
            model.0,
            op.0,
            inputs.len() as u32,
            inputs.as_ptr(),
            outputs.len() as u32,
            outputs.as_ptr(),
        )
    })
}

/// `NeuronModel_identifyInputsAndOutputs`.
pub fn identify_io(
    lib: &NeuronLibrary,
    model: RawHandle,
    inputs: &[u32],
    outputs: &[u32],
) -> Result<()> {
    // SAFETY: the index arrays live through the call.
    check("NeuronModel_identifyInputsAndOutputs", unsafe {
        (lib.api().model_identify_inputs_and_outputs)(
            model.0,
            inputs.len() as u32,
            inputs.as_ptr(),
            outputs.len() as u32,
            outputs.as_ptr(),
        )
    })
}

/// `NeuronModel_finish`.
pub fn model_finish(lib: &NeuronLibrary, model: RawHandle) -> Result<()> {
    // SAFETY: live model.
    check("NeuronModel_finish", unsafe {
        (lib.api().model_finish)(model.0)
    })
}

/// `NeuronCompilation_create`.
pub fn compilation_create(lib: &NeuronLibrary, model: RawHandle) -> Result<RawHandle> {
    let mut h: Compilation = std::ptr::null_mut();
    // SAFETY: live model; valid out-pointer.
    check("NeuronCompilation_create", unsafe {
        (lib.api().compilation_create)(model.0, &mut h)
    })?;
    Ok(RawHandle(h))
}

/// `NeuronCompilation_finish`.
pub fn compilation_finish(lib: &NeuronLibrary, compilation: RawHandle) -> Result<()> {
    // SAFETY: live compilation.
    check("NeuronCompilation_finish", unsafe {
        (lib.api().compilation_finish)(compilation.0)
    })
}

/// `NeuronCompilation_free`.
pub fn compilation_free(lib: &NeuronLibrary, compilation: RawHandle) {
    // SAFETY: freed once, after its executions and before its model.
    unsafe { (lib.api().compilation_free)(compilation.0) }
}

/// `NeuronExecution_create`.
pub fn execution_create(lib: &NeuronLibrary, compilation: RawHandle) -> Result<RawHandle> {
    let mut h: Execution = std::ptr::null_mut();
    // SAFETY: live, finished compilation; valid out-pointer.
    check("NeuronExecution_create", unsafe {
        (lib.api().execution_create)(compilation.0, &mut h)
    })?;
    Ok(RawHandle(h))
}

/// `NeuronExecution_free`.
pub fn execution_free(lib: &NeuronLibrary, execution: RawHandle) {
    // SAFETY: freed once.
    unsafe { (lib.api().execution_free)(execution.0) }
}

/// `NeuronExecution_setInput` (type NULL, as the adapter requires).
pub fn set_input(lib: &NeuronLibrary, execution: RawHandle, index: u32, data: &[u8]) -> Result<()> {
    // SAFETY: `data` stays alive and unchanged until compute returns (the caller's borrow).
    check("NeuronExecution_setInput", unsafe {
        (lib.api().execution_set_input)(
            execution.0,
            index as i32,
            std::ptr::null(),
            data.as_ptr().cast(),
            data.len(),
        )
    })
}

/// `NeuronExecution_setOutput` (type NULL).
pub fn set_output(
    lib: &NeuronLibrary,
    execution: RawHandle,
    index: u32,
    data: &mut [u8],
) -> Result<()> {
    // SAFETY: `data` stays alive and exclusively borrowed until compute returns.
    check("NeuronExecution_setOutput", unsafe {
        (lib.api().execution_set_output)(
            execution.0,
            index as i32,
            std::ptr::null(),
            data.as_mut_ptr().cast(),
            data.len(),
        )
    })
}

/// `NeuronExecution_compute` (synchronous).
pub fn compute(lib: &NeuronLibrary, execution: RawHandle) -> Result<()> {
    // SAFETY: live execution with every input and output set to live buffers.
    check("NeuronExecution_compute", unsafe {
        (lib.api().execution_compute)(execution.0)
    })
}
