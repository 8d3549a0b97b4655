//! Benchmarks shared by `taskvec bench` and the page: prefill (capturing every layer), greedy
//! decode, and the layer sweep (fast and naive), each the median of several runs after a
//! warm-up. Every timed run reads its result back, so lazy backends cannot hide work. Async
//! (reads are async in the browser) and clock-agnostic (`now` returns milliseconds).

use crate::error::{Error, Result};
use crate::loader::LoadedModel;
use crate::model::{Intervention, KvCache, argmax_last, read_f32};
use crate::taskvec::{Engine, Prompt, Task, TaskVector};

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
    /// Naive sweep (one full patched forward per layer), ms (0 when skipped).
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

fn median(mut v: Vec<f64>) -> f64 {
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
            patches: vec![crate::model::Patch {
                layer: layers / 2,
                position: qids.len() - 1,
                vector: v.layers[layers / 2].clone(),
            }],
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
    let (sweep_ms, naive_sweep_ms, patched_forward_ms) =
        (median(sweep), median(naive), median(patched));
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
