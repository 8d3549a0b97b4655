//! Dense f32 `x · W` with the weight packed once, at load, into column panels: taskvec's own
//! matrix product for the browser's threaded build. There the build has WebAssembly's relaxed
//! SIMD, whose `f32x4.relaxed_madd` is one fused multiply-add on CPUs with FMA, where gemm's
//! simd128 microkernel (the product flex calls) does a multiply and an add. Elsewhere flex's
//! product stays in use ([`preferred`]); the portable kernel here is the reference the tests
//! check the SIMD one against.
//!
//! Blocking: the output is split into tasks of [`ROWS_PER_TASK`] rows (run in parallel); a task
//! walks depth blocks of [`KC`], then the panels of [`NR`] columns (`KC × NR` values, in L1), then
//! tiles of [`MR`] rows, keeping an `MR × NR` tile of sums in registers across the block.

use super::par::par_chunks;

/// f32x4 vectors per tile row (see [`MR`]).
const V: usize = 2;
/// Columns per panel.
pub const NR: usize = 4 * V;
/// Rows per register tile. Measured in Chromium on a 2-core Xeon (the vision encoder's MLP
/// product, 2 threads): 4 × 2 vectors 83 GFLOP/s, 3 × 3 73, 4 × 3 63, 5 × 2 53, 6 × 2 56;
/// tiles that fill the 16 x86 vector registers lose (V8 keeps some as scratch and spills).
pub const MR: usize = 4;
/// Depth per block: a `KC × NR` panel slice is 8 KiB (128: 65 GFLOP/s, 512: 80).
pub const KC: usize = 256;
/// Output rows per parallel task (a multiple of [`MR`]).
const ROWS_PER_TASK: usize = 8 * MR;

/// Whether this build multiplies dense f32 matrices with [`PanelMatrix`] (the threaded browser
/// build, which has relaxed SIMD) instead of flex's product.
pub const fn preferred() -> bool {
    cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd"))
}

/// A `[in, out]` f32 weight stored as panels of [`NR`] output columns, each `[in, NR]` row-major,
/// the last panel padded with zero columns.
#[derive(Debug)]
pub struct PanelMatrix {
    k: usize,
    n: usize,
    panels: Vec<f32>,
}

impl PanelMatrix {
    /// Packs the PyTorch `[out, in]` matrix `w` (`n` rows of `k` values).
    pub fn from_out_in(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight of {n}×{k} has {} values", w.len());
        Self::from_rows(w, n, k, k)
    }

    /// Packs `n` output rows of `k` values each, row `j` at `w[j · ld ..]` (`ld ≥ k`): an
    /// `[out, in]` matrix that is a column slice of a wider one (an attention head's keys).
    pub fn from_rows(w: &[f32], n: usize, k: usize, ld: usize) -> Self {
        assert!(
            n == 0 || (ld >= k && w.len() >= (n - 1) * ld + k),
            "{n} rows of {k}, {ld} apart"
        );
        Self::from_row_fn(n, k, |j, row| row.copy_from_slice(&w[j * ld..j * ld + k]))
    }

    /// Packs `n` output rows of `k` values each, `fill(j, row)` writing row `j` (`k` values,
    /// a buffer that stays in cache) before it is spread into its panel: a quantized matrix
    /// dequantized straight into panels.
    pub fn from_row_fn(n: usize, k: usize, mut fill: impl FnMut(usize, &mut [f32])) -> Self {
        let np = n.div_ceil(NR);
        let mut panels = vec![0f32; np * k * NR];
        let mut row = vec![0f32; k];
        for j in 0..n {
            fill(j, &mut row);
            let panel = &mut panels[(j / NR) * k * NR + j % NR..];
            for (kk, &v) in row.iter().enumerate() {
                panel[kk * NR] = v;
            }
        }
        PanelMatrix { k, n, panels }
    }

    /// Packs `k` input rows of `n` values each, row `i` at `w[i · ld ..]` (`ld ≥ n`): an
    /// `[in, out]` matrix that is a column slice of a wider one (an attention head's values).
    pub fn from_cols(w: &[f32], k: usize, n: usize, ld: usize) -> Self {
        assert!(
            k == 0 || (ld >= n && w.len() >= (k - 1) * ld + n),
            "{k} rows of {n}, {ld} apart"
        );
        let np = n.div_ceil(NR);
        let mut panels = vec![0f32; np * k * NR];
        for (p, panel) in panels.chunks_mut(k * NR).enumerate() {
            let (c0, c1) = (p * NR, (p * NR + NR).min(n));
            for (kk, dst) in panel.chunks_mut(NR).enumerate() {
                dst[..c1 - c0].copy_from_slice(&w[kk * ld + c0..kk * ld + c1]);
            }
        }
        PanelMatrix { k, n, panels }
    }

    /// The matrices side by side (`[in, Σ out]`): `None` unless they share their depth and all
    /// but the last fill whole panels.
    pub fn concat(parts: &[&PanelMatrix]) -> Option<PanelMatrix> {
        let (first, rest) = parts.split_first()?;
        let (_, but_last) = parts.split_last()?;
        if rest.iter().any(|p| p.k != first.k) || but_last.iter().any(|p| p.n % NR != 0) {
            return None;
        }
        Some(PanelMatrix {
            k: first.k,
            n: parts.iter().map(|p| p.n).sum(),
            panels: parts
                .iter()
                .flat_map(|p| p.panels.iter().copied())
                .collect(),
        })
    }

    /// `[in, out]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.k, self.n]
    }

    /// Bytes of the packed values.
    pub fn bytes(&self) -> usize {
        self.panels.len() * 4
    }

    /// Output width with the last panel's padding: rows of a [`PanelMatrix::product`] are
    /// at least this far apart.
    pub fn padded_width(&self) -> usize {
        self.n.div_ceil(NR) * NR
    }

    /// `x · W` for `m` rows of `x` (`[m, in]` row-major) → `[m, out]`, in parallel over row
    /// blocks.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        assert_eq!(x.len(), m * k, "{m} rows of {k} values");
        if m == 0 || n == 0 {
            return vec![0f32; m * n];
        }
        let ldy = self.padded_width();
        let mut y = vec![0f32; m * ldy];
        par_chunks(&mut y, ldy * ROWS_PER_TASK, |task, yc| {
            let rows = yc.len() / ldy;
            self.product(&x[task * ROWS_PER_TASK * k..], k, rows, yc, ldy);
        });
        if ldy == n {
            return y;
        }
        y.chunks(ldy).flat_map(|r| &r[..n]).copied().collect()
    }

    /// `y = x · W` on this thread for `m` rows of `x` (row `i` at `x[i · ldx ..]`, `ldx ≥ in`)
    /// into rows of `y` [`PanelMatrix::padded_width`] values wide, `ldy` apart (the padding
    /// columns get zeros).
    pub fn product(&self, x: &[f32], ldx: usize, m: usize, y: &mut [f32], ldy: usize) {
        let k = self.k;
        let np = self.n.div_ceil(NR);
        if m == 0 || np == 0 {
            return;
        }
        assert!(
            ldx >= k && x.len() >= (m - 1) * ldx + k,
            "{m} rows of {k} values"
        );
        assert!(
            ldy >= np * NR && y.len() >= (m - 1) * ldy + np * NR,
            "{m} output rows"
        );
        if k == 0 {
            y.chunks_mut(ldy).for_each(|r| r[..np * NR].fill(0.0));
            return;
        }
        // The block's rows of x, packed tile by tile ([tile][depth][MR], rows past m zero):
        // the kernel then reads one contiguous stream instead of MR rows ldx apart.
        let tiles = m.div_ceil(MR);
        let mut xp = vec![0f32; tiles * KC.min(k) * MR];
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            for (r, row) in x.chunks(ldx).take(m).enumerate() {
                let dst = &mut xp[(r / MR) * kc * MR + r % MR..];
                for (kk, &v) in row[k0..k0 + kc].iter().enumerate() {
                    dst[kk * MR] = v;
                }
            }
            for p in 0..np {
                let panel = &self.panels[p * k * NR + k0 * NR..p * k * NR + (k0 + kc) * NR];
                for t in 0..tiles {
                    Tile {
                        x: &xp[t * kc * MR..(t + 1) * kc * MR],
                        panel,
                        kc,
                        y: &mut y[t * MR * ldy + p * NR..],
                        ldy,
                        rows: MR.min(m - t * MR),
                        first: k0 == 0,
                    }
                    .run();
                }
            }
        }
    }
}

/// One register tile: `y[rows, NR] (+)= x[MR, kc] · panel[kc, NR]`, the first `rows` of the
/// tile's [`MR`] rows stored.
struct Tile<'a> {
    /// The tile's rows of x for this depth block, packed `[kc][MR]`.
    x: &'a [f32],
    /// The panel's `kc × NR` values for this depth block.
    panel: &'a [f32],
    kc: usize,
    /// Row 0 of the tile in y; rows `ldy` apart.
    y: &'a mut [f32],
    ldy: usize,
    /// Rows to store (≤ [`MR`]).
    rows: usize,
    /// The first depth block stores the sums; later ones add to them.
    first: bool,
}

impl Tile<'_> {
    /// Runs the tile.
    #[inline(always)]
    fn run(self) {
        assert!(self.rows >= 1 && self.rows <= MR && self.kc >= 1);
        assert_eq!(self.x.len(), self.kc * MR);
        assert_eq!(self.panel.len(), self.kc * NR);
        assert!(self.y.len() >= (self.rows - 1) * self.ldy + NR);
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        // SAFETY: the assertions above bound every access below.
        unsafe {
            self.fma()
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
        self.portable()
    }

    /// The reference kernel: multiply, then add, in depth order.
    #[cfg_attr(
        all(target_arch = "wasm32", target_feature = "relaxed-simd"),
        allow(dead_code)
    )]
    fn portable(self) {
        let mut acc = [[0f32; NR]; MR];
        for (xs, b) in self.x.chunks_exact(MR).zip(self.panel.chunks_exact(NR)) {
            for (a, &xv) in acc.iter_mut().zip(xs) {
                for (s, w) in a.iter_mut().zip(b) {
                    *s += xv * w;
                }
            }
        }
        for (i, a) in acc.iter().take(self.rows).enumerate() {
            let row = &mut self.y[i * self.ldy..i * self.ldy + NR];
            for (o, s) in row.iter_mut().zip(a) {
                *o = if self.first { *s } else { *o + s };
            }
        }
    }

    /// The relaxed-SIMD kernel: `MR × V` vectors of sums, one fused multiply-add per weight
    /// vector and row per depth step.
    ///
    /// # Safety
    /// The bounds asserted in [`Tile::run`].
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    #[inline(always)]
    unsafe fn fma(self) {
        use core::arch::wasm32::*;
        let mut acc = [[f32x4_splat(0.0); V]; MR];
        let (mut xp, mut bp) = (self.x.as_ptr(), self.panel.as_ptr() as *const v128);
        for _ in 0..self.kc {
            // SAFETY: kc steps of MR x values and V weight vectors stay in the packed slices.
            unsafe {
                let bv: [v128; V] = core::array::from_fn(|j| v128_load(bp.add(j)));
                for (i, a) in acc.iter_mut().enumerate() {
                    let xv = v128_load32_splat(xp.add(i) as *const u32);
                    for (s, w) in a.iter_mut().zip(&bv) {
                        *s = f32x4_relaxed_madd(xv, *w, *s);
                    }
                }
                xp = xp.add(MR);
                bp = bp.add(V);
            }
        }
        let yp = self.y.as_mut_ptr();
        for (i, a) in acc.iter().take(self.rows).enumerate() {
            // SAFETY: row i < rows of the tile has NR values in y.
            unsafe {
                let o = yp.add(i * self.ldy) as *mut v128;
                for (j, s) in a.iter().enumerate() {
                    let v = if self.first {
                        *s
                    } else {
                        f32x4_add(v128_load(o.add(j)), *s)
                    };
                    v128_store(o.add(j), v);
                }
            }
        }
    }
}

/// `dst[m, n] = lhs[m, k] · rhs[k, n]` with `gemm` on one thread, each operand given as
/// (pointer, column stride, row stride).
///
/// # Safety
/// Every element the strides reach must lie inside its operand's allocation, and `dst` must not
/// overlap the others.
pub unsafe fn gemm_f32(
    [m, n, k]: [usize; 3],
    dst: (*mut f32, isize, isize),
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.1,
            dst.2,
            false,
            lhs.0,
            lhs.1,
            lhs.2,
            rhs.0,
            rhs.1,
            rhs.2,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Shapes `(m, n, k)` that reach every branch: rows not a multiple of [`MR`] or of a task,
/// columns not a multiple of [`NR`], depth over several blocks with a partial last one.
pub const CHECK_SHAPES: [(usize, usize, usize); 5] = [
    (1, 1, 1),
    (5, 13, 7),
    (37, 24, 300),
    (64, 50, 513),
    (3, 12, 256),
];

/// The largest error of [`PanelMatrix::matmul`] on an `m × k` by `k × n` product of fixed
/// pseudo-random values against the same product in f64, relative to `1 + |exact|`.
pub fn check_error(m: usize, n: usize, k: usize) -> f64 {
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7919 % 211) as f32 - 105.0) / 97.0)
        .collect();
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 104_729 % 197) as f32 - 98.0) / 89.0)
        .collect();
    let y = PanelMatrix::from_out_in(&w, n, k).matmul(&x, m);
    assert_eq!(y.len(), m * n);
    let mut worst = 0f64;
    for i in 0..m {
        for j in 0..n {
            let exact: f64 = (0..k)
                .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                .sum();
            worst = worst.max((y[i * n + j] as f64 - exact).abs() / (1.0 + exact.abs()));
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_equal_the_product_on_ragged_shapes() {
        for (m, n, k) in CHECK_SHAPES {
            let e = check_error(m, n, k);
            assert!(e < 1e-5, "{m}×{n}×{k}: error {e:e}");
        }
        let p = PanelMatrix::from_out_in(&[0.5; 6], 2, 3);
        assert_eq!(p.dims(), [3, 2]);
        assert_eq!(p.matmul(&[1.0, 2.0, 3.0], 1), vec![3.0, 3.0]);
        // Side by side: the product of the concatenation is the products next to each other.
        let w: Vec<f32> = (0..40 * 7).map(|i| (i % 13) as f32 - 6.0).collect();
        let (a, b) = (
            PanelMatrix::from_out_in(&w[..16 * 7], 16, 7),
            PanelMatrix::from_out_in(&w[16 * 7..], 24, 7),
        );
        let x: Vec<f32> = (0..3 * 7).map(|i| (i % 5) as f32).collect();
        let ab = PanelMatrix::concat(&[&a, &b]).expect("whole panels");
        assert_eq!(
            ab.matmul(&x, 3),
            PanelMatrix::from_out_in(&w, 40, 7).matmul(&x, 3)
        );
        let odd = PanelMatrix::from_out_in(&w[..5 * 7], 5, 7);
        assert!(PanelMatrix::concat(&[&odd, &a]).is_none());
        assert!(
            PanelMatrix::from_out_in(&[], 0, 4)
                .matmul(&[0.0; 8], 2)
                .is_empty()
        );
    }
}
