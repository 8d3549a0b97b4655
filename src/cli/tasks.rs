//! The task-vector commands: extract, apply, sweep, lens, similarity.

use std::path::Path;

use burn::tensor::Device;

use super::{Command, SpecArg, TaskArgs, load_model, read};
use crate::error::{Error, Result};
use crate::loader::LoadedModel;
use crate::taskvec::format::{ExampleRecord, SpecKind, TaskRecord};
use crate::taskvec::lens::similarity_report;
use crate::taskvec::task::{Input, parse_tsv};
use crate::taskvec::{Engine, Example, Prompt, Spec, Task, VectorFile, evaluate};

fn spec(s: SpecArg) -> Spec {
    match s {
        SpecArg::Text => Spec::Text,
        SpecArg::Instruction => Spec::Instruction,
        SpecArg::Ensemble => Spec::Ensemble,
    }
}

/// Loads the task named by `--task` or `--pairs`; TSV inputs that name image files become images.
fn load_task(args: &TaskArgs) -> Result<Task> {
    match (&args.task, &args.pairs) {
        (Some(name), _) => Task::builtin(name),
        (None, Some(path)) => {
            let text = String::from_utf8(read(path)?)
                .map_err(|_| Error::TaskVector(format!("{} is not UTF-8 text", path.display())))?;
            let base = path.parent().unwrap_or(Path::new("."));
            let mut examples = parse_tsv(&text)?;
            for ex in &mut examples {
                let Input::Text(x) = &ex.input else { continue };
                let candidate = [Path::new(x).to_path_buf(), base.join(x)]
                    .into_iter()
                    .find(|p| p.is_file());
                if let Some(p) = candidate {
                    ex.input = Input::Image {
                        bytes: read(&p)?,
                        label: x.clone(),
                    };
                }
            }
            let name = path
                .file_stem()
                .map_or("pairs".into(), |s| s.to_string_lossy().into_owned());
            Ok(Task {
                name,
                instruction: None,
                examples,
            })
        }
        (None, None) => Err(Error::TaskVector(
            "give --task NAME or --pairs FILE.tsv".into(),
        )),
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
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

fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn load_vector(path: &Path) -> Result<VectorFile> {
    let bytes = read(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::TaskVector(format!("{} is not UTF-8 text", path.display())))?;
    VectorFile::from_json(text).map_err(|e| Error::TaskVector(format!("{}: {e}", path.display())))
}

fn print_report(r: &crate::taskvec::SweepReport) {
    println!(
        "task {} ({:?} vector, seed {}): {} validation / {} test examples",
        r.task, r.spec, r.seed, r.n_val, r.n_test
    );
    println!("zero-shot accuracy  {:.3}", r.zero_shot);
    println!("ICL (5-shot)        {:.3}", r.icl);
    println!("layer  patched");
    for (l, a) in r.patched.iter().enumerate() {
        let mark = if l == r.best_layer { "  <- best" } else { "" };
        println!("{l:>5}  {a:.3}{mark}");
    }
}

/// Runs the task-vector commands.
pub(super) fn run_task_command(cmd: Command, dev: &Device) -> Result<()> {
    match cmd {
        Command::Extract {
            model,
            task,
            instruction,
            spec: spec_arg,
            prompts,
            seed,
            sweep,
            out,
        } => {
            let m = load_model(&model, dev)?;
            let eng = Engine::new(&m);
            let has_task = task.task.is_some() || task.pairs.is_some();
            let spec_arg = spec_arg.unwrap_or(if has_task {
                SpecArg::Text
            } else {
                SpecArg::Instruction
            });
            let file = if has_task {
                let mut t = load_task(&task)?;
                if let Some(i) = instruction {
                    t.instruction = Some(i);
                }
                extract_task(&m, &eng, &t, spec(spec_arg), prompts, seed, sweep)?
            } else {
                let instr = instruction.ok_or_else(|| {
                    Error::TaskVector("give --task, --pairs or --instruction".into())
                })?;
                if spec_arg != SpecArg::Instruction {
                    return Err(Error::TaskVector(
                        "with only --instruction the spec is 'instruction'".into(),
                    ));
                }
                let v = pollster::block_on(eng.extract_instruction(&instr))?;
                let rec = TaskRecord {
                    name: "instruction".into(),
                    spec: SpecKind::Instruction,
                    examples: vec![],
                    instruction: Some(instr),
                    prompts: 1,
                    seed,
                };
                VectorFile::new(&v, &m.info, rec, m.info.layers / 2, None, now())
            };
            write_text(&out, &file.to_json())?;
            eprintln!(
                "wrote {} ({} layers × {}), recommended layer {}",
                out.display(),
                file.model.layers,
                file.model.hidden,
                file.recommended_layer
            );
            Ok(())
        }
        Command::Apply {
            model,
            vector,
            layer,
            text,
            image,
            allow_transfer,
            max_tokens,
            json,
        } => {
            let f = load_vector(&vector)?;
            let m = load_model(&model, dev)?;
            f.check_model(&m.info, allow_transfer)?;
            let input = match (text, image) {
                (Some(t), _) => Input::Text(t),
                (None, Some(p)) => Input::Image {
                    bytes: read(&p)?,
                    label: p.display().to_string(),
                },
                (None, None) => unreachable!("clap requires --text or --image"),
            };
            let r =
                pollster::block_on(Engine::new(&m).apply_report(&f, &input, layer, max_tokens))?;
            if json {
                println!("{}", serde_json::to_string(&r).expect("report serializes"));
            } else {
                let rec = if r.layer == f.recommended_layer {
                    " (recommended)"
                } else {
                    ""
                };
                println!("layer {}{rec}", r.layer);
                let top = |a: &crate::taskvec::Answer| a.top.first().map_or(0.0, |t| t.1);
                println!(
                    "patched:    {:?}  (first token p={:.3})",
                    r.patched.text,
                    top(&r.patched)
                );
                println!(
                    "zero-shot:  {:?}  (first token p={:.3})",
                    r.zero_shot.text,
                    top(&r.zero_shot)
                );
                if let Some(i) = &r.icl {
                    println!("in context: {:?}  (first token p={:.3})", i.text, top(i));
                }
                let best = r
                    .sweep
                    .iter()
                    .max_by(|a, b| a.prob.total_cmp(&b.prob))
                    .expect("layers");
                println!(
                    "sweep: most confident at layer {} with {:?} (p={:.3})",
                    best.layer, best.text, best.prob
                );
            }
            Ok(())
        }
        Command::Sweep {
            model,
            task,
            spec: spec_arg,
            prompts,
            seed,
            json,
        } => {
            let m = load_model(&model, dev)?;
            let eng = Engine::new(&m);
            let t = load_task(&task)?;
            let (r, _) =
                pollster::block_on(evaluate(&eng, &t, spec(spec_arg), prompts, seed, |d, n| {
                    if !json {
                        eprint!("\r{d}/{n} test items");
                    }
                }))?;
            if json {
                println!("{}", serde_json::to_string(&r).expect("report serializes"));
            } else {
                eprintln!();
                print_report(&r);
            }
            Ok(())
        }
        Command::Lens {
            model,
            prompt,
            image,
            track,
            top,
            json,
        } => {
            let m = load_model(&model, dev)?;
            let images: Vec<Vec<u8>> = image
                .as_deref()
                .map(read)
                .into_iter()
                .collect::<Result<_>>()?;
            let p = Prompt {
                text: prompt,
                images,
            };
            let lens = pollster::block_on(Engine::new(&m).lens(&p, &track, top))?;
            if json {
                println!("{}", serde_json::to_string(&lens).expect("lens serializes"));
            } else {
                let head: Vec<String> = lens
                    .tracked_tokens
                    .iter()
                    .map(|(w, t)| format!("p({w}={t:?})"))
                    .collect();
                println!("layer  top tokens  {}", head.join("  "));
                for l in &lens.layers {
                    let tops: Vec<String> =
                        l.top.iter().map(|(t, p)| format!("{t:?}:{p:.2}")).collect();
                    let tr: Vec<String> = l.tracked.iter().map(|p| format!("{p:.3}")).collect();
                    println!("{:>5}  {}  {}", l.layer, tops.join(" "), tr.join("  "));
                }
            }
            Ok(())
        }
        Command::Similarity { files, json } => {
            let fs: Vec<VectorFile> = files
                .iter()
                .map(|p| load_vector(p))
                .collect::<Result<_>>()?;
            let r = similarity_report(&fs)?;
            let (per, matrix) = (&r.per_layer, &r.matrix_mean_over_layers);
            if json {
                println!("{}", serde_json::to_string(&r).expect("report serializes"));
            } else {
                println!(
                    "cosine per layer ({} vs {}):",
                    files[0].display(),
                    files[1].display()
                );
                for (l, c) in per.iter().enumerate() {
                    println!("{l:>5}  {c:.4}");
                }
                if fs.len() > 2 {
                    println!("matrix (mean over layers):");
                    for row in matrix {
                        println!(
                            "{}",
                            row.iter()
                                .map(|c| format!("{c:.3}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Generate { .. }
        | Command::Hidden { .. }
        | Command::Serve { .. }
        | Command::Bench { .. }
        | Command::Info { .. }
        | Command::Quantize { .. } => {
            unreachable!("handled in run")
        }
    }
}

/// Extracts a vector from a task's examples: all of them (one prompt per example, up to
/// `prompts`) — or, with `sweep`, the protocol's validation split, storing its accuracies.
fn extract_task(
    m: &LoadedModel,
    eng: &Engine,
    t: &Task,
    spec: Spec,
    prompts: usize,
    seed: u64,
    sweep: bool,
) -> Result<VectorFile> {
    let (v, report, used) = if sweep {
        let (r, v) = pollster::block_on(evaluate(eng, t, spec, prompts, seed, |_, _| {}))?;
        (v, Some(r), t.split(seed)?.0)
    } else {
        let v = pollster::block_on(crate::taskvec::protocol::vector_for(
            eng,
            t,
            &t.examples,
            spec,
            prompts,
            seed,
        ))?;
        (v, None, t.examples.clone())
    };
    let n = used.len().min(prompts.max(1));
    let kind = match spec {
        Spec::Text if used.iter().any(|e| e.input.is_image()) => SpecKind::ImageExamples,
        Spec::Text => SpecKind::TextExamples,
        Spec::Instruction => SpecKind::Instruction,
        Spec::Ensemble => SpecKind::Ensemble,
    };
    let rec = TaskRecord {
        name: t.name.clone(),
        spec: kind,
        examples: if spec == Spec::Instruction {
            vec![]
        } else {
            records(&used[..n])
        },
        instruction: if spec == Spec::Text {
            None
        } else {
            t.instruction.clone()
        },
        prompts: if spec == Spec::Instruction { 1 } else { n },
        seed,
    };
    let best = report.as_ref().map_or(m.info.layers / 2, |r| r.best_layer);
    Ok(VectorFile::new(
        &v,
        &m.info,
        rec,
        best,
        report.as_ref(),
        now(),
    ))
}
