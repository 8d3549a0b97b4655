//! Shared helpers for the integration tests: fixture paths, reading reference tensors, the real
//! SmolLM2 model, and comparison metrics.
#![allow(dead_code)]

use std::path::PathBuf;

use safetensors::SafeTensors;
use taskvec::loader::{LoadOptions, LoadedModel, ModelFiles, load, load_opts};
use taskvec::weights::WeightMode;

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Reads a file, panicking with its path.
pub fn read(p: &PathBuf) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A reference tensor from a safetensors fixture: (shape, f32 values; ints converted).
pub fn tensor(file: &[u8], name: &str) -> (Vec<usize>, Vec<f32>) {
    let st = SafeTensors::deserialize(file).unwrap();
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("fixture tensor {name} missing"));
    let d = t.data();
    let v = match t.dtype() {
        safetensors::Dtype::F32 => d
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        safetensors::Dtype::I64 => d
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        other => panic!("unexpected dtype {other:?}"),
    };
    (t.shape().to_vec(), v)
}

/// Reference ids as u32.
pub fn ids(file: &[u8], name: &str) -> Vec<u32> {
    tensor(file, name).1.into_iter().map(|x| x as u32).collect()
}

/// The real SmolLM2-135M-Instruct Q4_1 GGUF: `$TASKVEC_SMOLLM2` or `models/…`. Missing is a
/// failure, not a skip: `.ci/run` installs it with `models/fetch-smollm2.sh`.
pub fn smollm2_path() -> PathBuf {
    let p = std::env::var_os("TASKVEC_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.is_file(),
        "{} is missing: run `bash models/fetch-smollm2.sh`",
        p.display()
    );
    p
}

/// Loads the real SmolLM2 on the CPU backend (its Q4_1/Q8_0 blocks stay in memory).
pub fn smollm2() -> LoadedModel {
    smollm2_with(WeightMode::Auto)
}

/// Loads the real SmolLM2 on the CPU backend with its matrices stored as `mode` says.
pub fn smollm2_with(mode: WeightMode) -> LoadedModel {
    smollm2_opts(LoadOptions {
        mode,
        ..LoadOptions::default()
    })
}

/// Loads the real SmolLM2 on the CPU backend as `opts` say.
pub fn smollm2_opts(opts: LoadOptions) -> LoadedModel {
    let bytes = read(&smollm2_path());
    load_opts(
        ModelFiles::Gguf {
            model: bytes,
            mmproj: None,
        },
        &burn::tensor::Device::flex(),
        opts,
    )
    .unwrap()
}

/// The tiny random SmolVLM from safetensors (HF directory files).
pub fn tiny_vlm_safetensors(device: &burn::tensor::Device) -> LoadedModel {
    tiny_vlm_safetensors_with(device, WeightMode::Auto)
}

/// The tiny random SmolVLM from safetensors, its matrices stored as `mode` says.
pub fn tiny_vlm_safetensors_with(device: &burn::tensor::Device, mode: WeightMode) -> LoadedModel {
    let opts = LoadOptions {
        mode,
        ..LoadOptions::default()
    };
    tiny_vlm_safetensors_opts(device, opts)
}

/// The tiny random SmolVLM from safetensors, loaded as `opts` say.
pub fn tiny_vlm_safetensors_opts(device: &burn::tensor::Device, opts: LoadOptions) -> LoadedModel {
    let d = |f: &str| fixture(&format!("tiny_vlm/{f}"));
    let files = ModelFiles::HuggingFace {
        config: String::from_utf8(read(&d("config.json"))).unwrap(),
        preprocessor: std::fs::read_to_string(d("processor_config.json")).ok(),
        tokenizer: read(&d("tokenizer.json")),
        weights: vec![read(&d("model.safetensors"))],
    };
    load_opts(files, device, opts).unwrap()
}

/// The same tiny model from its GGUF pair (text + mmproj).
pub fn tiny_vlm_gguf(device: &burn::tensor::Device) -> LoadedModel {
    let files = ModelFiles::Gguf {
        model: read(&fixture("tiny_vlm/tiny_lm.gguf")),
        mmproj: Some(read(&fixture("tiny_vlm/tiny_mmproj.gguf"))),
    };
    load(files, device).unwrap()
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += *x as f64 * *y as f64;
        aa += (*x as f64).powi(2);
        bb += (*y as f64).powi(2);
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// max |a-b| / max(max |b|, 1e-6): error relative to the reference's scale.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(0f64, |m, x| m.max(x.abs() as f64)).max(1e-6);
    a.iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()))
        / scale
}

/// A JSON array of token ids.
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

/// Every layer's residual stream (embeddings + each layer) at the last position of a prompt
/// (`px`: its images' pixel values).
pub fn last_state(m: &LoadedModel, ids: &[u32], px: &[Vec<f32>]) -> Vec<f32> {
    use taskvec::model::{Intervention, KvCache, read_f32};
    let x = m.model.embed(ids, px).unwrap();
    let iv = Intervention {
        capture: vec![ids.len() - 1],
        ..Default::default()
    };
    let o = m
        .model
        .forward(x, KvCache::new(m.model.num_layers()), &iv)
        .unwrap();
    pollster::block_on(read_f32(o.hidden.unwrap())).unwrap()
}
