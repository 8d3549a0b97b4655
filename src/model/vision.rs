//! The SigLIP vision encoder and the Idefics3 connector (pixel shuffle + linear projection):
//! pixels [3, S, S] → image features [tokens_per_image, text hidden].

use burn::tensor::{Device, Tensor, TensorData};

use super::config::VisionConfig;
use super::device::{bytes, upload};
use super::layers::{LayerNorm, Linear, Matrix, self_attention, self_attention_fused};
use crate::error::{Error, Result};
use crate::weights::{Part, TensorSource};

#[derive(Debug, Clone)]
struct EncoderLayer {
    ln1: LayerNorm,
    qkv: Projections,
    out: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// An encoder layer's query, key and value projections: one product with the three side by
/// side where the weights are f32 panels ([`Linear::fuse`]: one pass over the input, and the
/// attention reads its operands in place), three products otherwise.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per layer; boxing buys nothing
enum Projections {
    Separate([Linear; 3]),
    Fused(Linear),
}

impl Projections {
    fn new(q: Linear, k: Linear, v: Linear) -> Self {
        let parts = [q, k, v];
        match &parts[0].weight {
            Matrix::Panels(_) => Linear::fuse(&parts).map_or(Self::Separate(parts), Self::Fused),
            _ => Self::Separate(parts),
        }
    }

    fn resident_bytes(&self) -> usize {
        match self {
            Self::Separate(p) => p.iter().map(Linear::resident_bytes).sum(),
            Self::Fused(f) => f.resident_bytes(),
        }
    }

    /// Attention over `heads` heads of the rows `y` ([S, hidden] → [S, hidden]), its two
    /// halves timed apart: `mark()` is called between the projections and the attention.
    fn attend(&self, y: Tensor<2>, heads: usize, mark: &mut dyn FnMut(usize)) -> Tensor<2> {
        match self {
            Self::Separate([q, k, v]) => {
                let (q, k, v) = (q.forward(y.clone()), k.forward(y.clone()), v.forward(y));
                mark(1);
                self_attention(q, k, v, heads)
            }
            Self::Fused(f) => {
                let qkv = f.forward(y);
                mark(1);
                self_attention_fused(qkv, heads)
            }
        }
    }
}

/// Milliseconds per part of one encoding, summed over the layers, and the products' rates
/// (GFLOP/s): see [`VisionModel::encode_phases`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct EncoderPhases {
    /// Layer norms, patch embedding and residual sums, ms.
    pub layer_norms: f64,
    /// Query, key and value projections (with their biases), ms.
    pub qkv: f64,
    /// Their rate.
    pub qkv_gflops: f64,
    /// Attention (scores, softmax, weighted values), ms.
    pub attention: f64,
    /// Its rate (the two products).
    pub attention_gflops: f64,
    /// Attention output projection and residual sum, ms.
    pub out: f64,
    /// MLP up projection and GELU, ms.
    pub mlp_up: f64,
    /// Its rate.
    pub mlp_up_gflops: f64,
    /// MLP down projection and residual sum, ms.
    pub mlp_down: f64,
    /// Its rate.
    pub mlp_down_gflops: f64,
}

/// Vision encoder and connector.
#[derive(Debug, Clone)]
pub struct VisionModel {
    /// Its configuration.
    pub config: VisionConfig,
    patch_w: Tensor<2>,
    patch_b: Tensor<1>,
    pos: Tensor<2>,
    layers: Vec<EncoderLayer>,
    post_ln: LayerNorm,
    proj: Linear,
    device: Device,
}

impl VisionModel {
    /// Builds the encoder and connector; `text_hidden` is the projection's output width.
    pub fn load(
        config: VisionConfig,
        text_hidden: usize,
        src: &dyn TensorSource,
        device: &Device,
    ) -> Result<Self> {
        let c = &config;
        let (d, p) = (c.hidden_size, c.patch_size);
        let part = Part::Vision;
        let n_patch = c.patches_per_side().pow(2);
        let pw_name = "embeddings.patch_embedding.weight";
        let pw = src
            .require(part, pw_name)?
            .expect_shape(pw_name, &[d, 3, p, p])?;
        let pw = crate::weights::HostTensor {
            shape: vec![d, 3 * p * p],
            data: pw.data,
        }
        .transposed();
        let ln = |name: String| LayerNorm::load(src, part, &name, d, c.layer_norm_eps, device);
        let lin = |name: String, i, o| Linear::load(src, part, &name, [i, o], true, device);
        let mut layers = Vec::with_capacity(c.num_layers);
        for l in 0..c.num_layers {
            let n = |s: &str| format!("encoder.layers.{l}.{s}");
            layers.push(EncoderLayer {
                ln1: ln(n("layer_norm1"))?,
                qkv: Projections::new(
                    lin(n("self_attn.q_proj"), d, d)?,
                    lin(n("self_attn.k_proj"), d, d)?,
                    lin(n("self_attn.v_proj"), d, d)?,
                ),
                out: lin(n("self_attn.out_proj"), d, d)?,
                ln2: ln(n("layer_norm2"))?,
                fc1: lin(n("mlp.fc1"), d, c.intermediate_size)?,
                fc2: lin(n("mlp.fc2"), c.intermediate_size, d)?,
            });
        }
        let pos_name = "embeddings.position_embedding.weight";
        let shuffled = d * c.scale_factor * c.scale_factor;
        Ok(VisionModel {
            patch_w: upload(pw, device),
            patch_b: upload(
                src.require(part, "embeddings.patch_embedding.bias")?
                    .expect_shape("embeddings.patch_embedding.bias", &[d])?,
                device,
            ),
            pos: upload(
                src.require(part, pos_name)?
                    .expect_shape(pos_name, &[n_patch, d])?,
                device,
            ),
            layers,
            post_ln: ln("post_layernorm".into())?,
            proj: Linear::load(
                src,
                Part::Connector,
                "modality_projection.proj",
                [shuffled, text_hidden],
                false,
                device,
            )?,
            device: device.clone(),
            config,
        })
    }

    /// Bytes the weights occupy on the device, summed over every parameter tensor.
    pub fn resident_bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                l.ln1.resident_bytes()
                    + l.ln2.resident_bytes()
                    + l.qkv.resident_bytes()
                    + [&l.out, &l.fc1, &l.fc2]
                        .iter()
                        .map(|x| x.resident_bytes())
                        .sum::<usize>()
            })
            .sum();
        layers
            + bytes(&self.patch_w)
            + bytes(&self.patch_b)
            + bytes(&self.pos)
            + self.post_ln.resident_bytes()
            + self.proj.resident_bytes()
    }

    /// Runs the encoder on normalized pixels ([3, S, S] row-major). Returns every hidden state
    /// ([patches, hidden] each): the embeddings, each layer's output, and last the
    /// post-layernorm output.
    pub fn encode(&self, pixels: &[f32]) -> Result<Vec<Tensor<2>>> {
        self.encode_marked(pixels, &mut |_| {})
    }

    /// Where one encoding's time goes, summed over the layers: `now()` is a clock in
    /// milliseconds read after each part. Meaningful only where tensor ops run to completion
    /// when called (the CPU backend), not on WebGPU's queue.
    pub fn encode_phases(&self, pixels: &[f32], now: &dyn Fn() -> f64) -> Result<EncoderPhases> {
        let mut ms = [0f64; 6];
        let mut last = now();
        self.encode_marked(pixels, &mut |part| {
            let t = now();
            ms[part] += t - last;
            last = t;
        })?;
        let [layer_norms, qkv, attention, out, mlp_up, mlp_down] = ms;
        let c = &self.config;
        let (n, d, f) = (
            c.patches_per_side().pow(2) as f64,
            c.hidden_size as f64,
            c.intermediate_size as f64,
        );
        let gflop = |flop: f64| flop * c.num_layers as f64 / 1e9;
        let rate = |flop: f64, ms: f64| gflop(flop) / (ms.max(1e-3) / 1e3);
        Ok(EncoderPhases {
            layer_norms,
            qkv,
            qkv_gflops: rate(6.0 * n * d * d, qkv),
            attention,
            attention_gflops: rate(4.0 * n * n * d, attention),
            out,
            mlp_up,
            mlp_up_gflops: rate(2.0 * n * d * f, mlp_up),
            mlp_down,
            mlp_down_gflops: rate(2.0 * n * d * f, mlp_down),
        })
    }

    /// [`VisionModel::encode`], calling `mark(part)` when each part of a layer is done: 0 the
    /// layer norms (and the residual sums), 1 the query/key/value projections, 2 attention, 3
    /// its output projection, 4 the MLP's first product and GELU, 5 its second product.
    fn encode_marked(&self, pixels: &[f32], mark: &mut dyn FnMut(usize)) -> Result<Vec<Tensor<2>>> {
        let c = &self.config;
        let (s, p, n) = (c.image_size, c.patch_size, c.patches_per_side());
        if pixels.len() != 3 * s * s {
            return Err(Error::model(format!(
                "pixel input has {} values, the encoder needs 3x{s}x{s}",
                pixels.len()
            )));
        }
        // Patchify [3, n, p, n, p] → [n, n, 3, p, p]: same flattening as the conv weight.
        let px = Tensor::<1>::from_data(
            TensorData::new(pixels.to_vec(), [pixels.len()]),
            &self.device,
        )
        .reshape([3, n, p, n, p])
        .permute([1, 3, 0, 2, 4])
        .reshape([n * n, 3 * p * p]);
        let mut x = px.matmul(self.patch_w.clone())
            + self.patch_b.clone().unsqueeze_dim::<2>(0)
            + self.pos.clone();
        let mut states = vec![x.clone()];
        mark(0);
        for layer in &self.layers {
            let y = layer.ln1.forward(x.clone());
            mark(0);
            let a = layer.qkv.attend(y, c.num_heads, mark);
            mark(2);
            x = x + layer.out.forward(a);
            mark(3);
            let y = layer.ln2.forward(x.clone());
            mark(0);
            let y = layer.fc1.forward_gelu(y);
            mark(4);
            x = x + layer.fc2.forward(y);
            mark(5);
            states.push(x.clone());
        }
        states.push(self.post_ln.forward(x));
        mark(0);
        Ok(states)
    }

    /// Pixel shuffle (as transformers' `Idefics3Connector.pixel_shuffle`) and projection:
    /// encoder output [patches, hidden] → [tokens_per_image, text hidden].
    pub fn connect(&self, x: Tensor<2>) -> Tensor<2> {
        let c = &self.config;
        let (n, e, s) = (c.patches_per_side(), c.hidden_size, c.scale_factor);
        let x = x
            .reshape([n, n / s, e * s])
            .swap_dims(0, 1)
            .reshape([n / s, n / s, e * s * s])
            .swap_dims(0, 1)
            .reshape([(n / s) * (n / s), e * s * s]);
        self.proj.forward(x)
    }

    /// Image features for one preprocessed image.
    pub fn features(&self, pixels: &[f32]) -> Result<Tensor<2>> {
        let states = self.encode(pixels)?;
        Ok(self.connect(states.into_iter().last().expect("encoder returns states")))
    }
}
