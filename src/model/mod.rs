//! The model: SigLIP vision encoder → connector → Llama decoder (Idefics3 / SmolVLM), or a plain
//! Llama LM (SmolLM2). Its public surface is the *intervention interface*: run a prompt while
//! capturing the residual stream at chosen positions of every layer, or replacing it at
//! (layer, position), and resume a run from any layer. Task-vector code uses nothing else.

pub mod cache;
pub mod config;
pub mod dense;
pub mod device;
#[cfg(feature = "wgpu")]
pub mod fused;
pub mod host_attention;
pub mod host_ops;
pub mod intervention;
pub mod layers;
pub mod packed;
pub mod par;
pub mod qmatmul;
pub mod text;
pub mod vision;

use burn::tensor::{Device, Tensor, TensorData};

pub use cache::KvCache;
pub use config::{ImageTokens, ModelConfig, TextConfig, VisionConfig};
use intervention::steering_at;
pub use intervention::{Intervention, Operator, Patch};
use text::{CacheMode, Hooks, Replace, TextModel};
use vision::VisionModel;

use crate::error::{Error, Result};
use crate::weights::TensorSource;

/// A loaded model on one device.
#[derive(Debug, Clone)]
pub struct Model {
    /// Configuration of both parts.
    pub config: ModelConfig,
    /// The language model.
    pub text: TextModel,
    /// The vision encoder and connector, for a VLM.
    pub vision: Option<VisionModel>,
}

/// The result of a forward pass over a prompt.
#[derive(Debug, Clone)]
pub struct ForwardOutput {
    /// Logits [positions, vocab]: every position or only the last (see [`Intervention`]).
    pub logits: Tensor<2>,
    /// Captured residual stream [num_layers + 1, captured positions, hidden]: index 0 is the
    /// input embeddings (after the image merge), index l+1 the raw output of decoder layer l.
    pub hidden: Option<Tensor<3>>,
    /// Keys/values of the whole prompt, for continuing.
    pub cache: KvCache,
}

impl Model {
    /// Builds the model for `config` from a weight source.
    pub fn load(config: ModelConfig, src: &dyn TensorSource, device: &Device) -> Result<Self> {
        let text = TextModel::load(config.text.clone(), src, device)?;
        let vision = match &config.vision {
            Some(v) => Some(VisionModel::load(
                v.clone(),
                config.text.hidden_size,
                src,
                device,
            )?),
            None => None,
        };
        Ok(Model {
            config,
            text,
            vision,
        })
    }

    /// Bytes the loaded weights occupy on the device (measured from the tensors).
    pub fn resident_bytes(&self) -> usize {
        self.text.resident_bytes() + self.vision.as_ref().map_or(0, VisionModel::resident_bytes)
    }

    /// How the CPU multiplies quantized blocks with activations, when with integers: e.g.
    /// `int16 (avx512-vnni)` (`None` for f32 activations or no quantized host blocks).
    pub fn integer_products(&self) -> Option<String> {
        let a = self.text.integer_activations()?;
        Some(format!(
            "{} ({})",
            a.name(),
            qmatmul::integer::Kernel::detect().name()
        ))
    }

    /// Storage types of the language model's matrices in memory (e.g. `q4_1+q8_0`, `f32`).
    pub fn storage(&self) -> String {
        self.text.storage()
    }

    /// Number of decoder layers.
    pub fn num_layers(&self) -> usize {
        self.config.text.num_layers
    }

    /// Residual stream width.
    pub fn hidden_size(&self) -> usize {
        self.config.text.hidden_size
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        self.text.device()
    }

    /// Input embeddings for a prompt: token embeddings, with the `<image>` positions overwritten
    /// by the features of `images` (preprocessed pixels, one entry per image, in order).
    pub fn embed(&self, ids: &[u32], images: &[Vec<f32>]) -> Result<Tensor<2>> {
        let feats = images
            .iter()
            .map(|px| self.image_features(px))
            .collect::<Result<Vec<_>>>()?;
        self.embed_features(ids, &feats)
    }

    /// The vision encoder + connector output for one preprocessed image:
    /// [tokens_per_image, hidden].
    pub fn image_features(&self, pixels: &[f32]) -> Result<Tensor<2>> {
        let v = self.vision.as_ref().ok_or_else(|| {
            Error::model("this model has no vision encoder: it cannot take images")
        })?;
        self.on_pool(|| v.features(pixels))
    }

    /// Input embeddings from token ids and already computed image features (one
    /// [tokens_per_image, hidden] tensor per image, in order): see [`Model::embed`].
    pub fn embed_features(&self, ids: &[u32], feats: &[Tensor<2>]) -> Result<Tensor<2>> {
        if ids.is_empty() {
            return Err(Error::model("the prompt is empty"));
        }
        let emb = self.text.embed(ids)?;
        let image_id = self.config.image_token_id;
        let n_img_tokens = image_id.map_or(0, |t| ids.iter().filter(|&&i| i == t).count());
        if feats.is_empty() && n_img_tokens == 0 {
            return Ok(emb);
        }
        let vision = self.vision.as_ref().ok_or_else(|| {
            Error::model("this model has no vision encoder: it cannot take images")
        })?;
        let per = vision.config.tokens_per_image();
        if n_img_tokens != feats.len() * per {
            return Err(Error::model(format!(
                "the prompt has {n_img_tokens} <image> tokens but {} image(s) × {per} tokens were given",
                feats.len()
            )));
        }
        let feats = Tensor::cat(feats.to_vec(), 0);
        // Rebuild row by row from runs of text and image tokens.
        let (mut parts, mut i, mut f) = (Vec::new(), 0usize, 0usize);
        let d = self.hidden_size();
        let image_id = image_id.expect("checked above");
        while i < ids.len() {
            let is_img = ids[i] == image_id;
            let j = (i..ids.len())
                .find(|&j| (ids[j] == image_id) != is_img)
                .unwrap_or(ids.len());
            if is_img {
                parts.push(feats.clone().slice([f..f + (j - i), 0..d]));
                f += j - i;
            } else {
                parts.push(emb.clone().slice([i..j, 0..d]));
            }
            i = j;
        }
        Ok(Tensor::cat(parts, 0))
    }

    fn replaces(&self, patches: &[Patch], start: usize, len: usize) -> Result<Vec<Replace>> {
        let d = self.hidden_size();
        patches
            .iter()
            .map(|p| {
                if p.vector.len() != d {
                    return Err(Error::model(format!(
                        "patch vector has {} values, the model's hidden size is {d}",
                        p.vector.len()
                    )));
                }
                if !p.scale.is_finite() {
                    return Err(Error::model(format!(
                        "patch scale {} is not finite",
                        p.scale
                    )));
                }
                if p.position < start || p.position >= start + len {
                    return Err(Error::model(format!(
                        "patch position {} is outside the run {start}..{}",
                        p.position,
                        start + len
                    )));
                }
                let vector = match p.op {
                    Operator::AddNormalized => {
                        let norm = p.vector.iter().map(|v| v * v).sum::<f32>().sqrt();
                        if norm == 0.0 || !norm.is_finite() {
                            return Err(Error::model(
                                "add-normalized needs a vector with a finite, non-zero norm",
                            ));
                        }
                        p.vector.iter().map(|v| v / norm).collect()
                    }
                    _ => p.vector.clone(),
                };
                Ok(Replace {
                    layer: p.layer,
                    position: p.position - start,
                    op: p.op,
                    scale: p.scale,
                    vector: Tensor::from_data(TensorData::new(vector, [d]), self.device()),
                })
            })
            .collect()
    }

    /// Runs the decoder over input embeddings `x` ([len, hidden]) continuing `cache` (empty for
    /// a fresh prompt), applying the intervention. Captured positions and patch positions are
    /// absolute; captured positions must lie in this run.
    pub fn forward(
        &self,
        x: Tensor<2>,
        cache: KvCache,
        iv: &Intervention,
    ) -> Result<ForwardOutput> {
        self.on_pool(|| self.forward_here(x, cache, iv))
    }

    /// Runs `f` on the CPU thread pool when the model computes on the host ([`par::pooled`]).
    fn on_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        if device::on_host(self.device()) {
            par::pooled(f)
        } else {
            f()
        }
    }

    fn forward_here(
        &self,
        x: Tensor<2>,
        cache: KvCache,
        iv: &Intervention,
    ) -> Result<ForwardOutput> {
        let [len, d] = x.dims();
        let start = cache.len();
        let mut cache = cache;
        let rel: Vec<usize> = iv
            .capture
            .iter()
            .map(|&p| {
                p.checked_sub(start).filter(|&r| r < len).ok_or_else(|| {
                    Error::model(format!(
                        "capture position {p} is outside the run {start}..{}",
                        start + len
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let replace = self.replaces(&iv.patches, start, len)?;
        let mut states = Vec::new();
        if !rel.is_empty() {
            let idx: Vec<i64> = rel.iter().map(|&p| p as i64).collect();
            let t = Tensor::<1, burn::tensor::Int>::from_data(
                TensorData::new(idx, [rel.len()]),
                self.device(),
            );
            states.push(x.clone().select(0, t));
        }
        let capture = (!rel.is_empty()).then_some((rel.as_slice(), &mut states));
        let h = self.text.run_layers(
            x,
            start,
            0..self.num_layers(),
            &mut cache,
            CacheMode::Store,
            Hooks {
                replace: &replace,
                capture,
            },
        )?;
        let h = if iv.all_logits {
            h
        } else {
            h.slice([len - 1..len, 0..d])
        };
        Ok(ForwardOutput {
            logits: self.text.logits(h),
            hidden: (!states.is_empty()).then(|| Tensor::stack(states, 0)),
            cache,
        })
    }

    /// Replaces the residual stream of the next position (the one after `cache`) at the output
    /// of layer `layer` with `residual` ([hidden]) and runs the remaining layers for that one
    /// position, leaving the cache unchanged. Returns its logits [1, vocab]. The layer sweep
    /// branches from one prefill with this.
    pub fn resume_after_layer(
        &self,
        residual: &[f32],
        layer: usize,
        cache: &KvCache,
    ) -> Result<Tensor<2>> {
        let d = self.hidden_size();
        if residual.len() != d || layer >= self.num_layers() {
            return Err(Error::model(format!(
                "cannot resume after layer {layer} with a vector of {} values (model: {} layers, hidden {d})",
                residual.len(),
                self.num_layers()
            )));
        }
        let x = Tensor::<2>::from_data(TensorData::new(residual.to_vec(), [1, d]), self.device());
        let mut c = cache.clone();
        let h = self.text.run_layers(
            x,
            cache.len(),
            layer + 1..self.num_layers(),
            &mut c,
            CacheMode::ReadOnly,
            Hooks::default(),
        )?;
        Ok(self.text.logits(h))
    }

    /// Logits of the next position (after `cache`, whose input embedding is `next`,
    /// [hidden]) for every patch layer at once: row l has the residual stream replaced by
    /// `vectors[l]` at the output of layer l. [layers, vocab]. Equals one patched forward per
    /// layer (tested), at the cost of about one forward of `layers` tokens.
    pub fn sweep_next(
        &self,
        next: Tensor<2>,
        vectors: &[Vec<f32>],
        cache: &KvCache,
    ) -> Result<Tensor<2>> {
        let (l, d) = (self.num_layers(), self.hidden_size());
        if vectors.len() != l || vectors.iter().any(|v| v.len() != d) || next.dims() != [1, d] {
            return Err(Error::model(format!(
                "a sweep needs {l} vectors of {d} values and one input row"
            )));
        }
        let replace: Vec<Replace> = vectors
            .iter()
            .enumerate()
            .map(|(layer, v)| Replace {
                layer,
                position: layer,
                op: Operator::Replace,
                scale: 1.0,
                vector: Tensor::from_data(TensorData::new(v.clone(), [d]), self.device()),
            })
            .collect();
        self.on_pool(|| {
            Ok(self
                .text
                .logits(self.text.run_sweep(next, cache, &replace)?))
        })
    }

    /// Logit lens: final norm + LM head applied to residual-stream rows ([n][hidden]), giving
    /// logits [n, vocab].
    pub fn logit_lens(&self, rows: &[Vec<f32>]) -> Result<Tensor<2>> {
        let d = self.hidden_size();
        if rows.is_empty() || rows.iter().any(|r| r.len() != d) {
            return Err(Error::model(format!("logit lens needs rows of {d} values")));
        }
        let flat: Vec<f32> = rows.concat();
        Ok(self.text.logits(Tensor::from_data(
            TensorData::new(flat, [rows.len(), d]),
            self.device(),
        )))
    }

    /// Greedy decoding: runs the prompt (with the intervention's patches), then appends up to
    /// `max_new` tokens, stopping after any id in `stop`. Returns the new ids.
    pub async fn generate(
        &self,
        x: Tensor<2>,
        iv: &Intervention,
        max_new: usize,
        stop: &[u32],
    ) -> Result<Vec<u32>> {
        self.generate_streaming(x, iv, max_new, stop, &mut |_| {})
            .await
    }

    /// [`Self::generate`], calling `on_token` with the ids so far after each new token.
    pub async fn generate_streaming(
        &self,
        x: Tensor<2>,
        iv: &Intervention,
        max_new: usize,
        stop: &[u32],
        on_token: &mut dyn FnMut(&[u32]),
    ) -> Result<Vec<u32>> {
        let mut run = iv.clone();
        run.all_logits = false;
        run.capture.clear();
        let out = self.forward(x, KvCache::new(self.num_layers()), &run)?;
        self.continue_streaming(out.logits, out.cache, iv, max_new, stop, on_token)
            .await
    }

    /// Greedy decoding after a forward pass that left `logits` (its last row picks the first
    /// new token) and `cache`: appends up to `max_new` tokens, stopping after any id in `stop`.
    /// With `iv.every_token` each new position gets the patches of `iv`'s last patched one.
    pub async fn continue_streaming(
        &self,
        mut logits: Tensor<2>,
        mut cache: KvCache,
        iv: &Intervention,
        max_new: usize,
        stop: &[u32],
        on_token: &mut dyn FnMut(&[u32]),
    ) -> Result<Vec<u32>> {
        let mut new = Vec::new();
        while new.len() < max_new {
            let next = argmax_last(logits).await?;
            new.push(next);
            on_token(&new);
            if stop.contains(&next) || new.len() == max_new {
                break;
            }
            let step = Intervention {
                patches: if iv.every_token {
                    steering_at(&iv.patches, cache.len())
                } else {
                    vec![]
                },
                ..Default::default()
            };
            let out = self.forward(self.text.embed(&[next])?, cache, &step)?;
            logits = out.logits;
            cache = out.cache;
        }
        Ok(new)
    }
}

/// Reads a tensor back to the host as f32 (works on every backend, including WebGPU).
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| Error::Backend(format!("{e:?}")))?;
    data.try_into_vec_as::<f32>()
        .map_err(|e| Error::Backend(format!("{e:?}")))
}

/// The index of the largest value of the last row of `logits`.
pub async fn argmax_last(logits: Tensor<2>) -> Result<u32> {
    let [n, v] = logits.dims();
    let row = read_f32(logits.slice([n - 1..n, 0..v])).await?;
    Ok(argmax(&row) as u32)
}

/// Index of the largest value (first one on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
