//! Attention on host rows, a block of query rows at a time, on the CPU backends: unmasked
//! multi-head attention for the vision encoder ([`attention_rows`]), and grouped-query attention
//! with a causal or branch mask for the text decoder ([`attention_grouped`]).
//!
//! Each task takes a block of query rows and, head by head, computes its `[rows, T]` scores (in
//! cache, never the whole `[H, S, T]` tensor), their softmax and the product with the values,
//! writing the heads side by side as transformers' attention output `[S, H·d]`. The heads never
//! get their own copies of the queries: the kernels read them in place, `H·d` values apart. The
//! products run on [`PanelMatrix`]'s kernel where it is the fast one (the threaded browser build:
//! each head's keys and values packed once) and on `gemm` elsewhere (natively the encoder's
//! attention took half the time of flex's fused attention, 1 thread: 1324 → 705 ms in
//! bench/VLM_IMAGE.md).

use super::dense::{self, PanelMatrix, gemm_f32};
use super::host_ops::softmax_row;
use super::par::{par_chunks, par_map};

/// Which kernel multiplies the blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// [`PanelMatrix`]: keys and values packed once per head.
    Panel,
    /// `gemm` on the rows in place (it packs what it needs per call).
    Gemm,
}

impl Kernel {
    /// This build's fast kernel.
    pub const fn preferred() -> Kernel {
        if dense::preferred() {
            Kernel::Panel
        } else {
            Kernel::Gemm
        }
    }

    /// Query rows per task: the panel kernel's tiles are small; `gemm` repacks the head's keys
    /// and values on every call, so it gets more rows to amortize that over.
    const fn rows_per_task(self) -> usize {
        match self {
            Kernel::Panel => 32,
            Kernel::Gemm => 64,
        }
    }
}

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
    kernel: Kernel,
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
    let scale = 1.0 / (d as f32).sqrt();
    let (per_task, q_ld) = (kernel.rows_per_task(), q.ld);
    if kernel == Kernel::Gemm {
        par_chunks(&mut out, per_task * w, |task, out| {
            let rows = out.len() / w;
            let q = &q.data[task * per_task * q_ld..];
            let mut scores = vec![0f32; rows * t];
            for h in 0..heads {
                let (qh, kh, vh) = (&q[h * d..], &k.data[h * d..], &v.data[h * d..]);
                // SAFETY (both products): every pointer/stride pair stays inside its slice:
                // scores is [rows, t] row-major; the queries are `rows` rows of `d` values from
                // qh, q.ld apart; the keys (read as [d, t]) and the values ([t, d]) are `t` rows
                // of `d` values, k.ld / v.ld apart (checked above); out is [rows, w] row-major
                // and the head writes its `d` columns from h·d.
                unsafe {
                    gemm_f32(
                        [rows, t, d],
                        (scores.as_mut_ptr(), 1, t as isize),
                        (qh.as_ptr(), 1, q_ld as isize),
                        (kh.as_ptr(), k.ld as isize, 1),
                    );
                }
                scores.chunks_mut(t).for_each(|row| softmax_row(row, scale));
                unsafe {
                    gemm_f32(
                        [rows, d, t],
                        (out[h * d..].as_mut_ptr(), 1, w as isize),
                        (scores.as_ptr(), 1, t as isize),
                        (vh.as_ptr(), 1, v.ld as isize),
                    );
                }
            }
        });
        return out;
    }
    let packed: Vec<(PanelMatrix, PanelMatrix)> = par_map(heads, |h| {
        (
            PanelMatrix::from_rows(&k.data[h * d..], t, d, k.ld),
            PanelMatrix::from_cols(&v.data[h * d..], t, d, v.ld),
        )
    });
    par_chunks(&mut out, per_task * w, |task, out| {
        let rows = out.len() / w;
        let q = &q.data[task * per_task * q_ld..];
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

/// Which keys each of `s` queries sees when the queries are the last `s` of `t` positions
/// (`start = t − s` positions before them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visible {
    /// Every key (one query, or no mask).
    All,
    /// Keys up to its own position: query `i` sees `0..=start + i` (prefill).
    Causal,
    /// The `start` earlier keys and its own: the layer sweep's branches, all at one position.
    Branches,
}

impl Visible {
    /// The same as an additive mask `[s, t]` (0 where a query sees a key, −∞ elsewhere), for
    /// attention through tensor operations; `None` when every key is seen.
    pub fn additive(self, s: usize, t: usize) -> Option<Vec<f32>> {
        let start = t - s;
        let sees = |i: usize, j: usize| match self {
            Visible::All => true,
            Visible::Causal => j <= start + i,
            Visible::Branches => j < start || j == start + i,
        };
        (self != Visible::All).then(|| {
            (0..s * t)
                .map(|k| match sees(k / t, k % t) {
                    true => 0.0,
                    false => f32::NEG_INFINITY,
                })
                .collect()
        })
    }
}

/// Query rows per task of [`attention_grouped`]: enough to amortize a head's key and value
/// loads, few enough that a short prompt's heads still split between threads.
const GROUPED_ROWS: usize = 32;

/// Grouped-query attention on head-major rows, the text decoder's on the CPU backends:
/// queries `q` `[heads, s, d]`, keys and values `k`, `v` `[kv, t, d]` (query head `h` reads
/// key/value head `h / (heads / kv)`), the queries being the last `s` of the `t` positions, each
/// seeing the keys `visible` says. Returns `[s, heads·d]` row-major, heads side by side.
/// Scores are `q·k` and the softmax takes `1/√d` inside its exponent, as
/// [`attention_rows`]; tasks are (head, run of query rows) pairs.
pub fn attention_grouped(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    [heads, s, t, kv, d]: [usize; 5],
    visible: Visible,
) -> Vec<f32> {
    assert!(
        kv > 0 && heads.is_multiple_of(kv) && t >= s,
        "attention shapes"
    );
    assert!(q.len() == heads * s * d && k.len() == kv * t * d && v.len() == kv * t * d);
    let w = heads * d;
    let mut out = vec![0f32; s * w];
    if s == 0 || d == 0 {
        return out;
    }
    let (group, start) = (heads / kv, t - s);
    let scale = 1.0 / (d as f32).sqrt();
    let runs = s.div_ceil(GROUPED_ROWS);
    let task = |task: usize| {
        let (h, r0) = (task / runs, task % runs * GROUPED_ROWS);
        let rows = GROUPED_ROWS.min(s - r0);
        let qh = &q[(h * s + r0) * d..];
        let (kh, vh) = (&k[h / group * t * d..], &v[h / group * t * d..]);
        // Causal rows see no key after the run's last position: those scores are not made.
        let keys = match visible {
            Visible::Causal => start + r0 + rows,
            _ => t,
        };
        let mut scores = vec![0f32; rows * keys];
        let mut o = vec![0f32; rows * d];
        // SAFETY (both products): scores is [rows, keys] and o [rows, d] row-major; the
        // queries are `rows` rows of d values from qh (rows r0.. of head h, asserted sizes);
        // the keys, read as [d, keys], and the values, [keys, d], are the first keys ≤ t rows
        // of d values of head h / group.
        unsafe {
            gemm_f32(
                [rows, keys, d],
                (scores.as_mut_ptr(), 1, keys as isize),
                (qh.as_ptr(), 1, d as isize),
                (kh.as_ptr(), d as isize, 1),
            );
        }
        for (i, row) in scores.chunks_mut(keys).enumerate() {
            let own = start + r0 + i;
            match visible {
                Visible::All => softmax_row(row, scale),
                Visible::Causal => {
                    softmax_row(&mut row[..=own], scale);
                    row[own + 1..].fill(0.0);
                }
                Visible::Branches => {
                    for (j, x) in row.iter_mut().enumerate().skip(start) {
                        if j != own {
                            *x = f32::NEG_INFINITY;
                        }
                    }
                    softmax_row(row, scale);
                }
            }
        }
        unsafe {
            gemm_f32(
                [rows, d, keys],
                (o.as_mut_ptr(), 1, d as isize),
                (scores.as_ptr(), 1, keys as isize),
                (vh.as_ptr(), 1, d as isize),
            );
        }
        o
    };
    // A decoding step's few products are not worth waking threads for.
    let parts: Vec<Vec<f32>> = if heads * s * t * d < 1 << 18 {
        (0..heads * runs).map(task).collect()
    } else {
        par_map(heads * runs, task)
    };
    for (task, o) in parts.iter().enumerate() {
        let (h, r0) = (task / runs, task % runs * GROUPED_ROWS);
        for (i, row) in o.chunks_exact(d).enumerate() {
            out[(r0 + i) * w + h * d..][..d].copy_from_slice(row);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One query's attention in f64 over `t` keys of `d` values: `q(e)`, `k(j, e)`, `v(j, e)`
    /// its query, the keys and the values; keys `sees(j)` rejects get no weight.
    fn attend_f64(
        q: impl Fn(usize) -> f64,
        k: impl Fn(usize, usize) -> f64,
        v: impl Fn(usize, usize) -> f64,
        [t, d]: [usize; 2],
        sees: impl Fn(usize) -> bool,
    ) -> Vec<f64> {
        let sc: Vec<f64> = (0..t)
            .map(|j| match sees(j) {
                true => (0..d).map(|e| q(e) * k(j, e)).sum::<f64>() / (d as f64).sqrt(),
                false => f64::NEG_INFINITY,
            })
            .collect();
        let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        (0..d)
            .map(|c| (0..t).map(|j| e[j] / z * v(j, c)).sum())
            .collect()
    }

    /// The same attention in f64, one head and query at a time (heads side by side).
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
                let o = attend_f64(
                    |e| q[i * w + hh * d + e] as f64,
                    |j, e| k[j * w + hh * d + e] as f64,
                    |j, e| v[j * w + hh * d + e] as f64,
                    [t, d],
                    |_| true,
                );
                out[i * w + hh * d..][..d].copy_from_slice(&o);
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
            (130, 129, 3, 64),
        ] {
            let w = h * d;
            let f = |n: usize, a: usize| -> Vec<f32> {
                (0..n)
                    .map(|i| ((i * a % 199) as f32 - 99.0) / 61.0)
                    .collect()
            };
            let (q, k, v) = (f(s * w, 7919), f(t * w, 104_729), f(t * w, 15_485_863));
            let want = reference(&q, &k, &v, s, t, h, d);
            for kernel in [Kernel::Panel, Kernel::Gemm] {
                let r = |data| Rows { data, ld: w };
                let got = attention_rows(r(&q[..]), r(&k[..]), r(&v[..]), [s, t], h, d, kernel);
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
                    assert_eq!(
                        attention_rows(r(0), r(w), r(2 * w), [s, t], h, d, kernel),
                        got
                    );
                }
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(&a, b)| (a as f64 - b).abs())
                    .fold(0f64, f64::max);
                assert!(
                    err < 2e-6,
                    "{kernel:?}, {s}×{t}, {h} heads of {d}: error {err:e}"
                );
            }
        }
        let e = Rows { data: &[], ld: 8 };
        for kernel in [Kernel::Panel, Kernel::Gemm] {
            assert!(attention_rows(e, e, e, [0, 0], 2, 4, kernel).is_empty());
        }
    }

    /// [`attention_grouped`] against the same attention in f64 with explicit masks.
    #[test]
    fn grouped_attention_equals_masked_attention_in_f64() {
        for (s, t, heads, kv, d, visible) in [
            (1, 1, 1, 1, 4, Visible::All),
            (1, 9, 6, 2, 8, Visible::All),
            (7, 7, 4, 2, 8, Visible::Causal),
            (40, 45, 9, 3, 16, Visible::Causal),
            (5, 12, 3, 3, 8, Visible::Branches),
            (35, 50, 2, 1, 8, Visible::Branches),
        ] {
            let f = |n: usize, a: usize| -> Vec<f32> {
                (0..n)
                    .map(|i| ((i * a % 199) as f32 - 99.0) / 61.0)
                    .collect()
            };
            let (q, k, v) = (
                f(heads * s * d, 7919),
                f(kv * t * d, 104_729),
                f(kv * t * d, 15_485_863),
            );
            let got = attention_grouped(&q, &k, &v, [heads, s, t, kv, d], visible);
            let start = t - s;
            let sees = |i: usize, j: usize| match visible {
                Visible::All => true,
                Visible::Causal => j <= start + i,
                Visible::Branches => j < start || j == start + i,
            };
            let mut err = 0f64;
            for h in 0..heads {
                let kh = h / (heads / kv);
                for i in 0..s {
                    let want = attend_f64(
                        |e| q[(h * s + i) * d + e] as f64,
                        |j, e| k[(kh * t + j) * d + e] as f64,
                        |j, e| v[(kh * t + j) * d + e] as f64,
                        [t, d],
                        |j| sees(i, j),
                    );
                    for (c, want) in want.iter().enumerate() {
                        err = err.max((got[i * heads * d + h * d + c] as f64 - want).abs());
                    }
                }
            }
            assert!(
                err < 2e-6,
                "{s}×{t}, {heads}/{kv} heads of {d}, {visible:?}: error {err:e}"
            );
        }
    }

    /// Times both kernels at the vision encoder's shape (`cargo test --release --lib
    /// attention_speed -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn attention_speed() {
        let (s, h, d) = (1024, 12, 64);
        let w = h * d;
        let x: Vec<f32> = (0..s * 3 * w)
            .map(|i| ((i * 7919 % 199) as f32 - 99.0) / 61.0)
            .collect();
        let r = |o: usize| Rows {
            data: &x[o..],
            ld: 3 * w,
        };
        let mut rows = x[..64 * 1024].to_vec();
        let t0 = std::time::Instant::now();
        for _ in 0..12 * 16 {
            rows.chunks_mut(1024).for_each(|r| softmax_row(r, 0.125));
        }
        println!(
            "softmax of 12·1024 rows of 1024: {:.1} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
        for kernel in [Kernel::Panel, Kernel::Gemm] {
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t0 = std::time::Instant::now();
                std::hint::black_box(attention_rows(r(0), r(w), r(2 * w), [s, s], h, d, kernel));
                best = best.min(t0.elapsed().as_secs_f64());
            }
            let flop = 4.0 * (s * s * w) as f64;
            println!(
                "{kernel:?}: {:.1} ms, {:.1} GFLOP/s",
                best * 1e3,
                flop / best / 1e9
            );
        }
    }
}
