use super::*;
use crate::model::qmatmul::tests::values;
use crate::weights::blocks;
use crate::weights::quant::{self, GgmlType};

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

/// The quantizer this CPU runs (in parallel over runs of rows, with the AMX byte planes where
/// they are made) against the portable one, on `x` as 1 row and as 40 rows.
fn same_quantization<T: Acts + PartialEq + std::fmt::Debug>(x: &[f32]) {
    for rows in [1, 40] {
        let fast = QRows::<T>::quantize(x, rows, x.len() / rows);
        let mut slow = fast.clone();
        quantize_blocks(x, &mut slow.all_blocks());
        assert_eq!(fast.q, slow.q);
        assert_eq!(fast.d, slow.d);
        assert_eq!(fast.s, slow.s);
        assert_eq!(fast.sum, slow.sum);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(fast.planes, slow.planes);
    }
}

#[test]
fn simd_quantizer_equals_the_portable_one() {
    let x: Vec<f32> = values(32 * (40 * 40 - 1), 5)
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
        // Tile heights 8 (512-bit), 4 and the remainders 1-3.
        for m in [1, 2, 3, 4, 5, 11, 13, 16] {
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

/// The AMX tiles give the VNNI kernel's results bit for bit (16-row tiles plus a remainder),
/// for both level types and every block type; skipped where the CPU or OS has no AMX.
#[cfg(target_arch = "x86_64")]
#[test]
fn amx_tiles_equal_the_vnni_kernel_bit_for_bit() {
    if Kernel::detect() != Kernel::Vnni512 || !x86::amx_ready() {
        eprintln!("skipped: no AMX-INT8 here");
        return;
    }
    fn check<T: Acts>() {
        let (n, k) = (37, 160);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
            let l = blocks::layout(ty).unwrap();
            let data = quant::quantize(ty, &values(n * k, 7)).unwrap();
            let w = Interleaved::new(l, n, k, &data, Kernel::Vnni512);
            for m in [16, 35] {
                let xq = QRows::<T>::quantize(&values(m * k, 5), m, k);
                for g in 0..n.div_ceil(16) {
                    let (mut amx, mut vnni) = (vec![0f32; m * 16], vec![1f32; m * 16]);
                    // SAFETY: detect() found AVX512-VNNI and AMX is ready.
                    unsafe {
                        x86::group_zmm(&w, g, &xq, &mut amx, 16);
                        x86::group_zmm_vnni(&w, g, &xq, &mut vnni, 16);
                    }
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&amx), bits(&vnni), "{ty:?} m={m} group {g}");
                }
            }
        }
    }
    check::<i8>();
    check::<i16>();
}
