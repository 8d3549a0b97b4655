//! `taskvec tasks` and `taskvec table`: the built-in paired data and the paper's table.

use std::path::PathBuf;

use burn::tensor::Device;

use super::{ModelArgs, load_model};
use crate::error::{Error, Result};
use crate::taskvec::dataset::{PairedTask, summaries};
use crate::taskvec::task::BUILTIN;
use crate::taskvec::{Engine, Extraction, ReadAt, Row, TableRequest, run_table};

/// `taskvec tasks [--json]`.
pub fn tasks(json: bool) -> Result<()> {
    let s = summaries()?;
    if json {
        println!("{}", serde_json::to_string(&s).expect("serializes"));
    } else {
        println!("{:<18} {:>5} {:>6}  instruction", "task", "text", "image");
        for t in &s {
            println!(
                "{:<18} {:>5} {:>6}  {}",
                t.name, t.text_items, t.image_items, t.instruction
            );
        }
    }
    Ok(())
}

/// Arguments of `taskvec table`.
#[derive(clap::Args, Debug)]
pub struct TableArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A second model whose text-demonstration vectors the `llm-xpatch` row patches into
    /// `--model` (e.g. SmolLM2-135M for SmolVLM-256M; same layers and hidden size).
    #[arg(long)]
    source_model: Option<PathBuf>,
    /// Rows (default: every row the models can run): no-context, text-xbase, text-xpatch,
    /// image-icl, image-patch, image-text-xpatch, instruction, ensemble, llm-xpatch,
    /// no-context-text, text-icl, text-patch, instruction-text, ensemble-text.
    #[arg(long, value_delimiter = ',')]
    rows: Vec<String>,
    /// Built-in tasks (default: all six).
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Seeds of the demonstration draws, averaged.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    seeds: Vec<u64>,
    /// Source prompts per vector (one per validation item, up to this many).
    #[arg(long, default_value_t = 30)]
    prompts: usize,
    /// Where exemplar vectors are read (`demo`: the last demonstration's `A:`; `query`).
    #[arg(long, value_enum, default_value_t = ReadAt::Demo)]
    read_at: ReadAt,
    /// Print exactly one JSON object instead of the markdown table.
    #[arg(long)]
    json: bool,
    /// Also write the table as CSV to this file.
    #[arg(long)]
    csv: Option<PathBuf>,
}

/// `taskvec table`: runs the rows × tasks, progress bar on stderr, markdown or JSON on stdout.
pub fn table(a: TableArgs, dev: &Device) -> Result<()> {
    let m = load_model(&a.model, dev)?;
    let source = match &a.source_model {
        Some(p) => Some(load_model(
            &ModelArgs {
                model: p.clone(),
                mmproj: None,
                weights: a.model.weights,
                activations: a.model.activations,
            },
            dev,
        )?),
        None => None,
    };
    let rows: Vec<Row> = if a.rows.is_empty() {
        Row::defaults(m.model.vision.is_some(), source.is_some())
    } else {
        a.rows.iter().map(|r| r.parse()).collect::<Result<_>>()?
    };
    let names: Vec<String> = if a.tasks.is_empty() {
        BUILTIN.iter().map(|b| b.0.to_string()).collect()
    } else {
        a.tasks.clone()
    };
    let with_images = rows.iter().any(|r| r.needs_images());
    let tasks = names
        .iter()
        .map(|n| {
            if with_images {
                PairedTask::builtin(n)
            } else {
                PairedTask::builtin_with(n, |_| Ok(Vec::new()), false)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    if a.seeds.is_empty() {
        return Err(Error::TaskVector("give at least one seed".into()));
    }
    let req = TableRequest {
        rows,
        tasks,
        seeds: a.seeds.clone(),
        extraction: Extraction {
            prompts: a.prompts,
            read_at: a.read_at,
        },
    };
    let target = Engine::new(&m);
    let src = source.as_ref().map(Engine::new);
    crate::taskvec::table::check(&req, &target, src.as_ref())?;
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} model calls, eta {eta} {msg}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    let t0 = std::time::Instant::now();
    let table = pollster::block_on(run_table(&target, src.as_ref(), &req, &mut |d, n, what| {
        bar.set_length(n as u64);
        bar.set_position(d as u64);
        bar.set_message(what.to_string());
    }))?;
    bar.finish_and_clear();
    eprintln!(
        "table: {} rows × {} tasks × {} seeds in {:.1} s; {} images encoded",
        table.rows.len(),
        table.tasks.len(),
        table.seeds.len(),
        t0.elapsed().as_secs_f64(),
        m.features.encoded()
    );
    if let Some(p) = &a.csv {
        super::write(p, table.csv())?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&table).expect("serializes"));
    } else {
        print!("{}", table.markdown());
    }
    Ok(())
}
