//! The paper's cross-modal protocol and table: every row on the tiny random VLM (numbers in
//! [0, 1], the right n, the layer chosen on validation, image features computed once per
//! distinct image), the read position, image-demonstration vectors against states captured
//! directly, the built-in paired data, refusals, and the real SmolLM2's text rows.

use super::common;

use std::collections::HashSet;

use burn::tensor::Device;
use common::*;
use taskvec::model::{Intervention, KvCache, read_f32};
use taskvec::taskvec::dataset::{Modality, PairedTask, builtin_lines, summaries};
use taskvec::taskvec::protocol::{Experiment, Extraction, Source, extract, source_prompts};
use taskvec::taskvec::table::{ROWS, check};
use taskvec::taskvec::task::{BUILTIN, Example, Input, Prompt};
use taskvec::taskvec::{Engine, ReadAt, Row, TableRequest, run_table};

fn tiny_lm() -> taskvec::loader::LoadedModel {
    let files = taskvec::loader::ModelFiles::Gguf {
        model: read(&fixture("tiny_vlm/tiny_lm.gguf")),
        mmproj: None,
    };
    taskvec::loader::load(files, &Device::flex()).unwrap()
}

fn request(rows: Vec<Row>, tasks: &[&str], seeds: Vec<u64>, prompts: usize) -> TableRequest {
    TableRequest {
        rows,
        tasks: tasks
            .iter()
            .map(|t| PairedTask::builtin(t).unwrap())
            .collect(),
        seeds,
        extraction: Extraction {
            prompts,
            read_at: ReadAt::Demo,
        },
    }
}

fn distinct_images(tasks: &[PairedTask]) -> usize {
    tasks
        .iter()
        .flat_map(|t| t.val.iter().chain(&t.test))
        .filter_map(|i| i.image.as_ref().map(|(p, _)| p.clone()))
        .collect::<HashSet<_>>()
        .len()
}

#[test]
fn every_row_runs_on_the_tiny_vlm() {
    let vlm = tiny_vlm_safetensors(&Device::flex());
    let lm = tiny_lm();
    let (target, source) = (Engine::new(&vlm), Engine::new(&lm));
    let req = request(
        ROWS.to_vec(),
        &["country_capital", "food_color"],
        vec![0, 1],
        8,
    );
    let mut calls = 0;
    let t = pollster::block_on(run_table(&target, Some(&source), &req, &mut |d, n, _| {
        assert!(d <= n);
        calls = n;
    }))
    .unwrap();
    assert!(calls > 0);
    assert_eq!(t.rows.len(), ROWS.len());
    assert_eq!(t.tasks, ["country_capital", "food_color"]);
    for (r, row) in t.rows.iter().zip(ROWS) {
        assert_eq!(r.id, row.id());
        for (ci, (c, task)) in r.cells.iter().zip(&req.tasks).enumerate() {
            assert!((0.0..=1.0).contains(&c.mean), "{} {ci}: {c:?}", r.id);
            assert!(
                c.lo <= c.mean + 1e-6 && c.mean <= c.hi + 1e-6,
                "{} {ci}: {c:?}",
                r.id
            );
            let want = if row.needs_images() {
                task.test.iter().filter(|i| i.image.is_some()).count()
            } else {
                task.test.len()
            };
            assert_eq!(c.n, want, "{} on {}", r.id, task.name);
        }
        assert_eq!(r.average.n, r.cells.iter().map(|c| c.n).sum::<usize>());
        if let Some(layer) = r.layer {
            // The layer is the validation argmax (first on ties), and the cell is the test
            // accuracy there.
            let v = &r.val_by_layer;
            assert_eq!(v.len(), 4);
            let best = (0..v.len()).fold(0, |b, l| if v[l] > v[b] { l } else { b });
            assert_eq!(layer, best, "{}: {v:?}", r.id);
            let mean_cells = r.cells.iter().map(|c| c.mean).sum::<f32>() / r.cells.len() as f32;
            assert!((r.average.mean - mean_cells).abs() < 1e-5);
            assert!(
                (r.test_by_layer[layer] - mean_cells).abs() < 1e-5,
                "{}",
                r.id
            );
        } else {
            assert!(r.val_by_layer.is_empty());
        }
    }
    // Every distinct image went through the vision encoder once, however many prompts
    // showed it (image demonstrations repeat images across prompts, rows and seeds).
    assert_eq!(vlm.features.encoded(), distinct_images(&req.tasks));
    assert!(t.markdown().contains("Text ICL xPatch"));
    assert_eq!(t.csv().lines().count(), 1 + ROWS.len() * 3);
}

#[test]
fn the_read_position_is_the_last_demonstrations_colon() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let e = Engine::new(&m);
    let ex = |x: &str, y: &str| Example {
        input: Input::Text(x.into()),
        output: y.into(),
    };
    let demos = [
        ex("France", "Paris"),
        ex("Spain", "Madrid"),
        ex("Italy", "Rome"),
        ex("Japan", "Tokyo"),
        ex("Peru", "Lima"),
    ];
    let refs: Vec<&Example> = demos.iter().collect();
    let full = Prompt::few_shot(&refs, &Input::Text("Egypt".into()));
    let (ids, _) = m.prompt(&full.text, &[]).unwrap();
    // By hand: the prompt up to the 5th demonstration's "A:" ends at that ':'.
    let head = "Q:France\nA:Paris\n\nQ:Spain\nA:Madrid\n\nQ:Italy\nA:Rome\n\nQ:Japan\nA:Tokyo\n\nQ:Peru\nA:";
    let (head_ids, _) = m.prompt(head, &[]).unwrap();
    assert_eq!(&ids[..head_ids.len()], &head_ids[..]);
    let pos = e.read_position(&ids, ReadAt::Demo).unwrap();
    assert_eq!(pos, head_ids.len() - 1);
    assert_eq!(e.read_position(&ids, ReadAt::Query).unwrap(), ids.len() - 1);
    // Reading at the demonstration equals the states of the truncated prompt's last token.
    let a = pollster::block_on(e.states_at(&full, ReadAt::Demo)).unwrap();
    let b = pollster::block_on(e.last_states(&Prompt {
        text: head.into(),
        images: vec![],
    }))
    .unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!(rel_err(x, y) < 1e-5);
    }
    // A prompt without a demonstration cannot be read there.
    let zs = m.prompt("Q:Egypt\nA:", &[]).unwrap().0;
    assert!(e.read_position(&zs, ReadAt::Demo).is_err());
}

#[test]
fn an_image_demonstration_vector_is_the_mean_of_captured_states() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let e = Engine::new(&m);
    let task = PairedTask::builtin("animal_young").unwrap();
    let exp = Experiment {
        source: Source::Examples(Modality::Image),
        target: Modality::Image,
    };
    let val = PairedTask::usable(&task.val, &exp.modalities());
    let x = Extraction {
        prompts: 6,
        read_at: ReadAt::Demo,
    };
    let v = pollster::block_on(extract(&e, &task, &exp, &val, x, 4)).unwrap();
    // Directly: each source prompt through the model with a capture at the 5th
    // demonstration's ':' (found by counting ':' tokens), averaged.
    let prompts = source_prompts(&val, Modality::Image, Modality::Image, 6, 4);
    assert_eq!(prompts.len(), 6);
    let colon = *m.tokenizer.encode("A:").unwrap().last().unwrap();
    let mut acc = vec![vec![0f64; 48]; 4];
    for p in &prompts {
        assert_eq!(
            p.images.len(),
            6,
            "5 image demonstrations + the image query"
        );
        let refs: Vec<&[u8]> = p.images.iter().map(Vec::as_slice).collect();
        let (ids, px) = m.prompt(&p.text, &refs).unwrap();
        let colons: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == colon).collect();
        assert_eq!(colons.len(), 12);
        let pos = colons[9];
        let x = m.model.embed(&ids, &px).unwrap();
        let iv = Intervention {
            capture: vec![pos],
            ..Default::default()
        };
        let o = m.model.forward(x, KvCache::new(4), &iv).unwrap();
        let h = pollster::block_on(read_f32(o.hidden.unwrap())).unwrap();
        for (l, row) in acc.iter_mut().enumerate() {
            for (i, a) in row.iter_mut().enumerate() {
                *a += h[(l + 1) * 48 + i] as f64;
            }
        }
    }
    for (l, row) in acc.iter().enumerate() {
        let want: Vec<f32> = row.iter().map(|a| (a / 6.0) as f32).collect();
        let err = rel_err(&v.layers[l], &want);
        assert!(err < 1e-5, "layer {l}: {err:e}");
    }
}

#[test]
fn refusals_are_clear() {
    let vlm = tiny_vlm_safetensors(&Device::flex());
    let lm = tiny_lm();
    let text_only = Engine::new(&lm);
    // An image row on a text-only model.
    let req = request(vec![Row::TextXPatch], &["country_capital"], vec![0], 4);
    let e = check(&req, &text_only, None).unwrap_err().to_string();
    assert!(
        e.contains("needs image queries") && e.contains("text-patch"),
        "{e}"
    );
    // A task with fewer than 2 image items refuses image rows.
    let mut few = PairedTask::builtin("food_color").unwrap();
    let mut kept = 0;
    for it in few.test.iter_mut() {
        if it.image.is_some() {
            kept += 1;
            if kept > 1 {
                it.image = None;
            }
        }
    }
    let req = TableRequest {
        tasks: vec![few],
        ..request(vec![Row::ImagePatch], &[], vec![0], 4)
    };
    let e = check(&req, &Engine::new(&vlm), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 image item(s) in its test split"), "{e}");
    // LLM → VLM needs a source model, and one of the same shape.
    let req = request(vec![Row::LlmXPatch], &["country_capital"], vec![0], 4);
    let e = check(&req, &Engine::new(&vlm), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--source-model"), "{e}");
    let sm = smollm2();
    let e = check(&req, &Engine::new(&vlm), Some(&Engine::new(&sm)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("30 layers × 576") && e.contains("same shape"),
        "{e}"
    );
    // Unknown rows and empty requests.
    assert!("text-xpatchh".parse::<Row>().is_err());
    let req = request(vec![], &["country_capital"], vec![0], 4);
    assert!(check(&req, &Engine::new(&vlm), None).is_err());
}

#[test]
fn built_in_images_decode_and_pair_with_their_items() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/images");
    assert!(root.join("ATTRIBUTION.md").is_file(), "attribution file");
    let mut referenced = HashSet::new();
    for (name, _, _) in BUILTIN {
        let (_, _, lines) = builtin_lines(name).unwrap();
        let images: Vec<_> = lines.iter().filter(|l| l.image.is_some()).collect();
        let mut seen = HashSet::new();
        assert!(images.len() >= 30, "{name}: {} image items", images.len());
        for split in [true, false] {
            let n = images.iter().filter(|l| l.val == split).count();
            assert!(
                n >= 2 * (1 + !split as usize),
                "{name}: {n} image items (val = {split})"
            );
        }
        for l in images {
            let p = l.image.as_ref().unwrap();
            referenced.insert(p.clone());
            let bytes = taskvec::taskvec::dataset::builtin_image(p).unwrap();
            let img = taskvec::preprocess::decode(&bytes).unwrap();
            assert_eq!(img.width(), 224, "{p}");
            assert!((100..=224).contains(&img.height()), "{p}: {}", img.height());
            // One image shows one item of a task.
            assert!(seen.insert(p.clone()), "{name}: {p} is used twice");
        }
    }
    // No unreferenced images, and the summaries agree with the files.
    let on_disk: usize = ["flags", "animals", "foods"]
        .iter()
        .map(|d| std::fs::read_dir(root.join(d)).map_or(0, |r| r.count()))
        .sum();
    assert_eq!(on_disk, referenced.len());
    for s in summaries().unwrap() {
        let (_, _, lines) = builtin_lines(&s.name).unwrap();
        assert_eq!(s.text_items, lines.len());
    }
}

/// Real SmolLM2 (text rows): the text-demonstration vector and the instruction vector patched
/// at the layer chosen on validation beat zero-shot by at least 2× on Country-Capital's test
/// split.
#[test]
fn smollm2_text_rows_beat_zero_shot() {
    let m = smollm2();
    let e = Engine::new(&m);
    let rows = vec![
        Row::NoContextText,
        Row::TextIcl,
        Row::TextPatch,
        Row::InstructionText,
        Row::EnsembleText,
    ];
    let tasks = vec![PairedTask::builtin_with("country_capital", |_| Ok(vec![]), false).unwrap()];
    let req = TableRequest {
        rows,
        tasks,
        seeds: vec![0],
        extraction: Extraction {
            prompts: 30,
            read_at: ReadAt::Demo,
        },
    };
    let t = pollster::block_on(run_table(&e, None, &req, &mut |_, _, _| {})).unwrap();
    eprintln!("{}", t.markdown());
    let zs = t.rows[0].cells[0].mean;
    let icl = t.rows[1].cells[0].mean;
    assert!(icl > zs, "ICL {icl} vs zero-shot {zs}");
    for r in &t.rows[2..] {
        let a = r.cells[0].mean;
        let l = r.layer.unwrap();
        eprintln!("{}: {a:.3} at layer {l}", r.id);
        assert!(a >= 2.0 * zs && a > 0.0, "{}: {a} vs zero-shot {zs}", r.id);
        assert!((5..30).contains(&l), "{}: layer {l}", r.id);
    }
}

/// The feature cache: a repeated image gives the identical answer without running the vision
/// encoder again.
#[test]
fn a_repeated_image_is_not_re_encoded() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let e = Engine::new(&m);
    let img = Input::Image {
        bytes: read(&fixture("tiny_vlm/image_b.jpg")),
        label: "b".into(),
    };
    let q = Prompt::zero_shot(&img);
    let a = pollster::block_on(e.answer(&q, None, 4)).unwrap();
    assert_eq!(m.features.encoded(), 1);
    let b = pollster::block_on(e.answer(&q, None, 4)).unwrap();
    let two = Prompt::few_shot(
        &[&Example {
            input: img.clone(),
            output: "x".into(),
        }],
        &img,
    );
    pollster::block_on(e.first_token(&two)).unwrap();
    assert_eq!((a.ids, a.text), (b.ids, b.text));
    assert_eq!(m.features.encoded(), 1, "one distinct image, encoded once");
    // The cached features equal a fresh encode.
    let v = m.model.config.vision.as_ref().unwrap();
    let px =
        taskvec::preprocess::load_image(&read(&fixture("tiny_vlm/image_b.jpg")), v, m.longest_edge)
            .unwrap();
    let fresh = pollster::block_on(read_f32(m.model.image_features(&px).unwrap())).unwrap();
    let (_, x) = m
        .embed_prompt("<image>", &[&read(&fixture("tiny_vlm/image_b.jpg"))])
        .unwrap();
    let cached = pollster::block_on(read_f32(x)).unwrap();
    let n = fresh.len();
    assert_eq!(
        &cached[cached.len() - n - 48..cached.len() - 48],
        &fresh[..]
    );
}
