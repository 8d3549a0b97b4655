//! The paper table's rows: each an experiment (which demonstrations or instruction make the
//! vector, which modality the queries are, what is measured), with its id and label.

use super::dataset::Modality;
use super::protocol::{Experiment, Source};
use crate::error::{Error, Result};

/// What a row reports of its experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// The query alone.
    NoContext,
    /// Demonstrations in context.
    InContext,
    /// The vector patched at the validation-chosen layer.
    Patched,
}

/// A row of the paper's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Row {
    /// Image query alone.
    #[serde(rename = "no-context")]
    NoContext,
    /// Text query alone.
    #[serde(rename = "no-context-text")]
    NoContextText,
    /// Text demonstrations + text query, in context.
    #[serde(rename = "text-icl")]
    TextIcl,
    /// Text-demonstration vector patched into text queries.
    #[serde(rename = "text-patch")]
    TextPatch,
    /// Text demonstrations + image query, in context (the paper's xBase).
    #[serde(rename = "text-xbase")]
    TextXBase,
    /// Text-demonstration vector patched into image queries (the paper's xPatch).
    #[serde(rename = "text-xpatch")]
    TextXPatch,
    /// Image demonstrations + image query, in context.
    #[serde(rename = "image-icl")]
    ImageIcl,
    /// Image-demonstration vector patched into image queries.
    #[serde(rename = "image-patch")]
    ImagePatch,
    /// Image-demonstration vector patched into text queries.
    #[serde(rename = "image-text-xpatch")]
    ImageTextXPatch,
    /// Instruction vector patched into image queries.
    #[serde(rename = "instruction")]
    Instruction,
    /// Instruction vector patched into text queries.
    #[serde(rename = "instruction-text")]
    InstructionText,
    /// ½ text-exemplar + ½ instruction vector patched into image queries.
    #[serde(rename = "ensemble")]
    Ensemble,
    /// The same ensemble patched into text queries.
    #[serde(rename = "ensemble-text")]
    EnsembleText,
    /// A text LM's text-demonstration vector patched into the VLM's image queries.
    #[serde(rename = "llm-xpatch")]
    LlmXPatch,
}

/// Every row, in the table's order.
pub const ROWS: [Row; 14] = [
    Row::NoContext,
    Row::TextXBase,
    Row::TextXPatch,
    Row::ImageIcl,
    Row::ImagePatch,
    Row::ImageTextXPatch,
    Row::Instruction,
    Row::Ensemble,
    Row::LlmXPatch,
    Row::NoContextText,
    Row::TextIcl,
    Row::TextPatch,
    Row::InstructionText,
    Row::EnsembleText,
];

impl Row {
    /// The row's id on the command line and in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Row::NoContext => "no-context",
            Row::NoContextText => "no-context-text",
            Row::TextIcl => "text-icl",
            Row::TextPatch => "text-patch",
            Row::TextXBase => "text-xbase",
            Row::TextXPatch => "text-xpatch",
            Row::ImageIcl => "image-icl",
            Row::ImagePatch => "image-patch",
            Row::ImageTextXPatch => "image-text-xpatch",
            Row::Instruction => "instruction",
            Row::InstructionText => "instruction-text",
            Row::Ensemble => "ensemble",
            Row::EnsembleText => "ensemble-text",
            Row::LlmXPatch => "llm-xpatch",
        }
    }

    /// The row's label in the table.
    pub fn label(self) -> &'static str {
        match self {
            Row::NoContext => "No context (image query)",
            Row::NoContextText => "No context (text query)",
            Row::TextIcl => "Text ICL base (text → text)",
            Row::TextPatch => "Text ICL patch (text → text)",
            Row::TextXBase => "Text ICL xBase (text → image)",
            Row::TextXPatch => "Text ICL xPatch (text → image)",
            Row::ImageIcl => "Image ICL base (image → image)",
            Row::ImagePatch => "Image ICL patch (image → image)",
            Row::ImageTextXPatch => "Image ICL xPatch (image → text)",
            Row::Instruction => "Instruction xPatch (→ image)",
            Row::InstructionText => "Instruction patch (→ text)",
            Row::Ensemble => "Ensemble xPatch (→ image)",
            Row::EnsembleText => "Ensemble patch (→ text)",
            Row::LlmXPatch => "LLM → VLM xPatch (text → image)",
        }
    }

    /// The experiment the row reads, whether its vectors come from the source model, and
    /// what it reports.
    pub fn experiment(self) -> (Experiment, bool, Measure) {
        use Modality::{Image, Text};
        let e = |source, target| Experiment { source, target };
        let ex = Source::Examples;
        match self {
            Row::NoContext => (e(ex(Text), Image), false, Measure::NoContext),
            Row::NoContextText => (e(ex(Text), Text), false, Measure::NoContext),
            Row::TextIcl => (e(ex(Text), Text), false, Measure::InContext),
            Row::TextPatch => (e(ex(Text), Text), false, Measure::Patched),
            Row::TextXBase => (e(ex(Text), Image), false, Measure::InContext),
            Row::TextXPatch => (e(ex(Text), Image), false, Measure::Patched),
            Row::ImageIcl => (e(ex(Image), Image), false, Measure::InContext),
            Row::ImagePatch => (e(ex(Image), Image), false, Measure::Patched),
            Row::ImageTextXPatch => (e(ex(Image), Text), false, Measure::Patched),
            Row::Instruction => (e(Source::Instruction, Image), false, Measure::Patched),
            Row::InstructionText => (e(Source::Instruction, Text), false, Measure::Patched),
            Row::Ensemble => (e(Source::Ensemble(Text), Image), false, Measure::Patched),
            Row::EnsembleText => (e(Source::Ensemble(Text), Text), false, Measure::Patched),
            Row::LlmXPatch => (e(ex(Text), Image), true, Measure::Patched),
        }
    }

    /// Whether the row shows images to the patched model or its source.
    pub fn needs_images(self) -> bool {
        self.experiment().0.modalities().contains(&Modality::Image)
    }

    /// The default rows for a model: every row it can run (image rows need a vision encoder,
    /// `llm-xpatch` a source model).
    pub fn defaults(vision: bool, source_model: bool) -> Vec<Row> {
        ROWS.into_iter()
            .filter(|r| vision || !r.needs_images())
            .filter(|r| source_model || *r != Row::LlmXPatch)
            .collect()
    }
}

impl std::str::FromStr for Row {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ROWS.into_iter().find(|r| r.id() == s).ok_or_else(|| {
            let ids: Vec<&str> = ROWS.iter().map(|r| r.id()).collect();
            Error::TaskVector(format!("unknown row '{s}'; rows: {}", ids.join(", ")))
        })
    }
}
