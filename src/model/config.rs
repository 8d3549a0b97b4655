//! Model configuration, read from a Hugging Face `config.json` (Llama or Idefics3: serde
//! structs whose defaults are transformers' class defaults) or from GGUF metadata (llama.cpp's
//! `llama` and `clip` architectures), then checked ([`TextConfig::check`],
//! [`VisionConfig::check`]). Nothing here is hard-coded to one checkpoint.

use serde::Deserialize;
use serde_json::Value as J;

use crate::error::{Error, Result};
use crate::weights::Part;
use crate::weights::gguf::{GgufHeader, Value};
use crate::weights::names::to_gguf;

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

/// Refuses, in order, any named size of 0 or above 2^20 (a corrupt or hostile file).
fn positive(sizes: &[(&str, usize)]) -> Result<()> {
    match sizes.iter().find(|(_, v)| *v == 0 || *v > 1 << 20) {
        Some((name, v)) => Err(Error::load(format!(
            "config value {name} = {v} is out of range"
        ))),
        None => Ok(()),
    }
}

/// A `config.json` part parsed by serde, naming the part in the error.
fn from_json<T: for<'de> Deserialize<'de>>(j: &J, what: &str) -> Result<T> {
    T::deserialize(j).map_err(|e| Error::load(format!("config.json: {what}: {e}")))
}

/// `rope_parameters` (transformers 5): the RoPE base lives here when present.
#[derive(Deserialize, Default)]
struct RopeParameters {
    #[serde(default)]
    rope_theta: Option<f64>,
}

/// A Llama `config.json` (or an Idefics3 `text_config`); missing keys take `LlamaConfig`'s
/// defaults.
#[derive(Deserialize)]
#[serde(default)]
struct HfText {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    /// Default: `num_attention_heads`.
    num_key_value_heads: Option<usize>,
    /// Default: `hidden_size / num_attention_heads`.
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    rope_theta: f64,
    rope_parameters: Option<RopeParameters>,
    max_position_embeddings: usize,
    tie_word_embeddings: bool,
}

impl Default for HfText {
    fn default() -> Self {
        HfText {
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            head_dim: None,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            rope_parameters: None,
            max_position_embeddings: 2048,
            tie_word_embeddings: false,
        }
    }
}

impl From<HfText> for TextConfig {
    fn from(t: HfText) -> Self {
        let heads = t.num_attention_heads;
        TextConfig {
            vocab_size: t.vocab_size,
            hidden_size: t.hidden_size,
            intermediate_size: t.intermediate_size,
            num_layers: t.num_hidden_layers,
            num_heads: heads,
            num_kv_heads: t.num_key_value_heads.unwrap_or(heads),
            head_dim: t
                .head_dim
                .unwrap_or_else(|| t.hidden_size.checked_div(heads).unwrap_or(0)),
            rms_norm_eps: t.rms_norm_eps,
            rope_theta: t
                .rope_parameters
                .and_then(|r| r.rope_theta)
                .unwrap_or(t.rope_theta),
            max_positions: t.max_position_embeddings,
            tie_word_embeddings: t.tie_word_embeddings,
        }
    }
}

/// An Idefics3 `vision_config` (SigLIP); missing keys take `Idefics3VisionConfig`'s defaults.
#[derive(Deserialize)]
#[serde(default)]
struct HfVision {
    image_size: usize,
    patch_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    layer_norm_eps: f64,
}

impl Default for HfVision {
    fn default() -> Self {
        HfVision {
            image_size: 224,
            patch_size: 32,
            hidden_size: 1152,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 16,
            layer_norm_eps: 1e-6,
        }
    }
}

/// The top level of a `config.json`: the model type and, for Idefics3, its parts.
#[derive(Deserialize)]
struct HfModel {
    #[serde(default)]
    model_type: String,
    text_config: Option<J>,
    vision_config: Option<J>,
    /// Default: 2.
    scale_factor: Option<usize>,
    /// Default: 128257.
    image_token_id: Option<u32>,
    tie_word_embeddings: Option<bool>,
}

/// A 3-value array of numbers (image mean / std), 0.5 where absent.
fn three(a: Option<&[f64]>) -> [f32; 3] {
    a.filter(|a| a.len() == 3)
        .map(|a| [0, 1, 2].map(|i| a[i] as f32))
        .unwrap_or([0.5; 3])
}

impl TextConfig {
    /// Checks sizes (each 1..=2^20) and that the attention shapes fit together.
    pub fn check(self) -> Result<Self> {
        positive(&[
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_heads),
            ("vocab_size", self.vocab_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
        ])?;
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
        let opt = |s: &str| h.get(&k(s)).and_then(Value::as_u64).map(|v| v as usize);
        let req = |s: &str| h.req_u64(&k(s)).map(|v| v as usize);
        let tensor = |hf: &str| to_gguf(Part::Text, hf).and_then(|g| h.tensors.get(&g));
        let hidden = req("embedding_length")?;
        let heads = req("attention.head_count")?;
        let vocab = match opt("vocab_size") {
            Some(v) => v,
            None => h
                .get("tokenizer.ggml.tokens")
                .and_then(Value::as_array)
                .map(<[Value]>::len)
                .or_else(|| tensor("embed_tokens.weight").map(|t| t.dims[1]))
                .ok_or_else(|| Error::load("GGUF has no vocabulary size"))?,
        };
        TextConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: req("feed_forward_length")?,
            num_layers: req("block_count")?,
            num_heads: heads,
            num_kv_heads: opt("attention.head_count_kv").unwrap_or(heads),
            head_dim: opt("attention.key_length")
                .unwrap_or_else(|| hidden.checked_div(heads).unwrap_or(0)),
            rms_norm_eps: h.req_f64(&k("attention.layer_norm_rms_epsilon"))?,
            rope_theta: h
                .get(&k("rope.freq_base"))
                .and_then(Value::as_f64)
                .unwrap_or(10000.0),
            max_positions: opt("context_length").unwrap_or(2048),
            tie_word_embeddings: tensor("lm_head.weight").is_none(),
        }
        .check()
    }
}

impl VisionConfig {
    fn from_hf(v: HfVision, scale_factor: usize, pre: Option<&J>) -> Self {
        let arr = |k: &str| -> Option<Vec<f64>> {
            let a = pre?.get(k)?.as_array()?;
            Some(a.iter().map(|x| x.as_f64().unwrap_or(0.5)).collect())
        };
        VisionConfig {
            image_size: v.image_size,
            patch_size: v.patch_size,
            hidden_size: v.hidden_size,
            intermediate_size: v.intermediate_size,
            num_layers: v.num_hidden_layers,
            num_heads: v.num_attention_heads,
            layer_norm_eps: v.layer_norm_eps,
            scale_factor,
            image_mean: three(arr("image_mean").as_deref()),
            image_std: three(arr("image_std").as_deref()),
        }
    }

    /// Checks sizes (each 1..=2^20) and that patches, the pixel shuffle and the heads divide.
    pub fn check(self) -> Result<Self> {
        positive(&[
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("scale_factor", self.scale_factor),
        ])?;
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
        let req = |s: &str| h.req_u64(&k(s)).map(|v| v as usize);
        let arr = |key: &str| -> Option<Vec<f64>> {
            let a = h.get(&k(key))?.as_array()?;
            Some(a.iter().map(|x| x.as_f64().unwrap_or(0.5)).collect())
        };
        VisionConfig {
            image_size: req("image_size")?,
            patch_size: req("patch_size")?,
            hidden_size: req("embedding_length")?,
            intermediate_size: req("feed_forward_length")?,
            num_layers: req("block_count")?,
            num_heads: req("attention.head_count")?,
            layer_norm_eps: h.req_f64(&k("attention.layer_norm_epsilon"))?,
            scale_factor: h
                .get(&k("projector.scale_factor"))
                .and_then(Value::as_u64)
                .unwrap_or(2) as usize,
            image_mean: three(arr("image_mean").as_deref()),
            image_std: three(arr("image_std").as_deref()),
        }
        .check()
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
        let top: HfModel = from_json(&j, "top level")?;
        match top.model_type.as_str() {
            "idefics3" | "smolvlm" => {
                let t = top
                    .text_config
                    .ok_or_else(|| Error::load("config.json has no text_config"))?;
                let v = top
                    .vision_config
                    .ok_or_else(|| Error::load("config.json has no vision_config"))?;
                let mut text = TextConfig::from(from_json::<HfText>(&t, "text_config")?).check()?;
                text.tie_word_embeddings |= top.tie_word_embeddings == Some(true);
                let vision = VisionConfig::from_hf(
                    from_json(&v, "vision_config")?,
                    top.scale_factor.unwrap_or(2),
                    pre.as_ref(),
                );
                Ok(ModelConfig {
                    text,
                    vision: Some(vision.check()?),
                    image_token_id: Some(top.image_token_id.unwrap_or(128257)),
                })
            }
            "llama" | "mistral" => Ok(ModelConfig {
                text: TextConfig::from(from_json::<HfText>(&j, "text")?).check()?,
                vision: None,
                image_token_id: None,
            }),
            other => Err(Error::Unsupported(format!(
                "model_type '{other}' is not supported (expected 'idefics3' or 'llama')"
            ))),
        }
    }
}
