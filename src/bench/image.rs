//! The image path timed: vision encoder, image prompt prefill, first answer token and the
//! page's apply on one uploaded image; and the page's estimate of that time from a probe.

use super::{median, probe_matrix};
use crate::error::{Error, Result};
use crate::loader::LoadedModel;
use crate::model::dense;
use crate::model::device::{download, on_host};
use crate::model::vision::EncoderPhases;
use crate::model::{Intervention, KvCache, argmax_last, read_f32};
use crate::taskvec::{Engine, Prompt, Task};

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
    /// Where one more encoding's time goes (CPU backends; `None` on WebGPU, whose queue the
    /// clock does not wait for).
    pub vision_phases: Option<EncoderPhases>,
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
    let vision_phases = match (&model.vision, on_host(model.text.device())) {
        (Some(vm), true) => {
            let px = crate::preprocess::load_image(image, v, m.longest_edge)?;
            Some(vm.encode_phases(&px, now)?)
        }
        _ => None,
    };
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
        vision_phases,
    })
}

/// The page's estimate of an image apply before one has run: the arithmetic of
/// [`ImageBenchReport::apply_ms`] divided by a measured matrix-product rate.
#[derive(Debug, serde::Serialize)]
pub struct ApplyEstimate {
    /// Arithmetic of one image apply, GFLOP (vision encoder; two prompts, 24 decoded tokens
    /// and the sweep through the text model).
    pub gflop: f64,
    /// Rate of a `[1024, 768] · [768, 768]` product (a vision layer's shape) on this device,
    /// with the product its dense weights use (the panel kernel in the threaded browser
    /// build), GFLOP/s.
    pub gflops: f64,
    /// Their quotient times the measured share of other work (`OTHER_WORK`), ms.
    pub ms: f64,
}

/// How much longer an apply takes than its products alone would at the measured rate:
/// normalization, softmax, GELU, attention's products, the text model's quantized products and
/// reads. Measured on a 2-core x86 machine with the random real-size SmolVLM-256M
/// (bench/VLM_IMAGE.md, 2026-12-07, after the apply's answers came to share one prefill):
/// 1.23× (1 thread) and 1.40× (2 threads) in the page's threaded build, the rate being its
/// panel kernel's; 1.08× in the single-threaded fallback build; natively 1.9–2.2× then, 1.46×
/// (1 and 2 threads) once the encoder's attention ran blocked on gemm (whose f32 products are
/// so fast that the rest weighs more).
const OTHER_WORK: f64 = if cfg!(all(target_arch = "wasm32", feature = "threads")) {
    1.3
} else if cfg!(target_arch = "wasm32") {
    1.1
} else {
    1.5
};

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
    // Two prompts of the image + ~10 text tokens (the query, whose prefill the patched and
    // zero-shot answers and the sweep share, and the in-context one with ~40 more), 3 × 8
    // decoded tokens, and the sweep's one branch row per layer; the LM head on ~30 rows.
    let tokens = 2.0 * (v.tokens_per_image() as f64 + 10.0) + 40.0 + 24.0 + c.num_layers as f64;
    let flop = vision_flops(v) + 2.0 * per_token * tokens + 2.0 * 60.0 * d * c.vocab_size as f64;
    let dev = m.model.text.device();
    let (a, b) = (probe_matrix(1024, 768, dev), probe_matrix(768, 768, dev));
    // The product the encoder's weights use: the panel kernel where the build prefers it.
    let panels = (dense::preferred() && on_host(dev)).then(|| {
        let w = download(b.clone());
        (
            dense::PanelMatrix::from_out_in(&w, 768, 768),
            download(a.clone()),
        )
    });
    let mut t = Vec::new();
    for run in 0..3 {
        let s = now();
        match &panels {
            Some((w, x)) => {
                std::hint::black_box(w.matmul(x, 1024));
            }
            None => {
                read_f32(a.clone().matmul(b.clone()).slice([0..1, 0..1])).await?;
            }
        }
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
