//! Pieces of the decoder's forward pass: projections of one input fused into one product, the
//! positions a pass runs (RoPE tables and mask), and row and head helpers.

use burn::tensor::{Device, Int, Tensor, TensorData, activation::silu};

use crate::model::device::on_host;
use crate::model::host_ops;
use crate::model::layers::Linear;

/// Projections of one input: a single product when their blocks can be put side by side
/// ([`Linear::fuse`]: fewer, larger products), else one each.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // two per layer; boxing the layer buys nothing
pub(super) enum Projections {
    /// One layer and its parts' output widths and storage names.
    Fused(Linear, Vec<(usize, &'static str)>),
    /// One layer per part.
    Each(Vec<Linear>),
}

impl Projections {
    pub(super) fn new(parts: Vec<Linear>) -> Self {
        match Linear::fuse(&parts) {
            Some(l) => {
                let widths = parts
                    .iter()
                    .map(|p| (p.out_dim(), p.weight.storage()))
                    .collect();
                Projections::Fused(l, widths)
            }
            None => Projections::Each(parts),
        }
    }

    /// Each part's output for rows `x`.
    pub(super) fn forward(&self, x: Tensor<2>) -> Vec<Tensor<2>> {
        match self {
            Projections::Each(ls) => ls.iter().map(|l| l.forward(x.clone())).collect(),
            Projections::Fused(l, widths) => {
                let y = l.forward(x);
                let m = y.dims()[0];
                let mut at = 0;
                widths
                    .iter()
                    .map(|&(w, _)| {
                        at += w;
                        y.clone().slice([0..m, at - w..at])
                    })
                    .collect()
            }
        }
    }

    /// The parts' outputs side by side in one `[rows, Σ widths]` tensor (the fused product's
    /// own output, else the parts concatenated).
    pub(super) fn forward_whole(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Projections::Fused(l, _) => l.forward(x),
            Projections::Each(ls) => {
                Tensor::cat(ls.iter().map(|l| l.forward(x.clone())).collect(), 1)
            }
        }
    }

    /// `silu(gate) · up` of the two parts (one fused pass over the fused product's rows on
    /// the CPU backend).
    pub(super) fn swiglu(&self, x: Tensor<2>) -> Tensor<2> {
        if let Projections::Fused(l, widths) = self
            && on_host(&x.device())
        {
            // Gate and up of equal widths, no bias: one pass through the integer kernels.
            if l.bias.is_none()
                && widths.len() == 2
                && widths[0].0 == widths[1].0
                && let Some(y) = l.weight.apply_swiglu(&x)
            {
                return y;
            }
            return host_ops::swiglu(l.forward(x));
        }
        let [gate, up]: [Tensor<2>; 2] = self.forward(x).try_into().expect("gate, up");
        silu(gate) * up
    }

    pub(super) fn resident_bytes(&self) -> usize {
        match self {
            Projections::Fused(l, _) => l.resident_bytes(),
            Projections::Each(ls) => ls.iter().map(Linear::resident_bytes).sum(),
        }
    }

    /// Each part's storage type.
    pub(super) fn storage(&self) -> Vec<&'static str> {
        match self {
            Projections::Fused(_, widths) => widths.iter().map(|w| w.1).collect(),
            Projections::Each(ls) => ls.iter().map(|l| l.weight.storage()).collect(),
        }
    }
}

/// The positions one pass runs: RoPE tables `[1, len, head_dim]` and the causal mask.
pub(super) struct Chunk {
    pub(super) rope: RopeTables,
    /// Which keys each position sees (causal for a prompt, all for one row, branches in the
    /// sweep).
    pub(super) visible: crate::model::host_attention::Visible,
}

/// RoPE's cos and sin for a chunk's positions: `[1, len, head_dim]` tensors, and the same
/// values in host memory for the CPU backend's fused kernel.
pub(super) struct RopeTables {
    pub(super) cos_t: Tensor<3>,
    pub(super) sin_t: Tensor<3>,
    pub(super) cos: Vec<f32>,
    pub(super) sin: Vec<f32>,
}

impl RopeTables {
    /// Rotate-half RoPE on [heads, len, d].
    pub(super) fn apply(&self, x: Tensor<3>) -> Tensor<3> {
        let [h, len, d] = x.dims();
        let x1 = x.clone().slice([0..h, 0..len, 0..d / 2]);
        let x2 = x.clone().slice([0..h, 0..len, d / 2..d]);
        let rot = Tensor::cat(vec![x2.neg(), x1], 2);
        x * self.cos_t.clone() + rot * self.sin_t.clone()
    }
}

/// Heads `n` of `d` values from column `col` of host rows `x` (`[s, ld]` row-major) as
/// head-major `[n, s, d]`, rotated by `rope` (as [`RopeTables::apply`]) if given; heads in
/// parallel.
pub(super) fn heads_host(
    x: &[f32],
    [s, ld]: [usize; 2],
    col: usize,
    n: usize,
    d: usize,
    rope: Option<&RopeTables>,
) -> Vec<f32> {
    assert!(col + n * d <= ld && x.len() >= s * ld);
    let mut out = vec![0f32; n * s * d];
    if out.is_empty() {
        return out;
    }
    let half = d / 2;
    let head = |h: usize, head: &mut [f32]| {
        for (i, o) in head.chunks_exact_mut(d).enumerate() {
            let src = &x[i * ld + col + h * d..][..d];
            let Some(r) = rope else {
                o.copy_from_slice(src);
                continue;
            };
            // One table row serves every position (the sweep's branches share theirs).
            let p = if r.cos.len() == d { 0 } else { i };
            let (c, sn) = (&r.cos[p * d..(p + 1) * d], &r.sin[p * d..(p + 1) * d]);
            for j in 0..half {
                o[j] = src[j] * c[j] - src[j + half] * sn[j];
                o[j + half] = src[j + half] * c[j + half] + src[j] * sn[j + half];
            }
        }
    };
    // One decoded row is not worth waking threads for.
    if s * n * d < 1 << 14 {
        out.chunks_mut(s * d)
            .enumerate()
            .for_each(|(h, o)| head(h, o));
    } else {
        crate::model::par::par_chunks(&mut out, s * d, head);
    }
    out
}

/// Rows `pos` of `x` as a new [pos.len(), hidden] tensor.
pub(super) fn select_rows(x: &Tensor<2>, pos: &[usize], device: &Device) -> Tensor<2> {
    let [len, d] = x.dims();
    if pos.len() == len && pos.iter().enumerate().all(|(i, &p)| i == p) {
        return x.clone();
    }
    if let [p] = pos {
        return x.clone().slice([*p..*p + 1, 0..d]);
    }
    let idx: Vec<i64> = pos.iter().map(|&p| p as i64).collect();
    x.clone().select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(idx, [pos.len()]), device),
    )
}

/// Repeats each key/value head `n` times ([kv, T, d] → [kv·n, T, d]).
pub(super) fn repeat_kv(x: Tensor<3>, n: usize) -> Tensor<3> {
    if n == 1 {
        return x;
    }
    let [kv, t, d] = x.dims();
    x.unsqueeze_dim::<4>(1)
        .expand([kv, n, t, d])
        .reshape([kv * n, t, d])
}
