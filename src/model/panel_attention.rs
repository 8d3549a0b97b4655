//! Unmasked multi-head attention on host rows with [`PanelMatrix`]'s kernel: the vision
//! encoder's attention in the threaded browser build (where that kernel is the fast product).
//!
//! Each head's keys and values are packed once; then each task takes a block of query rows and,
//! head by head, computes its `[rows, T]` scores (in cache, never the whole `[H, S, T]` tensor),
//! their softmax and the product with the values, writing the heads side by side as
//! transformers' attention output `[S, H·d]`. The heads never get their own copies of the
//! queries: the kernel reads them in place, `H·d` values apart.

use super::dense::PanelMatrix;
use super::host_ops::softmax_row;
use super::par::{par_chunks, par_map};

/// Query rows per task.
const ROWS_PER_TASK: usize = 32;

/// Rows of `heads · d` values (head `h` in columns `h·d .. (h+1)·d`), row `i` at
/// `data[i · ld ..]`: queries, keys or values, alone or side by side in one wider matrix.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// The values, from row 0's first.
    pub data: &'a [f32],
    /// Distance between rows (≥ heads · d).
    pub ld: usize,
}

/// `softmax(q_h k_hᵀ / √d) v_h` for every head `h`, side by side: `s` rows of queries, `t`
/// of keys and of values; returns `[s, heads·d]` row-major.
pub fn attention_rows(
    q: Rows,
    k: Rows,
    v: Rows,
    [s, t]: [usize; 2],
    heads: usize,
    d: usize,
) -> Vec<f32> {
    let w = heads * d;
    for (name, r, n) in [("queries", q, s), ("keys", k, t), ("values", v, t)] {
        assert!(
            n == 0 || (r.ld >= w && r.data.len() >= (n - 1) * r.ld + w),
            "{name}: {n} rows of {w}, {} apart, in {} values",
            r.ld,
            r.data.len()
        );
    }
    let mut out = vec![0f32; s * w];
    if s == 0 || w == 0 || t == 0 {
        return out;
    }
    let packed: Vec<(PanelMatrix, PanelMatrix)> = par_map(heads, |h| {
        (
            PanelMatrix::from_rows(&k.data[h * d..], t, d, k.ld),
            PanelMatrix::from_cols(&v.data[h * d..], t, d, v.ld),
        )
    });
    let scale = 1.0 / (d as f32).sqrt();
    let q_ld = q.ld;
    par_chunks(&mut out, ROWS_PER_TASK * w, |task, out| {
        let rows = out.len() / w;
        let q = &q.data[task * ROWS_PER_TASK * q.ld..];
        let (ldp, ldo) = (packed[0].0.padded_width(), packed[0].1.padded_width());
        let mut scores = vec![0f32; rows * ldp];
        let mut o = vec![0f32; rows * ldo];
        for (h, (kp, vp)) in packed.iter().enumerate() {
            kp.product(&q[h * d..], q_ld, rows, &mut scores, ldp);
            scores
                .chunks_mut(ldp)
                .for_each(|row| softmax_row(&mut row[..t], scale));
            vp.product(&scores, ldp, rows, &mut o, ldo);
            for (dst, src) in out.chunks_mut(w).zip(o.chunks(ldo)) {
                dst[h * d..(h + 1) * d].copy_from_slice(&src[..d]);
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same attention in f64, one head and query at a time.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        s: usize,
        t: usize,
        h: usize,
        d: usize,
    ) -> Vec<f64> {
        let w = h * d;
        let mut out = vec![0f64; s * w];
        for hh in 0..h {
            for i in 0..s {
                let sc: Vec<f64> = (0..t)
                    .map(|j| {
                        (0..d)
                            .map(|e| q[i * w + hh * d + e] as f64 * k[j * w + hh * d + e] as f64)
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..d {
                    out[i * w + hh * d + c] = (0..t)
                        .map(|j| e[j] / z * v[j * w + hh * d + c] as f64)
                        .sum();
                }
            }
        }
        out
    }

    #[test]
    fn equals_attention_in_f64_on_ragged_shapes() {
        // Rows not a multiple of a task or a tile, keys not a multiple of a panel, a head
        // width not a multiple of a panel, and the vision encoder's head width.
        for (s, t, h, d) in [
            (1, 1, 1, 1),
            (37, 21, 3, 5),
            (70, 70, 2, 64),
            (5, 300, 4, 12),
        ] {
            let w = h * d;
            let f = |n: usize, a: usize| -> Vec<f32> {
                (0..n)
                    .map(|i| ((i * a % 199) as f32 - 99.0) / 61.0)
                    .collect()
            };
            let (q, k, v) = (f(s * w, 7919), f(t * w, 104_729), f(t * w, 15_485_863));
            let r = |data| Rows { data, ld: w };
            let got = attention_rows(r(&q[..]), r(&k[..]), r(&v[..]), [s, t], h, d);
            let want = reference(&q, &k, &v, s, t, h, d);
            // The same from one [t, 3w] matrix of queries, keys and values side by side.
            if s == t {
                let qkv: Vec<f32> = (0..s)
                    .flat_map(|i| [&q, &k, &v].map(|m| &m[i * w..(i + 1) * w]))
                    .flatten()
                    .copied()
                    .collect();
                let r = |o: usize| Rows {
                    data: &qkv[o..],
                    ld: 3 * w,
                };
                assert_eq!(attention_rows(r(0), r(w), r(2 * w), [s, t], h, d), got);
            }
            let err = got
                .iter()
                .zip(&want)
                .map(|(&a, b)| (a as f64 - b).abs())
                .fold(0f64, f64::max);
            assert!(err < 2e-6, "{s}×{t}, {h} heads of {d}: error {err:e}");
        }
        let e = Rows { data: &[], ld: 8 };
        assert!(attention_rows(e, e, e, [0, 0], 2, 4).is_empty());
    }
}
