//! Matrix products against weights that stay in GGUF's 32-value blocks (Q8_0, Q4_0, Q4_1):
//! the CPU side of "the weights stay quantized where they live". A block is dequantized only
//! inside the kernel, next to the values it multiplies.
//!
//! Two kernels: few rows (decoding, m ≤ [`SMALL_M`]) take dot products straight from the blocks;
//! more rows (prefill, sweeps) dequantize a panel of weight rows at a time and hand it to `gemm`
//! (the matrix-product crate burn's flex backend uses), or to [`super::dense`]'s kernel in the
//! build that prefers it. Natively, and in the browser's threaded build, both run on rayon's
//! pool.
//!
//! The block layouts come from [`crate::weights::blocks`]. The direct kernel exists three times,
//! one file each, chosen in [`DirectTask::run`]: [`avx2`] (x86-64 with AVX2 + FMA, detected at run
//! time), [`simd128`] (WebAssembly SIMD), and [`portable`] (everything else, and the reference
//! the others are tested against).

#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod integer;
mod portable;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;

use super::dense::{self, PanelMatrix};
use super::par::{par_chunks, par_map};
use crate::error::{Error, Result};
use crate::weights::blocks::{self, Layout};
use crate::weights::quant::{self, GgmlType};

/// Values per block for every type these kernels take.
pub use crate::weights::blocks::BLOCK;
/// Up to this many rows use the direct (dot product) kernel.
pub const SMALL_M: usize = 4;
/// Weight rows dequantized together for one `gemm` call.
const PANEL: usize = 64;

/// How the CPU kernels treat the activations that meet quantized weights. The default is
/// `Int16`: every layer's residual stream of the real SmolLM2 stays within cosine 0.9999 of
/// the `F32` reference (tests/integer.rs), where llama.cpp's 8-bit levels drift to 0.9985.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum Activations {
    /// f32 activations against dequantized weight blocks: the reference (transformers parity).
    #[cfg_attr(not(target_arch = "wasm32"), value(name = "f32"))]
    F32,
    /// Activations quantized to 8-bit blocks per product (llama.cpp's Q8_1), integer dot
    /// products ([`integer`]), where the CPU has an integer kernel (x86-64 with AVX2 or
    /// AVX512-VNNI); the f32 path elsewhere.
    #[cfg_attr(not(target_arch = "wasm32"), value(name = "int8"))]
    Int8,
    /// The same with 12-bit activation levels (±2047) in 16-bit integers: 16 times finer, half
    /// the products per instruction (AMX tiles: as many).
    #[default]
    #[cfg_attr(not(target_arch = "wasm32"), value(name = "int16"))]
    Int16,
}

impl Activations {
    /// Its name on the command line (clap parses it) and in reports: `f32`, `int8`, `int16`.
    pub fn name(self) -> &'static str {
        match self {
            Activations::F32 => "f32",
            Activations::Int8 => "int8",
            Activations::Int16 => "int16",
        }
    }
}

/// A weight matrix `[rows, cols]` (PyTorch `[out, in]`) kept as GGUF blocks along each row.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    layout: Layout,
    rows: usize,
    cols: usize,
    store: Store,
}

/// Where the blocks are: row after row (the f32-activation kernels), or interleaved for the
/// integer kernels with 8- or 16-bit activation levels.
#[derive(Debug, Clone)]
enum Store {
    Rows(Vec<u8>),
    Int8(integer::Interleaved),
    Int16(integer::Interleaved),
}

impl QuantMatrix {
    /// Wraps raw blocks, checking the type and that the byte count matches the shape.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self> {
        let Some(layout) = blocks::layout(ty) else {
            return Err(Error::weights(format!(
                "no quantized kernel for {}: load it dequantized",
                ty.name()
            )));
        };
        if !cols.is_multiple_of(BLOCK) || data.len() != rows * (cols / BLOCK) * layout.bytes {
            return Err(Error::weights(format!(
                "{} tensor [{rows}, {cols}] does not match its {} bytes",
                ty.name(),
                data.len()
            )));
        }
        Ok(QuantMatrix {
            layout,
            rows,
            cols,
            store: Store::Rows(data),
        })
    }

    /// The same matrix for `activations`: interleaved for the integer kernels when asked for
    /// and this CPU has one, else unchanged.
    pub fn for_activations(self, activations: Activations) -> Self {
        let Store::Rows(data) = &self.store else {
            return self;
        };
        let kernel = integer::Kernel::detect();
        if activations == Activations::F32 || kernel == integer::Kernel::Portable {
            return self;
        }
        let w = integer::Interleaved::new(self.layout, self.rows, self.cols, data, kernel);
        let store = match activations {
            Activations::Int16 => Store::Int16(w),
            _ => Store::Int8(w),
        };
        QuantMatrix { store, ..self }
    }

    /// The rows of `parts` one after another (same block type and width; `None` otherwise),
    /// for their activation path: one product instead of several (Q, K and V; gate and up).
    pub fn concat(parts: &[&QuantMatrix]) -> Option<QuantMatrix> {
        let first = parts.first()?;
        if parts.iter().any(|p| {
            p.layout != first.layout
                || p.cols != first.cols
                || p.activations() != first.activations()
        }) {
            return None;
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        let interleaved: Option<Vec<&integer::Interleaved>> = parts
            .iter()
            .map(|p| match &p.store {
                Store::Int8(w) | Store::Int16(w) => Some(w),
                Store::Rows(_) => None,
            })
            .collect();
        let store = match interleaved {
            Some(ws) => {
                let w = integer::Interleaved::concat(&ws)?;
                match first.store {
                    Store::Int16(_) => Store::Int16(w),
                    _ => Store::Int8(w),
                }
            }
            None => Store::Rows(
                parts
                    .iter()
                    .flat_map(|p| p.data().unwrap_or(&[]))
                    .copied()
                    .collect(),
            ),
        };
        Some(QuantMatrix {
            layout: first.layout,
            rows,
            cols: first.cols,
            store,
        })
    }

    /// The activation path its products take.
    pub fn activations(&self) -> Activations {
        match self.store {
            Store::Rows(_) => Activations::F32,
            Store::Int8(_) => Activations::Int8,
            Store::Int16(_) => Activations::Int16,
        }
    }

    /// Quantizes a row-major f32 matrix `[rows, cols]` (`cols` a multiple of 32).
    pub fn quantize(ty: GgmlType, rows: usize, cols: usize, values: &[f32]) -> Result<Self> {
        if values.len() != rows * cols {
            return Err(Error::weights("quantize: value count does not match shape"));
        }
        let data = quant::quantize(ty, values)?;
        Self::new(ty, rows, cols, data)
    }

    /// Block type.
    pub fn ty(&self) -> GgmlType {
        self.layout.ty
    }

    /// `[rows, cols]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// Bytes the blocks occupy in memory.
    pub fn bytes(&self) -> usize {
        match &self.store {
            Store::Rows(d) => d.len(),
            Store::Int8(w) | Store::Int16(w) => w.bytes(),
        }
    }

    /// The row-after-row blocks (`None` when interleaved).
    fn data(&self) -> Option<&[u8]> {
        match &self.store {
            Store::Rows(d) => Some(d),
            _ => None,
        }
    }

    fn row_bytes(&self) -> usize {
        self.cols / BLOCK * self.layout.bytes
    }

    /// Rows `r0..r0 + rows`, dequantized, row-major `[rows, cols]`.
    pub fn dequant_rows(&self, r0: usize, rows: usize) -> Vec<f32> {
        let rb = self.row_bytes();
        let data = match &self.store {
            Store::Rows(d) => &d[r0 * rb..(r0 + rows) * rb],
            Store::Int8(w) | Store::Int16(w) => {
                let blocks: Vec<u8> = (r0..r0 + rows).flat_map(|r| w.row(r)).collect();
                return quant::dequantize(self.layout.ty, &blocks);
            }
        };
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            let mut out = vec![0f32; rows * self.cols];
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            unsafe { avx2::dequantize(&self.layout, data, &mut out) };
            return out;
        }
        quant::dequantize(self.layout.ty, data)
    }

    /// Rows `r0..r0 + rows`, dequantized straight into [`dense`]'s panels, one row at a time.
    fn panels(&self, r0: usize, rows: usize) -> PanelMatrix {
        let rb = self.row_bytes();
        match &self.store {
            Store::Rows(d) => PanelMatrix::from_row_fn(rows, self.cols, |j, out| {
                let r = &d[(r0 + j) * rb..(r0 + j + 1) * rb];
                for (blk, o) in r
                    .chunks_exact(self.layout.bytes)
                    .zip(out.chunks_exact_mut(BLOCK))
                {
                    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                    simd128::dequantize(&self.layout, blk, o);
                    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
                    self.layout.dequantize(blk, o);
                }
            }),
            _ => PanelMatrix::from_out_in(&self.dequant_rows(r0, rows), rows, self.cols),
        }
    }

    /// Rows `ids`, dequantized, row-major `[ids.len(), cols]` (an embedding lookup).
    pub fn gather(&self, ids: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(ids.len() * self.cols);
        for &id in ids {
            out.extend(self.dequant_rows(id, 1));
        }
        out
    }

    /// `x · Wᵀ` for `x` row-major `[m, cols]`: returns row-major `[m, rows]`.
    pub fn matmul_t(&self, x: &[f32], m: usize) -> Vec<f32> {
        debug_assert_eq!(x.len(), m * self.cols);
        match &self.store {
            Store::Int8(w) => return w.matmul_t(&integer::QRows::<i8>::quantize(x, m, self.cols)),
            Store::Int16(w) => {
                return w.matmul_t(&integer::QRows::<i16>::quantize(x, m, self.cols));
            }
            Store::Rows(_) => {}
        }
        if m <= SMALL_M {
            self.matmul_direct(x, m)
        } else {
            self.matmul_panels(x, m)
        }
    }

    /// `silu(x · Gᵀ) · (x · Uᵀ)` for this matrix `[G; U]` (SwiGLU's gate and up projections
    /// side by side, `[m, rows / 2]`) in one pass, where the integer kernels take it (`None`:
    /// take [`Self::matmul_t`] and combine the halves).
    pub fn matmul_t_swiglu(&self, x: &[f32], m: usize) -> Option<Vec<f32>> {
        match &self.store {
            Store::Int8(w) => w.matmul_t_swiglu(&integer::QRows::<i8>::quantize(x, m, self.cols)),
            Store::Int16(w) => w.matmul_t_swiglu(&integer::QRows::<i16>::quantize(x, m, self.cols)),
            Store::Rows(_) => None,
        }
    }

    /// Few rows: per weight row, decode each block once and dot it with every row of `x`.
    fn matmul_direct(&self, x: &[f32], m: usize) -> Vec<f32> {
        let n = self.rows;
        // Per-block sums of x, for Q4_1's offset term.
        let xsum: Vec<f32> = x.chunks_exact(BLOCK).map(|c| c.iter().sum()).collect();
        // Output transposed ([n, m]) so that each task owns a contiguous slice.
        let mut out_t = vec![0f32; n * m];
        let rows_per_task = 16;
        par_chunks(&mut out_t, rows_per_task * m, |task, chunk| {
            let task = DirectTask {
                q: self,
                x,
                xsum: &xsum,
                m,
                r0: task * rows_per_task,
            };
            task.run(chunk)
        });
        transpose(out_t, n, m)
    }

    /// Many rows: dequantize `PANEL` weight rows at a time and multiply with `gemm`.
    fn matmul_panels(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.rows, self.cols);
        let panels = n.div_ceil(PANEL);
        let parts: Vec<Vec<f32>> = par_map(panels, |p| {
            let r0 = p * PANEL;
            let w = (n - r0).min(PANEL);
            if dense::preferred() {
                return self.panels(r0, w).matmul(x, m);
            }
            let panel = self.dequant_rows(r0, w);
            let mut dst = vec![0f32; m * w];
            // SAFETY: every pointer/stride pair stays inside its buffer: dst is [m, w] row-major,
            // x is [m, k] row-major, and the panel ([w, k] row-major) is read as [k, w].
            unsafe {
                dense::gemm_f32(
                    [m, w, k],
                    (dst.as_mut_ptr(), 1, w as isize),
                    (x.as_ptr(), 1, k as isize),
                    (panel.as_ptr(), k as isize, 1),
                );
            }
            dst
        });
        let mut out = vec![0f32; m * n];
        for (p, part) in parts.iter().enumerate() {
            let (r0, w) = (p * PANEL, part.len() / m);
            for i in 0..m {
                out[i * n + r0..i * n + r0 + w].copy_from_slice(&part[i * w..(i + 1) * w]);
            }
        }
        out
    }
}

/// One task of the direct kernel: weight rows `r0..` against every row of `x`.
struct DirectTask<'a> {
    q: &'a QuantMatrix,
    x: &'a [f32],
    xsum: &'a [f32],
    m: usize,
    r0: usize,
}

impl DirectTask<'_> {
    /// Fills `out` ([rows, m]) with `dot(weight row, x row, x's block sums)`.
    #[inline(always)]
    fn each_dot(&self, out: &mut [f32], dot: impl Fn(&[u8], &[f32], &[f32]) -> f32) {
        let (q, m) = (self.q, self.m);
        let (k, rb) = (q.cols, q.row_bytes());
        let nb = k / BLOCK;
        let data = q.data().expect("the direct kernel reads row-major blocks");
        for (i, o) in out.chunks_exact_mut(m).enumerate() {
            let row = &data[(self.r0 + i) * rb..(self.r0 + i + 1) * rb];
            for (j, o) in o.iter_mut().enumerate() {
                *o = dot(
                    row,
                    &self.x[j * k..(j + 1) * k],
                    &self.xsum[j * nb..(j + 1) * nb],
                );
            }
        }
    }

    /// Fills `out` with the fastest kernel this CPU has: AVX2 + FMA intrinsics (detected at run
    /// time; LLVM does not vectorize the portable loop well), WebAssembly SIMD when the build
    /// enables it, else the portable kernel.
    fn run(&self, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            return unsafe { self.run_avx2(out) };
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        return self.each_dot(out, |row, x, xsum| {
            simd128::row_dot(&self.q.layout, row, x, xsum)
        });
        #[allow(unreachable_code)]
        self.run_portable(out)
    }

    /// The AVX2 kernel, compiled with the features so that its inlined parts use them.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn run_avx2(&self, out: &mut [f32]) {
        let l = &self.q.layout;
        self.each_dot(out, |row, x, xsum| avx2::row_dot(l, row, x, xsum))
    }

    /// The portable kernel (and the reference for the others).
    fn run_portable(&self, out: &mut [f32]) {
        let l = &self.q.layout;
        if l.bits == 8 {
            self.each_dot(out, |row, x, xsum| portable::row_dot::<8>(l, row, x, xsum))
        } else {
            self.each_dot(out, |row, x, xsum| portable::row_dot::<4>(l, row, x, xsum))
        }
    }
}

/// Blocks in a weight row of layout `l`, checking that `x` and its block sums `xsum` cover them
/// (the SIMD kernels' loads rely on it).
#[inline(always)]
fn row_blocks(l: &Layout, row: &[u8], x: &[f32], xsum: &[f32]) -> usize {
    let nb = row.len() / l.bytes;
    assert!(
        x.len() >= nb * BLOCK && xsum.len() >= nb,
        "row_dot: x too short"
    );
    nb
}

/// Whether this x86-64 CPU has AVX2 and FMA (std caches the detection).
#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

fn transpose(a: Vec<f32>, rows: usize, cols: usize) -> Vec<f32> {
    if cols == 1 || rows == 1 {
        return a;
    }
    let mut out = vec![0f32; a.len()];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = a[i * cols + j];
        }
    }
    out
}

#[cfg(test)]
mod tests;
