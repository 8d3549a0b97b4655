//! Model configuration, read from a Hugging Face `config.json` (Llama or Idefics3) or from GGUF
//! metadata (llama.cpp's `llama` and `clip` architectures). Nothing here is hard-coded to one
//! checkpoint; missing keys take transformers' class defaults.

use serde_json::Value as J;

use crate::error::{Error, Result};
use crate::weights::gguf::{GgufHeader, Value};

/// The Llama-style language model.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    /// Vocabulary size (rows of the embedding table).
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Longest supported sequence.
    pub max_positions: usize,
    /// LM head shares the embedding matrix.
    pub tie_word_embeddings: bool,
}

/// The SigLIP vision encoder plus Idefics3 connector.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    /// Input image side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Encoder width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Pixel-shuffle factor of the connector.
    pub scale_factor: usize,
    /// Per-channel normalization mean.
    pub image_mean: [f32; 3],
    /// Per-channel normalization std.
    pub image_std: [f32; 3],
}

impl VisionConfig {
    /// Patches per side.
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Number of `<image>` tokens one image becomes.
    pub fn tokens_per_image(&self) -> usize {
        let p = self.patches_per_side() / self.scale_factor;
        p * p
    }
}

/// Special token ids used to lay out an image in the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTokens {
    /// `<image>`: overwritten by image features.
    pub image: u32,
    /// `<fake_token_around_image>`.
    pub around: u32,
    /// `<global-img>`.
    pub global: u32,
}

/// A whole model: language model and, for a VLM, the vision side.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Language model.
    pub text: TextConfig,
    /// Vision encoder and connector, for a VLM.
    pub vision: Option<VisionConfig>,
    /// `<image>` token id (others are looked up in the tokenizer).
    pub image_token_id: Option<u32>,
}

fn get_usize(o: &J, k: &str, default: Option<usize>) -> Result<usize> {
    match o.get(k).and_then(J::as_u64) {
        Some(v) => Ok(v as usize),
        None => default.ok_or_else(|| Error::load(format!("config.json has no '{k}'"))),
    }
}

fn get_f64(o: &J, k: &str, default: f64) -> f64 {
    o.get(k).and_then(J::as_f64).unwrap_or(default)
}

fn positive(name: &str, v: usize) -> Result<usize> {
    if v == 0 || v > 1 << 20 {
        return Err(Error::load(format!(
            "config value {name} = {v} is out of range"
        )));
    }
    Ok(v)
}

impl TextConfig {
    fn from_json(t: &J) -> Result<Self> {
        let hidden = positive("hidden_size", get_usize(t, "hidden_size", Some(4096))?)?;
        let heads = positive(
            "num_attention_heads",
            get_usize(t, "num_attention_heads", Some(32))?,
        )?;
        let cfg = TextConfig {
            vocab_size: positive("vocab_size", get_usize(t, "vocab_size", Some(32000))?)?,
            hidden_size: hidden,
            intermediate_size: positive(
                "intermediate_size",
                get_usize(t, "intermediate_size", Some(11008))?,
            )?,
            num_layers: positive(
                "num_hidden_layers",
                get_usize(t, "num_hidden_layers", Some(32))?,
            )?,
            num_heads: heads,
            num_kv_heads: get_usize(t, "num_key_value_heads", Some(heads))?,
            head_dim: get_usize(t, "head_dim", Some(hidden / heads))?,
            rms_norm_eps: get_f64(t, "rms_norm_eps", 1e-6),
            rope_theta: t
                .get("rope_parameters")
                .and_then(|r| r.get("rope_theta"))
                .and_then(J::as_f64)
                .unwrap_or_else(|| get_f64(t, "rope_theta", 10000.0)),
            max_positions: get_usize(t, "max_position_embeddings", Some(2048))?,
            tie_word_embeddings: t
                .get("tie_word_embeddings")
                .and_then(J::as_bool)
                .unwrap_or(false),
        };
        cfg.check()
    }

    fn check(self) -> Result<Self> {
        if self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
            || !self.head_dim.is_multiple_of(2)
            || self.head_dim * self.num_heads == 0
        {
            return Err(Error::load(format!(
                "inconsistent attention config: {} heads, {} kv heads, head dim {}",
                self.num_heads, self.num_kv_heads, self.head_dim
            )));
        }
        Ok(self)
    }

    /// Reads a llama-architecture GGUF's metadata.
    pub fn from_gguf(h: &GgufHeader) -> Result<Self> {
        let arch = h.architecture().unwrap_or("(none)");
        if arch != "llama" {
            return Err(Error::Unsupported(format!(
                "GGUF architecture '{arch}' is not supported (expected 'llama': SmolLM2 / SmolVLM text model)"
            )));
        }
        let k = |s: &str| format!("llama.{s}");
        let hidden = positive(
            "embedding_length",
            h.req_u64(&k("embedding_length"))? as usize,
        )?;
        let heads = positive(
            "head_count",
            h.req_u64(&k("attention.head_count"))? as usize,
        )?;
        let vocab = match h.get(&k("vocab_size")).and_then(Value::as_u64) {
            Some(v) => v as usize,
            None => h
                .get("tokenizer.ggml.tokens")
                .and_then(Value::as_array)
                .map(<[Value]>::len)
                .or_else(|| h.tensors.get("token_embd.weight").map(|t| t.dims[1]))
                .ok_or_else(|| Error::load("GGUF has no vocabulary size"))?,
        };
        let cfg = TextConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: positive(
                "feed_forward_length",
                h.req_u64(&k("feed_forward_length"))? as usize,
            )?,
            num_layers: positive("block_count", h.req_u64(&k("block_count"))? as usize)?,
            num_heads: heads,
            num_kv_heads: h
                .get(&k("attention.head_count_kv"))
                .and_then(Value::as_u64)
                .map_or(heads, |v| v as usize),
            head_dim: h
                .get(&k("attention.key_length"))
                .and_then(Value::as_u64)
                .map_or(hidden / heads, |v| v as usize),
            rms_norm_eps: h.req_f64(&k("attention.layer_norm_rms_epsilon"))?,
            rope_theta: h
                .get(&k("rope.freq_base"))
                .and_then(Value::as_f64)
                .unwrap_or(10000.0),
            max_positions: h
                .get(&k("context_length"))
                .and_then(Value::as_u64)
                .map_or(2048, |v| v as usize),
            tie_word_embeddings: !h.tensors.contains_key("output.weight"),
        };
        cfg.check()
    }
}

impl VisionConfig {
    fn from_json(v: &J, scale_factor: usize, pre: Option<&J>) -> Result<Self> {
        let arr3 = |k: &str| -> [f32; 3] {
            pre.and_then(|p| p.get(k))
                .and_then(J::as_array)
                .filter(|a| a.len() == 3)
                .map(|a| [0, 1, 2].map(|i| a[i].as_f64().unwrap_or(0.5) as f32))
                .unwrap_or([0.5; 3])
        };
        let cfg = VisionConfig {
            image_size: positive("image_size", get_usize(v, "image_size", Some(224))?)?,
            patch_size: positive("patch_size", get_usize(v, "patch_size", Some(32))?)?,
            hidden_size: positive("hidden_size", get_usize(v, "hidden_size", Some(1152))?)?,
            intermediate_size: positive(
                "intermediate_size",
                get_usize(v, "intermediate_size", Some(3072))?,
            )?,
            num_layers: positive(
                "num_hidden_layers",
                get_usize(v, "num_hidden_layers", Some(12))?,
            )?,
            num_heads: positive(
                "num_attention_heads",
                get_usize(v, "num_attention_heads", Some(16))?,
            )?,
            layer_norm_eps: get_f64(v, "layer_norm_eps", 1e-6),
            scale_factor: positive("scale_factor", scale_factor)?,
            image_mean: arr3("image_mean"),
            image_std: arr3("image_std"),
        };
        cfg.check()
    }

    fn check(self) -> Result<Self> {
        let p = self.image_size / self.patch_size;
        if !self.image_size.is_multiple_of(self.patch_size)
            || !p.is_multiple_of(self.scale_factor)
            || !self.hidden_size.is_multiple_of(self.num_heads)
        {
            return Err(Error::load(format!("inconsistent vision config: {self:?}")));
        }
        Ok(self)
    }

    /// Reads llama.cpp's `clip` (mmproj) GGUF metadata for an Idefics3 projector.
    pub fn from_gguf(h: &GgufHeader) -> Result<Self> {
        if h.architecture() != Some("clip") {
            return Err(Error::Unsupported(
                "the --mmproj file is not a llama.cpp 'clip' GGUF".into(),
            ));
        }
        if let Some(p) = h.get("clip.projector_type").and_then(Value::as_str)
            && p != "idefics3"
        {
            return Err(Error::Unsupported(format!(
                "mmproj projector type '{p}' is not supported (expected 'idefics3')"
            )));
        }
        let k = |s: &str| format!("clip.vision.{s}");
        let arr3 = |key: &str| -> [f32; 3] {
            h.get(&k(key))
                .and_then(Value::as_array)
                .filter(|a| a.len() == 3)
                .map(|a| [0, 1, 2].map(|i| a[i].as_f64().unwrap_or(0.5) as f32))
                .unwrap_or([0.5; 3])
        };
        let cfg = VisionConfig {
            image_size: h.req_u64(&k("image_size"))? as usize,
            patch_size: h.req_u64(&k("patch_size"))? as usize,
            hidden_size: h.req_u64(&k("embedding_length"))? as usize,
            intermediate_size: h.req_u64(&k("feed_forward_length"))? as usize,
            num_layers: h.req_u64(&k("block_count"))? as usize,
            num_heads: h.req_u64(&k("attention.head_count"))? as usize,
            layer_norm_eps: h.req_f64(&k("attention.layer_norm_epsilon"))?,
            scale_factor: h
                .get(&k("projector.scale_factor"))
                .and_then(Value::as_u64)
                .unwrap_or(2) as usize,
            image_mean: arr3("image_mean"),
            image_std: arr3("image_std"),
        };
        for (n, v) in [
            ("image_size", cfg.image_size),
            ("patch_size", cfg.patch_size),
            ("block_count", cfg.num_layers),
            ("head_count", cfg.num_heads),
            ("scale_factor", cfg.scale_factor),
        ] {
            positive(n, v)?;
        }
        cfg.check()
    }
}

/// The image-processor settings from `preprocessor_config.json` (flat) or transformers 5's
/// `processor_config.json` (under `image_processor`).
pub fn image_processor_json(text: &str) -> Option<J> {
    let j: J = serde_json::from_str(text).ok()?;
    match j.get("image_processor") {
        Some(inner) => Some(inner.clone()),
        None => Some(j),
    }
}

impl ModelConfig {
    /// Parses a Hugging Face `config.json` (plus the optional `preprocessor_config.json`).
    pub fn from_hf_json(config: &str, preprocessor: Option<&str>) -> Result<Self> {
        let j: J = serde_json::from_str(config)
            .map_err(|e| Error::load(format!("config.json is not valid JSON: {e}")))?;
        let pre: Option<J> = preprocessor.and_then(image_processor_json);
        let mt = j.get("model_type").and_then(J::as_str).unwrap_or("");
        match mt {
            "idefics3" | "smolvlm" => {
                let t = j
                    .get("text_config")
                    .ok_or_else(|| Error::load("config.json has no text_config"))?;
                let v = j
                    .get("vision_config")
                    .ok_or_else(|| Error::load("config.json has no vision_config"))?;
                let sf = get_usize(&j, "scale_factor", Some(2))?;
                let mut text = TextConfig::from_json(t)?;
                if let Some(tie) = j.get("tie_word_embeddings").and_then(J::as_bool) {
                    text.tie_word_embeddings = text.tie_word_embeddings || tie;
                }
                Ok(ModelConfig {
                    text,
                    vision: Some(VisionConfig::from_json(v, sf, pre.as_ref())?),
                    image_token_id: Some(get_usize(&j, "image_token_id", Some(128257))? as u32),
                })
            }
            "llama" | "mistral" => Ok(ModelConfig {
                text: TextConfig::from_json(&j)?,
                vision: None,
                image_token_id: None,
            }),
            other => Err(Error::Unsupported(format!(
                "model_type '{other}' is not supported (expected 'idefics3' or 'llama')"
            ))),
        }
    }
}
