//! The SIMD kernels: one generic body ([`tile`]) over an instruction set's vector operations
//! ([`isa::Isa`]) and the activation level type ([`BlockDot`]).

use core::arch::x86_64::*;

use super::{Interleaved, Level, QRows, RowBlocks};
use crate::weights::blocks::{BLOCK, Layout};

mod amx;
mod isa;
pub(crate) use amx::ready as amx_ready;
use isa::{Avx2, Isa, Vnni, Ymm, Zmm};

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn group_zmm<T: BlockDot>(
    w: &Interleaved,
    g: usize,
    x: &QRows<T>,
    out: &mut [f32],
    stride: usize,
) {
    // Whole 16-row tiles on AMX where the CPU has it (the same sums, bit for bit), the rest
    // here.
    let done = if x.rows >= 16 && amx::ready() {
        // SAFETY: AMX is ready and this function's features are enabled; `x.planes` is made by
        // `QRows::quantize` whenever AMX is ready and there are 16 rows or more.
        unsafe { amx::rows(w, g, x, &x.planes, out, stride) }
    } else {
        0
    };
    unsafe { group::<Zmm, T>(w, g, x, out, stride, done) }
}

/// [`group_zmm`] without AMX (the reference the AMX tiles are tested against).
#[cfg(test)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn group_zmm_vnni<T: BlockDot>(
    w: &Interleaved,
    g: usize,
    x: &QRows<T>,
    out: &mut [f32],
    stride: usize,
) {
    unsafe { group::<Zmm, T>(w, g, x, out, stride, 0) }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn group_vnni<T: BlockDot>(
    w: &Interleaved,
    g: usize,
    x: &QRows<T>,
    out: &mut [f32],
    stride: usize,
) {
    unsafe { group::<Ymm<Vnni>, T>(w, g, x, out, stride, 0) }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn group_avx2<T: BlockDot>(
    w: &Interleaved,
    g: usize,
    x: &QRows<T>,
    out: &mut [f32],
    stride: usize,
) {
    unsafe { group::<Ymm<Avx2>, T>(w, g, x, out, stride, 0) }
}

/// How one activation level type meets a block's levels: the integer sums of `C`
/// activation rows against a group's block, and its own quantizer.
pub trait BlockDot: Level {
    /// What the Q8_0 sums were shifted by, as [`Isa::Q8_SHIFT`] (0: none).
    fn shift<V: Isa>() -> i32;
    /// `dots[c] += Σ levels · x[c]` over one block (`lv`: its level bytes, `x[c]`: row c's
    /// 32 activation levels).
    unsafe fn block<V: Isa, const C: usize>(
        bits: u32,
        lv: *const u8,
        x: [*const Self; C],
        dots: &mut [V::I; C],
    );
    /// [`super::quantize_blocks`] on this CPU (AVX2 + FMA).
    unsafe fn quantize(x: &[f32], out: &mut RowBlocks<Self>);
}

impl BlockDot for i8 {
    fn shift<V: Isa>() -> i32 {
        V::Q8_SHIFT
    }
    #[inline(always)]
    unsafe fn block<V: Isa, const C: usize>(
        bits: u32,
        lv: *const u8,
        x: [*const i8; C],
        dots: &mut [V::I; C],
    ) {
        let lanes = V::LANES;
        // Two sums per row halve the chains of dependent multiply-adds.
        let mut more = [unsafe { V::zero_i() }; C];
        unsafe {
            if bits == 4 {
                for col in 0..4 {
                    let (lo, hi) = V::nibbles(V::load(lv.add(4 * lanes * col)));
                    for ((d, e), xc) in dots.iter_mut().zip(&mut more).zip(x) {
                        *d = V::dot4(*d, lo, V::bcast(xc.add(4 * col)));
                        *e = V::dot4(*e, hi, V::bcast(xc.add(16 + 4 * col)));
                    }
                }
            } else {
                for col in 0..8 {
                    let v = V::load(lv.add(4 * lanes * col));
                    let p = V::prep8(v);
                    for ((d, e), xc) in dots.iter_mut().zip(&mut more).zip(x) {
                        let sum = if col % 2 == 0 { d } else { e };
                        *sum = V::dot8(*sum, p, v, V::bcast(xc.add(4 * col)));
                    }
                }
            }
            for (d, e) in dots.iter_mut().zip(more) {
                *d = V::add(*d, e);
            }
        }
    }
    unsafe fn quantize(x: &[f32], out: &mut RowBlocks<i8>) {
        unsafe { quantize_i8(x, out) }
    }
}

impl BlockDot for i16 {
    fn shift<V: Isa>() -> i32 {
        0
    }
    #[inline(always)]
    unsafe fn block<V: Isa, const C: usize>(
        bits: u32,
        lv: *const u8,
        x: [*const i16; C],
        dots: &mut [V::I; C],
    ) {
        let lanes = V::LANES;
        let mut more = [unsafe { V::zero_i() }; C];
        // Values 4c, 4c + 2 meet the lanes' even bytes and 4c + 1, 4c + 3 the odd ones: the
        // i16 levels are stored in that order ([`Level::ORDER`]), so each pair is one
        // 32-bit broadcast.
        unsafe {
            let pair = |xc: *const i16, at: usize| V::bcast(xc.add(at) as *const i8);
            if bits == 4 {
                for col in 0..4 {
                    let (lo, hi) = V::nibbles(V::load(lv.add(4 * lanes * col)));
                    let (le, lo) = V::split_u(lo);
                    let (he, ho) = V::split_u(hi);
                    for ((d, e), &xc) in dots.iter_mut().zip(&mut more).zip(&x) {
                        *d = V::dot16(*d, le, pair(xc, 4 * col));
                        *e = V::dot16(*e, lo, pair(xc, 4 * col + 2));
                        *d = V::dot16(*d, he, pair(xc, 16 + 4 * col));
                        *e = V::dot16(*e, ho, pair(xc, 16 + 4 * col + 2));
                    }
                }
            } else {
                for col in 0..8 {
                    let (ev, od) = V::split_s(V::load(lv.add(4 * lanes * col)));
                    for ((d, m), &xc) in dots.iter_mut().zip(&mut more).zip(&x) {
                        *d = V::dot16(*d, ev, pair(xc, 4 * col));
                        *m = V::dot16(*m, od, pair(xc, 4 * col + 2));
                    }
                }
            }
            for (d, m) in dots.iter_mut().zip(more) {
                *d = V::add(*d, m);
            }
        }
    }
    unsafe fn quantize(x: &[f32], out: &mut RowBlocks<i16>) {
        unsafe { quantize_i16(x, out) }
    }
}

/// The quantizer for this CPU.
pub(super) unsafe fn quantize<T: BlockDot>(x: &[f32], out: &mut RowBlocks<T>) {
    unsafe { T::quantize(x, out) }
}

/// Activation rows `from..` against group `g`, [`Isa::TILE`] rows at a time.
#[inline(always)]
unsafe fn group<V: Isa, T: BlockDot>(
    w: &Interleaved,
    g: usize,
    x: &QRows<T>,
    out: &mut [f32],
    stride: usize,
    from: usize,
) {
    assert_eq!(w.kernel.lanes(), V::LANES, "interleaved for another kernel");
    let blocks = w.group_blocks(g);
    let mut i = from;
    // A plain loop, not a closure: a closure would not inherit the caller's target features.
    while i < x.rows {
        let c = match x.rows - i {
            n if n >= 8 && V::TILE >= 8 => 8,
            n => n.min(4),
        };
        let o = &mut out[i * stride..];
        // SAFETY: as for `tile`: rows i..i + c exist, `o` holds their outputs.
        unsafe {
            match c {
                8 => tile::<V, T, 8>(w, blocks, x, i, o, stride),
                4 => tile::<V, T, 4>(w, blocks, x, i, o, stride),
                3 => tile::<V, T, 3>(w, blocks, x, i, o, stride),
                2 => tile::<V, T, 2>(w, blocks, x, i, o, stride),
                _ => tile::<V, T, 1>(w, blocks, x, i, o, stride),
            }
        }
        i += c;
    }
}

/// A group's block scales `d_w` and offsets `o_w` (Q4_1's minimums, Q4_0's `−8·d_w`; none for
/// Q8_0), read from the interleaved block at `blk`.
#[inline(always)]
unsafe fn block_scales<V: Isa>(l: &Layout, blk: *const u8) -> (V::F, Option<V::F>) {
    // SAFETY: `blk` starts a group block: LANES f16 scales, then LANES f16 minimums (Q4_1).
    unsafe {
        let dw = V::halves(blk);
        let offset = if l.has_min {
            Some(V::halves(blk.add(2 * V::LANES)))
        } else if l.bits == 4 {
            Some(V::mul(dw, -l.bias))
        } else {
            None
        };
        (dw, offset)
    }
}

/// Activation rows `i0..i0 + C` against one group's blocks.
#[inline(always)]
unsafe fn tile<V: Isa, T: BlockDot, const C: usize>(
    w: &Interleaved,
    blocks: &[u8],
    x: &QRows<T>,
    i0: usize,
    out: &mut [f32],
    stride: usize,
) {
    let l = &w.layout;
    let lanes = V::LANES;
    let (k, nb, bb) = (w.cols, w.cols / BLOCK, lanes * l.bytes);
    assert!(blocks.len() >= nb * bb && x.q.len() >= (i0 + C) * k);
    assert!(x.d.len() >= (i0 + C) * nb && x.s.len() >= (i0 + C) * nb);
    assert!(x.sum.len() >= (i0 + C) * nb && out.len() >= (C - 1) * stride + lanes);
    let shift = T::shift::<V>();
    // SAFETY: every load stays inside `blocks` (nb blocks of `bb` bytes), the activation
    // rows i0..i0 + C and their per-block values, every store inside `out` (all asserted).
    unsafe {
        let mut acc = [V::zero_f(); C];
        for b in 0..nb {
            let blk = blocks.as_ptr().add(b * bb);
            let (dw, offset) = block_scales::<V>(l, blk);
            let xs: [*const T; C] =
                core::array::from_fn(|c| x.q.as_ptr().add((i0 + c) * k + b * BLOCK));
            let mut dots = [V::zero_i(); C];
            T::block::<V, C>(l.bits, blk.add(lanes * l.levels_at), xs, &mut dots);
            for (c, a) in acc.iter_mut().enumerate() {
                let kb = (i0 + c) * nb + b;
                let mut dot = dots[c];
                if l.bits == 8 && shift != 0 {
                    dot = V::sub(dot, shift * *x.sum.get_unchecked(kb));
                }
                *a = V::scaled(*a, dot, dw, *x.d.get_unchecked(kb));
                if let Some(o) = offset {
                    *a = V::fmadd(*a, o, *x.s.get_unchecked(kb));
                }
            }
        }
        for (c, a) in acc.iter().enumerate() {
            V::store(out.as_mut_ptr().add(c * stride), *a);
        }
    }
}

/// A block of 32 values as four vectors, and their largest magnitude (a max tree).
#[inline(always)]
unsafe fn block_amax(p: *const f32) -> ([__m256; 4], f32) {
    unsafe {
        let v = [0, 8, 16, 24].map(|o| _mm256_loadu_ps(p.add(o)));
        let sign = _mm256_set1_ps(-0.0);
        let a = v.map(|v| _mm256_andnot_ps(sign, v));
        let m = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m1 = _mm_max_ss(m2, _mm_movehdup_ps(m2));
        (v, _mm_cvtss_f32(m1))
    }
}

/// Levels of a block rounded to nearest even (`vcvtps2dq`) at scale `max|x| / top`, their sum
/// and the scale.
#[inline(always)]
unsafe fn block_levels(p: *const f32, top: f32) -> ([__m256i; 4], i32, f32) {
    unsafe {
        let (v, amax) = block_amax(p);
        let d = amax / top;
        let inv = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
        let q = v.map(|v| _mm256_cvtps_epi32(_mm256_mul_ps(v, inv)));
        // Σq: the i32 lanes added, then horizontally.
        let s8 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
        let s2 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b01_00_11_10));
        let sum = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0b00_00_00_01)));
        (q, sum, d)
    }
}

/// 32 i32 values in range packed to bytes in order (`unsigned`: saturating to 0..255).
#[inline(always)]
unsafe fn pack_bytes(q: [__m256i; 4], unsigned: bool) -> __m256i {
    unsafe {
        // i32 → i16 → i8 packs work per 128-bit lane: undo their interleaving.
        let w16a = _mm256_packs_epi32(q[0], q[1]);
        let w16b = _mm256_packs_epi32(q[2], q[3]);
        let w8 = if unsigned {
            _mm256_packus_epi16(w16a, w16b)
        } else {
            _mm256_packs_epi16(w16a, w16b)
        };
        _mm256_permutevar8x32_epi32(w8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }
}

/// [`super::quantize_blocks`] for 8-bit levels with AVX2 intrinsics.
#[target_feature(enable = "avx2,fma")]
fn quantize_i8(x: &[f32], out: &mut RowBlocks<i8>) {
    for (b, xb) in x.chunks_exact(BLOCK).enumerate() {
        // SAFETY: `xb` holds 32 floats; the 32 stored bytes are block b's (q has one byte
        // per value of x).
        unsafe {
            let (q, sum, d) = block_levels(xb.as_ptr(), <i8 as Level>::MAX);
            let bytes = pack_bytes(q, false);
            _mm256_storeu_si256(out.q.as_mut_ptr().add(b * BLOCK) as *mut __m256i, bytes);
            out.d[b] = d;
            out.s[b] = d * sum as f32;
            out.sum[b] = sum;
        }
    }
}

/// [`super::quantize_blocks`] for 16-bit levels with AVX2 intrinsics: the levels in
/// [`Level::ORDER`]'s pair order, and split for the AMX kernel when `out` wants them.
#[target_feature(enable = "avx2,fma")]
fn quantize_i16(x: &[f32], out: &mut RowBlocks<i16>) {
    let planes = !out.planes.is_empty();
    assert!(!planes || out.planes.len() >= 2 * x.len());
    for (b, xb) in x.chunks_exact(BLOCK).enumerate() {
        // SAFETY: `xb` holds 32 floats; the stored 32 levels (64 bytes) and 64 split bytes are
        // block b's (q has one level per value of x, the planes two bytes, asserted).
        unsafe {
            let (q, sum, d) = block_levels(xb.as_ptr(), <i16 as Level>::MAX);
            // Each 4-value group as values 0, 2, 1, 3; i32 → i16 packs per 128-bit lane, so
            // the 64-bit quarters are put back in order.
            let ord = _mm256_setr_epi32(0, 2, 1, 3, 4, 6, 5, 7);
            let p = q.map(|v| _mm256_permutevar8x32_epi32(v, ord));
            let dst = out.q.as_mut_ptr().add(b * BLOCK) as *mut __m256i;
            for h in 0..2 {
                let w = _mm256_packs_epi32(p[2 * h], p[2 * h + 1]);
                _mm256_storeu_si256(dst.add(h), _mm256_permute4x64_epi64(w, 0b11_01_10_00));
            }
            if planes {
                let hi = pack_bytes(q.map(|v| _mm256_srai_epi32(v, 4)), false);
                let mask = _mm256_set1_epi32(15);
                let lo = pack_bytes(q.map(|v| _mm256_and_si256(v, mask)), true);
                let dst = out.planes.as_mut_ptr().add(2 * b * BLOCK) as *mut __m256i;
                _mm256_storeu_si256(dst, hi);
                _mm256_storeu_si256(dst.add(1), lo);
            }
            out.d[b] = d;
            out.s[b] = d * sum as f32;
            out.sum[b] = sum;
        }
    }
}
