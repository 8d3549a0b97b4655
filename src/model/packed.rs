//! Quantized matrices that live on the device (WebGPU): GGUF Q8_0 / Q4_0 / Q4_1 blocks packed
//! into 32-bit words of an integer tensor, with one f32 scale (and, for Q4_1, one minimum) per
//! 32-value block. A product dequantizes the matrix — in row chunks, so the transient f32 copy
//! stays small — with backend tensor ops (shift, mask, convert, scale) and multiplies.
//!
//! Nothing here is backend-specific: the same ops run on the CPU backend, which is how the tests
//! check this path against the host kernels and the f32 reference.

use std::cell::Cell;

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::device::bytes;
use crate::error::{Error, Result};
use crate::weights::blocks::{self, BLOCK, Layout};
use crate::weights::quant::GgmlType;
/// Largest number of weights dequantized at once by a product (16 MB of f32).
const CHUNK_ELEMS: usize = 1 << 22;

thread_local! {
    static FUSED: Cell<bool> = const { Cell::new(true) };
}

/// Turns the fused WebGPU kernel on or off for products on this thread (the page's
/// comparisons and benchmarks); on by default.
pub fn set_fused(on: bool) {
    FUSED.with(|c| c.set(on));
}

/// Whether products on this thread use the fused WebGPU kernel where it exists.
pub fn fused_enabled() -> bool {
    FUSED.with(|c| c.get())
}

/// A `[rows, cols]` quantized matrix (PyTorch `[out, in]`) stored in device tensors.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    layout: Layout,
    rows: usize,
    cols: usize,
    /// `[rows, blocks × words per block]`: the block's quant bytes, little-endian in 32-bit words.
    words: Tensor<2, Int>,
    /// `[rows, blocks]`: the block scale `d`.
    scale: Tensor<2>,
    /// `[rows, blocks]`: the block minimum `m` (Q4_1 only).
    min: Option<Tensor<2>>,
}

impl PackedMatrix {
    /// Packs GGUF block bytes of a `[rows, cols]` matrix onto `device`.
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &[u8],
        device: &Device,
    ) -> Result<Self> {
        let Some(layout) = blocks::layout(ty) else {
            return Err(Error::load(format!(
                "{} blocks cannot stay quantized on this device",
                ty.name()
            )));
        };
        let nb = cols / BLOCK;
        if !cols.is_multiple_of(BLOCK) || data.len() != rows * nb * layout.bytes {
            return Err(Error::load(format!(
                "{} matrix [{rows}, {cols}] has {} bytes of blocks",
                ty.name(),
                data.len()
            )));
        }
        let wpb = (layout.bytes - layout.levels_at) / 4;
        let mut words = Vec::with_capacity(rows * nb * wpb);
        let mut scale = Vec::with_capacity(rows * nb);
        let mut min = Vec::with_capacity(if layout.has_min { rows * nb } else { 0 });
        for blk in data.chunks_exact(layout.bytes) {
            scale.push(layout.scale(blk));
            if layout.has_min {
                min.push(layout.min(blk));
            }
            words.extend(
                blk[layout.levels_at..]
                    .chunks_exact(4)
                    .map(|w| i32::from_le_bytes([w[0], w[1], w[2], w[3]])),
            );
        }
        let f = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [rows, nb]), device);
        Ok(PackedMatrix {
            layout,
            rows,
            cols,
            words: Tensor::from_data(TensorData::new(words, [rows, nb * wpb]), device),
            scale: f(scale),
            min: layout.has_min.then(|| f(min)),
        })
    }

    /// Storage type.
    pub fn ty(&self) -> GgmlType {
        self.layout.ty
    }

    /// `[rows, cols]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// Bytes its tensors occupy on the device.
    pub fn bytes(&self) -> usize {
        let words = self.words.shape().num_elements() * self.words.dtype().size();
        words + bytes(&self.scale) + self.min.as_ref().map_or(0, bytes)
    }

    /// f32 values of rows `start..start + len`, `[len, cols]`.
    pub fn dequantize_rows(&self, start: usize, len: usize) -> Tensor<2> {
        let r = start..start + len;
        let [_, w] = self.words.dims();
        let [_, nb] = self.scale.dims();
        self.dequantize(
            self.words.clone().slice([r.clone(), 0..w]),
            self.scale.clone().slice([r.clone(), 0..nb]),
            self.min.clone().map(|m| m.slice([r, 0..nb])),
        )
    }

    /// f32 values of the rows `ids` (each < rows), `[ids.len(), cols]`.
    pub fn select_rows(&self, ids: Tensor<1, Int>) -> Tensor<2> {
        self.dequantize(
            self.words.clone().select(0, ids.clone()),
            self.scale.clone().select(0, ids.clone()),
            self.min.clone().map(|m| m.select(0, ids)),
        )
    }

    /// `x · Wᵀ` for `x` `[m, cols]`: `[m, rows]`. On WebGPU one fused kernel reads the blocks
    /// ([`super::fused`], unless [`set_fused`] turned it off); elsewhere (and as the reference)
    /// [`Self::matmul_t_reference`].
    pub fn matmul_t(&self, x: Tensor<2>) -> Tensor<2> {
        #[cfg(feature = "wgpu")]
        if fused_enabled() && !super::device::on_host(&x.device()) {
            return self.matmul_t_fused(x);
        }
        self.matmul_t_reference(x)
    }

    /// The fused WebGPU kernel ([`super::fused`]): one dispatch, no f32 copy of the matrix.
    #[cfg(feature = "wgpu")]
    pub fn matmul_t_fused(&self, x: Tensor<2>) -> Tensor<2> {
        use super::fused::FusedQuant;
        let kind = super::fused::kind(self.layout.ty).expect("packed types have a block layout");
        let min = self.min.clone().unwrap_or_else(|| self.scale.clone());
        Tensor::from_dispatch(
            <burn::backend::Dispatch as FusedQuant>::fused_quant_matmul_t(
                x.into_dispatch(),
                self.words.clone().into_dispatch(),
                self.scale.clone().into_dispatch(),
                min.into_dispatch(),
                kind,
            ),
        )
    }

    /// `x · Wᵀ` with backend tensor ops: dequantize at most [`CHUNK_ELEMS`] weights at a time
    /// (shift, mask, convert, scale), then a dense product. Any backend; the fused kernel's
    /// reference.
    pub fn matmul_t_reference(&self, x: Tensor<2>) -> Tensor<2> {
        let step = (CHUNK_ELEMS / self.cols).max(1);
        let parts: Vec<Tensor<2>> = (0..self.rows)
            .step_by(step)
            .map(|s| {
                let len = step.min(self.rows - s);
                x.clone().matmul(self.dequantize_rows(s, len).transpose())
            })
            .collect();
        if parts.len() == 1 {
            parts.into_iter().next().expect("one part")
        } else {
            Tensor::cat(parts, 1)
        }
    }

    /// Unpacks `words` `[n, blocks × wpb]` into f32 `[n, cols]` with the blocks' scales.
    fn dequantize(
        &self,
        words: Tensor<2, Int>,
        scale: Tensor<2>,
        min: Option<Tensor<2>>,
    ) -> Tensor<2> {
        let [n, w] = words.dims();
        let nb = self.cols / BLOCK;
        let device = words.device();
        // Bit offsets of the values inside a word, in the order they are laid out below.
        let shifts = self.layout.word_shifts().to_vec();
        let k = shifts.len();
        let shifts = Tensor::<1, Int>::from_data(TensorData::new(shifts, [k]), &device)
            .reshape([1, 1, k])
            .expand([n, w, k]);
        let parts = words
            .reshape([n, w, 1])
            .expand([n, w, k])
            .bitwise_right_shift(shifts);
        let q = match self.layout.bits {
            8 => {
                let u = parts.bitwise_and_scalar(0xFF);
                // two's complement: bytes ≥ 128 are negative
                let sign = u.clone().bitwise_right_shift_scalar(7).mul_scalar(256);
                (u - sign).reshape([n, nb, BLOCK])
            }
            _ => parts
                .bitwise_and_scalar(0xF)
                // [n, nb, word, half, byte] → [n, nb, half, word, byte]
                .reshape([n, nb, 4, 2, 4])
                .swap_dims(2, 3)
                .reshape([n, nb, BLOCK]),
        };
        let q = q.float();
        let d = scale.reshape([n, nb, 1]);
        // (q − bias) · d + m, as `Layout::dequantize`.
        let v = match min {
            Some(m) => q * d + m.reshape([n, nb, 1]),
            None if self.layout.bias != 0.0 => (q - self.layout.bias) * d,
            None => q * d,
        };
        v.reshape([n, self.cols])
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::weights::quant;

    /// Blocks with every byte value and varied scales (random f32 values quantized).
    fn blocks(ty: GgmlType, rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
        let mut s = 0x2545_f491_u32;
        let vals: Vec<f32> = (0..rows * cols)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 - 0.3) * (1.0 + (i / 32 % 7) as f32)
            })
            .collect();
        let data = quant::quantize(ty, &vals).unwrap();
        let exact = quant::dequantize(ty, &data);
        (data, exact)
    }

    #[test]
    fn unpacks_exactly_what_the_host_decoder_gives() {
        let dev = Device::flex();
        let (rows, cols) = (5, 96);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
            let (data, exact) = blocks(ty, rows, cols);
            let p = PackedMatrix::new(ty, rows, cols, &data, &dev).unwrap();
            let got: Vec<f32> = p
                .dequantize_rows(0, rows)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            assert_eq!(got, exact, "{ty:?}");
            let ids = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64, 0, 3], [3]), &dev);
            let sel: Vec<f32> = p.select_rows(ids).into_data().try_to_vec::<f32>().unwrap();
            let want: Vec<f32> = [3, 0, 3]
                .iter()
                .flat_map(|&r| exact[r * cols..(r + 1) * cols].to_vec())
                .collect();
            assert_eq!(sel, want, "{ty:?} rows");
        }
    }

    #[test]
    fn chunked_product_equals_the_dense_product() {
        let dev = Device::flex();
        // more rows than one chunk holds: 1 << 22 / 4096 = 1024 rows per chunk
        let (rows, cols) = (2500, 4096);
        let (data, exact) = blocks(GgmlType::Q8_0, rows, cols);
        let p = PackedMatrix::new(GgmlType::Q8_0, rows, cols, &data, &dev).unwrap();
        let x: Vec<f32> = (0..2 * cols)
            .map(|i| ((i % 13) as f32 - 6.0) / 7.0)
            .collect();
        let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [2, cols]), &dev);
        let y: Vec<f32> = p.matmul_t(xt).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y.len(), 2 * rows);
        for m in 0..2 {
            for r in [0, 1023, 1024, 2047, 2048, 2499] {
                let want: f64 = (0..cols)
                    .map(|c| x[m * cols + c] as f64 * exact[r * cols + c] as f64)
                    .sum();
                let got = y[m * rows + r] as f64;
                assert!(
                    (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
                    "{m},{r}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn rejects_wrong_sizes_and_types() {
        let dev = Device::flex();
        assert!(PackedMatrix::new(GgmlType::Q8_0, 2, 32, &[0; 33], &dev).is_err());
        assert!(PackedMatrix::new(GgmlType::Q8_0, 2, 30, &[0; 68], &dev).is_err());
        assert!(PackedMatrix::new(GgmlType::Q6K, 1, 256, &[0; 210], &dev).is_err());
    }
}
