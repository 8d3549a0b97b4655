//! Data parallelism for taskvec's own CPU kernels. Natively a pool whose idle threads spin
//! briefly (a `pause` loop) and then sleep on a futex ([`micropool`]): a decoding step runs
//! hundreds of products ~50 µs apart, and rayon's idle loop (`sched_yield` rounds, then a futex
//! sleep and wake per product) cost ~14 % of decoding in profiles. The calling thread takes part
//! in the work. In the browser's threaded build rayon's pool (Web Workers); in the
//! single-threaded wasm build a plain loop.

/// Runs `f(index, chunk)` over `chunk`-sized pieces of `data`, in parallel where threads exist.
pub fn par_chunks<T: Send>(
    data: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    // One piece: no trip through the pool (waking its threads costs more than small work).
    if data.len() <= chunk {
        if !data.is_empty() {
            f(0, data);
        }
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    match native::pool() {
        Some(pool) => native::split(pool, data, chunk, 0, &f),
        None => data
            .chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c)),
    }
    #[cfg(all(target_arch = "wasm32", feature = "threads"))]
    {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
    #[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
    data.chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| f(i, c));
}

/// `(0..n).map(f)`, in parallel where threads exist.
pub fn par_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    if n <= 1 {
        return (0..n).map(f).collect();
    }
    let mut slots: Vec<Option<T>> = (0..n).map(|_| None).collect();
    par_chunks(&mut slots, 1, |i, slot| slot[0] = Some(f(i)));
    slots
        .into_iter()
        .map(|s| s.expect("par_map: every index ran"))
        .collect()
}

/// Runs `f` on one of rayon's threads (at once if this is one), so that the parallel loops of
/// burn's flex backend inside split their work between rayon's threads directly. From any other
/// thread each of flex's loops is handed to rayon's pool and waited for, two thread switches per
/// loop. taskvec's own loops ([`par_chunks`], [`par_map`]) natively run on their own pool, which
/// the calling thread joins wherever it is.
pub fn pooled<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    if rayon::current_thread_index().is_none() {
        return rayon::scope(|_| f());
    }
    f()
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::sync::OnceLock;

    use micropool::{ThreadPool, ThreadPoolBuilder};

    /// Idle spin before a worker sleeps, in `pause` rounds (~100-200 µs on current x86): longer
    /// than the host work between two products of a decoding step, far shorter than a pause
    /// between requests.
    const SPIN_ROUNDS: usize = 12000;

    /// The pool: one worker fewer than rayon's thread count (which follows `RAYON_NUM_THREADS`,
    /// else the machine's cores), beside the calling thread; none for one thread.
    pub(super) fn pool() -> Option<&'static ThreadPool> {
        static POOL: OnceLock<Option<ThreadPool>> = OnceLock::new();
        POOL.get_or_init(|| {
            let workers = rayon::current_num_threads().saturating_sub(1);
            (workers > 0).then(|| {
                ThreadPoolBuilder::default()
                    .num_threads(workers)
                    .idle_spin_cycles(SPIN_ROUNDS)
                    .build()
            })
        })
        .as_ref()
    }

    /// [`super::par_chunks`] by halves: each split hands its second half to an idle thread.
    pub(super) fn split<T: Send>(
        pool: &ThreadPool,
        data: &mut [T],
        chunk: usize,
        first: usize,
        f: &(impl Fn(usize, &mut [T]) + Sync),
    ) {
        let pieces = data.len().div_ceil(chunk);
        if pieces <= 1 {
            f(first, data);
            return;
        }
        let half = pieces / 2;
        let (a, b) = data.split_at_mut(half * chunk);
        pool.join(
            || split(pool, a, chunk, first, f),
            || split(pool, b, chunk, first + half, f),
        );
    }
}
