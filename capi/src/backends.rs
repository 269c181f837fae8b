//! Backend handles: an NPU backend and a compute backend opened by the names the CLI uses
//! (`sim:snapdragon-8-gen-3`, `qnn:htp:52`, `neuron`, `cpu-fast:2`, `opencl`, …), and the list
//! of what loads here.

use crate::error::{guard, shadowattn_status, ApiError};
use crate::{check_abi, sys};
use shadowattn_hal::ComputeBackend;
use shadowattn_registry::{
    compute_backends, npu_backends, ComputeSpec, NpuSpec, OpenOptions, OpenedNpu,
};
use std::ffi::c_char;
use std::sync::Arc;

/// An NPU graph backend (opaque). Thread-safe: it may be shared by contexts and threads.
pub struct shadowattn_npu {
    pub(crate) opened: OpenedNpu,
}

/// A compute-kernel backend (opaque). Thread-safe: it may be shared by contexts and threads.
pub struct shadowattn_compute {
    pub(crate) backend: Arc<dyn ComputeBackend>,
}

/// Libraries come from the loaders' search: an explicit environment variable
/// (`SHADOWATTN_QNN_LIB`, `SHADOWATTN_NEURON_LIB`, `SHADOWATTN_OPENCL_LIB`), then the usual names.
fn options() -> OpenOptions {
    OpenOptions::default()
}

/// Opens the NPU backend `name` (grammar: `cpu`, `sim[:<soc>|:<profile.toml>]`,
/// `qnn[:htp[:<socModel>]]`, `neuron`) into `*out`; free it with `shadowattn_npu_free`.
///
/// Errors: `SHADOWATTN_ERROR_ABI_VERSION`, `SHADOWATTN_ERROR_NULL_ARGUMENT`,
/// `SHADOWATTN_ERROR_BACKEND_NAME` (the message lists the grammar),
/// `SHADOWATTN_ERROR_BACKEND_UNAVAILABLE` (the message lists every library tried).
#[no_mangle]
pub extern "C" fn shadowattn_npu_open(
    abi_version: u32,
    name: *const c_char,
    out: *mut *mut shadowattn_npu,
) -> shadowattn_status {
    guard(|| {
        check_abi(abi_version)?;
        let spec: NpuSpec = sys::string(name, "name")?.parse()?;
        if out.is_null() {
            return Err(ApiError::null("out"));
        }
        let opened = spec.open(&options())?;
        let handle = Box::into_raw(Box::new(shadowattn_npu { opened }));
        sys::put(out, handle, "out")
    })
}

/// Frees an NPU backend (NULL is ignored). Contexts built on it stay valid.
#[no_mangle]
pub extern "C" fn shadowattn_npu_free(npu: *mut shadowattn_npu) {
    let _ = guard(|| {
        sys::free(npu);
        Ok(())
    });
}

/// Writes the NPU backend's name and version (`sim:sa8255 0.1.0 (HTP V73)`) into `buf` of
/// `len` bytes; `*needed` (if not NULL) gets the size needed, NUL included.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`, `SHADOWATTN_ERROR_BUFFER_TOO_SMALL`.
#[no_mangle]
pub extern "C" fn shadowattn_npu_describe(
    npu: *const shadowattn_npu,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> shadowattn_status {
    guard(|| {
        let npu = sys::get(npu, "npu")?;
        let b = &npu.opened.backend;
        sys::write_text(buf, len, needed, &format!("{} {}", b.name(), b.version()))
    })
}

/// Opens the compute backend `name` (grammar: `cpu`, `cpu-fast[:<threads>][:f16]`,
/// `opencl[:<platform>[:<device>]][:f16]`) into `*out`; free it with `shadowattn_compute_free`
/// after every context that uses it.
///
/// Errors: as `shadowattn_npu_open`.
#[no_mangle]
pub extern "C" fn shadowattn_compute_open(
    abi_version: u32,
    name: *const c_char,
    out: *mut *mut shadowattn_compute,
) -> shadowattn_status {
    guard(|| {
        check_abi(abi_version)?;
        let spec: ComputeSpec = sys::string(name, "name")?.parse()?;
        if out.is_null() {
            return Err(ApiError::null("out"));
        }
        let backend: Arc<dyn ComputeBackend> = Arc::from(spec.open(&options())?);
        let handle = Box::into_raw(Box::new(shadowattn_compute { backend }));
        sys::put(out, handle, "out")
    })
}

/// Frees a compute backend (NULL is ignored). Contexts that use it keep their own reference,
/// so it may be freed before them.
#[no_mangle]
pub extern "C" fn shadowattn_compute_free(compute: *mut shadowattn_compute) {
    let _ = guard(|| {
        sys::free(compute);
        Ok(())
    });
}

/// One line per known backend: `name<TAB>available<TAB>version` or
/// `name<TAB>unavailable<TAB>why`, into `buf` of `len` bytes; `*needed` (if not NULL) gets
/// the size needed, NUL included. Call with a NULL `buf` and `len` 0 to learn the size.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT`, `SHADOWATTN_ERROR_BUFFER_TOO_SMALL`.
#[no_mangle]
pub extern "C" fn shadowattn_list_backends(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> shadowattn_status {
    guard(|| {
        let mut text = String::new();
        let mut line = |name: String, result: Result<String, String>| {
            let (state, detail) = match result {
                Ok(v) => ("available", v),
                Err(why) => ("unavailable", why.lines().next().unwrap_or_default().into()),
            };
            text.push_str(&format!("{name}\t{state}\t{detail}\n"));
        };
        for spec in npu_backends() {
            let r = spec
                .open(&options())
                .map(|o| o.backend.version())
                .map_err(|e| e.to_string());
            line(spec.to_string(), r);
        }
        for spec in compute_backends() {
            let r = spec
                .open(&options())
                .map(|b| format!("K/V stored as {:?}", b.capabilities().kv_storage))
                .map_err(|e| e.to_string());
            line(spec.to_string(), r);
        }
        sys::write_text(buf, len, needed, &text)
    })
}
