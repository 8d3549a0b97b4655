//! Matrix products against weights that stay in GGUF's 32-value blocks (Q8_0, Q4_0, Q4_1):
//! the CPU side of "the weights stay quantized where they live". A block is dequantized only
//! inside the kernel, next to the values it multiplies.
//!
//! Two kernels: few rows (decoding, m ≤ [`SMALL_M`]) take dot products straight from the blocks;
//! more rows (prefill, sweeps) dequantize a panel of weight rows at a time and hand it to `gemm`
//! (the matrix-product crate burn's flex backend uses). Natively, and in the browser's threaded
//! build, both run on rayon's pool.

use super::par::{par_chunks, par_map};
use crate::error::{Error, Result};
use crate::weights::quant::{self, GgmlType};

/// Values per block for every type these kernels take.
pub const BLOCK: usize = 32;
/// Up to this many rows use the direct (dot product) kernel.
pub const SMALL_M: usize = 4;
/// Weight rows dequantized together for one `gemm` call.
const PANEL: usize = 64;

/// A weight matrix `[rows, cols]` (PyTorch `[out, in]`) kept as GGUF blocks along each row.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl QuantMatrix {
    /// Whether the kernels take this block type.
    pub fn supports(ty: GgmlType) -> bool {
        matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1)
    }

    /// Wraps raw blocks, checking the type and that the byte count matches the shape.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self> {
        if !Self::supports(ty) {
            return Err(Error::weights(format!(
                "no quantized kernel for {}: load it dequantized",
                ty.name()
            )));
        }
        if !cols.is_multiple_of(BLOCK) || data.len() != rows * (cols / BLOCK) * ty.block_bytes() {
            return Err(Error::weights(format!(
                "{} tensor [{rows}, {cols}] does not match its {} bytes",
                ty.name(),
                data.len()
            )));
        }
        Ok(QuantMatrix {
            ty,
            rows,
            cols,
            data,
        })
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
        self.ty
    }

    /// `[rows, cols]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// Bytes the blocks occupy in memory.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The raw blocks, row after row.
    pub fn blocks(&self) -> &[u8] {
        &self.data
    }

    fn row_bytes(&self) -> usize {
        self.cols / BLOCK * self.ty.block_bytes()
    }

    /// Rows `r0..r0 + rows`, dequantized, row-major `[rows, cols]`.
    pub fn dequant_rows(&self, r0: usize, rows: usize) -> Vec<f32> {
        let rb = self.row_bytes();
        let data = &self.data[r0 * rb..(r0 + rows) * rb];
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            let mut out = vec![0f32; rows * self.cols];
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            unsafe { dequant_avx2(self.ty, data, &mut out) };
            return out;
        }
        quant::dequantize(self.ty, data)
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
        if m <= SMALL_M {
            self.matmul_direct(x, m)
        } else {
            self.matmul_panels(x, m)
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
            #[cfg(target_arch = "x86_64")]
            if has_avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                return unsafe { task.run_avx2(chunk) };
            }
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
            let panel = self.dequant_rows(r0, w);
            let mut dst = vec![0f32; m * w];
            // SAFETY: every pointer/stride pair stays inside its buffer: dst is [m, w] row-major,
            // x is [m, k] row-major, and the panel ([w, k] row-major) is read as [k, w].
            unsafe {
                gemm::gemm(
                    m,
                    w,
                    k,
                    dst.as_mut_ptr(),
                    1,
                    w as isize,
                    false,
                    x.as_ptr(),
                    1,
                    k as isize,
                    panel.as_ptr(),
                    k as isize,
                    1,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
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
        for (i, o) in out.chunks_exact_mut(m).enumerate() {
            let row = &q.data[(self.r0 + i) * rb..(self.r0 + i + 1) * rb];
            for (j, o) in o.iter_mut().enumerate() {
                *o = dot(
                    row,
                    &self.x[j * k..(j + 1) * k],
                    &self.xsum[j * nb..(j + 1) * nb],
                );
            }
        }
    }

    /// The AVX2 kernel: explicit intrinsics (LLVM does not vectorize the portable loop well).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn run_avx2(&self, out: &mut [f32]) {
        let ty = self.q.ty;
        self.each_dot(out, |row, x, xsum| avx2::row_dot(ty, row, x, xsum))
    }

    /// The portable kernel (wasm, CPUs without AVX2); WebAssembly SIMD intrinsics when the
    /// build enables them.
    fn run(&self, out: &mut [f32]) {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            let ty = self.q.ty;
            return self.each_dot(out, |row, x, xsum| simd128::row_dot(ty, row, x, xsum));
        }
        #[allow(unreachable_code)]
        match self.q.ty {
            GgmlType::Q8_0 => self.each_dot(out, row_dot::<Q8_0>),
            GgmlType::Q4_0 => self.each_dot(out, row_dot::<Q4_0>),
            _ => self.each_dot(out, row_dot::<Q4_1>),
        }
    }
}

const Q8_0: u8 = 0;
const Q4_0: u8 = 1;
const Q4_1: u8 = 2;

/// One weight row (blocks of type `T`) dotted with `x`; `xsum` holds x's per-block sums.
/// Decoding and multiply-adds are fused in eight lanes so that the loop vectorizes.
#[inline(always)]
fn row_dot<const T: u8>(row: &[u8], x: &[f32], xsum: &[f32]) -> f32 {
    let bb = match T {
        Q8_0 => 34,
        Q4_0 => 18,
        _ => 20,
    };
    let mut acc = [0f32; 8];
    let mut offset = 0f32;
    for ((blk, xb), xs) in row.chunks_exact(bb).zip(x.chunks_exact(BLOCK)).zip(xsum) {
        let xb: &[f32; BLOCK] = xb.try_into().expect("32 values");
        let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
        // Four independent 8-lane partial sums: no chain of dependent multiply-adds.
        let mut p = [[0f32; 8]; 4];
        match T {
            Q8_0 => {
                let qs: &[u8; 32] = blk[2..34].try_into().expect("32 bytes");
                for (c, pc) in p.iter_mut().enumerate() {
                    for l in 0..8 {
                        pc[l] = qs[c * 8 + l] as i8 as f32 * xb[c * 8 + l];
                    }
                }
            }
            _ => {
                let qs: &[u8; 16] = blk[bb - 16..bb].try_into().expect("16 bytes");
                let bias = if T == Q4_0 { 8.0 } else { 0.0 };
                for c in 0..2 {
                    for l in 0..8 {
                        let b = qs[c * 8 + l];
                        p[c][l] = ((b & 0xF) as f32 - bias) * xb[c * 8 + l];
                        p[c + 2][l] = ((b >> 4) as f32 - bias) * xb[16 + c * 8 + l];
                    }
                }
                if T == Q4_1 {
                    let mn = f16_to_f32(u16::from_le_bytes([blk[2], blk[3]]));
                    offset += mn * *xs;
                }
            }
        }
        let mut s = [0f32; 8];
        for l in 0..8 {
            s[l] = (p[0][l] + p[1][l]) + (p[2][l] + p[3][l]);
        }
        for l in 0..8 {
            acc[l] += d * s[l];
        }
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + offset
}

/// The direct kernel with WebAssembly SIMD (the browser's CPU fallback).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use core::arch::wasm32::*;

    use super::{BLOCK, GgmlType, f16_to_f32};

    /// Four f32x4 vectors from 16 unsigned bytes.
    #[inline(always)]
    fn widen_u8(v: v128) -> [v128; 4] {
        let (lo, hi) = (u16x8_extend_low_u8x16(v), u16x8_extend_high_u8x16(v));
        [
            f32x4_convert_u32x4(u32x4_extend_low_u16x8(lo)),
            f32x4_convert_u32x4(u32x4_extend_high_u16x8(lo)),
            f32x4_convert_u32x4(u32x4_extend_low_u16x8(hi)),
            f32x4_convert_u32x4(u32x4_extend_high_u16x8(hi)),
        ]
    }

    /// Four f32x4 vectors from 16 signed bytes.
    #[inline(always)]
    fn widen_i8(v: v128) -> [v128; 4] {
        let (lo, hi) = (i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v));
        [
            f32x4_convert_i32x4(i32x4_extend_low_i16x8(lo)),
            f32x4_convert_i32x4(i32x4_extend_high_i16x8(lo)),
            f32x4_convert_i32x4(i32x4_extend_low_i16x8(hi)),
            f32x4_convert_i32x4(i32x4_extend_high_i16x8(hi)),
        ]
    }

    /// One weight row dotted with `x` (see the portable `row_dot`). The 4-bit types take their
    /// levels unbiased: Q4_0's −8 and Q4_1's minimum come in through `xsum`.
    #[inline(always)]
    pub fn row_dot(ty: GgmlType, row: &[u8], x: &[f32], xsum: &[f32]) -> f32 {
        let bb = ty.block_bytes();
        let nb = row.len() / bb;
        assert!(
            x.len() >= nb * BLOCK && xsum.len() >= nb,
            "row_dot: x too short"
        );
        let mut acc = f32x4_splat(0.0);
        let mut offset = 0f32;
        for b in 0..nb {
            let blk = &row[b * bb..(b + 1) * bb];
            let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
            // SAFETY: wasm loads may be unaligned; every load stays inside `blk` (bytes 2..34
            // for Q8_0, the last 16 bytes for the 4-bit types) or inside x's 32 values of
            // block b (asserted above).
            let w: [v128; 8] = unsafe {
                if ty == GgmlType::Q8_0 {
                    let p = blk.as_ptr().add(2) as *const v128;
                    let [a, b2, c, e] = widen_i8(v128_load(p));
                    let [f, g, h, i] = widen_i8(v128_load(p.add(1)));
                    [a, b2, c, e, f, g, h, i]
                } else {
                    let q = v128_load(blk.as_ptr().add(bb - 16) as *const v128);
                    let [a, b2, c, e] = widen_u8(v128_and(q, u8x16_splat(0x0F)));
                    let [f, g, h, i] = widen_u8(u8x16_shr(q, 4));
                    [a, b2, c, e, f, g, h, i]
                }
            };
            let xp = unsafe { x.as_ptr().add(b * BLOCK) } as *const v128;
            let mut p = [f32x4_splat(0.0); 2];
            for (k, wk) in w.iter().enumerate() {
                // SAFETY: k < 8, so the load covers x[b*32 + 4k .. b*32 + 4k + 4].
                let xv = unsafe { v128_load(xp.add(k)) };
                p[k & 1] = f32x4_add(p[k & 1], f32x4_mul(*wk, xv));
            }
            acc = f32x4_add(acc, f32x4_mul(f32x4_splat(d), f32x4_add(p[0], p[1])));
            match ty {
                GgmlType::Q4_0 => offset -= 8.0 * d * xsum[b],
                GgmlType::Q4_1 => {
                    offset += f16_to_f32(u16::from_le_bytes([blk[2], blk[3]])) * xsum[b]
                }
                _ => {}
            }
        }
        (f32x4_extract_lane::<0>(acc) + f32x4_extract_lane::<2>(acc))
            + (f32x4_extract_lane::<1>(acc) + f32x4_extract_lane::<3>(acc))
            + offset
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use core::arch::x86_64::*;

    use super::{BLOCK, f16_to_f32};
    use crate::weights::quant::GgmlType;

    /// Decodes one block's 32 integer levels as f32 vectors (before scale and offset).
    #[inline(always)]
    fn levels(ty: GgmlType, blk: &[u8]) -> [__m256; 4] {
        let bb = ty.block_bytes();
        assert!(blk.len() >= bb, "levels: one whole block");
        // SAFETY: loads stay inside `blk` (8 bytes at 2..34 for Q8_0, 16 bytes at bb-16 for the
        // 4-bit types); only called from AVX2-enabled functions.
        unsafe {
            if ty == GgmlType::Q8_0 {
                let q = |c: usize| {
                    let v = _mm_loadl_epi64(blk.as_ptr().add(2 + 8 * c) as *const __m128i);
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
                };
                [q(0), q(1), q(2), q(3)]
            } else {
                let low4 = _mm_set1_epi8(0x0F);
                let bias = _mm256_set1_ps(if ty == GgmlType::Q4_0 { 8.0 } else { 0.0 });
                let raw = _mm_loadu_si128(blk.as_ptr().add(bb - 16) as *const __m128i);
                let lo = _mm_and_si128(raw, low4);
                let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low4);
                let f =
                    |v: __m128i| _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), bias);
                [
                    f(lo),
                    f(_mm_srli_si128(lo, 8)),
                    f(hi),
                    f(_mm_srli_si128(hi, 8)),
                ]
            }
        }
    }

    /// Dequantizes one block into `out`.
    #[target_feature(enable = "avx2,fma")]
    pub fn dequant_block(ty: GgmlType, blk: &[u8], out: &mut [f32; BLOCK]) {
        let w = levels(ty, blk);
        let d = _mm256_set1_ps(f16_to_f32(u16::from_le_bytes([blk[0], blk[1]])));
        let m = _mm256_set1_ps(if ty == GgmlType::Q4_1 {
            f16_to_f32(u16::from_le_bytes([blk[2], blk[3]]))
        } else {
            0.0
        });
        for (c, wc) in w.iter().enumerate() {
            // SAFETY: out holds 32 floats; c < 4.
            unsafe {
                _mm256_storeu_ps(
                    out.as_mut_ptr().add(8 * c),
                    _mm256_add_ps(_mm256_mul_ps(*wc, d), m),
                )
            };
        }
    }

    /// One weight row dotted with `x` (see `row_dot`), with AVX2 + FMA intrinsics.
    #[target_feature(enable = "avx2,fma")]
    pub fn row_dot(ty: GgmlType, row: &[u8], x: &[f32], xsum: &[f32]) -> f32 {
        let bb = ty.block_bytes();
        let nb = row.len() / bb;
        assert!(
            x.len() >= nb * BLOCK && xsum.len() >= nb,
            "row_dot: x too short"
        );
        let mut acc = _mm256_setzero_ps();
        let mut offset = 0f32;
        for b in 0..nb {
            let blk = &row[b * bb..(b + 1) * bb];
            // SAFETY: every load stays inside `blk` (8 bytes at 2..34 for Q8_0, 16 bytes at
            // bb-16 for the 4-bit types) or inside x's 32 values of block b (asserted above).
            unsafe {
                let xp = x.as_ptr().add(b * BLOCK);
                let xv = [
                    _mm256_loadu_ps(xp),
                    _mm256_loadu_ps(xp.add(8)),
                    _mm256_loadu_ps(xp.add(16)),
                    _mm256_loadu_ps(xp.add(24)),
                ];
                let w = levels(ty, blk);
                let p01 = _mm256_fmadd_ps(w[1], xv[1], _mm256_mul_ps(w[0], xv[0]));
                let p23 = _mm256_fmadd_ps(w[3], xv[3], _mm256_mul_ps(w[2], xv[2]));
                let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_add_ps(p01, p23), acc);
            }
            if ty == GgmlType::Q4_1 {
                offset += f16_to_f32(u16::from_le_bytes([blk[2], blk[3]])) * xsum[b];
            }
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        (lanes[0] + lanes[4])
            + (lanes[1] + lanes[5])
            + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
            + offset
    }
}

/// IEEE half → single, exact for every value (branch-light, inlinable; no run-time dispatch).
#[inline(always)]
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = (h >> 10) & 0x1F;
    let man = (h & 0x3FF) as u32;
    let bits = if exp == 0 {
        if man == 0 {
            return f32::from_bits(sign);
        }
        // Subnormal: value = man · 2⁻²⁴.
        let v = man as f32 * f32::from_bits(0x3380_0000);
        return if sign != 0 { -v } else { v };
    } else if exp == 0x1F {
        sign | 0x7F80_0000 | (man << 13)
    } else {
        sign | (((exp as u32) + 112) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

/// Whether this x86-64 CPU has AVX2 and FMA (std caches the detection).
#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// Dequantizes whole blocks `data` into `out` with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dequant_avx2(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    for (blk, o) in data
        .chunks_exact(ty.block_bytes())
        .zip(out.chunks_exact_mut(BLOCK))
    {
        avx2::dequant_block(ty, blk, o.try_into().expect("32 values"));
    }
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
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 20001) as f32 / 10000.0 - 1.0
            })
            .collect()
    }

    fn reference(w: &[f32], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for r in 0..n {
                out[i * n + r] = (0..k)
                    .map(|c| x[i * k + c] as f64 * w[r * k + c] as f64)
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    #[test]
    fn both_kernels_equal_a_product_with_the_dequantized_matrix() {
        let (n, k) = (200, 96);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
            let q = QuantMatrix::quantize(ty, n, k, &values(n * k, 1)).unwrap();
            let dense = quant::dequantize(ty, q.blocks());
            assert_eq!(q.dequant_rows(7, 1), dense[7 * k..8 * k]);
            for m in [1, 3, SMALL_M + 1, 70] {
                let x = values(m * k, m as u32 + 9);
                let got = q.matmul_t(&x, m);
                let want = reference(&dense, n, k, &x, m);
                let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
                let err = got
                    .iter()
                    .zip(&want)
                    .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
                assert!(err <= 1e-5 * scale, "{ty:?} m={m}: {err} vs {scale}");
            }
            assert_eq!(q.gather(&[7, 0])[..k], dense[7 * k..8 * k]);
            // The portable kernel (wasm, CPUs without AVX2) agrees with the dispatched one.
            let x = values(2 * k, 5);
            let xsum: Vec<f32> = x.chunks_exact(BLOCK).map(|c| c.iter().sum()).collect();
            let task = DirectTask {
                q: &q,
                x: &x,
                xsum: &xsum,
                m: 2,
                r0: 0,
            };
            let mut portable = vec![0f32; n * 2];
            task.run(&mut portable);
            let fast = transpose(q.matmul_t(&x, 2), 2, n);
            for (a, b) in portable.iter().zip(&fast) {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{ty:?}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn half_conversion_is_exact() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            let got = f16_to_f32(h);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{h:#x}"
            );
        }
    }

    #[test]
    fn refuses_mismatched_blocks() {
        assert!(QuantMatrix::new(GgmlType::Q8_0, 2, 32, vec![0; 67]).is_err());
        assert!(QuantMatrix::new(GgmlType::Q8_0, 2, 48, vec![0; 68]).is_err());
        assert!(QuantMatrix::new(GgmlType::Q4K, 1, 256, vec![0; 144]).is_err());
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    #[test]
    #[ignore]
    fn direct_kernel_speed() {
        let (n, k) = (1536, 576);
        let v: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
            let q = QuantMatrix::quantize(ty, n, k, &v).unwrap();
            let x: Vec<f32> = v[..k].to_vec();
            let t = std::time::Instant::now();
            let reps = 2000;
            let mut s = 0.0;
            for _ in 0..reps {
                s += q.matmul_t(&x, 1)[3];
            }
            let dt = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{ty:?} m=1: {:.1} us, {:.2} GMAC/s ({s})",
                dt * 1e6,
                (n * k) as f64 / dt / 1e9
            );
        }
    }
}
