//! The direct kernel and block dequantization with AVX2 + FMA intrinsics (x86-64; the caller
//! checks the CPU at run time).

use core::arch::x86_64::*;

use crate::weights::blocks::{BLOCK, Layout};

/// Decodes one block's 32 levels as f32 vectors, unbiased, in value order.
#[inline(always)]
fn levels(l: &Layout, blk: &[u8]) -> [__m256; 4] {
    assert!(blk.len() >= l.bytes, "levels: one whole block");
    // SAFETY: loads stay inside `blk`'s level bytes (32 for 8 bits, 16 for 4 bits, ending at
    // `l.bytes`); only called from AVX2-enabled functions.
    unsafe {
        let p = blk.as_ptr().add(l.levels_at);
        if l.bits == 8 {
            let q = |c: usize| {
                let v = _mm_loadl_epi64(p.add(8 * c) as *const __m128i);
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
            };
            [q(0), q(1), q(2), q(3)]
        } else {
            let low4 = _mm_set1_epi8(0x0F);
            let raw = _mm_loadu_si128(p as *const __m128i);
            let lo = _mm_and_si128(raw, low4);
            let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low4);
            let f = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
            [
                f(lo),
                f(_mm_srli_si128(lo, 8)),
                f(hi),
                f(_mm_srli_si128(hi, 8)),
            ]
        }
    }
}

/// Dequantizes whole blocks `data` into `out`: `(qᵢ − bias) · d + m`, as
/// [`Layout::dequantize`].
#[target_feature(enable = "avx2,fma")]
pub fn dequantize(l: &Layout, data: &[u8], out: &mut [f32]) {
    let bias = _mm256_set1_ps(l.bias);
    for (blk, o) in data.chunks_exact(l.bytes).zip(out.chunks_exact_mut(BLOCK)) {
        let w = levels(l, blk);
        let d = _mm256_set1_ps(l.scale(blk));
        let m = _mm256_set1_ps(l.min(blk));
        for (c, wc) in w.iter().enumerate() {
            let v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(*wc, bias), d), m);
            // SAFETY: `o` holds 32 floats; c < 4.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(8 * c), v) };
        }
    }
}

/// One weight row dotted with `x` (see [`super::portable::row_dot`]).
#[target_feature(enable = "avx2,fma")]
pub fn row_dot(l: &Layout, row: &[u8], x: &[f32], xsum: &[f32]) -> f32 {
    let (bb, nb) = (l.bytes, super::row_blocks(l, row, x, xsum));
    let with_offset = l.has_offset();
    let mut acc = _mm256_setzero_ps();
    let mut offset = 0f32;
    for b in 0..nb {
        let blk = &row[b * bb..(b + 1) * bb];
        // SAFETY: the loads stay inside x's 32 values of block b (asserted above).
        unsafe {
            let xp = x.as_ptr().add(b * BLOCK);
            let xv = [
                _mm256_loadu_ps(xp),
                _mm256_loadu_ps(xp.add(8)),
                _mm256_loadu_ps(xp.add(16)),
                _mm256_loadu_ps(xp.add(24)),
            ];
            let w = levels(l, blk);
            let p01 = _mm256_fmadd_ps(w[1], xv[1], _mm256_mul_ps(w[0], xv[0]));
            let p23 = _mm256_fmadd_ps(w[3], xv[3], _mm256_mul_ps(w[2], xv[2]));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(l.scale(blk)), _mm256_add_ps(p01, p23), acc);
        }
        if with_offset {
            offset += l.offset(blk) * xsum[b];
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
