//! A GGUF (version 3) writer: metadata and tensors in, a file the reader — and llama.cpp —
//! reads back. Tests build small models with it; users can build their own.

use super::{TensorType, Value, DEFAULT_ALIGNMENT};
use crate::error::{ModelError, Result};
use std::path::Path;

/// A GGUF file being assembled.
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<Tensor>,
}

#[derive(Clone, Debug)]
struct Tensor {
    name: String,
    dims: Vec<u64>,
    ty: TensorType,
    bytes: Vec<u8>,
}

/// GGUF value type codes.
mod code {
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STR: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets metadata `key` (integers are written as 32-bit when they fit, floats as f32 when
    /// exact, as llama.cpp writes them).
    pub fn metadata(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Removes metadata `key`, if present.
    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self
    }

    /// Adds an f32 tensor of `shape` (outermost first, as the weight's rows × columns).
    pub fn tensor_f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<&mut Self> {
        let elements: usize = shape.iter().product();
        if elements != data.len() {
            return Err(ModelError::InvalidArgument {
                argument: "data",
                detail: format!(
                    "tensor `{name}` of shape {shape:?} needs {elements} values, got {}",
                    data.len()
                ),
            });
        }
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor_raw(name, dims, TensorType::F32, bytes)
    }

    /// Adds a tensor of GGML-ordered `dims` (innermost first) whose encoded data is `bytes`.
    pub fn tensor_raw(
        &mut self,
        name: &str,
        dims: Vec<u64>,
        ty: TensorType,
        bytes: Vec<u8>,
    ) -> Result<&mut Self> {
        let (per_block, block_bytes) = ty.block();
        let elements: u64 = dims.iter().product();
        let expected = elements.div_ceil(per_block) * block_bytes;
        if dims.is_empty() || dims.len() > super::MAX_DIMS || bytes.len() as u64 != expected {
            return Err(ModelError::InvalidArgument {
                argument: "bytes",
                detail: format!(
                    "tensor `{name}`: {ty:?} dims {dims:?} need {expected} bytes in 1 to {} \
                     dimensions, got {} bytes",
                    super::MAX_DIMS,
                    bytes.len()
                ),
            });
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(ModelError::InvalidArgument {
                argument: "name",
                detail: format!("tensor `{name}` is already in the file"),
            });
        }
        self.tensors.push(Tensor {
            name: name.to_string(),
            dims,
            ty,
            bytes,
        });
        Ok(self)
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            string(&mut out, key);
            let ty = type_code(value);
            out.extend(ty.to_le_bytes());
            encode(&mut out, value, ty, key)?;
        }
        let align = DEFAULT_ALIGNMENT;
        let mut offset = 0u64;
        for t in &self.tensors {
            string(&mut out, &t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            t.dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(t.ty.code().to_le_bytes());
            out.extend(offset.to_le_bytes());
            offset = (offset + t.bytes.len() as u64).next_multiple_of(align);
        }
        for t in &self.tensors {
            pad(&mut out, align);
            out.extend(&t.bytes);
        }
        Ok(out)
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_bytes()?).map_err(|e| ModelError::Io {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }
}

fn pad(out: &mut Vec<u8>, align: u64) {
    out.resize((out.len() as u64).next_multiple_of(align) as usize, 0);
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// The narrowest GGUF type that holds `value` (for arrays: that holds every element).
fn type_code(value: &Value) -> u32 {
    match value {
        Value::U64(v) if u32::try_from(*v).is_ok() => code::U32,
        Value::U64(_) => code::U64,
        Value::I64(v) if i32::try_from(*v).is_ok() => code::I32,
        Value::I64(_) => code::I64,
        Value::F64(v) if f64::from(*v as f32) == *v || v.is_nan() => code::F32,
        Value::F64(_) => code::F64,
        Value::Bool(_) => code::BOOL,
        Value::Str(_) => code::STR,
        Value::Array(_) => code::ARRAY,
    }
}

/// The one element type of an array: the widest of its elements' types within one family.
fn element_code(items: &[Value], key: &str) -> Result<u32> {
    let mut widest: Option<u32> = None;
    for item in items {
        let c = type_code(item);
        widest = Some(match (widest, c) {
            (None, c) => c,
            (Some(w), c) if w == c => w,
            (Some(code::U32 | code::U64), code::U32 | code::U64) => code::U64,
            (Some(code::I32 | code::I64), code::I32 | code::I64) => code::I64,
            (Some(code::F32 | code::F64), code::F32 | code::F64) => code::F64,
            (Some(w), c) => {
                return Err(ModelError::InvalidArgument {
                    argument: "value",
                    detail: format!(
                        "metadata `{key}`: an array mixes GGUF value types {w} and {c}"
                    ),
                })
            }
        });
    }
    Ok(widest.unwrap_or(code::U32))
}

/// Writes `value` as type `ty`.
fn encode(out: &mut Vec<u8>, value: &Value, ty: u32, key: &str) -> Result<()> {
    match (value, ty) {
        (Value::U64(v), code::U32) => out.extend((*v as u32).to_le_bytes()),
        (Value::U64(v), code::U64) => out.extend(v.to_le_bytes()),
        (Value::I64(v), code::I32) => out.extend((*v as i32).to_le_bytes()),
        (Value::I64(v), code::I64) => out.extend(v.to_le_bytes()),
        (Value::F64(v), code::F32) => out.extend((*v as f32).to_le_bytes()),
        (Value::F64(v), code::F64) => out.extend(v.to_le_bytes()),
        (Value::Bool(v), code::BOOL) => out.push(u8::from(*v)),
        (Value::Str(s), code::STR) => string(out, s),
        (Value::Array(items), code::ARRAY) => {
            let elem = element_code(items, key)?;
            out.extend(elem.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                let elem = if matches!(item, Value::Array(_)) {
                    code::ARRAY
                } else {
                    elem
                };
                encode(out, item, elem, key)?;
            }
        }
        _ => unreachable!("type codes come from type_code and element_code"),
    }
    Ok(())
}
