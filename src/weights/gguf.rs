//! GGUF v2/v3 container parser working on an in-memory byte slice (no filesystem, so it runs in
//! wasm). Every length read from the header is checked against the bytes that remain, so a
//! hostile header cannot make the parser allocate more than the file holds.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::weights::quant::GgmlType;

/// A metadata value as stored in GGUF.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type.
    U64(u64),
    /// Any signed integer type.
    I64(i64),
    /// f32 or f64.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string (invalid UTF-8 is replaced).
    Str(String),
    /// An array of values.
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    /// The value as a float, when numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }
    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The value as an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// GGUF dimensions, innermost first (`ne[0]` is the row length).
    pub dims: Vec<usize>,
    /// Storage type.
    pub ty: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: usize,
    /// Byte length of the data.
    pub size: usize,
}

impl TensorInfo {
    /// The shape in row-major (PyTorch) order: outermost first.
    pub fn torch_shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A parsed GGUF header: metadata and the tensor directory.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    /// File format version (2 or 3).
    pub version: u32,
    /// Metadata key/value pairs.
    pub metadata: HashMap<String, Value>,
    /// Tensors by name.
    pub tensors: HashMap<String, TensorInfo>,
    /// Tensor names in file order.
    pub order: Vec<String>,
    /// Each metadata entry's key and byte range in the file, in file order (for rewriting).
    pub metadata_spans: Vec<(String, std::ops::Range<usize>)>,
}

/// The most tensors and metadata entries a file may declare.
const MAX_ENTRIES: u64 = 1 << 20;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                Error::load(format!(
                    "GGUF header is truncated or corrupt: needs {n} bytes at offset {} but the file has {} (re-download the file)",
                    self.pos,
                    self.buf.len()
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u64()?;
        if n > self.remaining() as u64 {
            return Err(Error::load(format!(
                "GGUF string length {n} exceeds the file (corrupt or truncated file)"
            )));
        }
        Ok(String::from_utf8_lossy(self.take(n as usize)?).into_owned())
    }
    fn value(&mut self, ty: u32, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U64(self.u8()? as u64),
            1 => Value::I64(self.u8()? as i8 as i64),
            2 => Value::U64(u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as u64),
            3 => Value::I64(i16::from_le_bytes(self.take(2)?.try_into().unwrap()) as i64),
            4 => Value::U64(self.u32()? as u64),
            5 => Value::I64(self.u32()? as i32 as i64),
            6 => Value::F64(f32::from_le_bytes(self.take(4)?.try_into().unwrap()) as f64),
            7 => Value::Bool(self.u8()? != 0),
            8 => Value::Str(self.string()?),
            9 => {
                if depth > 2 {
                    return Err(Error::load("GGUF metadata arrays nested too deeply"));
                }
                let ety = self.u32()?;
                let n = self.u64()?;
                // Every element takes at least one byte: refuse counts the file cannot hold.
                if n > self.remaining() as u64 {
                    return Err(Error::load(format!(
                        "GGUF array of {n} elements exceeds the file (corrupt file)"
                    )));
                }
                let mut out = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    out.push(self.value(ety, depth + 1)?);
                }
                Value::Array(out)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(self.u64()? as i64),
            12 => Value::F64(f64::from_le_bytes(self.take(8)?.try_into().unwrap())),
            t => return Err(Error::load(format!("unknown GGUF metadata type {t}"))),
        })
    }
}

/// True when the bytes start with the GGUF magic.
pub fn is_gguf(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && &bytes[..4] == b"GGUF"
}

impl GgufHeader {
    /// Parses the header of a whole GGUF file held in memory and checks that every tensor's
    /// data lies inside it.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        if !is_gguf(buf) {
            return Err(Error::load("not a GGUF file (missing the 'GGUF' magic)"));
        }
        let mut r = Reader { buf, pos: 4 };
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::load(format!(
                "GGUF version {version} is not supported (only 2 and 3)"
            )));
        }
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        if n_tensors > MAX_ENTRIES || n_kv > MAX_ENTRIES {
            return Err(Error::load(format!(
                "GGUF header declares {n_tensors} tensors and {n_kv} metadata entries: corrupt file"
            )));
        }
        let mut metadata = HashMap::new();
        let mut metadata_spans = Vec::new();
        for _ in 0..n_kv {
            let start = r.pos;
            let key = r.string()?;
            let ty = r.u32()?;
            let v = r.value(ty, 0)?;
            metadata_spans.push((key.clone(), start..r.pos));
            metadata.insert(key, v);
        }
        let mut infos = Vec::with_capacity(n_tensors.min(4096) as usize);
        for _ in 0..n_tensors {
            let name = r.string()?;
            let nd = r.u32()?;
            if nd == 0 || nd > 4 {
                return Err(Error::load(format!(
                    "tensor '{name}' has {nd} dimensions (1 to 4 allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(nd as usize);
            for _ in 0..nd {
                dims.push(r.u64()?);
            }
            let ty = GgmlType::from_id(r.u32()?)
                .map_err(|e| Error::load(format!("tensor '{name}': {e}")))?;
            let off = r.u64()?;
            infos.push((name, dims, ty, off));
        }
        let align = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .unwrap_or(32) as usize;
        if align == 0 || !align.is_power_of_two() || align > 1 << 16 {
            return Err(Error::load(format!("GGUF alignment {align} is invalid")));
        }
        let data_start = r.pos.div_ceil(align) * align;
        let mut tensors = HashMap::new();
        let mut order = Vec::new();
        for (name, dims, ty, off) in infos {
            let numel = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .filter(|&n| n <= buf.len() as u64 * 8)
                .ok_or_else(|| {
                    Error::load(format!("tensor '{name}' has absurd dimensions {dims:?}"))
                })? as usize;
            if !(dims[0] as usize).is_multiple_of(ty.block_elems()) {
                return Err(Error::load(format!(
                    "tensor '{name}': row length {} is not a multiple of the {:?} block size",
                    dims[0], ty
                )));
            }
            let size = numel / ty.block_elems() * ty.block_bytes();
            let offset = (data_start as u64)
                .checked_add(off)
                .filter(|&o| o.checked_add(size as u64).is_some_and(|e| e <= buf.len() as u64))
                .ok_or_else(|| {
                    Error::load(format!(
                        "tensor '{name}' lies beyond the end of the file: the file is truncated (re-download it)"
                    ))
                })? as usize;
            let dims = dims.into_iter().map(|d| d as usize).collect();
            order.push(name.clone());
            tensors.insert(
                name,
                TensorInfo {
                    dims,
                    ty,
                    offset,
                    size,
                },
            );
        }
        Ok(GgufHeader {
            version,
            metadata,
            tensors,
            order,
            metadata_spans,
        })
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A required unsigned metadata value.
    pub fn req_u64(&self, key: &str) -> Result<u64> {
        self.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::load(format!("GGUF metadata '{key}' is missing")))
    }

    /// A required numeric metadata value.
    pub fn req_f64(&self, key: &str) -> Result<f64> {
        self.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| Error::load(format!("GGUF metadata '{key}' is missing")))
    }

    /// The `general.architecture` string.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(Value::as_str)
    }
}
