//! The task-vector sharing format, version 2: one self-describing JSON file with every layer's
//! vector as plain JSON numbers (readable from any language), how it is put into a run (the
//! intervention) and how it was evaluated. Version 1 files (no intervention or evaluation
//! record) still load. Schemas: `schema/taskvec-vector-v2.schema.json` (and `-v1`). Import
//! checks everything and explains refusals.

use serde::{Deserialize, Serialize};

use super::engine::{ReadAt, TaskVector};
use super::protocol::SweepReport;
use crate::error::{Error, Result};
use crate::loader::ModelInfo;

/// The `format` field's value.
pub const FORMAT: &str = "taskvec.vector";
/// The version this build writes.
pub const VERSION: u32 = 2;
/// The versions this build reads.
pub const READS: [u64; 2] = [1, 2];
/// Largest file accepted on import.
pub const MAX_BYTES: usize = 64 << 20;

/// How the `vectors` numbers are to be read (the `encoding` field).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    /// JSON numbers read as 32-bit floats.
    #[default]
    #[serde(rename = "f32")]
    F32,
}

/// The model a vector belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// Model name.
    pub id: String,
    /// Decoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Short SHA-256 of the weight files.
    pub fingerprint: String,
}

/// How the task was specified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecKind {
    /// Text examples.
    TextExamples,
    /// Image examples.
    ImageExamples,
    /// An instruction.
    Instruction,
    /// Average of other vectors.
    Ensemble,
    /// A weighted sum of other vector files (`taskvec combine`; see [`Derivation`]).
    Combination,
}

/// Where and how the vector goes into a run (format v2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterventionRecord {
    /// The site: which activation row l changes.
    pub site: String,
    /// Where the vector was read in its extraction prompts (`demo` or `query`).
    pub read_at: ReadAt,
    /// Where it is put: the query's last prompt position (and, when steering, every generated
    /// token).
    pub position: String,
    /// The operator meant for it.
    pub operator: crate::model::Operator,
    /// Its strength.
    pub scale: f32,
}

impl InterventionRecord {
    /// The paper's patch for vectors read at `read_at`.
    pub fn paper(read_at: ReadAt) -> Self {
        InterventionRecord {
            site: "residual stream: raw output of decoder layer l (before the final norm); row l of vectors".into(),
            read_at,
            position: "the query's last prompt token".into(),
            operator: crate::model::Operator::Replace,
            scale: 1.0,
        }
    }
}

/// How the recorded accuracies were measured (format v2; beside [`SweepRecord`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationRecord {
    /// How an answer is scored.
    pub metric: String,
    /// Which split did what.
    pub split: String,
    /// Seeds of the demonstration draws.
    pub seeds: Vec<u64>,
    /// SHA-256 (hex) of the task's examples as recorded (`input<TAB>output<LF>` each, in order).
    pub dataset_hash: String,
}

/// SHA-256 (hex) of examples as `input<TAB>output<LF>` lines.
pub fn dataset_hash(examples: &[ExampleRecord]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for e in examples {
        h.update(e.input.as_bytes());
        h.update(b"\t");
        h.update(e.output.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// How a combined vector was made: `Σ weight · vector` over the terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Derivation {
    /// The expression as written, e.g. `a.json + b.json - c.json * 0.5`.
    pub expression: String,
    /// The terms, in order.
    pub terms: Vec<DerivationTerm>,
}

/// One term of a [`Derivation`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivationTerm {
    /// Its weight (sign included).
    pub weight: f32,
    /// The term file's task name.
    pub task: String,
    /// The term file's specification.
    pub spec: SpecKind,
    /// The term file's creation time.
    pub created_at: String,
}

/// One example as recorded in the file (an image is recorded by its label).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleRecord {
    /// The input text, or the image's label.
    pub input: String,
    /// The answer.
    pub output: String,
    /// Whether the input was an image.
    #[serde(default)]
    pub image: bool,
}

/// The task and its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRecord {
    /// Task name.
    pub name: String,
    /// Specification kind.
    pub spec: SpecKind,
    /// Examples used (empty for an instruction).
    #[serde(default)]
    pub examples: Vec<ExampleRecord>,
    /// Instruction text, when used.
    #[serde(default)]
    pub instruction: Option<String>,
    /// Number of extraction prompts averaged.
    pub prompts: usize,
    /// Seed of the demonstration draws.
    #[serde(default)]
    pub seed: u64,
}

/// Prompt format and position the vectors were taken at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptFormat {
    /// Demonstration template.
    pub demonstration: String,
    /// Query template.
    pub query: String,
    /// Which position.
    pub position: String,
    /// Which stream.
    pub stream: String,
    /// Where exemplar vectors were read: `demo` (the last demonstration's `A:`, the paper's
    /// code) or `query` (the query's final `:`). Absent in older files: `query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<ReadAt>,
}

impl Default for PromptFormat {
    fn default() -> Self {
        Self::read_at(ReadAt::Query)
    }
}

impl PromptFormat {
    /// The paper's format with vectors read at `at`.
    pub fn read_at(at: ReadAt) -> Self {
        PromptFormat {
            demonstration: "Q:{x}\nA:{y}\n\n".into(),
            query: "Q:{x}\nA:".into(),
            position: at.describe().into(),
            stream: "raw output of each decoder layer (residual stream, before the final norm); row l = layer l".into(),
            read_at: Some(at),
        }
    }
}

/// Sweep accuracies stored with a vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepRecord {
    /// Zero-shot accuracy.
    pub zero_shot: f32,
    /// 5-shot in-context accuracy.
    pub icl: f32,
    /// Patched accuracy per layer.
    pub patched: Vec<f32>,
    /// Patched validation accuracy per layer (the layer choice), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_patched: Option<Vec<f32>>,
    /// The layer chosen on validation, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_layer: Option<usize>,
}

/// A task-vector file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`] for this build.
    pub version: u32,
    /// The model.
    pub model: ModelRef,
    /// The task.
    pub task: TaskRecord,
    /// Prompt format.
    pub prompt_format: PromptFormat,
    /// `f32`: vectors are JSON numbers to be read as 32-bit floats.
    pub encoding: Encoding,
    /// `[layers][hidden]`.
    pub vectors: Vec<Vec<f32>>,
    /// Layer to patch by default.
    pub recommended_layer: usize,
    /// Accuracies, when a sweep was run.
    #[serde(default)]
    pub sweep: Option<SweepRecord>,
    /// For a combination: the terms it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivation: Option<Derivation>,
    /// How the vector is put into a run (v2; absent in v1 files: the paper's patch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervention: Option<InterventionRecord>,
    /// How the sweep's accuracies were measured (v2, with a sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<EvaluationRecord>,
    /// Tool that made the file.
    pub created_by: String,
    /// RFC 3339 time of creation.
    pub created_at: String,
}

impl VectorFile {
    /// Wraps a vector with its provenance.
    pub fn new(
        v: &TaskVector,
        model: &ModelInfo,
        task: TaskRecord,
        recommended_layer: usize,
        sweep: Option<&SweepReport>,
        created_at: String,
    ) -> Self {
        let evaluation = sweep.map(|_| EvaluationRecord {
            metric: "greedy answer vs label: whitespace stripped, one a prefix of the other".into(),
            split:
                "val: the extraction prompts and the layer choice; test: the reported accuracies"
                    .into(),
            seeds: vec![task.seed],
            dataset_hash: dataset_hash(&task.examples),
        });
        VectorFile {
            format: FORMAT.into(),
            version: VERSION,
            model: ModelRef {
                id: model.name.clone(),
                layers: model.layers,
                hidden: model.hidden,
                fingerprint: model.fingerprint.clone(),
            },
            task,
            prompt_format: PromptFormat::default(),
            encoding: Encoding::F32,
            vectors: v.layers.clone(),
            recommended_layer,
            sweep: sweep.map(|s| SweepRecord {
                zero_shot: s.zero_shot,
                icl: s.icl,
                patched: s.patched.clone(),
                val_patched: Some(s.val_patched.clone()),
                selected_layer: Some(s.selected_layer),
            }),
            derivation: None,
            intervention: Some(InterventionRecord::paper(
                PromptFormat::default().read_at.unwrap_or_default(),
            )),
            evaluation,
            created_by: concat!("taskvec ", env!("CARGO_PKG_VERSION")).into(),
            created_at,
        }
    }

    /// The vectors.
    pub fn vector(&self) -> TaskVector {
        TaskVector {
            layers: self.vectors.clone(),
        }
    }

    /// Compact JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a VectorFile always serializes")
    }

    /// Parses and validates a file's text on its own (not against a model).
    pub fn from_json(text: &str) -> Result<Self> {
        let refuse = |m: String| Err(Error::TaskVector(m));
        if text.len() > MAX_BYTES {
            return refuse(format!(
                "the file is {} MiB; vector files are at most {} MiB",
                text.len() >> 20,
                MAX_BYTES >> 20
            ));
        }
        if text.trim().is_empty() {
            return refuse("the file is empty".into());
        }
        let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            // Python's json.dump writes NaN / Infinity, which JSON does not allow.
            let hint = if ["NaN", "Infinity"].iter().any(|w| text.contains(w)) {
                " (it contains NaN or Infinity: the vector holds non-finite values)"
            } else {
                ""
            };
            Error::TaskVector(format!("not valid JSON{hint}: {e}"))
        })?;
        match raw.get("format").and_then(|v| v.as_str()) {
            Some(FORMAT) => {}
            Some(other) => {
                return refuse(format!("not a taskvec vector file (format is {other:?})"));
            }
            None => return refuse("not a taskvec vector file (no \"format\" field)".into()),
        }
        match raw.get("version").and_then(|v| v.as_u64()) {
            Some(v) if READS.contains(&v) => {}
            Some(v) => {
                return refuse(format!(
                    "version {v} is not supported by this taskvec (it reads versions 1 and {VERSION}); update taskvec"
                ));
            }
            None => return refuse("the file has no integer \"version\"".into()),
        }
        match raw.get("encoding") {
            Some(serde_json::Value::String(e)) if e != "f32" => {
                return refuse(format!("unknown encoding {e:?} (expected \"f32\")"));
            }
            _ => {}
        }
        // NaN/Infinity are not JSON: they arrive as null or strings and fail typed parsing below.
        let f: VectorFile = serde_json::from_value(raw).map_err(|e| {
            Error::TaskVector(format!("the file does not follow format version 1: {e}"))
        })?;
        f.validate()?;
        Ok(f)
    }

    /// Checks shapes and values.
    pub fn validate(&self) -> Result<()> {
        let refuse = |m: String| Err(Error::TaskVector(m));
        let (l, d) = (self.model.layers, self.model.hidden);
        if l == 0 || d == 0 {
            return refuse("the file declares zero layers or zero hidden size".into());
        }
        if self.vectors.len() != l {
            return refuse(format!(
                "the file declares {l} layers but holds {} vectors",
                self.vectors.len()
            ));
        }
        if let Some((i, v)) = self.vectors.iter().enumerate().find(|(_, v)| v.len() != d) {
            return refuse(format!(
                "vector {i} has {} values; the declared hidden size is {d}",
                v.len()
            ));
        }
        if let Some(i) = self
            .vectors
            .iter()
            .position(|v| v.iter().any(|x| !x.is_finite()))
        {
            return refuse(format!(
                "vector {i} contains a non-finite value (NaN or infinity)"
            ));
        }
        if self.recommended_layer >= l {
            return refuse(format!(
                "recommended layer {} is outside 0..{l}",
                self.recommended_layer
            ));
        }
        if let Some(s) = &self.sweep
            && s.patched.len() != l
        {
            return refuse(format!(
                "the sweep has {} layers, the vectors {l}",
                s.patched.len()
            ));
        }
        Ok(())
    }

    /// Checks that the vector fits `model`: same layers and hidden size always; the same
    /// weights unless `allow_transfer` (e.g. an LLM vector applied to its VLM).
    pub fn check_model(&self, model: &ModelInfo, allow_transfer: bool) -> Result<()> {
        let m = &self.model;
        if m.layers != model.layers || m.hidden != model.hidden {
            return Err(Error::TaskVector(format!(
                "this vector was made with '{}' ({} layers × {} hidden); the loaded model '{}' has {} layers × {} hidden, so it cannot be applied",
                m.id, m.layers, m.hidden, model.name, model.layers, model.hidden
            )));
        }
        if m.fingerprint != model.fingerprint && !allow_transfer {
            return Err(Error::TaskVector(format!(
                "this vector was made with another model ('{}', fingerprint {}; loaded: '{}', {}). The shapes match, so it can be transferred (e.g. SmolLM2 → SmolVLM): allow transfer to use it",
                m.id, m.fingerprint, model.name, model.fingerprint
            )));
        }
        Ok(())
    }
}
