//! The graph bank: one compiled pilot graph per (scale bucket, fused-head count), built once.
//!
//! Graphs are static, so the bank is compiled for a maximum chunk: `q_len` query rows and
//! `kv_len` keys. A shorter chunk is zero-padded (padded keys are never valid: the top-k only
//! looks at each row's real keys); a longer one is an error.

use crate::calibration::BucketGrid;
use crate::error::{Result, SparseAttnError};
use crate::pilot::{PilotOutput, PilotSpec, PilotUnit};
use shadowattn_hal::cache_file::{self, Kind, Label};
use shadowattn_hal::{CompiledGraph, Graph, HalError, NpuBackend, ProfileEvent};
use std::collections::BTreeMap;

/// What the bank is compiled for.
#[derive(Clone, Debug, PartialEq)]
pub struct BankSpec {
    /// Largest chunk, in query rows.
    pub q_len: usize,
    /// Largest number of keys.
    pub kv_len: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Fused-unit counts to compile (for example 1, 2, 4).
    pub fused: Vec<usize>,
    /// Pilot output form.
    pub output: PilotOutput,
    /// What a unit of a launch is: a query head, or a GQA group.
    pub unit: PilotUnit,
}

impl BankSpec {
    /// Checks the spec; returns the fused counts sorted descending without repeats.
    fn normalized_fused(&self) -> Result<Vec<usize>> {
        for (f, v) in [
            ("q_len", self.q_len),
            ("kv_len", self.kv_len),
            ("head_dim", self.head_dim),
        ] {
            if v == 0 {
                return Err(SparseAttnError::config(
                    format!("bank.{f}"),
                    "must be at least 1",
                ));
            }
        }
        let mut fused = self.fused.clone();
        fused.sort_unstable_by(|a, b| b.cmp(a));
        fused.dedup();
        if fused.last() != Some(&1) || fused.contains(&0) {
            return Err(SparseAttnError::config(
                "bank.fused",
                format!(
                    "fused-head counts must be positive and include 1, got {:?}",
                    self.fused
                ),
            ));
        }
        Ok(fused)
    }

    /// The pilot graph spec of one bucket and fused count.
    pub fn pilot(&self, grid: &BucketGrid, bucket: usize, fused: usize) -> PilotSpec {
        let (q_scale, k_scale) = grid.bucket(bucket);
        PilotSpec {
            fused,
            unit: self.unit,
            q_len: self.q_len,
            kv_len: self.kv_len,
            head_dim: self.head_dim,
            q_scale,
            k_scale,
            output: self.output,
        }
    }
}

/// Compiled pilot graphs by (bucket, fused count).
#[derive(Debug)]
pub struct GraphBank {
    spec: BankSpec,
    fused: Vec<usize>,
    grid: BucketGrid,
    backend: String,
    writer: String,
    graphs: BTreeMap<(usize, usize), Box<dyn CompiledGraph>>,
    compile_events: Vec<ProfileEvent>,
}

/// The kind of a bank file's sealed container ([`cache_file`]): version 2 of the bank format
/// (version 1, `SABANK01`, had no container; such files are refused and compiled again).
const FILE_KIND: &Kind = b"SABANK02";

/// Reads little-endian fields from a bank file.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(SparseAttnError::BankFile {
                detail: "truncated".into(),
            });
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

/// The pilot graphs `grid` and `spec` call for, by (bucket, fused count).
fn expected_graphs(
    grid: &BucketGrid,
    spec: &BankSpec,
    fused: &[usize],
) -> Result<BTreeMap<(usize, usize), Graph>> {
    let mut graphs = BTreeMap::new();
    for bucket in 0..grid.len() {
        for &f in fused {
            graphs.insert((bucket, f), spec.pilot(grid, bucket, f).graph()?);
        }
    }
    Ok(graphs)
}

/// The subject of a bank file: its graphs in bank order, so that a bank compiled for another
/// grid or spec is refused before its graphs are parsed.
fn subject<'a>(graphs: impl Iterator<Item = &'a Graph>) -> cache_file::Subject {
    cache_file::subject_of(graphs.map(Graph::to_bytes))
}

impl GraphBank {
    /// Compiles every (bucket, fused count) graph on `npu`.
    pub fn build(npu: &dyn NpuBackend, grid: &BucketGrid, spec: BankSpec) -> Result<Self> {
        grid.validate()?;
        let fused = spec.normalized_fused()?;
        let mut graphs = BTreeMap::new();
        let mut compile_events = Vec::new();
        for bucket in 0..grid.len() {
            for &f in &fused {
                let compiled = npu.compile(&spec.pilot(grid, bucket, f).graph()?)?;
                compile_events.extend_from_slice(compiled.compile_events());
                graphs.insert((bucket, f), compiled);
            }
        }
        Ok(GraphBank {
            spec,
            fused,
            grid: grid.clone(),
            backend: npu.name().to_string(),
            writer: cache_file::writer_of(npu),
            graphs,
            compile_events,
        })
    }

    /// Serializes every compiled graph (the backend must support serialization), sealed for
    /// this bank's backend: the entry count, then per graph its bucket, fused count, length and
    /// the backend's bytes.
    pub fn serialize(&self) -> Result<Vec<u8>> {
        let mut out = (self.graphs.len() as u64).to_le_bytes().to_vec();
        for (&(bucket, fused), g) in &self.graphs {
            let bytes = g.serialize()?;
            out.extend((bucket as u64).to_le_bytes());
            out.extend((fused as u64).to_le_bytes());
            out.extend((bytes.len() as u64).to_le_bytes());
            out.extend(bytes);
        }
        let label = Label {
            kind: FILE_KIND,
            writer: &self.writer,
            subject: subject(self.graphs.values().map(|g| g.graph())),
        };
        Ok(cache_file::seal(&label, &out).map_err(HalError::from)?)
    }

    /// Loads a bank made by [`GraphBank::serialize`], checking that it holds exactly the graphs
    /// `grid` and `spec` call for. A file that is truncated, damaged, of another format,
    /// written by another backend (or another version of it) or compiled for another grid or
    /// spec is refused ([`HalError::CacheFile`]) before `npu` parses any of it.
    pub fn load(
        npu: &dyn NpuBackend,
        grid: &BucketGrid,
        spec: BankSpec,
        bytes: &[u8],
    ) -> Result<Self> {
        let bad = |detail: String| SparseAttnError::BankFile { detail };
        let fused = spec.normalized_fused()?;
        let expected = expected_graphs(grid, &spec, &fused)?;
        let writer = cache_file::writer_of(npu);
        let label = Label {
            kind: FILE_KIND,
            writer: &writer,
            subject: subject(expected.values()),
        };
        let rest = cache_file::open(bytes, &label).map_err(HalError::from)?;
        let mut reader = Reader { rest };
        let count = reader.u64()?;
        let mut graphs = BTreeMap::new();
        let mut compile_events = Vec::new();
        for _ in 0..count {
            let bucket = reader.u64()? as usize;
            let f = reader.u64()? as usize;
            let len = usize::try_from(reader.u64()?).map_err(|_| bad("entry too large".into()))?;
            let Some(want) = expected.get(&(bucket, f)) else {
                return Err(bad(format!(
                    "holds bucket {bucket} with {f} fused heads, not in this grid and spec"
                )));
            };
            let compiled = npu.deserialize(reader.take(len)?)?;
            if compiled.graph() != want {
                return Err(bad(format!(
                    "graph for bucket {bucket}, {f} fused heads is `{}`, expected `{}`",
                    compiled.graph().name(),
                    want.name()
                )));
            }
            compile_events.extend_from_slice(compiled.compile_events());
            graphs.insert((bucket, f), compiled);
        }
        if !reader.rest.is_empty() {
            return Err(bad(format!(
                "{} bytes after the last graph",
                reader.rest.len()
            )));
        }
        if graphs.len() != expected.len() {
            return Err(bad(format!(
                "holds {} graphs, the grid and spec need {}",
                graphs.len(),
                expected.len()
            )));
        }
        Ok(GraphBank {
            spec,
            fused,
            grid: grid.clone(),
            backend: npu.name().to_string(),
            writer,
            graphs,
            compile_events,
        })
    }

    /// The spec.
    pub fn spec(&self) -> &BankSpec {
        &self.spec
    }

    /// The bucket grid.
    pub fn grid(&self) -> &BucketGrid {
        &self.grid
    }

    /// Name of the NPU backend the graphs were compiled on.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// Fused counts, largest first.
    pub fn fused_counts(&self) -> &[usize] {
        &self.fused
    }

    /// Number of compiled graphs.
    pub fn len(&self) -> usize {
        self.graphs.len()
    }

    /// Whether the bank holds no graph.
    pub fn is_empty(&self) -> bool {
        self.graphs.is_empty()
    }

    /// Events of compiling the bank.
    pub fn compile_events(&self) -> &[ProfileEvent] {
        &self.compile_events
    }

    /// Splits `heads` heads into launches of the available fused counts, largest first.
    pub fn split(&self, heads: usize) -> Vec<usize> {
        let mut left = heads;
        let mut out = Vec::new();
        for &f in &self.fused {
            while left >= f {
                out.push(f);
                left -= f;
            }
        }
        out
    }

    /// The compiled graph of `bucket` for `fused` heads, if the bank holds it.
    pub fn graph(&self, bucket: usize, fused: usize) -> Option<&dyn CompiledGraph> {
        self.graphs.get(&(bucket, fused)).map(|g| g.as_ref())
    }

    /// The compiled graph of `bucket` for `fused` heads, for execution.
    pub fn graph_mut(&mut self, bucket: usize, fused: usize) -> Option<&mut dyn CompiledGraph> {
        match self.graphs.get_mut(&(bucket, fused)) {
            Some(g) => Some(g.as_mut()),
            None => None,
        }
    }

    /// Mutable access to the graphs, for execution.
    pub fn graphs_mut(&mut self) -> &mut BTreeMap<(usize, usize), Box<dyn CompiledGraph>> {
        &mut self.graphs
    }
}
