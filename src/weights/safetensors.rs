//! Safetensors checkpoints (F32/F16/BF16) held in memory, with Hugging Face names for a plain
//! Llama (`model.*`) or an Idefics3 model (`model.text_model.*`, `model.vision_model.*`).

use ::safetensors::{Dtype, SafeTensors};
use half::{bf16, f16};

use super::{HostTensor, Part, TensorSource};
use crate::error::{Error, Result};

/// One or more safetensors files (sharded checkpoints) in memory.
pub struct SafetensorsSource {
    files: Vec<Vec<u8>>,
}

impl SafetensorsSource {
    /// Validates the headers of the given files and keeps them.
    pub fn new(files: Vec<Vec<u8>>) -> Result<Self> {
        for f in &files {
            SafeTensors::deserialize(f).map_err(|e| {
                Error::load(format!(
                    "not a valid safetensors file ({e}); it may be truncated"
                ))
            })?;
        }
        Ok(SafetensorsSource { files })
    }

    /// Total size of the files.
    pub fn file_bytes(&self) -> usize {
        self.files.iter().map(Vec::len).sum()
    }

    /// The storage types of its tensors, e.g. `f32` or `bf16+f32`.
    pub fn storage_types(&self) -> String {
        let mut types: Vec<String> = Vec::new();
        for f in &self.files {
            if let Ok(st) = SafeTensors::deserialize(f) {
                types.extend(
                    st.tensors()
                        .iter()
                        .map(|(_, v)| format!("{:?}", v.dtype()).to_lowercase()),
                );
            }
        }
        types.sort_unstable();
        types.dedup();
        types.join("+")
    }

    /// All tensor names in the files.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.files {
            if let Ok(st) = SafeTensors::deserialize(f) {
                out.extend(st.names().into_iter().map(String::from));
            }
        }
        out
    }

    /// A tensor by its full name, converted to f32.
    pub fn tensor(&self, full: &str) -> Result<Option<HostTensor>> {
        for f in &self.files {
            let st = SafeTensors::deserialize(f)
                .map_err(|e| Error::load(format!("safetensors: {e}")))?;
            let Ok(view) = st.tensor(full) else { continue };
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(Error::weights(format!(
                        "tensor '{full}' has dtype {other:?}; only F32, F16 and BF16 are supported"
                    )));
                }
            };
            return Ok(Some(HostTensor {
                shape: view.shape().to_vec(),
                data,
            }));
        }
        Ok(None)
    }
}

impl TensorSource for SafetensorsSource {
    fn get(&self, part: Part, name: &str) -> Result<Option<HostTensor>> {
        let candidates: Vec<String> = match part {
            Part::Text if name == "lm_head.weight" => vec![name.to_string()],
            Part::Text => vec![format!("model.text_model.{name}"), format!("model.{name}")],
            Part::Vision => vec![format!("model.vision_model.{name}")],
            Part::Connector => vec![format!("model.connector.{name}")],
        };
        for c in candidates {
            if let Some(t) = self.tensor(&c)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }
}
