//! Weight sources: safetensors and GGUF files held in memory, both answering requests for
//! tensors by their Hugging Face name (relative to the text or vision model), as f32 on the host.

pub mod blocks;
pub mod gguf;
pub mod quant;
pub mod requantize;
pub mod safetensors;

pub use self::gguf::GgufHeader;
pub use self::safetensors::SafetensorsSource;

use crate::error::{Error, Result};

/// A tensor on the host in row-major order (PyTorch shape).
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Values in row-major order.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Checks the shape, naming the tensor in the error.
    pub fn expect_shape(self, name: &str, shape: &[usize]) -> Result<Self> {
        if self.shape != shape {
            return Err(Error::weights(format!(
                "tensor '{name}' has shape {:?}, the config needs {:?} (weights and config do not match)",
                self.shape, shape
            )));
        }
        Ok(self)
    }

    /// Transposes a 2-D tensor (used to store Linear weights as [in, out]).
    pub fn transposed(&self) -> HostTensor {
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut out = vec![0f32; r * c];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = self.data[i * c + j];
            }
        }
        HostTensor {
            shape: vec![c, r],
            data: out,
        }
    }
}

/// A tensor still in its file's storage type (GGUF blocks), in PyTorch shape.
#[derive(Debug, Clone)]
pub struct RawTensor {
    /// Storage type.
    pub ty: quant::GgmlType,
    /// Shape, outermost first (a matrix is `[rows, cols]`, blocks run along a row).
    pub shape: Vec<usize>,
    /// The stored bytes.
    pub data: Vec<u8>,
}

/// How a model's matrices are stored once loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightMode {
    /// Keep the file's quantized blocks where a kernel exists (CPU), else f32.
    #[default]
    Auto,
    /// Dequantize everything to f32 (the reference for quantized runs).
    F32,
    /// Quantize every matrix whose rows split into 32-value blocks to this type on load.
    Quantize(quant::GgmlType),
    /// The values [`WeightMode::Quantize`] would give, dequantized and kept as f32: the
    /// reference that separates a quantized run's kernel error from its rounding error.
    Rounded(quant::GgmlType),
}

impl WeightMode {
    /// Parses `auto`, `f32`, `q8_0`, `q4_0`, `q4_1`, or `f32-q8_0`, `f32-q4_0`, `f32-q4_1`
    /// ([`WeightMode::Rounded`]).
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(t) = s.strip_prefix("f32-")
            && let Ok(WeightMode::Quantize(ty)) = Self::parse(t)
        {
            return Ok(WeightMode::Rounded(ty));
        }
        Ok(match s {
            "auto" => WeightMode::Auto,
            "f32" => WeightMode::F32,
            "q8_0" => WeightMode::Quantize(quant::GgmlType::Q8_0),
            "q4_0" => WeightMode::Quantize(quant::GgmlType::Q4_0),
            "q4_1" => WeightMode::Quantize(quant::GgmlType::Q4_1),
            _ => {
                return Err(Error::load(format!(
                    "unknown weight mode '{s}': use auto, f32, q8_0, q4_0, q4_1 or f32-q8_0, f32-q4_0, f32-q4_1"
                )));
            }
        })
    }
}

/// How a model is loaded: its matrices' storage and where quantized blocks live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The matrices' storage.
    pub mode: WeightMode,
    /// Keep quantized blocks in device tensors (the WebGPU path) even on the CPU backend, where
    /// they would stay host blocks for taskvec's kernels: how tests run the WebGPU path natively.
    pub device_blocks: bool,
    /// What quantized host blocks are multiplied with: f32 activations (the reference) or
    /// activations quantized to 8 bits per product (integer dot products).
    pub activations: crate::model::qmatmul::Activations,
}

/// The part of a checkpoint a tensor name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The language model (names like `layers.0.self_attn.q_proj.weight`, `lm_head.weight`).
    Text,
    /// The vision encoder (names like `encoder.layers.0.mlp.fc1.weight`).
    Vision,
    /// The connector (`modality_projection.proj.weight`).
    Connector,
}

/// Anything that can hand out tensors by their Hugging Face name.
pub trait TensorSource {
    /// The tensor with this name in this part, or `None` when absent.
    fn get(&self, part: Part, name: &str) -> Result<Option<HostTensor>>;

    /// The tensor in its stored (quantized) form, when the source keeps one.
    fn get_raw(&self, _part: Part, _name: &str) -> Result<Option<RawTensor>> {
        Ok(None)
    }

    /// Whether quantized blocks go into device tensors (the WebGPU path) even on the CPU backend,
    /// where they would otherwise stay host blocks for taskvec's kernels: how tests run the
    /// WebGPU path natively ([`LoadOptions::device_blocks`]).
    fn device_blocks(&self) -> bool {
        false
    }

    /// The activation path for quantized host blocks ([`LoadOptions::activations`]).
    fn activations(&self) -> crate::model::qmatmul::Activations {
        crate::model::qmatmul::Activations::F32
    }

    /// The tensor, or an error naming it when absent.
    fn require(&self, part: Part, name: &str) -> Result<HostTensor> {
        self.get(part, name)?.ok_or_else(|| {
            Error::weights(format!(
                "tensor '{name}' ({part:?}) is missing: the file is not a complete model of this architecture"
            ))
        })
    }
}

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
                .and_then(gguf::Value::as_u64)
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

/// Maps a Hugging Face llama name to its llama.cpp GGUF name.
fn gguf_text_name(name: &str) -> Option<String> {
    let fixed = match name {
        "embed_tokens.weight" => Some("token_embd.weight"),
        "norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = name.strip_prefix("layers.")?;
    let (idx, tail) = rest.split_once('.')?;
    let t = match tail {
        "input_layernorm.weight" => "attn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{idx}.{t}"))
}

/// Maps a Hugging Face SigLIP / connector name to llama.cpp's mmproj name.
fn gguf_vision_name(part: Part, name: &str) -> Option<String> {
    if part == Part::Connector {
        return (name == "modality_projection.proj.weight").then(|| "mm.model.fc.weight".into());
    }
    let fixed = match name {
        "embeddings.patch_embedding.weight" => Some("v.patch_embd.weight"),
        "embeddings.patch_embedding.bias" => Some("v.patch_embd.bias"),
        "embeddings.position_embedding.weight" => Some("v.position_embd.weight"),
        "post_layernorm.weight" => Some("v.post_ln.weight"),
        "post_layernorm.bias" => Some("v.post_ln.bias"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = name.strip_prefix("encoder.layers.")?;
    let (idx, tail) = rest.split_once('.')?;
    let (module, kind) = tail.rsplit_once('.')?;
    let m = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.out_proj" => "attn_out",
        "layer_norm1" => "ln1",
        "layer_norm2" => "ln2",
        "mlp.fc1" => "ffn_up",
        "mlp.fc2" => "ffn_down",
        _ => return None,
    };
    Some(format!("v.blk.{idx}.{m}.{kind}"))
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

fn unpermute_row_bytes(raw: &[u8], rows: usize, heads: usize) -> Result<Vec<u8>> {
    unpermute(raw, rows, heads)
}

impl GgufSource {
    fn gguf_name(part: Part, name: &str) -> Option<String> {
        match part {
            Part::Text => gguf_text_name(name),
            _ => gguf_vision_name(part, name),
        }
    }

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
        let Some(gname) = Self::gguf_name(part, name) else {
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
            Some(h) => unpermute_row_bytes(raw, shape[0], h)?,
            None => raw.to_vec(),
        };
        Ok(Some(RawTensor {
            ty: info.ty,
            shape,
            data,
        }))
    }

    fn get(&self, part: Part, name: &str) -> Result<Option<HostTensor>> {
        let Some(gname) = Self::gguf_name(part, name) else {
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

/// Several sources consulted in order (e.g. a text GGUF plus an mmproj GGUF).
pub struct Sources(pub Vec<Box<dyn TensorSource>>);

impl TensorSource for Sources {
    fn get(&self, part: Part, name: &str) -> Result<Option<HostTensor>> {
        for s in &self.0 {
            if let Some(t) = s.get(part, name)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    fn get_raw(&self, part: Part, name: &str) -> Result<Option<RawTensor>> {
        for s in &self.0 {
            if let Some(t) = s.get_raw(part, name)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }
}

/// Whether a tensor of this (row-major) shape is quantized by [`WeightMode::Quantize`]: a
/// matrix whose rows split into 32-value blocks.
pub fn quantizes_on_load(shape: &[usize]) -> bool {
    shape.len() == 2 && shape[1].is_multiple_of(32)
}

/// A source seen through [`LoadOptions`]: [`WeightMode::F32`] hides the stored blocks,
/// `Quantize` makes blocks of the chosen type from the f32 values of every matrix whose rows
/// split into 32-value blocks, and `device_blocks` is passed on.
pub struct ModeSource<'a> {
    /// The underlying source.
    pub inner: &'a dyn TensorSource,
    /// The storage and placement wanted.
    pub opts: LoadOptions,
}

impl ModeSource<'_> {
    /// `name` quantized to `ty` (the embedding / LM head to Q8_0, as llama.cpp does for its
    /// 4-bit types), when it is a matrix whose rows split into 32-value blocks.
    fn quantized(&self, part: Part, name: &str, ty: quant::GgmlType) -> Result<Option<RawTensor>> {
        let Some(t) = self.inner.get(part, name)? else {
            return Ok(None);
        };
        if !quantizes_on_load(&t.shape) {
            return Ok(None);
        }
        let head = matches!(name, "embed_tokens.weight" | "lm_head.weight");
        let ty = if head { quant::GgmlType::Q8_0 } else { ty };
        Ok(Some(RawTensor {
            ty,
            data: quant::quantize(ty, &t.data)?,
            shape: t.shape,
        }))
    }
}

impl TensorSource for ModeSource<'_> {
    fn device_blocks(&self) -> bool {
        self.opts.device_blocks
    }

    fn activations(&self) -> crate::model::qmatmul::Activations {
        self.opts.activations
    }

    fn get(&self, part: Part, name: &str) -> Result<Option<HostTensor>> {
        if let WeightMode::Rounded(ty) = self.opts.mode
            && let Some(raw) = self.quantized(part, name, ty)?
        {
            return Ok(Some(HostTensor {
                data: quant::dequantize(raw.ty, &raw.data),
                shape: raw.shape,
            }));
        }
        self.inner.get(part, name)
    }

    fn get_raw(&self, part: Part, name: &str) -> Result<Option<RawTensor>> {
        match self.opts.mode {
            WeightMode::Auto => self.inner.get_raw(part, name),
            WeightMode::F32 | WeightMode::Rounded(_) => Ok(None),
            WeightMode::Quantize(ty) => self.quantized(part, name, ty),
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

    #[test]
    fn names_map_both_ways() {
        assert_eq!(
            gguf_text_name("layers.3.mlp.down_proj.weight").unwrap(),
            "blk.3.ffn_down.weight"
        );
        assert_eq!(
            gguf_vision_name(Part::Vision, "encoder.layers.1.self_attn.out_proj.bias").unwrap(),
            "v.blk.1.attn_out.bias"
        );
        assert!(gguf_text_name("layers.x").is_none());
    }
}
