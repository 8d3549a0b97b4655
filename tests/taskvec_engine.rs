//! The task-vector engine on the tiny random SmolVLM: extraction is the mean of the captured
//! residual streams (checked against transformers' hidden states), patching equals the
//! transformers hook, the fast sweep equals the naive one at every layer, and the JSON format
//! round-trips and refuses every kind of bad file.

use super::common;

use burn::tensor::Device;
use common::*;
use taskvec::taskvec::format::{ExampleRecord, SpecKind, TaskRecord};
use taskvec::taskvec::lens::{cosine_per_layer, similarity_matrix};
use taskvec::taskvec::{Engine, Example, Input, Prompt, TaskVector, VectorFile};

fn png(name: &str) -> Input {
    Input::Image {
        bytes: read(&fixture(&format!("tiny_vlm/{name}"))),
        label: name.into(),
    }
}

#[test]
fn extraction_is_the_mean_of_transformers_states() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let r = read(&fixture("tiny_vlm/ref.safetensors"));
    let e = Engine::new(&m);
    // The fixture's "txt" and "img" prompts, through the prompt builder.
    let demo = Example {
        input: Input::Text("France".into()),
        output: "Paris".into(),
    };
    let p_txt = Prompt::few_shot(&[&demo], &Input::Text("Spain".into()));
    let p_img = Prompt::zero_shot(&png("image_a.png"));
    let v = pollster::block_on(e.mean_states(&[p_txt, p_img], |_, _| {})).unwrap();
    let (st, ht) = tensor(&r, "txt.hidden");
    let (si, hi) = tensor(&r, "img.hidden");
    let d = 48;
    for l in 0..4 {
        let last = |h: &[f32], s: &[usize]| {
            h[((l + 1) * s[1] + s[1] - 1) * d..((l + 1) * s[1] + s[1]) * d].to_vec()
        };
        let (a, b) = (last(&ht, &st), last(&hi, &si));
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| (x + y) / 2.0).collect();
        let err = rel_err(&v.layers[l], &want);
        assert!(err < 2e-5, "layer {l}: {err:e}");
    }
}

#[test]
fn apply_matches_the_transformers_hook() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let r = read(&fixture("tiny_vlm/ref.safetensors"));
    let layer = tensor(&r, "patch.layer").1[0] as usize;
    let mut v = TaskVector {
        layers: vec![vec![0.0; 48]; 4],
    };
    v.layers[layer] = tensor(&r, "patch.vector").1;
    let a = pollster::block_on(Engine::new(&m).answer(
        &Prompt::zero_shot(&png("image_a.png")),
        Some((&v, layer)),
        3,
    ))
    .unwrap();
    let (shape, logits) = tensor(&r, "patch.logits");
    let last = &logits[(shape[0] - 1) * shape[1]..];
    let want = taskvec::model::argmax(last) as u32;
    assert_eq!(a.ids[0], want, "first patched token");
    let p = taskvec::taskvec::engine::softmax(last);
    assert!(
        (a.top[0].1 - p[want as usize]).abs() < 1e-4,
        "probability {} vs {}",
        a.top[0].1,
        p[want as usize]
    );
}

fn some_vector(m: &taskvec::loader::LoadedModel) -> TaskVector {
    let e = Engine::new(m);
    let ex: Vec<Example> = ["France:Paris", "Spain:Madrid", "Italy:Rome", "Japan:Tokyo"]
        .iter()
        .map(|s| {
            let (a, b) = s.split_once(':').unwrap();
            Example {
                input: Input::Text(a.into()),
                output: b.into(),
            }
        })
        .collect();
    pollster::block_on(e.extract_examples(&ex, 4, 7, |_, _| {})).unwrap()
}

#[test]
fn fast_sweep_equals_naive_sweep_at_every_layer() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let e = Engine::new(&m);
    let v = some_vector(&m);
    for q in [
        Prompt::zero_shot(&png("image_a.png")),
        Prompt::zero_shot(&Input::Text("Germany".into())),
    ] {
        let fast = pollster::block_on(e.sweep(&q, &v)).unwrap();
        let naive = pollster::block_on(e.sweep_naive(&q, &v)).unwrap();
        assert_eq!(fast.len(), 4);
        for (f, n) in fast.iter().zip(&naive) {
            assert_eq!((f.layer, f.token), (n.layer, n.token));
            assert!(
                (f.prob - n.prob).abs() < 1e-5,
                "layer {}: {} vs {}",
                f.layer,
                f.prob,
                n.prob
            );
        }
        // Patching must change something: not every layer gives the unpatched answer's prob.
        let base = pollster::block_on(e.first_token(&q)).unwrap();
        assert!(
            fast.iter()
                .any(|p| (p.prob - base.prob).abs() > 1e-4 || p.token != base.token)
        );
    }
}

#[test]
fn answers_branching_from_one_prefill_equal_whole_runs() {
    use taskvec::model::{Intervention, KvCache, Operator};
    use taskvec::taskvec::Steering;
    let m = tiny_vlm_safetensors(&Device::flex());
    let e = Engine::new(&m);
    let v = some_vector(&m);
    let steer = Steering {
        op: Operator::Add,
        scale: -8.0,
        layers: Some([0, 3]),
        every_token: true,
    };
    for q in [
        Prompt::zero_shot(&png("image_a.png")),
        Prompt::zero_shot(&Input::Text("Germany".into())),
    ] {
        let refs: Vec<&[u8]> = q.images.iter().map(Vec::as_slice).collect();
        let (ids, x) = m.embed_prompt(&q.text, &refs).unwrap();
        let prefix = e.prefix(&q).unwrap();
        assert_eq!(prefix.len, ids.len());
        let mut runs = Vec::new();
        for s in [None, Some(Steering::at(2)), Some(steer.clone())] {
            let mut iv = Intervention::default();
            if let Some(s) = &s {
                iv.patches = s.patches(&v, s.layers.unwrap(), ids.len() - 1);
                iv.every_token = s.every_token;
            }
            // The whole prompt in one pass, then greedy decoding (no early stop).
            let whole = m.model.forward(x.clone(), KvCache::new(4), &iv).unwrap();
            let want = pollster::block_on(m.model.continue_streaming(
                whole.logits,
                whole.cache,
                &iv,
                6,
                &[],
                &mut |_| {},
            ))
            .unwrap();
            // Twice from the same prefix: branching must leave it as it was.
            for _ in 0..2 {
                let got = pollster::block_on(e.continuation_from(
                    &prefix,
                    s.as_ref().map(|s| (&v, s)),
                    6,
                    false,
                    &mut |_| {},
                ))
                .unwrap();
                assert_eq!(got.ids, want, "steering {s:?}");
            }
            runs.push(want);
        }
        // The steered runs must differ from the plain one, or this would test nothing.
        assert_ne!(runs[0], runs[2], "steering changed nothing");
        let a = pollster::block_on(e.first_token(&q)).unwrap();
        let b = pollster::block_on(e.first_token_from(&prefix)).unwrap();
        assert_eq!(a.token, b.token);
        assert!((a.prob - b.prob).abs() < 1e-5, "{} vs {}", a.prob, b.prob);
    }
}

fn file_for(m: &taskvec::loader::LoadedModel, v: &TaskVector) -> VectorFile {
    let rec = TaskRecord {
        name: "<img src=x onerror=alert(1)>".into(),
        spec: SpecKind::TextExamples,
        examples: vec![ExampleRecord {
            input: "France".into(),
            output: "Paris".into(),
            image: false,
        }],
        instruction: None,
        prompts: 4,
        seed: 7,
    };
    VectorFile::new(v, &m.info, rec, 2, None, "2026-11-24T00:00:00Z".into())
}

#[test]
fn json_round_trip_is_exact() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let v = some_vector(&m);
    let f = file_for(&m, &v);
    let back = VectorFile::from_json(&f.to_json()).unwrap();
    assert_eq!(back, f);
    assert_eq!(back.vector(), v, "f32 values survive JSON exactly");
    back.check_model(&m.info, false).unwrap();
    // The same weights through GGUF have another fingerprint: refused unless transfer is allowed.
    let g = tiny_vlm_gguf(&Device::flex());
    assert!(
        back.check_model(&g.info, false)
            .unwrap_err()
            .to_string()
            .contains("another model")
    );
    back.check_model(&g.info, true).unwrap();
}

#[test]
fn json_refusals_explain_themselves() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let f = file_for(&m, &some_vector(&m));
    let good: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
    let refuse = |j: String, needle: &str| {
        let e = VectorFile::from_json(&j).expect_err(needle).to_string();
        assert!(e.contains(needle), "expected {needle:?} in {e:?}");
    };
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut j = good.clone();
        f(&mut j);
        j.to_string()
    };
    refuse(String::new(), "empty");
    refuse("{not json".into(), "not valid JSON");
    refuse(
        edit(&|j| j["format"] = "other".into()),
        "not a taskvec vector file",
    );
    refuse(
        edit(&|j| j["version"] = 3.into()),
        "version 3 is not supported",
    );
    refuse(
        edit(&|j| {
            j.as_object_mut().unwrap().remove("vectors");
        }),
        "missing field `vectors`",
    );
    refuse(
        edit(&|j| j["vectors"][1][3] = serde_json::Value::Null),
        "does not follow",
    );
    refuse(f.to_json().replacen("[", "[NaN,", 1), "not valid JSON");
    refuse(
        edit(&|j| {
            j["vectors"][0]
                .as_array_mut()
                .unwrap()
                .pop()
                .map(|_| ())
                .unwrap()
        }),
        "declared hidden size",
    );
    refuse(
        edit(&|j| {
            j["vectors"].as_array_mut().unwrap().pop();
        }),
        "holds 3 vectors",
    );
    refuse(edit(&|j| j["vectors"][0][0] = 1e39.into()), "non-finite");
    refuse(
        edit(&|j| j["recommended_layer"] = 9.into()),
        "recommended layer",
    );
    // Another architecture: shapes differ from the model.
    let mut other = f.clone();
    other.model.hidden = 64;
    other.vectors = vec![vec![0.0; 64]; 4];
    assert!(
        other
            .check_model(&m.info, true)
            .unwrap_err()
            .to_string()
            .contains("cannot be applied")
    );
}

#[test]
fn similarity_per_layer_and_matrix() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let a = some_vector(&m);
    let b =
        pollster::block_on(Engine::new(&m).extract_instruction("The capital city of the country:"))
            .unwrap();
    let per = cosine_per_layer(&a, &b).unwrap();
    assert_eq!(per.len(), 4);
    assert!(per.iter().all(|c| (-1.0..=1.0).contains(c)));
    let mx = similarity_matrix(&[&a, &b, &a], None).unwrap();
    assert!((mx[0][0] - 1.0).abs() < 1e-6 && (mx[0][2] - 1.0).abs() < 1e-6);
    assert!((mx[0][1] - mx[1][0]).abs() < 1e-6);
    let ens = TaskVector::mean(&[&a, &b]).unwrap();
    assert!((ens.layers[1][0] - (a.layers[1][0] + b.layers[1][0]) / 2.0).abs() < 1e-6);
}

#[test]
fn lens_gives_a_distribution_per_layer() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let lens = pollster::block_on(Engine::new(&m).lens(
        &Prompt::zero_shot(&png("image_a.png")),
        &["Paris".into()],
        3,
    ))
    .unwrap();
    assert_eq!(lens.layers.len(), 4);
    let r = read(&fixture("tiny_vlm/ref.safetensors"));
    // The last layer's lens is the model's own next-token distribution.
    let (shape, logits) = tensor(&r, "img.logits");
    let last = taskvec::taskvec::engine::softmax(&logits[(shape[0] - 1) * shape[1]..]);
    let best = taskvec::model::argmax(&last);
    assert!((lens.layers[3].top[0].1 - last[best]).abs() < 1e-4);
}

/// The published schema and the writer agree: every key the schema requires is written, and
/// every key written is declared (the schema forbids others).
#[test]
fn schema_matches_the_writer() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let v = some_vector(&m);
    let mut file = file_for(&m, &v);
    file.evaluation = Some(taskvec::taskvec::format::EvaluationRecord {
        metric: "m".into(),
        split: "s".into(),
        seeds: vec![0, 1],
        dataset_hash: taskvec::taskvec::format::dataset_hash(&file.task.examples),
    });
    // a combination carries its derivation
    let combined = taskvec::taskvec::arith::combine(
        &[(1.0, &file), (-0.5, &file)],
        "a - b * 0.5",
        false,
        "2026-12-03T00:00:00Z".into(),
    )
    .unwrap();
    let f: serde_json::Value = serde_json::from_str(&file.to_json()).unwrap();
    assert!(f.get("intervention").is_some() && f["version"] == 2);
    let fc: serde_json::Value = serde_json::from_str(&combined.to_json()).unwrap();
    assert!(fc.get("derivation").is_some());
    // version 1 files (no intervention) still load; an unknown version is refused
    let mut v1 = f.clone();
    v1["version"] = 1.into();
    v1.as_object_mut().unwrap().remove("intervention");
    v1.as_object_mut().unwrap().remove("evaluation");
    let back = VectorFile::from_json(&v1.to_string()).unwrap();
    assert_eq!(back.vectors, file.vectors);
    assert!(back.intervention.is_none());
    let mut v3 = f.clone();
    v3["version"] = 3.into();
    let e = VectorFile::from_json(&v3.to_string())
        .unwrap_err()
        .to_string();
    assert!(e.contains("version 3 is not supported"), "{e}");
    let schema: serde_json::Value =
        serde_json::from_slice(&read(&std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schema/taskvec-vector-v2.schema.json"
        ))))
        .unwrap();
    fn check(doc: &serde_json::Value, schema: &serde_json::Value, path: &str) {
        let (Some(obj), Some(props)) = (
            doc.as_object(),
            schema.get("properties").and_then(|p| p.as_object()),
        ) else {
            return;
        };
        for req in schema
            .get("required")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
        {
            assert!(
                obj.contains_key(req.as_str().unwrap()),
                "{path}: required {req} not written"
            );
        }
        for (k, v) in obj {
            let sub = props
                .get(k)
                .unwrap_or_else(|| panic!("{path}.{k} is written but not in the schema"));
            check(v, sub, &format!("{path}.{k}"));
        }
    }
    check(&f, &schema, "$");
    check(&fc, &schema, "$");
    // every committed version-1 key is also in the v1 schema (files written before v2)
    let v1_schema: serde_json::Value =
        serde_json::from_slice(&read(&std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schema/taskvec-vector-v1.schema.json"
        ))))
        .unwrap();
    check(&v1, &v1_schema, "$v1");
}
