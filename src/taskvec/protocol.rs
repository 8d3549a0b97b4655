//! The paper's accuracy protocol (official code: `xpatch_dataset.py`, `xpatch_evaluate.py`), for
//! any pair of modalities. One *experiment* is a source of task vectors (demonstrations in one
//! modality, the instruction, or their ensemble) and a target modality for the queries. For one
//! task and seed it
//! - extracts the vector on the validation split: one source prompt per validation item (5
//!   random other items as demonstrations + the item as query), read at the 5th
//!   demonstration's `A:` (or the query's, [`ReadAt`]), averaged;
//! - scores the patched query at every layer on validation (to choose the layer) and on test;
//! - scores the test baselines: the query alone (no context) and 5 test demonstrations in
//!   context (ICL; "xBase" when the modalities differ).
//!
//! Scoring: first generated token, stripped, two-way prefix match; case-insensitive for the
//! instruction and ensemble. The layer is chosen on validation (argmax, first on ties) by the
//! caller, averaged over seeds and tasks ([`select_layer`]).

use std::collections::HashMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};

use super::dataset::{Item, Modality, PairedTask};
use super::engine::{DEMOS, Engine, Prefix, ReadAt, TaskVector};
use super::task::{Example, Input, Prompt, draw_demos, is_correct};
use crate::error::{Error, Result};

pub use super::evaluate::{
    SweepReport, evaluate, evaluate_at, evaluate_paired, paired_for, vector_for,
};

/// How the task is specified for extraction (`--spec` on the command line, `spec` in the
/// page's requests: `text`, `instruction`, `ensemble`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Spec {
    /// Examples (text or image).
    Text,
    /// The instruction.
    Instruction,
    /// Average of examples and instruction vectors.
    Ensemble,
}

/// Where an experiment's vectors come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Demonstrations in this modality.
    Examples(Modality),
    /// The task's instruction (one prompt, its last token).
    Instruction,
    /// Half the exemplar vector (demonstrations in this modality), half the instruction's.
    Ensemble(Modality),
}

impl Source {
    /// The instruction and ensemble runs score case-insensitively, as the paper's do.
    pub fn ignore_case(self) -> bool {
        !matches!(self, Source::Examples(_))
    }
    fn demo_modality(self) -> Option<Modality> {
        match self {
            Source::Examples(m) | Source::Ensemble(m) => Some(m),
            Source::Instruction => None,
        }
    }
    /// The spec kind this source corresponds to.
    pub fn spec(self) -> Spec {
        match self {
            Source::Examples(_) => Spec::Text,
            Source::Instruction => Spec::Instruction,
            Source::Ensemble(_) => Spec::Ensemble,
        }
    }
}

/// A source of vectors and a query modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Experiment {
    /// Where vectors come from.
    pub source: Source,
    /// What the queries show.
    pub target: Modality,
}

impl Experiment {
    /// The modalities an item must have to take part (an image needs the item's image).
    pub fn modalities(&self) -> Vec<Modality> {
        let mut m = vec![self.target];
        m.extend(self.source.demo_modality());
        m
    }
}

/// Which measurements a run needs (the rest is skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// Query alone.
    pub base: bool,
    /// Demonstrations in context.
    pub icl: bool,
    /// Patched, every layer (validation and test).
    pub patch: bool,
}

impl Needs {
    /// Everything.
    pub const ALL: Needs = Needs {
        base: true,
        icl: true,
        patch: true,
    };
}

/// Extraction settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extraction {
    /// Source prompts averaged (one per validation item, up to this many; the paper: all).
    pub prompts: usize,
    /// Where exemplar vectors are read.
    pub read_at: ReadAt,
}

impl Default for Extraction {
    fn default() -> Self {
        Extraction {
            prompts: 30,
            read_at: ReadAt::Demo,
        }
    }
}

/// One experiment on one task with one seed: correctness per item.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeedRun {
    /// The seed of the demonstration draws.
    pub seed: u64,
    /// Validation items scored.
    pub n_val: usize,
    /// Test items scored.
    pub n_test: usize,
    /// Validation accuracy per patch layer (empty when not needed).
    pub val_patched: Vec<f32>,
    /// Test: query alone, per item.
    pub base: Vec<bool>,
    /// Test: demonstrations in context, per item (empty for the instruction).
    pub icl: Vec<bool>,
    /// Test: patched, [layer][item].
    pub patched: Vec<Vec<bool>>,
}

/// Progress of a run: `done` of `total` model calls, and what is running.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, &str);

/// Remembers first tokens and sweeps by prompt (and vector), so rows, seeds and experiments
/// that share a measurement compute it once.
/// The latest swept query's prefill is kept too, so that its zero-shot first token branches
/// from it instead of running the prompt again.
#[derive(Default)]
pub struct Memo {
    first: HashMap<[u8; 32], String>,
    sweeps: HashMap<([u8; 32], [u8; 32]), Vec<String>>,
    prefix: Option<([u8; 32], Prefix)>,
}

fn prompt_key(p: &Prompt) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(p.text.as_bytes());
    for img in &p.images {
        h.update([0xff]);
        h.update(Sha256::digest(img));
    }
    h.finalize().into()
}

fn vector_key(v: &TaskVector) -> [u8; 32] {
    let mut h = Sha256::new();
    for row in &v.layers {
        for x in row {
            h.update(x.to_le_bytes());
        }
    }
    h.finalize().into()
}

impl Memo {
    async fn first(&mut self, e: &Engine<'_>, p: &Prompt) -> Result<String> {
        let k = prompt_key(p);
        if let Some(t) = self.first.get(&k) {
            return Ok(t.clone());
        }
        let t = match &self.prefix {
            Some((pk, q)) if *pk == k => e.first_token_from(q).await?.text,
            _ => e.first_token(p).await?.text,
        };
        self.first.insert(k, t.clone());
        Ok(t)
    }

    async fn sweep(&mut self, e: &Engine<'_>, p: &Prompt, v: &TaskVector) -> Result<Vec<String>> {
        let k = (vector_key(v), prompt_key(p));
        if let Some(t) = self.sweeps.get(&k) {
            return Ok(t.clone());
        }
        if self.prefix.as_ref().is_none_or(|(pk, _)| *pk != k.1) {
            self.prefix = Some((k.1, e.prefix(p)?));
        }
        let q = &self.prefix.as_ref().expect("just set").1;
        let t: Vec<String> = e
            .sweep_from(q, v)
            .await?
            .into_iter()
            .map(|p| p.text)
            .collect();
        self.sweeps.insert(k, t.clone());
        Ok(t)
    }
}

fn examples(items: &[Item], m: Modality) -> Vec<Example> {
    items.iter().filter_map(|i| i.example(m)).collect()
}

fn inputs(items: &[Item], m: Modality) -> Vec<Input> {
    items.iter().filter_map(|i| i.input(m)).collect()
}

/// The items of both splits an experiment can use, refusing image experiments on tasks with
/// fewer than 2 image items in a split.
pub fn usable_items(task: &PairedTask, exp: &Experiment) -> Result<(Vec<Item>, Vec<Item>)> {
    let mods = exp.modalities();
    let val = PairedTask::usable(&task.val, &mods);
    let test = PairedTask::usable(&task.test, &mods);
    let needs_images = mods.contains(&Modality::Image);
    for (name, items) in [("validation", &val), ("test", &test)] {
        if items.len() < 2 {
            return Err(Error::TaskVector(if needs_images {
                format!(
                    "task '{}' has {} image item(s) in its {name} split; image rows need at least 2 in each split",
                    task.name,
                    items.len()
                )
            } else {
                format!(
                    "task '{}' has {} item(s) in its {name} split; at least 2 are needed",
                    task.name,
                    items.len()
                )
            }));
        }
    }
    Ok((val, test))
}

/// The exemplar source prompts of an experiment on validation: one per item (up to
/// `prompts`), [`DEMOS`] demonstrations of the source modality + the item in the target
/// modality, as the paper's `xPatchDataset` builds them.
pub fn source_prompts(
    val: &[Item],
    demos: Modality,
    target: Modality,
    prompts: usize,
    seed: u64,
) -> Vec<Prompt> {
    Engine::source_prompts(&examples(val, demos), &inputs(val, target), prompts, seed)
}

/// Extracts an experiment's vector on `source` (the model the vector comes from, which may
/// differ from the patched one) from the validation items.
pub async fn extract(
    source: &Engine<'_>,
    task: &PairedTask,
    exp: &Experiment,
    val: &[Item],
    x: Extraction,
    seed: u64,
) -> Result<TaskVector> {
    let instruction = || -> Result<String> {
        task.instruction.clone().ok_or_else(|| {
            Error::TaskVector(format!(
                "task '{}' has no instruction: give one for instruction or ensemble vectors",
                task.name
            ))
        })
    };
    // A text-only source model (LLM → VLM) sees the query as text; read at the demonstration,
    // the query does not matter anyway (it comes after the read position).
    let query = if source.m.model.vision.is_none() {
        Modality::Text
    } else {
        exp.target
    };
    let exemplar = |m: Modality| source_prompts(val, m, query, x.prompts, seed);
    Ok(match exp.source {
        Source::Examples(m) => {
            source
                .mean_states_at(&exemplar(m), x.read_at, |_, _| {})
                .await?
        }
        Source::Instruction => source.extract_instruction(&instruction()?).await?,
        Source::Ensemble(m) => {
            let a = source
                .mean_states_at(&exemplar(m), x.read_at, |_, _| {})
                .await?;
            let b = source.extract_instruction(&instruction()?).await?;
            TaskVector::mean(&[&a, &b])?
        }
    })
}

/// Model calls one [`run_seed`] makes at most (for progress bars).
pub fn calls(val: usize, test: usize, x: Extraction, needs: Needs) -> usize {
    let ext = if needs.patch {
        val.min(x.prompts) + 1
    } else {
        0
    };
    let per_test = needs.base as usize + needs.icl as usize + needs.patch as usize;
    ext + if needs.patch { val } else { 0 } + test * per_test
}

/// One experiment on one task with one seed: what [`run_seed`] runs.
#[derive(Debug, Clone, Copy)]
pub struct Trial<'a> {
    /// The task's items.
    pub task: &'a PairedTask,
    /// Specification and query modalities.
    pub exp: &'a Experiment,
    /// Extraction prompts and where the vector is read.
    pub x: Extraction,
    /// Seed of the splits' draws and the demonstrations.
    pub seed: u64,
    /// The measurements to take.
    pub needs: Needs,
}

/// Runs one [`Trial`]. `source` extracts the vector, `target` is patched and scored (the same
/// engine except for LLM → VLM transfer).
pub async fn run_seed(
    source: &Engine<'_>,
    target: &Engine<'_>,
    trial: Trial<'_>,
    memo: &mut Memo,
    progress: Progress<'_>,
) -> Result<(SeedRun, Option<TaskVector>)> {
    let Trial {
        task,
        exp,
        x,
        seed,
        needs,
    } = trial;
    let (val, test) = usable_items(task, exp)?;
    let total = calls(val.len(), test.len(), x, needs);
    let mut done = 0;
    let ic = exp.source.ignore_case();
    let mut tick = |what: &str, k: usize| {
        done += k;
        progress(done.min(total), total, what);
    };
    let v = if needs.patch {
        let v = extract(source, task, exp, &val, x, seed).await?;
        if v.num_layers() != target.m.model.num_layers()
            || v.hidden() != target.m.model.hidden_size()
        {
            return Err(Error::TaskVector(format!(
                "the source model's vectors are {} layers × {}, the patched model has {} layers × {}: transfer needs the same shape",
                v.num_layers(),
                v.hidden(),
                target.m.model.num_layers(),
                target.m.model.hidden_size()
            )));
        }
        tick("extract", val.len().min(x.prompts) + 1);
        Some(v)
    } else {
        None
    };
    let layers = target.m.model.num_layers();
    let mut val_patched = Vec::new();
    if let Some(v) = &v {
        let mut hits = vec![0usize; layers];
        for it in &val {
            let q = Prompt::zero_shot(&it.input(exp.target).expect("usable"));
            for (l, t) in memo.sweep(target, &q, v).await?.iter().enumerate() {
                hits[l] += is_correct(t, &it.output, ic) as usize;
            }
            tick("validation", 1);
        }
        val_patched = hits
            .into_iter()
            .map(|h| h as f32 / val.len() as f32)
            .collect();
    }
    let demo_m = exp.source.demo_modality();
    let pool = demo_m.map(|m| examples(&test, m)).unwrap_or_default();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1c1);
    let (mut base, mut icl) = (Vec::new(), Vec::new());
    let mut patched = vec![Vec::new(); if v.is_some() { layers } else { 0 }];
    for (i, it) in test.iter().enumerate() {
        let qi = it.input(exp.target).expect("usable");
        let q = Prompt::zero_shot(&qi);
        // The sweep first: the zero-shot first token then branches from its prefill.
        if let Some(v) = &v {
            for (l, t) in memo.sweep(target, &q, v).await?.iter().enumerate() {
                patched[l].push(is_correct(t, &it.output, ic));
            }
            tick("patched", 1);
        }
        if needs.base {
            base.push(is_correct(&memo.first(target, &q).await?, &it.output, ic));
            tick("no context", 1);
        }
        if needs.icl && demo_m.is_some() {
            let p = Prompt::few_shot(&draw_demos(&pool, Some(i), &qi, DEMOS, &mut rng), &qi);
            icl.push(is_correct(&memo.first(target, &p).await?, &it.output, ic));
            tick("in context", 1);
        }
    }
    let run = SeedRun {
        seed,
        n_val: val.len(),
        n_test: test.len(),
        val_patched,
        base,
        icl,
        patched,
    };
    Ok((run, v))
}

/// The patch layer with the best validation accuracy averaged over runs (seeds and tasks),
/// first on ties (the paper's `get_max`).
pub fn select_layer<'a>(runs: impl IntoIterator<Item = &'a SeedRun>) -> Option<usize> {
    let mut sum: Vec<f64> = Vec::new();
    let mut n = 0usize;
    for r in runs {
        if r.val_patched.is_empty() {
            continue;
        }
        sum.resize(r.val_patched.len(), 0.0);
        for (s, a) in sum.iter_mut().zip(&r.val_patched) {
            *s += *a as f64;
        }
        n += 1;
    }
    (n > 0).then(|| (0..sum.len()).fold(0, |b, l| if sum[l] > sum[b] { l } else { b }))
}

/// Fraction of `true`.
pub fn mean(v: &[bool]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().filter(|&&b| b).count() as f32 / v.len() as f32
}
