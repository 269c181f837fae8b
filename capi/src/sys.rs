//! The only place the C API touches raw pointers: arguments from C become checked Rust values
//! (a NULL pointer is an error naming the argument), handles become boxes and back. Every
//! `unsafe` block of the crate is here.

use crate::error::ApiError;
use std::ffi::{c_char, CStr};

/// A NUL-terminated UTF-8 string argument.
pub(crate) fn string<'a>(p: *const c_char, what: &'static str) -> Result<&'a str, ApiError> {
    if p.is_null() {
        return Err(ApiError::null(what));
    }
    // SAFETY: the header documents every `const char*` argument as a NUL-terminated string that
    // stays valid for the call; it is not NULL (checked above).
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| ApiError::invalid(format!("`{what}` is not UTF-8")))
}

/// An optional string argument (NULL is `None`).
pub(crate) fn optional_string<'a>(
    p: *const c_char,
    what: &'static str,
) -> Result<Option<&'a str>, ApiError> {
    if p.is_null() {
        Ok(None)
    } else {
        string(p, what).map(Some)
    }
}

/// `len` elements at `p`, read only.
pub(crate) fn slice<'a, T>(
    p: *const T,
    len: usize,
    what: &'static str,
) -> Result<&'a [T], ApiError> {
    if p.is_null() {
        return Err(ApiError::null(what));
    }
    // SAFETY: the header documents that a buffer argument points to `len` initialised elements
    // valid for the call and not written by anyone else during it; `p` is not NULL and, being
    // a valid `T` pointer from C, is aligned for `T`.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// `len` elements at `p`, written.
pub(crate) fn slice_mut<'a, T>(
    p: *mut T,
    len: usize,
    what: &'static str,
) -> Result<&'a mut [T], ApiError> {
    if p.is_null() {
        return Err(ApiError::null(what));
    }
    // SAFETY: the header documents that an output buffer points to `len` writable elements,
    // used by nothing else during the call; `p` is not NULL and aligned for `T`.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// The value behind a handle or input struct.
pub(crate) fn get<'a, T>(p: *const T, what: &'static str) -> Result<&'a T, ApiError> {
    if p.is_null() {
        return Err(ApiError::null(what));
    }
    // SAFETY: a handle comes from this library's create functions (a live `Box<T>` until its
    // free function), an input struct from the caller's memory; either is valid for the call.
    Ok(unsafe { &*p })
}

/// The value behind a handle, mutably (the header documents such a handle as used by one
/// thread at a time).
pub(crate) fn get_mut<'a, T>(p: *mut T, what: &'static str) -> Result<&'a mut T, ApiError> {
    if p.is_null() {
        return Err(ApiError::null(what));
    }
    // SAFETY: as in `get`; the caller does not use the handle from another thread during the
    // call (documented per handle), so this is the only reference.
    Ok(unsafe { &mut *p })
}

/// Writes `value` to an out-pointer.
pub(crate) fn put<T>(p: *mut T, value: T, what: &'static str) -> Result<(), ApiError> {
    if p.is_null() {
        return Err(ApiError::null(what));
    }
    // SAFETY: an out-pointer points to writable memory for one `T` (documented); not NULL.
    unsafe { p.write(value) };
    Ok(())
}

/// Frees a handle made by [`Box::into_raw`]; NULL is ignored.
pub(crate) fn free<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: non-NULL handles come from `Box::into_raw` in this library and are freed
        // once (the header makes the free function the end of the handle's life).
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Copies `text` and a NUL into `buf` of `len` bytes; `needed` (if not NULL) gets the size
/// needed, NUL included. Too small a buffer is an error, and nothing but `needed` is written;
/// a NULL `buf` of `len` 0 asks for the size only (`SHADOWATTN_ERROR_BUFFER_TOO_SMALL`).
pub(crate) fn write_text(
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
    text: &str,
) -> Result<(), ApiError> {
    let size = text.len() + 1;
    if !needed.is_null() {
        put(needed, size, "needed")?;
    }
    if buf.is_null() && len > 0 {
        return Err(ApiError::null("buf"));
    }
    if len < size {
        return Err(ApiError::buffer_too_small(size, len));
    }
    let out = slice_mut(buf.cast::<u8>(), len, "buf")?;
    out[..text.len()].copy_from_slice(text.as_bytes());
    out[text.len()] = 0;
    Ok(())
}
