//! The direct kernel in plain Rust: CPUs without AVX2, WebAssembly without SIMD, and the
//! reference the other kernels are tested against.

use crate::weights::blocks::{BLOCK, Layout};

/// One weight row (blocks of layout `l`, `BITS` bits per level) dotted with `x`; `xsum` holds
/// x's per-block sums. Per block: `d · Σ qᵢ xᵢ + offset · Σ xᵢ` ([`Layout::offset`]). Decoding
/// and multiply-adds are fused in eight lanes so that the loop vectorizes.
#[inline(always)]
pub fn row_dot<const BITS: u32>(l: &Layout, row: &[u8], x: &[f32], xsum: &[f32]) -> f32 {
    debug_assert_eq!(l.bits, BITS);
    let with_offset = l.has_offset();
    let mut acc = [0f32; 8];
    let mut offset = 0f32;
    for ((blk, xb), xs) in row
        .chunks_exact(l.bytes)
        .zip(x.chunks_exact(BLOCK))
        .zip(xsum)
    {
        let xb: &[f32; BLOCK] = xb.try_into().expect("32 values");
        let d = l.scale(blk);
        // Four independent 8-lane partial sums: no chain of dependent multiply-adds.
        let mut p = [[0f32; 8]; 4];
        if BITS == 8 {
            let qs: &[u8; 32] = blk[l.levels_at..l.bytes].try_into().expect("32 bytes");
            for (c, pc) in p.iter_mut().enumerate() {
                for j in 0..8 {
                    pc[j] = qs[c * 8 + j] as i8 as f32 * xb[c * 8 + j];
                }
            }
        } else {
            let qs: &[u8; 16] = blk[l.levels_at..l.bytes].try_into().expect("16 bytes");
            for c in 0..2 {
                for j in 0..8 {
                    let b = qs[c * 8 + j];
                    p[c][j] = (b & 0xF) as f32 * xb[c * 8 + j];
                    p[c + 2][j] = (b >> 4) as f32 * xb[16 + c * 8 + j];
                }
            }
        }
        if with_offset {
            offset += l.offset(blk) * *xs;
        }
        let mut s = [0f32; 8];
        for j in 0..8 {
            s[j] = (p[0][j] + p[1][j]) + (p[2][j] + p[3][j]);
        }
        for j in 0..8 {
            acc[j] += d * s[j];
        }
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + offset
}
