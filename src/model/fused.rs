//! WebGPU: `x · Wᵀ` in one kernel straight from the packed GGUF blocks of a
//! [`PackedMatrix`](super::packed::PackedMatrix) — the 32-bit words and per-block scales are read
//! inside the tile loop and dequantized in registers; no f32 copy of the matrix is made.
//!
//! Two kernels, both plain WGSL through CubeCL (no subgroup operations, which the browser does
//! not expose through wgpu):
//! - **tiled** (m > [`SMALL_M`]): a 16 × 16 workgroup computes a 64 × 64 output tile, 4 × 4 per
//!   thread; each step stages one 32-value block column of `x` (64 × 32) and of the
//!   dequantized weights (32 × 64) in workgroup memory: 16 KiB in all.
//! - **rows** (m ≤ [`SMALL_M`], decoding and sweep rows): 8 threads share one output column,
//!   each taking every 8th block, then a tree sum in workgroup memory (4 KiB); 32 columns per
//!   workgroup.
//!
//! Reached through burn's backend-extension route: `#[backend_extension]` generates the
//! dispatch and the lazy (fusion) implementations; the CubeCL backend runs the kernels.

use burn::backend::{
    Backend, backend_extension,
    tensor::{FloatTensor, IntTensor},
};
use burn::tensor::{DType, Shape};
use burn_cubecl::{
    CubeBackend,
    kernel::{cast, into_contiguous},
    ops::numeric::empty_device_dtype,
};
use cubecl::prelude::*;

/// Up to this many rows take the `rows` kernel.
pub const SMALL_M: usize = 4;
/// Output tile edge of the tiled kernel.
const TILE: usize = 64;
/// Output columns per workgroup of the rows kernel.
const ROWS_PER_GROUP: usize = 32;
/// Threads sharing one output column in the rows kernel (the tree sum starts at half of it).
const LANES: usize = 8;
const _: () = assert!(LANES == 8, "fused_rows' tree sum starts at 4");

/// Block kinds as the kernels number them.
pub const KIND_Q8_0: u32 = 0;
/// Q4_0: `(q − 8) · d`.
pub const KIND_Q4_0: u32 = 1;
/// Q4_1: `q · d + m`.
pub const KIND_Q4_1: u32 = 2;

/// The fused quantized product as a backend operation.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub trait FusedQuant: Backend {
    /// `x` `[m, k]` times the transpose of the `[n, k]` block matrix given as `words`
    /// `[n, k/32 × words per block]` (i32), `scale` and `min` `[n, k/32]` (f32; `min` is read
    /// for Q4_1 only — pass `scale` otherwise). `kind` is one of the `KIND_*` constants.
    /// Returns `[m, n]`.
    #[fusion(dtype = x, shape = product_shape(x, words))]
    fn fused_quant_matmul_t(
        x: FloatTensor<Self>,
        words: IntTensor<Self>,
        scale: FloatTensor<Self>,
        min: FloatTensor<Self>,
        kind: u32,
    ) -> FloatTensor<Self>;
}

/// `[m, n]` from `x` `[m, k]` and `words` `[n, …]` (read by the fusion backend's wrapper).
#[cfg_attr(not(feature = "fusion"), allow(dead_code))]
fn product_shape(x: &Shape, words: &Shape) -> Shape {
    Shape::new([x[0], words[0]])
}

impl FusedQuant for CubeBackend {
    fn fused_quant_matmul_t(
        x: FloatTensor<Self>,
        words: IntTensor<Self>,
        scale: FloatTensor<Self>,
        min: FloatTensor<Self>,
        kind: u32,
    ) -> FloatTensor<Self> {
        let contiguous = |t: burn_cubecl::tensor::CubeTensor, dtype: DType| {
            let t = if t.dtype == dtype { t } else { cast(t, dtype) };
            into_contiguous(t)
        };
        let x = contiguous(x, DType::F32);
        let words = contiguous(words, DType::I32);
        let scale = contiguous(scale, DType::F32);
        let min = contiguous(min, DType::F32);
        let [m, k] = x.meta.shape().dims::<2>();
        let n = words.meta.shape()[0];
        let out = empty_device_dtype(
            x.client.clone(),
            x.device.clone(),
            Shape::new([m, n]),
            DType::F32,
        );
        if m == 0 || n == 0 {
            return out;
        }
        let client = x.client.clone();
        // SAFETY: every index the kernels form is bounds-checked against m, n and k, and the
        // buffers have the lengths the shapes above give.
        unsafe {
            if m <= SMALL_M {
                let groups = n.div_ceil(ROWS_PER_GROUP) as u32;
                fused_rows::launch_unchecked(
                    &client,
                    CubeCount::Static(groups, 1, 1),
                    CubeDim::new_2d(LANES as u32, ROWS_PER_GROUP as u32),
                    x.into_buffer_arg(),
                    words.into_buffer_arg(),
                    scale.into_buffer_arg(),
                    min.into_buffer_arg(),
                    out.clone().into_buffer_arg(),
                    m as u32,
                    n as u32,
                    k as u32,
                    kind,
                );
            } else {
                fused_tiled::launch_unchecked(
                    &client,
                    CubeCount::Static(n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, 1),
                    CubeDim::new_2d(16, 16),
                    x.into_buffer_arg(),
                    words.into_buffer_arg(),
                    scale.into_buffer_arg(),
                    min.into_buffer_arg(),
                    out.clone().into_buffer_arg(),
                    m as u32,
                    n as u32,
                    k as u32,
                    kind,
                );
            }
        }
        out
    }
}

/// The kernels' number for a block type (`None` for types without a block layout).
pub fn kind(ty: crate::weights::quant::GgmlType) -> Option<u32> {
    use crate::weights::quant::GgmlType;
    match ty {
        GgmlType::Q8_0 => Some(KIND_Q8_0),
        GgmlType::Q4_0 => Some(KIND_Q4_0),
        GgmlType::Q4_1 => Some(KIND_Q4_1),
        _ => None,
    }
}

/// Byte `q` (0..4) of the little-endian word `w`, sign-extended: a Q8_0 level.
#[cube]
fn signed_byte(w: i32, q: usize) -> f32 {
    f32::cast_from((w << (24 - 8 * q as i32)) >> 24)
}

/// Byte `q` (0..4) of the word `w` in its low 8 bits (higher bits are masked by the caller):
/// a 4-bit block's byte, holding value `4·word + q` (low nibble) and `16 + 4·word + q` (high).
#[cube]
fn byte_of(w: i32, q: usize) -> i32 {
    w >> (8 * q as i32)
}

/// Value `q` (0..16) of a 4-bit block with scale `d` and minimum `mn`.
#[cube]
fn nibble(q: i32, d: f32, mn: f32, #[comptime] kind: u32) -> f32 {
    if comptime!(kind == KIND_Q4_0) {
        (f32::cast_from(q) - 8.0) * d
    } else {
        f32::cast_from(q) * d + mn
    }
}

/// Dequantizes block `b` of weight row `row` into `ws` (`[32 values][64 columns]`, column `c`).
/// Q8_0 takes two calls (words 0..4 and 4..8 of the 8); Q4 one (its 4 words).
#[cube]
fn stage_weights(
    words: &[i32],
    scale: &[f32],
    min: &[f32],
    ws: &mut Shared<[f32]>,
    row: usize,
    c: usize,
    word: usize,
    b: usize,
    n: usize,
    nb: usize,
    #[comptime] kind: u32,
) {
    let wpb = comptime!(if kind == KIND_Q8_0 { 8usize } else { 4usize });
    if row < n {
        let w = words[row * nb * wpb + b * wpb + word];
        let d = scale[row * nb + b];
        if comptime!(kind == KIND_Q8_0) {
            #[unroll]
            for q in 0..4usize {
                ws[(4 * word + q) * TILE + c] = signed_byte(w, q) * d;
            }
        } else {
            let mut mn = 0.0f32;
            if comptime!(kind == KIND_Q4_1) {
                mn = min[row * nb + b];
            }
            #[unroll]
            for q in 0..4usize {
                let byte = byte_of(w, q);
                ws[(4 * word + q) * TILE + c] = nibble(byte & 15, d, mn, kind);
                ws[(16 + 4 * word + q) * TILE + c] = nibble((byte >> 4) & 15, d, mn, kind);
            }
        }
    } else {
        #[unroll]
        for q in 0..4usize {
            ws[(4 * word + q) * TILE + c] = 0.0;
            if comptime!(kind != KIND_Q8_0) {
                ws[(16 + 4 * word + q) * TILE + c] = 0.0;
            }
        }
    }
}

/// The tiled kernel: workgroup (16, 16), output tile 64 × 64, 4 × 4 outputs per thread.
#[cube(launch_unchecked)]
fn fused_tiled(
    x: &[f32],
    words: &[i32],
    scale: &[f32],
    min: &[f32],
    out: &mut [f32],
    m: u32,
    n: u32,
    k: u32,
    #[comptime] kind: u32,
) {
    let tx = UNIT_POS_X as usize;
    let ty = UNIT_POS_Y as usize;
    let t = ty * 16 + tx;
    let m = m as usize;
    let n = n as usize;
    let k = k as usize;
    let m0 = CUBE_POS_Y as usize * TILE;
    let n0 = CUBE_POS_X as usize * TILE;
    let nb = k / 32;
    // x block column: [64 rows][32]; weights: [32][64 columns]
    let mut xs = Shared::<[f32]>::new_slice(TILE * 32);
    let mut ws = Shared::<[f32]>::new_slice(TILE * 32);
    let mut acc = Array::<f32>::new(16usize);
    #[unroll]
    for i in 0..16usize {
        acc[i] = 0.0;
    }
    for b in 0..nb {
        #[unroll]
        for e in 0..8usize {
            let idx = t + e * 256;
            let r = idx / 32;
            let mut v = 0.0f32;
            if m0 + r < m {
                v = x[(m0 + r) * k + b * 32 + idx % 32];
            }
            xs[idx] = v;
        }
        if comptime!(kind == KIND_Q8_0) {
            // 64 rows × 8 words: two words per thread
            #[unroll]
            for e in 0..2usize {
                let idx = t + e * 256;
                let c = idx / 8;
                stage_weights(
                    words,
                    scale,
                    min,
                    &mut ws,
                    n0 + c,
                    c,
                    idx % 8,
                    b,
                    n,
                    nb,
                    kind,
                );
            }
        } else {
            // 64 rows × 4 words: one word per thread
            let c = t / 4;
            stage_weights(words, scale, min, &mut ws, n0 + c, c, t % 4, b, n, nb, kind);
        }
        sync_cube();
        #[unroll]
        for kk in 0..32usize {
            #[unroll]
            for i in 0..4usize {
                let a = xs[(ty + 16 * i) * 32 + kk];
                #[unroll]
                for j in 0..4usize {
                    acc[i * 4 + j] += a * ws[kk * TILE + tx + 16 * j];
                }
            }
        }
        sync_cube();
    }
    #[unroll]
    for i in 0..4usize {
        let row = m0 + ty + 16 * i;
        #[unroll]
        for j in 0..4usize {
            let col = n0 + tx + 16 * j;
            if row < m && col < n {
                out[row * n + col] = acc[i * 4 + j];
            }
        }
    }
}

/// The few-rows kernel: workgroup (8, 32); the 8 threads of one y share output column
/// `group · 32 + y`, each summing every 8th block for all m (≤ 4) rows of `x`.
#[cube(launch_unchecked)]
fn fused_rows(
    x: &[f32],
    words: &[i32],
    scale: &[f32],
    min: &[f32],
    out: &mut [f32],
    m: u32,
    n: u32,
    k: u32,
    #[comptime] kind: u32,
) {
    let lane = UNIT_POS_X as usize;
    let y = UNIT_POS_Y as usize;
    let m = m as usize;
    let n = n as usize;
    let k = k as usize;
    let col = CUBE_POS_X as usize * ROWS_PER_GROUP + y;
    let nb = k / 32;
    let wpb = comptime!(if kind == KIND_Q8_0 { 8usize } else { 4usize });
    let mut acc = Array::<f32>::new(SMALL_M);
    #[unroll]
    for r in 0..SMALL_M {
        acc[r] = 0.0;
    }
    if col < n {
        let mut b = lane;
        while b < nb {
            let d = scale[col * nb + b];
            let mut mn = 0.0f32;
            if comptime!(kind == KIND_Q4_1) {
                mn = min[col * nb + b];
            }
            let base = col * nb * wpb + b * wpb;
            #[unroll]
            for word in 0..wpb {
                let w = words[base + word];
                #[unroll]
                for q in 0..4usize {
                    if comptime!(kind == KIND_Q8_0) {
                        let v = signed_byte(w, q) * d;
                        let at = b * 32 + 4 * word + q;
                        #[unroll]
                        for r in 0..SMALL_M {
                            if r < m {
                                acc[r] += x[r * k + at] * v;
                            }
                        }
                    } else {
                        let byte = byte_of(w, q);
                        let lo = nibble(byte & 15, d, mn, kind);
                        let hi = nibble((byte >> 4) & 15, d, mn, kind);
                        let at = b * 32 + 4 * word + q;
                        #[unroll]
                        for r in 0..SMALL_M {
                            if r < m {
                                acc[r] += x[r * k + at] * lo + x[r * k + at + 16] * hi;
                            }
                        }
                    }
                }
            }
            b += LANES;
        }
    }
    // tree sum over the lanes of each column
    let mut red = Shared::<[f32]>::new_slice(LANES * ROWS_PER_GROUP * SMALL_M);
    let slot = (y * LANES + lane) * SMALL_M;
    #[unroll]
    for r in 0..SMALL_M {
        red[slot + r] = acc[r];
    }
    sync_cube();
    // LANES / 2 (a literal: CubeCL keeps a runtime counter only for a literal start)
    let mut s = 4usize;
    while s > 0 {
        if lane < s {
            #[unroll]
            for r in 0..SMALL_M {
                red[slot + r] += red[slot + s * SMALL_M + r];
            }
        }
        sync_cube();
        s /= 2;
    }
    if lane == 0 && col < n {
        #[unroll]
        for r in 0..SMALL_M {
            if r < m {
                out[r * n + col] = red[slot + r];
            }
        }
    }
}
