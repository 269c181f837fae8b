//! Cache files that a backend will deserialize, made safe to read back.
//!
//! A cache file (a graph bank, a compiled graph) is handed to a vendor's parser, which must only
//! ever see bytes this build wrote for that very backend. [`seal`] wraps a payload in a small
//! container that names its format, the backend (and version) that wrote it and what it was
//! compiled from, and carries a SHA-256 digest; [`open`] checks all
//! of it and returns the payload only when everything matches, so a truncated, damaged or foreign
//! file is refused before any parser sees it. [`write_atomic`] writes a file so that readers see
//! the old file or the whole new one (never half of it), readable by its owner only.

mod seal;
mod write;

pub use seal::{
    open, seal, subject_of, writer_of, CacheFileError, Kind, Label, Subject, HEADER_LEN, MAGIC,
    VERSION,
};
pub use write::write_atomic;
