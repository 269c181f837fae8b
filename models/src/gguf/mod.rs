//! A reader of GGUF files (versions 2 and 3): metadata, tensor directory and tensor data, with
//! dequantization of the types SmolLM2 uses (F32, F16, Q4_1, Q8_0) and BF16/Q4_0 besides.
//!
//! Every count and offset read from the file is checked against the bytes that remain before it
//! is used, so a corrupt or hostile file is a typed error, never a panic or a huge allocation.

use crate::error::{ModelError, Result};
use half::{bf16, f16};
use std::collections::BTreeMap;

mod writer;

pub use writer::GgufWriter;

const MAGIC: &[u8; 4] = b"GGUF";
/// Dimensions a GGML tensor can have.
pub const MAX_DIMS: usize = 4;
/// Nesting depth of metadata arrays accepted.
const MAX_ARRAY_DEPTH: usize = 4;
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Unsigned integer (u8, u16, u32, u64).
    U64(u64),
    /// Signed integer (i8, i16, i32, i64).
    I64(i64),
    /// Float (f32, f64).
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string (invalid UTF-8 is replaced).
    Str(String),
    /// Array of values.
    Array(Vec<Value>),
}

impl Value {
    /// As an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// As a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }

    /// As a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// As an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// GGML tensor element types this reader knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorType {
    /// f32.
    F32,
    /// f16.
    F16,
    /// 32 weights: f16 scale + 16 bytes of nibbles, x = d·(q − 8).
    Q4_0,
    /// 32 weights: f16 scale, f16 minimum, 16 bytes of nibbles, x = d·q + m.
    Q4_1,
    /// 32 weights: f16 scale + 32 × i8, x = d·q.
    Q8_0,
    /// bfloat16.
    BF16,
}

impl TensorType {
    /// Every type this reader knows.
    pub const ALL: [TensorType; 6] = [
        TensorType::F32,
        TensorType::F16,
        TensorType::Q4_0,
        TensorType::Q4_1,
        TensorType::Q8_0,
        TensorType::BF16,
    ];

    fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// GGML's code of the type in a GGUF tensor directory.
    pub fn code(self) -> u32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Q4_0 => 2,
            TensorType::Q4_1 => 3,
            TensorType::Q8_0 => 8,
            TensorType::BF16 => 30,
        }
    }

    /// (elements per block, bytes per block).
    pub fn block(self) -> (u64, u64) {
        match self {
            TensorType::F32 => (1, 4),
            TensorType::F16 | TensorType::BF16 => (1, 2),
            TensorType::Q4_0 => (32, 18),
            TensorType::Q4_1 => (32, 20),
            TensorType::Q8_0 => (32, 34),
        }
    }
}

/// One entry of the tensor directory.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, innermost first (GGML order): `[in, out]` for a weight matrix.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: TensorType,
    /// Byte offset of the data from the start of the file.
    pub offset: u64,
    /// Bytes of data.
    pub bytes: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file held in memory.
#[derive(Clone, Debug)]
pub struct Gguf {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata, by key.
    pub metadata: BTreeMap<String, Value>,
    /// The tensor directory, in file order.
    pub tensors: Vec<TensorInfo>,
    data: Vec<u8>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n > remaining {
            return Err(ModelError::gguf(
                self.pos,
                format!("{what} needs {n} bytes but only {remaining} remain"),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        Ok(String::from_utf8_lossy(self.take(n, what)?).into_owned())
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    /// Checks that `count` items of at least `min_size` bytes each can still follow.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<()> {
        if count.saturating_mul(min_size) > self.remaining() {
            return Err(ModelError::gguf(
                self.pos,
                format!(
                    "{what}: {count} entries cannot fit in the {} bytes that remain",
                    self.remaining()
                ),
            ));
        }
        Ok(())
    }

    fn value(&mut self, ty: u32, depth: usize, key: &str) -> Result<Value> {
        let v = match ty {
            0 => Value::U64(u64::from(self.take(1, key)?[0])),
            1 => Value::I64(i64::from(self.take(1, key)?[0] as i8)),
            2 => Value::U64(u64::from(u16::from_le_bytes(
                self.take(2, key)?.try_into().expect("2"),
            ))),
            3 => Value::I64(i64::from(i16::from_le_bytes(
                self.take(2, key)?.try_into().expect("2"),
            ))),
            4 => Value::U64(u64::from(self.u32(key)?)),
            5 => Value::I64(i64::from(self.u32(key)? as i32)),
            6 => Value::F64(f64::from(f32::from_bits(self.u32(key)?))),
            7 => match self.take(1, key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(ModelError::gguf(
                        self.pos - 1,
                        format!("metadata `{key}`: boolean byte {b} is neither 0 nor 1"),
                    ))
                }
            },
            8 => Value::Str(self.string(key)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(ModelError::gguf(
                        self.pos,
                        format!("metadata `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                    ));
                }
                let elem = self.u32(key)?;
                let n = self.u64(key)?;
                self.check_count(n, min_value_size(elem), &format!("metadata array `{key}`"))?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1, key)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(self.u64(key)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(key)?)),
            t => {
                return Err(ModelError::gguf(
                    self.pos,
                    format!("metadata `{key}`: unknown value type {t}"),
                ))
            }
        };
        Ok(v)
    }
}

/// The fewest bytes a value of type `ty` takes (unknown types: 1, refused when read).
fn min_value_size(ty: u32) -> u64 {
    match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => 1,
    }
}

impl Gguf {
    /// Reads and parses a file.
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::Io {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Self::parse(bytes)
    }

    /// Parses a whole file held in memory.
    pub fn parse(bytes: Vec<u8>) -> Result<Self> {
        let mut c = Cursor {
            bytes: &bytes,
            pos: 0,
        };
        let (version, n_tensors, n_kv) = header(&mut c)?;
        let metadata = metadata(&mut c, n_kv)?;
        let directory = directory(&mut c, n_tensors)?;
        let alignment = alignment(&metadata)?;
        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let tensors = place(directory, data_start, alignment, bytes.len() as u64)?;
        Ok(Gguf {
            version,
            metadata,
            tensors,
            data: bytes,
        })
    }

    /// The metadata value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| ModelError::Missing {
                what: format!("tensor `{name}`"),
            })
    }

    /// The raw bytes of a tensor.
    pub fn raw(&self, info: &TensorInfo) -> &[u8] {
        &self.data[info.offset as usize..(info.offset + info.bytes) as usize]
    }

    /// The tensor called `name` as f32, row-major over the GGML dims reversed (`[out, in]`).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.tensor(name)?;
        Ok(dequantize(info.ty, self.raw(info)))
    }
}

/// Dequantizes whole blocks of `ty` to f32.
pub fn dequantize(ty: TensorType, raw: &[u8]) -> Vec<f32> {
    let h = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
    match ty {
        TensorType::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4")))
            .collect(),
        TensorType::F16 => raw.chunks_exact(2).map(h).collect(),
        TensorType::BF16 => raw
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        TensorType::Q4_0 => {
            let mut out = Vec::with_capacity(raw.len() / 18 * 32);
            for b in raw.chunks_exact(18) {
                let d = h(&b[..2]);
                let qs = &b[2..];
                out.extend(qs.iter().map(|&q| d * (f32::from(q & 0xF) - 8.0)));
                out.extend(qs.iter().map(|&q| d * (f32::from(q >> 4) - 8.0)));
            }
            out
        }
        TensorType::Q4_1 => {
            let mut out = Vec::with_capacity(raw.len() / 20 * 32);
            for b in raw.chunks_exact(20) {
                let (d, m) = (h(&b[..2]), h(&b[2..4]));
                let qs = &b[4..];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0xF) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
            out
        }
        TensorType::Q8_0 => {
            let mut out = Vec::with_capacity(raw.len() / 34 * 32);
            for b in raw.chunks_exact(34) {
                let d = h(&b[..2]);
                out.extend(b[2..].iter().map(|&q| d * f32::from(q as i8)));
            }
            out
        }
    }
}

/// The magic and version; the tensor and metadata counts.
fn header(c: &mut Cursor<'_>) -> Result<(u32, u64, u64)> {
    if c.take(4, "magic")? != MAGIC {
        return Err(ModelError::gguf(0, "not a GGUF file (magic is not `GGUF`)"));
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(ModelError::gguf(
            4,
            format!("GGUF version {version} is not supported (2 and 3 are)"),
        ));
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;
    Ok((version, n_tensors, n_kv))
}

/// `n_kv` metadata pairs, each key once.
fn metadata(c: &mut Cursor<'_>, n_kv: u64) -> Result<BTreeMap<String, Value>> {
    // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes.
    c.check_count(n_kv, 13, "metadata")?;
    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = c.string("metadata key")?;
        let ty = c.u32("metadata type")?;
        let v = c.value(ty, 0, &key)?;
        if metadata.insert(key.clone(), v).is_some() {
            return Err(ModelError::gguf(
                c.pos,
                format!("metadata key `{key}` appears twice"),
            ));
        }
    }
    Ok(metadata)
}

/// One tensor's directory entry: name, dims, type and offset into the data section.
type DirectoryEntry = (String, Vec<u64>, TensorType, u64);

/// The tensor directory of `n_tensors` entries.
fn directory(c: &mut Cursor<'_>, n_tensors: u64) -> Result<Vec<DirectoryEntry>> {
    // A tensor entry takes at least 8 (name length) + 4 (dims) + 4 (type) + 8 (offset).
    c.check_count(n_tensors, 24, "tensor directory")?;
    let mut infos = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = c.string("tensor name")?;
        let n_dims = c.u32("tensor dims")? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(ModelError::gguf(
                c.pos,
                format!("tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(c.u64("tensor dim")?);
        }
        let code = c.u32("tensor type")?;
        let ty = TensorType::from_code(code).ok_or_else(|| {
            ModelError::gguf(
                c.pos,
                format!("tensor `{name}` has GGML type {code}, which this reader does not support"),
            )
        })?;
        let offset = c.u64("tensor offset")?;
        infos.push((name, dims, ty, offset));
    }
    Ok(infos)
}

/// The data section's alignment: `general.alignment`, a power of two up to 1 MiB, or the default.
fn alignment(metadata: &BTreeMap<String, Value>) -> Result<u64> {
    match metadata.get("general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => Ok(a),
            _ => Err(ModelError::gguf(
                0,
                format!("general.alignment {v:?} is not a power of two up to 1 MiB"),
            )),
        },
    }
}

/// Every directory entry placed in the file: unique names, whole blocks, aligned, inside the
/// `file_len` bytes.
fn place(
    directory: Vec<DirectoryEntry>,
    data_start: u64,
    alignment: u64,
    file_len: u64,
) -> Result<Vec<TensorInfo>> {
    let mut tensors = Vec::with_capacity(directory.len());
    let mut names = std::collections::BTreeSet::new();
    for (name, dims, ty, offset) in directory {
        if !names.insert(name.clone()) {
            return Err(ModelError::gguf(
                0,
                format!("tensor `{name}` appears twice"),
            ));
        }
        let elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                ModelError::gguf(
                    0,
                    format!("tensor `{name}` has dims {dims:?}: empty or overflowing"),
                )
            })?;
        let (per_block, block_bytes) = ty.block();
        if dims[0] % per_block != 0 {
            return Err(ModelError::gguf(
                0,
                format!("tensor `{name}`: {ty:?} needs rows that are multiples of {per_block}, dims are {dims:?}"),
            ));
        }
        let size = (elements / per_block).checked_mul(block_bytes);
        let start = data_start.checked_add(offset);
        let end = start.zip(size).and_then(|(s, n)| s.checked_add(n));
        match (start, size, end) {
            (Some(start), Some(size), Some(end)) if end <= file_len && offset % alignment == 0 => {
                tensors.push(TensorInfo {
                    name,
                    dims,
                    ty,
                    offset: start,
                    bytes: size,
                })
            }
            _ => {
                return Err(ModelError::gguf(
                    0,
                    format!(
                        "tensor `{name}` ({ty:?} {dims:?}) at data offset {offset} does not lie aligned ({alignment}) inside the {file_len}-byte file"
                    ),
                ))
            }
        }
    }
    Ok(tensors)
}
