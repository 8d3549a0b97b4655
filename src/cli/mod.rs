//! Native command-line shell over the library: file reading, argument parsing, output. The
//! flags are in [`args`], files and devices in [`files`], `export`/`quantize` in [`convert`],
//! the task-vector commands in [`tasks`], `table` in [`paper`], `serve` in [`serve`]; this file
//! dispatches and runs the model-inspection commands.

use crate::error::Result;
use crate::model::{Intervention, KvCache, read_f32};

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Command::Serve { port, root } = &cli.command {
        return serve::serve(root, *port);
    }
    if let Command::Quantize { input, output, ty } = &cli.command {
        return quantize_file(input, output, *ty);
    }
    if let Command::Export {
        file,
        format,
        out,
        layers,
        scale,
    } = &cli.command
    {
        return export_file(file, *format, out, layers.as_deref(), *scale);
    }
    if let Command::Import { file, out } = &cli.command {
        let f = crate::taskvec::export::from_safetensors(&read(file)?)?;
        write(out, f.to_json())?;
        eprintln!(
            "wrote {} ({} layers × {}), recommended layer {}",
            out.display(),
            f.model.layers,
            f.model.hidden,
            f.recommended_layer
        );
        return Ok(());
    }
    if let Command::Combine {
        expr,
        out,
        allow_transfer,
    } = &cli.command
    {
        return tasks::combine_files(expr, out, *allow_transfer);
    }
    if let Command::Map { files, layer, json } = &cli.command {
        return tasks::map_files(files, *layer, *json);
    }
    if let Command::Tasks { json } = &cli.command {
        return paper::tasks(*json);
    }
    let dev = device(cli.device)?;
    match cli.command {
        Command::Generate {
            model,
            prompt,
            image,
            max_tokens,
        } => {
            let m = load_model(&model, &dev)?;
            let images = image_list(&image)?;
            let prompt =
                if !images.is_empty() && !prompt.contains(crate::tokenize::IMAGE_PLACEHOLDER) {
                    format!("{}{prompt}", crate::tokenize::IMAGE_PLACEHOLDER)
                } else {
                    prompt
                };
            let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
            let (_, x) = m.embed_prompt(&prompt, &refs)?;
            let mut new = pollster::block_on(m.model.generate(
                x,
                &Intervention::default(),
                max_tokens,
                &m.tokenizer.eos,
            ))?;
            if new.last().is_some_and(|t| m.tokenizer.eos.contains(t)) {
                new.pop();
            }
            print!("{}", m.tokenizer.decode(&new)?);
            Ok(())
        }
        Command::Hidden {
            model,
            prompt,
            ids,
            image,
            out,
        } => {
            let m = load_model(&model, &dev)?;
            let images = image_list(&image)?;
            let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
            let ids = match (prompt, ids) {
                (Some(p), _) => m.prompt_ids(&p, refs.len())?,
                (None, Some(ids)) => ids,
                (None, None) => unreachable!("clap requires --prompt or --ids"),
            };
            let x = m.embed_ids(&ids, &refs)?;
            let seq = ids.len();
            let iv = Intervention {
                capture: (0..seq).collect(),
                all_logits: true,
                ..Default::default()
            };
            let o = m
                .model
                .forward(x, KvCache::new(m.model.num_layers()), &iv)?;
            let hidden = o.hidden.expect("captured");
            let hdims = hidden.dims();
            let ldims = o.logits.dims();
            let hidden = pollster::block_on(read_f32(hidden))?;
            let logits = pollster::block_on(read_f32(o.logits))?;
            let ids64: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
            write_safetensors(
                &out,
                &[
                    (
                        "hidden",
                        f32_bytes(&hidden),
                        hdims.to_vec(),
                        safetensors::Dtype::F32,
                    ),
                    (
                        "logits",
                        f32_bytes(&logits),
                        ldims.to_vec(),
                        safetensors::Dtype::F32,
                    ),
                    (
                        "input_ids",
                        ids64.iter().flat_map(|v| v.to_le_bytes()).collect(),
                        vec![seq],
                        safetensors::Dtype::I64,
                    ),
                ],
            )
        }
        Command::Info { model, json } => {
            let m = load_model(&model, &dev)?;
            let i = m.card();
            if json {
                println!("{}", serde_json::to_string(&i).expect("card serializes"));
            } else {
                println!(
                    "{} ({}, {}), fingerprint {}",
                    i.name, i.format, i.quant, i.fingerprint
                );
                println!(
                    "file {:.1} MiB, resident weights {:.1} MiB (matrices stored as {})",
                    i.file_bytes as f64 / 1048576.0,
                    i.resident_weight_bytes as f64 / 1048576.0,
                    i.storage
                );
                println!(
                    "{} layers, hidden {}, images: {}",
                    i.layers,
                    i.hidden,
                    if i.vision { "yes" } else { "no" }
                );
            }
            Ok(())
        }
        Command::FusedCheck { sizes, runs } => {
            let t0 = std::time::Instant::now();
            fused_check_command(&dev, &sizes, runs, &move || {
                t0.elapsed().as_secs_f64() * 1e3
            })
        }
        Command::Bench {
            model,
            prefill,
            decode,
            runs,
            json,
            probe,
            image,
        } => {
            let t0 = std::time::Instant::now();
            let now = move || t0.elapsed().as_secs_f64() * 1e3;
            if probe {
                let r = pollster::block_on(crate::bench::probe(&dev, runs.max(1), &now))?;
                println!("{}", serde_json::to_string(&r).expect("report serializes"));
                return Ok(());
            }
            let m = load_model(&model, &dev)?;
            let mut name = match cli.device {
                Backend::Cpu => "flex (cpu)",
                Backend::Wgpu => "wgpu",
            }
            .to_string();
            // What the loaded model's quantized products really use (none: f32 activations).
            if let Some(a) = m.model.text.integer_activations() {
                let kernel = crate::model::qmatmul::integer::Kernel::detect().name();
                name.push_str(&format!(", {} activations ({kernel})", a.name()));
            }
            let name = name.as_str();
            if let Some(path) = image {
                let bytes = read(&path)?;
                let r =
                    pollster::block_on(crate::bench::image_bench(&m, name, &bytes, runs, 8, &now))?;
                if json {
                    println!("{}", serde_json::to_string(&r).expect("report serializes"));
                } else {
                    println!("backend              {}", r.backend);
                    println!("preprocess           {:.1} ms", r.preprocess_ms);
                    println!(
                        "vision encoder       {:.1} ms ({:.1} GFLOP/s)",
                        r.vision_ms, r.vision_gflops
                    );
                    println!(
                        "image prompt prefill {:.1} ms ({} tokens, {} of them the image)",
                        r.image_prefill_ms, r.prompt_tokens, r.image_tokens
                    );
                    println!("image → first token  {:.1} ms", r.first_token_ms);
                    println!(
                        "apply (page)         {:.1} ms (3 answers of {} tokens + sweep)",
                        r.apply_ms, r.max_tokens
                    );
                    println!("apply, estimated     {:.1} ms", r.estimated_apply_ms);
                    if let Some(p) = &r.vision_phases {
                        println!(
                            "encoder parts (ms)   layer norms {:.0}, qkv {:.0} ({:.1} GFLOP/s), \
                             attention {:.0} ({:.1}), out {:.0}, mlp up + gelu {:.0} ({:.1}), \
                             mlp down {:.0} ({:.1})",
                            p.layer_norms,
                            p.qkv,
                            p.qkv_gflops,
                            p.attention,
                            p.attention_gflops,
                            p.out,
                            p.mlp_up,
                            p.mlp_up_gflops,
                            p.mlp_down,
                            p.mlp_down_gflops
                        );
                    }
                }
                return Ok(());
            }
            let r = pollster::block_on(crate::bench::bench(
                &m, name, prefill, decode, runs, true, &now,
            ))?;
            if json {
                println!("{}", serde_json::to_string(&r).expect("report serializes"));
            } else {
                println!("backend              {}", r.backend);
                println!(
                    "prefill              {:.1} tok/s ({} tokens, every layer captured)",
                    r.prefill_tok_s, r.prefill_tokens
                );
                println!("decode               {:.2} ms/token", r.decode_ms_per_token);
                println!("patched forward      {:.1} ms", r.patched_forward_ms);
                println!(
                    "layer sweep (fast)   {:.1} ms  ({:.2}x one patched forward)",
                    r.sweep_ms,
                    r.sweep_ms / r.patched_forward_ms
                );
                println!("layer sweep (naive)  {:.1} ms", r.naive_sweep_ms);
            }
            Ok(())
        }
        Command::Table(a) => paper::table(a, &dev),
        other => run_task_command(other, &dev),
    }
}

mod args;
mod convert;
mod files;
pub mod paper;
pub mod serve;
mod tasks;
pub use args::*;
use convert::{export_file, quantize_file};
pub use files::{device, load_model, model_files, read, write, write_safetensors};
use files::{f32_bytes, image_list};
use tasks::run_task_command;

/// `taskvec fused-check`: one JSON line per case ([`crate::bench::fused_check`]) on the wgpu
/// device; an error on the CPU device or in a build without WebGPU.
fn fused_check_command(
    dev: &burn::tensor::Device,
    sizes: &str,
    runs: usize,
    now: &dyn Fn() -> f64,
) -> Result<()> {
    #[cfg(feature = "wgpu")]
    if !crate::model::device::on_host(dev) {
        let (shapes, runs) = crate::bench::fused_shapes(sizes, runs)?;
        for case in pollster::block_on(crate::bench::fused_check(dev, shapes, runs, now))? {
            println!(
                "{}",
                serde_json::to_string(&case).expect("report serializes")
            );
        }
        return Ok(());
    }
    let _ = (dev, sizes, runs, now);
    Err(crate::error::Error::Backend(
        if cfg!(feature = "wgpu") {
            "fused-check runs on the wgpu device: add --device wgpu"
        } else {
            "this build has no wgpu backend (rebuild with --features wgpu)"
        }
        .into(),
    ))
}
