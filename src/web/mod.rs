//! The WebAssembly API (wasm-bindgen): a thin shell over the library for the page's worker.
//! Data crosses as plain JS objects (serde-wasm-bindgen); errors become JS exceptions with the
//! library's message. The model itself ([`WebModel`]) is here, with the page's checks (the
//! dense-kernel check, timing); the other parts of the API have a file each: [`gpu`] (WebGPU
//! device and limits), [`inputs`] (the page's requests), [`vectors`] (vector files), [`tasks`]
//! (menus).

mod gpu;
mod inputs;
mod tasks;
mod vectors;

#[cfg(feature = "wgpu")]
use gpu::check_webgpu_room;
use gpu::device;
use inputs::{ApplyIn, TableIn, TaskIn};

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::loader::{LoadedModel, ModelFiles, load_with};
use crate::model::device::Backend;
use crate::taskvec::dataset::PairedTask;
use crate::taskvec::extract::{ExtractRequest, extract_file};
use crate::taskvec::protocol::evaluate_at;
use crate::taskvec::{Engine, Extraction, Prompt, Row, TableRequest, VectorFile, run_table};

fn js_err(e: Error) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()))
}

fn from_js<T: for<'de> Deserialize<'de>>(v: JsValue) -> Result<T, JsError> {
    serde_wasm_bindgen::from_value(v).map_err(|e| JsError::new(&format!("bad request: {e}")))
}

/// Installs the panic hook (panics abort the instance; the library returns errors instead).
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The threaded build's pool: `await initThreadPool(n)` once, before any model call.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// This build's CPU threads: the rayon pool's size in the threaded build, else 1.
#[wasm_bindgen(js_name = cpuThreads)]
pub fn cpu_threads() -> usize {
    #[cfg(feature = "threads")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "threads"))]
    1
}

/// The limits the library enforces on what the page sends, for the page to check before it
/// reads a file: `{ image_bytes, vector_bytes, max_prompts, max_examples }`.
#[wasm_bindgen]
pub fn limits() -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Limits {
        /// An image file's size ([`crate::preprocess::decode`] refuses more).
        image_bytes: usize,
        /// A vector file's size ([`VectorFile::from_json`] refuses more).
        vector_bytes: usize,
        /// Extraction prompts per vector.
        max_prompts: usize,
        /// Examples per task.
        max_examples: usize,
    }
    to_js(&Limits {
        image_bytes: crate::preprocess::MAX_IMAGE_BYTES,
        vector_bytes: crate::taskvec::format::MAX_BYTES,
        max_prompts: crate::taskvec::engine::MAX_PROMPTS,
        max_examples: crate::taskvec::task::MAX_EXAMPLES,
    })
}

/// This build's dense f32 product against the same product in f64 on
/// [`crate::model::dense::CHECK_SHAPES`]: `{ panels, cases: [{ m, n, k, error }], gflops }`,
/// `panels` saying whether the build uses taskvec's panel kernel (relaxed SIMD) for its dense
/// weights; with `runs` > 0, `gflops` is the panel product's rate on the vision encoder's MLP
/// shape (1024 × 768 → 3072), best of `runs`.
#[wasm_bindgen(js_name = denseCheck)]
pub fn dense_check(runs: usize) -> Result<JsValue, JsError> {
    use crate::model::dense;
    let gflops = (runs > 0).then(|| {
        let (m, n, k) = (1024, 3072, 768);
        let p = dense::PanelMatrix::from_out_in(&vec![0.5; n * k], n, k);
        let x = vec![0.25; m * k];
        let best = (0..runs)
            .map(|_| {
                let t = perf_now();
                std::hint::black_box(p.matmul(&x, m));
                perf_now() - t
            })
            .fold(f64::INFINITY, f64::min);
        2.0 * (m * n * k) as f64 / best / 1e6
    });
    let cases: Vec<serde_json::Value> = dense::CHECK_SHAPES
        .iter()
        .map(|&(m, n, k)| serde_json::json!({ "m": m, "n": n, "k": k, "error": dense::check_error(m, n, k) }))
        .collect();
    to_js(&serde_json::json!({ "panels": dense::preferred(), "cases": cases, "gflops": gflops }))
}

fn progress_fn(cb: &Option<js_sys::Function>) -> impl FnMut(usize, usize) + '_ {
    move |d, n| {
        if let Some(f) = cb {
            let _ = f.call2(
                &JsValue::NULL,
                &JsValue::from(d as u32),
                &JsValue::from(n as u32),
            );
        }
    }
}

/// A loaded model in the page's worker.
#[wasm_bindgen]
pub struct WebModel {
    m: LoadedModel,
    backend: Backend,
}

/// Milliseconds from `performance.now()` (worker or window), else `Date.now()`.
fn perf_now() -> f64 {
    use wasm_bindgen::JsCast;
    let g = js_sys::global();
    js_sys::Reflect::get(&g, &JsValue::from_str("performance"))
        .ok()
        .and_then(|p| {
            let f: js_sys::Function = js_sys::Reflect::get(&p, &JsValue::from_str("now"))
                .ok()?
                .dyn_into()
                .ok()?;
            f.call0(&p).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}

fn weight_mode(w: Option<String>) -> Result<crate::weights::WeightMode, JsError> {
    w.as_deref().unwrap_or("auto").parse().map_err(js_err)
}

/// The page's backend name (`webgpu` or `cpu`) parsed.
fn backend(name: &str) -> Result<Backend, JsError> {
    name.parse()
        .map_err(|_| JsError::new(&format!("unknown backend '{name}'")))
}

#[wasm_bindgen]
impl WebModel {
    /// Loads a GGUF (plus optional mmproj GGUF) on `backend` ("webgpu" or "cpu"); `weights`
    /// is the storage mode (`auto`, `f32`, `q8_0`, `q4_0`, `q4_1`; default `auto`).
    #[wasm_bindgen(js_name = loadGguf)]
    pub fn load_gguf(
        backend: String,
        model: Vec<u8>,
        mmproj: Option<Vec<u8>>,
        weights: Option<String>,
    ) -> Result<WebModel, JsError> {
        let mode = weight_mode(weights)?;
        let backend = self::backend(&backend)?;
        #[cfg(feature = "wgpu")]
        if backend == Backend::Wgpu {
            let mut files: Vec<&[u8]> = vec![&model];
            files.extend(mmproj.as_deref());
            check_webgpu_room(&files, mode)?;
        }
        let m = load_with(ModelFiles::Gguf { model, mmproj }, &device(backend)?, mode)
            .map_err(js_err)?;
        Ok(WebModel { m, backend })
    }

    /// Loads a Hugging Face checkpoint's files on `backend`.
    #[wasm_bindgen(js_name = loadHf)]
    pub fn load_hf(
        backend: String,
        config: String,
        preprocessor: Option<String>,
        tokenizer: Vec<u8>,
        weights: Vec<u8>,
        storage: Option<String>,
    ) -> Result<WebModel, JsError> {
        let mode = weight_mode(storage)?;
        let backend = self::backend(&backend)?;
        let files = ModelFiles::HuggingFace {
            config,
            preprocessor,
            tokenizer,
            weights: vec![weights],
        };
        let m = load_with(files, &device(backend)?, mode).map_err(js_err)?;
        Ok(WebModel { m, backend })
    }

    /// Model card: name, format, quantization, sizes, layers, hidden, vision, backend, threads.
    pub fn info(&self) -> Result<JsValue, JsError> {
        let threads = match self.backend {
            Backend::Cpu => cpu_threads(),
            Backend::Wgpu => 1,
        };
        to_js(&crate::loader::ModelCard {
            backend: Some(self.backend),
            cpu_threads: Some(threads),
            ..self.m.card()
        })
    }

    /// Extracts a task vector; returns the vector file's JSON text (the same file as
    /// `taskvec extract` for the same request, see [`crate::taskvec::extract`]).
    pub async fn extract(
        &self,
        req: JsValue,
        progress: Option<js_sys::Function>,
    ) -> Result<String, JsError> {
        let req: TaskIn = from_js(req)?;
        let mut task = req.task()?;
        task.instruction = task.instruction.filter(|s| !s.trim().is_empty());
        let r = ExtractRequest {
            task,
            spec: req.spec,
            prompts: req.prompts,
            seed: req.seed,
            read_at: req.read_at,
            sweep: false,
            created_at: req.created_at,
        };
        let f = extract_file(&Engine::new(&self.m), &r, progress_fn(&progress))
            .await
            .map_err(js_err)?;
        Ok(f.to_json())
    }

    /// Applies a vector to a query (`req`: `{ query, layer?, allow_transfer?, max_tokens?,
    /// steering? }`): patched answer at the layer (default: recommended), the zero-shot and
    /// in-context answers, and the fast per-layer sweep; `stream(which, text)` gets the answers
    /// as they grow.
    pub async fn apply(
        &self,
        vector_json: String,
        req: JsValue,
        stream: Option<js_sys::Function>,
    ) -> Result<JsValue, JsError> {
        let f = VectorFile::from_json(&vector_json).map_err(js_err)?;
        let req: ApplyIn = from_js(req)?;
        f.check_model(&self.m.info, req.allow_transfer)
            .map_err(js_err)?;
        let input = req.query.input()?;
        let mut steer = req.steering.unwrap_or_default();
        if let Some(l) = req.layer {
            steer.layers.get_or_insert([l, l]);
        }
        let mut on_text = |which: &str, text: &str| {
            if let Some(cb) = &stream {
                let _ = cb.call2(&JsValue::NULL, &JsValue::from(which), &JsValue::from(text));
            }
        };
        let r = Engine::new(&self.m)
            .apply_report_streaming(&f, &input, &steer, req.max_tokens, &mut on_text)
            .await
            .map_err(js_err)?;
        to_js(&r)
    }

    /// The paper's protocol over the request's examples: accuracies per layer.
    pub async fn evaluate(
        &self,
        req: JsValue,
        progress: Option<js_sys::Function>,
    ) -> Result<JsValue, JsError> {
        let req: TaskIn = from_js(req)?;
        let task = req.task()?;
        let x = Extraction {
            prompts: req.prompts,
            read_at: req.read_at,
        };
        let (r, _) = evaluate_at(
            &Engine::new(&self.m),
            &task,
            req.spec,
            x,
            req.seed,
            progress_fn(&progress),
        )
        .await
        .map_err(js_err)?;
        to_js(&r)
    }

    /// The three-phase logit lens over `prompts` five-shot prompts of built-in task `task`
    /// (`taskvec lens --task`): per layer the mean and band of p(input), p(task word),
    /// p(answer), and the top-1 tokens; `progress(done, total)`.
    #[wasm_bindgen(js_name = lensAggregate)]
    pub async fn lens_aggregate(
        &self,
        task: String,
        prompts: usize,
        seed: u64,
        progress: Option<js_sys::Function>,
    ) -> Result<JsValue, JsError> {
        let t = crate::taskvec::Task::builtin(&task).map_err(js_err)?;
        let word = crate::taskvec::task::task_word(&task);
        let r = Engine::new(&self.m)
            .lens_aggregate(&t, word, prompts, seed, progress_fn(&progress))
            .await
            .map_err(js_err)?;
        to_js(&r)
    }

    /// The paper's table on this model (the same code as `taskvec table`). `req`: `{rows:
    /// [ids], tasks: [names], seeds: [..], prompts, read_at}`; `images`: an object from each
    /// built-in image path (`flags/fr.png` …) to its bytes; `progress(done, total, what)`.
    pub async fn table(
        &self,
        req: JsValue,
        images: JsValue,
        progress: Option<js_sys::Function>,
    ) -> Result<JsValue, JsError> {
        let req: TableIn = from_js(req)?;
        let images: std::collections::HashMap<String, serde_bytes::ByteBuf> =
            if images.is_undefined() || images.is_null() {
                Default::default()
            } else {
                from_js(images)?
            };
        let rows = req
            .rows
            .iter()
            .map(|r| r.parse::<Row>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(js_err)?;
        let rows = if rows.is_empty() {
            Row::defaults(self.m.model.vision.is_some(), false)
        } else {
            rows
        };
        let with_images = rows.iter().any(|r| r.needs_images());
        let tasks = req
            .tasks
            .iter()
            .map(|n| {
                PairedTask::builtin_with(
                    n,
                    |p| {
                        images.get(p).map(|b| b.to_vec()).ok_or_else(|| {
                            Error::TaskVector(format!("the page did not provide image '{p}'"))
                        })
                    },
                    with_images,
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(js_err)?;
        let t = TableRequest {
            rows,
            tasks,
            seeds: if req.seeds.is_empty() {
                vec![0, 1, 2]
            } else {
                req.seeds
            },
            extraction: Extraction {
                prompts: req.prompts,
                read_at: req.read_at,
            },
        };
        let e = Engine::new(&self.m);
        let table = run_table(&e, None, &t, &mut |d, n, what| {
            if let Some(f) = &progress {
                let _ = f.call3(
                    &JsValue::NULL,
                    &JsValue::from(d as u32),
                    &JsValue::from(n as u32),
                    &JsValue::from_str(what),
                );
            }
        })
        .await
        .map_err(js_err)?;
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            table: &'a crate::taskvec::Table,
            markdown: String,
            csv: String,
            images_encoded: usize,
        }
        to_js(&Out {
            markdown: table.markdown(),
            csv: table.csv(),
            table: &table,
            images_encoded: self.m.features.encoded(),
        })
    }

    /// How many images the vision encoder has run on since loading (features are cached by
    /// the image's hash, so a repeated image is never re-encoded).
    #[wasm_bindgen(js_name = imagesEncoded)]
    pub fn images_encoded(&self) -> usize {
        self.m.features.encoded()
    }

    /// Benchmark figures (the same measurements as `taskvec bench`), timed with the page's
    /// `performance.now()`.
    pub async fn bench(
        &self,
        prefill: usize,
        decode: usize,
        runs: usize,
        naive_sweep: bool,
    ) -> Result<JsValue, JsError> {
        let name = format!("{} ({})", self.backend.page_name(), self.m.info.storage);
        let r = crate::bench::bench(
            &self.m,
            &name,
            prefill,
            decode,
            runs,
            naive_sweep,
            &perf_now,
        )
        .await
        .map_err(js_err)?;
        to_js(&r)
    }

    /// The image path's figures (preprocess, vision encoder, image prefill, first token, the
    /// page's apply) on an encoded image file: see [`crate::bench::image_bench`].
    #[wasm_bindgen(js_name = imageBench)]
    pub async fn image_bench(
        &self,
        image: Vec<u8>,
        runs: usize,
        max_tokens: usize,
    ) -> Result<JsValue, JsError> {
        let name = format!("{} ({})", self.backend.page_name(), self.m.info.storage);
        let r = crate::bench::image_bench(&self.m, &name, &image, runs, max_tokens, &perf_now)
            .await
            .map_err(js_err)?;
        to_js(&r)
    }

    /// The estimated time of an image apply on this device, `{gflop, gflops, ms}`, or null
    /// for a text-only model: see [`crate::bench::estimate_apply`].
    #[wasm_bindgen(js_name = estimateApply)]
    pub async fn estimate_apply(&self) -> Result<JsValue, JsError> {
        let r = crate::bench::estimate_apply(&self.m, &perf_now)
            .await
            .map_err(js_err)?;
        to_js(&r)
    }

    /// What the device's basic operations cost (readback, one elementwise op, a matmul,
    /// dequantizing Q4_1 blocks): see [`crate::bench::probe`].
    pub async fn probe(&self, runs: usize) -> Result<JsValue, JsError> {
        let r = crate::bench::probe(self.m.model.text.device(), runs.max(1), &perf_now)
            .await
            .map_err(js_err)?;
        to_js(&r)
    }

    /// Logit lens of a prompt (a query or free text) with tracked words.
    pub async fn lens(
        &self,
        prompt: String,
        image: Option<Vec<u8>>,
        track: Vec<String>,
        top: usize,
    ) -> Result<JsValue, JsError> {
        let p = Prompt {
            text: prompt,
            images: image.into_iter().collect(),
        };
        to_js(
            &Engine::new(&self.m)
                .lens(&p, &track, top)
                .await
                .map_err(js_err)?,
        )
    }
}
