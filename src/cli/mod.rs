//! Native command-line shell over the library: file reading, argument parsing, output.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{Error, Result};
use crate::loader::{LoadedModel, ModelFiles};
use crate::model::{Intervention, KvCache, read_f32};

/// taskvec: task vectors for small vision-language models.
#[derive(Parser, Debug)]
#[command(name = "taskvec", version, about)]
pub struct Cli {
    /// Compute backend.
    #[arg(long, global = true, value_enum, default_value_t = Backend::Cpu)]
    pub device: Backend,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Which burn backend runs the model.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Backend {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// burn's wgpu backend (Vulkan/Metal natively), when built with the `wgpu` feature.
    Wgpu,
}

/// Where the model comes from.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A `.gguf` file or a Hugging Face directory (config.json, *.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// llama.cpp vision projector GGUF (`mmproj-*.gguf`) for a SmolVLM GGUF.
    #[arg(long)]
    pub mmproj: Option<PathBuf>,
    /// How matrices are stored once loaded: `auto` keeps a GGUF's Q8_0/Q4_0/Q4_1 blocks,
    /// `f32` dequantizes everything, `q8_0`/`q4_0`/`q4_1` quantize on load, `f32-q8_0`/... hold
    /// the values that quantizing would give as f32 (the dequantized reference).
    #[arg(long, default_value = "auto", value_parser = ["auto", "f32", "q8_0", "q4_0", "q4_1", "f32-q8_0", "f32-q4_0", "f32-q4_1"])]
    pub weights: String,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Greedy continuation of a prompt; prints only the generated text.
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        /// Prompt text (no chat template is applied); `<image>` marks where the image goes.
        #[arg(long)]
        prompt: String,
        /// An image file for the prompt's `<image>` (put first when the prompt has none).
        #[arg(long)]
        image: Option<PathBuf>,
        /// Most tokens to generate.
        #[arg(long)]
        max_tokens: usize,
    },
    /// Writes every layer's hidden states, the logits and the ids of a prompt to safetensors.
    Hidden {
        #[command(flatten)]
        model: ModelArgs,
        /// Prompt text.
        #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
        prompt: Option<String>,
        /// Token ids, comma-separated, used as given (they already hold the image tokens).
        #[arg(long, value_delimiter = ',')]
        ids: Option<Vec<u32>>,
        /// An image file filling the `<image>` tokens.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Output `.safetensors` path.
        #[arg(long)]
        out: PathBuf,
    },
    /// Extracts a task vector (every layer) and writes it as JSON.
    Extract {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        task: TaskArgs,
        /// Instruction text ending in ':' (instruction vector), e.g. "The capital city of the country:".
        #[arg(long)]
        instruction: Option<String>,
        /// Specification: examples (`text`, also for image examples), `instruction`, or `ensemble`.
        #[arg(long, value_enum)]
        spec: Option<SpecArg>,
        /// Extraction prompts to average (one per example, up to this many).
        #[arg(long, default_value_t = 30)]
        prompts: usize,
        /// Seed of the split and the demonstration draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also run the accuracy protocol (vector from the validation split) and store its
        /// accuracies and the layer chosen on validation.
        #[arg(long)]
        sweep: bool,
        /// Where exemplar vectors are read: `demo` (the last demonstration's `A:`, the paper's
        /// code) or `query` (the query's final `:`).
        #[arg(long, value_enum, default_value_t = ReadAtArg::Demo)]
        read_at: ReadAtArg,
        /// Output JSON path.
        #[arg(long)]
        out: PathBuf,
    },
    /// Applies a task vector to a zero-shot query and prints the answer with baselines.
    Apply {
        #[command(flatten)]
        model: ModelArgs,
        /// Task-vector JSON file.
        #[arg(long)]
        vector: PathBuf,
        /// Layer to patch (default: the file's recommended layer).
        #[arg(long, conflicts_with = "layers")]
        layer: Option<usize>,
        /// Layers to steer: `L` or `A-B` (inclusive; row l of the vector goes into layer l).
        #[arg(long)]
        layers: Option<String>,
        /// How the stream changes: `replace` (h ← s·v, the paper's patch), `add` (h + s·v) or
        /// `add-normalized` (h + s·‖h‖·v/‖v‖).
        #[arg(long, default_value = "replace")]
        mode: String,
        /// Strength s.
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
        scale: f32,
        /// Steer every generated token too, not only the prompt's last position.
        #[arg(long)]
        every_token: bool,
        /// Text query.
        #[arg(long, conflicts_with = "image", required_unless_present = "image")]
        text: Option<String>,
        /// Image query.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Accept a vector made with another model of the same shape (e.g. SmolLM2 → SmolVLM).
        #[arg(long)]
        allow_transfer: bool,
        /// Most tokens to generate.
        #[arg(long, default_value_t = 8)]
        max_tokens: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Runs the paper's protocol: zero-shot, 5-shot ICL and patched accuracy per layer.
    Sweep {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        task: TaskArgs,
        /// Specification of the vector.
        #[arg(long, value_enum, default_value_t = SpecArg::Text)]
        spec: SpecArg,
        /// Extraction prompts (one per validation example, up to this many).
        #[arg(long, default_value_t = 30)]
        prompts: usize,
        /// Seed of the demonstration draws (and of the split of a --pairs file; built-in tasks
        /// have a fixed validation/test split).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where exemplar vectors are read (`demo`: the last demonstration's `A:`; `query`).
        #[arg(long, value_enum, default_value_t = ReadAtArg::Demo)]
        read_at: ReadAtArg,
        /// Print exactly one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Lists the built-in tasks: items with text, items with an image, instruction.
    Tasks {
        /// Print exactly one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// The paper's table: rows of experiments (text / image demonstrations, instruction,
    /// ensemble, another model's vectors) × tasks, test accuracy at the layer chosen on
    /// validation, averaged over seeds, with 95 % intervals.
    Table(#[command(flatten)] paper::TableArgs),
    /// Logit lens: what each layer's last-position residual stream predicts.
    Lens {
        #[command(flatten)]
        model: ModelArgs,
        /// Prompt text.
        #[arg(long, required_unless_present = "task", conflicts_with = "task")]
        prompt: Option<String>,
        /// An image for the prompt's `<image>`.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Aggregate over many five-shot prompts of this built-in task instead: per layer the
        /// mean and 10–90 % band of p(input), p(task word), p(answer), and the top-1 tokens.
        #[arg(long)]
        task: Option<String>,
        /// Prompts to aggregate (with --task; the paper uses 100).
        #[arg(long, default_value_t = 20)]
        prompts: usize,
        /// Seed of the demonstration draws (with --task).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Words whose first token's probability is followed across layers.
        #[arg(long, num_args = 1..)]
        track: Vec<String>,
        /// Top tokens shown per layer.
        #[arg(long, default_value_t = 3)]
        top: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Writes a copy of a GGUF (model or mmproj) with its matrices quantized to Q8_0, Q4_0 or
    /// Q4_1 (llama.cpp's formats: llama.cpp and taskvec both load it).
    Quantize {
        /// The GGUF to read.
        input: PathBuf,
        /// The GGUF to write (written to a temporary file first, then renamed).
        output: PathBuf,
        /// Block type for the matrices.
        #[arg(long = "type", value_parser = ["q8_0", "q4_0", "q4_1"])]
        ty: String,
    },
    /// Writes a vector file for other tools: safetensors (tensor `vectors` f32 [layers,
    /// hidden] + metadata; `taskvec import` reads it back) or llama.cpp's control-vector GGUF.
    Export {
        /// The task-vector JSON file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_parser = ["safetensors", "control-vector"])]
        format: String,
        /// File to write.
        #[arg(long)]
        out: PathBuf,
        /// control-vector: the layers to write, `L`, `A-B` or `all` (default: the file's
        /// recommended layer; layer 0 has no llama.cpp slot).
        #[arg(long)]
        layers: Option<String>,
        /// control-vector: multiply the directions by this.
        #[arg(long, default_value_t = 1.0)]
        scale: f32,
    },
    /// Vector arithmetic: `taskvec combine a.json + b.json - c.json x 0.5 --out d.json` (files
    /// joined by `+` / `-`, each optionally `* k` or `x k`, or `k x file`; quote `*` from the
    /// shell). Models and shapes are checked; the new file records its terms.
    Combine {
        /// The expression.
        #[arg(required = true, num_args = 1.., allow_negative_numbers = true)]
        expr: Vec<String>,
        /// The vector JSON file to write.
        #[arg(long)]
        out: PathBuf,
        /// Accept files made with different models of the same shape.
        #[arg(long)]
        allow_transfer: bool,
    },
    /// A map of vectors: 2-D PCA of the files' rows at one layer (`--json`: the points).
    Map {
        /// Vector JSON files (at least two).
        #[arg(required = true, num_args = 2..)]
        files: Vec<PathBuf>,
        /// Layer (default: the first file's recommended layer).
        #[arg(long)]
        layer: Option<usize>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Reads a safetensors file written by `taskvec export` back into a vector JSON file.
    Import {
        /// The safetensors file.
        file: PathBuf,
        /// The vector JSON file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Describes a model: sizes on disk and in memory, layers, hidden size, storage type.
    Info {
        #[command(flatten)]
        model: ModelArgs,
        /// Print exactly one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks prefill, decoding and the layer sweep (median of runs after a warm-up).
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Prompt tokens for the prefill figure.
        #[arg(long, default_value_t = 128)]
        prefill: usize,
        /// Tokens to decode.
        #[arg(long, default_value_t = 32)]
        decode: usize,
        /// Timed runs per figure.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Print exactly one JSON object.
        #[arg(long)]
        json: bool,
        /// Instead, time the device's basic operations (readback, elementwise op, matmul,
        /// Q4_1 dequantization): where a forward's time goes.
        #[arg(long)]
        probe: bool,
        /// Instead, time the image path on this image file (needs --mmproj): preprocessing,
        /// vision encoder, image prompt prefill, first answer token, and the page's apply.
        #[arg(long, value_name = "IMAGE")]
        image: Option<PathBuf>,
    },
    /// Serves the page (www/, pkg/, models/) on 127.0.0.1 with COOP/COEP and CSP headers.
    Serve {
        /// Port.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Directory to serve (the repository root: www/, pkg/, models/).
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// Cosine similarity per layer between task vectors (a matrix for more than two).
    Similarity {
        /// Two or more task-vector JSON files.
        #[arg(num_args = 2.., required = true)]
        files: Vec<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Which examples define the task.
#[derive(Args, Debug, Clone)]
pub struct TaskArgs {
    /// A built-in task (country_capital, country_currency, animal_latin, animal_young, food_color, food_flavor).
    #[arg(long, conflicts_with = "pairs")]
    pub task: Option<String>,
    /// A TSV of `input<TAB>output` lines; an input naming an existing image file is an image example.
    #[arg(long)]
    pub pairs: Option<PathBuf>,
}

/// Read position on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ReadAtArg {
    /// The last demonstration's `A:` (the paper's code).
    Demo,
    /// The query's final `:`.
    Query,
}

impl From<ReadAtArg> for crate::taskvec::ReadAt {
    fn from(a: ReadAtArg) -> Self {
        match a {
            ReadAtArg::Demo => crate::taskvec::ReadAt::Demo,
            ReadAtArg::Query => crate::taskvec::ReadAt::Query,
        }
    }
}

/// Specification choice on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum SpecArg {
    /// Examples (text or image).
    Text,
    /// The instruction.
    Instruction,
    /// Average of examples and instruction vectors.
    Ensemble,
}

/// Reads a file with its path in the error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Writes a file with its path in the error.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Bytes of memory the system can still give (Linux `MemAvailable`), when known.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Refuses model files that cannot fit in memory before reading them.
fn check_fits(paths: &[&Path]) -> Result<()> {
    let total: u64 = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    if let Some(avail) = available_memory()
        && total > avail
    {
        return Err(Error::load(format!(
            "the model files take {:.1} GiB but only {:.1} GiB of memory is available: close \
             other programs or use a smaller (more quantized) model",
            total as f64 / (1u64 << 30) as f64,
            avail as f64 / (1u64 << 30) as f64
        )));
    }
    Ok(())
}

/// Reads the model files named on the command line.
pub fn model_files(args: &ModelArgs) -> Result<ModelFiles> {
    let p = &args.model;
    if p.is_dir() {
        let text = |name: &str| -> Result<Option<String>> {
            let f = p.join(name);
            if !f.exists() {
                return Ok(None);
            }
            String::from_utf8(read(&f)?)
                .map(Some)
                .map_err(|_| Error::load(format!("{} is not UTF-8 text", f.display())))
        };
        let config = text("config.json")?
            .ok_or_else(|| Error::load(format!("{} has no config.json", p.display())))?;
        let tokenizer = read(&p.join("tokenizer.json"))
            .map_err(|_| Error::load(format!("{} has no tokenizer.json", p.display())))?;
        // The shards: those listed by `model.safetensors.index.json`, else `model.safetensors`,
        // else every `*.safetensors` in the directory.
        let mut shards: Vec<PathBuf> = match text("model.safetensors.index.json")? {
            Some(index) => {
                let j: serde_json::Value = serde_json::from_str(&index)
                    .map_err(|e| Error::load(format!("model.safetensors.index.json: {e}")))?;
                let mut files: Vec<PathBuf> = j["weight_map"]
                    .as_object()
                    .ok_or_else(|| Error::load("model.safetensors.index.json has no weight_map"))?
                    .values()
                    .filter_map(|v| v.as_str().map(|f| p.join(f)))
                    .collect();
                files.dedup();
                files
            }
            None if p.join("model.safetensors").is_file() => vec![p.join("model.safetensors")],
            None => std::fs::read_dir(p)
                .map_err(|source| Error::Io {
                    path: p.display().to_string(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "safetensors"))
                .collect(),
        };
        shards.sort();
        shards.dedup();
        if shards.is_empty() {
            return Err(Error::load(format!(
                "{} has no *.safetensors file",
                p.display()
            )));
        }
        check_fits(&shards.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
        let weights = shards.iter().map(|f| read(f)).collect::<Result<_>>()?;
        Ok(ModelFiles::HuggingFace {
            config,
            preprocessor: text("preprocessor_config.json")?.or(text("processor_config.json")?),
            tokenizer,
            weights,
        })
    } else {
        let mut paths = vec![p.as_path()];
        paths.extend(args.mmproj.as_deref());
        check_fits(&paths)?;
        let model = read(p)?;
        let mmproj = args.mmproj.as_deref().map(read).transpose()?;
        Ok(ModelFiles::Gguf { model, mmproj })
    }
}

/// The device for a backend choice.
pub fn device(b: Backend) -> Result<Device> {
    match b {
        #[cfg(feature = "flex")]
        Backend::Cpu => Ok(Device::flex()),
        #[cfg(not(feature = "flex"))]
        Backend::Cpu => Err(Error::Backend(
            "this build has no CPU backend (rebuild with the default `flex` feature)".into(),
        )),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => Ok(Device::wgpu(Default::default())),
        #[cfg(not(feature = "wgpu"))]
        Backend::Wgpu => Err(Error::Backend(
            "this build has no wgpu backend (rebuild with --features wgpu)".into(),
        )),
    }
}

/// Loads the model named on the command line.
pub fn load_model(args: &ModelArgs, dev: &Device) -> Result<LoadedModel> {
    let mode = crate::weights::WeightMode::parse(&args.weights)?;
    crate::loader::load_with(model_files(args)?, dev, mode)
}

fn image_list(path: &Option<PathBuf>) -> Result<Vec<Vec<u8>>> {
    path.as_deref().map(read).into_iter().collect()
}

/// `taskvec export`.
fn export_file(
    file: &Path,
    format: &str,
    out: &Path,
    layers: Option<&str>,
    scale: f32,
) -> Result<()> {
    let f = tasks::load_vector(file)?;
    let bytes = crate::taskvec::export::export(&f, format, layers, scale)?;
    write(out, &bytes)?;
    eprintln!("wrote {} ({format}, {} bytes)", out.display(), bytes.len());
    Ok(())
}

/// `taskvec quantize`: requantizes a GGUF file into a new file, never touching the input.
fn quantize_file(input: &Path, output: &Path, ty: &str) -> Result<()> {
    if input.is_dir() {
        return Err(Error::load(format!(
            "{} is a directory: `taskvec quantize` takes a GGUF file; a safetensors checkpoint is \
             quantized on load with `--weights {ty}`",
            input.display()
        )));
    }
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::load(
            "the output must be a different file than the input",
        ));
    }
    let bytes = read(input)?;
    if !crate::weights::gguf::is_gguf(&bytes) {
        return Err(Error::load(format!(
            "{} is not a GGUF file: `taskvec quantize` takes a GGUF (a safetensors checkpoint \
             is quantized on load with `--weights {ty}`)",
            input.display()
        )));
    }
    let qty = match crate::weights::WeightMode::parse(ty)? {
        crate::weights::WeightMode::Quantize(t) => t,
        _ => return Err(Error::load(format!("unknown type {ty}"))),
    };
    let (out, report) = crate::weights::requantize::requantize(&bytes, qty)?;
    let tmp = output.with_extension("gguf.partial");
    std::fs::write(&tmp, &out)
        .and_then(|_| std::fs::rename(&tmp, output))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::load(format!("cannot write {}: {e}", output.display()))
        })?;
    eprintln!(
        "{}: {} tensors quantized to {ty}, {} kept; {:.1} MiB → {:.1} MiB",
        output.display(),
        report.quantized,
        report.kept,
        report.bytes_in as f64 / 1048576.0,
        report.bytes_out as f64 / 1048576.0
    );
    Ok(())
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Command::Serve { port, root } = &cli.command {
        return serve::serve(root, *port);
    }
    if let Command::Quantize { input, output, ty } = &cli.command {
        return quantize_file(input, output, ty);
    }
    if let Command::Export {
        file,
        format,
        out,
        layers,
        scale,
    } = &cli.command
    {
        return export_file(file, format, out, layers.as_deref(), *scale);
    }
    if let Command::Import { file, out } = &cli.command {
        let f = crate::taskvec::export::from_safetensors(&read(file)?)?;
        write(out, f.to_json())?;
        eprintln!(
            "wrote {} ({} layers × {}), recommended layer {}",
            out.display(),
            f.model.layers,
            f.model.hidden,
            f.recommended_layer
        );
        return Ok(());
    }
    if let Command::Combine {
        expr,
        out,
        allow_transfer,
    } = &cli.command
    {
        return tasks::combine_files(expr, out, *allow_transfer);
    }
    if let Command::Map { files, layer, json } = &cli.command {
        return tasks::map_files(files, *layer, *json);
    }
    if let Command::Tasks { json } = &cli.command {
        return paper::tasks(*json);
    }
    let dev = device(cli.device)?;
    match cli.command {
        Command::Generate {
            model,
            prompt,
            image,
            max_tokens,
        } => {
            let m = load_model(&model, &dev)?;
            let images = image_list(&image)?;
            let prompt =
                if !images.is_empty() && !prompt.contains(crate::tokenize::IMAGE_PLACEHOLDER) {
                    format!("{}{prompt}", crate::tokenize::IMAGE_PLACEHOLDER)
                } else {
                    prompt
                };
            let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
            let (ids, pixels) = m.prompt(&prompt, &refs)?;
            let x = m.model.embed(&ids, &pixels)?;
            let mut new = pollster::block_on(m.model.generate(
                x,
                &Intervention::default(),
                max_tokens,
                &m.tokenizer.eos,
            ))?;
            if new.last().is_some_and(|t| m.tokenizer.eos.contains(t)) {
                new.pop();
            }
            print!("{}", m.tokenizer.decode(&new)?);
            Ok(())
        }
        Command::Hidden {
            model,
            prompt,
            ids,
            image,
            out,
        } => {
            let m = load_model(&model, &dev)?;
            let images = image_list(&image)?;
            let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
            let (ids, pixels) = match (prompt, ids) {
                (Some(p), _) => m.prompt(&p, &refs)?,
                (None, Some(ids)) => {
                    let pixels = match &m.model.config.vision {
                        Some(v) => refs
                            .iter()
                            .map(|b| crate::preprocess::load_image(b, v, m.longest_edge))
                            .collect::<Result<_>>()?,
                        None if refs.is_empty() => Vec::new(),
                        None => {
                            return Err(Error::model(
                                "this model has no vision encoder: it cannot take images",
                            ));
                        }
                    };
                    (ids, pixels)
                }
                (None, None) => unreachable!("clap requires --prompt or --ids"),
            };
            let x = m.model.embed(&ids, &pixels)?;
            let seq = ids.len();
            let iv = Intervention {
                capture: (0..seq).collect(),
                all_logits: true,
                ..Default::default()
            };
            let o = m
                .model
                .forward(x, KvCache::new(m.model.num_layers()), &iv)?;
            let hidden = o.hidden.expect("captured");
            let hdims = hidden.dims();
            let ldims = o.logits.dims();
            let hidden = pollster::block_on(read_f32(hidden))?;
            let logits = pollster::block_on(read_f32(o.logits))?;
            let ids64: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
            write_safetensors(
                &out,
                &[
                    (
                        "hidden",
                        f32_bytes(&hidden),
                        hdims.to_vec(),
                        safetensors::Dtype::F32,
                    ),
                    (
                        "logits",
                        f32_bytes(&logits),
                        ldims.to_vec(),
                        safetensors::Dtype::F32,
                    ),
                    (
                        "input_ids",
                        ids64.iter().flat_map(|v| v.to_le_bytes()).collect(),
                        vec![seq],
                        safetensors::Dtype::I64,
                    ),
                ],
            )
        }
        Command::Info { model, json } => {
            let m = load_model(&model, &dev)?;
            let i = &m.info;
            let resident = m.model.resident_bytes();
            if json {
                let o = serde_json::json!({
                    "file_bytes": i.file_bytes, "resident_weight_bytes": resident, "layers": i.layers,
                    "hidden": i.hidden, "quant": i.quant, "name": i.name, "format": i.format,
                    "fingerprint": i.fingerprint, "vision": i.vision, "storage": i.storage,
                });
                println!("{o}");
            } else {
                println!(
                    "{} ({}, {}), fingerprint {}",
                    i.name, i.format, i.quant, i.fingerprint
                );
                println!(
                    "file {:.1} MiB, resident weights {:.1} MiB (matrices stored as {})",
                    i.file_bytes as f64 / 1048576.0,
                    resident as f64 / 1048576.0,
                    i.storage
                );
                println!(
                    "{} layers, hidden {}, images: {}",
                    i.layers,
                    i.hidden,
                    if i.vision { "yes" } else { "no" }
                );
            }
            Ok(())
        }
        Command::Bench {
            model,
            prefill,
            decode,
            runs,
            json,
            probe,
            image,
        } => {
            let t0 = std::time::Instant::now();
            let now = move || t0.elapsed().as_secs_f64() * 1e3;
            if probe {
                let r = pollster::block_on(crate::bench::probe(&dev, runs.max(1), &now))?;
                println!("{}", serde_json::to_string(&r).expect("report serializes"));
                return Ok(());
            }
            let m = load_model(&model, &dev)?;
            let name = match cli.device {
                Backend::Cpu => "flex (cpu)",
                Backend::Wgpu => "wgpu",
            };
            if let Some(path) = image {
                let bytes = read(&path)?;
                let r =
                    pollster::block_on(crate::bench::image_bench(&m, name, &bytes, runs, 8, &now))?;
                if json {
                    println!("{}", serde_json::to_string(&r).expect("report serializes"));
                } else {
                    println!("backend              {}", r.backend);
                    println!("preprocess           {:.1} ms", r.preprocess_ms);
                    println!(
                        "vision encoder       {:.1} ms ({:.1} GFLOP/s)",
                        r.vision_ms, r.vision_gflops
                    );
                    println!(
                        "image prompt prefill {:.1} ms ({} tokens, {} of them the image)",
                        r.image_prefill_ms, r.prompt_tokens, r.image_tokens
                    );
                    println!("image → first token  {:.1} ms", r.first_token_ms);
                    println!(
                        "apply (page)         {:.1} ms (3 answers of {} tokens + sweep)",
                        r.apply_ms, r.max_tokens
                    );
                    println!("apply, estimated     {:.1} ms", r.estimated_apply_ms);
                }
                return Ok(());
            }
            let r = pollster::block_on(crate::bench::bench(
                &m, name, prefill, decode, runs, true, &now,
            ))?;
            if json {
                println!("{}", serde_json::to_string(&r).expect("report serializes"));
            } else {
                println!("backend              {}", r.backend);
                println!(
                    "prefill              {:.1} tok/s ({} tokens, every layer captured)",
                    r.prefill_tok_s, r.prefill_tokens
                );
                println!("decode               {:.2} ms/token", r.decode_ms_per_token);
                println!("patched forward      {:.1} ms", r.patched_forward_ms);
                println!(
                    "layer sweep (fast)   {:.1} ms  ({:.2}x one patched forward)",
                    r.sweep_ms,
                    r.sweep_ms / r.patched_forward_ms
                );
                println!("layer sweep (naive)  {:.1} ms", r.naive_sweep_ms);
            }
            Ok(())
        }
        Command::Table(a) => paper::table(a, &dev),
        other => run_task_command(other, &dev),
    }
}

pub mod paper;
pub mod serve;
mod tasks;
use tasks::run_task_command;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes named tensors (raw little-endian bytes) to a safetensors file.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(&str, Vec<u8>, Vec<usize>, safetensors::Dtype)],
) -> Result<()> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, b, s, d)| {
            safetensors::tensor::TensorView::new(*d, s.clone(), b)
                .map(|v| (n.to_string(), v))
                .map_err(|e| Error::model(format!("safetensors: {e}")))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| Error::model(format!("safetensors: {e}")))?;
    write(path, bytes)
}
