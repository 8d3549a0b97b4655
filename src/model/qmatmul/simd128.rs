//! The direct kernel with WebAssembly SIMD (the browser's CPU fallback).

use core::arch::wasm32::*;

use crate::weights::blocks::{BLOCK, Layout};

/// `a · b + c`: one fused multiply-add where the build has relaxed SIMD (the threaded build),
/// else a multiply and an add.
#[inline(always)]
fn madd(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    return f32x4_relaxed_madd(a, b, c);
    #[cfg(not(target_feature = "relaxed-simd"))]
    f32x4_add(c, f32x4_mul(a, b))
}

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

/// The block's 32 levels as stored (unbiased), in value order, as eight f32x4 vectors
/// ([`Layout::levels`]).
#[inline(always)]
fn levels(l: &Layout, blk: &[u8]) -> [v128; 8] {
    assert!(blk.len() >= l.bytes && l.levels_at + if l.bits == 8 { 32 } else { 16 } <= l.bytes);
    // SAFETY: the level bytes (32 for 8 bits, 16 for 4 bits) end inside `blk` (asserted); wasm
    // loads may be unaligned.
    unsafe {
        let p = blk.as_ptr().add(l.levels_at) as *const v128;
        if l.bits == 8 {
            let [a, b, c, e] = widen_i8(v128_load(p));
            let [f, g, h, i] = widen_i8(v128_load(p.add(1)));
            [a, b, c, e, f, g, h, i]
        } else {
            let q = v128_load(p);
            let [a, b, c, e] = widen_u8(v128_and(q, u8x16_splat(0x0F)));
            let [f, g, h, i] = widen_u8(u8x16_shr(q, 4));
            [a, b, c, e, f, g, h, i]
        }
    }
}

/// [`Layout::dequantize`] of one block into `out` (32 values), the same operations lane by
/// lane: `q · d + m` with a minimum, `(q − bias) · d` without.
#[inline(always)]
pub fn dequantize(l: &Layout, blk: &[u8], out: &mut [f32]) {
    assert!(out.len() >= BLOCK);
    let q = levels(l, blk);
    let (d, m, bias) = (
        f32x4_splat(l.scale(blk)),
        f32x4_splat(l.min(blk)),
        f32x4_splat(l.bias),
    );
    let op = out.as_mut_ptr() as *mut v128;
    for (k, q) in q.into_iter().enumerate() {
        let v = if l.has_min {
            f32x4_add(f32x4_mul(q, d), m)
        } else {
            f32x4_mul(f32x4_sub(q, bias), d)
        };
        // SAFETY: k < 8: values 4k .. 4k + 4 of out's 32.
        unsafe { v128_store(op.add(k), v) };
    }
}

/// One weight row dotted with `x` (see [`super::portable::row_dot`]).
#[inline(always)]
pub fn row_dot(l: &Layout, row: &[u8], x: &[f32], xsum: &[f32]) -> f32 {
    let (bb, nb) = (l.bytes, super::row_blocks(l, row, x, xsum));
    let with_offset = l.has_offset();
    let mut acc = f32x4_splat(0.0);
    let mut offset = 0f32;
    for b in 0..nb {
        let blk = &row[b * bb..(b + 1) * bb];
        let w = levels(l, blk);
        // SAFETY: wasm loads may be unaligned; the loads below stay inside x's 32 values of
        // block b (asserted above).
        let xp = unsafe { x.as_ptr().add(b * BLOCK) } as *const v128;
        let mut p = [f32x4_splat(0.0); 2];
        for (k, wk) in w.iter().enumerate() {
            // SAFETY: k < 8, so the load covers x[b*32 + 4k .. b*32 + 4k + 4].
            let xv = unsafe { v128_load(xp.add(k)) };
            p[k & 1] = madd(*wk, xv, p[k & 1]);
        }
        acc = madd(f32x4_splat(l.scale(blk)), f32x4_add(p[0], p[1]), acc);
        if with_offset {
            offset += l.offset(blk) * xsum[b];
        }
    }
    (f32x4_extract_lane::<0>(acc) + f32x4_extract_lane::<2>(acc))
        + (f32x4_extract_lane::<1>(acc) + f32x4_extract_lane::<3>(acc))
        + offset
}
