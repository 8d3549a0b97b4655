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
fn probe_matrix(
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

/// Where the time from an uploaded image to its answer goes (`taskvec bench --image`, the
/// page's image benchmark). Every figure is the median of `runs` after a warm-up, on an image
/// whose features are not cached.
#[derive(Debug, serde::Serialize)]
pub struct ImageBenchReport {
    /// Backend name.
    pub backend: String,
    /// Decoding, resizing and normalizing the image file, ms.
    pub preprocess_ms: f64,
    /// Vision encoder + connector on the preprocessed image (features read back), ms.
    pub vision_ms: f64,
    /// Its throughput, GFLOP/s (matrix products and attention of the encoder).
    pub vision_gflops: f64,
    /// Tokens the image takes in the prompt.
    pub image_tokens: usize,
    /// Tokens of the zero-shot image prompt.
    pub prompt_tokens: usize,
    /// Prefill of that prompt from the image's features, ms.
    pub image_prefill_ms: f64,
    /// From the image file to the first answer token (preprocess, encode, prefill), ms.
    pub first_token_ms: f64,
    /// The page's "apply" (an instruction vector): patched, zero-shot and in-context answers
    /// of `max_tokens` tokens and the per-layer sweep, ms.
    pub apply_ms: f64,
    /// Tokens per answer in `apply_ms`.
    pub max_tokens: usize,
    /// What [`estimate_apply`] predicts for `apply_ms` on this device (the page's model card).
    pub estimated_apply_ms: f64,
    /// Timed runs per figure (median reported).
    pub runs: usize,
}

/// Multiply-adds ×2 of the vision encoder on one image: the layers' products and attention.
fn vision_flops(v: &crate::model::config::VisionConfig) -> f64 {
    let (n, d, f) = (
        v.patches_per_side().pow(2) as f64,
        v.hidden_size as f64,
        v.intermediate_size as f64,
    );
    let per_layer = 2.0 * n * (4.0 * d * d + 2.0 * d * f) + 4.0 * n * n * d;
    per_layer * v.num_layers as f64
}

/// Measures [`ImageBenchReport`] for the encoded image file `image` (its features are
/// dropped from the model's cache before each run); `now()` is a clock in milliseconds.
pub async fn image_bench(
    m: &LoadedModel,
    backend: &str,
    image: &[u8],
    runs: usize,
    max_tokens: usize,
    now: &dyn Fn() -> f64,
) -> Result<ImageBenchReport> {
    use crate::taskvec::{Input, extract::ExtractRequest, extract::extract_file};
    let v = m.model.config.vision.as_ref().ok_or_else(|| {
        Error::model("this model has no vision encoder: the image benchmark needs --mmproj")
    })?;
    if runs == 0 {
        return Err(Error::model("bench needs --runs ≥ 1"));
    }
    let model = &m.model;
    let input = Input::Image {
        bytes: image.to_vec(),
        label: "bench".into(),
    };
    let q = Prompt::zero_shot(&input);
    let (ids, _) = m.prompt(&q.text, &[image])?;
    let eng = Engine::new(m);
    let req = ExtractRequest {
        task: Task::builtin("country_capital")?,
        spec: crate::taskvec::Spec::Instruction,
        prompts: 1,
        seed: 0,
        read_at: crate::taskvec::ReadAt::Demo,
        sweep: false,
        created_at: String::new(),
    };
    let f = extract_file(&eng, &req, |_, _| {}).await?;
    let mut t = [vec![], vec![], vec![], vec![], vec![]];
    for run in 0..=runs {
        let t0 = now();
        let px = crate::preprocess::load_image(image, v, m.longest_edge)?;
        let t1 = now();
        let feats = model.image_features(&px)?;
        read_f32(feats.clone()).await?;
        let t2 = now();
        let x = model.embed_features(&ids, &[feats])?;
        let o = model.forward(
            x,
            KvCache::new(model.num_layers()),
            &Intervention::default(),
        )?;
        argmax_last(o.logits).await?;
        let t3 = now();
        m.features.clear();
        eng.apply_report(&f, &input, &Default::default(), max_tokens)
            .await?;
        let t4 = now();
        if run > 0 {
            for (k, d) in [t1 - t0, t2 - t1, t3 - t2, t3 - t0, t4 - t3]
                .into_iter()
                .enumerate()
            {
                t[k].push(d);
            }
        }
    }
    let [pre, vis, prefill, first, apply] = t.map(median);
    let estimate = estimate_apply(m, now).await?.map_or(f64::NAN, |e| e.ms);
    Ok(ImageBenchReport {
        backend: backend.into(),
        preprocess_ms: pre,
        vision_ms: vis,
        vision_gflops: vision_flops(v) / (vis.max(1e-3) * 1e6),
        image_tokens: v.tokens_per_image(),
        prompt_tokens: ids.len(),
        image_prefill_ms: prefill,
        first_token_ms: first,
        apply_ms: apply,
        max_tokens,
        estimated_apply_ms: estimate,
        runs,
    })
}

/// The page's estimate of an image apply before one has run: the arithmetic of
/// [`ImageBenchReport::apply_ms`] divided by a measured matrix-product rate.
#[derive(Debug, serde::Serialize)]
pub struct ApplyEstimate {
    /// Arithmetic of one image apply, GFLOP (vision encoder; three prompts, 24 decoded tokens
    /// and the sweep through the text model).
    pub gflop: f64,
    /// Rate of a `[1024, 768] · [768, 768]` product (a vision layer's shape) on this device,
    /// GFLOP/s.
    pub gflops: f64,
    /// Their quotient times the measured share of other work (`OTHER_WORK`, 2), ms.
    pub ms: f64,
}

/// How much longer an apply takes than its products alone would at the measured rate:
/// normalization, softmax, GELU, attention's smaller products and reads. Measured on a 2-core
/// x86 machine with the random real-size SmolVLM-256M: 1.6× (wasm, 1 thread), 2.2× (wasm, 2
/// threads), 2.8× (native); 2 is their middle.
const OTHER_WORK: f64 = 2.0;

/// Estimates an image apply on `m` (None for a text-only model): see [`ApplyEstimate`].
pub async fn estimate_apply(
    m: &LoadedModel,
    now: &dyn Fn() -> f64,
) -> Result<Option<ApplyEstimate>> {
    let Some(v) = m.model.config.vision.as_ref() else {
        return Ok(None);
    };
    let c = &m.model.config.text;
    let (d, f) = (c.hidden_size as f64, c.intermediate_size as f64);
    let kv = (c.num_kv_heads * c.head_dim) as f64;
    let per_token = c.num_layers as f64 * (2.0 * d * d + 2.0 * d * kv + 3.0 * d * f);
    // Three prompts of the image + ~10 text tokens (the in-context one ~40 more), 3 × 8
    // decoded tokens, and the sweep's one branch row per layer; the LM head on ~30 rows.
    let tokens = 3.0 * (v.tokens_per_image() as f64 + 10.0) + 40.0 + 24.0 + c.num_layers as f64;
    let flop = vision_flops(v) + 2.0 * per_token * tokens + 2.0 * 60.0 * d * c.vocab_size as f64;
    let dev = m.model.text.device();
    let (a, b) = (probe_matrix(1024, 768, dev), probe_matrix(768, 768, dev));
    let mut t = Vec::new();
    for run in 0..3 {
        let s = now();
        read_f32(a.clone().matmul(b.clone()).slice([0..1, 0..1])).await?;
        if run > 0 {
            t.push(now() - s);
        }
    }
    let gflops = 2.0 * 1024.0 * 768.0 * 768.0 / (median(t).max(1e-3) * 1e6);
    Ok(Some(ApplyEstimate {
        gflop: flop / 1e9,
        gflops,
        ms: OTHER_WORK * flop / (gflops * 1e6),
    }))
}

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

/// Checks [`crate::model::packed::PackedMatrix::matmul_t_fused`] against
/// [`crate::model::packed::PackedMatrix::matmul_t_reference`] on `device` for each block type and
/// each `(m, n, k)` shape, timing both (median of `runs` after one warm-up; 0 runs: no timing).
#[cfg(feature = "wgpu")]
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
