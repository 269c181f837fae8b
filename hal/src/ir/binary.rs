//! A graph's compact binary form: the structure as JSON, the constants' data as raw bytes after
//! it, so that a graph carrying weights takes their size once instead of twice as hex digits.
//!
//! Layout: the magic `SAGRAPH\0`, the JSON's length as a little-endian u64, the JSON of the graph
//! with every constant's bytes empty, then every constant's bytes in the graph's order.

use super::Graph;
use crate::error::{HalError, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

const MAGIC: &[u8; 8] = b"SAGRAPH\0";

fn bad(detail: String) -> HalError {
    HalError::invalid_argument("graph bytes", detail)
}

impl Graph {
    /// The graph in its compact binary form ([`Graph::from_bytes`] reads it back).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut skeleton = self.clone();
        for c in &mut skeleton.constants {
            c.bytes = Vec::new();
        }
        let json = serde_json::to_vec(&skeleton).expect("a graph serializes to JSON");
        let data: usize = self.constants.iter().map(|c| c.bytes.len()).sum();
        let mut out = Vec::with_capacity(MAGIC.len() + 8 + json.len() + data);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        for c in &self.constants {
            out.extend_from_slice(&c.bytes);
        }
        out
    }

    /// Reads a graph written by [`Graph::to_bytes`] and validates it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Graph> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("does not start with the graph magic `SAGRAPH`".into()))?;
        let (len, rest) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| bad("ends inside the header length".into()))?;
        let len = usize::try_from(u64::from_le_bytes(*len))
            .ok()
            .filter(|&l| l <= rest.len())
            .ok_or_else(|| {
                bad(format!(
                    "header of {} bytes does not fit",
                    u64::from_le_bytes(*len)
                ))
            })?;
        let (json, mut data) = rest.split_at(len);
        let mut graph: Graph =
            serde_json::from_slice(json).map_err(|e| bad(format!("header: {e}")))?;
        for c in &mut graph.constants {
            let want = graph.values[c.value.index()].desc.size_bytes();
            if data.len() < want {
                return Err(bad(format!(
                    "constant `{}` needs {want} bytes, {} are left",
                    graph.values[c.value.index()].name,
                    data.len()
                )));
            }
            let (mine, later) = data.split_at(want);
            c.bytes = mine.to_vec();
            data = later;
        }
        if !data.is_empty() {
            return Err(bad(format!("{} bytes after the last constant", data.len())));
        }
        graph.validate()?;
        Ok(graph)
    }
}

/// A backend's serialized graph: its own header (format, version, target) as one JSON line,
/// then the graph's binary form.
pub fn with_header<H: Serialize>(header: &H, graph: &Graph) -> Vec<u8> {
    let mut out = serde_json::to_vec(header).expect("a header serializes to JSON");
    out.push(b'\n');
    out.extend_from_slice(&graph.to_bytes());
    out
}

/// The header of bytes made by [`with_header`] (check it first), and a reader of their graph.
pub fn header_of<H: DeserializeOwned>(
    bytes: &[u8],
) -> std::result::Result<(H, GraphBytes<'_>), String> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let header = serde_json::from_slice(&bytes[..end]).map_err(|e| format!("header: {e}"))?;
    Ok((header, GraphBytes(bytes.get(end + 1..).unwrap_or(&[]))))
}

/// The graph part of a backend's serialized graph.
#[derive(Clone, Copy, Debug)]
pub struct GraphBytes<'a>(&'a [u8]);

impl GraphBytes<'_> {
    /// Reads and validates the graph.
    pub fn graph(self) -> Result<Graph> {
        Graph::from_bytes(self.0)
    }
}

#[cfg(test)]
mod tests {
    use crate::ir::{GraphBuilder, OutType};
    use crate::{DType, Graph, TensorDesc};

    fn with_weights() -> Graph {
        let mut b = GraphBuilder::new("w");
        let a = b
            .input("a", TensorDesc::new(DType::F16, [1, 1, 4, 3]))
            .unwrap();
        let data: Vec<u8> = (0..24).collect();
        let w = b
            .constant("w", TensorDesc::new(DType::F16, [1, 1, 3, 4]), data)
            .unwrap();
        let y = b
            .matmul("mm", a, w, false, false, OutType::plain(DType::F16))
            .unwrap();
        b.output(y).unwrap();
        b.build().unwrap()
    }

    #[test]
    fn a_graph_comes_back_with_its_constants_once_in_raw_bytes() {
        let g = with_weights();
        let bytes = g.to_bytes();
        assert_eq!(Graph::from_bytes(&bytes).unwrap(), g);
        // The data follows the header verbatim, not as hex.
        assert!(bytes.ends_with(&(0..24).collect::<Vec<u8>>()));
        let json = serde_json::to_vec(&g).unwrap();
        assert!(bytes.len() < json.len());
    }

    #[test]
    fn damaged_bytes_are_named() {
        let bytes = with_weights().to_bytes();
        let err = |b: &[u8]| Graph::from_bytes(b).unwrap_err().to_string();
        assert!(err(b"JSON{}").contains("magic"));
        assert!(err(&bytes[..12]).contains("header length"));
        assert!(err(&bytes[..bytes.len() - 1]).contains("needs 24 bytes, 23 are left"));
        let mut long = bytes.clone();
        long.push(0);
        assert!(err(&long).contains("1 bytes after the last constant"));
        let mut huge = bytes.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&huge).contains("does not fit"));
    }
}
