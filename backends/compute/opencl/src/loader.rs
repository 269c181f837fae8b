//! Finding and opening an OpenCL library (the ICD loader or a vendor's driver), resolving every
//! symbol once.
//!
//! Search order: an explicit path → `SHADOWATTN_OPENCL_LIB` → the candidate names below (the
//! desktop ICD loader, then where Android vendors put their driver). The first library that opens
//! and has every symbol wins; the error lists each attempt.

#![allow(unsafe_code)]

use crate::error::Result;
use crate::sys::fns;
use shadowattn_hal::library::{DynamicLibrary, LibrarySearch};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Environment variable naming the library explicitly.
pub const ENV_LIB: &str = "SHADOWATTN_OPENCL_LIB";
/// Candidate names, in order.
pub const CANDIDATES: &[&str] = &[
    "libOpenCL.so.1",
    "libOpenCL.so",
    "/vendor/lib64/libOpenCL.so",
    "/system/vendor/lib64/libOpenCL.so",
    "/vendor/lib64/egl/libGLES_mali.so",
    "/system/lib64/libOpenCL.so",
];

/// Every function shadowattn calls, resolved once.
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)]
pub struct Api {
    pub get_platform_ids: fns::GetPlatformIds,
    pub get_platform_info: fns::GetPlatformInfo,
    pub get_device_ids: fns::GetDeviceIds,
    pub get_device_info: fns::GetDeviceInfo,
    pub create_context: fns::CreateContext,
    pub create_command_queue: fns::CreateCommandQueue,
    pub create_program_with_source: fns::CreateProgramWithSource,
    pub build_program: fns::BuildProgram,
    pub get_program_build_info: fns::GetProgramBuildInfo,
    pub create_kernel: fns::CreateKernel,
    pub set_kernel_arg: fns::SetKernelArg,
    pub get_kernel_work_group_info: fns::GetKernelWorkGroupInfo,
    pub create_buffer: fns::CreateBuffer,
    pub enqueue_write_buffer: fns::EnqueueWriteBuffer,
    pub enqueue_read_buffer: fns::EnqueueReadBuffer,
    pub enqueue_nd_range_kernel: fns::EnqueueNdRangeKernel,
    pub finish: fns::Finish,
    pub get_event_profiling_info: fns::GetEventProfilingInfo,
    pub release_event: fns::Release,
    pub release_mem_object: fns::Release,
    pub release_kernel: fns::Release,
    pub release_program: fns::Release,
    pub release_command_queue: fns::Release,
    pub release_context: fns::Release,
}

/// An opened OpenCL library.
pub struct OpenClLibrary {
    // Keeps the resolved functions' code mapped for as long as any handle exists.
    library: DynamicLibrary,
    api: Api,
}

impl std::fmt::Debug for OpenClLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenClLibrary")
            .field("path", &self.library.path())
            .finish()
    }
}

impl OpenClLibrary {
    /// Finds and opens a library: `explicit`, then `SHADOWATTN_OPENCL_LIB`, then the candidates.
    pub fn find(explicit: Option<&Path>) -> Result<Arc<Self>> {
        Self::find_in(explicit, std::env::var_os(ENV_LIB).map(PathBuf::from))
    }

    /// [`OpenClLibrary::find`] with `SHADOWATTN_OPENCL_LIB` given as `env_lib`.
    pub fn find_in(explicit: Option<&Path>, env_lib: Option<PathBuf>) -> Result<Arc<Self>> {
        LibrarySearch::new(explicit, ENV_LIB, env_lib)
            .candidates(CANDIDATES)
            .find("OpenCL library", |path| Self::open(path).map(Arc::new))
    }

    /// Opens one library and resolves every symbol; a missing one is an error naming it.
    pub fn open(path: &str) -> Result<Self> {
        // SAFETY: loading runs the library's initializers; OpenCL ICD loaders and drivers are
        // plain shared objects meant to be opened this way.
        let library = unsafe { DynamicLibrary::open(path) }?;
        // SAFETY: each field's type is the C signature the OpenCL specification gives the
        // function named; `api` is kept beside `library`, which stays loaded as long as it.
        let api = unsafe {
            Api {
                get_platform_ids: library.symbol("clGetPlatformIDs")?,
                get_platform_info: library.symbol("clGetPlatformInfo")?,
                get_device_ids: library.symbol("clGetDeviceIDs")?,
                get_device_info: library.symbol("clGetDeviceInfo")?,
                create_context: library.symbol("clCreateContext")?,
                create_command_queue: library.symbol("clCreateCommandQueue")?,
                create_program_with_source: library.symbol("clCreateProgramWithSource")?,
                build_program: library.symbol("clBuildProgram")?,
                get_program_build_info: library.symbol("clGetProgramBuildInfo")?,
                create_kernel: library.symbol("clCreateKernel")?,
                set_kernel_arg: library.symbol("clSetKernelArg")?,
                get_kernel_work_group_info: library.symbol("clGetKernelWorkGroupInfo")?,
                create_buffer: library.symbol("clCreateBuffer")?,
                enqueue_write_buffer: library.symbol("clEnqueueWriteBuffer")?,
                enqueue_read_buffer: library.symbol("clEnqueueReadBuffer")?,
                enqueue_nd_range_kernel: library.symbol("clEnqueueNDRangeKernel")?,
                finish: library.symbol("clFinish")?,
                get_event_profiling_info: library.symbol("clGetEventProfilingInfo")?,
                release_event: library.symbol("clReleaseEvent")?,
                release_mem_object: library.symbol("clReleaseMemObject")?,
                release_kernel: library.symbol("clReleaseKernel")?,
                release_program: library.symbol("clReleaseProgram")?,
                release_command_queue: library.symbol("clReleaseCommandQueue")?,
                release_context: library.symbol("clReleaseContext")?,
            }
        };
        Ok(OpenClLibrary { library, api })
    }

    /// Path the library was opened from.
    pub fn path(&self) -> &str {
        self.library.path()
    }

    /// The resolved functions.
    pub fn api(&self) -> &Api {
        &self.api
    }
}
