//! The vector operations the integer kernels are written in ([`Isa`]), for 256-bit AVX2,
//! 256-bit AVX512-VNNI and 512-bit AVX512-VNNI.

use core::arch::x86_64::*;
use core::marker::PhantomData;

/// The vector operations a kernel needs; one i32 lane per weight row of a group.
pub trait Isa {
    /// Integer vector.
    type I: Copy;
    /// f32 vector.
    type F: Copy;
    /// Lanes: rows per group.
    const LANES: usize;
    /// Activation rows that share one pass over a group's blocks: as many as the vector
    /// registers hold with their integer and f32 sums (16 registers: 4; 32 registers: 8).
    const TILE: usize;
    /// What Q8_0 levels were shifted by (`shift · Σq` is taken off the integer sum).
    const Q8_SHIFT: i32;
    unsafe fn zero_i() -> Self::I;
    unsafe fn zero_f() -> Self::F;
    /// `LANES · 4` bytes.
    unsafe fn load(p: *const u8) -> Self::I;
    /// `LANES` f16 values as f32.
    unsafe fn halves(p: *const u8) -> Self::F;
    /// Low and high nibbles of every byte.
    unsafe fn nibbles(v: Self::I) -> (Self::I, Self::I);
    /// Four bytes at `p` in every lane.
    unsafe fn bcast(p: *const i8) -> Self::I;
    /// `acc + Σ₄ u·x`, unsigned 4-bit `u`.
    unsafe fn dot4(acc: Self::I, u: Self::I, x: Self::I) -> Self::I;
    /// A Q8_0 level vector prepared for [`Isa::dot8`].
    unsafe fn prep8(w: Self::I) -> Self::I;
    /// `acc + Σ₄ w·x` (up to the shift) for signed levels `w`, prepared as `p`.
    unsafe fn dot8(acc: Self::I, p: Self::I, w: Self::I, x: Self::I) -> Self::I;
    /// `acc + Σ₂ a·b` for i16 pairs in each i32 lane.
    unsafe fn dot16(acc: Self::I, a: Self::I, b: Self::I) -> Self::I;
    /// Each lane's bytes 0 and 2, and bytes 1 and 3, as unsigned i16 pairs.
    unsafe fn split_u(v: Self::I) -> (Self::I, Self::I);
    /// Each lane's bytes 0 and 2, and bytes 1 and 3, as sign-extended i16 pairs.
    unsafe fn split_s(v: Self::I) -> (Self::I, Self::I);
    /// `a − s` in every lane.
    unsafe fn sub(a: Self::I, s: i32) -> Self::I;
    /// `a + b`.
    unsafe fn add(a: Self::I, b: Self::I) -> Self::I;
    /// `acc + f32(dots) · (dw · dx)`.
    unsafe fn scaled(acc: Self::F, dots: Self::I, dw: Self::F, dx: f32) -> Self::F;
    /// `acc + o · s`.
    unsafe fn fmadd(acc: Self::F, o: Self::F, s: f32) -> Self::F;
    /// `a · s`.
    unsafe fn mul(a: Self::F, s: f32) -> Self::F;
    /// Stores `LANES` floats.
    unsafe fn store(p: *mut f32, a: Self::F);
}

/// How a 256-bit instruction set adds four u8 × i8 products per i32 lane.
pub trait Dot256 {
    const Q8_SHIFT: i32;
    unsafe fn dot16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i;
    unsafe fn dot4(acc: __m256i, u: __m256i, x: __m256i) -> __m256i;
    unsafe fn prep8(w: __m256i) -> __m256i;
    unsafe fn dot8(acc: __m256i, p: __m256i, w: __m256i, x: __m256i) -> __m256i;
}

/// AVX2: `vpmaddubsw` pairs into i16, `vpmaddwd` into i32. Q8_0 goes in as
/// `|w| · (x · sign w)`, as llama.cpp does (128 · 127 · 2 fits the i16 pair sums).
pub(super) struct Avx2;
impl Dot256 for Avx2 {
    const Q8_SHIFT: i32 = 0;
    #[inline(always)]
    unsafe fn dot16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)) }
    }
    #[inline(always)]
    unsafe fn dot4(acc: __m256i, u: __m256i, x: __m256i) -> __m256i {
        unsafe {
            let pairs = _mm256_maddubs_epi16(u, x);
            _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
        }
    }
    #[inline(always)]
    unsafe fn prep8(w: __m256i) -> __m256i {
        unsafe { _mm256_abs_epi8(w) }
    }
    #[inline(always)]
    unsafe fn dot8(acc: __m256i, p: __m256i, w: __m256i, x: __m256i) -> __m256i {
        unsafe { Self::dot4(acc, p, _mm256_sign_epi8(x, w)) }
    }
}

/// AVX512-VNNI on 256-bit vectors: `vpdpbusd`. Q8_0 goes in as `w + 128`.
pub(super) struct Vnni;
impl Dot256 for Vnni {
    const Q8_SHIFT: i32 = 128;
    #[inline(always)]
    unsafe fn dot16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_dpwssd_epi32(acc, a, b) }
    }
    #[inline(always)]
    unsafe fn dot4(acc: __m256i, u: __m256i, x: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(acc, u, x) }
    }
    #[inline(always)]
    unsafe fn prep8(w: __m256i) -> __m256i {
        unsafe { _mm256_xor_si256(w, _mm256_set1_epi8(-128)) }
    }
    #[inline(always)]
    unsafe fn dot8(acc: __m256i, p: __m256i, _w: __m256i, x: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(acc, p, x) }
    }
}

/// 256-bit vectors, eight rows per group.
pub(super) struct Ymm<D>(PhantomData<D>);
impl<D: Dot256> Isa for Ymm<D> {
    type I = __m256i;
    type F = __m256;
    const LANES: usize = 8;
    const TILE: usize = 4;
    const Q8_SHIFT: i32 = D::Q8_SHIFT;
    #[inline(always)]
    unsafe fn zero_i() -> __m256i {
        unsafe { _mm256_setzero_si256() }
    }
    #[inline(always)]
    unsafe fn zero_f() -> __m256 {
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m256i {
        unsafe { _mm256_loadu_si256(p as *const __m256i) }
    }
    #[inline(always)]
    unsafe fn halves(p: *const u8) -> __m256 {
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
    #[inline(always)]
    unsafe fn nibbles(v: __m256i) -> (__m256i, __m256i) {
        unsafe {
            let low4 = _mm256_set1_epi8(0x0F);
            let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            (_mm256_and_si256(v, low4), hi)
        }
    }
    #[inline(always)]
    unsafe fn bcast(p: *const i8) -> __m256i {
        unsafe { _mm256_set1_epi32((p as *const i32).read_unaligned()) }
    }
    #[inline(always)]
    unsafe fn dot4(acc: __m256i, u: __m256i, x: __m256i) -> __m256i {
        unsafe { D::dot4(acc, u, x) }
    }
    #[inline(always)]
    unsafe fn prep8(w: __m256i) -> __m256i {
        unsafe { D::prep8(w) }
    }
    #[inline(always)]
    unsafe fn dot8(acc: __m256i, p: __m256i, w: __m256i, x: __m256i) -> __m256i {
        unsafe { D::dot8(acc, p, w, x) }
    }
    #[inline(always)]
    unsafe fn dot16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        unsafe { D::dot16(acc, a, b) }
    }
    #[inline(always)]
    unsafe fn split_u(v: __m256i) -> (__m256i, __m256i) {
        unsafe {
            (
                _mm256_and_si256(v, _mm256_set1_epi16(0xFF)),
                _mm256_srli_epi16(v, 8),
            )
        }
    }
    #[inline(always)]
    unsafe fn split_s(v: __m256i) -> (__m256i, __m256i) {
        unsafe {
            (
                _mm256_srai_epi16(_mm256_slli_epi16(v, 8), 8),
                _mm256_srai_epi16(v, 8),
            )
        }
    }
    #[inline(always)]
    unsafe fn sub(a: __m256i, s: i32) -> __m256i {
        unsafe { _mm256_sub_epi32(a, _mm256_set1_epi32(s)) }
    }
    #[inline(always)]
    unsafe fn add(a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_add_epi32(a, b) }
    }
    #[inline(always)]
    unsafe fn scaled(acc: __m256, dots: __m256i, dw: __m256, dx: f32) -> __m256 {
        unsafe {
            let scale = _mm256_mul_ps(dw, _mm256_set1_ps(dx));
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), scale, acc)
        }
    }
    #[inline(always)]
    unsafe fn fmadd(acc: __m256, o: __m256, s: f32) -> __m256 {
        unsafe { _mm256_fmadd_ps(o, _mm256_set1_ps(s), acc) }
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, s: f32) -> __m256 {
        unsafe { _mm256_mul_ps(a, _mm256_set1_ps(s)) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, a: __m256) {
        unsafe { _mm256_storeu_ps(p, a) }
    }
}

/// AVX512-VNNI on 512-bit vectors, sixteen rows per group. Q8_0 goes in as `w + 128`.
pub(super) struct Zmm;
impl Isa for Zmm {
    type I = __m512i;
    type F = __m512;
    const LANES: usize = 16;
    const TILE: usize = 8;
    const Q8_SHIFT: i32 = 128;
    #[inline(always)]
    unsafe fn zero_i() -> __m512i {
        unsafe { _mm512_setzero_si512() }
    }
    #[inline(always)]
    unsafe fn zero_f() -> __m512 {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m512i {
        unsafe { _mm512_loadu_si512(p as *const __m512i) }
    }
    #[inline(always)]
    unsafe fn halves(p: *const u8) -> __m512 {
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }
    #[inline(always)]
    unsafe fn nibbles(v: __m512i) -> (__m512i, __m512i) {
        unsafe {
            let low4 = _mm512_set1_epi8(0x0F);
            let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
            (_mm512_and_si512(v, low4), hi)
        }
    }
    #[inline(always)]
    unsafe fn bcast(p: *const i8) -> __m512i {
        unsafe { _mm512_set1_epi32((p as *const i32).read_unaligned()) }
    }
    #[inline(always)]
    unsafe fn dot4(acc: __m512i, u: __m512i, x: __m512i) -> __m512i {
        unsafe { _mm512_dpbusd_epi32(acc, u, x) }
    }
    #[inline(always)]
    unsafe fn prep8(w: __m512i) -> __m512i {
        unsafe { _mm512_xor_si512(w, _mm512_set1_epi8(-128)) }
    }
    #[inline(always)]
    unsafe fn dot8(acc: __m512i, p: __m512i, _w: __m512i, x: __m512i) -> __m512i {
        unsafe { _mm512_dpbusd_epi32(acc, p, x) }
    }
    #[inline(always)]
    unsafe fn dot16(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_dpwssd_epi32(acc, a, b) }
    }
    #[inline(always)]
    unsafe fn split_u(v: __m512i) -> (__m512i, __m512i) {
        unsafe {
            (
                _mm512_and_si512(v, _mm512_set1_epi16(0xFF)),
                _mm512_srli_epi16(v, 8),
            )
        }
    }
    #[inline(always)]
    unsafe fn split_s(v: __m512i) -> (__m512i, __m512i) {
        unsafe {
            (
                _mm512_srai_epi16(_mm512_slli_epi16(v, 8), 8),
                _mm512_srai_epi16(v, 8),
            )
        }
    }
    #[inline(always)]
    unsafe fn sub(a: __m512i, s: i32) -> __m512i {
        unsafe { _mm512_sub_epi32(a, _mm512_set1_epi32(s)) }
    }
    #[inline(always)]
    unsafe fn add(a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_add_epi32(a, b) }
    }
    #[inline(always)]
    unsafe fn scaled(acc: __m512, dots: __m512i, dw: __m512, dx: f32) -> __m512 {
        unsafe {
            let scale = _mm512_mul_ps(dw, _mm512_set1_ps(dx));
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), scale, acc)
        }
    }
    #[inline(always)]
    unsafe fn fmadd(acc: __m512, o: __m512, s: f32) -> __m512 {
        unsafe { _mm512_fmadd_ps(o, _mm512_set1_ps(s), acc) }
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, s: f32) -> __m512 {
        unsafe { _mm512_mul_ps(a, _mm512_set1_ps(s)) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, a: __m512) {
        unsafe { _mm512_storeu_ps(p, a) }
    }
}
