//! Fused row kernels for the CPU backend. burn writes a LayerNorm as seven tensor ops and the
//! tanh GELU as eight, each a serial pass over memory with its own allocation; on the CPU the
//! tensors are host memory, so these kernels do each in one pass over rows, in parallel
//! ([`super::par`]). The arithmetic follows transformers' (`nn.LayerNorm`, `gelu_pytorch_tanh`).

use burn::tensor::{Tensor, TensorData};

use super::par::par_chunks;

/// Rows handed to one task.
const ROWS_PER_TASK: usize = 16;
/// √(2/π), the tanh GELU's inner scale.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// The values of a 1-D tensor on the host.
fn host_vec(t: &Tensor<1>) -> Vec<f32> {
    t.to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data after convert")
}

/// Applies `f` to every row of `x` in place (on the host) and returns the result on `x`'s device.
fn map_rows(x: Tensor<2>, f: impl Fn(&mut [f32]) + Sync + Send) -> Tensor<2> {
    let device = x.device();
    let [rows, cols] = x.dims();
    let mut v = x
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data after convert");
    if cols > 0 {
        par_chunks(&mut v, cols * ROWS_PER_TASK, |_, chunk| {
            chunk.chunks_mut(cols).for_each(&f)
        });
    }
    Tensor::from_data(TensorData::new(v, [rows, cols]), &device)
}

/// LayerNorm over the last dimension: `(x − mean) / sqrt(var + eps) · w + b` per row, the
/// moments accumulated in f64.
pub fn layer_norm(x: Tensor<2>, w: &Tensor<1>, b: &Tensor<1>, eps: f64) -> Tensor<2> {
    let (w, b) = (host_vec(w), host_vec(b));
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
/// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
pub fn bias_gelu_tanh(x: Tensor<2>, bias: Option<&Tensor<1>>) -> Tensor<2> {
    let gelu = |x: f32| {
        let inner = (x + x * x * x * 0.044_715) * SQRT_2_OVER_PI;
        x * (inner.tanh() + 1.0) * 0.5
    };
    match bias.map(host_vec) {
        Some(b) => map_rows(x, |row| {
            for (v, b) in row.iter_mut().zip(&b) {
                *v = gelu(*v + b);
            }
        }),
        None => map_rows(x, |row| row.iter_mut().for_each(|v| *v = gelu(*v))),
    }
}
