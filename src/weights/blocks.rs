//! The 32-value block formats taskvec computes with — GGML's Q8_0, Q4_0 and Q4_1 — in one place,
//! as llama.cpp's `ggml-common.h` keeps them: each format's byte layout (size asserted at
//! compile time), its dequantization and quantization (llama.cpp's reference arithmetic), and the
//! one way every kernel applies a block's offset. The CPU kernels ([`crate::model::qmatmul`]),
//! the WebGPU packing ([`crate::model::packed`]) and the fused kernel read their layouts here.
//!
//! A block is an f16 scale `d` (bytes 0..2), for Q4_1 an f16 minimum `m` (bytes 2..4), then the
//! levels: 32 signed bytes (Q8_0), or 16 bytes of nibbles, the low nibbles holding values 0..16
//! and the high nibbles values 16..32 (Q4_0, Q4_1). Value `i` = `(qᵢ − bias) · d + m`, with
//! `bias` 8 for Q4_0 and 0 otherwise.

use super::quant::GgmlType;

/// Values per block.
pub const BLOCK: usize = 32;

/// The byte layout of one 32-value block format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    /// The GGML type.
    pub ty: GgmlType,
    /// Bytes per block.
    pub bytes: usize,
    /// Byte offset of the levels (after the scale, and the minimum if any).
    pub levels_at: usize,
    /// Bits per level: 8 (two's complement) or 4 (unsigned nibbles).
    pub bits: u32,
    /// Whether bytes 2..4 hold an f16 minimum.
    pub has_min: bool,
    /// Subtracted from every level (Q4_0's 8).
    pub bias: f32,
}

/// 8-bit levels, scale only.
pub const Q8_0: Layout = Layout {
    ty: GgmlType::Q8_0,
    bytes: 34,
    levels_at: 2,
    bits: 8,
    has_min: false,
    bias: 0.0,
};
/// 4-bit levels centred on 8, scale only.
pub const Q4_0: Layout = Layout {
    ty: GgmlType::Q4_0,
    bytes: 18,
    levels_at: 2,
    bits: 4,
    has_min: false,
    bias: 8.0,
};
/// 4-bit levels, scale and minimum.
pub const Q4_1: Layout = Layout {
    ty: GgmlType::Q4_1,
    bytes: 20,
    levels_at: 4,
    bits: 4,
    has_min: true,
    bias: 0.0,
};

// Each layout is its header plus 32 levels of `bits` bits, and agrees with GGUF's type table.
const _: () = {
    let all = [Q8_0, Q4_0, Q4_1];
    let mut i = 0;
    while i < all.len() {
        let l = all[i];
        assert!(l.bytes == l.levels_at + BLOCK * l.bits as usize / 8);
        assert!(l.levels_at == if l.has_min { 4 } else { 2 });
        i += 1;
    }
};

/// The layout of `ty` when it is one of the block formats the kernels take (`None` otherwise):
/// the single answer to "can this stay quantized".
pub fn layout(ty: GgmlType) -> Option<Layout> {
    let l = match ty {
        GgmlType::Q8_0 => Q8_0,
        GgmlType::Q4_0 => Q4_0,
        GgmlType::Q4_1 => Q4_1,
        _ => return None,
    };
    debug_assert_eq!(l.bytes, ty.block_bytes());
    Some(l)
}

impl Layout {
    /// The block's scale `d`.
    #[inline(always)]
    pub fn scale(&self, blk: &[u8]) -> f32 {
        f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]))
    }

    /// The block's minimum `m` (0 without one).
    #[inline(always)]
    pub fn min(&self, blk: &[u8]) -> f32 {
        if self.has_min {
            f16_to_f32(u16::from_le_bytes([blk[2], blk[3]]))
        } else {
            0.0
        }
    }

    /// The term a dot product with unbiased levels adds per unit of Σx over the block:
    /// `dot(block, x) = d · Σ qᵢ xᵢ + offset · Σ xᵢ` with `offset = m − bias · d`. Every direct
    /// kernel (portable, AVX2, simd128) applies Q4_0's −8 and Q4_1's minimum this way.
    #[inline(always)]
    pub fn offset(&self, blk: &[u8]) -> f32 {
        self.min(blk) - self.bias * self.scale(blk)
    }

    /// Whether [`Self::offset`] can be non-zero (Q4_0, Q4_1): kernels skip it otherwise.
    #[inline(always)]
    pub fn has_offset(&self) -> bool {
        self.has_min || self.bias != 0.0
    }

    /// The block's 32 levels as stored (unbiased), in value order.
    #[inline(always)]
    pub fn levels(&self, blk: &[u8]) -> [f32; BLOCK] {
        let qs = &blk[self.levels_at..self.bytes];
        let mut q = [0f32; BLOCK];
        if self.bits == 8 {
            for (o, &b) in q.iter_mut().zip(qs) {
                *o = b as i8 as f32;
            }
        } else {
            for (j, &b) in qs.iter().enumerate() {
                q[j] = (b & 0xF) as f32;
                q[j + 16] = (b >> 4) as f32;
            }
        }
        q
    }

    /// Dequantizes one block into `out`: `(qᵢ − bias) · d + m`, llama.cpp's arithmetic.
    #[inline(always)]
    pub fn dequantize(&self, blk: &[u8], out: &mut [f32]) {
        let (d, m) = (self.scale(blk), self.min(blk));
        for (o, q) in out.iter_mut().zip(self.levels(blk)) {
            *o = if self.has_min {
                q * d + m
            } else {
                (q - self.bias) * d
            };
        }
    }

    /// Appends the block for 32 values `x`, as llama.cpp's `quantize_row_*_ref`.
    pub fn quantize(&self, x: &[f32], out: &mut Vec<u8>) {
        let f16b = |v: f32| half::f16::from_f32(v).to_le_bytes();
        let nibbles = |q: &dyn Fn(f32) -> u8, out: &mut Vec<u8>| {
            out.extend((0..16).map(|j| q(x[j]) | (q(x[j + 16]) << 4)));
        };
        match self.ty {
            GgmlType::Q8_0 => {
                let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(f16b(d));
                out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
            }
            GgmlType::Q4_0 => {
                let max = x
                    .iter()
                    .fold(0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(f16b(d));
                nibbles(&|v| ((v * id + 8.5) as i8).min(15) as u8, out);
            }
            _ => {
                let min = x.iter().fold(f32::INFINITY, |a, &v| a.min(v));
                let max = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(f16b(d));
                out.extend(f16b(min));
                nibbles(&|v| (((v - min) * id + 0.5) as i8).min(15) as u8, out);
            }
        }
    }

    /// Bit offsets of the levels inside each little-endian 32-bit word of the level bytes, in
    /// the order the words unpack into values: four bytes per word for 8 bits; for 4 bits the
    /// low nibbles of the block's four words (values 0..16), then their high nibbles (16..32).
    pub fn word_shifts(&self) -> &'static [i32] {
        if self.bits == 8 {
            &[0, 8, 16, 24]
        } else {
            &[0, 8, 16, 24, 4, 12, 20, 28]
        }
    }
}

/// IEEE half → single, exact for every value (branch-light, inlinable; no run-time dispatch).
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_is_exact_for_every_half() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            let got = f16_to_f32(h);
            assert!(
                want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()),
                "{h:#06x}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn offset_form_equals_the_biased_dot_product() {
        let x: Vec<f32> = (0..32).map(|i| (i as f32 - 11.0) / 7.0).collect();
        for l in [Q8_0, Q4_0, Q4_1] {
            let mut blk = Vec::new();
            l.quantize(&x, &mut blk);
            assert_eq!(blk.len(), l.bytes);
            let mut v = [0f32; BLOCK];
            l.dequantize(&blk, &mut v);
            let want: f64 = v.iter().zip(&x).map(|(a, b)| (a * b) as f64).sum();
            let q = l.levels(&blk);
            let dot: f32 = q.iter().zip(&x).map(|(a, b)| a * b).sum();
            let got = l.scale(&blk) * dot + l.offset(&blk) * x.iter().sum::<f32>();
            assert!(
                (got as f64 - want).abs() < 1e-4,
                "{:?}: {got} vs {want}",
                l.ty
            );
        }
    }
}
