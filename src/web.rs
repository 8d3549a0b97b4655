//! The WebAssembly API (wasm-bindgen): a thin shell over the library for the page's worker.
//! Data crosses as plain JS objects (serde-wasm-bindgen); errors become JS exceptions with the
//! library's message. No logic of its own beyond argument conversion.

use std::cell::RefCell;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::loader::{LoadedModel, ModelFiles, load_with};
use crate::taskvec::dataset::{PairedTask, builtin_lines, summaries};
use crate::taskvec::extract::{ExtractRequest, extract_file};
use crate::taskvec::lens::similarity_report;
use crate::taskvec::protocol::evaluate_at;
use crate::taskvec::task::BUILTIN;
use crate::taskvec::{
    Engine, Example, Extraction, Input, Prompt, ReadAt, Row, Spec, TableRequest, Task, VectorFile,
    run_table,
};

thread_local! {
    static GPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

#[cfg(feature = "wgpu")]
thread_local! {
    /// The wgpu handles behind [`GPU`]: the adapter's limits, and the device for the test hook.
    static GPU_SETUP: RefCell<Option<burn::tensor::wgpu::WgpuSetup>> = const { RefCell::new(None) };
    /// A lower buffer limit set by [`debug_limit_webgpu_buffer`] (tests of the refusal).
    static GPU_LIMIT_OVERRIDE: RefCell<Option<u64>> = const { RefCell::new(None) };
}

/// The largest buffer this WebGPU device binds, bytes: the adapter's
/// `min(maxStorageBufferBindingSize, maxBufferSize)` (or the test override).
#[cfg(feature = "wgpu")]
fn webgpu_buffer_limit() -> Option<u64> {
    if let Some(v) = GPU_LIMIT_OVERRIDE.with(|o| *o.borrow()) {
        return Some(v);
    }
    GPU_SETUP.with(|s| {
        s.borrow().as_ref().map(|s| {
            let l = s.adapter.limits();
            l.max_storage_buffer_binding_size.min(l.max_buffer_size)
        })
    })
}

/// The WebGPU adapter's name and buffer limits (`{adapter, max_storage_buffer_binding_size,
/// max_buffer_size}`), or null before [`init_webgpu`] succeeded.
#[cfg(feature = "wgpu")]
#[wasm_bindgen(js_name = webGpuLimits)]
pub fn webgpu_limits() -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Limits {
        adapter: String,
        max_storage_buffer_binding_size: u64,
        max_buffer_size: u64,
    }
    let l = GPU_SETUP.with(|s| {
        s.borrow().as_ref().map(|s| {
            let l = s.adapter.limits();
            Limits {
                adapter: s.adapter.get_info().name,
                max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
                max_buffer_size: l.max_buffer_size,
            }
        })
    });
    to_js(&l)
}

/// Whether the WebGPU device still computes: one tiny op read back (false once it is lost).
#[cfg(feature = "wgpu")]
#[wasm_bindgen(js_name = webGpuAlive)]
pub async fn webgpu_alive() -> bool {
    use burn::tensor::{Tensor, TensorData};
    let Some(dev) = GPU.with(|g| g.borrow().clone()) else {
        return false;
    };
    let t = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &dev) + 1.0;
    crate::model::read_f32(t)
        .await
        .is_ok_and(|v| v.as_slice() == [2.0])
}

/// Test hook: destroys the WebGPU device, as a driver reset or a lost GPU would (the page
/// must then fall back to the CPU with a clear message).
#[cfg(feature = "wgpu")]
#[wasm_bindgen(js_name = debugLoseWebGpu)]
pub fn debug_lose_webgpu() -> bool {
    GPU_SETUP.with(|s| s.borrow().as_ref().map(|s| s.device.destroy()).is_some())
}

/// Test hook: pretends the adapter binds at most `bytes` per buffer (the refusal of a model
/// too big for the GPU, and the page's CPU fallback, tested on a GPU that has room).
#[cfg(feature = "wgpu")]
#[wasm_bindgen(js_name = debugLimitWebGpuBuffer)]
pub fn debug_limit_webgpu_buffer(bytes: Option<f64>) {
    GPU_LIMIT_OVERRIDE.with(|o| *o.borrow_mut() = bytes.map(|b| b as u64));
}

/// Refuses, before loading, a GGUF model whose largest buffer the WebGPU device cannot bind.
#[cfg(feature = "wgpu")]
fn check_webgpu_room(files: &[&[u8]], mode: crate::weights::WeightMode) -> Result<(), JsError> {
    let Some(limit) = webgpu_buffer_limit() else {
        return Ok(());
    };
    let (name, bytes) = crate::loader::largest_device_buffer(files, mode).map_err(js_err)?;
    if bytes as u64 > limit {
        return Err(JsError::new(&format!(
            "this GPU cannot hold the model: tensor '{name}' needs one buffer of {:.1} MiB but the GPU allows {:.1} MiB per buffer (maxStorageBufferBindingSize / maxBufferSize); use the CPU backend or a more quantized file",
            bytes as f64 / 1048576.0,
            limit as f64 / 1048576.0
        )));
    }
    Ok(())
}

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

/// Whether this build has the WebGPU backend (the threaded build is CPU-only).
#[wasm_bindgen(js_name = hasWebGpu)]
pub fn has_webgpu() -> bool {
    cfg!(feature = "wgpu")
}

/// Initializes WebGPU once; returns "webgpu" or throws with the reason (the page then falls
/// back to the CPU backend).
#[cfg(not(feature = "wgpu"))]
#[wasm_bindgen(js_name = initWebGpu)]
pub async fn init_webgpu() -> Result<String, JsError> {
    Err(JsError::new(
        "this build has no WebGPU backend (the threaded CPU build)",
    ))
}

/// Initializes WebGPU once; returns "webgpu" or throws with the reason (the page then falls
/// back to the CPU backend).
#[cfg(feature = "wgpu")]
#[wasm_bindgen(js_name = initWebGpu)]
pub async fn init_webgpu() -> Result<String, JsError> {
    if GPU.with(|g| g.borrow().is_some()) {
        return Ok("webgpu".into());
    }
    let (dev, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| JsError::new(&format!("WebGPU is not available: {e:?}")))?;
    GPU.with(|g| *g.borrow_mut() = Some(dev));
    GPU_SETUP.with(|s| *s.borrow_mut() = Some(setup));
    Ok("webgpu".into())
}

fn device(backend: &str) -> Result<Device, JsError> {
    match backend {
        "cpu" => Ok(Device::flex()),
        "webgpu" => GPU
            .with(|g| g.borrow().clone())
            .ok_or_else(|| JsError::new("WebGPU was not initialized (call initWebGpu first)")),
        other => Err(JsError::new(&format!("unknown backend '{other}'"))),
    }
}

/// The fused WebGPU kernel against the tensor-op path on this page's WebGPU device: per block
/// type and shape, the largest relative difference, both times and their dispatch and byte
/// counts ([`crate::bench::fused_check`]). `sizes`: "check" (small shapes, every kernel branch,
/// no timing) or "bench" (SmolVLM-size products, `runs` timed runs).
#[cfg(feature = "wgpu")]
#[wasm_bindgen(js_name = fusedCheck)]
pub async fn fused_check(sizes: String, runs: usize) -> Result<JsValue, JsError> {
    let dev = device("webgpu")?;
    let (shapes, runs): (&[(usize, usize, usize)], usize) = match sizes.as_str() {
        // m = 1, 3 (rows kernel, partial), 5, 67 (tiled, partial tiles); n not a multiple of 8/64
        "check" => (&[(1, 70, 96), (3, 70, 96), (5, 130, 64), (67, 70, 96)], 0),
        // decode row, a prefill of 128 tokens, one vision-encoder product (1024 patches)
        "bench" => (
            &[(1, 1536, 576), (128, 1536, 576), (1024, 768, 768)],
            runs.max(1),
        ),
        other => return Err(JsError::new(&format!("unknown size set '{other}'"))),
    };
    let r = crate::bench::fused_check(&dev, shapes, runs, &perf_now)
        .await
        .map_err(js_err)?;
    to_js(&r)
}

/// A vector file's JSON text exported for other tools (`safetensors` or `control-vector`,
/// with `layers` `L` / `A-B` / `all` and `scale` for the latter): the same bytes as `taskvec
/// export`.
#[wasm_bindgen(js_name = exportVector)]
pub fn export_vector(
    json: String,
    format: String,
    layers: Option<String>,
    scale: Option<f32>,
) -> Result<Vec<u8>, JsError> {
    let f = VectorFile::from_json(&json).map_err(js_err)?;
    crate::taskvec::export::export(&f, &format, layers.as_deref(), scale.unwrap_or(1.0))
        .map_err(js_err)
}

/// The vector file (JSON text) inside a safetensors file written by `taskvec export`.
#[wasm_bindgen(js_name = importSafetensors)]
pub fn import_safetensors(bytes: Vec<u8>) -> Result<String, JsError> {
    crate::taskvec::export::from_safetensors(&bytes)
        .map(|f| f.to_json())
        .map_err(js_err)
}

/// One example from the page: text or image input, and the answer.
#[derive(Deserialize)]
struct ExampleIn {
    text: Option<String>,
    #[serde(default, with = "serde_bytes_opt")]
    image: Option<Vec<u8>>,
    label: Option<String>,
    output: String,
}

mod serde_bytes_opt {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<serde_bytes::ByteBuf>::deserialize(d).map(|o| o.map(|b| b.into_vec()))
    }
}

impl ExampleIn {
    fn input(&self) -> Result<Input, JsError> {
        match (&self.text, &self.image) {
            (_, Some(bytes)) => Ok(Input::Image {
                bytes: bytes.clone(),
                label: self.label.clone().unwrap_or_else(|| "image".into()),
            }),
            (Some(t), None) if !t.trim().is_empty() => Ok(Input::Text(t.trim().to_string())),
            _ => Err(JsError::new(
                "an example or query has neither text nor an image",
            )),
        }
    }
}

/// A query from the page.
#[derive(Deserialize)]
struct QueryIn {
    text: Option<String>,
    #[serde(default, with = "serde_bytes_opt")]
    image: Option<Vec<u8>>,
    label: Option<String>,
}

impl QueryIn {
    fn input(self) -> Result<Input, JsError> {
        ExampleIn {
            text: self.text,
            image: self.image,
            label: self.label,
            output: String::new(),
        }
        .input()
    }
}

/// An extraction or evaluation request.
#[derive(Deserialize)]
struct TaskIn {
    name: String,
    spec: Spec,
    #[serde(default)]
    examples: Vec<ExampleIn>,
    instruction: Option<String>,
    #[serde(default = "default_prompts")]
    prompts: usize,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    read_at: ReadAt,
    #[serde(default)]
    created_at: String,
}

fn default_prompts() -> usize {
    30
}

impl TaskIn {
    fn task(&self) -> Result<Task, JsError> {
        let examples = self
            .examples
            .iter()
            .map(|e| {
                Ok(Example {
                    input: e.input()?,
                    output: e.output.trim().to_string(),
                })
            })
            .collect::<Result<Vec<_>, JsError>>()?;
        if examples.iter().any(|e| e.output.is_empty()) {
            return Err(JsError::new("every example needs an answer"));
        }
        Ok(Task {
            name: self.name.clone(),
            instruction: self.instruction.clone(),
            examples,
        })
    }
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
    backend: String,
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
    crate::weights::WeightMode::parse(w.as_deref().unwrap_or("auto")).map_err(js_err)
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
        #[cfg(feature = "wgpu")]
        if backend == "webgpu" {
            let mut files: Vec<&[u8]> = vec![&model];
            files.extend(mmproj.as_deref());
            check_webgpu_room(&files, mode)?;
        }
        let m = load_with(ModelFiles::Gguf { model, mmproj }, &device(&backend)?, mode)
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
        let files = ModelFiles::HuggingFace {
            config,
            preprocessor,
            tokenizer,
            weights: vec![weights],
        };
        let m = load_with(files, &device(&backend)?, mode).map_err(js_err)?;
        Ok(WebModel { m, backend })
    }

    /// Model card: name, format, quantization, sizes, layers, hidden, vision, backend, threads.
    pub fn info(&self) -> Result<JsValue, JsError> {
        #[derive(Serialize)]
        struct Card<'a> {
            #[serde(flatten)]
            info: &'a crate::loader::ModelInfo,
            backend: &'a str,
            cpu_threads: usize,
            resident_weight_bytes: usize,
        }
        to_js(&Card {
            info: &self.m.info,
            backend: &self.backend,
            cpu_threads: if self.backend == "cpu" {
                cpu_threads()
            } else {
                1
            },
            resident_weight_bytes: self.m.model.resident_bytes(),
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

    /// Applies a vector to a query: patched answer at `layer` (default: recommended), the
    /// zero-shot and in-context answers, and the fast per-layer sweep.
    pub async fn apply(
        &self,
        vector_json: String,
        layer: Option<usize>,
        query: JsValue,
        allow_transfer: bool,
        max_tokens: usize,
        steering: JsValue,
        stream: Option<js_sys::Function>,
    ) -> Result<JsValue, JsError> {
        let f = VectorFile::from_json(&vector_json).map_err(js_err)?;
        f.check_model(&self.m.info, allow_transfer)
            .map_err(js_err)?;
        let input = from_js::<QueryIn>(query)?.input()?;
        let mut steer: crate::taskvec::Steering = if steering.is_undefined() || steering.is_null() {
            Default::default()
        } else {
            from_js(steering)?
        };
        if let Some(l) = layer {
            steer.layers.get_or_insert([l, l]);
        }
        let mut on_text = |which: &str, text: &str| {
            if let Some(cb) = &stream {
                let _ = cb.call2(&JsValue::NULL, &JsValue::from(which), &JsValue::from(text));
            }
        };
        let r = Engine::new(&self.m)
            .apply_report_streaming(&f, &input, &steer, max_tokens, &mut on_text)
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
        let name = format!("{} ({})", self.backend, self.m.info.storage);
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
        let name = format!("{} ({})", self.backend, self.m.info.storage);
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

    /// The zero-shot query text for a text input (`Q:{x}\nA:`), or with `<image>`.
    #[wasm_bindgen(js_name = queryText)]
    pub fn query_text(text: Option<String>) -> String {
        Prompt::zero_shot(&Input::Text(
            text.unwrap_or_else(|| crate::tokenize::IMAGE_PLACEHOLDER.into()),
        ))
        .text
    }
}

/// Validates a vector file's text; returns a summary or throws the refusal.
#[wasm_bindgen(js_name = inspectVector)]
pub fn inspect_vector(json: String) -> Result<JsValue, JsError> {
    let f = VectorFile::from_json(&json).map_err(js_err)?;
    to_js(&serde_json::json!({
        "task": f.task.name, "spec": f.task.spec, "model": f.model, "recommended_layer": f.recommended_layer,
        "examples": f.task.examples.len(), "instruction": f.task.instruction, "created_at": f.created_at, "sweep": f.sweep,
    }))
}

/// Checks that a vector file fits a loaded model (throws the refusal otherwise).
#[wasm_bindgen(js_name = checkVector)]
pub fn check_vector(json: String, model: &WebModel, allow_transfer: bool) -> Result<(), JsError> {
    VectorFile::from_json(&json)
        .map_err(js_err)?
        .check_model(&model.m.info, allow_transfer)
        .map_err(js_err)
}

/// Cosine per layer between the first two vector files and the mean-over-layers matrix of all.
#[wasm_bindgen]
pub fn similarity(jsons: Vec<String>) -> Result<JsValue, JsError> {
    let fs: Vec<VectorFile> = jsons
        .iter()
        .map(|j| VectorFile::from_json(j))
        .collect::<Result<_, _>>()
        .map_err(js_err)?;
    to_js(&similarity_report(&fs).map_err(js_err)?)
}

/// `Σ weights[i] · jsons[i]` as a new vector file's JSON (`taskvec combine`'s library code),
/// recording the terms and `expression`.
#[wasm_bindgen(js_name = combineVectors)]
pub fn combine_vectors(
    jsons: Vec<String>,
    weights: Vec<f32>,
    expression: String,
    allow_transfer: bool,
    created_at: String,
) -> Result<String, JsError> {
    if jsons.len() != weights.len() {
        return Err(JsError::new("combine: one weight per vector"));
    }
    let fs: Vec<VectorFile> = jsons
        .iter()
        .map(|j| VectorFile::from_json(j))
        .collect::<Result<_, _>>()
        .map_err(js_err)?;
    let terms: Vec<(f32, &VectorFile)> = weights.iter().copied().zip(&fs).collect();
    crate::taskvec::arith::combine(&terms, &expression, allow_transfer, created_at)
        .map(|f| f.to_json())
        .map_err(js_err)
}

/// The map of vectors (2-D PCA of each file's row `layer`; `taskvec map --json`).
#[wasm_bindgen(js_name = mapVectors)]
pub fn map_vectors(jsons: Vec<String>, layer: usize) -> Result<JsValue, JsError> {
    let fs: Vec<VectorFile> = jsons
        .iter()
        .map(|j| VectorFile::from_json(j))
        .collect::<Result<_, _>>()
        .map_err(js_err)?;
    let refs: Vec<&VectorFile> = fs.iter().collect();
    to_js(&crate::taskvec::arith::map(&refs, layer).map_err(js_err)?)
}

/// The built-in tasks: name, instruction, counts and items (input, output, split, image path
/// relative to `data/images/` or null).
#[wasm_bindgen(js_name = builtinTasks)]
pub fn builtin_tasks() -> Result<JsValue, JsError> {
    let sums = summaries().map_err(js_err)?;
    let tasks: Vec<serde_json::Value> = BUILTIN
        .iter()
        .zip(sums)
        .map(|((name, _, _), sum)| {
            let (_, _, lines) = builtin_lines(name).map_err(js_err)?;
            let items: Vec<serde_json::Value> = lines
                .iter()
                .map(|l| {
                    serde_json::json!({"input": l.input, "output": l.output,
                        "split": if l.val { "val" } else { "test" }, "image": l.image})
                })
                .collect();
            let pairs: Vec<(String, String)> = lines
                .iter()
                .map(|l| (l.input.clone(), l.output.clone()))
                .collect();
            Ok(
                serde_json::json!({"name": name, "instruction": sum.instruction,
                "text_items": sum.text_items, "image_items": sum.image_items,
                "pairs": pairs, "items": items}),
            )
        })
        .collect::<Result<_, JsError>>()?;
    to_js(&tasks)
}

/// The table's rows: id, label, whether it needs images.
#[wasm_bindgen(js_name = tableRows)]
pub fn table_rows() -> Result<JsValue, JsError> {
    let rows: Vec<serde_json::Value> = crate::taskvec::table::ROWS
        .iter()
        .map(|r| serde_json::json!({"id": r.id(), "label": r.label(), "images": r.needs_images()}))
        .collect();
    to_js(&rows)
}

/// A table request from the page.
#[derive(Deserialize)]
struct TableIn {
    #[serde(default)]
    rows: Vec<String>,
    tasks: Vec<String>,
    #[serde(default)]
    seeds: Vec<u64>,
    #[serde(default = "default_prompts")]
    prompts: usize,
    #[serde(default)]
    read_at: ReadAt,
}
