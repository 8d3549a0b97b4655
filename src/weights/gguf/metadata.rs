//! GGUF metadata: the typed values of the header's key/value section and the bounds-checked
//! little-endian reader the header parser reads them (and the tensor directory) with.

use std::collections::HashMap;
use std::ops::Range;

use crate::error::{Error, Result};

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

/// A cursor over the file's bytes; every read is checked against the bytes that remain.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
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
    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub(super) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub(super) fn string(&mut self) -> Result<String> {
        let n = self.u64()?;
        if n > self.remaining() as u64 {
            return Err(Error::load(format!(
                "GGUF string length {n} exceeds the file (corrupt or truncated file)"
            )));
        }
        Ok(String::from_utf8_lossy(self.take(n as usize)?).into_owned())
    }
    pub(super) fn value(&mut self, ty: u32, depth: u32) -> Result<Value> {
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

/// The header's key/value section: each value by key, and each entry's key and byte range in
/// file order (for rewriting the file entry by entry).
pub(super) struct Metadata {
    /// Values by key.
    pub(super) values: HashMap<String, Value>,
    /// Each entry's key and byte range, in file order.
    pub(super) spans: Vec<(String, Range<usize>)>,
}

impl Metadata {
    /// Reads `n` key/value entries at the reader's position.
    pub(super) fn read(r: &mut Reader, n: u64) -> Result<Self> {
        let mut values = HashMap::new();
        let mut spans = Vec::new();
        for _ in 0..n {
            let start = r.pos;
            let key = r.string()?;
            let ty = r.u32()?;
            let v = r.value(ty, 0)?;
            spans.push((key.clone(), start..r.pos));
            values.insert(key, v);
        }
        Ok(Metadata { values, spans })
    }
}
