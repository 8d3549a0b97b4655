//! The command line: commands, their flags and typed values (clap derive).

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use super::paper;
pub use crate::model::device::Backend;
use crate::model::qmatmul::Activations;
use crate::named::Named;
use crate::taskvec::export::ExportFormat;
use crate::taskvec::{ReadAt, Spec};
use crate::weights::WeightMode;
use crate::weights::quant::GgmlType;

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
    #[arg(long, value_enum, default_value = "auto")]
    pub weights: WeightMode,
    /// What the CPU multiplies quantized weight blocks with: `int8` quantizes the activations
    /// to 8-bit blocks per product and takes integer dot products (llama.cpp's way; AVX2 or
    /// AVX512-VNNI, chosen at run time), `int16` the same with 12-bit levels in 16-bit integers (16× finer),
    /// `f32` keeps them f32 (the reference). Elsewhere than x86-64 with AVX2 every mode is f32.
    #[arg(long, value_enum, default_value = "int16")]
    pub activations: Activations,
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
        spec: Option<Spec>,
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
        #[arg(long, value_enum, default_value_t = ReadAt::Demo)]
        read_at: ReadAt,
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
        #[arg(long, value_enum, default_value_t = Spec::Text)]
        spec: Spec,
        /// Extraction prompts (one per validation example, up to this many).
        #[arg(long, default_value_t = 30)]
        prompts: usize,
        /// Seed of the demonstration draws (and of the split of a --pairs file; built-in tasks
        /// have a fixed validation/test split).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where exemplar vectors are read (`demo`: the last demonstration's `A:`; `query`).
        #[arg(long, value_enum, default_value_t = ReadAt::Demo)]
        read_at: ReadAt,
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
        #[arg(long = "type", value_parser = block_type())]
        ty: GgmlType,
    },
    /// Writes a vector file for other tools: safetensors (tensor `vectors` f32 [layers,
    /// hidden] + metadata; `taskvec import` reads it back) or llama.cpp's control-vector GGUF.
    Export {
        /// The task-vector JSON file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_parser = export_format())]
        format: ExportFormat,
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
    /// Checks the fused quantized WebGPU kernel against the tensor-op path on the wgpu device
    /// (`--device wgpu`, a build with the `wgpu` feature): one JSON line per block type and
    /// shape, with the largest relative difference, times, dispatches and bytes.
    FusedCheck {
        /// `check` (small shapes reaching every kernel branch, untimed) or `bench`
        /// (SmolVLM-size products, timed).
        #[arg(long, default_value = "check")]
        sizes: String,
        /// Timed runs per product (`bench`).
        #[arg(long, default_value_t = 5)]
        runs: usize,
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

/// `--weights`: the modes of [`Named::NAMED`], listed without help texts.
impl ValueEnum for WeightMode {
    fn value_variants<'a>() -> &'a [Self] {
        static MODES: std::sync::OnceLock<Vec<WeightMode>> = std::sync::OnceLock::new();
        MODES.get_or_init(|| WeightMode::NAMED.iter().map(|(_, m)| *m).collect())
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        self.name().map(PossibleValue::new)
    }
}

/// `quantize --type`: the block types taskvec writes (`q8_0`, `q4_0`, `q4_1`).
fn block_type() -> impl TypedValueParser<Value = GgmlType> {
    PossibleValuesParser::new(["q8_0", "q4_0", "q4_1"]).map(|s| match s.parse::<WeightMode>() {
        Ok(WeightMode::Quantize(t)) => t,
        _ => unreachable!("clap accepts only the listed block types"),
    })
}

/// `export --format`: the names of [`ExportFormat`]'s [`Named::NAMED`].
fn export_format() -> impl TypedValueParser<Value = ExportFormat> {
    PossibleValuesParser::new(ExportFormat::NAMED.iter().map(|(n, _)| *n)).map(|s| {
        s.parse::<ExportFormat>()
            .expect("clap accepts only the listed formats")
    })
}
