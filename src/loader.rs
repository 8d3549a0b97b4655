//! Turning model files (bytes, so it works in wasm too) into a ready model + tokenizer: a GGUF
//! (with an optional llama.cpp mmproj GGUF for the vision side) or a Hugging Face directory's
//! files (config.json, *.safetensors, tokenizer.json, preprocessor_config.json).

use burn::tensor::Device;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::{Model, ModelConfig, TextConfig, VisionConfig};
use crate::tokenize::TextTokenizer;
pub use crate::weights::LoadOptions;
use crate::weights::{
    GgufSource, ModeSource, SafetensorsSource, Sources, TensorSource, WeightMode, gguf::is_gguf,
};

/// The files that make a model, already read into memory.
pub enum ModelFiles {
    /// A llama.cpp GGUF, and optionally its vision `mmproj` GGUF.
    Gguf {
        /// The language model GGUF.
        model: Vec<u8>,
        /// The vision encoder + projector GGUF.
        mmproj: Option<Vec<u8>>,
    },
    /// A Hugging Face checkpoint's files.
    HuggingFace {
        /// `config.json` text.
        config: String,
        /// `preprocessor_config.json` text, if any.
        preprocessor: Option<String>,
        /// `tokenizer.json` bytes.
        tokenizer: Vec<u8>,
        /// The `*.safetensors` files.
        weights: Vec<Vec<u8>>,
    },
}

/// What was loaded, for display and for matching task vectors to models.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    /// Human-readable model name (GGUF `general.name` or the config's architecture).
    pub name: String,
    /// `gguf` or `safetensors`.
    pub format: String,
    /// Storage type of the weights in the file (e.g. `q4_1+q8_0`, `f32`).
    pub quant: String,
    /// Storage type of the language model's matrices once loaded (e.g. `q4_1+q8_0`: the
    /// blocks stay quantized in memory; `f32`: dequantized).
    pub storage: String,
    /// Total size of the model files.
    pub file_bytes: usize,
    /// Short SHA-256 of the weight files: identifies the exact weights.
    pub fingerprint: String,
    /// Decoder layers.
    pub layers: usize,
    /// Residual stream width.
    pub hidden: usize,
    /// Whether the model takes images.
    pub vision: bool,
}

/// A model ready to run, with its tokenizer.
pub struct LoadedModel {
    /// The network.
    pub model: Model,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// Description.
    pub info: ModelInfo,
    /// The image processor's first resize target (`size.longest_edge`), when known.
    pub longest_edge: Option<u32>,
    /// Vision features of images seen before, by the SHA-256 of the image file.
    pub features: FeatureCache,
}

/// Image features computed once per distinct image file (keyed by its SHA-256), so extraction
/// from image examples and repeated queries never re-encode an image. Bounded: cleared when it
/// holds [`FeatureCache::CAPACITY`] images.
#[derive(Default)]
pub struct FeatureCache {
    map: std::sync::Mutex<std::collections::HashMap<[u8; 32], burn::tensor::Tensor<2>>>,
    encoded: std::sync::atomic::AtomicUsize,
}

impl FeatureCache {
    /// Most images kept (about 150 KB each for SmolVLM-256M).
    pub const CAPACITY: usize = 1024;

    /// How many images the vision encoder has run on since loading.
    pub fn encoded(&self) -> usize {
        self.encoded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Number of images held.
    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    /// Whether no image is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every held image (the count of encoded images is kept).
    pub fn clear(&self) {
        if let Ok(mut m) = self.map.lock() {
            m.clear();
        }
    }

    /// The features of `bytes`, computed by `compute` only the first time.
    pub fn get_or_compute(
        &self,
        bytes: &[u8],
        compute: impl FnOnce() -> Result<burn::tensor::Tensor<2>>,
    ) -> Result<burn::tensor::Tensor<2>> {
        let key: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(t) = self.map.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(t);
        }
        let t = compute()?;
        self.encoded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= Self::CAPACITY {
                m.clear();
            }
            m.insert(key, t.clone());
        }
        Ok(t)
    }
}

fn fingerprint(files: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update((f.len() as u64).to_le_bytes());
        h.update(f);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads a model from its files onto `device`, keeping quantized blocks where the device has
/// kernels for them ([`WeightMode::Auto`]).
pub fn load(files: ModelFiles, device: &Device) -> Result<LoadedModel> {
    load_with(files, device, WeightMode::Auto)
}

/// Loads a model from its files onto `device`, storing its matrices as `mode` says.
pub fn load_with(files: ModelFiles, device: &Device, mode: WeightMode) -> Result<LoadedModel> {
    let opts = LoadOptions {
        mode,
        ..LoadOptions::default()
    };
    load_opts(files, device, opts)
}

/// Loads a model from its files onto `device` as `opts` say.
pub fn load_opts(files: ModelFiles, device: &Device, opts: LoadOptions) -> Result<LoadedModel> {
    match files {
        ModelFiles::Gguf { model, mmproj } => load_gguf(model, mmproj, device, opts),
        ModelFiles::HuggingFace {
            config,
            preprocessor,
            tokenizer,
            weights,
        } => {
            let cfg = ModelConfig::from_hf_json(&config, preprocessor.as_deref())?;
            let tok = TextTokenizer::from_json(&tokenizer)?;
            let fp = fingerprint(&weights.iter().map(Vec::as_slice).collect::<Vec<_>>());
            let src = SafetensorsSource::new(weights)?;
            let file_bytes = src.file_bytes();
            let model = Model::load(cfg.clone(), &ModeSource { inner: &src, opts }, device)?;
            let longest_edge = preprocessor
                .as_deref()
                .and_then(crate::model::config::image_processor_json)
                .and_then(|p| p.get("size")?.get("longest_edge")?.as_u64())
                .map(|v| v as u32);
            let name = if cfg.vision.is_some() {
                "idefics3"
            } else {
                "llama"
            };
            let files = Files {
                name: name.into(),
                format: "safetensors",
                quant: src.storage_types(),
                file_bytes,
                fingerprint: fp,
            };
            Ok(LoadedModel::new(model, &cfg, tok, longest_edge, files))
        }
    }
}

fn load_gguf(
    model: Vec<u8>,
    mmproj: Option<Vec<u8>>,
    device: &Device,
    opts: LoadOptions,
) -> Result<LoadedModel> {
    if model.is_empty() {
        return Err(Error::load(
            "the model file is empty (0 bytes): the download or copy failed, fetch it again",
        ));
    }
    if !is_gguf(&model) {
        return Err(Error::load("the model file is not a GGUF file"));
    }
    let fp = fingerprint(&[&model]);
    let text_src = GgufSource::new(model)?;
    let h = &text_src.header;
    let text = TextConfig::from_gguf(h)?;
    let tokenizer = TextTokenizer::from_gguf(h)?;
    let name = h
        .get("general.name")
        .and_then(|v| v.as_str())
        .unwrap_or("gguf model")
        .to_string();
    let quant = {
        let mut types: Vec<&str> = h
            .tensors
            .iter()
            .filter(|(_, t)| t.dims.len() == 2 && h.tensors.len() > 1)
            .map(|(_, t)| t.ty.name())
            .collect();
        types.sort_unstable();
        types.dedup();
        types.join("+")
    };
    let mut file_bytes = text_src.file_bytes();
    let mut sources: Vec<Box<dyn TensorSource>> = Vec::new();
    let mut vision = None;
    let mut image_token_id = None;
    let mut longest_edge = None;
    if let Some(mm) = mmproj {
        let mm_src = GgufSource::new(mm)?;
        vision = Some(VisionConfig::from_gguf(&mm_src.header)?);
        // llama.cpp records the processor's first resize target (`size.longest_edge`).
        longest_edge = mm_src
            .header
            .get("clip.vision.preproc_image_size")
            .and_then(|v| v.as_u64())
            .map(|v| v as u32);
        image_token_id = Some(
            tokenizer
                .token_id(crate::tokenize::IMAGE_PLACEHOLDER)
                .ok_or_else(|| Error::Unsupported("the text model's vocabulary has no <image> token: it is not a SmolVLM text model".into()))?,
        );
        file_bytes += mm_src.file_bytes();
        sources.push(Box::new(mm_src));
    }
    sources.insert(0, Box::new(text_src));
    let cfg = ModelConfig {
        text,
        vision,
        image_token_id,
    };
    let src = Sources(sources);
    let model = Model::load(cfg.clone(), &ModeSource { inner: &src, opts }, device)?;
    let files = Files {
        name,
        format: "gguf",
        quant,
        file_bytes,
        fingerprint: fp,
    };
    Ok(LoadedModel::new(
        model,
        &cfg,
        tokenizer,
        longest_edge,
        files,
    ))
}

/// What a loader read off the files, for [`ModelInfo`].
struct Files {
    name: String,
    format: &'static str,
    quant: String,
    file_bytes: usize,
    fingerprint: String,
}

impl LoadedModel {
    /// The loaded model with its info, tokenizer and an empty feature cache.
    fn new(
        model: Model,
        cfg: &ModelConfig,
        tokenizer: TextTokenizer,
        longest_edge: Option<u32>,
        f: Files,
    ) -> Self {
        LoadedModel {
            info: ModelInfo {
                name: f.name,
                format: f.format.into(),
                quant: f.quant,
                storage: model.storage(),
                file_bytes: f.file_bytes,
                fingerprint: f.fingerprint,
                layers: cfg.text.num_layers,
                hidden: cfg.text.hidden_size,
                vision: cfg.vision.is_some(),
            },
            model,
            tokenizer,
            longest_edge,
            features: FeatureCache::default(),
        }
    }

    /// Token ids and preprocessed images for a prompt whose `<image>` placeholders are filled
    /// by `images` (encoded image files) in order.
    pub fn prompt(&self, text: &str, images: &[&[u8]]) -> Result<(Vec<u32>, Vec<Vec<f32>>)> {
        let ids = self.prompt_ids(text, images.len())?;
        let pixels = match &self.model.config.vision {
            Some(v) => images
                .iter()
                .map(|b| crate::preprocess::load_image(b, v, self.longest_edge))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        Ok((ids, pixels))
    }

    /// Token ids of a prompt with its `<image>` placeholders expanded, checking that there are
    /// `n_images` of them.
    pub fn prompt_ids(&self, text: &str, n_images: usize) -> Result<Vec<u32>> {
        let (text, n) = match &self.model.config.vision {
            Some(v) => self.tokenizer.expand_images(text, v)?,
            None => (text.to_string(), 0),
        };
        if n != n_images {
            return Err(Error::model(format!(
                "the prompt has {n} <image> placeholder(s) but {n_images} image(s) were given"
            )));
        }
        self.tokenizer.encode(&text)
    }

    /// Token ids and input embeddings of a prompt (see [`LoadedModel::prompt`]), with each
    /// image's features taken from [`LoadedModel::features`] when it was seen before.
    pub fn embed_prompt(
        &self,
        text: &str,
        images: &[&[u8]],
    ) -> Result<(Vec<u32>, burn::tensor::Tensor<2>)> {
        let ids = self.prompt_ids(text, images.len())?;
        let x = self.embed_ids(&ids, images)?;
        Ok((ids, x))
    }

    /// Input embeddings of token ids that already hold each image's `<image>` tokens, the
    /// images' features computed as in [`LoadedModel::embed_prompt`].
    pub fn embed_ids(&self, ids: &[u32], images: &[&[u8]]) -> Result<burn::tensor::Tensor<2>> {
        let feats = match &self.model.config.vision {
            Some(v) => images
                .iter()
                .map(|b| {
                    self.features.get_or_compute(b, || {
                        let px = crate::preprocess::load_image(b, v, self.longest_edge)?;
                        self.model.image_features(&px)
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            None if images.is_empty() => Vec::new(),
            None => {
                return Err(Error::model(
                    "this model has no vision encoder: it cannot take images",
                ));
            }
        };
        self.model.embed_features(ids, &feats)
    }

    /// The model card: what `taskvec info --json` prints and the page's `WebModel::info`
    /// returns (the page adds its backend and CPU threads).
    pub fn card(&self) -> ModelCard<'_> {
        let i = &self.info;
        ModelCard {
            backend: None,
            cpu_threads: None,
            integer_products: self.model.integer_products(),
            file_bytes: i.file_bytes,
            fingerprint: &i.fingerprint,
            format: &i.format,
            hidden: i.hidden,
            layers: i.layers,
            name: &i.name,
            quant: &i.quant,
            resident_weight_bytes: self.model.resident_bytes(),
            storage: &i.storage,
            vision: i.vision,
        }
    }
}

/// A loaded model described for people and scripts ([`LoadedModel::card`]): [`ModelInfo`]
/// plus the measured resident weight bytes and, in the page, the backend and CPU threads.
/// Fields are serialized in alphabetical order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelCard<'a> {
    /// The page's backend (`cpu` or `webgpu`); absent from the CLI's card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<crate::model::device::Backend>,
    /// The page's CPU threads (1 on WebGPU); absent from the CLI's card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_threads: Option<usize>,
    /// See [`ModelInfo::file_bytes`].
    pub file_bytes: usize,
    /// See [`ModelInfo::fingerprint`].
    pub fingerprint: &'a str,
    /// See [`ModelInfo::format`].
    pub format: &'a str,
    /// See [`ModelInfo::hidden`].
    pub hidden: usize,
    /// The CPU's integer products with quantized blocks, e.g. `int16 (avx512-vnni)`; absent
    /// with f32 activations (`--activations f32`, the page's WebAssembly, WebGPU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integer_products: Option<String>,
    /// See [`ModelInfo::layers`].
    pub layers: usize,
    /// See [`ModelInfo::name`].
    pub name: &'a str,
    /// See [`ModelInfo::quant`].
    pub quant: &'a str,
    /// Bytes the loaded weights occupy on the device (measured from the tensors).
    pub resident_weight_bytes: usize,
    /// See [`ModelInfo::storage`].
    pub storage: &'a str,
    /// See [`ModelInfo::vision`].
    pub vision: bool,
}

/// The largest single buffer a GGUF model's weights need on a GPU device with `mode`: its
/// tensor's name and bytes. Packed Q8_0 / Q4_0 / Q4_1 matrices hold their block bytes; every
/// other tensor is f32 (4 bytes a value); a quantize-on-load mode packs the matrices (≤ 34/32
/// bytes a value). The page checks it against the adapter's `maxStorageBufferBindingSize`
/// before loading, since a larger buffer is a WebGPU validation error, not a clean failure.
pub fn largest_device_buffer(files: &[&[u8]], mode: WeightMode) -> Result<(String, usize)> {
    let mut best = (String::new(), 0usize);
    for f in files {
        let h = crate::weights::gguf::GgufHeader::parse(f)?;
        for name in &h.order {
            let t = &h.tensors[name];
            let bytes = match mode {
                WeightMode::Auto if crate::weights::blocks::layout(t.ty).is_some() => t.size,
                WeightMode::Quantize(_) if crate::weights::quantizes_on_load(&t.torch_shape()) => {
                    t.numel() / 32 * 34
                }
                _ => t.numel() * 4,
            };
            if bytes > best.1 {
                best = (name.clone(), bytes);
            }
        }
    }
    Ok(best)
}
