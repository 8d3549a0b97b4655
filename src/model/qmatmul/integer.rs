//! Integer products with quantized weights, the way llama.cpp computes them: each product first
//! quantizes its activation rows to integer blocks of 32 ([`QRows`]: levels, a scale `d` and
//! `s = d·Σq` per block, GGML's Q8_1 arithmetic), then every weight block meets an activation
//! block in integer multiply-adds (`Σ w·q` in i32, exact), scaled once per block pair in f32.
//! The activation levels are 8-bit (`i8`: llama.cpp's choice, u8 × i8 products) or 16-bit
//! (`i16`: 256 times finer, i16 × i16 products, half as many per instruction).
//!
//! The weights are kept [`Interleaved`]: a group of rows side by side, four level bytes of each
//! row next to each other, so that one integer multiply-add (AVX512-VNNI `vpdpbusd`/`vpdpwssd`
//! on 512-bit vectors: 16 rows; on 256-bit vectors, or AVX2's `vpmaddubsw`/`vpmaddwd`: 8 rows)
//! adds products to each row of the group, the activation's levels broadcast to all lanes. The
//! block scales are then a vector too, so the f32 work per block is one convert and two
//! multiply-adds for the whole group. The same layout serves decoding (one activation row) and
//! prefill (tiles of up to four rows share each unpacked weight vector).
//!
//! Per block the result is `d_w·d_x·Σ uᵢqᵢ + o_w·s_x`, `u` the stored levels and `o_w` the
//! block's offset (Q4_1's minimum, Q4_0's `−8·d_w`; see
//! [`crate::weights::blocks::Layout::offset`]). With 8-bit activations Q8_0's signed levels go
//! in as `|w|` against `q·sign(w)` (AVX2), or as `w + 128` with `128·Σq` taken off the integer
//! sum (VNNI), so its integer sum is exact too. The portable kernel is the reference for the
//! SIMD ones.

use crate::weights::blocks::{BLOCK, Layout, f16_to_f32};

/// Activation rows that share one pass over a group's blocks.
const TILE: usize = 4;

/// An activation level type: `i8` or `i16`.
pub trait Level: Copy + Default + Send + Sync + 'static {
    /// The largest level (127, 32767).
    const MAX: f32;
    /// Where value `t` of each 4-value group is stored: in order for `i8`; `[0, 2, 1, 3]` for
    /// `i16`, so that one 32-bit broadcast holds the pair that meets a lane's even (or odd)
    /// weight bytes.
    const ORDER: [usize; 4];
    /// A rounded value in range as a level.
    fn level(v: f32) -> Self;
    /// The level as i32.
    fn wide(self) -> i32;
}

impl Level for i8 {
    const MAX: f32 = 127.0;
    const ORDER: [usize; 4] = [0, 1, 2, 3];
    fn level(v: f32) -> Self {
        v as i8
    }
    fn wide(self) -> i32 {
        self as i32
    }
}

impl Level for i16 {
    const MAX: f32 = 32767.0;
    const ORDER: [usize; 4] = [0, 2, 1, 3];
    fn level(v: f32) -> Self {
        v as i16
    }
    fn wide(self) -> i32 {
        self as i32
    }
}

/// Activation rows quantized to blocks of 32 levels `T` (GGML's Q8_1 arithmetic: scale
/// `max|x| / MAX`, levels rounded to nearest, and `s = d·Σq`).
#[derive(Debug, Clone)]
pub struct QRows<T> {
    q: Vec<T>,
    d: Vec<f32>,
    s: Vec<f32>,
    /// Per block `Σq` (exact), for the 8-bit Q8_0 kernel's shift.
    sum: Vec<i32>,
    rows: usize,
    cols: usize,
}

impl<T: Acts> QRows<T> {
    /// Quantizes row-major `x` (`[rows, cols]`, `cols` a multiple of 32).
    pub fn quantize(x: &[f32], rows: usize, cols: usize) -> Self {
        assert!(x.len() == rows * cols && cols.is_multiple_of(BLOCK));
        let nb = rows * cols / BLOCK;
        let mut out = QRows {
            q: vec![T::default(); rows * cols],
            d: vec![0.0; nb],
            s: vec![0.0; nb],
            sum: vec![0; nb],
            rows,
            cols,
        };
        #[cfg(target_arch = "x86_64")]
        if super::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            unsafe { x86::quantize(x, &mut out) };
            return out;
        }
        quantize_blocks(x, &mut out);
        out
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// The portable quantizer (the reference for the x86 one).
#[inline(always)]
fn quantize_blocks<T: Level>(x: &[f32], out: &mut QRows<T>) {
    // Adding and subtracting 1.5·2²³ rounds |v| ≤ 2²² to the nearest integer (ties to even), as
    // llama.cpp's SIMD quantizers do.
    const MAGIC: f32 = 12_582_912.0;
    for ((((xb, qb), d), s), total) in x
        .chunks_exact(BLOCK)
        .zip(out.q.chunks_exact_mut(BLOCK))
        .zip(&mut out.d)
        .zip(&mut out.s)
        .zip(&mut out.sum)
    {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let scale = amax / T::MAX;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (qg, xg) in qb.chunks_exact_mut(4).zip(xb.chunks_exact(4)) {
            for (t, &v) in xg.iter().enumerate() {
                let r = T::level((v * inv + MAGIC) - MAGIC);
                qg[T::ORDER[t]] = r;
                sum += r.wide();
            }
        }
        *d = scale;
        *s = scale * sum as f32;
        *total = sum;
    }
}

/// A `[rows, cols]` matrix of Q8_0 / Q4_0 / Q4_1 blocks for one [`Kernel`], its rows
/// interleaved in groups of the kernel's lane count (padded with zero blocks to a whole group).
/// Per group and block: the rows' f16 scales, their f16 minimums (Q4_1), then the level bytes
/// in 4-byte columns, row after row within a column.
#[derive(Debug, Clone)]
pub struct Interleaved {
    layout: Layout,
    rows: usize,
    cols: usize,
    kernel: Kernel,
    group: usize,
    data: Vec<u8>,
}

impl Interleaved {
    /// Interleaves row-major blocks (`data`: `rows` rows of `cols / 32` blocks) for `kernel`.
    pub fn new(layout: Layout, rows: usize, cols: usize, data: &[u8], kernel: Kernel) -> Self {
        let group = kernel.lanes();
        let nb = cols / BLOCK;
        let rb = nb * layout.bytes;
        debug_assert_eq!(data.len(), rows * rb);
        let mut w = Interleaved {
            layout,
            rows,
            cols,
            kernel,
            group,
            data: vec![0u8; rows.div_ceil(group) * group * rb],
        };
        for r in 0..rows {
            for b in 0..nb {
                let src = &data[r * rb + b * layout.bytes..][..layout.bytes];
                for (at, len, into) in w.places(r, b) {
                    w.data[into..into + len].copy_from_slice(&src[at..at + len]);
                }
            }
        }
        w
    }

    /// Where the bytes of row `r`'s block `b` go: (offset in the GGUF block, length, offset in
    /// `data`) for the scale, the minimum and each 4-byte column of levels.
    fn places(&self, r: usize, b: usize) -> Vec<(usize, usize, usize)> {
        let (l, g) = (&self.layout, self.group);
        let (group, j) = (r / g, r % g);
        let base = (group * (self.cols / BLOCK) + b) * g * l.bytes;
        let mut p = vec![(0, 2, base + 2 * j)];
        if l.has_min {
            p.push((2, 2, base + 2 * g + 2 * j));
        }
        let levels = base + g * l.levels_at;
        for c in 0..(l.bytes - l.levels_at) / 4 {
            p.push((l.levels_at + 4 * c, 4, levels + (c * g + j) * 4));
        }
        p
    }

    /// Bytes in memory (padding rows included).
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Row `r`'s blocks in GGUF's own layout (for dequantization and embedding lookups).
    pub fn row(&self, r: usize) -> Vec<u8> {
        let l = &self.layout;
        let mut out = vec![0u8; self.cols / BLOCK * l.bytes];
        for (b, dst) in out.chunks_exact_mut(l.bytes).enumerate() {
            for (at, len, from) in self.places(r, b) {
                dst[at..at + len].copy_from_slice(&self.data[from..from + len]);
            }
        }
        out
    }

    /// `x · Wᵀ` for quantized activation rows: row-major `[x.rows, rows]`.
    pub fn matmul_t<T: Acts>(&self, x: &QRows<T>) -> Vec<f32> {
        assert_eq!(x.cols, self.cols, "int8 product: activation width");
        let (m, n, g) = (x.rows, self.rows, self.group);
        let groups = n.div_ceil(g);
        // About 32 tasks per product, whole groups each.
        let per_task = groups.div_ceil(32).max(1);
        let tasks = groups.div_ceil(per_task);
        let parts: Vec<Vec<f32>> = super::par_map(tasks, |t| {
            let g0 = t * per_task;
            let g1 = (g0 + per_task).min(groups);
            let width = (g1 - g0) * g;
            let mut part = vec![0f32; m * width];
            for group in g0..g1 {
                self.kernel
                    .group(self, group, x, &mut part[(group - g0) * g..], width);
            }
            part
        });
        let mut out = vec![0f32; m * n];
        for (t, part) in parts.iter().enumerate() {
            let c0 = t * per_task * g;
            let width = part.len() / m;
            let keep = width.min(n - c0);
            for i in 0..m {
                out[i * n + c0..i * n + c0 + keep]
                    .copy_from_slice(&part[i * width..i * width + keep]);
            }
        }
        out
    }

    fn group_blocks(&self, g: usize) -> &[u8] {
        let gb = self.cols / BLOCK * self.group * self.layout.bytes;
        &self.data[g * gb..(g + 1) * gb]
    }
}

/// The integer kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX512-VNNI `vpdpbusd` on 512-bit vectors (16 rows per group).
    Vnni512,
    /// AVX512-VNNI `vpdpbusd` on 256-bit vectors (8 rows per group).
    Vnni256,
    /// AVX2 `vpmaddubsw` + `vpmaddwd` (8 rows per group).
    Avx2,
    /// Plain Rust (the reference; 8 rows per group).
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU runs (std caches the feature detection).
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = super::has_avx2_fma() && is_x86_feature_detected!("f16c");
            if avx2
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
            {
                return Kernel::Vnni512;
            }
            if avx2 {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }

    /// Its name (`avx512-vnni`, `avx512-vnni-256`, `avx2`, `portable`).
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Vnni512 => "avx512-vnni",
            Kernel::Vnni256 => "avx512-vnni-256",
            Kernel::Avx2 => "avx2",
            Kernel::Portable => "portable",
        }
    }

    /// Weight rows per interleaved group: the kernel's i32 lanes.
    pub fn lanes(self) -> usize {
        match self {
            Kernel::Vnni512 => 16,
            _ => 8,
        }
    }

    /// Fills `out[i·stride + j]` with row `j` of group `g` dotted with activation row `i`.
    fn group<T: Acts>(
        self,
        w: &Interleaved,
        g: usize,
        x: &QRows<T>,
        out: &mut [f32],
        stride: usize,
    ) {
        match self {
            // SAFETY: detect() found the features each function enables (a kernel is only made
            // by detect(), or in tests after it).
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni512 => unsafe { x86::group_zmm(w, g, x, out, stride) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni256 => unsafe { x86::group_vnni(w, g, x, out, stride) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { x86::group_avx2(w, g, x, out, stride) },
            _ => portable_group(w, g, x, out, stride),
        }
    }
}

/// The activation levels the kernels take: [`Level`] plus, on x86-64, their SIMD block dot.
#[cfg(target_arch = "x86_64")]
pub trait Acts: Level + x86::BlockDot {}
#[cfg(target_arch = "x86_64")]
impl<T: Level + x86::BlockDot> Acts for T {}
/// The activation levels the kernels take.
#[cfg(not(target_arch = "x86_64"))]
pub trait Acts: Level {}
#[cfg(not(target_arch = "x86_64"))]
impl<T: Level> Acts for T {}

/// The reference kernel: the same per-block formula in scalar arithmetic.
fn portable_group<T: Level>(
    w: &Interleaved,
    g: usize,
    x: &QRows<T>,
    out: &mut [f32],
    stride: usize,
) {
    let l = &w.layout;
    let nb = w.cols / BLOCK;
    let blocks = w.group_blocks(g);
    let lanes = w.group;
    let bb = lanes * l.bytes;
    // Activation value `v` of a block, wherever its level type stores it.
    let at = |v: usize| v / 4 * 4 + T::ORDER[v % 4];
    for i in 0..x.rows {
        let xq = &x.q[i * w.cols..(i + 1) * w.cols];
        for j in 0..lanes {
            let mut acc = 0f32;
            for b in 0..nb {
                let blk = &blocks[b * bb..(b + 1) * bb];
                let half = |at: usize| f16_to_f32(u16::from_le_bytes([blk[at], blk[at + 1]]));
                let d = half(2 * j);
                let offset = if l.has_min {
                    half(2 * lanes + 2 * j)
                } else {
                    -l.bias * d
                };
                let levels = &blk[lanes * l.levels_at..];
                let xb = &xq[b * BLOCK..(b + 1) * BLOCK];
                let mut dot = 0i64;
                for c in 0..(l.bytes - l.levels_at) / 4 {
                    for t in 0..4 {
                        let byte = levels[(c * lanes + j) * 4 + t];
                        let (lo, hi) = (xb[at(4 * c + t)].wide() as i64, 16 + 4 * c + t);
                        if l.bits == 8 {
                            dot += byte as i8 as i64 * lo;
                        } else {
                            dot += (byte & 0xF) as i64 * lo;
                            dot += (byte >> 4) as i64 * xb[at(hi)].wide() as i64;
                        }
                    }
                }
                let k = i * nb + b;
                acc += d * x.d[k] * dot as f32 + offset * x.s[k];
            }
            out[i * stride + j] = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The SIMD kernels: one generic body ([`tile`]) over an instruction set's vector
    //! operations ([`Isa`]): 256-bit AVX2, 256-bit AVX512-VNNI, 512-bit AVX512-VNNI.

    use core::arch::x86_64::*;
    use core::marker::PhantomData;

    use super::{Interleaved, Level, QRows, TILE};
    use crate::weights::blocks::BLOCK;

    /// The vector operations a kernel needs; one i32 lane per weight row of a group.
    pub trait Isa {
        /// Integer vector.
        type I: Copy;
        /// f32 vector.
        type F: Copy;
        /// Lanes: rows per group.
        const LANES: usize;
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
            unsafe { (_mm256_and_si256(v, _mm256_set1_epi16(0xFF)), _mm256_srli_epi16(v, 8)) }
        }
        #[inline(always)]
        unsafe fn split_s(v: __m256i) -> (__m256i, __m256i) {
            unsafe { (_mm256_srai_epi16(_mm256_slli_epi16(v, 8), 8), _mm256_srai_epi16(v, 8)) }
        }
        #[inline(always)]
        unsafe fn sub(a: __m256i, s: i32) -> __m256i {
            unsafe { _mm256_sub_epi32(a, _mm256_set1_epi32(s)) }
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
            unsafe { (_mm512_and_si512(v, _mm512_set1_epi16(0xFF)), _mm512_srli_epi16(v, 8)) }
        }
        #[inline(always)]
        unsafe fn split_s(v: __m512i) -> (__m512i, __m512i) {
            unsafe { (_mm512_srai_epi16(_mm512_slli_epi16(v, 8), 8), _mm512_srai_epi16(v, 8)) }
        }
        #[inline(always)]
        unsafe fn sub(a: __m512i, s: i32) -> __m512i {
            unsafe { _mm512_sub_epi32(a, _mm512_set1_epi32(s)) }
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

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn group_zmm<T: BlockDot>(
        w: &Interleaved,
        g: usize,
        x: &QRows<T>,
        out: &mut [f32],
        stride: usize,
    ) {
        unsafe { group::<Zmm, T>(w, g, x, out, stride) }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn group_vnni<T: BlockDot>(
        w: &Interleaved,
        g: usize,
        x: &QRows<T>,
        out: &mut [f32],
        stride: usize,
    ) {
        unsafe { group::<Ymm<Vnni>, T>(w, g, x, out, stride) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn group_avx2<T: BlockDot>(
        w: &Interleaved,
        g: usize,
        x: &QRows<T>,
        out: &mut [f32],
        stride: usize,
    ) {
        unsafe { group::<Ymm<Avx2>, T>(w, g, x, out, stride) }
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
        unsafe fn quantize(x: &[f32], out: &mut QRows<Self>);
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
            unsafe {
                if bits == 4 {
                    for col in 0..4 {
                        let (lo, hi) = V::nibbles(V::load(lv.add(4 * lanes * col)));
                        for (d, xc) in dots.iter_mut().zip(x) {
                            *d = V::dot4(*d, lo, V::bcast(xc.add(4 * col)));
                            *d = V::dot4(*d, hi, V::bcast(xc.add(16 + 4 * col)));
                        }
                    }
                } else {
                    for col in 0..8 {
                        let v = V::load(lv.add(4 * lanes * col));
                        let p = V::prep8(v);
                        for (d, xc) in dots.iter_mut().zip(x) {
                            *d = V::dot8(*d, p, v, V::bcast(xc.add(4 * col)));
                        }
                    }
                }
            }
        }
        unsafe fn quantize(x: &[f32], out: &mut QRows<i8>) {
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
                        for (d, &xc) in dots.iter_mut().zip(&x) {
                            *d = V::dot16(*d, le, pair(xc, 4 * col));
                            *d = V::dot16(*d, lo, pair(xc, 4 * col + 2));
                            *d = V::dot16(*d, he, pair(xc, 16 + 4 * col));
                            *d = V::dot16(*d, ho, pair(xc, 16 + 4 * col + 2));
                        }
                    }
                } else {
                    for col in 0..8 {
                        let (e, o) = V::split_s(V::load(lv.add(4 * lanes * col)));
                        for (d, &xc) in dots.iter_mut().zip(&x) {
                            *d = V::dot16(*d, e, pair(xc, 4 * col));
                            *d = V::dot16(*d, o, pair(xc, 4 * col + 2));
                        }
                    }
                }
            }
        }
        unsafe fn quantize(x: &[f32], out: &mut QRows<i16>) {
            unsafe { quantize_auto(x, out) }
        }
    }

    /// The portable quantizer compiled for AVX2, where it vectorizes.
    #[target_feature(enable = "avx2,fma")]
    fn quantize_auto<T: Level>(x: &[f32], out: &mut QRows<T>) {
        super::quantize_blocks(x, out)
    }

    /// The quantizer for this CPU.
    pub(super) unsafe fn quantize<T: Level>(x: &[f32], out: &mut QRows<T>)
    where
        T: BlockDot,
    {
        unsafe { T::quantize(x, out) }
    }

    /// Every activation row against group `g`, [`TILE`] rows at a time.
    #[inline(always)]
    unsafe fn group<V: Isa, T: BlockDot>(
        w: &Interleaved,
        g: usize,
        x: &QRows<T>,
        out: &mut [f32],
        stride: usize,
    ) {
        assert_eq!(w.group, V::LANES, "interleaved for another kernel");
        let blocks = w.group_blocks(g);
        let mut i = 0;
        unsafe {
            while i + TILE <= x.rows {
                tile::<V, T, TILE>(w, blocks, x, i, &mut out[i * stride..], stride);
                i += TILE;
            }
            match x.rows - i {
                1 => tile::<V, T, 1>(w, blocks, x, i, &mut out[i * stride..], stride),
                2 => tile::<V, T, 2>(w, blocks, x, i, &mut out[i * stride..], stride),
                3 => tile::<V, T, 3>(w, blocks, x, i, &mut out[i * stride..], stride),
                _ => {}
            }
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
                let dw = V::halves(blk);
                let offset = if l.has_min {
                    Some(V::halves(blk.add(2 * lanes)))
                } else if l.bits == 4 {
                    Some(V::mul(dw, -l.bias))
                } else {
                    None
                };
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

    /// [`super::quantize_blocks`] for 8-bit levels with AVX2 intrinsics: per block, the
    /// largest magnitude by a max tree, levels rounded to nearest even (`vcvtps2dq`), packed to
    /// bytes.
    #[target_feature(enable = "avx2,fma")]
    fn quantize_i8(x: &[f32], out: &mut QRows<i8>) {
        let sign = _mm256_set1_ps(-0.0);
        for (b, xb) in x.chunks_exact(BLOCK).enumerate() {
            // SAFETY: `xb` holds 32 floats; the 32 stored bytes are block b's (q has one byte
            // per value of x).
            unsafe {
                let p = xb.as_ptr();
                let v = [
                    _mm256_loadu_ps(p),
                    _mm256_loadu_ps(p.add(8)),
                    _mm256_loadu_ps(p.add(16)),
                    _mm256_loadu_ps(p.add(24)),
                ];
                let a = v.map(|v| _mm256_andnot_ps(sign, v));
                let m = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
                let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
                let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
                let m1 = _mm_max_ss(m2, _mm_movehdup_ps(m2));
                let amax = _mm_cvtss_f32(m1);
                let d = amax / 127.0;
                let inv = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
                let q = v.map(|v| _mm256_cvtps_epi32(_mm256_mul_ps(v, inv)));
                // Σq: the i32 lanes added, then horizontally.
                let s8 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
                let s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
                let s2 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b01_00_11_10));
                let sum = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0b00_00_00_01)));
                // i32 → i16 → i8 packs work per 128-bit lane: undo their interleaving.
                let w16a = _mm256_packs_epi32(q[0], q[1]);
                let w16b = _mm256_packs_epi32(q[2], q[3]);
                let w8 = _mm256_packs_epi16(w16a, w16b);
                let fixed = _mm256_permutevar8x32_epi32(w8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                _mm256_storeu_si256(out.q.as_mut_ptr().add(b * BLOCK) as *mut __m256i, fixed);
                out.d[b] = d;
                out.s[b] = d * sum as f32;
                out.sum[b] = sum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::blocks;
    use crate::weights::quant::{self, GgmlType};

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

    #[test]
    fn activation_blocks_follow_q8_1() {
        let x = values(64, 3);
        let q = QRows::<i8>::quantize(&x, 2, 32);
        for b in 0..2 {
            let xb = &x[b * 32..(b + 1) * 32];
            let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            assert_eq!(q.d[b], amax / 127.0);
            let sum: i32 = q.q[b * 32..(b + 1) * 32].iter().map(|&v| v as i32).sum();
            assert_eq!(q.s[b], q.d[b] * sum as f32);
            for (v, &l) in xb.iter().zip(&q.q[b * 32..]) {
                assert!((v / q.d[b] - l as f32).abs() <= 0.5 + 1e-4);
            }
        }
        // A zero block stays zero, with no division by zero.
        let z = QRows::<i8>::quantize(&[0.0; 32], 1, 32);
        assert!(z.q.iter().all(|&v| v == 0) && z.d[0] == 0.0 && z.s[0] == 0.0);
    }

    /// The kernels this CPU runs, the reference first.
    fn kernels() -> Vec<Kernel> {
        let mut k = vec![Kernel::Portable];
        match Kernel::detect() {
            Kernel::Vnni512 => k.extend([Kernel::Vnni512, Kernel::Vnni256, Kernel::Avx2]),
            Kernel::Avx2 => k.push(Kernel::Avx2),
            _ => {}
        }
        k
    }

    #[test]
    fn interleaving_keeps_every_row() {
        let (n, k) = (21, 96);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
            let l = blocks::layout(ty).unwrap();
            let data = quant::quantize(ty, &values(n * k, 7)).unwrap();
            for kernel in [Kernel::Portable, Kernel::Vnni512] {
                let w = Interleaved::new(l, n, k, &data, kernel);
                let g = kernel.lanes();
                assert_eq!(w.bytes(), n.div_ceil(g) * g * k / BLOCK * l.bytes);
                let rb = k / BLOCK * l.bytes;
                for r in 0..n {
                    assert_eq!(w.row(r), data[r * rb..(r + 1) * rb], "{ty:?} row {r}");
                }
            }
        }
    }

    fn same_quantization<T: Acts + PartialEq + std::fmt::Debug>(x: &[f32]) {
        let fast = QRows::<T>::quantize(x, 1, x.len());
        let mut slow = fast.clone();
        quantize_blocks(x, &mut slow);
        assert_eq!(fast.q, slow.q);
        assert_eq!(fast.d, slow.d);
        assert_eq!(fast.s, slow.s);
        assert_eq!(fast.sum, slow.sum);
    }

    #[test]
    fn simd_quantizer_equals_the_portable_one() {
        let x: Vec<f32> = values(32 * 40, 5)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1 + i / 32) as f32 * 0.37)
            .chain([0.0; 32])
            .collect();
        same_quantization::<i8>(&x);
        same_quantization::<i16>(&x);
    }

    /// Every kernel this CPU has equals the reference up to f32 summation order, and the
    /// reference equals the f64 product of the dequantized weights and activations, for both
    /// activation level types.
    fn kernels_equal_the_exact_product<T: Acts>() {
        let (n, k) = (37, 160);
        let at = |v: usize| v / 4 * 4 + T::ORDER[v % 4];
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
            let l = blocks::layout(ty).unwrap();
            let data = quant::quantize(ty, &values(n * k, 11)).unwrap();
            let dense = quant::dequantize(ty, &data);
            for m in [1, 2, 3, 4, 5, 11] {
                let x = values(m * k, m as u32);
                let xq = QRows::<T>::quantize(&x, m, k);
                let want: Vec<f64> = (0..m * n)
                    .map(|o| {
                        let (i, r) = (o / n, o % n);
                        (0..k)
                            .map(|c| {
                                let d = xq.d[(i * k + c) / BLOCK] as f64;
                                let q = xq.q[i * k + at(c % BLOCK) + c / BLOCK * BLOCK].wide();
                                q as f64 * d * dense[r * k + c] as f64
                            })
                            .sum()
                    })
                    .collect();
                let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
                for kernel in kernels() {
                    let w = Interleaved::new(l, n, k, &data, kernel);
                    let got = w.matmul_t(&xq);
                    assert_eq!(got.len(), m * n);
                    for (o, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (*g as f64 - w).abs() <= 2e-6 * scale,
                            "{ty:?} {kernel:?} m={m} output {o}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn kernels_equal_the_exact_integer_product() {
        kernels_equal_the_exact_product::<i8>();
        kernels_equal_the_exact_product::<i16>();
    }
}
