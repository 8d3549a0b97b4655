//! `taskvec bench`: prefill (capturing every layer), greedy decode, and the layer sweep (fast
//! and naive), each the median of several runs after a warm-up. Every timed run reads its
//! result back, so lazy backends cannot hide work.

use std::time::Instant;

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
    /// Naive sweep (one full patched forward per layer), ms.
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

fn time<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    f()?; // warm-up
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(t))
}

/// Runs the benchmark on a loaded model.
pub fn bench(
    m: &LoadedModel,
    backend: &str,
    prefill: usize,
    decode: usize,
    runs: usize,
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
    let prefill_ms = time(runs, || {
        let x = model.embed(&ids, &[])?;
        let iv = Intervention {
            capture: vec![ids.len() - 1],
            ..Default::default()
        };
        let o = model.forward(x, KvCache::new(layers), &iv)?;
        pollster::block_on(read_f32(o.hidden.expect("captured")))?;
        pollster::block_on(read_f32(o.logits)).map(|_| ())
    })?;
    let short: Vec<u32> = ids[..16.min(ids.len())].to_vec();
    // Decode: prefill 16 tokens, then time `decode` greedy steps (one warm-up run first).
    let decode_run = || -> Result<f64> {
        let o = model.forward(
            model.embed(&short, &[])?,
            KvCache::new(layers),
            &Intervention::default(),
        )?;
        let (mut logits, mut cache) = (o.logits, o.cache);
        let s = Instant::now();
        for _ in 0..decode {
            let next = pollster::block_on(argmax_last(logits))?;
            let o = model.forward(model.embed(&[next], &[])?, cache, &Intervention::default())?;
            logits = o.logits;
            cache = o.cache;
        }
        pollster::block_on(read_f32(logits))?;
        Ok(s.elapsed().as_secs_f64() * 1e3 / decode.max(1) as f64)
    };
    decode_run()?;
    let per_token = (0..runs)
        .map(|_| decode_run())
        .collect::<Result<Vec<_>>>()?;
    let eng = Engine::new(m);
    let q = Prompt::zero_shot(&task.examples[1].input);
    let states = pollster::block_on(
        eng.last_states(&Prompt::few_shot(&refs[2..7], &task.examples[1].input)),
    )?;
    let v = TaskVector {
        layers: states[1..].to_vec(),
    };
    let sweep_ms = time(runs, || pollster::block_on(eng.sweep(&q, &v)).map(|_| ()))?;
    let naive_sweep_ms = time(runs, || {
        pollster::block_on(eng.sweep_naive(&q, &v)).map(|_| ())
    })?;
    let patched_forward_ms = time(runs, || {
        let (qids, _) = m.prompt(&q.text, &[])?;
        let iv = Intervention {
            patches: vec![crate::model::Patch {
                layer: layers / 2,
                position: qids.len() - 1,
                vector: v.layers[layers / 2].clone(),
            }],
            ..Default::default()
        };
        let o = model.forward(model.embed(&qids, &[])?, KvCache::new(layers), &iv)?;
        pollster::block_on(read_f32(o.logits)).map(|_| ())
    })?;
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
