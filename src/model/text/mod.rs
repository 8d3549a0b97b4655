//! The Llama / SmolLM2 decoder: RMSNorm (f32), rotate-half RoPE, grouped-query attention,
//! SwiGLU MLP, untied or tied LM head. Runs any contiguous range of layers over a chunk of
//! positions, so a forward pass can be resumed from any layer (the layer sweep needs it).

use std::ops::Range;

use burn::tensor::{Device, Int, Tensor, TensorData};

mod parts;
mod sweep;

use parts::{Chunk, Projections, RopeTables, heads_host, repeat_kv, select_rows};

use super::cache::KvCache;
use super::config::TextConfig;
use super::device::{bytes, download, on_host, upload};
use super::host_attention::{self, Visible};
use super::layers::{Linear, Matrix, attention, load_vec, rms_norm};
use crate::error::{Error, Result};
use crate::weights::{Part, TensorSource};

/// One decoder block.
#[derive(Debug, Clone)]
struct Block {
    attn_norm: Tensor<1>,
    /// Q, K, V.
    qkv: Projections,
    o: Linear,
    mlp_norm: Tensor<1>,
    /// Gate, up.
    gate_up: Projections,
    down: Linear,
}

/// Token embeddings: f32 rows on the device, or a quantized matrix (shared with a tied LM head).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per model
enum Embedding {
    Dense(Tensor<2>),
    Blocks(Matrix),
}

/// The language model: embeddings, decoder blocks, final norm, LM head.
#[derive(Debug, Clone)]
pub struct TextModel {
    /// Its configuration.
    pub config: TextConfig,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: Tensor<1>,
    lm_head: Matrix,
    inv_freq: Vec<f32>,
    device: Device,
}

/// Change the residual stream (output of decoder layer `layer`) at chunk position `position`
/// by `op` (see [`super::Operator`]).
#[derive(Debug, Clone)]
pub struct Replace {
    /// Decoder layer (0-based) whose output is changed.
    pub layer: usize,
    /// Position inside the chunk being run.
    pub position: usize,
    /// The vector, [hidden] (unit length for [`super::Operator::AddNormalized`]).
    pub vector: Tensor<1>,
    /// How the stream is changed.
    pub op: super::Operator,
    /// Strength.
    pub scale: f32,
}

/// What to do to the residual stream while layers run: replacements and captures.
#[derive(Default)]
pub struct Hooks<'a> {
    /// Layer outputs to overwrite.
    pub replace: &'a [Replace],
    /// Chunk positions to capture after every layer, and where to push the captures.
    pub capture: Option<(&'a [usize], &'a mut Vec<Tensor<2>>)>,
}

impl Replace {
    /// `x` ([rows, hidden]) with row `position` changed by the operator.
    fn apply(&self, x: Tensor<2>) -> Tensor<2> {
        let d = x.dims()[1];
        let site = [self.position..self.position + 1, 0..d];
        let v = self.vector.clone().unsqueeze_dim::<2>(0) * self.scale;
        let new = match self.op {
            super::Operator::Replace => v,
            super::Operator::Add => x.clone().slice(site.clone()) + v,
            super::Operator::AddNormalized => {
                let h = x.clone().slice(site.clone());
                let norm = h.clone().powf_scalar(2.0).sum_dim(1).sqrt();
                h + v * norm
            }
        };
        x.slice_assign(site, new)
    }
}

/// Whether a chunk's keys and values are kept in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Append the chunk's keys/values (normal prefill and decoding).
    Store,
    /// Attend to the cache but leave it unchanged (branching runs of the layer sweep).
    ReadOnly,
}

impl TextModel {
    /// Builds the model from weights named like Hugging Face's `LlamaForCausalLM`.
    pub fn load(config: TextConfig, src: &dyn TensorSource, device: &Device) -> Result<Self> {
        let c = &config;
        let (d, hd) = (c.hidden_size, c.head_dim);
        let p = Part::Text;
        let lin =
            |name: String, i: usize, o: usize| Linear::load(src, p, &name, [i, o], false, device);
        let mut blocks = Vec::with_capacity(c.num_layers);
        for l in 0..c.num_layers {
            let n = |s: &str| format!("layers.{l}.{s}");
            blocks.push(Block {
                attn_norm: load_vec(src, p, &n("input_layernorm.weight"), d, device)?,
                qkv: Projections::new(vec![
                    lin(n("self_attn.q_proj"), d, c.num_heads * hd)?,
                    lin(n("self_attn.k_proj"), d, c.num_kv_heads * hd)?,
                    lin(n("self_attn.v_proj"), d, c.num_kv_heads * hd)?,
                ]),
                o: lin(n("self_attn.o_proj"), c.num_heads * hd, d)?,
                mlp_norm: load_vec(src, p, &n("post_attention_layernorm.weight"), d, device)?,
                gate_up: Projections::new(vec![
                    lin(n("mlp.gate_proj"), d, c.intermediate_size)?,
                    lin(n("mlp.up_proj"), d, c.intermediate_size)?,
                ]),
                down: lin(n("mlp.down_proj"), c.intermediate_size, d)?,
            });
        }
        // The LM head is used as `x · W` ([hidden, vocab]). An untied head is its own matrix; a
        // tied one is the embedding: the same blocks when quantized, else one host read serves
        // both f32 layouts.
        let (vocab, en, hn) = (c.vocab_size, "embed_tokens.weight", "lm_head.weight");
        let untied = if c.tie_word_embeddings {
            None
        } else if let Some(m) = Matrix::load_blocks(src, p, hn, [d, vocab], device)? {
            Some(m)
        } else if let Some(h) = src.get(p, hn)? {
            Some(Matrix::from_host(h, hn, [d, vocab], device)?)
        } else {
            None
        };
        let (embed, lm_head) = match Matrix::load_blocks(src, p, en, [d, vocab], device)? {
            Some(m) => (Embedding::Blocks(m.clone()), untied.unwrap_or(m)),
            None => {
                let host = src.require(p, en)?.expect_shape(en, &[vocab, d])?;
                let head = match untied {
                    Some(h) => h,
                    None => Matrix::from_host(host.clone(), en, [d, vocab], device)?,
                };
                (Embedding::Dense(upload(host, device)), head)
            }
        };
        // transformers: inv_freq = 1 / theta^(2i/d), in f32.
        let inv_freq = (0..hd / 2)
            .map(|i| 1.0 / (c.rope_theta as f32).powf((2 * i) as f32 / hd as f32))
            .collect();
        Ok(TextModel {
            embed,
            lm_head,
            norm: load_vec(src, p, "norm.weight", d, device)?,
            blocks,
            inv_freq,
            device: device.clone(),
            config,
        })
    }

    /// Bytes the weights occupy on the device, summed over every parameter tensor.
    pub fn resident_bytes(&self) -> usize {
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                bytes(&b.attn_norm)
                    + bytes(&b.mlp_norm)
                    + b.qkv.resident_bytes()
                    + b.gate_up.resident_bytes()
                    + b.o.resident_bytes()
                    + b.down.resident_bytes()
            })
            .sum();
        let embed = match &self.embed {
            Embedding::Dense(t) => bytes(t),
            Embedding::Blocks(m) => m.resident_bytes(),
        };
        let head = match &self.embed {
            Embedding::Blocks(e) if e.shares(&self.lm_head) => 0,
            _ => self.lm_head.resident_bytes(),
        };
        blocks + embed + head + bytes(&self.norm)
    }

    /// The integer activation path its quantized host matrices take (`None`: f32 activations,
    /// or no quantized host matrices).
    pub fn integer_activations(&self) -> Option<super::qmatmul::Activations> {
        match &self.lm_head {
            Matrix::Quant(q) if q.activations() != super::qmatmul::Activations::F32 => {
                Some(q.activations())
            }
            _ => None,
        }
    }

    /// Storage types of the matrices, e.g. `q4_1+q8_0` or `f32` (most frequent first).
    pub fn storage(&self) -> String {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        let all = self
            .blocks
            .iter()
            .flat_map(|b| {
                let mut s = b.qkv.storage();
                s.extend([b.o.weight.storage()]);
                s.extend(b.gate_up.storage());
                s.push(b.down.weight.storage());
                s
            })
            .chain([self.lm_head.storage()]);
        for s in all {
            match counts.iter_mut().find(|(n, _)| *n == s) {
                Some((_, c)) => *c += 1,
                None => counts.push((s, 1)),
            }
        }
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        counts.iter().map(|(n, _)| *n).collect::<Vec<_>>().join("+")
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Token embeddings for `ids`, [len, hidden]. Ids must be < vocab size.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor<2>> {
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.config.vocab_size) {
            return Err(Error::model(format!(
                "token id {bad} is outside the vocabulary ({})",
                self.config.vocab_size
            )));
        }
        match &self.embed {
            Embedding::Dense(e) => {
                let idx: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
                let t =
                    Tensor::<1, Int>::from_data(TensorData::new(idx, [ids.len()]), &self.device);
                Ok(e.clone().select(0, t))
            }
            Embedding::Blocks(m) => m
                .rows(ids, &self.device)
                .ok_or_else(|| Error::model("embedding matrix without rows")),
        }
    }

    /// cos and sin tables [len, head_dim] for positions `start..start+len` (rotate-half layout).
    fn rope_tables(&self, start: usize, len: usize) -> RopeTables {
        let hd = self.config.head_dim;
        let mut cos = Vec::with_capacity(len * hd);
        let mut sin = Vec::with_capacity(len * hd);
        for p in start..start + len {
            let f: Vec<f32> = self.inv_freq.iter().map(|&w| p as f32 * w).collect();
            for _ in 0..2 {
                cos.extend(f.iter().map(|x| x.cos()));
                sin.extend(f.iter().map(|x| x.sin()));
            }
        }
        let mk = |v: &Vec<f32>| {
            Tensor::<2>::from_data(TensorData::new(v.clone(), [len, hd]), &self.device)
                .unsqueeze_dim::<3>(0)
        };
        RopeTables {
            cos_t: mk(&cos),
            sin_t: mk(&sin),
            cos,
            sin,
        }
    }

    /// Runs decoder layers `layers` over a chunk `x` ([len, hidden]) whose first position is
    /// absolute position `start` (the cache must hold exactly `start` positions). The hooks'
    /// replacements overwrite layer outputs; their capture receives each layer's output (raw
    /// residual stream) at the given chunk positions. Returns the residual stream after the
    /// last layer run.
    pub fn run_layers(
        &self,
        mut x: Tensor<2>,
        start: usize,
        layers: Range<usize>,
        cache: &mut KvCache,
        mode: CacheMode,
        hooks: Hooks<'_>,
    ) -> Result<Tensor<2>> {
        let Hooks {
            replace,
            mut capture,
        } = hooks;
        let c = &self.config;
        let [len, d] = x.dims();
        if layers.end > c.num_layers || layers.start > layers.end {
            return Err(Error::model(format!(
                "layer range {layers:?} outside 0..{}",
                c.num_layers
            )));
        }
        if start + len > c.max_positions {
            return Err(Error::model(format!(
                "sequence of {} tokens exceeds the model's context of {}",
                start + len,
                c.max_positions
            )));
        }
        for r in replace {
            if r.position >= len || r.layer >= c.num_layers || r.vector.dims() != [d] {
                return Err(Error::model(format!(
                    "replacement at layer {} position {} does not fit a chunk of {len} positions and {} layers (vector {:?})",
                    r.layer,
                    r.position,
                    c.num_layers,
                    r.vector.dims()
                )));
            }
        }
        let chunk = self.chunk(start, len, true);
        for l in layers {
            x = self.block(l, x, &chunk, cache, mode);
            for r in replace.iter().filter(|r| r.layer == l) {
                x = r.apply(x);
            }
            if let Some((pos, out)) = capture.as_mut() {
                out.push(select_rows(&x, pos, &self.device));
            }
        }
        if mode == CacheMode::Store {
            cache.advance(len);
        }
        Ok(x)
    }

    /// The positions `start..start + len` a pass runs: their RoPE tables and, if `causal` and
    /// there are several, the causal mask against the cache's `start` earlier positions.
    fn chunk(&self, start: usize, len: usize, causal: bool) -> Chunk {
        let rope = self.rope_tables(start, len);
        let visible = if causal && len > 1 {
            Visible::Causal
        } else {
            Visible::All
        };
        Chunk { rope, visible }
    }

    /// Q, K, V of rows `x` at layer `l`, RoPE applied: [heads, rows, d] and [kv, rows, d] ×2.
    fn qkv(&self, l: usize, x: &Tensor<2>, chunk: &Chunk) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
        let c = &self.config;
        let b = &self.blocks[l];
        let [len, _] = x.dims();
        let h = rms_norm(x.clone(), &b.attn_norm, c.rms_norm_eps);
        let heads = |t: Tensor<2>, n: usize| t.reshape([len, n, c.head_dim]).swap_dims(0, 1);
        let [q, k, v]: [Tensor<2>; 3] = b.qkv.forward(h).try_into().expect("Q, K, V");
        let q = chunk.rope.apply(heads(q, c.num_heads));
        let k = chunk.rope.apply(heads(k, c.num_kv_heads));
        (q, k, heads(v, c.num_kv_heads))
    }

    /// [`Self::qkv`] on the CPU backend: the projections read back once, the heads split out
    /// (and rotated) by one host pass each. Queries head-major `[heads, rows, d]` in host
    /// memory; keys and values as tensors `[kv, rows, d]` for the cache.
    fn qkv_host(&self, l: usize, x: &Tensor<2>, chunk: &Chunk) -> (Vec<f32>, Tensor<3>, Tensor<3>) {
        let c = &self.config;
        let b = &self.blocks[l];
        let h = rms_norm(x.clone(), &b.attn_norm, c.rms_norm_eps);
        let y = b.qkv.forward_whole(h);
        let [s, ld] = y.dims();
        let y = download(y);
        let (nq, nk, d) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let rope = Some(&chunk.rope);
        let q = heads_host(&y, [s, ld], 0, nq, d, rope);
        let k = heads_host(&y, [s, ld], nq * d, nk, d, rope);
        let v = heads_host(&y, [s, ld], (nq + nk) * d, nk, d, None);
        let kv = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [nk, s, d]), &self.device);
        (q, kv(k), kv(v))
    }

    /// Output projection, residual add and the SwiGLU MLP of layer `l`.
    fn finish(&self, l: usize, x: Tensor<2>, attn: Tensor<2>) -> Tensor<2> {
        let b = &self.blocks[l];
        let x = x + b.o.forward(attn);
        let h = rms_norm(x.clone(), &b.mlp_norm, self.config.rms_norm_eps);
        let m = b.gate_up.swiglu(h);
        x + b.down.forward(m)
    }

    /// Decoder layer `l` on rows `x` at the chunk's positions, extending `cache` by them.
    fn block(
        &self,
        l: usize,
        x: Tensor<2>,
        chunk: &Chunk,
        cache: &mut KvCache,
        mode: CacheMode,
    ) -> Tensor<2> {
        let c = &self.config;
        if on_host(&self.device) {
            let (q, k, v) = self.qkv_host(l, &x, chunk);
            let (k, v) = cache.extend(l, k, v, mode == CacheMode::Store);
            // Heads read their key/value head in place: no repeated copies, no mask tensor.
            let ([kv, total, d], s) = (k.dims(), x.dims()[0]);
            let o = host_attention::attention_grouped(
                &q,
                &download(k),
                &download(v),
                [c.num_heads, s, total, kv, d],
                chunk.visible,
            );
            let a = Tensor::from_data(TensorData::new(o, [s, c.num_heads * d]), &self.device);
            return self.finish(l, x, a);
        }
        let (q, k, v) = self.qkv(l, &x, chunk);
        let (k, v) = cache.extend(l, k, v, mode == CacheMode::Store);
        let group = c.num_heads / c.num_kv_heads;
        // The mask as a tensor, built only here (the host attention above takes `visible`).
        let (s, total) = (x.dims()[0], k.dims()[1]);
        let mask = chunk
            .visible
            .additive(s, total)
            .map(|m| Tensor::<2>::from_data(TensorData::new(m, [s, total]), &self.device));
        let a = attention(q, repeat_kv(k, group), repeat_kv(v, group), mask);
        self.finish(l, x, a)
    }

    /// Final norm + LM head on residual rows ([n, hidden] → logits [n, vocab]); also the logit
    /// lens when applied to an intermediate layer's residual stream.
    pub fn logits(&self, h: Tensor<2>) -> Tensor<2> {
        self.lm_head
            .apply(rms_norm(h, &self.norm, self.config.rms_norm_eps))
    }
}
