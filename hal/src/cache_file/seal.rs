//! The container of a cache file: a header that names the format, the backend that wrote it and
//! what the payload was compiled from, a SHA-256 digest, then the payload.
//!
//! Layout (integers little-endian):
//!
//! | offset  | size | field                                                        |
//! |---------|------|--------------------------------------------------------------|
//! | 0       | 8    | [`MAGIC`] `SACACHE\0`                                        |
//! | 8       | 4    | container [`VERSION`] (u32)                                  |
//! | 12      | 8    | [`Kind`]: the payload's format and its version (ASCII)       |
//! | 20      | 2    | length `n` of the writer (u16)                               |
//! | 22      | n    | the writer: the backend's name and version (UTF-8)           |
//! | 22+n    | 32   | the subject: SHA-256 of what the payload was compiled from   |
//! | 54+n    | 8    | payload length (u64)                                         |
//! | 62+n    | 32   | SHA-256 of bytes `0..62+n` followed by the payload           |
//! | 94+n    | len  | the payload                                                  |

use crate::NpuBackend;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The first bytes of every cache file.
pub const MAGIC: &[u8; 8] = b"SACACHE\0";

/// The container version this build writes and reads.
pub const VERSION: u32 = 1;

/// Bytes of the header besides the writer (magic, version, kind, writer length; subject,
/// payload length, digest).
pub const HEADER_LEN: usize = 8 + 4 + 8 + 2 + DIGEST_LEN + 8 + DIGEST_LEN;

const DIGEST_LEN: usize = 32;

/// What a cache file's payload is, with its format version (for example `b"BANK0002"`): a
/// reader refuses a file of another kind or of another version of its format.
pub type Kind = [u8; 8];

/// A SHA-256 digest of what a payload was compiled from (see [`subject_of`]).
pub type Subject = [u8; DIGEST_LEN];

/// What a cache file must be to be read: its kind, its writer and its subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label<'a> {
    /// The payload's format.
    pub kind: &'a Kind,
    /// The backend that compiled the payload, with its version ([`writer_of`]).
    pub writer: &'a str,
    /// What the payload was compiled from ([`subject_of`]).
    pub subject: Subject,
}

/// The writer of `npu`'s cache files: its name and version, so that a file compiled by another
/// backend, or by another version of the vendor library, never reaches this one's parser.
pub fn writer_of(npu: &dyn NpuBackend) -> String {
    format!("{} {}", npu.name(), npu.version())
}

/// The subject of a payload compiled from `parts` (for example the bytes of each source graph):
/// SHA-256 of the parts, each preceded by its length so that no two lists share a digest.
pub fn subject_of<P: AsRef<[u8]>>(parts: impl IntoIterator<Item = P>) -> Subject {
    let mut h = Sha256::new();
    for part in parts {
        let part = part.as_ref();
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

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
    /// A file written by another backend, or another version of it.
    #[error("written by `{found}`, not `{expected}`")]
    Backend {
        /// The writer named in the file.
        found: String,
        /// The backend reading it, with its version.
        expected: String,
    },
    /// A file compiled from something else (another graph, grid or spec).
    #[error("compiled from other graphs than the ones asked for")]
    Subject,
    /// More bytes than the header announces.
    #[error("{extra} bytes after the payload")]
    TrailingBytes {
        /// Bytes past the payload.
        extra: u64,
    },
    /// Content that does not match its digest: damaged or altered.
    #[error("content does not match its SHA-256 digest (damaged or altered)")]
    Digest,
    /// A writer too long for the header (over 65535 bytes), when sealing.
    #[error("writer of {len} bytes does not fit the header")]
    BackendName {
        /// The name's length in bytes.
        len: usize,
    },
}

/// `payload` in a container labelled `label`: the bytes to write to a cache file.
pub fn seal(label: &Label<'_>, payload: &[u8]) -> Result<Vec<u8>, CacheFileError> {
    let writer = label.writer;
    let name_len = u16::try_from(writer.len())
        .map_err(|_| CacheFileError::BackendName { len: writer.len() })?;
    let mut out = Vec::with_capacity(HEADER_LEN + writer.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(label.kind);
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(writer.as_bytes());
    out.extend_from_slice(&label.subject);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let digest = digest_of(&out, payload);
    out.extend_from_slice(&digest);
    out.extend_from_slice(payload);
    Ok(out)
}

/// The payload of a cache file sealed with `label`, once the magic, versions, kind, writer,
/// subject, length and digest all check out; else why the file is refused.
pub fn open<'a>(bytes: &'a [u8], label: &Label<'_>) -> Result<&'a [u8], CacheFileError> {
    let (kind, backend) = (label.kind, label.writer);
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
    let subject: Subject = r.array()?;
    if subject != label.subject {
        return Err(CacheFileError::Subject);
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
