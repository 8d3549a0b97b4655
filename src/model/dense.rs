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
        let np = n.div_ceil(NR);
        let mut panels = vec![0f32; np * k * NR];
        for (p, panel) in panels.chunks_mut(k * NR).enumerate() {
            for j in 0..NR.min(n - p * NR) {
                let col = &w[(p * NR + j) * k..(p * NR + j + 1) * k];
                for (kk, &v) in col.iter().enumerate() {
                    panel[kk * NR + j] = v;
                }
            }
        }
        PanelMatrix { k, n, panels }
    }

    /// `[in, out]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.k, self.n]
    }

    /// Bytes of the packed values.
    pub fn bytes(&self) -> usize {
        self.panels.len() * 4
    }

    /// `x · W` for `m` rows of `x` (`[m, in]` row-major) → `[m, out]`.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        assert_eq!(x.len(), m * k, "{m} rows of {k} values");
        if m == 0 || n == 0 {
            return vec![0f32; m * n];
        }
        let ldy = n.div_ceil(NR) * NR;
        let np = ldy / NR;
        let mut y = vec![0f32; m * ldy];
        par_chunks(&mut y, ldy * ROWS_PER_TASK, |task, yc| {
            let r0 = task * ROWS_PER_TASK;
            let rows = yc.len() / ldy;
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                for p in 0..np {
                    let panel = &self.panels[p * k * NR + k0 * NR..p * k * NR + (k0 + kc) * NR];
                    for t in (0..rows).step_by(MR) {
                        let xs = &x[(r0 + t) * k + k0..];
                        let ys = &mut yc[t * ldy + p * NR..];
                        let tile = Tile {
                            x: xs,
                            ldx: k,
                            panel,
                            kc,
                            y: ys,
                            ldy,
                            first: k0 == 0,
                        };
                        match rows - t {
                            r if r >= MR => tile.run::<MR>(),
                            1 => tile.run::<1>(),
                            2 => tile.run::<2>(),
                            3 => tile.run::<3>(),
                            4 => tile.run::<4>(),
                            5 => tile.run::<5>(),
                            6 => tile.run::<6>(),
                            _ => tile.run::<7>(),
                        }
                    }
                }
            }
        });
        if ldy == n {
            return y;
        }
        y.chunks(ldy).flat_map(|r| &r[..n]).copied().collect()
    }
}

/// One register tile: `y[R, NR] (+)= x[R, kc] · panel[kc, NR]`.
struct Tile<'a> {
    /// Row 0 of x at the block's first depth; rows `ldx` apart.
    x: &'a [f32],
    ldx: usize,
    /// The panel's `kc × NR` values for this depth block.
    panel: &'a [f32],
    kc: usize,
    /// Row 0 of the tile in y; rows `ldy` apart.
    y: &'a mut [f32],
    ldy: usize,
    /// The first depth block stores the sums; later ones add to them.
    first: bool,
}

impl Tile<'_> {
    /// Runs the tile for `R` rows (≤ [`MR`]).
    #[inline(always)]
    fn run<const R: usize>(self) {
        assert!(R >= 1 && R <= MR && self.kc >= 1);
        assert!(self.x.len() > (R - 1) * self.ldx + self.kc - 1);
        assert!(self.y.len() >= (R - 1) * self.ldy + NR);
        assert_eq!(self.panel.len(), self.kc * NR);
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        // SAFETY: the assertions above bound every access below.
        unsafe {
            self.fma::<R>()
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
        self.portable::<R>()
    }

    /// The reference kernel: multiply, then add, in depth order.
    #[cfg_attr(
        all(target_arch = "wasm32", target_feature = "relaxed-simd"),
        allow(dead_code)
    )]
    fn portable<const R: usize>(self) {
        let mut acc = [[0f32; NR]; R];
        for kk in 0..self.kc {
            let b = &self.panel[kk * NR..(kk + 1) * NR];
            for (i, a) in acc.iter_mut().enumerate() {
                let xv = self.x[i * self.ldx + kk];
                for (s, w) in a.iter_mut().zip(b) {
                    *s += xv * w;
                }
            }
        }
        for (i, a) in acc.iter().enumerate() {
            let row = &mut self.y[i * self.ldy..i * self.ldy + NR];
            for (o, s) in row.iter_mut().zip(a) {
                *o = if self.first { *s } else { *o + s };
            }
        }
    }

    /// The relaxed-SIMD kernel: `R × V` vectors of sums, one fused multiply-add per weight
    /// vector and row per depth step.
    ///
    /// # Safety
    /// The bounds asserted in [`Tile::run`].
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    #[inline(always)]
    unsafe fn fma<const R: usize>(self) {
        use core::arch::wasm32::*;
        let mut acc = [[f32x4_splat(0.0); V]; R];
        let (xp, bp) = (self.x.as_ptr(), self.panel.as_ptr());
        for kk in 0..self.kc {
            // SAFETY: kk < kc, so the panel row kk (NR values) and x[i·ldx + kk] are in bounds.
            unsafe {
                let b = bp.add(kk * NR) as *const v128;
                let bv: [v128; V] = core::array::from_fn(|j| v128_load(b.add(j)));
                for (i, a) in acc.iter_mut().enumerate() {
                    let xv = f32x4_splat(*xp.add(i * self.ldx + kk));
                    for (s, w) in a.iter_mut().zip(&bv) {
                        *s = f32x4_relaxed_madd(xv, *w, *s);
                    }
                }
            }
        }
        let yp = self.y.as_mut_ptr();
        for (i, a) in acc.iter().enumerate() {
            // SAFETY: row i of the tile has NR values in y.
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
        assert!(
            PanelMatrix::from_out_in(&[], 0, 4)
                .matmul(&[0.0; 8], 2)
                .is_empty()
        );
    }
}
