//! Benchmarks shared by `taskvec bench` and the page: prefill (capturing every layer), greedy
//! decode, and the layer sweep (fast and naive), each the median of several runs after a
//! warm-up. Every timed run reads its result back, so lazy backends cannot hide work. Async
//! (reads are async in the browser) and clock-agnostic (`now` returns milliseconds).

use crate::error::{Error, Result};
use crate::loader::LoadedModel;
use crate::model::{Intervention, KvCache, argmax_last, read_f32};
use crate::taskvec::{Engine, Prompt, Task, TaskVector};

#[cfg(feature = "wgpu")]
mod fused;
mod image;
#[cfg(feature = "wgpu")]
pub use fused::{FusedCase, fused_check, fused_shapes};
pub use image::{ApplyEstimate, ImageBenchReport, estimate_apply, image_bench};

/// Benchmark figures.
#[derive(Debug, serde::Serialize)]
pub struct BenchReport {
    /// Backend name.
    pub backend: String,
    /// Prefill throughput, tokens per second (residual captured at every layer).
    pub prefill_tok_s: f64,
    /// Greedy decoding, milliseconds per token.
    pub decode_ms_per_token: f64,
    /// Fast layer sweep over all layers for one query, ms.
    pub sweep_ms: f64,
    /// Naive sweep (one full patched forward per layer), ms (NaN, JSON `null`, when skipped).
    pub naive_sweep_ms: f64,
    /// One patched forward of the query, ms (the fast sweep's goal is ≤ 1.5× this).
    pub patched_forward_ms: f64,
    /// Prompt length used for prefill.
    pub prefill_tokens: usize,
    /// Tokens decoded per run.
    pub decode_tokens: usize,
    /// Timed runs per figure (median reported).
    pub runs: usize,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the benchmark on a loaded model; `now()` is a clock in milliseconds.
pub async fn bench(
    m: &LoadedModel,
    backend: &str,
    prefill: usize,
    decode: usize,
    runs: usize,
    naive_sweep: bool,
    now: &dyn Fn() -> f64,
) -> Result<BenchReport> {
    if prefill < 2 || runs == 0 {
        return Err(Error::model("bench needs --prefill ≥ 2 and --runs ≥ 1"));
    }
    // A realistic prompt: few-shot Country-Capital demonstrations, cut to `prefill` tokens.
    let task = Task::builtin("country_capital")?;
    let refs: Vec<&crate::taskvec::Example> = task.examples.iter().collect();
    let text = Prompt::few_shot(&refs, &task.examples[0].input).text;
    let mut ids = m.tokenizer.encode(&text)?;
    while ids.len() < prefill {
        ids.extend_from_within(..);
    }
    ids.truncate(prefill);
    let model = &m.model;
    let layers = model.num_layers();
    let mut t = Vec::new();
    for run in 0..=runs {
        let s = now();
        let x = model.embed(&ids, &[])?;
        let iv = Intervention {
            capture: vec![ids.len() - 1],
            ..Default::default()
        };
        let o = model.forward(x, KvCache::new(layers), &iv)?;
        read_f32(o.hidden.expect("captured")).await?;
        read_f32(o.logits).await?;
        if run > 0 {
            t.push(now() - s); // run 0 is the warm-up
        }
    }
    let prefill_ms = median(t);
    let short: Vec<u32> = ids[..16.min(ids.len())].to_vec();
    // Decode: prefill 16 tokens, then time `decode` greedy steps (one warm-up run first).
    let mut per_token = Vec::new();
    for run in 0..=runs {
        let o = model.forward(
            model.embed(&short, &[])?,
            KvCache::new(layers),
            &Intervention::default(),
        )?;
        let (mut logits, mut cache) = (o.logits, o.cache);
        let s = now();
        for _ in 0..decode {
            let next = argmax_last(logits).await?;
            let o = model.forward(model.embed(&[next], &[])?, cache, &Intervention::default())?;
            logits = o.logits;
            cache = o.cache;
        }
        read_f32(logits).await?;
        if run > 0 {
            per_token.push((now() - s) / decode.max(1) as f64);
        }
    }
    let eng = Engine::new(m);
    let q = Prompt::zero_shot(&task.examples[1].input);
    let states = eng
        .last_states(&Prompt::few_shot(&refs[2..7], &task.examples[1].input))
        .await?;
    let v = TaskVector {
        layers: states[1..].to_vec(),
    };
    let (mut sweep, mut naive, mut patched) = (Vec::new(), Vec::new(), Vec::new());
    let (qids, _) = m.prompt(&q.text, &[])?;
    for run in 0..=runs {
        let s = now();
        eng.sweep(&q, &v).await?;
        let a = now();
        if naive_sweep {
            eng.sweep_naive(&q, &v).await?;
        }
        let b = now();
        let iv = Intervention {
            patches: vec![crate::model::Patch::replace(
                layers / 2,
                qids.len() - 1,
                v.layers[layers / 2].clone(),
            )],
            ..Default::default()
        };
        let o = model.forward(model.embed(&qids, &[])?, KvCache::new(layers), &iv)?;
        read_f32(o.logits).await?;
        if run > 0 {
            sweep.push(a - s);
            naive.push(b - a);
            patched.push(now() - b);
        }
    }
    let (sweep_ms, patched_forward_ms) = (median(sweep), median(patched));
    // Not measured: NaN, which JSON shows as null.
    let naive_sweep_ms = if naive_sweep { median(naive) } else { f64::NAN };
    Ok(BenchReport {
        backend: backend.into(),
        prefill_tok_s: prefill as f64 / (prefill_ms / 1e3),
        decode_ms_per_token: median(per_token),
        sweep_ms,
        naive_sweep_ms,
        patched_forward_ms,
        prefill_tokens: prefill,
        decode_tokens: decode,
        runs,
    })
}

/// What the device's basic operations cost: where a forward's time goes on a backend whose
/// per-operation overhead, not arithmetic, may dominate (WebGPU in the browser).
#[derive(Debug, serde::Serialize)]
pub struct ProbeReport {
    /// One tiny op and its read back to the host, ms (a forward pays this once).
    pub readback_ms: f64,
    /// Each of 200 chained elementwise ops on a 576-value row, ms (read excluded).
    pub elementwise_op_ms: f64,
    /// `[128, 576] · [576, 1536]` (SmolLM2's gate projection on 128 rows), ms (read excluded).
    pub matmul_ms: f64,
    /// Its throughput, GFLOP/s.
    pub matmul_gflops: f64,
    /// `[1, 576] · [576, 1536]` (the same product for one decoded token), ms (read excluded).
    pub matvec_ms: f64,
    /// Dequantizing that matrix from Q4_1 device blocks, ms (read excluded).
    pub dequant_q4_1_ms: f64,
}

/// A deterministic `[rows, cols]` matrix of values in [-0.5, 0.5) for timing products.
pub(crate) fn probe_matrix(
    rows: usize,
    cols: usize,
    device: &burn::tensor::Device,
) -> burn::tensor::Tensor<2> {
    let v: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 1000.0)
        .collect();
    burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(v, [rows, cols]), device)
}

/// Measures [`ProbeReport`] on `device` (median of `runs` after a warm-up).
pub async fn probe(
    device: &burn::tensor::Device,
    runs: usize,
    now: &dyn Fn() -> f64,
) -> Result<ProbeReport> {
    use crate::model::packed::PackedMatrix;
    use crate::weights::quant::{GgmlType, quantize};
    let mk = |rows, cols| probe_matrix(rows, cols, device);
    let (row, x, w, x1) = (mk(1, 576), mk(128, 576), mk(576, 1536), mk(1, 576));
    let wq = {
        let v: Vec<f32> = (0..1536 * 576)
            .map(|i| ((i * 104_729 % 2000) as f32 - 1000.0) / 1000.0)
            .collect();
        PackedMatrix::new(
            GgmlType::Q4_1,
            1536,
            576,
            &quantize(GgmlType::Q4_1, &v)?,
            device,
        )?
    };
    let mut t = [vec![], vec![], vec![], vec![], vec![]];
    for run in 0..=runs {
        let timed = [
            now(),
            {
                read_f32(row.clone().slice([0..1, 0..1]) + 1.0).await?;
                now()
            },
            {
                let mut y = row.clone();
                for _ in 0..200 {
                    y = y + 1.0;
                }
                read_f32(y.slice([0..1, 0..1])).await?;
                now()
            },
            {
                read_f32(x.clone().matmul(w.clone()).slice([0..1, 0..1])).await?;
                now()
            },
            {
                read_f32(x1.clone().matmul(w.clone()).slice([0..1, 0..1])).await?;
                now()
            },
            {
                read_f32(wq.dequantize_rows(0, 1536).slice([0..1, 0..1])).await?;
                now()
            },
        ];
        if run > 0 {
            for (k, v) in t.iter_mut().enumerate() {
                v.push(timed[k + 1] - timed[k]);
            }
        }
    }
    let [rb, ew, mm, mv, dq] = t.map(median);
    let less = |v: f64| (v - rb).max(0.0);
    Ok(ProbeReport {
        readback_ms: rb,
        elementwise_op_ms: less(ew) / 200.0,
        matmul_ms: less(mm),
        matmul_gflops: 2.0 * 128.0 * 576.0 * 1536.0 / (less(mm).max(1e-3) * 1e6),
        matvec_ms: less(mv),
        dequant_q4_1_ms: less(dq),
    })
}
