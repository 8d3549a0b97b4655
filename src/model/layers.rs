//! Building blocks shared by the vision encoder and the text decoder: linear layers, norms,
//! and moving host tensors to a device.

use std::sync::Arc;

use burn::tensor::{Device, Int, Tensor, TensorData, activation::gelu_approximate};

use super::dense::{self, PanelMatrix};
use super::device::{bytes, download, on_host, upload};
use super::host_attention::{self, Kernel};
use super::host_ops;
use super::packed::PackedMatrix;
use super::qmatmul::QuantMatrix;
use crate::error::Result;
use crate::weights::{HostTensor, Part, TensorSource, blocks};

/// A weight matrix used as `x · W`: f32 on the device, f32 column panels in host memory (the
/// threaded browser build, [`dense`]), quantized blocks in host memory (CPU backend) multiplied
/// by taskvec's kernels, or quantized blocks in device tensors (WebGPU) dequantized chunk by
/// chunk for each product.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a handful per layer; boxing the tensor buys nothing
pub enum Matrix {
    /// f32 `[in, out]` on the device.
    Dense(Tensor<2>),
    /// f32 column panels in host memory.
    Panels(Arc<PanelMatrix>),
    /// Quantized `[out, in]` blocks in host memory.
    Quant(Arc<QuantMatrix>),
    /// Quantized `[out, in]` blocks in device tensors.
    Packed(Arc<PackedMatrix>),
}

impl Matrix {
    /// Loads the PyTorch `[out, in]` matrix `name`, keeping its blocks where the device allows.
    pub fn load(
        src: &dyn TensorSource,
        part: Part,
        name: &str,
        in_out: [usize; 2],
        device: &Device,
    ) -> Result<Self> {
        if let Some(m) = Self::load_blocks(src, part, name, in_out, device)? {
            return Ok(m);
        }
        Self::from_host(src.require(part, name)?, name, in_out, device)
    }

    /// The matrix as quantized blocks (host blocks on the CPU backend, device blocks elsewhere)
    /// when the source stores it in a type the kernels take (`None` otherwise, also when absent).
    pub fn load_blocks(
        src: &dyn TensorSource,
        part: Part,
        name: &str,
        in_out: [usize; 2],
        device: &Device,
    ) -> Result<Option<Self>> {
        let [i, o] = in_out;
        let Some(raw) = src.get_raw(part, name)? else {
            return Ok(None);
        };
        if raw.shape != [o, i] {
            return Ok(None);
        }
        if on_host(device) && !src.device_blocks() {
            if blocks::layout(raw.ty).is_some() {
                let q =
                    QuantMatrix::new(raw.ty, o, i, raw.data)?.for_activations(src.activations());
                return Ok(Some(Matrix::Quant(Arc::new(q))));
            }
        } else if blocks::layout(raw.ty).is_some() {
            let p = PackedMatrix::new(raw.ty, o, i, &raw.data, device)?;
            return Ok(Some(Matrix::Packed(Arc::new(p))));
        }
        Ok(None)
    }

    /// Whether both are the same quantized matrix (a tied embedding and LM head).
    pub fn shares(&self, other: &Matrix) -> bool {
        match (self, other) {
            (Matrix::Quant(a), Matrix::Quant(b)) => Arc::ptr_eq(a, b),
            (Matrix::Packed(a), Matrix::Packed(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Rows `ids` of the `[out, in]` matrix as f32 `[ids.len(), in]` on `device` (embedding
    /// lookup; quantized matrices only, `None` for a dense one, which is stored transposed).
    pub fn rows(&self, ids: &[u32], device: &Device) -> Option<Tensor<2>> {
        match self {
            Matrix::Dense(_) | Matrix::Panels(_) => None,
            Matrix::Quant(q) => {
                let idx: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
                let d = q.dims()[1];
                let rows = TensorData::new(q.gather(&idx), [ids.len(), d]);
                Some(Tensor::from_data(rows, device))
            }
            Matrix::Packed(p) => {
                let idx: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
                let t = Tensor::<1, Int>::from_data(TensorData::new(idx, [ids.len()]), device);
                Some(p.select_rows(t))
            }
        }
    }

    /// An f32 matrix from PyTorch `[out, in]` host values (shape checked against `in_out`).
    pub fn from_host(
        w: HostTensor,
        name: &str,
        in_out: [usize; 2],
        device: &Device,
    ) -> Result<Self> {
        let w = w.expect_shape(name, &[in_out[1], in_out[0]])?;
        if dense::preferred() && on_host(device) {
            let p = PanelMatrix::from_out_in(&w.data, in_out[1], in_out[0]);
            return Ok(Matrix::Panels(Arc::new(p)));
        }
        Ok(Matrix::Dense(upload(w.transposed(), device)))
    }

    /// Bytes it occupies (device tensor, or the host blocks).
    pub fn resident_bytes(&self) -> usize {
        match self {
            Matrix::Dense(w) => bytes(w),
            Matrix::Panels(p) => p.bytes(),
            Matrix::Quant(q) => q.bytes(),
            Matrix::Packed(p) => p.bytes(),
        }
    }

    /// Storage type name (`f32`, `q8_0`, `q4_0`, `q4_1`).
    pub fn storage(&self) -> &'static str {
        match self {
            Matrix::Dense(_) | Matrix::Panels(_) => "f32",
            Matrix::Quant(q) => q.ty().name(),
            Matrix::Packed(p) => p.ty().name(),
        }
    }

    /// `x · W` for rows `x` ([rows, in] → [rows, out]).
    pub fn apply(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Matrix::Dense(w) => x.matmul(w.clone()),
            Matrix::Panels(p) => on_rows(x, p.dims()[1], |xs, m| p.matmul(xs, m)),
            Matrix::Quant(q) => on_rows(x, q.dims()[0], |xs, m| q.matmul_t(xs, m)),
            Matrix::Packed(p) => p.matmul_t(x),
        }
    }

    /// `silu(x · G) · (x · U)` for this matrix `[G | U]` (gate and up side by side) in one
    /// pass where the matrix's kernel takes it: the integer products on the host. `None`
    /// otherwise (`x` is not consumed: callers fall back to [`Self::apply`]).
    pub fn apply_swiglu(&self, x: &Tensor<2>) -> Option<Tensor<2>> {
        let Matrix::Quant(q) = self else {
            return None;
        };
        let (device, [m, _]) = (x.device(), x.dims());
        let y = q.matmul_t_swiglu(&download(x.clone()), m)?;
        Some(Tensor::from_data(
            TensorData::new(y, [m, q.dims()[0] / 2]),
            &device,
        ))
    }
}

/// `f(rows, m)` on the host values of `x` ([m, in]), giving `[m, out]` on `x`'s device.
fn on_rows(x: Tensor<2>, out: usize, f: impl FnOnce(&[f32], usize) -> Vec<f32>) -> Tensor<2> {
    let device = x.device();
    let [m, _] = x.dims();
    let xs = download(x);
    Tensor::from_data(TensorData::new(f(&xs, m), [m, out]), &device)
}

/// A linear layer `y = x W + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Weight.
    pub weight: Matrix,
    /// Optional bias, [out].
    pub bias: Option<Tensor<1>>,
}

impl Linear {
    /// Loads `{prefix}.weight` (PyTorch [out, in]) and, if `bias`, `{prefix}.bias`.
    pub fn load(
        src: &dyn TensorSource,
        part: Part,
        prefix: &str,
        in_out: [usize; 2],
        bias: bool,
        device: &Device,
    ) -> Result<Self> {
        let weight = Matrix::load(src, part, &format!("{prefix}.weight"), in_out, device)?;
        let bias = if bias {
            let bn = format!("{prefix}.bias");
            Some(upload(
                src.require(part, &bn)?.expect_shape(&bn, &[in_out[1]])?,
                device,
            ))
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// Bytes of its parameters.
    pub fn resident_bytes(&self) -> usize {
        self.weight.resident_bytes() + self.bias.as_ref().map_or(0, bytes)
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        match &self.weight {
            Matrix::Dense(w) => w.dims()[1],
            Matrix::Panels(p) => p.dims()[1],
            Matrix::Quant(q) => q.dims()[0],
            Matrix::Packed(p) => p.dims()[0],
        }
    }

    /// One layer computing all of `parts` (the same input, outputs side by side), when they
    /// are bias-free host blocks of one type, or f32 panels ([`dense`]) with or without biases
    /// alike; `None` otherwise.
    pub fn fuse(parts: &[Linear]) -> Option<Linear> {
        if let Some(Matrix::Panels(_)) = parts.first().map(|p| &p.weight) {
            return Self::fuse_panels(parts);
        }
        let mut qs = Vec::with_capacity(parts.len());
        for p in parts {
            match (&p.weight, &p.bias) {
                (Matrix::Quant(q), None) => qs.push(q.as_ref()),
                _ => return None,
            }
        }
        let q = QuantMatrix::concat(&qs)?;
        Some(Linear {
            weight: Matrix::Quant(Arc::new(q)),
            bias: None,
        })
    }

    fn fuse_panels(parts: &[Linear]) -> Option<Linear> {
        let mut ws = Vec::with_capacity(parts.len());
        let mut bs = Vec::with_capacity(parts.len());
        for p in parts {
            match &p.weight {
                Matrix::Panels(w) => ws.push(w.as_ref()),
                _ => return None,
            }
            bs.extend(p.bias.clone());
        }
        if !bs.is_empty() && bs.len() != parts.len() {
            return None;
        }
        let w = PanelMatrix::concat(&ws)?;
        let bias = (!bs.is_empty()).then(|| Tensor::cat(bs, 0));
        Some(Linear {
            weight: Matrix::Panels(Arc::new(w)),
            bias,
        })
    }

    /// Applies the layer to rows of `x` ([rows, in] → [rows, out]).
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        // Panels: the bias added to the host rows (no second pass as a tensor op).
        if let (Matrix::Panels(p), Some(b)) = (&self.weight, &self.bias) {
            let b = download(b.clone());
            return on_rows(x, p.dims()[1], |xs, m| {
                let mut y = p.matmul(xs, m);
                for row in y.chunks_exact_mut(b.len()) {
                    row.iter_mut().zip(&b).for_each(|(v, b)| *v += b);
                }
                y
            });
        }
        let y = self.weight.apply(x);
        match &self.bias {
            Some(b) => y + b.clone().unsqueeze_dim::<2>(0),
            None => y,
        }
    }

    /// `gelu_tanh(self.forward(x))`, the bias and the activation in one pass on the CPU backend.
    pub fn forward_gelu(&self, x: Tensor<2>) -> Tensor<2> {
        if on_host(&x.device()) {
            return host_ops::bias_gelu_tanh(self.weight.apply(x), self.bias.as_ref());
        }
        gelu_approximate(self.forward(x))
    }
}

/// Loads a 1-D parameter with a checked length.
pub fn load_vec(
    src: &dyn TensorSource,
    part: Part,
    name: &str,
    n: usize,
    device: &Device,
) -> Result<Tensor<1>> {
    Ok(upload(
        src.require(part, name)?.expect_shape(name, &[n])?,
        device,
    ))
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) * w`.
pub fn rms_norm(x: Tensor<2>, w: &Tensor<1>, eps: f64) -> Tensor<2> {
    if on_host(&x.device()) {
        return host_ops::rms_norm(x, w, eps);
    }
    let ms = x.clone().powf_scalar(2.0).mean_dim(1);
    x * (ms + eps).sqrt().recip() * w.clone().unsqueeze_dim::<2>(0)
}

/// LayerNorm over the last dimension with weight and bias.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// Scale.
    pub weight: Tensor<1>,
    /// Shift.
    pub bias: Tensor<1>,
    /// Epsilon.
    pub eps: f64,
}

impl LayerNorm {
    /// Loads `{prefix}.weight` and `{prefix}.bias`.
    pub fn load(
        src: &dyn TensorSource,
        part: Part,
        prefix: &str,
        n: usize,
        eps: f64,
        device: &Device,
    ) -> Result<Self> {
        Ok(LayerNorm {
            weight: load_vec(src, part, &format!("{prefix}.weight"), n, device)?,
            bias: load_vec(src, part, &format!("{prefix}.bias"), n, device)?,
            eps,
        })
    }

    /// Bytes of its parameters on the device.
    pub fn resident_bytes(&self) -> usize {
        bytes(&self.weight) + bytes(&self.bias)
    }

    /// Normalizes each row of `x` (one pass per row on the CPU backend).
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        if on_host(&x.device()) {
            return host_ops::layer_norm(x, &self.weight, &self.bias, self.eps);
        }
        let mean = x.clone().mean_dim(1);
        let c = x - mean;
        let var = c.clone().powf_scalar(2.0).mean_dim(1);
        c * (var + self.eps).sqrt().recip() * self.weight.clone().unsqueeze_dim::<2>(0)
            + self.bias.clone().unsqueeze_dim::<2>(0)
    }
}

/// Unmasked self-attention over `heads` heads for rows `q` ([S, H·d]) and `k`, `v` ([T, H·d]),
/// heads side by side in the columns: returns [S, H·d]. On the host, a block of query rows at a
/// time on this build's fast kernel ([`host_attention`]); on a GPU through [`attention`].
pub fn self_attention(q: Tensor<2>, k: Tensor<2>, v: Tensor<2>, heads: usize) -> Tensor<2> {
    let ([s, w], t) = (q.dims(), k.dims()[0]);
    let d = w / heads;
    if on_host(&q.device()) {
        let device = q.device();
        let [q, k, v] = [q, k, v].map(download);
        let r = |data| host_attention::Rows { data, ld: w };
        let o = host_attention::attention_rows(
            r(&q[..]),
            r(&k[..]),
            r(&v[..]),
            [s, t],
            heads,
            d,
            Kernel::preferred(),
        );
        return Tensor::from_data(TensorData::new(o, [s, w]), &device);
    }
    let split = |x: Tensor<2>, n: usize| x.reshape([n, heads, d]).swap_dims(0, 1);
    attention(split(q, s), split(k, t), split(v, t), None)
}

/// [`self_attention`] on one `[S, 3·H·d]` matrix of queries, keys and values side by side
/// (a fused projection's output).
pub fn self_attention_fused(qkv: Tensor<2>, heads: usize) -> Tensor<2> {
    let [s, w3] = qkv.dims();
    let w = w3 / 3;
    if on_host(&qkv.device()) {
        let device = qkv.device();
        let x = download(qkv);
        let r = |o: usize| host_attention::Rows {
            data: &x[o..],
            ld: w3,
        };
        let (d, kernel) = (w / heads, Kernel::preferred());
        let o = host_attention::attention_rows(r(0), r(w), r(2 * w), [s, s], heads, d, kernel);
        return Tensor::from_data(TensorData::new(o, [s, w]), &device);
    }
    let part = |i: usize| qkv.clone().slice([0..s, i * w..(i + 1) * w]);
    self_attention(part(0), part(1), part(2), heads)
}

/// Scaled dot-product attention for one sequence: q [H, S, d], k/v [H, T, d], optional additive
/// mask [S, T]. Returns [S, H·d]. (Its products stay flex's: per head on [`dense`]'s kernel the
/// vision encoder was 11 % slower in the threaded build.)
pub fn attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, mask: Option<Tensor<2>>) -> Tensor<2> {
    let [h, s, d] = q.dims();
    // Scaling q before the product touches S·d values instead of S·T (exact for d = 64: 1/8).
    let scale = 1.0 / (d as f64).sqrt();
    let scores = (q * scale).matmul(k.swap_dims(1, 2));
    let scores = match mask {
        Some(m) => scores + m.unsqueeze_dim::<3>(0),
        None => scores,
    };
    let probs = burn::tensor::activation::softmax(scores, 2);
    probs.matmul(v).swap_dims(0, 1).reshape([s, h * d])
}
