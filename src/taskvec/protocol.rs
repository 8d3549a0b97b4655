//! The paper's accuracy protocol on a task: seeded split (first third validation, rest test),
//! a task vector from the validation set, then zero-shot, 5-shot ICL and patched accuracy at
//! every layer on the test set (first generated token, prefix match).

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::engine::{DEMOS, Engine, TaskVector};
use super::task::{Prompt, Task, draw_demos, is_correct};
use crate::error::{Error, Result};

/// How the task is specified for extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Spec {
    /// Text (or image) examples.
    Text,
    /// The task's instruction.
    Instruction,
    /// Mean of the two.
    Ensemble,
}

/// Accuracies of one protocol run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepReport {
    /// Task name.
    pub task: String,
    /// Specification used for the vector.
    pub spec: Spec,
    /// Seed of the split and demonstrations.
    pub seed: u64,
    /// Validation examples (extraction, demonstrations).
    pub n_val: usize,
    /// Test examples scored.
    pub n_test: usize,
    /// Zero-shot accuracy (query alone).
    pub zero_shot: f32,
    /// In-context accuracy (5 demonstrations + query).
    pub icl: f32,
    /// Patched accuracy per layer.
    pub patched: Vec<f32>,
    /// Layer with the best patched accuracy (first on ties).
    pub best_layer: usize,
}

/// Builds the task vector for a spec from the validation examples.
pub async fn vector_for(
    engine: &Engine<'_>,
    task: &Task,
    val: &[crate::taskvec::Example],
    spec: Spec,
    n_prompts: usize,
    seed: u64,
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
                .extract_examples(val, n_prompts, seed, |_, _| {})
                .await?
        }
        Spec::Instruction => engine.extract_instruction(&instruction()?).await?,
        Spec::Ensemble => {
            let a = engine
                .extract_examples(val, n_prompts, seed, |_, _| {})
                .await?;
            let b = engine.extract_instruction(&instruction()?).await?;
            TaskVector::mean(&[&a, &b])?
        }
    })
}

/// Runs the whole protocol. `progress(done, total)` is called after each test item.
pub async fn evaluate(
    engine: &Engine<'_>,
    task: &Task,
    spec: Spec,
    n_prompts: usize,
    seed: u64,
    mut progress: impl FnMut(usize, usize),
) -> Result<(SweepReport, TaskVector)> {
    let (val, test) = task.split(seed)?;
    let v = vector_for(engine, task, &val, spec, n_prompts, seed).await?;
    let ignore_case = spec != Spec::Text;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1c1);
    let (mut zs, mut icl) = (0usize, 0usize);
    let mut patched = vec![0usize; v.num_layers()];
    for (i, ex) in test.iter().enumerate() {
        let q = Prompt::zero_shot(&ex.input);
        zs += is_correct(&engine.first_token(&q).await?.text, &ex.output, ignore_case) as usize;
        let demos = draw_demos(&val, None, &ex.input, DEMOS, &mut rng);
        let p = Prompt::few_shot(&demos, &ex.input);
        icl += is_correct(&engine.first_token(&p).await?.text, &ex.output, ignore_case) as usize;
        for pred in engine.sweep(&q, &v).await? {
            patched[pred.layer] += is_correct(&pred.text, &ex.output, ignore_case) as usize;
        }
        progress(i + 1, test.len());
    }
    let n = test.len() as f32;
    let patched: Vec<f32> = patched.into_iter().map(|c| c as f32 / n).collect();
    let best_layer = (0..patched.len()).fold(0, |b, l| if patched[l] > patched[b] { l } else { b });
    let report = SweepReport {
        task: task.name.clone(),
        spec,
        seed,
        n_val: val.len(),
        n_test: test.len(),
        zero_shot: zs as f32 / n,
        icl: icl as f32 / n,
        patched,
        best_layer,
    };
    Ok((report, v))
}
