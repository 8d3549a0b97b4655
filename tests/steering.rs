//! Steering (add / add-normalized / replace, layer ranges, every generated token) on the tiny
//! random SmolVLM against transformers forward hooks (tests/fixtures/make_steering_ref.py), and
//! the identities: add at scale 0 is the unpatched run, replace at scale 1 is the paper's patch.

use super::common;

use burn::tensor::Device;
use common::*;
use taskvec::model::{Intervention, Operator};
use taskvec::taskvec::{Engine, Input, Prompt, Steering, TaskVector};

fn refs() -> Vec<u8> {
    read(&fixture("steering/ref.safetensors"))
}

fn prompt(which: &str) -> Prompt {
    match which {
        "img" => Prompt::zero_shot(&Input::Image {
            bytes: read(&fixture("tiny_vlm/image_a.png")),
            label: "image_a.png".into(),
        }),
        _ => Prompt::zero_shot(&Input::Text("Spain".into())),
    }
}

fn vector(r: &[u8]) -> TaskVector {
    let (shape, v) = tensor(r, "vector");
    TaskVector {
        layers: v.chunks(shape[1]).map(<[f32]>::to_vec).collect(),
    }
}

/// Greedy ids (no stop token) and the first step's logits, steered by `s` through the model's
/// intervention interface.
fn run(
    m: &taskvec::loader::LoadedModel,
    p: &Prompt,
    v: &TaskVector,
    s: Option<&Steering>,
) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
    let refs: Vec<&[u8]> = p.images.iter().map(Vec::as_slice).collect();
    let (ids, x) = m.embed_prompt(&p.text, &refs).unwrap();
    let mut iv = Intervention::default();
    if let Some(s) = s {
        iv.patches = s.patches(v, s.layers.unwrap(), ids.len() - 1);
        iv.every_token = s.every_token;
    }
    let first = m
        .model
        .forward(
            x.clone(),
            taskvec::model::KvCache::new(m.model.num_layers()),
            &iv,
        )
        .unwrap();
    let logits = pollster::block_on(taskvec::model::read_f32(first.logits)).unwrap();
    let new = pollster::block_on(m.model.generate(x, &iv, 8, &[])).unwrap();
    (ids, new, logits)
}

#[test]
fn steering_matches_the_transformers_hooks() {
    let r = refs();
    let st = safetensors::SafeTensors::read_metadata(&r).unwrap().1;
    let meta = st.metadata().clone().unwrap();
    let v = vector(&r);
    for m in [
        tiny_vlm_safetensors(&Device::flex()),
        tiny_vlm_gguf(&Device::flex()),
    ] {
        let mut cases = 0;
        for (name, spec) in meta.iter().filter(|(k, _)| *k != "generator") {
            let spec: serde_json::Value = serde_json::from_str(spec).unwrap();
            let which = spec["prompt"].as_str().unwrap();
            let layers = spec["layers"].as_array().unwrap();
            let s = Steering {
                op: spec["op"].as_str().unwrap().parse::<Operator>().unwrap(),
                scale: spec["scale"].as_f64().unwrap() as f32,
                layers: Some([
                    layers[0].as_u64().unwrap() as usize,
                    layers[1].as_u64().unwrap() as usize,
                ]),
                every_token: spec["every_token"].as_bool().unwrap(),
            };
            let (ids, new, logits) = run(&m, &prompt(which), &v, Some(&s));
            assert_eq!(
                ids,
                common::ids(&r, &format!("{which}.input_ids")),
                "{name} prompt"
            );
            assert_eq!(new, common::ids(&r, &format!("{name}.ids")), "{name} ids");
            let err = rel_err(&logits, &tensor(&r, &format!("{name}.first_logits")).1);
            assert!(err < 1e-4, "{name} first logits: {err:e}");
            assert_ne!(
                new,
                common::ids(&r, &format!("{which}.plain_ids")),
                "{name} steers"
            );
            cases += 1;
        }
        assert_eq!(cases, 5);
    }
}

#[test]
fn add_at_scale_zero_is_the_unpatched_run_and_replace_is_the_paper_patch() {
    let m = tiny_vlm_gguf(&Device::flex());
    let r = refs();
    let v = vector(&r);
    let e = Engine::new(&m);
    for which in ["img", "txt"] {
        let p = prompt(which);
        let (_, plain, plain_logits) = run(&m, &p, &v, None);
        assert_eq!(plain, common::ids(&r, &format!("{which}.plain_ids")));
        for op in [Operator::Add, Operator::AddNormalized] {
            let zero = Steering {
                op,
                scale: 0.0,
                layers: Some([0, 3]),
                every_token: true,
            };
            let (_, new, logits) = run(&m, &p, &v, Some(&zero));
            assert_eq!(new, plain, "{which} {op:?}");
            assert_eq!(logits, plain_logits, "{which} {op:?}: bit-identical");
        }
        // replace × 1 at one layer through the engine = today's patched answer
        let a = pollster::block_on(e.answer(&p, Some((&v, 2)), 6)).unwrap();
        let b = pollster::block_on(e.answer_steered(&p, Some((&v, &Steering::at(2))), 6)).unwrap();
        assert_eq!((a.ids, a.top), (b.ids, b.top));
    }
}

#[test]
fn bad_steering_is_refused_clearly() {
    let m = tiny_vlm_gguf(&Device::flex());
    let v = vector(&refs());
    let e = Engine::new(&m);
    let p = prompt("txt");
    let bad = |s: Steering| {
        pollster::block_on(e.answer_steered(&p, Some((&v, &s)), 2))
            .unwrap_err()
            .to_string()
    };
    let nan = bad(Steering {
        scale: f32::NAN,
        ..Steering::at(1)
    });
    assert!(nan.contains("finite"), "{nan}");
    let range = bad(Steering {
        layers: Some([2, 4]),
        ..Default::default()
    });
    assert!(range.contains("out of range"), "{range}");
    let zeros = TaskVector {
        layers: vec![vec![0.0; 48]; 4],
    };
    let s = Steering {
        op: Operator::AddNormalized,
        ..Steering::at(1)
    };
    let none = pollster::block_on(e.answer_steered(&p, Some((&zeros, &s)), 2))
        .unwrap_err()
        .to_string();
    assert!(none.contains("non-zero norm"), "{none}");
    assert!(
        "multiply"
            .parse::<Operator>()
            .unwrap_err()
            .to_string()
            .contains("unknown operator")
    );
}
