use super::*;

/// Deterministic values in [-1, 1] (xorshift), for the kernel tests here and in `integer`.
pub(super) fn values(n: usize, seed: u32) -> Vec<f32> {
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

fn reference(w: &[f32], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        for r in 0..n {
            out[i * n + r] = (0..k)
                .map(|c| x[i * k + c] as f64 * w[r * k + c] as f64)
                .sum::<f64>() as f32;
        }
    }
    out
}

#[test]
fn both_kernels_equal_a_product_with_the_dequantized_matrix() {
    let (n, k) = (200, 96);
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
        let data = quant::quantize(ty, &values(n * k, 1)).unwrap();
        let dense = quant::dequantize(ty, &data);
        let q = QuantMatrix::new(ty, n, k, data).unwrap();
        let int = q.clone().for_activations(Activations::Int8);
        let int16 = q.clone().for_activations(Activations::Int16);
        assert_eq!(q.dequant_rows(7, 1), dense[7 * k..8 * k]);
        assert_eq!(int.dequant_rows(7, 2), dense[7 * k..9 * k]);
        for m in [1, 3, SMALL_M + 1, 70] {
            let x = values(m * k, m as u32 + 9);
            let want = reference(&dense, n, k, &x, m);
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            let err = |got: Vec<f32>| {
                got.iter()
                    .zip(&want)
                    .fold(0f32, |a, (g, w)| a.max((g - w).abs()))
            };
            let e = err(q.matmul_t(&x, m));
            assert!(e <= 1e-5 * scale, "{ty:?} m={m}: {e} vs {scale}");
            // Integer products: the activations' 8-bit (12-bit) rounding (≤ d/2 per value) is
            // the error; the integer sums' exactness is integer/tests.rs's.
            let e = err(int.matmul_t(&x, m));
            assert!(e <= 1e-2 * scale, "{ty:?} int8 m={m}: {e} vs {scale}");
            let e = err(int16.matmul_t(&x, m));
            assert!(e <= 1e-3 * scale, "{ty:?} int16 m={m}: {e} vs {scale}");
        }
        assert_eq!(q.gather(&[7, 0])[..k], dense[7 * k..8 * k]);
        assert_eq!(int.gather(&[7, 0])[..k], dense[7 * k..8 * k]);
        // Dequantized straight into panels (the threaded browser build's prefill): the panels
        // of the dequantized rows, exactly.
        let x = values(5 * k, 3);
        for m in [&q, &int] {
            assert_eq!(
                m.panels(13, 21).matmul(&x, 5),
                PanelMatrix::from_out_in(&dense[13 * k..34 * k], 21, k).matmul(&x, 5)
            );
        }
        // The portable kernel (wasm, CPUs without AVX2) agrees with the dispatched one.
        let x = values(2 * k, 5);
        let xsum: Vec<f32> = x.chunks_exact(BLOCK).map(|c| c.iter().sum()).collect();
        let task = DirectTask {
            q: &q,
            x: &x,
            xsum: &xsum,
            m: 2,
            r0: 0,
        };
        let mut portable = vec![0f32; n * 2];
        task.run_portable(&mut portable);
        let fast = transpose(q.matmul_t(&x, 2), 2, n);
        for (a, b) in portable.iter().zip(&fast) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{ty:?}: {a} vs {b}"
            );
        }
    }
}

/// Rows side by side give each part's product, for every activation path and for parts that
/// are and are not whole interleaved groups.
#[test]
fn concatenated_matrices_multiply_as_their_parts() {
    let k = 64;
    for acts in [Activations::F32, Activations::Int8, Activations::Int16] {
        for sizes in [[32, 16, 48], [20, 7, 33]] {
            let parts: Vec<QuantMatrix> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    QuantMatrix::quantize(GgmlType::Q4_1, n, k, &values(n * k, i as u32))
                        .unwrap()
                        .for_activations(acts)
                })
                .collect();
            let refs: Vec<&QuantMatrix> = parts.iter().collect();
            let all = QuantMatrix::concat(&refs).unwrap();
            assert_eq!(all.dims(), [sizes.iter().sum(), k]);
            assert_eq!(all.activations(), parts[0].activations());
            let x = values(3 * k, 99);
            let got = all.matmul_t(&x, 3);
            let n: usize = sizes.iter().sum();
            let mut at = 0;
            for p in &parts {
                let w = p.dims()[0];
                let want = p.matmul_t(&x, 3);
                for i in 0..3 {
                    assert_eq!(
                        got[i * n + at..i * n + at + w],
                        want[i * w..(i + 1) * w],
                        "{acts:?} {sizes:?}"
                    );
                }
                at += w;
            }
        }
    }
    let a = QuantMatrix::quantize(GgmlType::Q8_0, 4, 64, &values(256, 1)).unwrap();
    let b = QuantMatrix::quantize(GgmlType::Q4_1, 4, 64, &values(256, 2)).unwrap();
    assert!(QuantMatrix::concat(&[&a, &b]).is_none());
}

#[test]
fn fused_swiglu_equals_the_product_then_swiglu() {
    // Gate and up halves of 64 rows each (whole groups for every kernel).
    let (n, k) = (128, 96);
    for ty in [GgmlType::Q8_0, GgmlType::Q4_1] {
        let q = QuantMatrix::quantize(ty, n, k, &values(n * k, 4)).unwrap();
        assert!(
            q.matmul_t_swiglu(&values(k, 1), 1).is_none(),
            "f32 activations"
        );
        for acts in [Activations::Int8, Activations::Int16] {
            let q = q.clone().for_activations(acts);
            for m in [1, 5, 16, 37] {
                let x = values(m * k, m as u32);
                let y = q.matmul_t(&x, m);
                let want: Vec<f32> = (0..m)
                    .flat_map(|i| {
                        let (g, u) = y[i * n..(i + 1) * n].split_at(n / 2);
                        let mut g = g.to_vec();
                        crate::model::host_ops::swiglu_in_place(&mut g, u);
                        g
                    })
                    .collect();
                assert_eq!(
                    q.matmul_t_swiglu(&x, m).unwrap(),
                    want,
                    "{ty:?} {acts:?} m={m}"
                );
            }
        }
    }
}

#[test]
fn refuses_mismatched_blocks() {
    assert!(QuantMatrix::new(GgmlType::Q8_0, 2, 32, vec![0; 67]).is_err());
    assert!(QuantMatrix::new(GgmlType::Q8_0, 2, 48, vec![0; 68]).is_err());
    assert!(QuantMatrix::new(GgmlType::Q4K, 1, 256, vec![0; 144]).is_err());
}

/// Kernel timings (ignored by default).
mod speed {
    use super::*;

    /// `cargo test --release --lib kernel_speed -- --ignored --nocapture`: GMAC/s of each
    /// kernel on SmolLM2's gate projection, one row (decoding) and 128 rows (prefill).
    #[test]
    #[ignore]
    fn kernel_speed() {
        let (n, k) = (1536, 576);
        let v: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
            let q = QuantMatrix::quantize(ty, n, k, &v).unwrap();
            for acts in [Activations::F32, Activations::Int8, Activations::Int16] {
                let q = q.clone().for_activations(acts);
                for m in [1, 128] {
                    let x: Vec<f32> = v[..m * k].to_vec();
                    let reps = 20_000 / m;
                    let t = std::time::Instant::now();
                    let mut s = 0.0;
                    for _ in 0..reps {
                        s += q.matmul_t(&x, m)[3];
                    }
                    let dt = t.elapsed().as_secs_f64() / reps as f64;
                    println!(
                        "{ty:?} {} m={m}: {:.1} us, {:.2} GMAC/s ({s})",
                        acts.name(),
                        dt * 1e6,
                        (m * n * k) as f64 / dt / 1e9
                    );
                }
            }
        }
    }
}
