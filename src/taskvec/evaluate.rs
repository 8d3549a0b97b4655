//! One task evaluated the way `taskvec sweep` does it: the protocol of [`super::protocol`] run
//! over seeds with the accuracies per layer ([`SweepReport`]), and the single vector a request
//! asks for ([`vector_for`]).

use super::dataset::{Modality, PairedTask};
use super::engine::{Engine, ReadAt, TaskVector};
use super::protocol::{
    Experiment, Extraction, Memo, Needs, SeedRun, Source, Spec, Trial, mean, run_seed, select_layer,
};
use super::task::{Example, Input, Task};
use crate::error::{Error, Result};

/// Accuracies of one protocol run (`taskvec sweep --json`; a fixed contract).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepReport {
    /// Task name.
    pub task: String,
    /// Specification used for the vector.
    pub spec: Spec,
    /// Seed of the demonstration draws.
    pub seed: u64,
    /// Validation examples (extraction, layer choice).
    pub n_val: usize,
    /// Test examples scored.
    pub n_test: usize,
    /// Zero-shot accuracy on test (query alone).
    pub zero_shot: f32,
    /// In-context accuracy on test (5 test demonstrations + query).
    pub icl: f32,
    /// Patched test accuracy per layer.
    pub patched: Vec<f32>,
    /// Layer with the best *test* accuracy (first on ties): optimistic, kept for comparison.
    pub best_layer: usize,
    /// Patched validation accuracy per layer.
    pub val_patched: Vec<f32>,
    /// The layer chosen on validation (argmax of `val_patched`, first on ties).
    pub selected_layer: usize,
    /// Test accuracy at the selected layer: the protocol's result.
    pub test_at_selected: f32,
    /// Where exemplar vectors were read.
    pub read_at: ReadAt,
}

impl SweepReport {
    /// Summarizes one seed's run.
    pub fn new(task: &str, spec: Spec, run: &SeedRun, read_at: ReadAt) -> Self {
        let patched: Vec<f32> = run.patched.iter().map(|l| mean(l)).collect();
        let best_layer =
            (0..patched.len()).fold(0, |b, l| if patched[l] > patched[b] { l } else { b });
        let selected_layer = select_layer([run]).unwrap_or(0);
        SweepReport {
            task: task.to_string(),
            spec,
            seed: run.seed,
            n_val: run.n_val,
            n_test: run.n_test,
            zero_shot: mean(&run.base),
            icl: mean(&run.icl),
            test_at_selected: patched.get(selected_layer).copied().unwrap_or(0.0),
            patched,
            best_layer,
            val_patched: run.val_patched.clone(),
            selected_layer,
            read_at,
        }
    }
}

/// The protocol for one spec on one task with one seed: zero-shot, ICL and patched accuracy
/// per layer on test, the layer chosen on validation; demonstrations and queries in
/// `modality`.
pub async fn evaluate_paired(
    engine: &Engine<'_>,
    task: &PairedTask,
    spec: Spec,
    modality: Modality,
    x: Extraction,
    seed: u64,
    mut progress: impl FnMut(usize, usize),
) -> Result<(SweepReport, TaskVector)> {
    let source = match spec {
        Spec::Text => Source::Examples(modality),
        Spec::Instruction => Source::Instruction,
        Spec::Ensemble => Source::Ensemble(modality),
    };
    let exp = Experiment {
        source,
        target: modality,
    };
    let mut memo = Memo::default();
    let trial = Trial {
        task,
        exp: &exp,
        x,
        seed,
        needs: Needs::ALL,
    };
    let (run, v) = run_seed(engine, engine, trial, &mut memo, &mut |d, n, _| {
        progress(d, n)
    })
    .await?;
    Ok((
        SweepReport::new(&task.name, spec, &run, x.read_at),
        v.expect("patch needed"),
    ))
}

/// [`evaluate_paired`] on a plain task: the built-in split when it is a built-in task, else a
/// seeded shuffle; image examples make an image → image run. Reads at the last
/// demonstration's `A:`.
pub async fn evaluate(
    engine: &Engine<'_>,
    task: &Task,
    spec: Spec,
    n_prompts: usize,
    seed: u64,
    progress: impl FnMut(usize, usize),
) -> Result<(SweepReport, TaskVector)> {
    let x = Extraction {
        prompts: n_prompts,
        read_at: ReadAt::Demo,
    };
    evaluate_at(engine, task, spec, x, seed, progress).await
}

/// [`evaluate`] with explicit extraction settings.
pub async fn evaluate_at(
    engine: &Engine<'_>,
    task: &Task,
    spec: Spec,
    x: Extraction,
    seed: u64,
    progress: impl FnMut(usize, usize),
) -> Result<(SweepReport, TaskVector)> {
    let paired = paired_for(task, seed)?;
    let m = if task.examples.iter().any(|e| e.input.is_image()) {
        Modality::Image
    } else {
        Modality::Text
    };
    evaluate_paired(engine, &paired, spec, m, x, seed, progress).await
}

/// The paired form of a task: a built-in's fixed split (text only) when `task` is one
/// unchanged, else a seeded shuffle of its examples.
pub fn paired_for(task: &Task, seed: u64) -> Result<PairedTask> {
    if let Ok(b) = PairedTask::builtin_with(&task.name, |_| Ok(Vec::new()), false) {
        let same = b.val.len() + b.test.len() == task.examples.len()
            && b.val.iter().chain(&b.test).all(|i| {
                task.examples
                    .iter()
                    .any(|e| e.input == Input::Text(i.text.clone()) && e.output == i.output)
            });
        if same {
            return Ok(PairedTask {
                instruction: task.instruction.clone().or(b.instruction),
                ..b
            });
        }
    }
    PairedTask::from_examples(task, seed)
}

/// Builds the task vector for a spec from the examples given (all of them, one prompt each up
/// to `n_prompts`): what `taskvec extract` and the page's extraction store.
pub async fn vector_for(
    engine: &Engine<'_>,
    task: &Task,
    val: &[Example],
    spec: Spec,
    n_prompts: usize,
    seed: u64,
    read_at: ReadAt,
) -> Result<TaskVector> {
    let instruction = || {
        task.instruction.clone().ok_or_else(|| {
            Error::TaskVector(format!(
                "task '{}' has no instruction; use --spec text",
                task.name
            ))
        })
    };
    Ok(match spec {
        Spec::Text => {
            engine
                .extract_examples_at(val, n_prompts, seed, read_at, |_, _| {})
                .await?
        }
        Spec::Instruction => engine.extract_instruction(&instruction()?).await?,
        Spec::Ensemble => {
            let a = engine
                .extract_examples_at(val, n_prompts, seed, read_at, |_, _| {})
                .await?;
            let b = engine.extract_instruction(&instruction()?).await?;
            TaskVector::mean(&[&a, &b])?
        }
    })
}
