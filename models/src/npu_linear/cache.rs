//! The graph cache of [`NpuLinears`](super::NpuLinears): one file per compiled graph, named by
//! the backend and a hash of the graph, holding the backend's bytes in a sealed container
//! ([`cache_file`]) that is checked before the backend parses any of it.

use crate::error::{ModelError, Result};
use shadowattn_hal::cache_file::{self, write_atomic, Kind, Label, Subject};
use shadowattn_hal::{CompiledGraph, Graph, HalError, NpuBackend};
use std::path::{Path, PathBuf};

/// A graph-cache file that was not used (and was compiled again and rewritten): which and why.
#[derive(Debug)]
pub struct CacheRefusal {
    /// The file.
    pub path: PathBuf,
    /// Why it was not used.
    pub reason: ModelError,
}

impl std::fmt::Display for CacheRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "graph cache {} not used ({}); compiled again",
            self.path.display(),
            self.reason
        )
    }
}

/// How a graph came to be: compiled, loaded from the cache, or compiled because the cache file
/// was refused.
pub(super) enum Origin {
    /// Compiled (no cache, or no file in it).
    Compiled,
    /// Loaded from the cache.
    Loaded,
    /// Compiled because the cache file was refused.
    Refused(CacheRefusal),
}

/// The kind of a graph-cache file's sealed container ([`cache_file`]): version 2 of the graph
/// cache (version 1 wrote the backend's bytes bare; such files are refused and compiled again).
const FILE_KIND: &Kind = b"SAGRAPH2";

/// Where the compiled form of a graph of subject `subject` on `npu` is cached in `dir`: named by
/// the backend and the start of the graph's SHA-256 (weights included), the same in every build.
fn cache_path(dir: &Path, npu: &dyn NpuBackend, subject: &Subject) -> PathBuf {
    let backend: String = npu
        .name()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let hex: String = subject[..8].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{backend}-{hex}.graph"))
}

/// The label of the cache file of `graph` compiled by `writer`.
fn label<'a>(writer: &'a str, graph: &Graph) -> Label<'a> {
    Label {
        kind: FILE_KIND,
        writer,
        subject: cache_file::subject_of([graph.to_bytes()]),
    }
}

/// `graph` compiled on `npu`, or loaded from the `cache` folder when it holds it; a compiled
/// graph is written to the cache when the backend can serialize it.
pub(super) fn compile_or_load(
    npu: &dyn NpuBackend,
    graph: &Graph,
    cache: Option<&Path>,
) -> Result<(Box<dyn CompiledGraph>, Origin)> {
    let Some(dir) = cache else {
        return Ok((npu.compile(graph)?, Origin::Compiled));
    };
    let writer = cache_file::writer_of(npu);
    let label = label(&writer, graph);
    let path = cache_path(dir, npu, &label.subject);
    let origin = match load_cached(npu, graph, &label, &path) {
        Ok(Some(loaded)) => return Ok((loaded, Origin::Loaded)),
        Ok(None) => Origin::Compiled,
        Err(reason) => Origin::Refused(CacheRefusal {
            path: path.clone(),
            reason,
        }),
    };
    let compiled = npu.compile(graph)?;
    store(compiled.as_ref(), &label, &path)?;
    Ok((compiled, origin))
}

/// The compiled `graph` in the cache file `path`: none when there is no such file, else why the
/// file cannot be used. The file's container is checked before `npu` parses a byte of it.
fn load_cached(
    npu: &dyn NpuBackend,
    graph: &Graph,
    label: &Label<'_>,
    path: &Path,
) -> Result<Option<Box<dyn CompiledGraph>>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, &e)),
    };
    let payload = cache_file::open(&bytes, label).map_err(HalError::from)?;
    let loaded = npu.deserialize(payload)?;
    if loaded.graph() != graph {
        return Err(ModelError::CachedGraph {
            found: loaded.graph().name().to_string(),
            expected: graph.name().to_string(),
        });
    }
    Ok(Some(loaded))
}

/// Writes `compiled` to `path`, sealed with `label`, atomically and owner-only; a backend that
/// cannot serialize writes nothing.
fn store(compiled: &dyn CompiledGraph, label: &Label<'_>, path: &Path) -> Result<()> {
    let bytes = match compiled.serialize() {
        Ok(bytes) => bytes,
        // A backend that cannot save compiled graphs compiles every time.
        Err(HalError::NotProvided { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let sealed = cache_file::seal(label, &bytes).map_err(HalError::from)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
    }
    write_atomic(path, &sealed).map_err(|e| io_error(path, &e))
}

/// An I/O error on `path`.
fn io_error(path: &Path, e: &std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests;
