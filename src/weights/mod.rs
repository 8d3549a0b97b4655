//! Weight sources: safetensors and GGUF files held in memory, both answering requests for
//! tensors by their Hugging Face name (relative to the text or vision model), as f32 on the host
//! or as stored blocks; the storage a load asks for ([`WeightMode`], [`ModeSource`]).

pub mod blocks;
pub mod gguf;
pub mod names;
pub mod quant;
pub mod requantize;
pub mod safetensors;

pub use self::gguf::{GgufHeader, GgufSource};
pub use self::safetensors::SafetensorsSource;

use crate::error::{Error, Result};
use crate::named::Named;

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

impl Named for WeightMode {
    const NAMED: &'static [(&'static str, WeightMode)] = &[
        ("auto", WeightMode::Auto),
        ("f32", WeightMode::F32),
        ("q8_0", WeightMode::Quantize(quant::GgmlType::Q8_0)),
        ("q4_0", WeightMode::Quantize(quant::GgmlType::Q4_0)),
        ("q4_1", WeightMode::Quantize(quant::GgmlType::Q4_1)),
        ("f32-q8_0", WeightMode::Rounded(quant::GgmlType::Q8_0)),
        ("f32-q4_0", WeightMode::Rounded(quant::GgmlType::Q4_0)),
        ("f32-q4_1", WeightMode::Rounded(quant::GgmlType::Q4_1)),
    ];
}

impl std::str::FromStr for WeightMode {
    type Err = Error;

    /// Parses a name of [`Named::NAMED`].
    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s).ok_or_else(|| {
            Error::load(format!(
                "unknown weight mode '{s}': use auto, f32, q8_0, q4_0, q4_1 or f32-q8_0, f32-q4_0, f32-q4_1"
            ))
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
        let ty = if names::is_embedding_or_head(part, name) {
            quant::GgmlType::Q8_0
        } else {
            ty
        };
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
