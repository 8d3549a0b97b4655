//! Integer products with quantized weights, the way llama.cpp computes them: each product first
//! quantizes its activation rows to integer blocks of 32 ([`QRows`]: levels, a scale `d` and
//! `s = d·Σq` per block, GGML's Q8_1 arithmetic), then every weight block meets an activation
//! block in integer multiply-adds (`Σ w·q` in i32, exact), scaled once per block pair in f32.
//! The activation levels are 8-bit (`i8`: llama.cpp's choice, u8 × i8 products) or 12-bit
//! levels held in 16-bit integers (`i16`: ±2047, 16 times finer, i16 × i16 products, half as
//! many per instruction). 12 bits, not 16: split as `q = 16·hi + lo` (`hi` a signed byte, `lo`
//! 0..15), a block of them meets a Q4 block in a single AMX tile product against `16·u` and `u`
//! (both bytes), the cost of 8-bit levels; 16-bit levels took two tile products and two sum
//! tiles per block. Every kernel uses the same levels, so their results stay identical.
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

/// An activation level type: `i8` or `i16`.
pub trait Level: Copy + Default + Send + Sync + 'static {
    /// The largest level (127, 2047).
    const MAX: f32;
    /// Whether the AMX kernel takes these levels split into two bytes (16-bit levels).
    const PLANES: bool;
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
    const PLANES: bool = false;
    const ORDER: [usize; 4] = [0, 1, 2, 3];
    fn level(v: f32) -> Self {
        v as i8
    }
    fn wide(self) -> i32 {
        self as i32
    }
}

impl Level for i16 {
    const MAX: f32 = 2047.0;
    const PLANES: bool = true;
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
    /// 16-bit levels split for the AMX kernel (empty when it is not used): per row and block
    /// of 32, the 32 high parts `q >> 4` (signed bytes), then the 32 low parts `q & 15`.
    #[cfg(target_arch = "x86_64")]
    planes: Vec<u8>,
    rows: usize,
    cols: usize,
}

/// One run of rows' share of a [`QRows`] being filled: their levels, per-block scales, sums
/// and (for the AMX kernel, else empty) their 16-bit levels split into bytes.
pub struct RowBlocks<'a, T> {
    q: &'a mut [T],
    d: &'a mut [f32],
    s: &'a mut [f32],
    sum: &'a mut [i32],
    /// The split levels ([`QRows`]' `planes`), 64 bytes per block; empty when not wanted.
    planes: &'a mut [u8],
}

/// Activation values per quantizing task: below about this many one thread does it all.
const QUANTIZE_TASK: usize = 1 << 12;

impl<T: Acts> QRows<T> {
    /// Quantizes row-major `x` (`[rows, cols]`, `cols` a multiple of 32), runs of rows in
    /// parallel when there are many.
    pub fn quantize(x: &[f32], rows: usize, cols: usize) -> Self {
        assert!(x.len() == rows * cols && cols.is_multiple_of(BLOCK));
        let nb = rows * cols / BLOCK;
        #[cfg(target_arch = "x86_64")]
        let (fast, planes) = {
            let fast = super::has_avx2_fma();
            (fast, fast && T::PLANES && rows >= 16 && x86::amx_ready())
        };
        let mut out = QRows {
            q: vec![T::default(); rows * cols],
            d: vec![0.0; nb],
            s: vec![0.0; nb],
            sum: vec![0; nb],
            #[cfg(target_arch = "x86_64")]
            planes: vec![0; if planes { 2 * rows * cols } else { 0 }],
            rows,
            cols,
        };
        let per_task = QUANTIZE_TASK.div_ceil(cols).clamp(1, rows.max(1));
        let (bq, bb) = (per_task * cols, per_task * cols / BLOCK);
        #[cfg(target_arch = "x86_64")]
        let planes = &mut out.planes[..];
        #[cfg(not(target_arch = "x86_64"))]
        let planes: &mut [u8] = &mut [];
        let mut tasks: Vec<(&[f32], RowBlocks<T>)> = x
            .chunks(bq)
            .zip(out.q.chunks_mut(bq))
            .zip(out.d.chunks_mut(bb))
            .zip(out.s.chunks_mut(bb))
            .zip(out.sum.chunks_mut(bb))
            .zip(plane_chunks(planes, 2 * bq))
            .map(|(((((x, q), d), s), sum), planes)| {
                (
                    x,
                    RowBlocks {
                        q,
                        d,
                        s,
                        sum,
                        planes,
                    },
                )
            })
            .collect();
        super::par_chunks(&mut tasks, 1, |_, t| {
            let (x, blocks) = &mut t[0];
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                unsafe { x86::quantize(x, blocks) };
                return;
            }
            quantize_blocks(x, blocks);
        });
        out
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Every row's share, to fill again (tests compare quantizers on it).
    #[cfg(test)]
    fn all_blocks(&mut self) -> RowBlocks<'_, T> {
        #[cfg(target_arch = "x86_64")]
        let planes = &mut self.planes[..];
        #[cfg(not(target_arch = "x86_64"))]
        let planes: &mut [u8] = &mut [];
        RowBlocks {
            q: &mut self.q,
            d: &mut self.d,
            s: &mut self.s,
            sum: &mut self.sum,
            planes,
        }
    }
}

/// Split levels in pieces of `len` bytes, then empty pieces (all empty when there are none;
/// zipped with the other parts' pieces, which end it).
fn plane_chunks(p: &mut [u8], len: usize) -> impl Iterator<Item = &mut [u8]> {
    p.chunks_mut(len)
        .chain(std::iter::repeat_with(<&mut [u8]>::default))
}

/// The portable quantizer (the reference for the x86 one); fills the byte planes too when
/// `out` has them.
#[inline(always)]
fn quantize_blocks<T: Level>(x: &[f32], out: &mut RowBlocks<T>) {
    // Adding and subtracting 1.5·2²³ rounds |v| ≤ 2²² to the nearest integer (ties to even), as
    // llama.cpp's SIMD quantizers do.
    const MAGIC: f32 = 12_582_912.0;
    let planes = !out.planes.is_empty();
    for (b, ((((xb, qb), d), s), total)) in x
        .chunks_exact(BLOCK)
        .zip(out.q.chunks_exact_mut(BLOCK))
        .zip(out.d.iter_mut())
        .zip(out.s.iter_mut())
        .zip(out.sum.iter_mut())
        .enumerate()
    {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let scale = amax / T::MAX;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (g, (qg, xg)) in qb.chunks_exact_mut(4).zip(xb.chunks_exact(4)).enumerate() {
            for (t, &v) in xg.iter().enumerate() {
                let r = T::level((v * inv + MAGIC) - MAGIC);
                qg[T::ORDER[t]] = r;
                sum += r.wide();
                if planes {
                    let at = 2 * b * BLOCK + 4 * g + t;
                    out.planes[at] = (r.wide() >> 4) as u8;
                    out.planes[at + BLOCK] = (r.wide() & 15) as u8;
                }
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
            data: vec![0u8; rows.div_ceil(group) * group * rb],
        };
        for r in 0..rows {
            for b in 0..nb {
                let src = &data[r * rb + b * layout.bytes..][..layout.bytes];
                let data = &mut w.data;
                places(&layout, group, cols, r, b, |at, len, into| {
                    data[into..into + len].copy_from_slice(&src[at..at + len])
                });
            }
        }
        w
    }

    /// The rows of `parts` one after another (all for the same kernel and block type): their
    /// data side by side when each part is whole groups, else regrouped row by row.
    pub fn concat(parts: &[&Interleaved]) -> Option<Self> {
        let first = parts.first()?;
        let same = |p: &&Interleaved| {
            p.layout == first.layout && p.cols == first.cols && p.kernel == first.kernel
        };
        if !parts.iter().all(same) {
            return None;
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        if parts
            .iter()
            .all(|p| p.rows.is_multiple_of(p.kernel.lanes()))
        {
            return Some(Interleaved {
                rows,
                data: parts.iter().flat_map(|p| p.data.iter().copied()).collect(),
                ..(*first).clone_empty()
            });
        }
        let blocks: Vec<u8> = parts
            .iter()
            .flat_map(|p| (0..p.rows).flat_map(|r| p.row(r)))
            .collect();
        Some(Interleaved::new(
            first.layout,
            rows,
            first.cols,
            &blocks,
            first.kernel,
        ))
    }

    /// The same shape and kernel with no data.
    fn clone_empty(&self) -> Self {
        Interleaved {
            data: Vec::new(),
            ..*self
        }
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
            places(l, self.kernel.lanes(), self.cols, r, b, |at, len, from| {
                dst[at..at + len].copy_from_slice(&self.data[from..from + len])
            });
        }
        out
    }

    /// `x · Wᵀ` for quantized activation rows: row-major `[x.rows, rows]`.
    pub fn matmul_t<T: Acts>(&self, x: &QRows<T>) -> Vec<f32> {
        self.product(x, false)
    }

    /// `silu(x · Gᵀ) · (x · Uᵀ)` where this matrix is `[G; U]`, two halves of whole groups
    /// (SwiGLU's gate and up projections side by side): `[x.rows, rows / 2]`, the gate and up
    /// columns of each task combined before its part is stored. `None` if the halves are not
    /// whole groups.
    pub fn matmul_t_swiglu<T: Acts>(&self, x: &QRows<T>) -> Option<Vec<f32>> {
        let half = self.rows / 2;
        (self.rows.is_multiple_of(2) && half.is_multiple_of(self.kernel.lanes()))
            .then(|| self.product(x, true))
    }

    /// [`Self::matmul_t`], or with `swiglu` [`Self::matmul_t_swiglu`]'s product.
    fn product<T: Acts>(&self, x: &QRows<T>, swiglu: bool) -> Vec<f32> {
        assert_eq!(x.cols, self.cols, "int8 product: activation width");
        let (m, g) = (x.rows, self.kernel.lanes());
        // Output columns, and the groups that make them (gate groups; the up group of gate
        // group i is i + groups).
        let n = if swiglu { self.rows / 2 } else { self.rows };
        let groups = n.div_ceil(g);
        // About 32 tasks per product, whole groups each, but at least ~128K multiply-adds per
        // task: below that, waking the pool's threads costs more than it saves.
        let per_group = m * g * self.cols * if swiglu { 2 } else { 1 };
        let per_task = groups
            .div_ceil(32)
            .max((1 << 17) / per_group)
            .clamp(1, groups);
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
            if swiglu {
                let mut up = vec![0f32; m * width];
                for group in g0..g1 {
                    self.kernel
                        .group(self, group + groups, x, &mut up[(group - g0) * g..], width);
                }
                crate::model::host_ops::swiglu_in_place(&mut part, &up);
            }
            part
        });
        // The parts side by side, runs of rows in parallel, each output value written once.
        let mut out: Vec<std::mem::MaybeUninit<f32>> = Vec::with_capacity(m * n);
        // SAFETY: MaybeUninit needs no initialization; every element is written below.
        unsafe { out.set_len(m * n) };
        let rows_per_task = (1usize << 14).div_ceil(n).clamp(1, m.max(1));
        super::par_chunks(&mut out, rows_per_task * n, |task, rows| {
            for (r, row) in rows.chunks_mut(n).enumerate() {
                let i = task * rows_per_task + r;
                for (t, part) in parts.iter().enumerate() {
                    let c0 = t * per_task * g;
                    let width = part.len() / m;
                    let keep = width.min(n - c0);
                    for (o, &v) in row[c0..c0 + keep].iter_mut().zip(&part[i * width..]) {
                        o.write(v);
                    }
                }
            }
        });
        // SAFETY: every one of the m·n elements was written (each row gets every part's
        // columns, the parts cover 0..n); MaybeUninit<f32> has f32's layout.
        unsafe {
            let mut out = std::mem::ManuallyDrop::new(out);
            Vec::from_raw_parts(out.as_mut_ptr() as *mut f32, out.len(), out.capacity())
        }
    }

    fn group_blocks(&self, g: usize) -> &[u8] {
        let gb = self.cols / BLOCK * self.kernel.lanes() * self.layout.bytes;
        &self.data[g * gb..(g + 1) * gb]
    }
}

/// Calls `f(offset in the GGUF block, length, offset in the interleaved data)` for each piece
/// of row `r`'s block `b` (groups of `g` rows, `cols` values a row): its scale, its minimum and
/// each 4-byte column of levels.
#[inline(always)]
fn places(
    l: &Layout,
    g: usize,
    cols: usize,
    r: usize,
    b: usize,
    mut f: impl FnMut(usize, usize, usize),
) {
    let (group, j) = (r / g, r % g);
    let base = (group * (cols / BLOCK) + b) * g * l.bytes;
    f(0, 2, base + 2 * j);
    if l.has_min {
        f(2, 2, base + 2 * g + 2 * j);
    }
    let levels = base + g * l.levels_at;
    for c in 0..(l.bytes - l.levels_at) / 4 {
        f(l.levels_at + 4 * c, 4, levels + (c * g + j) * 4);
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

    /// Its name (`avx512-vnni`, `avx512-vnni+amx` where AMX tiles take 16 rows or more,
    /// `avx512-vnni-256`, `avx2`, `portable`).
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni512 if x86::amx_ready() => "avx512-vnni+amx",
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
    let lanes = w.kernel.lanes();
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
mod x86;

#[cfg(test)]
mod tests;
