//! Issue 4/6: weights that stay quantized in memory give the same model as the dequantized
//! f32 reference — on the real SmolLM2 (its own Q4_1/Q8_0 blocks, and requantized to Q8_0 /
//! Q4_0 / Q4_1) and on the tiny VLM (quantized on load from f32 safetensors).

use super::common;

use common::*;
use taskvec::loader::{LoadOptions, LoadedModel};
use taskvec::model::Intervention;
use taskvec::taskvec::{Engine, Spec, Task, evaluate};
use taskvec::weights::{WeightMode, quant::GgmlType};

/// Every layer's residual stream (embeddings + each layer) at the last position, per prompt.
fn last_states(m: &LoadedModel, prompts: &[(Vec<u32>, Vec<Vec<f32>>)]) -> Vec<Vec<f32>> {
    prompts
        .iter()
        .map(|(ids, px)| last_state(m, ids, px))
        .collect()
}

/// The lowest per-layer cosine between two runs' states.
fn worst_cosine(a: &[Vec<f32>], b: &[Vec<f32>], d: usize) -> f64 {
    let per_layer: Vec<f64> = (0..a[0].len() / d)
        .map(|l| {
            a.iter()
                .zip(b)
                .map(|(x, y)| cosine(&x[l * d..(l + 1) * d], &y[l * d..(l + 1) * d]))
                .fold(1.0, f64::min)
        })
        .collect();
    eprintln!(
        "  per-layer worst cosine: {:?}",
        per_layer
            .iter()
            .map(|c| (c * 1e4).round() / 1e4)
            .collect::<Vec<_>>()
    );
    per_layer.into_iter().fold(1.0, f64::min)
}

/// The five SmolLM2 prompts of the transformers fixture, as token ids.
fn reference_prompts() -> Vec<(Vec<u32>, Vec<Vec<f32>>)> {
    let f = read(&fixture("smollm2/hidden_ref.safetensors"));
    (0..5)
        .map(|k| (ids(&f, &format!("p{k}.input_ids")), vec![]))
        .collect()
}

fn q(ty: GgmlType) -> WeightMode {
    WeightMode::Quantize(ty)
}

#[test]
fn real_model_quantized_runs_match_the_dequantized_reference() {
    let prompts = reference_prompts();
    let g: serde_json::Value =
        serde_json::from_slice(&read(&fixture("smollm2/greedy.json"))).unwrap();
    let greedy: Vec<Vec<u32>> = g["input_ids"].as_array().unwrap()[..5]
        .iter()
        .map(json_ids)
        .collect();
    let continue_all = |m: &LoadedModel| -> Vec<Vec<u32>> {
        greedy
            .iter()
            .map(|ids| {
                let x = m.model.embed(ids, &[]).unwrap();
                pollster::block_on(m.model.generate(x, &Intervention::default(), 12, &[])).unwrap()
            })
            .collect()
    };
    let reference = smollm2_with(WeightMode::F32);
    let d = reference.model.hidden_size();
    let ref_states = last_states(&reference, &prompts);
    let ref_text = continue_all(&reference);
    let file_bytes = reference.info.file_bytes as f64;
    drop(reference);
    // (mode, storage in memory, minimum cosine, minimum identical continuations of 5).
    // Auto keeps the file's own Q4_1/Q8_0 blocks: the same weights as the reference, so only
    // summation order differs. Requantizing to Q4_1 reproduces those blocks exactly. Q4_0 of an
    // already 4-bit model compounds two roundings (measured: cosine 0.99 after layer 3, 0.88
    // at the last layer): kept as a regression bound, not a quality claim.
    let cases = [
        (WeightMode::Auto, "q4_1+q8_0", 0.99999, 5),
        (q(GgmlType::Q8_0), "q8_0", 0.999, 4),
        (q(GgmlType::Q4_1), "q4_1+q8_0", 0.99999, 5),
        (q(GgmlType::Q4_0), "q4_0+q8_0", 0.85, 0),
    ];
    for (mode, storage, min_cos, min_same) in cases {
        let m = smollm2_with(mode);
        assert_eq!(m.info.storage, storage, "{mode:?}");
        let resident = m.model.resident_bytes() as f64;
        let c = worst_cosine(&last_states(&m, &prompts), &ref_states, d);
        let same = continue_all(&m)
            .iter()
            .zip(&ref_text)
            .filter(|(a, b)| a == b)
            .count();
        eprintln!(
            "{mode:?}: resident {:.1} MB ({:.3}× file), worst layer cosine {c:.6}, {same}/5 continuations identical",
            resident / 1e6,
            resident / file_bytes
        );
        assert!(c >= min_cos, "{mode:?}: worst layer cosine {c} < {min_cos}");
        assert!(
            same >= min_same,
            "{mode:?}: {same}/5 continuations identical"
        );
        if mode == WeightMode::Auto {
            assert!(resident <= 1.2 * file_bytes, "resident {resident} bytes");
        }
        // Against its own dequantized-f32 reference (the same rounded values as f32 matrices),
        // a requantized run differs only by summation order: the issue's ≥ 0.999 (Q8_0) and
        // ≥ 0.99 (Q4) with room to spare, and the same continuations on ≥ 4 of 5 prompts.
        if let WeightMode::Quantize(ty) = mode {
            let rounded = smollm2_with(WeightMode::Rounded(ty));
            let exact = worst_cosine(
                &last_states(&m, &prompts),
                &last_states(&rounded, &prompts),
                d,
            );
            let same = continue_all(&m)
                .iter()
                .zip(&continue_all(&rounded))
                .filter(|(a, b)| a == b)
                .count();
            eprintln!(
                "{mode:?} vs its dequantized reference: worst layer cosine {exact:.6}, {same}/5 continuations identical"
            );
            assert!(
                exact >= 0.9999,
                "{mode:?}: {exact} vs its dequantized reference"
            );
            assert!(
                same >= 4,
                "{mode:?}: {same}/5 continuations identical to its reference"
            );
        }
    }
}

#[test]
fn tiny_vlm_quantized_on_load_matches_f32() {
    let dev = burn::tensor::Device::flex();
    let img = read(&fixture("tiny_vlm/image_a.png"));
    let reference = tiny_vlm_safetensors_with(&dev, WeightMode::F32);
    let prompts = vec![
        reference.prompt("Q:<image>\nA:", &[&img]).unwrap(),
        reference
            .prompt("Q:France\nA:Paris\n\nQ:Spain\nA:", &[])
            .unwrap(),
    ];
    let d = reference.model.hidden_size();
    let ref_states = last_states(&reference, &prompts);
    // Against the dequantized-f32 reference (the same rounded values in f32 matrices) the only
    // difference is summation order: host kernels and device blocks both stay at cosine ≥ 0.9999.
    // Against the original f32 weights, random Gaussian weights lose ~8% (RMS) per 4-bit matrix;
    // over the vision tower, the connector and 4 decoder layers that leaves a last-layer cosine
    // of ~0.97 (measured 0.979 for Q4_1, 0.968 for Q4_0): a regression bound for the rounding
    // itself, not for the kernels. Q8_0 meets 0.999 even there.
    for (ty, min_cos) in [
        (GgmlType::Q8_0, 0.999),
        (GgmlType::Q4_1, 0.97),
        (GgmlType::Q4_0, 0.96),
    ] {
        let rounded = tiny_vlm_safetensors_with(&dev, WeightMode::Rounded(ty));
        assert_eq!(rounded.info.storage, "f32");
        let rounded_states = last_states(&rounded, &prompts);
        let host = tiny_vlm_safetensors_with(&dev, q(ty));
        let device = tiny_vlm_safetensors_opts(
            &dev,
            LoadOptions {
                mode: q(ty),
                device_blocks: true,
                ..LoadOptions::default()
            },
        );
        for (kind, m) in [("host blocks", &host), ("device blocks", &device)] {
            // Hidden size 48 does not split into 32-value blocks: only the MLP's down projection
            // (96 inputs) of the text model is quantized, plus the vision tower and connector.
            assert!(m.info.storage.contains(ty.name()), "{}", m.info.storage);
            assert!(m.model.resident_bytes() < reference.model.resident_bytes());
            let states = last_states(m, &prompts);
            let exact = worst_cosine(&states, &rounded_states, d);
            let c = worst_cosine(&states, &ref_states, d);
            eprintln!(
                "{ty:?} {kind}: storage {}, resident {} bytes, worst layer cosine {exact:.6} vs the dequantized reference, {c:.6} vs the original f32",
                m.info.storage,
                m.model.resident_bytes()
            );
            assert!(
                exact >= 0.9999,
                "{ty:?} {kind}: {exact} vs the dequantized reference"
            );
            assert!(
                c >= min_cos,
                "{ty:?} {kind}: worst layer cosine {c} < {min_cos}"
            );
        }
    }
}

/// The device-block path (what WebGPU runs: packed words dequantized by tensor ops for each
/// product), run on the CPU backend: the real model's own Q4_1/Q8_0 blocks give the f32
/// reference's states and continuations, in about the file's size.
#[test]
fn real_model_device_blocks_match_the_dequantized_reference() {
    let prompts = reference_prompts();
    let reference = smollm2_with(WeightMode::F32);
    let d = reference.model.hidden_size();
    let ref_states = last_states(&reference, &prompts);
    let greedy = |m: &LoadedModel| {
        let x = m.model.embed(&prompts[0].0, &[]).unwrap();
        pollster::block_on(m.model.generate(x, &Intervention::default(), 8, &[])).unwrap()
    };
    let ref_text = greedy(&reference);
    let file_bytes = reference.info.file_bytes as f64;
    drop(reference);
    let m = smollm2_opts(LoadOptions {
        mode: WeightMode::Auto,
        device_blocks: true,
        ..LoadOptions::default()
    });
    assert_eq!(m.info.storage, "q4_1+q8_0");
    let resident = m.model.resident_bytes() as f64;
    let c = worst_cosine(&last_states(&m, &prompts), &ref_states, d);
    eprintln!(
        "device blocks: resident {:.1} MB ({:.3}× file), worst layer cosine {c:.6}",
        resident / 1e6,
        resident / file_bytes
    );
    assert!(c >= 0.99999, "worst layer cosine {c}");
    assert!(resident <= 1.2 * file_bytes, "resident {resident} bytes");
    assert_eq!(greedy(&m), ref_text);
}

/// The task-vector protocol with the weights kept quantized gives the dequantized run's
/// accuracies (±0.03 at every layer) on the built-in Country-Capital split.
#[test]
fn country_capital_sweep_is_unchanged_by_quantized_storage() {
    let task = Task::builtin("country_capital").unwrap();
    let run = |mode| {
        let m = smollm2_with(mode);
        let e = Engine::new(&m);
        pollster::block_on(evaluate(&e, &task, Spec::Text, 30, 0, |_, _| {}))
            .unwrap()
            .0
    };
    let (quantized, dense) = (run(WeightMode::Auto), run(WeightMode::F32));
    eprintln!(
        "quantized: zero-shot {:.3} icl {:.3} per layer {:?}",
        quantized.zero_shot, quantized.icl, quantized.patched
    );
    eprintln!(
        "f32: zero-shot {:.3} icl {:.3} per layer {:?}",
        dense.zero_shot, dense.icl, dense.patched
    );
    assert!((quantized.zero_shot - dense.zero_shot).abs() <= 0.03);
    assert!((quantized.icl - dense.icl).abs() <= 0.03);
    for (l, (a, b)) in quantized.patched.iter().zip(&dense.patched).enumerate() {
        assert!((a - b).abs() <= 0.03, "layer {l}: {a} vs {b}");
    }
}

/// A GGUF written by `taskvec quantize` (requantize) holds exactly the blocks that quantizing on
/// load makes: the same states at every layer.
#[test]
fn requantized_file_equals_quantizing_on_load() {
    use taskvec::loader::{ModelFiles, load};
    use taskvec::weights::requantize::requantize;
    let bytes = read(&smollm2_path());
    let (q8, report) = requantize(&bytes, GgmlType::Q8_0).unwrap();
    // 210 Q4_1 matrices requantized; the Q8_0 embedding and 61 f32 norms kept.
    assert_eq!((report.quantized, report.kept), (210, 62));
    let f = read(&fixture("smollm2/hidden_ref.safetensors"));
    let prompts: Vec<_> = (0..2)
        .map(|k| (ids(&f, &format!("p{k}.input_ids")), vec![]))
        .collect();
    let from_file = load(
        ModelFiles::Gguf {
            model: q8,
            mmproj: None,
        },
        &burn::tensor::Device::flex(),
    )
    .unwrap();
    assert_eq!(from_file.info.quant, "q8_0");
    let on_load = smollm2_with(q(GgmlType::Q8_0));
    assert_eq!(
        last_states(&from_file, &prompts),
        last_states(&on_load, &prompts)
    );
}

/// The page refuses a model for a GPU whose buffers are too small before loading it: the
/// largest device buffer is the file's biggest block matrix as stored, or its f32 size.
#[test]
fn largest_device_buffer_follows_the_storage_mode() {
    use taskvec::loader::largest_device_buffer;
    let file = read(&smollm2_path());
    let h = taskvec::weights::gguf::GgufHeader::parse(&file).unwrap();
    let embd = &h.tensors["token_embd.weight"];
    assert_eq!(embd.numel(), 49152 * 576);
    let (name, bytes) = largest_device_buffer(&[&file], WeightMode::Auto).unwrap();
    let biggest = h.order.iter().map(|n| h.tensors[n].size).max().unwrap();
    assert_eq!(bytes, biggest, "{name}");
    let (name, bytes) = largest_device_buffer(&[&file], WeightMode::F32).unwrap();
    assert_eq!(
        (name.as_str(), bytes),
        ("token_embd.weight", 49152 * 576 * 4)
    );
    let (_, bytes) = largest_device_buffer(&[&file], q(GgmlType::Q4_0)).unwrap();
    assert_eq!(bytes, 49152 * 576 / 32 * 34);
    assert!(largest_device_buffer(&[b"not a gguf"], WeightMode::Auto).is_err());
}
