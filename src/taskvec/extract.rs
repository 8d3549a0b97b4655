//! One extraction path for every shell: `taskvec extract` and the page's worker both turn an
//! [`ExtractRequest`] into the same [`VectorFile`] (byte-equal but for the time and creator).

use super::engine::{Engine, ReadAt};
use super::format::{ExampleRecord, PromptFormat, SpecKind, TaskRecord, VectorFile};
use super::protocol::{Extraction, Spec, evaluate_at, paired_for, vector_for};
use super::task::{Example, Task};
use crate::error::{Error, Result};

/// What to extract.
#[derive(Debug, Clone)]
pub struct ExtractRequest {
    /// The task: its name, examples (text or image) and instruction.
    pub task: Task,
    /// Examples, the instruction, or their mean.
    pub spec: Spec,
    /// Source prompts averaged (one per example, up to this many).
    pub prompts: usize,
    /// Seed of the demonstration draws (and of the split of a non-built-in task).
    pub seed: u64,
    /// Where exemplar vectors are read.
    pub read_at: ReadAt,
    /// Run the protocol too: the vector then comes from the validation split, and the file
    /// records the accuracies and recommends the layer chosen on validation.
    pub sweep: bool,
    /// RFC 3339 creation time written into the file.
    pub created_at: String,
}

fn records(examples: &[Example]) -> Vec<ExampleRecord> {
    examples
        .iter()
        .map(|e| ExampleRecord {
            input: e.input.label().to_string(),
            output: e.output.clone(),
            image: e.input.is_image(),
        })
        .collect()
}

/// Extracts a task vector and wraps it in a vector file. `progress(done, total)` follows the
/// protocol's test items when `sweep` is set.
pub async fn extract_file(
    engine: &Engine<'_>,
    req: &ExtractRequest,
    progress: impl FnMut(usize, usize),
) -> Result<VectorFile> {
    let t = &req.task;
    if req.spec != Spec::Instruction && t.examples.is_empty() {
        return Err(Error::TaskVector(
            "at least 2 examples are needed for an exemplar or ensemble task vector, got 0".into(),
        ));
    }
    if req.spec != Spec::Text && t.instruction.as_deref().is_none_or(|i| i.trim().is_empty()) {
        return Err(Error::TaskVector(format!(
            "task '{}' has no instruction: give one for an instruction or ensemble vector",
            t.name
        )));
    }
    let x = Extraction {
        prompts: req.prompts,
        read_at: req.read_at,
    };
    let (v, report, used) = if req.sweep {
        let (r, v) = evaluate_at(engine, t, req.spec, x, req.seed, progress).await?;
        let paired = paired_for(t, req.seed)?;
        let image = t.examples.iter().any(|e| e.input.is_image());
        let m = if image {
            super::Modality::Image
        } else {
            super::Modality::Text
        };
        let used: Vec<Example> = paired.val.iter().filter_map(|i| i.example(m)).collect();
        (v, Some(r), used)
    } else {
        let v = vector_for(
            engine,
            t,
            &t.examples,
            req.spec,
            req.prompts,
            req.seed,
            req.read_at,
        )
        .await?;
        (v, None, t.examples.clone())
    };
    let kind = match req.spec {
        Spec::Text if used.iter().any(|e| e.input.is_image()) => SpecKind::ImageExamples,
        Spec::Text => SpecKind::TextExamples,
        Spec::Instruction => SpecKind::Instruction,
        Spec::Ensemble => SpecKind::Ensemble,
    };
    let rec = TaskRecord {
        name: t.name.clone(),
        spec: kind,
        examples: if req.spec == Spec::Instruction {
            vec![]
        } else {
            records(&used)
        },
        instruction: if req.spec == Spec::Text {
            None
        } else {
            t.instruction.clone()
        },
        prompts: if req.spec == Spec::Instruction {
            1
        } else {
            used.len().min(req.prompts.max(1))
        },
        seed: req.seed,
    };
    let info = &engine.m.info;
    let layer = report
        .as_ref()
        .map_or(info.layers / 2, |r| r.selected_layer);
    let mut f = VectorFile::new(
        &v,
        info,
        rec,
        layer,
        report.as_ref(),
        req.created_at.clone(),
    );
    f.prompt_format = if req.spec == Spec::Instruction {
        PromptFormat {
            position: "the instruction's last token (its final ':')".into(),
            read_at: None,
            ..PromptFormat::read_at(ReadAt::Query)
        }
    } else {
        PromptFormat::read_at(req.read_at)
    };
    if let Some(i) = f.intervention.as_mut() {
        i.read_at = f.prompt_format.read_at.unwrap_or(ReadAt::Query);
    }
    Ok(f)
}
