//! Fused row kernels for the CPU backend. burn writes a LayerNorm as seven tensor ops and the
//! tanh GELU as eight, each a serial pass over memory with its own allocation; on the CPU the
//! tensors are host memory, so these kernels do each in one pass over rows, in parallel
//! ([`super::par`]). The arithmetic follows transformers' (`nn.LayerNorm`, `gelu_pytorch_tanh`,
//! the attention's softmax).

use burn::tensor::{Tensor, TensorData};

use super::device::download;
use super::par::par_chunks;

/// Rows handed to one task.
const ROWS_PER_TASK: usize = 16;
/// √(2/π), the tanh GELU's inner scale.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// Applies `f` to every row of `x` in place (on the host) and returns the result on `x`'s device.
fn map_rows(x: Tensor<2>, f: impl Fn(&mut [f32]) + Sync + Send) -> Tensor<2> {
    let device = x.device();
    let [rows, cols] = x.dims();
    let mut v = download(x);
    if cols > 0 {
        par_chunks(&mut v, cols * ROWS_PER_TASK, |_, chunk| {
            chunk.chunks_mut(cols).for_each(&f)
        });
    }
    Tensor::from_data(TensorData::new(v, [rows, cols]), &device)
}

/// Defines `fn $name(args)` calling the `#[inline(always)]` function `$body` compiled for the
/// widest vectors the CPU has: natively on x86-64 with AVX-512F or AVX2 when the CPU has them
/// (the loops vectorize sixteen or eight lanes wide), elsewhere as is. The arithmetic is the same
/// on every path (Rust never fuses a multiply and an add by itself).
macro_rules! widest {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),*) => $body:ident) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($a: $t),*) {
                    $body($($a),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($a: $t),*) {
                    $body($($a),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked above).
                    return unsafe { avx512($($a),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked above).
                    return unsafe { avx2($($a),*) };
                }
            }
            $body($($a),*)
        }
    };
}

/// LayerNorm over the last dimension: `(x − mean) / sqrt(var + eps) · w + b` per row, the
/// moments accumulated in f64.
pub fn layer_norm(x: Tensor<2>, w: &Tensor<1>, b: &Tensor<1>, eps: f64) -> Tensor<2> {
    let (w, b) = (download(w.clone()), download(b.clone()));
    map_rows(x, |row| {
        let n = row.len() as f64;
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(&w).zip(&b) {
            *v = ((*v as f64 - mean) * inv) as f32 * w + b;
        }
    })
}

/// `gelu_tanh(x + b)` per element, `b` (if any) broadcast over rows: the tanh approximation
/// `0.5 · x · (1 + tanh(u))`, `u = √(2/π) · (x + 0.044715 · x³)`, computed as its identity
/// `x / (1 + e⁻²ᵘ)` with [`exp`], which vectorizes (`f32::tanh` is a libm call per element).
pub fn bias_gelu_tanh(x: Tensor<2>, bias: Option<&Tensor<1>>) -> Tensor<2> {
    let b = bias.cloned().map(download);
    map_rows(x, |row| gelu_row(row, b.as_deref()))
}

widest! {
    /// [`bias_gelu_tanh`] on one row.
    fn gelu_row(row: &mut [f32], bias: Option<&[f32]>) => gelu_row_any
}

/// [`gelu_row`]'s body.
#[inline(always)]
fn gelu_row_any(row: &mut [f32], bias: Option<&[f32]>) {
    let gelu = |x: f32| {
        let inner = (x + x * x * x * 0.044_715) * SQRT_2_OVER_PI;
        x / (1.0 + exp(-2.0 * inner))
    };
    match bias {
        Some(b) => {
            for (v, b) in row.iter_mut().zip(b) {
                *v = gelu(*v + b);
            }
        }
        None => row.iter_mut().for_each(|v| *v = gelu(*v)),
    }
}

/// RMSNorm over the last dimension, `x / sqrt(mean(x²) + eps) · w` per row (the mean of
/// squares accumulated in f64).
pub fn rms_norm(x: Tensor<2>, w: &Tensor<1>, eps: f64) -> Tensor<2> {
    let w = download(w.clone());
    map_rows(x, |row| rms_norm_row(row, &w, eps))
}

widest! {
    /// [`rms_norm`] on one row.
    fn rms_norm_row(row: &mut [f32], w: &[f32], eps: f64) => rms_norm_row_any
}

/// [`rms_norm_row`]'s body: eight partial f64 sums (each square is exact in f64, so the order
/// moves the sum by ~1e-16 of itself, far below an f32 step).
#[inline(always)]
fn rms_norm_row_any(row: &mut [f32], w: &[f32], eps: f64) {
    let mut part = [0f64; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (p, &v) in part.iter_mut().zip(c) {
            *p += (v as f64) * (v as f64);
        }
    }
    let rest: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum();
    let ms = (part.iter().sum::<f64>() + rest) / row.len() as f64;
    let inv = (1.0 / (ms + eps).sqrt()) as f32;
    for (v, w) in row.iter_mut().zip(w) {
        *v = *v * inv * w;
    }
}

/// SwiGLU on side-by-side halves: rows `[gate | up]` ([rows, 2n]) → `silu(gate) · up`
/// ([rows, n]), `silu(g) = g / (1 + e⁻ᵍ)`.
pub fn swiglu(x: Tensor<2>) -> Tensor<2> {
    let device = x.device();
    let [rows, cols] = x.dims();
    let n = cols / 2;
    let v = download(x);
    let mut out = vec![0f32; rows * n];
    if n > 0 {
        par_chunks(&mut out, n * ROWS_PER_TASK, |task, chunk| {
            for (i, o) in chunk.chunks_mut(n).enumerate() {
                let r = task * ROWS_PER_TASK + i;
                let (g, u) = v[r * cols..(r + 1) * cols].split_at(n);
                o.copy_from_slice(g);
                swiglu_in_place(o, u);
            }
        });
    }
    Tensor::from_data(TensorData::new(out, [rows, n]), &device)
}

widest! {
    /// `g = silu(g) · u` elementwise, in place (SwiGLU of side-by-side products).
    pub fn swiglu_in_place(g: &mut [f32], u: &[f32]) => swiglu_in_place_any
}

/// [`swiglu_in_place`]'s body.
#[inline(always)]
fn swiglu_in_place_any(g: &mut [f32], u: &[f32]) {
    for (g, &u) in g.iter_mut().zip(u) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

widest! {
    /// `softmax(scale · row)` in place, `scale > 0` (a row of only `-inf` gives NaN, as in
    /// PyTorch), compiled for the widest vectors the CPU has.
    pub fn softmax_row(row: &mut [f32], scale: f32) => softmax_row_any
}

/// [`softmax_row`]'s body, for whatever the caller was compiled for.
#[inline(always)]
fn softmax_row_any(row: &mut [f32], scale: f32) {
    // Sixteen partial maxima and sums let the loops vectorize, sixteen lanes of independent
    // `exp`s at a time (one AVX-512 register, four WebAssembly ones); the sum's order differs
    // from a serial one by ~1 ulp (the maximum is exact in any order).
    let mut top = [f32::NEG_INFINITY; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (t, &v) in top.iter_mut().zip(c) {
            *t = t.max(v);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&top)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0f32;
    let mut part = [0f32; 16];
    let mut chunks = row.chunks_exact_mut(16);
    for c in &mut chunks {
        for (v, p) in c.iter_mut().zip(part.iter_mut()) {
            *v = exp((*v - max) * scale);
            *p += *v;
        }
    }
    for v in chunks.into_remainder() {
        *v = exp((*v - max) * scale);
        sum += *v;
    }
    sum += part.iter().sum::<f32>();
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// `eˣ` for f32, branch-free so that loops over it vectorize (the WebAssembly build has no
/// vector `exp`, and its scalar one is a libm call per element). Cody–Waite reduction
/// `x = n·ln 2 + r`, |r| ≤ ln 2 / 2, then Cephes' degree-6 polynomial for `eʳ`: relative error
/// ≤ 2 ulp over the range; below −87.3 (including `-inf`) it is 0, above 88.7 it is `inf`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer (ties to even).
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.336_55, 88.722_83);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    // n as an integer, from t's low mantissa bits (`n as i32` is a saturating conversion that
    // does not vectorize): t = 1.5·2²³ + n exactly, whose bits are 0x4B40_0000 + n.
    let ni = t.to_bits() as i32 - 0x4B40_0000;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = (p * r * r + r) + 1.0;
    // 2ⁿ built from its exponent bits; n ∈ [−126, 128]: 128 (x near 88.7) goes through 2⁶⁴·2⁶⁴.
    let half = ni >> 1;
    let s1 = f32::from_bits(((half + 127) as u32) << 23);
    let s2 = f32::from_bits((((ni - half) + 127) as u32) << 23);
    let y = er * s1 * s2;
    if x < -87.336_55 {
        0.0
    } else if x > 88.722_83 {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_std() {
        let mut worst = 0f64;
        let mut x = -87.3f32;
        while x < 88.7 {
            let (a, b) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.000_731;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst:e}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    /// Within 2e-6 relative of the f64 value, or closer than transformers' own f32 form.
    fn gelu_matches_the_tanh_form_in_f64() {
        let xs: Vec<f32> = (-4000..=4000)
            .map(|i| i as f32 * 0.003)
            .chain([-30.0, 30.0, 1e-6, -1e-6, 0.0])
            .collect();
        let device = Default::default();
        let t = Tensor::<2>::from_data(TensorData::new(xs.clone(), [1, xs.len()]), &device);
        let got = download(bias_gelu_tanh(t, None));
        for (&x, &g) in xs.iter().zip(&got) {
            let x64 = x as f64;
            let u = (x64 + 0.044715 * x64 * x64 * x64) * (2.0 / std::f64::consts::PI).sqrt();
            // 0.5·x·(1 + tanh u) without f64's own cancellation for very negative x.
            let want = x64 / (1.0 + (-2.0 * u).exp());
            // transformers' f32 tanh form, whose `1 + tanh` cancels for negative x.
            let u32 = (x + x * x * x * 0.044_715) * SQRT_2_OVER_PI;
            let torch = (x * (u32.tanh() + 1.0) * 0.5) as f64;
            let (err, torch_err) = ((g as f64 - want).abs(), (torch - want).abs());
            assert!(
                err <= (2e-6 * want.abs()).max(torch_err),
                "gelu({x}) = {g}, f64 {want}, tanh form {torch}"
            );
        }
    }

    #[test]
    fn softmax_row_matches_f64() {
        let mut row: Vec<f32> = (0..1031)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.21)
            .collect();
        row[5] = f32::NEG_INFINITY;
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
        let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
        let z: f64 = e.iter().sum();
        softmax_row(&mut row, 1.0);
        for (a, b) in row.iter().zip(&e) {
            assert!(
                (*a as f64 - b / z).abs() <= 1e-6 * (b / z) + 1e-12,
                "{a} vs {}",
                b / z
            );
        }
        assert_eq!(row[5], 0.0);
    }
}
