//! Finding and opening an OpenCL library (the ICD loader or a vendor's driver), resolving every
//! symbol once.
//!
//! Search order: an explicit path → `SHADOWATTN_OPENCL_LIB` → the candidate names below (the
//! desktop ICD loader, then where Android vendors put their driver). The first library that opens
//! and has every symbol wins; the error lists each attempt.

#![allow(unsafe_code)]

use crate::error::{OpenClError, Result};
use crate::sys::fns;
use shadowattn_hal::library::LibrarySearch;
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
    path: String,
    // Keeps the resolved functions' code mapped for as long as any handle exists.
    _library: libloading::Library,
    api: Api,
}

impl std::fmt::Debug for OpenClLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenClLibrary")
            .field("path", &self.path)
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
            .open_first(|path| Self::open(path).map(Arc::new))
            .map_err(|attempts| OpenClError::Load { attempts })
    }

    /// Opens one library and resolves every symbol; a missing one is an error naming it.
    pub fn open(path: &str) -> Result<Self> {
        // SAFETY: loading runs the library's initializers; OpenCL ICD loaders and drivers are
        // plain shared objects meant to be opened this way.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| OpenClError::Open {
            path: path.to_string(),
            detail: e.to_string(),
        })?;
        macro_rules! sym {
            ($name:literal) => {{
                // SAFETY: the symbol's type is the C signature the OpenCL specification gives it.
                let s = unsafe { library.get(concat!($name, "\0").as_bytes()) }.map_err(|_| {
                    OpenClError::MissingSymbol {
                        path: path.to_string(),
                        symbol: $name.to_string(),
                    }
                })?;
                *s
            }};
        }
        let api = Api {
            get_platform_ids: sym!("clGetPlatformIDs"),
            get_platform_info: sym!("clGetPlatformInfo"),
            get_device_ids: sym!("clGetDeviceIDs"),
            get_device_info: sym!("clGetDeviceInfo"),
            create_context: sym!("clCreateContext"),
            create_command_queue: sym!("clCreateCommandQueue"),
            create_program_with_source: sym!("clCreateProgramWithSource"),
            build_program: sym!("clBuildProgram"),
            get_program_build_info: sym!("clGetProgramBuildInfo"),
            create_kernel: sym!("clCreateKernel"),
            set_kernel_arg: sym!("clSetKernelArg"),
            get_kernel_work_group_info: sym!("clGetKernelWorkGroupInfo"),
            create_buffer: sym!("clCreateBuffer"),
            enqueue_write_buffer: sym!("clEnqueueWriteBuffer"),
            enqueue_read_buffer: sym!("clEnqueueReadBuffer"),
            enqueue_nd_range_kernel: sym!("clEnqueueNDRangeKernel"),
            finish: sym!("clFinish"),
            get_event_profiling_info: sym!("clGetEventProfilingInfo"),
            release_event: sym!("clReleaseEvent"),
            release_mem_object: sym!("clReleaseMemObject"),
            release_kernel: sym!("clReleaseKernel"),
            release_program: sym!("clReleaseProgram"),
            release_command_queue: sym!("clReleaseCommandQueue"),
            release_context: sym!("clReleaseContext"),
        };
        Ok(OpenClLibrary {
            path: path.to_string(),
            _library: library,
            api,
        })
    }

    /// Path the library was opened from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The resolved functions.
    pub fn api(&self) -> &Api {
        &self.api
    }
}
