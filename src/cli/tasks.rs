//! The task-vector commands: extract, apply, sweep, lens, similarity, combine and map, and the
//! vector-file and task loading they share (thin: the logic is in `crate::taskvec`).

use std::path::Path;

use burn::tensor::Device;

use super::{Command, TaskArgs, load_model, read, write};
use crate::error::{Error, Result};
use crate::model::Operator;
use crate::taskvec::extract::{ExtractRequest, extract_file};
use crate::taskvec::lens::similarity_report;
use crate::taskvec::protocol::evaluate_at;
use crate::taskvec::task::{Input, parse_tsv};
use crate::taskvec::{Engine, Extraction, Prompt, Spec, Steering, Task, VectorFile};

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

/// Reads and validates a task-vector JSON file, its path in the error.
pub(super) fn load_vector(path: &Path) -> Result<VectorFile> {
    let bytes = read(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::TaskVector(format!("{} is not UTF-8 text", path.display())))?;
    VectorFile::from_json(text).map_err(|e| Error::TaskVector(format!("{}: {e}", path.display())))
}

/// `taskvec combine`: parses the expression, loads its files, writes the weighted sum.
pub(super) fn combine_files(expr: &[String], out: &Path, allow_transfer: bool) -> Result<()> {
    use crate::taskvec::arith::{combine, parse_expression};
    let terms = parse_expression(expr)?;
    let files: Vec<(f32, VectorFile)> = terms
        .iter()
        .map(|(w, p)| Ok((*w, load_vector(Path::new(p))?)))
        .collect::<Result<_>>()?;
    let refs: Vec<(f32, &VectorFile)> = files.iter().map(|(w, f)| (*w, f)).collect();
    let f = combine(&refs, &expr.join(" "), allow_transfer, now())?;
    write(out, f.to_json())?;
    eprintln!(
        "wrote {} = {} ({} layers × {})",
        out.display(),
        terms
            .iter()
            .map(|(w, p)| format!("{w:+} · {p}"))
            .collect::<Vec<_>>()
            .join(" "),
        f.model.layers,
        f.model.hidden
    );
    Ok(())
}

/// `taskvec map`: the 2-D PCA of the files at one layer, as a table or JSON.
pub(super) fn map_files(
    paths: &[std::path::PathBuf],
    layer: Option<usize>,
    json: bool,
) -> Result<()> {
    let files: Vec<VectorFile> = paths
        .iter()
        .map(|p| load_vector(p))
        .collect::<Result<_>>()?;
    let refs: Vec<&VectorFile> = files.iter().collect();
    let layer = layer.unwrap_or(files[0].recommended_layer);
    let m = crate::taskvec::arith::map(&refs, layer)?;
    if json {
        println!("{}", serde_json::to_string(&m).expect("map serializes"));
        return Ok(());
    }
    println!(
        "layer {layer}: PC1 {:.1} %, PC2 {:.1} % of the variance",
        100.0 * m.explained[0],
        100.0 * m.explained[1]
    );
    for (p, path) in m.points.iter().zip(paths) {
        println!(
            "{:>9.3} {:>9.3}  {:<15} {}  ({})",
            p.xy[0],
            p.xy[1],
            serde_json::to_value(p.spec)
                .expect("spec")
                .as_str()
                .unwrap_or("?"),
            p.task,
            path.display()
        );
    }
    Ok(())
}

fn print_report(r: &crate::taskvec::SweepReport) {
    println!(
        "task {} ({:?} vector read at {:?}, seed {}): {} validation / {} test examples",
        r.task, r.spec, r.read_at, r.seed, r.n_val, r.n_test
    );
    println!("zero-shot accuracy  {:.3}", r.zero_shot);
    println!("ICL (5-shot)        {:.3}", r.icl);
    println!(
        "patched             {:.3} at layer {} (chosen on validation)",
        r.test_at_selected, r.selected_layer
    );
    println!("layer  validation  test");
    for (l, a) in r.patched.iter().enumerate() {
        let mark = if l == r.selected_layer {
            "  <- selected on validation"
        } else if l == r.best_layer {
            "  <- best on test"
        } else {
            ""
        };
        let v = r.val_patched.get(l).copied().unwrap_or(f32::NAN);
        println!("{l:>5}  {v:>10.3}  {a:.3}{mark}");
    }
}

/// Runs the task-vector commands.
pub(super) fn run_task_command(cmd: Command, dev: &Device) -> Result<()> {
    match cmd {
        Command::Extract {
            model,
            task,
            instruction,
            spec,
            prompts,
            seed,
            sweep,
            read_at,
            out,
        } => {
            let m = load_model(&model, dev)?;
            let eng = Engine::new(&m);
            let has_task = task.task.is_some() || task.pairs.is_some();
            let spec = spec.unwrap_or(if has_task {
                Spec::Text
            } else {
                Spec::Instruction
            });
            let t = if has_task {
                let mut t = load_task(&task)?;
                if let Some(i) = instruction {
                    t.instruction = Some(i);
                }
                t
            } else {
                let instr = instruction.ok_or_else(|| {
                    Error::TaskVector("give --task, --pairs or --instruction".into())
                })?;
                if spec != Spec::Instruction {
                    return Err(Error::TaskVector(
                        "with only --instruction the spec is 'instruction'".into(),
                    ));
                }
                Task {
                    name: "instruction".into(),
                    instruction: Some(instr),
                    examples: vec![],
                }
            };
            let req = ExtractRequest {
                task: t,
                spec,
                prompts,
                seed,
                read_at,
                sweep,
                created_at: now(),
            };
            let file = pollster::block_on(extract_file(&eng, &req, |_, _| {}))?;
            write(&out, file.to_json())?;
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
            layers,
            mode,
            scale,
            every_token,
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
            let steer = Steering {
                op: mode.parse::<Operator>()?,
                scale,
                layers: match (layer, layers) {
                    (Some(l), _) => Some([l, l]),
                    (None, Some(r)) => Some(Steering::parse_layers(&r)?),
                    (None, None) => None,
                },
                every_token,
            };
            let r =
                pollster::block_on(Engine::new(&m).apply_report(&f, &input, &steer, max_tokens))?;
            if json {
                println!("{}", serde_json::to_string(&r).expect("report serializes"));
            } else {
                let rec = if r.layer == f.recommended_layer {
                    " (recommended)"
                } else {
                    ""
                };
                let st = &r.steering;
                let [a, b] = st.layers.expect("resolved");
                let span = if a == b {
                    format!("layer {a}")
                } else {
                    format!("layers {a}-{b}")
                };
                if st.op == Operator::Replace && st.scale == 1.0 && !st.every_token && a == b {
                    println!("layer {}{rec}", r.layer);
                } else {
                    println!(
                        "{span}{rec}: {} × {}{}",
                        st.op.name(),
                        st.scale,
                        if st.every_token { ", every token" } else { "" }
                    );
                }
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
            spec,
            prompts,
            seed,
            read_at,
            json,
        } => {
            let m = load_model(&model, dev)?;
            let eng = Engine::new(&m);
            let t = load_task(&task)?;
            let x = Extraction { prompts, read_at };
            let (r, _) = pollster::block_on(evaluate_at(&eng, &t, spec, x, seed, |d, n| {
                if !json {
                    eprint!("\r{d}/{n} model calls");
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
            task,
            prompts,
            seed,
            track,
            top,
            json,
        } => {
            let m = load_model(&model, dev)?;
            if let Some(name) = task {
                let t = Task::builtin(&name)?;
                let word = track
                    .first()
                    .map(String::as_str)
                    .or(crate::taskvec::task::task_word(&name));
                let r = pollster::block_on(Engine::new(&m).lens_aggregate(
                    &t,
                    word,
                    prompts,
                    seed,
                    |_, _| {},
                ))?;
                if json {
                    println!("{}", serde_json::to_string(&r).expect("lens serializes"));
                } else {
                    println!(
                        "{} prompts of {}: mean p(input)  p({})  p(answer)  top-1 tokens (share)",
                        r.prompts,
                        r.task,
                        r.task_word.as_deref().unwrap_or("-")
                    );
                    for l in &r.layers {
                        let tops: Vec<String> =
                            l.top.iter().map(|(t, p)| format!("{t:?}:{p:.2}")).collect();
                        println!(
                            "{:>5}  {:.3}  {}  {:.3}  {}",
                            l.layer,
                            l.input.mean,
                            l.task
                                .as_ref()
                                .map_or("-".into(), |b| format!("{:.3}", b.mean)),
                            l.answer.mean,
                            tops.join(" ")
                        );
                    }
                }
                return Ok(());
            }
            let prompt = prompt.expect("clap requires --prompt or --task");
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
        | Command::Tasks { .. }
        | Command::Table { .. }
        | Command::Hidden { .. }
        | Command::Serve { .. }
        | Command::Bench { .. }
        | Command::FusedCheck { .. }
        | Command::Info { .. }
        | Command::Quantize { .. }
        | Command::Export { .. }
        | Command::Import { .. }
        | Command::Combine { .. }
        | Command::Map { .. } => {
            unreachable!("handled in run")
        }
    }
}
