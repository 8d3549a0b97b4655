//! A GGUF file held in memory as a [`TensorSource`]: tensors requested by their Hugging Face
//! name (mapped by [`crate::weights::names`]), dequantized or as stored blocks, with llama.cpp's
//! Q/K row permutation undone.

use super::{GgufHeader, Value};
use crate::error::{Error, Result};
use crate::weights::names::to_gguf;
use crate::weights::{HostTensor, Part, RawTensor, TensorSource, quant};

/// A GGUF file (llama text model, or llama.cpp's `clip` mmproj for the vision side) as a source.
pub struct GgufSource {
    /// Parsed header.
    pub header: GgufHeader,
    bytes: Vec<u8>,
    heads: usize,
    kv_heads: usize,
}

impl GgufSource {
    /// Parses a GGUF file held in memory.
    pub fn new(bytes: Vec<u8>) -> Result<Self> {
        let header = GgufHeader::parse(&bytes)?;
        let arch = header.architecture().unwrap_or("").to_string();
        // Head counts are needed to undo llama.cpp's Q/K row permutation (text models only).
        let count = |k: &str| {
            header
                .get(&format!("{arch}.attention.{k}"))
                .and_then(Value::as_u64)
        };
        let heads = count("head_count").unwrap_or(0) as usize;
        let kv_heads = count("head_count_kv").map_or(heads, |v| v as usize);
        Ok(GgufSource {
            header,
            bytes,
            heads,
            kv_heads,
        })
    }

    /// Size of the file in bytes.
    pub fn file_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Reads a GGUF tensor by its GGUF name, dequantized, in PyTorch shape.
    pub fn tensor(&self, gguf_name: &str) -> Option<HostTensor> {
        let info = self.header.tensors.get(gguf_name)?;
        let raw = &self.bytes[info.offset..info.offset + info.size];
        Some(HostTensor {
            shape: info.torch_shape(),
            data: quant::dequantize(info.ty, raw),
        })
    }
}

/// Undoes llama.cpp's row permutation of Q/K weights (it converts rotate-half RoPE into the
/// interleaved form): rows `[h, 2, d/2]` were stored as `[h, d/2, 2]`. Works on rows of any
/// element type (f32 values or quantized blocks).
fn unpermute<T: Copy + Default>(data: &[T], rows: usize, heads: usize) -> Result<Vec<T>> {
    if heads == 0
        || rows == 0
        || !rows.is_multiple_of(2 * heads)
        || !data.len().is_multiple_of(rows)
    {
        return Err(Error::weights(format!(
            "Q/K weight with {rows} rows does not split into {heads} heads"
        )));
    }
    let cols = data.len() / rows;
    let half = rows / heads / 2;
    let mut out = vec![T::default(); data.len()];
    for hh in 0..heads {
        for i in 0..half {
            for two in 0..2 {
                let src = hh * 2 * half + i * 2 + two; // stored order [h, d/2, 2]
                let dst = hh * 2 * half + two * half + i; // wanted order [h, 2, d/2]
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    Ok(out)
}

fn unpermute_rows(t: HostTensor, heads: usize) -> Result<HostTensor> {
    let data = unpermute(&t.data, t.shape[0], heads)?;
    Ok(HostTensor {
        shape: t.shape,
        data,
    })
}

impl GgufSource {
    /// Heads for Q/K row unpermutation, when `name` is a text Q or K projection.
    fn permuted_heads(&self, part: Part, name: &str) -> Option<usize> {
        match (part, name.rsplit('.').nth(1)) {
            (Part::Text, Some("q_proj")) => Some(self.heads),
            (Part::Text, Some("k_proj")) => Some(self.kv_heads),
            _ => None,
        }
    }
}

impl TensorSource for GgufSource {
    fn get_raw(&self, part: Part, name: &str) -> Result<Option<RawTensor>> {
        let Some(gname) = to_gguf(part, name) else {
            return Ok(None);
        };
        let Some(info) = self.header.tensors.get(&gname) else {
            return Ok(None);
        };
        let shape = info.torch_shape();
        if shape.len() != 2 {
            return Ok(None);
        }
        let raw = &self.bytes[info.offset..info.offset + info.size];
        let data = match self.permuted_heads(part, name) {
            Some(h) => unpermute(raw, shape[0], h)?,
            None => raw.to_vec(),
        };
        Ok(Some(RawTensor {
            ty: info.ty,
            shape,
            data,
        }))
    }

    fn get(&self, part: Part, name: &str) -> Result<Option<HostTensor>> {
        let Some(gname) = to_gguf(part, name) else {
            return Ok(None);
        };
        let Some(t) = self.tensor(&gname) else {
            return Ok(None);
        };
        match self.permuted_heads(part, name) {
            Some(h) => unpermute_rows(t, h).map(Some),
            None => Ok(Some(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // 2 heads, head dim 4, 1 column: rows 0..8
        let heads = 2;
        let orig: Vec<f32> = (0..8).map(|v| v as f32).collect();
        // llama.cpp: reshape(h, 2, d/2).swapaxes(1, 2)
        let mut perm = vec![0f32; 8];
        for hh in 0..heads {
            for two in 0..2 {
                for i in 0..2 {
                    perm[hh * 4 + i * 2 + two] = orig[hh * 4 + two * 2 + i];
                }
            }
        }
        let t = HostTensor {
            shape: vec![8, 1],
            data: perm,
        };
        assert_eq!(unpermute_rows(t, heads).unwrap().data, orig);
    }
}
