//! libshadowattn: the C ABI of shadowattn, so that inference engines (llama.cpp / ggml, mllm,
//! MNN, ExecuTorch runtimes) can embed shadowAttn. A translation of the Rust API, no logic of
//! its own; the header `capi/include/shadowattn.h` is generated from this crate by cbindgen.
//!
//! Conventions of every function:
//! - it returns a `shadowattn_status` (`SHADOWATTN_OK` or an error code); on failure
//!   `shadowattn_last_error()` gives the message on the calling thread, and calls on a context
//!   also keep it in `shadowattn_context_last_error(ctx)`;
//! - every pointer argument is checked for NULL (an error, never a crash), every buffer comes
//!   with its element count, checked against the shape;
//! - functions that create a handle take the caller's `SHADOWATTN_ABI_VERSION` first and refuse
//!   a caller built against a newer header;
//! - handles are opaque; each `*_open` / `*_create` has a `*_free` (NULL is ignored);
//! - no Rust panic crosses into C: it becomes `SHADOWATTN_ERROR_INTERNAL`.
//!
//! Thread safety: an NPU or compute handle may be used from several threads at once (the
//! backends serialize their own calls); a context is used by one thread at a time; a report is
//! immutable and may be read from any thread.
//!
//! Layouts: Q is `[q_heads][q_len][head_dim]`, K and V `[kv_heads][kv_len][head_dim]`, the
//! output `[q_heads][q_len][head_dim]`, all contiguous row-major f32 (row stride `head_dim`,
//! head stride `rows · head_dim`). Query head `h` reads KV head `h / (q_heads / kv_heads)`.

// `#[no_mangle]` C entry points trip `unsafe_code`; every `unsafe` block is in `sys`.
#![allow(unsafe_code)]
// The exported types carry their C names (`shadowattn_context`).
#![allow(non_camel_case_types)]

mod backends;
mod context;
mod error;
mod report;
mod sys;
mod tools;

pub use backends::*;
pub use context::*;
pub use error::*;
pub use report::*;
pub use tools::*;

use shadowattn_hal::AttentionShape;
use std::ffi::c_char;

/// The ABI this header describes; pass it to every create function.
pub const SHADOWATTN_ABI_VERSION: u32 = 1;

/// Pilot output form: scores requantized to INT8 (what HTP supports).
pub const SHADOWATTN_PILOT_INT8: u32 = 0;
/// Pilot output form: exact INT32 accumulators (the golden CPU backend; no built-in simulator
/// profile and no NPU driver here accepts an INT32 MatMul output, so they refuse it).
pub const SHADOWATTN_PILOT_INT32: u32 = 1;

/// Shape and masking of one attention chunk.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct shadowattn_shape {
    /// Query heads.
    pub q_heads: u32,
    /// Key/value heads; divides `q_heads`.
    pub kv_heads: u32,
    /// Query rows in the chunk.
    pub q_len: u32,
    /// Keys (prefix plus chunk).
    pub kv_len: u32,
    /// Dimension of each head.
    pub head_dim: u32,
    /// Absolute position of the chunk's first query row.
    pub q_offset: u32,
    /// 1 if row `i` only sees keys `0..=q_offset + i`, else 0.
    pub causal: u32,
    /// Multiplier of the scores before softmax (usually `1/sqrt(head_dim)`).
    pub scale: f32,
}

const _: () = {
    assert!(std::mem::size_of::<shadowattn_shape>() == 32);
    assert!(std::mem::offset_of!(shadowattn_shape, scale) == 28);
};

impl shadowattn_shape {
    pub(crate) fn to_rust(self) -> Result<AttentionShape, ApiError> {
        let causal = match self.causal {
            0 => false,
            1 => true,
            c => {
                return Err(ApiError::invalid(format!(
                    "shape.causal is {c}, not 0 or 1"
                )))
            }
        };
        let s = AttentionShape {
            q_heads: self.q_heads as usize,
            kv_heads: self.kv_heads as usize,
            q_len: self.q_len as usize,
            kv_len: self.kv_len as usize,
            head_dim: self.head_dim as usize,
            q_offset: self.q_offset as usize,
            causal,
            scale: self.scale,
        };
        s.validate()?;
        Ok(s)
    }
}

/// Checks the caller's ABI version.
pub(crate) fn check_abi(abi_version: u32) -> Result<(), ApiError> {
    if abi_version == 0 || abi_version > SHADOWATTN_ABI_VERSION {
        return Err(ApiError::new(
            SHADOWATTN_ERROR_ABI_VERSION,
            format!(
                "the caller was built against ABI {abi_version}; this library ({}) implements ABI {SHADOWATTN_ABI_VERSION}",
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    Ok(())
}

/// The ABI version this library implements.
#[no_mangle]
pub extern "C" fn shadowattn_abi_version() -> u32 {
    SHADOWATTN_ABI_VERSION
}

/// The library's version, a static NUL-terminated string (never freed).
#[no_mangle]
pub extern "C" fn shadowattn_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last call that failed on this thread: valid until the next failing call
/// on the same thread; an empty string if none failed. Never NULL.
#[no_mangle]
pub extern "C" fn shadowattn_last_error() -> *const c_char {
    error::last_error_ptr()
}

/// Fills `out` with a causal chunk's shape: `q_offset = kv_len - q_len`, `scale = 1/sqrt(head_dim)`.
///
/// Errors: `SHADOWATTN_ERROR_NULL_ARGUMENT` (`out`), `SHADOWATTN_ERROR_INVALID_ARGUMENT` (a shape
/// that is no chunk, named in the message).
#[no_mangle]
pub extern "C" fn shadowattn_shape_causal(
    q_heads: u32,
    kv_heads: u32,
    q_len: u32,
    kv_len: u32,
    head_dim: u32,
    out: *mut shadowattn_shape,
) -> shadowattn_status {
    guard(|| {
        let s = AttentionShape::causal(
            q_heads as usize,
            kv_heads as usize,
            q_len as usize,
            kv_len as usize,
            head_dim as usize,
        );
        s.validate()?;
        sys::put(
            out,
            shadowattn_shape {
                q_heads,
                kv_heads,
                q_len,
                kv_len,
                head_dim,
                q_offset: s.q_offset as u32,
                causal: 1,
                scale: s.scale,
            },
            "out",
        )
    })
}
