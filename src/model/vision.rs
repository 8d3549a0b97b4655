//! The SigLIP vision encoder and the Idefics3 connector (pixel shuffle + linear projection):
//! pixels [3, S, S] → image features [tokens_per_image, text hidden].

use burn::tensor::{Device, Tensor, TensorData};

use super::config::VisionConfig;
use super::device::{bytes, upload};
use super::layers::{LayerNorm, Linear, attention};
use crate::error::{Error, Result};
use crate::weights::{Part, TensorSource};

#[derive(Debug, Clone)]
struct EncoderLayer {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
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
                q: lin(n("self_attn.q_proj"), d, d)?,
                k: lin(n("self_attn.k_proj"), d, d)?,
                v: lin(n("self_attn.v_proj"), d, d)?,
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
                    + [&l.q, &l.k, &l.v, &l.out, &l.fc1, &l.fc2]
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
        let (h, hd) = (c.num_heads, c.hidden_size / c.num_heads);
        let heads = |t: Tensor<2>| t.reshape([n * n, h, hd]).swap_dims(0, 1);
        for layer in &self.layers {
            let y = layer.ln1.forward(x.clone());
            let a = attention(
                heads(layer.q.forward(y.clone())),
                heads(layer.k.forward(y.clone())),
                heads(layer.v.forward(y)),
                None,
            );
            x = x + layer.out.forward(a);
            let y = layer.ln2.forward(x.clone());
            x = x + layer.fc2.forward(layer.fc1.forward_gelu(y));
            states.push(x.clone());
        }
        states.push(self.post_ln.forward(x));
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
