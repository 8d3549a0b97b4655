//! GGUF v2/v3 container parser working on an in-memory byte slice (no filesystem, so it runs in
//! wasm): the header and its tensor directory here, the metadata values in [`metadata`], the
//! file as a tensor source in [`source`]. Every length read from the header is checked against
//! the bytes that remain, so a hostile header cannot make the parser allocate more than the
//! file holds.

mod metadata;
mod source;

use std::collections::HashMap;

pub use metadata::Value;
use metadata::{Metadata, Reader};
pub use source::GgufSource;

use crate::error::{Error, Result};
use crate::weights::quant::GgmlType;

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
        let Metadata {
            values: metadata,
            spans: metadata_spans,
        } = Metadata::read(&mut r, n_kv)?;
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
