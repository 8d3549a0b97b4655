//! The fused WebGPU kernel against the tensor-op path: differences, times, dispatches, bytes
//! (WebGPU builds only).

use super::median;
use crate::error::Result;
use crate::model::read_f32;

/// One shape of [`fused_check`]: how far the fused WebGPU kernel is from the tensor-op path,
/// and what each costs.
#[derive(Debug, serde::Serialize)]
pub struct FusedCase {
    /// Block type (`q8_0`, `q4_0`, `q4_1`).
    pub ty: String,
    /// Rows of `x`.
    pub m: usize,
    /// Rows of the weight matrix (output columns).
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// Largest |fused − reference| ÷ the reference's largest |value|.
    pub max_rel_diff: f64,
    /// Median time of one fused product, ms (read back included).
    pub fused_ms: f64,
    /// Median time of one tensor-op product, ms (read back included).
    pub reference_ms: f64,
    /// Kernel launches per product: fused, tensor-op path (counted from the ops each issues).
    pub dispatches: [usize; 2],
    /// Bytes each path writes to and reads from device memory per product, beyond `x` and the
    /// output: fused reads the blocks once; the tensor-op path also writes and reads its
    /// unpacked integer and f32 copies of the matrix.
    pub matrix_bytes: [usize; 2],
}

/// The shapes `(m, n, k)` and timed runs of a [`fused_check`] size set: `check` (small shapes
/// reaching every kernel branch, untimed) or `bench` (SmolVLM-size products, `runs` timed runs).
/// Shared by the page (`taskvecDebug.fusedCheck`) and `taskvec fused-check`.
pub fn fused_shapes(sizes: &str, runs: usize) -> Result<(&'static [(usize, usize, usize)], usize)> {
    Ok(match sizes {
        // m = 1, 3 (rows kernel, partial), 5, 67 (tiled, partial tiles); n not a multiple of 8/64
        "check" => (&[(1, 70, 96), (3, 70, 96), (5, 130, 64), (67, 70, 96)], 0),
        // decode row, a prefill of 128 tokens, one vision-encoder product (1024 patches)
        "bench" => (
            &[(1, 1536, 576), (128, 1536, 576), (1024, 768, 768)],
            runs.max(1),
        ),
        other => {
            return Err(crate::error::Error::Unsupported(format!(
                "unknown size set '{other}' (check or bench)"
            )));
        }
    })
}

/// Checks [`crate::model::packed::PackedMatrix::matmul_t_fused`] against
/// [`crate::model::packed::PackedMatrix::matmul_t_reference`] on `device` for each block type and
/// each `(m, n, k)` shape, timing both (median of `runs` after one warm-up; 0 runs: no timing).
pub async fn fused_check(
    device: &burn::tensor::Device,
    shapes: &[(usize, usize, usize)],
    runs: usize,
    now: &dyn Fn() -> f64,
) -> Result<Vec<FusedCase>> {
    use crate::model::packed::PackedMatrix;
    use crate::weights::quant::{GgmlType, quantize};
    use burn::tensor::{Tensor, TensorData};
    let mut out = vec![];
    let mut seed = 0x2545_f491_u32;
    let mut rand = move |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as f32 / u32::MAX as f32 - 0.45
            })
            .collect()
    };
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
        for &(m, n, k) in shapes {
            let p = PackedMatrix::new(ty, n, k, &quantize(ty, &rand(n * k))?, device)?;
            let x = Tensor::<2>::from_data(TensorData::new(rand(m * k), [m, k]), device);
            let fused = read_f32(p.matmul_t_fused(x.clone())).await?;
            let reference = read_f32(p.matmul_t_reference(x.clone())).await?;
            let scale = reference.iter().fold(0f64, |a, &v| a.max(v.abs() as f64));
            let diff = fused
                .iter()
                .zip(&reference)
                .fold(0f64, |a, (&f, &r)| a.max((f as f64 - r as f64).abs()));
            let mut times = [vec![], vec![]];
            for run in 0..runs {
                // fresh inputs each run, so no backend can hand back a cached result
                let xr = x.clone() + run as f32 * 1e-3;
                read_f32(xr.clone().slice([0..1, 0..1])).await?;
                for (path, t) in times.iter_mut().enumerate() {
                    let start = now();
                    let y = if path == 0 {
                        p.matmul_t_fused(xr.clone())
                    } else {
                        p.matmul_t_reference(xr.clone())
                    };
                    read_f32(y.slice([0..1, 0..1])).await?;
                    t.push(now() - start);
                }
            }
            let [fused_ms, reference_ms] =
                times.map(|t| if t.is_empty() { 0.0 } else { median(t) });
            // tensor-op path per chunk: shifts tensor upload, shift, mask, (Q8_0: shift, mul,
            // sub), int→float, scale (Q4: −8 or +min), matmul; then one concatenation
            let chunks = (n * k).div_ceil(1 << 22);
            let per_chunk = if ty == GgmlType::Q8_0 { 9 } else { 7 };
            let blocks = p.bytes();
            // unpacked i32 [n, k] written+read twice (shift, mask), its f32 copy written+read
            let copies = n * k * 4 * 2 * 2 + n * k * 4 * 2;
            out.push(FusedCase {
                ty: ty.name().to_lowercase(),
                m,
                n,
                k,
                max_rel_diff: diff / scale.max(f64::MIN_POSITIVE),
                fused_ms,
                reference_ms,
                dispatches: [1, chunks * per_chunk + usize::from(chunks > 1)],
                matrix_bytes: [blocks, blocks + copies],
            });
        }
    }
    Ok(out)
}
