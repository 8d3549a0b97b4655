//! The real SmolLM2-135M-Instruct (Q4_1 GGUF) against transformers (fixtures made by
//! `tests/fixtures/make_smollm2_ref.py`): tokenizer ids, every layer's last-position hidden
//! state, logits and greedy continuations (the task-vector protocol on it: `tests/paper.rs`).

use super::common;

use common::*;
use taskvec::loader::LoadOptions;
use taskvec::model::qmatmul::Activations;
use taskvec::model::{Intervention, KvCache, read_f32};

#[test]
fn tokenizer_ids_equal_transformers() {
    let m = smollm2();
    let cases: serde_json::Value =
        serde_json::from_slice(&read(&fixture("smollm2/tokenizer_cases.json"))).unwrap();
    let strings = cases["strings"].as_array().unwrap();
    assert!(strings.len() >= 30);
    let mut bad = Vec::new();
    for (s, want) in strings.iter().zip(cases["ids"].as_array().unwrap()) {
        let s = s.as_str().unwrap();
        let want = json_ids(want);
        let got = m.tokenizer.encode(s).unwrap();
        if got != want {
            bad.push(format!("{s:?}: got {got:?} want {want:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} strings differ:\n{}",
        bad.len(),
        strings.len(),
        bad.join("\n")
    );
}

/// Every layer's last-position state and the logits against transformers on the file's own
/// blocks (dequantized in the fixture), for the default 12-bit integer activations and for the
/// f32-activation reference path, each with its bar: (lowest cosine, largest relative error).
/// Measured: f32 cosine 1.0000000, relative error 3.8e-6 (logits 5.4e-6); int16 cosine
/// 0.9999945, relative error 2.9e-3 (logits 3.3e-3).
#[test]
fn every_layer_matches_transformers() {
    let f = read(&fixture("smollm2/hidden_ref.safetensors"));
    for (activations, min_cos, max_rel) in [
        (Activations::Int16, 0.99999, 5e-3),
        (Activations::F32, 0.9999999, 2e-5),
    ] {
        let m = smollm2_opts(LoadOptions {
            activations,
            ..LoadOptions::default()
        });
        let d = m.model.hidden_size();
        let (mut worst_cos, mut worst_rel, mut worst_logits) = (1f64, 0f64, 0f64);
        let mut k = 0;
        while let Ok(st) = safetensors::SafeTensors::deserialize(&f) {
            if st.tensor(&format!("p{k}.input_ids")).is_err() {
                break;
            }
            let ids = ids(&f, &format!("p{k}.input_ids"));
            let (_, want) = tensor(&f, &format!("p{k}.last_hidden"));
            let (_, want_logits) = tensor(&f, &format!("p{k}.last_logits"));
            let x = m.model.embed(&ids, &[]).unwrap();
            let iv = Intervention {
                capture: vec![ids.len() - 1],
                ..Default::default()
            };
            let o = m.model.forward(x, KvCache::new(30), &iv).unwrap();
            let got = pollster::block_on(read_f32(o.hidden.unwrap())).unwrap();
            let logits = pollster::block_on(read_f32(o.logits)).unwrap();
            for l in 0..=m.model.num_layers() {
                let c = cosine(&got[l * d..(l + 1) * d], &want[l * d..(l + 1) * d]);
                let r = rel_err(&got[l * d..(l + 1) * d], &want[l * d..(l + 1) * d]);
                worst_cos = worst_cos.min(c);
                worst_rel = worst_rel.max(r);
                let name = activations.name();
                assert!(c >= min_cos, "{name}: prompt {k} layer {l}: cosine {c}");
                assert!(
                    r < max_rel,
                    "{name}: prompt {k} layer {l}: relative error {r}"
                );
            }
            let e = rel_err(&logits, &want_logits);
            worst_logits = worst_logits.max(e);
            assert!(e < max_rel, "prompt {k}: logits relative error {e}");
            k += 1;
        }
        eprintln!(
            "{}: min layer cosine {worst_cos:.8}, max layer rel err {worst_rel:.2e}, logits rel err {worst_logits:.2e}",
            activations.name()
        );
        assert!(k >= 3, "fixture has {k} prompts");
    }
}

#[test]
fn greedy_continuations_equal_transformers() {
    let m = smollm2();
    let g: serde_json::Value =
        serde_json::from_slice(&read(&fixture("smollm2/greedy.json"))).unwrap();
    let prompts = g["input_ids"].as_array().unwrap();
    let mut same = 0;
    for (p, want) in prompts.iter().zip(g["new_ids"].as_array().unwrap()) {
        let ids = json_ids(p);
        let want = json_ids(want);
        let x = m.model.embed(&ids, &[]).unwrap();
        let got =
            pollster::block_on(
                m.model
                    .generate(x, &Intervention::default(), want.len(), &[]),
            )
            .unwrap();
        if got == want {
            same += 1;
        } else {
            eprintln!("differs: got {got:?} want {want:?}");
        }
    }
    assert!(prompts.len() >= 5);
    assert_eq!(
        same,
        prompts.len(),
        "{same} of {} continuations identical",
        prompts.len()
    );
}

// The task-vector protocol on the real model (text, instruction and ensemble rows on
// Country-Capital's fixed split, layer chosen on validation) is `tests/paper.rs`.
