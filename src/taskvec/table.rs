//! The paper's table: rows of experiments (text / image demonstrations, instruction, ensemble,
//! another model's vectors) × tasks + average, each cell the test accuracy averaged over seeds
//! with a 95 % bootstrap interval over test items, patched rows at the layer chosen on
//! validation (averaged over seeds and tasks, as `get_best_layer` in the paper's code).

use std::collections::HashMap;
use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::dataset::PairedTask;
use super::engine::{Engine, ReadAt};
use super::protocol::{
    Experiment, Extraction, Memo, Needs, SeedRun, Trial, calls, run_seed, select_layer,
    usable_items,
};
use crate::error::{Error, Result};

pub use super::rows::{Measure, ROWS, Row};

/// One cell: test accuracy (mean over seeds and items) with a 95 % bootstrap interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cell {
    /// Accuracy.
    pub mean: f32,
    /// Lower end of the 95 % interval.
    pub lo: f32,
    /// Upper end of the 95 % interval.
    pub hi: f32,
    /// Test items.
    pub n: usize,
}

/// One row of results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowResult {
    /// Row id.
    pub id: String,
    /// Row label.
    pub label: String,
    /// What it reports.
    pub measure: Measure,
    /// The patch layer chosen on validation (patched rows).
    pub layer: Option<usize>,
    /// Validation accuracy per layer averaged over seeds and tasks (patched rows).
    pub val_by_layer: Vec<f32>,
    /// Test accuracy per layer averaged over seeds and tasks (patched rows).
    pub test_by_layer: Vec<f32>,
    /// One cell per task, in the table's task order.
    pub cells: Vec<Cell>,
    /// Mean over tasks (interval: items resampled within each task).
    pub average: Cell,
}

/// The whole table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Table {
    /// The patched model.
    pub model: String,
    /// The model `llm-xpatch` vectors came from.
    pub source_model: Option<String>,
    /// Task names (columns).
    pub tasks: Vec<String>,
    /// Seeds averaged.
    pub seeds: Vec<u64>,
    /// Where exemplar vectors were read.
    pub read_at: ReadAt,
    /// Source prompts per vector (at most).
    pub prompts: usize,
    /// Rows.
    pub rows: Vec<RowResult>,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct TableRequest {
    /// Rows, in order.
    pub rows: Vec<Row>,
    /// Tasks (columns).
    pub tasks: Vec<PairedTask>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Extraction settings.
    pub extraction: Extraction,
}

/// Resamples for the intervals.
const BOOTSTRAP: usize = 1000;

/// A cell from per-item scores (each the mean over seeds), with a percentile bootstrap.
fn cell(tasks: &[Vec<f32>]) -> Cell {
    let mean_of = |v: &[f32]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f32>() / v.len() as f32
        }
    };
    let point = mean_of(&tasks.iter().map(|t| mean_of(t)).collect::<Vec<_>>());
    let mut rng = StdRng::seed_from_u64(0x7ab1e);
    let mut stats: Vec<f32> = (0..BOOTSTRAP)
        .map(|_| {
            let per: Vec<f32> = tasks
                .iter()
                .map(|t| {
                    if t.is_empty() {
                        return 0.0;
                    }
                    (0..t.len())
                        .map(|_| t[rng.random_range(0..t.len())])
                        .sum::<f32>()
                        / t.len() as f32
                })
                .collect();
            mean_of(&per)
        })
        .collect();
    stats.sort_by(f32::total_cmp);
    Cell {
        mean: point,
        lo: stats[BOOTSTRAP * 25 / 1000],
        hi: stats[BOOTSTRAP * 975 / 1000 - 1],
        n: tasks.iter().map(Vec::len).sum(),
    }
}

/// Per-item scores averaged over seeds.
fn per_item(runs: &[&SeedRun], pick: impl Fn(&SeedRun) -> &[bool]) -> Vec<f32> {
    let n = runs.first().map_or(0, |r| pick(r).len());
    (0..n)
        .map(|i| runs.iter().map(|r| pick(r)[i] as u8 as f32).sum::<f32>() / runs.len() as f32)
        .collect()
}

/// Checks that every row can run on these models and tasks before any work starts.
pub fn check(req: &TableRequest, target: &Engine<'_>, source: Option<&Engine<'_>>) -> Result<()> {
    if req.rows.is_empty() || req.tasks.is_empty() || req.seeds.is_empty() {
        return Err(Error::TaskVector(
            "the table needs at least one row, one task and one seed".into(),
        ));
    }
    for &row in &req.rows {
        let (exp, from_source, _) = row.experiment();
        if row.needs_images() && target.m.model.vision.is_none() {
            let text: Vec<&str> = Row::defaults(false, false).iter().map(|r| r.id()).collect();
            return Err(Error::TaskVector(format!(
                "row '{}' needs image queries but '{}' has no vision encoder (load a VLM, e.g. with --mmproj); rows for a text model: {}",
                row.id(),
                target.m.info.name,
                text.join(", ")
            )));
        }
        if from_source {
            let s = source.ok_or_else(|| {
                Error::TaskVector(format!(
                    "row '{}' needs a source model for its vectors (--source-model, e.g. SmolLM2 for SmolVLM)",
                    row.id()
                ))
            })?;
            let (sl, sd) = (s.m.model.num_layers(), s.m.model.hidden_size());
            let (tl, td) = (target.m.model.num_layers(), target.m.model.hidden_size());
            if (sl, sd) != (tl, td) {
                return Err(Error::TaskVector(format!(
                    "row '{}': the source model '{}' has {sl} layers × {sd} hidden, the patched model '{}' {tl} × {td}: LLM → VLM transfer needs the same shape (e.g. SmolLM2-135M → SmolVLM-256M)",
                    row.id(),
                    s.m.info.name,
                    target.m.info.name
                )));
            }
        }
        for t in &req.tasks {
            usable_items(t, &exp)
                .map_err(|e| Error::TaskVector(format!("row '{}': {}", row.id(), e.message())))?;
        }
    }
    Ok(())
}

/// Runs the table. `progress(done, total, what)` follows the model calls.
pub async fn run_table(
    target: &Engine<'_>,
    source: Option<&Engine<'_>>,
    req: &TableRequest,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Table> {
    check(req, target, source)?;
    // The distinct experiments and what each must measure.
    let mut exps: Vec<((Experiment, bool), Needs)> = Vec::new();
    for &row in &req.rows {
        let (exp, from_source, measure) = row.experiment();
        let key = (exp, from_source);
        let i = match exps.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                exps.push((
                    key,
                    Needs {
                        base: false,
                        icl: false,
                        patch: false,
                    },
                ));
                exps.len() - 1
            }
        };
        let n = &mut exps[i].1;
        match measure {
            Measure::NoContext => n.base = true,
            Measure::InContext => n.icl = true,
            Measure::Patched => n.patch = true,
        }
    }
    let x = req.extraction;
    let mut total = 0;
    for ((exp, _), needs) in &exps {
        for t in &req.tasks {
            let (v, te) = usable_items(t, exp)?;
            total += calls(v.len(), te.len(), x, *needs) * req.seeds.len();
        }
    }
    let mut done = 0;
    let mut memo = Memo::default();
    let mut runs: HashMap<(usize, usize), Vec<SeedRun>> = HashMap::new();
    for (ei, ((exp, from_source), needs)) in exps.iter().enumerate() {
        let src = if *from_source {
            source.expect("checked")
        } else {
            target
        };
        for (ti, task) in req.tasks.iter().enumerate() {
            for &seed in &req.seeds {
                let base = done;
                let what = format!("{} / seed {seed}", task.name);
                let trial = Trial {
                    task,
                    exp,
                    x,
                    seed,
                    needs: *needs,
                };
                let (run, _) = run_seed(src, target, trial, &mut memo, &mut |d, _, step| {
                    progress(base + d, total, &format!("{what}: {step}"))
                })
                .await?;
                let (v, te) = usable_items(task, exp)?;
                done = base + calls(v.len(), te.len(), x, *needs);
                runs.entry((ei, ti)).or_default().push(run);
            }
        }
    }
    let rows = req
        .rows
        .iter()
        .map(|&row| {
            let (exp, from_source, measure) = row.experiment();
            let ei = exps
                .iter()
                .position(|(k, _)| *k == (exp, from_source))
                .expect("listed");
            let per_task: Vec<Vec<&SeedRun>> = (0..req.tasks.len())
                .map(|ti| runs[&(ei, ti)].iter().collect())
                .collect();
            let layer = (measure == Measure::Patched)
                .then(|| select_layer(per_task.iter().flatten().copied()))
                .flatten();
            let avg_layers = |f: &dyn Fn(&SeedRun) -> Vec<f32>| -> Vec<f32> {
                let all: Vec<Vec<f32>> = per_task.iter().flatten().map(|r| f(r)).collect();
                let n = all.first().map_or(0, Vec::len);
                (0..n)
                    .map(|l| all.iter().map(|v| v[l]).sum::<f32>() / all.len() as f32)
                    .collect()
            };
            let (val_by_layer, test_by_layer) = if measure == Measure::Patched {
                (
                    avg_layers(&|r| r.val_patched.clone()),
                    avg_layers(&|r| r.patched.iter().map(|l| super::protocol::mean(l)).collect()),
                )
            } else {
                (vec![], vec![])
            };
            let scores: Vec<Vec<f32>> = per_task
                .iter()
                .map(|rs| match measure {
                    Measure::NoContext => per_item(rs, |r| &r.base),
                    Measure::InContext => per_item(rs, |r| &r.icl),
                    Measure::Patched => per_item(rs, |r| &r.patched[layer.unwrap_or(0)]),
                })
                .collect();
            RowResult {
                id: row.id().into(),
                label: row.label().into(),
                measure,
                layer,
                val_by_layer,
                test_by_layer,
                cells: scores
                    .iter()
                    .map(|s| cell(std::slice::from_ref(s)))
                    .collect(),
                average: cell(&scores),
            }
        })
        .collect();
    Ok(Table {
        model: target.m.info.name.clone(),
        source_model: source.map(|s| s.m.info.name.clone()),
        tasks: req.tasks.iter().map(|t| t.name.clone()).collect(),
        seeds: req.seeds.clone(),
        read_at: x.read_at,
        prompts: x.prompts,
        rows,
    })
}

impl Table {
    /// The table as markdown: one row per experiment, one column per task + the average, each
    /// cell `accuracy [95 % interval] n`.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Test accuracy on {} ({} seed(s): {:?}; patched rows at the layer chosen on validation; [95 % bootstrap interval over test items], n = test items)\n",
            self.model,
            self.seeds.len(),
            self.seeds
        );
        let _ = writeln!(s, "| row | layer | {} | average |", self.tasks.join(" | "));
        let _ = writeln!(s, "|---|---:|{}---:|", "---:|".repeat(self.tasks.len()));
        let fmt = |c: &Cell| format!("{:.2} [{:.2}, {:.2}] n={}", c.mean, c.lo, c.hi, c.n);
        for r in &self.rows {
            let cells: Vec<String> = r.cells.iter().map(fmt).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                r.label,
                r.layer.map_or("–".into(), |l| l.to_string()),
                cells.join(" | "),
                fmt(&r.average)
            );
        }
        s
    }

    /// The table as CSV: `row,label,task,layer,mean,lo,hi,n,seeds` (the average as task `average`).
    pub fn csv(&self) -> String {
        let mut s = String::from("row,label,task,layer,mean,lo,hi,n,seeds\n");
        let seeds = self
            .seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        for r in &self.rows {
            let names = self.tasks.iter().map(String::as_str).chain(["average"]);
            for (task, c) in names.zip(r.cells.iter().chain([&r.average])) {
                let _ = writeln!(
                    s,
                    "{},\"{}\",{task},{},{:.4},{:.4},{:.4},{},{seeds}",
                    r.id,
                    r.label,
                    r.layer.map_or(String::new(), |l| l.to_string()),
                    c.mean,
                    c.lo,
                    c.hi,
                    c.n
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_and_defaults_follow_the_model() {
        for r in ROWS {
            assert_eq!(r.id().parse::<Row>().unwrap(), r);
        }
        assert!("nope".parse::<Row>().is_err());
        let text = Row::defaults(false, false);
        assert!(text.iter().all(|r| !r.needs_images()));
        assert!(text.contains(&Row::TextPatch) && text.contains(&Row::InstructionText));
        assert_eq!(Row::defaults(true, true).len(), ROWS.len());
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean() {
        let c = cell(&[vec![1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0]]);
        assert!((c.mean - 0.7).abs() < 1e-6);
        assert!(
            c.lo < 0.7 && c.hi > 0.7 && c.lo >= 0.0 && c.hi <= 1.0,
            "{c:?}"
        );
        let all = cell(&[vec![1.0; 20]]);
        assert_eq!((all.lo, all.hi, all.n), (1.0, 1.0, 20));
    }
}
