//! Data parallelism for taskvec's own CPU kernels: rayon's pool natively and in the browser's
//! threaded build, a plain loop in the single-threaded wasm build.

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
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
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
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    }
    #[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
    (0..n).map(f).collect()
}

/// Runs `f` on one of the pool's threads (at once if this is one), so that the parallel loops
/// inside split their work between the pool's threads directly. From any other thread each loop
/// is handed to the pool and waited for, two thread switches per loop: in a decoding step's
/// hundreds of small products that cost as much as the products themselves.
pub fn pooled<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    if rayon::current_thread_index().is_none() {
        return rayon::scope(|_| f());
    }
    f()
}
