//! The container of a cache file: a header that names the format and the backend, a SHA-256
//! digest, then the payload.
//!
//! Layout (integers little-endian):
//!
//! | offset  | size | field                                                        |
//! |---------|------|--------------------------------------------------------------|
//! | 0       | 8    | [`MAGIC`] `SACACHE\0`                                        |
//! | 8       | 4    | container [`VERSION`] (u32)                                  |
//! | 12      | 8    | [`Kind`]: the payload's format and its version (ASCII)       |
//! | 20      | 2    | length `n` of the backend name (u16)                         |
//! | 22      | n    | the backend name (UTF-8)                                     |
//! | 22+n    | 8    | payload length (u64)                                         |
//! | 30+n    | 32   | SHA-256 of bytes `0..30+n` followed by the payload           |
//! | 62+n    | len  | the payload                                                  |

use sha2::{Digest, Sha256};
use thiserror::Error;

/// The first bytes of every cache file.
pub const MAGIC: &[u8; 8] = b"SACACHE\0";

/// The container version this build writes and reads.
pub const VERSION: u32 = 1;

/// Bytes of the header before the backend name and after it (magic, version, kind, name
/// length; payload length, digest).
pub const HEADER_LEN: usize = 8 + 4 + 8 + 2 + 8 + DIGEST_LEN;

const DIGEST_LEN: usize = 32;

/// What a cache file's payload is, with its format version (for example `b"BANK0002"`): a
/// reader refuses a file of another kind or of another version of its format.
pub type Kind = [u8; 8];

/// Why a cache file is refused (before its payload reaches any parser).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheFileError {
    /// Fewer bytes than the header (and the payload it announces) need: a cut-off write.
    #[error("truncated: {found} bytes, {needed} needed")]
    Truncated {
        /// Bytes the file needs.
        needed: u64,
        /// Bytes it has.
        found: u64,
    },
    /// A file that does not start with [`MAGIC`] (not a shadowattn cache file, or an older
    /// format from before the container).
    #[error("not a shadowattn cache file (bad magic)")]
    BadMagic,
    /// A container version this build does not read.
    #[error("container version {found}, this build reads version {VERSION}")]
    Version {
        /// The file's version.
        found: u32,
    },
    /// A payload of another kind, or another version of its format.
    #[error("holds `{found}`, expected `{expected}`")]
    Kind {
        /// The file's kind.
        found: String,
        /// The kind asked for.
        expected: String,
    },
    /// A file written for another backend.
    #[error("written for backend `{found}`, not `{expected}`")]
    Backend {
        /// The backend named in the file.
        found: String,
        /// The backend reading it.
        expected: String,
    },
    /// More bytes than the header announces.
    #[error("{extra} bytes after the payload")]
    TrailingBytes {
        /// Bytes past the payload.
        extra: u64,
    },
    /// Content that does not match its digest: damaged or altered.
    #[error("content does not match its SHA-256 digest (damaged or altered)")]
    Digest,
    /// A backend name too long for the header (over 65535 bytes), when sealing.
    #[error("backend name of {len} bytes does not fit the header")]
    BackendName {
        /// The name's length in bytes.
        len: usize,
    },
}

/// `payload` in a container of `kind` for `backend`: the bytes to write to a cache file.
pub fn seal(kind: &Kind, backend: &str, payload: &[u8]) -> Result<Vec<u8>, CacheFileError> {
    let name_len = u16::try_from(backend.len())
        .map_err(|_| CacheFileError::BackendName { len: backend.len() })?;
    let mut out = Vec::with_capacity(HEADER_LEN + backend.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(backend.as_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let digest = digest_of(&out, payload);
    out.extend_from_slice(&digest);
    out.extend_from_slice(payload);
    Ok(out)
}

/// The payload of a cache file of `kind` sealed for `backend`, once the magic, versions, kind,
/// backend, length and digest all check out; else why the file is refused.
pub fn open<'a>(bytes: &'a [u8], kind: &Kind, backend: &str) -> Result<&'a [u8], CacheFileError> {
    let mut r = Fields { bytes, at: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(CacheFileError::BadMagic);
    }
    let version = u32::from_le_bytes(r.array()?);
    if version != VERSION {
        return Err(CacheFileError::Version { found: version });
    }
    let found_kind: Kind = r.array()?;
    if &found_kind != kind {
        return Err(CacheFileError::Kind {
            found: String::from_utf8_lossy(&found_kind).into_owned(),
            expected: String::from_utf8_lossy(kind).into_owned(),
        });
    }
    let name_len = u16::from_le_bytes(r.array()?);
    let name = r.take(usize::from(name_len))?;
    if name != backend.as_bytes() {
        return Err(CacheFileError::Backend {
            found: String::from_utf8_lossy(name).into_owned(),
            expected: backend.to_string(),
        });
    }
    let payload_len = u64::from_le_bytes(r.array()?);
    let header_end = r.at;
    let digest: [u8; DIGEST_LEN] = r.array()?;
    let payload = r.rest();
    let found = payload.len() as u64;
    if found < payload_len {
        return Err(CacheFileError::Truncated {
            needed: (bytes.len() as u64).saturating_add(payload_len - found),
            found: bytes.len() as u64,
        });
    }
    if found > payload_len {
        return Err(CacheFileError::TrailingBytes {
            extra: found - payload_len,
        });
    }
    if digest_of(&bytes[..header_end], payload) != digest {
        return Err(CacheFileError::Digest);
    }
    Ok(payload)
}

/// SHA-256 of `header` followed by `payload`.
fn digest_of(header: &[u8], payload: &[u8]) -> [u8; DIGEST_LEN] {
    let mut h = Sha256::new();
    h.update(header);
    h.update(payload);
    h.finalize().into()
}

/// Reads the header's fields in order.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], CacheFileError> {
        let field = self
            .bytes
            .get(self.at..)
            .and_then(|rest| rest.get(..n))
            .ok_or(CacheFileError::Truncated {
                needed: (self.at + n) as u64,
                found: self.bytes.len() as u64,
            })?;
        self.at += n;
        Ok(field)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CacheFileError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Everything after the fields read.
    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }
}

#[cfg(test)]
mod tests;
