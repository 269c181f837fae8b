//! The exported Neuron Adapter C functions. Every entry point checks its pointers, consults the
//! fault-injection setting, and hands the work to the safe model code.
//!
//! Fault injection: `SHADOWATTN_NEURON_SHIM_FAIL=<function>=<code>` (read at every call), or
//! `shadowattn_neuron_shim_fail(function, code)`, makes the named function return `code`.

#![allow(unsafe_code)]

use crate::model::{ShimCompilation, ShimExecution, ShimModel};
use shadowattn_neuron::sys::{OperandType, ResultCode, RuntimeVersion};
use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

/// The runtime version the shim reports.
pub const SHIM_VERSION: RuntimeVersion = RuntimeVersion {
    major: 8,
    minor: 2,
    patch: 0,
};

static FAIL: Mutex<Option<(String, i32)>> = Mutex::new(None);

fn injected(function: &str) -> Option<i32> {
    if let Some((f, code)) = FAIL.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        if f == function {
            return Some(*code);
        }
    }
    let spec = std::env::var("SHADOWATTN_NEURON_SHIM_FAIL").ok()?;
    let (f, code) = spec.split_once('=')?;
    (f == function).then(|| code.parse().ok()).flatten()
}

fn code(r: Result<(), ResultCode>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(c) => c.0,
    }
}

macro_rules! guard {
    ($name:literal) => {
        if let Some(c) = injected($name) {
            return c;
        }
    };
}

/// Makes `function` return `code` from now on (`function` NULL clears the setting).
///
/// # Safety
/// `function` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shadowattn_neuron_shim_fail(function: *const c_char, code: i32) {
    let f = if function.is_null() {
        None
    } else {
        // SAFETY: the caller passes a NUL-terminated string.
        Some((
            unsafe { CStr::from_ptr(function) }
                .to_string_lossy()
                .into_owned(),
            code,
        ))
    };
    *FAIL.lock().unwrap_or_else(|e| e.into_inner()) = f;
}

/// Longest device name the shim reports, NUL included.
const NAME_BYTES: usize = 128;

/// The one device the shim exposes, named so no report mistakes it for MediaTek's runtime. A
/// fixed buffer, not a heap string: the library may be unloaded before the process exits, and
/// its statics must then own no allocation (valgrind would see it lost).
static DEVICE_NAME: std::sync::OnceLock<[u8; NAME_BYTES]> = std::sync::OnceLock::new();

fn device_name() -> *const c_char {
    DEVICE_NAME
        .get_or_init(|| {
            let text = format!(
                "shadowattn-neuron-shim (simulated {}; not MediaTek's runtime)",
                crate::model::shim_soc()
            );
            let mut buf = [0u8; NAME_BYTES];
            let n = text.len().min(NAME_BYTES - 1);
            buf[..n].copy_from_slice(&text.as_bytes()[..n]);
            buf
        })
        .as_ptr()
        .cast()
}

/// `Neuron_getDeviceCount`: one device.
///
/// # Safety
/// `count` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn Neuron_getDeviceCount(count: *mut u32) -> i32 {
    guard!("Neuron_getDeviceCount");
    if count.is_null() {
        return ResultCode::UNEXPECTED_NULL.0;
    }
    // SAFETY: checked non-NULL; the caller provides a valid out-pointer.
    unsafe { *count = 1 };
    0
}

/// `Neuron_getDevice`: device 0 is the name string's address (an opaque handle to the caller).
///
/// # Safety
/// `device` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn Neuron_getDevice(index: u32, device: *mut *mut c_void) -> i32 {
    guard!("Neuron_getDevice");
    if device.is_null() {
        return ResultCode::UNEXPECTED_NULL.0;
    }
    if index != 0 {
        return ResultCode::BAD_DATA.0;
    }
    // SAFETY: checked non-NULL; the caller provides a valid out-pointer.
    unsafe { *device = device_name() as *mut c_void };
    0
}

/// `NeuronDevice_getName`.
///
/// # Safety
/// `name` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn NeuronDevice_getName(
    device: *const c_void,
    name: *mut *const c_char,
) -> i32 {
    guard!("NeuronDevice_getName");
    if device.is_null() || name.is_null() {
        return ResultCode::UNEXPECTED_NULL.0;
    }
    if device != device_name() as *const c_void {
        return ResultCode::BAD_DATA.0;
    }
    // SAFETY: checked non-NULL; the string is static for the library's lifetime.
    unsafe { *name = device_name() };
    0
}

/// `Neuron_getVersion`.
///
/// # Safety
/// `version` is NULL or valid for a 3-byte write.
#[no_mangle]
pub unsafe extern "C" fn Neuron_getVersion(version: *mut RuntimeVersion) -> i32 {
    guard!("Neuron_getVersion");
    if version.is_null() {
        return ResultCode::UNEXPECTED_NULL.0;
    }
    // SAFETY: checked non-NULL; the caller provides a valid out-pointer.
    unsafe { *version = SHIM_VERSION };
    0
}

/// `NeuronModel_create`.
///
/// # Safety
/// `model` is NULL or a valid out-pointer.
#[no_mangle]
pub unsafe extern "C" fn NeuronModel_create(model: *mut *mut c_void) -> i32 {
    guard!("NeuronModel_create");
    if model.is_null() {
        return ResultCode::UNEXPECTED_NULL.0;
    }
    // SAFETY: checked non-NULL.
    unsafe { *model = Box::into_raw(Box::<ShimModel>::default()).cast() };
    0
}

/// `NeuronModel_free`.
///
/// # Safety
/// `model` is NULL or came from `NeuronModel_create` and is freed once.
#[no_mangle]
pub unsafe extern "C" fn NeuronModel_free(model: *mut c_void) {
    if !model.is_null() {
        // SAFETY: created by Box::into_raw in NeuronModel_create.
        drop(unsafe { Box::from_raw(model.cast::<ShimModel>()) });
    }
}

/// Borrows a model handle.
///
/// # Safety
/// `model` is NULL or a live handle from `NeuronModel_create`.
unsafe fn model_mut<'a>(model: *mut c_void) -> Option<&'a mut ShimModel> {
    // SAFETY: per the function contract.
    unsafe { model.cast::<ShimModel>().as_mut() }
}

/// `NeuronModel_addOperand`.
///
/// # Safety
/// `model` is a live model; `t` is NULL or points to a valid operand type whose dimensions
/// pointer is valid for `dimension_count` values.
#[no_mangle]
pub unsafe extern "C" fn NeuronModel_addOperand(model: *mut c_void, t: *const OperandType) -> i32 {
    guard!("NeuronModel_addOperand");
    // SAFETY: per the function contract.
    let (Some(m), Some(t)) = (unsafe { model_mut(model) }, unsafe { t.as_ref() }) else {
        return ResultCode::UNEXPECTED_NULL.0;
    };
    let dims = if t.dimension_count == 0 {
        None
    } else if t.dimensions.is_null() {
        return ResultCode::UNEXPECTED_NULL.0;
    } else {
        // SAFETY: non-NULL and valid for dimension_count values per the contract.
        Some(unsafe { std::slice::from_raw_parts(t.dimensions, t.dimension_count as usize) })
    };
    code(m.add_operand(t.code.0, dims, t.scale, t.zero_point))
}

/// `NeuronModel_setOperandValue`.
///
/// # Safety
/// `model` is a live model; `buffer` is NULL or readable for `length` bytes.
#[no_mangle]
pub unsafe extern "C" fn NeuronModel_setOperandValue(
    model: *mut c_void,
    index: i32,
    buffer: *const c_void,
    length: usize,
) -> i32 {
    guard!("NeuronModel_setOperandValue");
    // SAFETY: per the function contract.
    let Some(m) = (unsafe { model_mut(model) }) else {
        return ResultCode::UNEXPECTED_NULL.0;
    };
    if buffer.is_null() {
        return ResultCode::UNEXPECTED_NULL.0;
    }
    // SAFETY: readable for `length` bytes per the contract.
    let value = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), length) };
    code(m.set_value(index, value))
}

/// Reads an index list.
///
/// # Safety
/// `p` is NULL (only with `n` = 0) or valid for `n` values.
unsafe fn indices<'a>(p: *const u32, n: u32) -> Option<&'a [u32]> {
    if n == 0 {
        return Some(&[]);
    }
    // SAFETY: non-NULL and valid for n values per the contract.
    (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts(p, n as usize) })
}

/// `NeuronModel_addOperation`.
///
/// # Safety
/// `model` is a live model; the index arrays are valid for their counts.
#[no_mangle]
pub unsafe extern "C" fn NeuronModel_addOperation(
    model: *mut c_void,
    op: i32,
    n_in: u32,
    inputs: *const u32,
    n_out: u32,
    outputs: *const u32,
) -> i32 {
    guard!("NeuronModel_addOperation");
    // SAFETY: per the function contract.
    let (Some(m), Some(ins), Some(outs)) = (
        unsafe { model_mut(model) },
        unsafe { indices(inputs, n_in) },
        unsafe { indices(outputs, n_out) },
    ) else {
        return ResultCode::UNEXPECTED_NULL.0;
    };
    code(m.add_operation(op, ins, outs))
}

/// `NeuronModel_identifyInputsAndOutputs`.
///
/// # Safety
/// `model` is a live model; the index arrays are valid for their counts.
#[no_mangle]
pub unsafe extern "C" fn NeuronModel_identifyInputsAndOutputs(
    model: *mut c_void,
    n_in: u32,
    inputs: *const u32,
    n_out: u32,
    outputs: *const u32,
) -> i32 {
    guard!("NeuronModel_identifyInputsAndOutputs");
    // SAFETY: per the function contract.
    let (Some(m), Some(ins), Some(outs)) = (
        unsafe { model_mut(model) },
        unsafe { indices(inputs, n_in) },
        unsafe { indices(outputs, n_out) },
    ) else {
        return ResultCode::UNEXPECTED_NULL.0;
    };
    code(m.identify(ins, outs))
}

/// `NeuronModel_finish`.
///
/// # Safety
/// `model` is NULL or a live model.
#[no_mangle]
pub unsafe extern "C" fn NeuronModel_finish(model: *mut c_void) -> i32 {
    guard!("NeuronModel_finish");
    // SAFETY: per the function contract.
    let Some(m) = (unsafe { model_mut(model) }) else {
        return ResultCode::UNEXPECTED_NULL.0;
    };
    code(m.finish())
}

/// `NeuronCompilation_create`.
///
/// # Safety
/// `model` is NULL or a live model; `out` is NULL or a valid out-pointer.
#[no_mangle]
pub unsafe extern "C" fn NeuronCompilation_create(
    model: *mut c_void,
    out: *mut *mut c_void,
) -> i32 {
    guard!("NeuronCompilation_create");
    // SAFETY: per the function contract.
    let Some(m) = (unsafe { model_mut(model) }) else {
        return ResultCode::UNEXPECTED_NULL.0;
    };
    if out.is_null() {
        return ResultCode::UNEXPECTED_NULL.0;
    }
    match ShimCompilation::create(m) {
        Ok(c) => {
            // SAFETY: checked non-NULL.
            unsafe { *out = Box::into_raw(Box::new(c)).cast() };
            0
        }
        Err(c) => c.0,
    }
}

/// `NeuronCompilation_free`.
///
/// # Safety
/// `compilation` is NULL or came from `NeuronCompilation_create` and is freed once.
#[no_mangle]
pub unsafe extern "C" fn NeuronCompilation_free(compilation: *mut c_void) {
    if !compilation.is_null() {
        // SAFETY: created by Box::into_raw in NeuronCompilation_create.
        drop(unsafe { Box::from_raw(compilation.cast::<ShimCompilation>()) });
    }
}

/// `NeuronCompilation_finish`.
///
/// # Safety
/// `compilation` is NULL or a live compilation.
#[no_mangle]
pub unsafe extern "C" fn NeuronCompilation_finish(compilation: *mut c_void) -> i32 {
    guard!("NeuronCompilation_finish");
    // SAFETY: per the function contract.
    let Some(c) = (unsafe { compilation.cast::<ShimCompilation>().as_mut() }) else {
        return ResultCode::UNEXPECTED_NULL.0;
    };
    code(c.finish())
}

/// `NeuronExecution_create`.
///
/// # Safety
/// `compilation` is NULL or a live compilation that outlives the execution; `out` is NULL or a
/// valid out-pointer.
#[no_mangle]
pub unsafe extern "C" fn NeuronExecution_create(
    compilation: *mut c_void,
    out: *mut *mut c_void,
) -> i32 {
    guard!("NeuronExecution_create");
    // SAFETY: per the function contract (the compilation outlives the execution).
    let Some(c) = (unsafe { compilation.cast::<ShimCompilation>().as_ref() }) else {
        return ResultCode::UNEXPECTED_NULL.0;
    };
    if out.is_null() {
        return ResultCode::UNEXPECTED_NULL.0;
    }
    match ShimExecution::create(c) {
        Ok(e) => {
            // SAFETY: checked non-NULL.
            unsafe { *out = Box::into_raw(Box::new(e)).cast() };
            0
        }
        Err(c) => c.0,
    }
}

/// `NeuronExecution_free`.
///
/// # Safety
/// `execution` is NULL or came from `NeuronExecution_create` and is freed once.
#[no_mangle]
pub unsafe extern "C" fn NeuronExecution_free(execution: *mut c_void) {
    if !execution.is_null() {
        // SAFETY: created by Box::into_raw in NeuronExecution_create.
        drop(unsafe { Box::from_raw(execution.cast::<ShimExecution<'static>>()) });
    }
}

/// Borrows an execution handle.
///
/// # Safety
/// `execution` is NULL or a live handle from `NeuronExecution_create`.
unsafe fn execution_mut<'a>(execution: *mut c_void) -> Option<&'a mut ShimExecution<'static>> {
    // SAFETY: per the function contract.
    unsafe { execution.cast::<ShimExecution<'static>>().as_mut() }
}

/// `NeuronExecution_setInput`; the type argument must be NULL.
///
/// # Safety
/// `execution` is a live execution; `buffer` stays readable for `length` bytes until compute.
#[no_mangle]
pub unsafe extern "C" fn NeuronExecution_setInput(
    execution: *mut c_void,
    index: i32,
    t: *const OperandType,
    buffer: *const c_void,
    length: usize,
) -> i32 {
    guard!("NeuronExecution_setInput");
    // SAFETY: per the function contract.
    let Some(e) = (unsafe { execution_mut(execution) }) else {
        return ResultCode::UNEXPECTED_NULL.0;
    };
    if !t.is_null() {
        return ResultCode::BAD_DATA.0;
    }
    if buffer.is_null() {
        return ResultCode::UNEXPECTED_NULL.0;
    }
    code(e.set_input(index, buffer.cast(), length))
}

/// `NeuronExecution_setOutput`; the type argument must be NULL.
///
/// # Safety
/// `execution` is a live execution; `buffer` stays writable for `length` bytes until compute.
#[no_mangle]
pub unsafe extern "C" fn NeuronExecution_setOutput(
    execution: *mut c_void,
    index: i32,
    t: *const OperandType,
    buffer: *mut c_void,
    length: usize,
) -> i32 {
    guard!("NeuronExecution_setOutput");
    // SAFETY: per the function contract.
    let Some(e) = (unsafe { execution_mut(execution) }) else {
        return ResultCode::UNEXPECTED_NULL.0;
    };
    if !t.is_null() {
        return ResultCode::BAD_DATA.0;
    }
    if buffer.is_null() {
        return ResultCode::UNEXPECTED_NULL.0;
    }
    code(e.set_output(index, buffer.cast(), length))
}

/// `NeuronExecution_compute`.
///
/// # Safety
/// `execution` is a live execution whose buffers are still valid.
#[no_mangle]
pub unsafe extern "C" fn NeuronExecution_compute(execution: *mut c_void) -> i32 {
    guard!("NeuronExecution_compute");
    // SAFETY: per the function contract.
    let Some(e) = (unsafe { execution_mut(execution) }) else {
        return ResultCode::UNEXPECTED_NULL.0;
    };
    let (ins, outs) = match e.buffers() {
        Ok(b) => b,
        Err(c) => return c.0,
    };
    // SAFETY: the client keeps every buffer valid for its length until compute returns.
    let in_slices: Vec<&[u8]> = ins
        .iter()
        .map(|&(p, n)| unsafe { std::slice::from_raw_parts(p, n) })
        .collect();
    // SAFETY: as above; output buffers are distinct and writable.
    let mut out_slices: Vec<&mut [u8]> = outs
        .iter()
        .map(|&(p, n)| unsafe { std::slice::from_raw_parts_mut(p, n) })
        .collect();
    code(e.run(&in_slices, &mut out_slices))
}
