//! Thin wrappers of the OpenCL calls shadowattn makes; each turns a status into a `Result`.
//!
//! Handles passed in must come from the same library and still be alive; the safe layer
//! (`runtime`) guarantees that by owning every handle in an RAII value.

#![allow(unsafe_code)]

use super::types::*;
use crate::error::{OpenClError, Result};
use crate::loader::OpenClLibrary;
use std::ffi::{c_void, CString};
use std::ptr::{null, null_mut};

/// An opaque OpenCL handle that may move between threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawHandle(pub *mut c_void);

// SAFETY: OpenCL objects are reference-counted and the API is thread-safe (OpenCL 1.2, appendix
// A.2) except clSetKernelArg on one kernel, which the safe layer serialises behind a mutex.
unsafe impl Send for RawHandle {}
// SAFETY: see `Send`.
unsafe impl Sync for RawHandle {}

fn check(call: &'static str, rc: i32) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(OpenClError::Call {
            call,
            code: rc,
            name: Status(rc).name(),
        })
    }
}

/// Checks the error code of a creating call and the handle it returned.
fn created(call: &'static str, rc: i32, h: *mut c_void) -> Result<RawHandle> {
    check(call, rc)?;
    if h.is_null() {
        return Err(OpenClError::Call {
            call,
            code: rc,
            name: "a null handle with CL_SUCCESS",
        });
    }
    Ok(RawHandle(h))
}

/// `clGetPlatformIDs`: every platform (an empty list is `Ok`).
pub fn platform_ids(lib: &OpenClLibrary) -> Result<Vec<RawHandle>> {
    let mut n = 0u32;
    // SAFETY: count query: null list with 0 entries, valid out-pointer.
    check("clGetPlatformIDs", unsafe {
        (lib.api().get_platform_ids)(0, null_mut(), &mut n)
    })?;
    let mut ids = vec![null_mut(); n as usize];
    if n > 0 {
        // SAFETY: `ids` has room for `n` handles.
        check("clGetPlatformIDs", unsafe {
            (lib.api().get_platform_ids)(n, ids.as_mut_ptr(), &mut n)
        })?;
        ids.truncate(n as usize);
    }
    Ok(ids.into_iter().map(RawHandle).collect())
}

/// Fetches a variable-size info value through a size query then a fill.
fn info_bytes(
    call: &'static str,
    get: impl Fn(usize, *mut c_void, *mut usize) -> i32,
) -> Result<Vec<u8>> {
    let mut size = 0usize;
    check(call, get(0, null_mut(), &mut size))?;
    let mut buf = vec![0u8; size];
    if size > 0 {
        check(call, get(size, buf.as_mut_ptr().cast(), null_mut()))?;
    }
    Ok(buf)
}

fn c_string(mut bytes: Vec<u8>) -> String {
    if let Some(end) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(end);
    }
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// `clGetPlatformInfo` of a string parameter.
pub fn platform_string(lib: &OpenClLibrary, p: RawHandle, what: PlatformInfo) -> Result<String> {
    info_bytes("clGetPlatformInfo", |size, value, ret| {
        // SAFETY: `value` is null with size 0 or a buffer of `size` bytes; `ret` is null or valid.
        unsafe { (lib.api().get_platform_info)(p.0, what.0, size, value, ret) }
    })
    .map(c_string)
}

/// `clGetDeviceIDs` for every device type (no device is an empty list).
pub fn device_ids(lib: &OpenClLibrary, platform: RawHandle) -> Result<Vec<RawHandle>> {
    let mut n = 0u32;
    // SAFETY: count query with a valid out-pointer.
    let rc =
        unsafe { (lib.api().get_device_ids)(platform.0, DeviceType::ALL.0, 0, null_mut(), &mut n) };
    if rc == Status::DEVICE_NOT_FOUND.0 {
        return Ok(Vec::new());
    }
    check("clGetDeviceIDs", rc)?;
    let mut ids = vec![null_mut(); n as usize];
    // SAFETY: `ids` has room for `n` handles.
    check("clGetDeviceIDs", unsafe {
        (lib.api().get_device_ids)(platform.0, DeviceType::ALL.0, n, ids.as_mut_ptr(), &mut n)
    })?;
    ids.truncate(n as usize);
    Ok(ids.into_iter().map(RawHandle).collect())
}

/// `clGetDeviceInfo` of a string parameter.
pub fn device_string(lib: &OpenClLibrary, d: RawHandle, what: DeviceInfo) -> Result<String> {
    info_bytes("clGetDeviceInfo", |size, value, ret| {
        // SAFETY: `value` is null with size 0 or a buffer of `size` bytes; `ret` is null or valid.
        unsafe { (lib.api().get_device_info)(d.0, what.0, size, value, ret) }
    })
    .map(c_string)
}

/// `clGetDeviceInfo` of a `cl_uint`, `size_t` or `cl_ulong` parameter, widened to u64.
pub fn device_number(lib: &OpenClLibrary, d: RawHandle, what: DeviceInfo) -> Result<u64> {
    let bytes = info_bytes("clGetDeviceInfo", |size, value, ret| {
        // SAFETY: as in `device_string`.
        unsafe { (lib.api().get_device_info)(d.0, what.0, size, value, ret) }
    })?;
    match bytes.len() {
        4 => Ok(u64::from(u32::from_ne_bytes(
            bytes[..4].try_into().expect("4 bytes"),
        ))),
        8 => Ok(u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes"))),
        n => Err(OpenClError::Call {
            call: "clGetDeviceInfo",
            code: 0,
            name: if n == 0 {
                "an empty numeric value"
            } else {
                "a numeric value of unexpected size"
            },
        }),
    }
}

/// `clCreateContext` for one device of `platform`.
pub fn create_context(
    lib: &OpenClLibrary,
    platform: RawHandle,
    device: RawHandle,
) -> Result<RawHandle> {
    let props = [ContextProperty::PLATFORM.0, platform.0 as isize, 0];
    let mut rc = 0;
    // SAFETY: zero-terminated property list and one device handle live through the call; no callback.
    let h = unsafe {
        (lib.api().create_context)(props.as_ptr(), 1, &device.0, None, null_mut(), &mut rc)
    };
    created("clCreateContext", rc, h)
}

/// `clCreateCommandQueue` (in-order), with profiling if asked.
pub fn create_queue(
    lib: &OpenClLibrary,
    context: RawHandle,
    device: RawHandle,
    props: QueueProperties,
) -> Result<RawHandle> {
    let mut rc = 0;
    // SAFETY: live context and device handles; valid error out-pointer.
    let h = unsafe { (lib.api().create_command_queue)(context.0, device.0, props.0, &mut rc) };
    created("clCreateCommandQueue", rc, h)
}

/// `clCreateProgramWithSource` with one source string.
pub fn create_program(lib: &OpenClLibrary, context: RawHandle, source: &str) -> Result<RawHandle> {
    let ptr = source.as_ptr().cast();
    let len = source.len();
    let mut rc = 0;
    // SAFETY: one string pointer with its explicit length (no terminator needed) lives through the call.
    let h = unsafe { (lib.api().create_program_with_source)(context.0, 1, &ptr, &len, &mut rc) };
    created("clCreateProgramWithSource", rc, h)
}

/// `clBuildProgram` for one device; the raw status on failure (the caller fetches the log).
pub fn build_program(
    lib: &OpenClLibrary,
    program: RawHandle,
    device: RawHandle,
    options: &str,
) -> std::result::Result<(), Status> {
    let options = CString::new(options).map_err(|_| Status::INVALID_VALUE)?;
    // SAFETY: live program and device; a NUL-terminated option string; synchronous (no callback).
    let rc = unsafe {
        (lib.api().build_program)(program.0, 1, &device.0, options.as_ptr(), None, null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Status(rc))
    }
}

/// `clGetProgramBuildInfo(CL_PROGRAM_BUILD_LOG)`.
pub fn build_log(lib: &OpenClLibrary, program: RawHandle, device: RawHandle) -> Result<String> {
    info_bytes("clGetProgramBuildInfo", |size, value, ret| {
        // SAFETY: `value` is null with size 0 or a buffer of `size` bytes.
        unsafe {
            (lib.api().get_program_build_info)(
                program.0,
                device.0,
                ProgramBuildInfo::LOG.0,
                size,
                value,
                ret,
            )
        }
    })
    .map(c_string)
}

/// `clCreateKernel`.
pub fn create_kernel(lib: &OpenClLibrary, program: RawHandle, name: &str) -> Result<RawHandle> {
    let name = CString::new(name).map_err(|_| OpenClError::Call {
        call: "clCreateKernel",
        code: Status::INVALID_VALUE.0,
        name: "a kernel name with NUL",
    })?;
    let mut rc = 0;
    // SAFETY: live built program, NUL-terminated name, valid error out-pointer.
    let h = unsafe { (lib.api().create_kernel)(program.0, name.as_ptr(), &mut rc) };
    created("clCreateKernel", rc, h)
}

/// `clGetKernelWorkGroupInfo(CL_KERNEL_WORK_GROUP_SIZE)`.
pub fn kernel_work_group_size(
    lib: &OpenClLibrary,
    kernel: RawHandle,
    device: RawHandle,
) -> Result<usize> {
    let mut size = 0usize;
    // SAFETY: `size` is a valid `size_t` out-value of the declared size.
    check("clGetKernelWorkGroupInfo", unsafe {
        (lib.api().get_kernel_work_group_info)(
            kernel.0,
            device.0,
            KernelWorkGroupInfo::WORK_GROUP_SIZE.0,
            std::mem::size_of::<usize>(),
            (&mut size as *mut usize).cast(),
            null_mut(),
        )
    })?;
    Ok(size)
}

/// `clSetKernelArg` with a buffer.
pub fn set_arg_buffer(
    lib: &OpenClLibrary,
    kernel: RawHandle,
    index: u32,
    mem: RawHandle,
) -> Result<()> {
    // SAFETY: the value is a pointer to a live `cl_mem` handle, of the size of a handle.
    check("clSetKernelArg", unsafe {
        (lib.api().set_kernel_arg)(
            kernel.0,
            index,
            std::mem::size_of::<MemH>(),
            (&mem.0 as *const MemH).cast(),
        )
    })
}

/// `clSetKernelArg` with a scalar (`u32` or `f32`).
pub fn set_arg_scalar<T: bytemuck::Pod>(
    lib: &OpenClLibrary,
    kernel: RawHandle,
    index: u32,
    value: &T,
) -> Result<()> {
    let bytes = bytemuck::bytes_of(value);
    // SAFETY: `bytes` points to `bytes.len()` readable bytes; OpenCL copies them.
    check("clSetKernelArg", unsafe {
        (lib.api().set_kernel_arg)(kernel.0, index, bytes.len(), bytes.as_ptr().cast())
    })
}

/// `clSetKernelArg` with `bytes` of `__local` memory.
pub fn set_arg_local(
    lib: &OpenClLibrary,
    kernel: RawHandle,
    index: u32,
    bytes: usize,
) -> Result<()> {
    // SAFETY: a null value with a size declares local memory.
    check("clSetKernelArg", unsafe {
        (lib.api().set_kernel_arg)(kernel.0, index, bytes, null())
    })
}

/// `clCreateBuffer` without a host pointer.
pub fn create_buffer(
    lib: &OpenClLibrary,
    context: RawHandle,
    flags: MemFlags,
    bytes: usize,
) -> Result<RawHandle> {
    let mut rc = 0;
    // SAFETY: no host pointer; valid error out-pointer.
    let h = unsafe { (lib.api().create_buffer)(context.0, flags.0, bytes, null_mut(), &mut rc) };
    created("clCreateBuffer", rc, h)
}

/// Blocking `clEnqueueWriteBuffer` of `data` at offset 0; returns the command's event.
pub fn write_buffer(
    lib: &OpenClLibrary,
    queue: RawHandle,
    mem: RawHandle,
    data: &[u8],
) -> Result<RawHandle> {
    let mut ev = null_mut();
    // SAFETY: blocking write, so `data` only needs to live through the call; OpenCL checks the
    // range against the buffer's size (CL_INVALID_VALUE).
    let rc = unsafe {
        (lib.api().enqueue_write_buffer)(
            queue.0,
            mem.0,
            1,
            0,
            data.len(),
            data.as_ptr().cast(),
            0,
            null(),
            &mut ev,
        )
    };
    created("clEnqueueWriteBuffer", rc, ev)
}

/// Blocking `clEnqueueReadBuffer` into `out` from offset 0; returns the command's event.
pub fn read_buffer(
    lib: &OpenClLibrary,
    queue: RawHandle,
    mem: RawHandle,
    out: &mut [u8],
) -> Result<RawHandle> {
    let mut ev = null_mut();
    // SAFETY: blocking read into `out`, writable for `out.len()` bytes through the call; OpenCL
    // checks the range against the buffer's size.
    let rc = unsafe {
        (lib.api().enqueue_read_buffer)(
            queue.0,
            mem.0,
            1,
            0,
            out.len(),
            out.as_mut_ptr().cast(),
            0,
            null(),
            &mut ev,
        )
    };
    created("clEnqueueReadBuffer", rc, ev)
}

/// `clEnqueueNDRangeKernel`, one dimension; returns the command's event.
pub fn enqueue_kernel(
    lib: &OpenClLibrary,
    queue: RawHandle,
    kernel: RawHandle,
    global: usize,
    local: usize,
) -> Result<RawHandle> {
    let mut ev = null_mut();
    // SAFETY: one-dimensional sizes live through the call; every argument of `kernel` is set by
    // the caller (OpenCL checks: CL_INVALID_KERNEL_ARGS).
    let rc = unsafe {
        (lib.api().enqueue_nd_range_kernel)(
            queue.0,
            kernel.0,
            1,
            null(),
            &global,
            &local,
            0,
            null(),
            &mut ev,
        )
    };
    created("clEnqueueNDRangeKernel", rc, ev)
}

/// `clFinish`.
pub fn finish(lib: &OpenClLibrary, queue: RawHandle) -> Result<()> {
    // SAFETY: live queue.
    check("clFinish", unsafe { (lib.api().finish)(queue.0) })
}

/// `clGetEventProfilingInfo`: one timestamp of a finished command, device nanoseconds.
pub fn event_time(lib: &OpenClLibrary, event: RawHandle, what: ProfilingInfo) -> Result<u64> {
    let mut t = 0u64;
    // SAFETY: `t` is a valid `cl_ulong` out-value of the declared size.
    check("clGetEventProfilingInfo", unsafe {
        (lib.api().get_event_profiling_info)(
            event.0,
            what.0,
            std::mem::size_of::<u64>(),
            (&mut t as *mut u64).cast(),
            null_mut(),
        )
    })?;
    Ok(t)
}

/// Which `clRelease*` call frees a handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `cl_event`.
    Event,
    /// `cl_mem`.
    Buffer,
    /// `cl_kernel`.
    Kernel,
    /// `cl_program`.
    Program,
    /// `cl_command_queue`.
    Queue,
    /// `cl_context`.
    Context,
}

/// Releases one reference to `h` (the call matching its kind).
pub fn release(lib: &OpenClLibrary, kind: Kind, h: RawHandle) -> Result<()> {
    let api = lib.api();
    let (call, f) = match kind {
        Kind::Event => ("clReleaseEvent", api.release_event),
        Kind::Buffer => ("clReleaseMemObject", api.release_mem_object),
        Kind::Kernel => ("clReleaseKernel", api.release_kernel),
        Kind::Program => ("clReleaseProgram", api.release_program),
        Kind::Queue => ("clReleaseCommandQueue", api.release_command_queue),
        Kind::Context => ("clReleaseContext", api.release_context),
    };
    // SAFETY: `h` is a live handle of `kind`, released once by its owner.
    check(call, unsafe { f(h.0) })
}

// Handles cross the ABI as plain pointers.
const _: () = assert!(std::mem::size_of::<RawHandle>() == std::mem::size_of::<*mut c_void>());
