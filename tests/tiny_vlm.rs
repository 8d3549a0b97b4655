//! The tiny random SmolVLM (Idefics3) against transformers, through safetensors and through the
//! llama.cpp-style GGUF pair: every decoder layer, the vision encoder, the connector, the
//! logits, a patched forward, greedy generation, tokenizer ids and image preprocessing.
//! Fixtures: `tests/fixtures/make_tiny_vlm.py`.

use super::common;

use burn::tensor::Device;
use common::*;
use taskvec::loader::LoadedModel;
use taskvec::model::{Intervention, KvCache, Patch, read_f32};

/// Tolerance of the f32 path against transformers (error relative to each tensor's max |x|); measured ~2e-6.
const TOL: f64 = 2e-5;

fn refs() -> Vec<u8> {
    read(&fixture("tiny_vlm/ref.safetensors"))
}

/// Runs the decoder on a fixture case's ids and pixels; returns (hidden, logits).
fn run_case(
    m: &LoadedModel,
    r: &[u8],
    case: &str,
    pixels: bool,
    patches: Vec<Patch>,
) -> (Vec<f32>, Vec<f32>) {
    let ids = ids(r, &format!("{case}.input_ids"));
    let px = if pixels {
        vec![tensor(r, &format!("{case}.pixel_values")).1]
    } else {
        vec![]
    };
    let x = m.model.embed(&ids, &px).unwrap();
    let iv = Intervention {
        capture: (0..ids.len()).collect(),
        patches,
        all_logits: true,
        every_token: false,
    };
    let o = m
        .model
        .forward(x, KvCache::new(m.model.num_layers()), &iv)
        .unwrap();
    (
        pollster::block_on(read_f32(o.hidden.unwrap())).unwrap(),
        pollster::block_on(read_f32(o.logits)).unwrap(),
    )
}

fn check_case(
    m: &LoadedModel,
    r: &[u8],
    case: &str,
    ref_case: &str,
    pixels: bool,
    patches: Vec<Patch>,
) {
    let (hidden, logits) = run_case(m, r, case, pixels, patches);
    let (shape, want) = tensor(r, &format!("{ref_case}.hidden"));
    let per = shape[1] * shape[2];
    assert_eq!(hidden.len(), want.len(), "{ref_case}: hidden shape");
    let mut worst = 0f64;
    for l in 0..shape[0] {
        let e = rel_err(
            &hidden[l * per..(l + 1) * per],
            &want[l * per..(l + 1) * per],
        );
        worst = worst.max(e);
        assert!(e < TOL, "{ref_case}: hidden state {l} relative error {e:e}");
    }
    let e = rel_err(&logits, &tensor(r, &format!("{ref_case}.logits")).1);
    eprintln!("{ref_case}: worst layer relative error {worst:.2e}, logits {e:.2e}");
    assert!(e < TOL, "{ref_case}: logits relative error {e:e}");
}

#[test]
fn safetensors_every_layer_and_logits_match() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let r = refs();
    check_case(&m, &r, "img", "img", true, vec![]);
    check_case(&m, &r, "img_b", "img_b", true, vec![]);
    check_case(&m, &r, "txt", "txt", false, vec![]);
}

#[test]
fn gguf_pair_every_layer_and_logits_match() {
    let m = tiny_vlm_gguf(&Device::flex());
    let r = refs();
    check_case(&m, &r, "img", "img", true, vec![]);
    check_case(&m, &r, "img_b", "img_b", true, vec![]);
    check_case(&m, &r, "txt", "txt", false, vec![]);
}

#[test]
fn vision_encoder_and_connector_match() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let r = refs();
    let px = tensor(&r, "img.pixel_values").1;
    let v = m.model.vision.as_ref().unwrap();
    let states = v.encode(&px).unwrap();
    let (shape, want) = tensor(&r, "img.vision_hidden");
    let per = shape[1] * shape[2];
    assert_eq!(
        states.len(),
        shape[0] + 1,
        "embeddings, each layer, post-layernorm"
    );
    let got: Vec<Vec<f32>> = states
        .into_iter()
        .map(|s| pollster::block_on(read_f32(s)).unwrap())
        .collect();
    for l in 0..shape[0] - 1 {
        let e = rel_err(&got[l], &want[l * per..(l + 1) * per]);
        assert!(e < TOL, "vision state {l}: {e:e}");
    }
    let e = rel_err(got.last().unwrap(), &want[(shape[0] - 1) * per..]);
    assert!(e < TOL, "post-layernorm: {e:e}");
    let e = rel_err(&got[shape[0] - 1], &tensor(&r, "img.vision_last_raw").1);
    assert!(e < TOL, "last raw encoder layer: {e:e}");
    let feats = pollster::block_on(read_f32(v.features(&px).unwrap())).unwrap();
    let e = rel_err(&feats, &tensor(&r, "img.image_features").1);
    eprintln!("connector output relative error {e:.2e}");
    assert!(e < TOL, "connector output: {e:e}");
}

#[test]
fn patched_forward_matches_a_transformers_hook() {
    let r = refs();
    let layer = tensor(&r, "patch.layer").1[0] as usize;
    let vector = tensor(&r, "patch.vector").1;
    let n = ids(&r, "img.input_ids").len();
    for m in [
        tiny_vlm_safetensors(&Device::flex()),
        tiny_vlm_gguf(&Device::flex()),
    ] {
        let p = Patch::replace(layer, n - 1, vector.clone());
        check_case(&m, &r, "img", "patch", true, vec![p]);
    }
}

#[test]
fn greedy_generation_matches() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let r = refs();
    for (case, g, px) in [("img", "gen", true), ("txt", "gen_txt", false)] {
        let ids = ids(&r, &format!("{case}.input_ids"));
        let pixels = if px {
            vec![tensor(&r, &format!("{case}.pixel_values")).1]
        } else {
            vec![]
        };
        let want = common::ids(&r, &format!("{g}.ids"));
        let x = m.model.embed(&ids, &pixels).unwrap();
        let got =
            pollster::block_on(
                m.model
                    .generate(x, &Intervention::default(), want.len(), &[]),
            )
            .unwrap();
        assert_eq!(got, want, "{g}");
    }
}

#[test]
fn prompt_tokens_match_the_processor() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let r = refs();
    let img = read(&fixture("tiny_vlm/image_a.png"));
    let (ids, px) = m.prompt("Q:<image>\nA:", &[&img]).unwrap();
    assert_eq!(ids, common::ids(&r, "img.input_ids"));
    assert_eq!(px.len(), 1);
    let (ids, _) = m.prompt("Q:France\nA:Paris\n\nQ:Spain\nA:", &[]).unwrap();
    assert_eq!(ids, common::ids(&r, "txt.input_ids"));
    // The GGUF route builds its tokenizer from GGUF metadata: same ids.
    let g = tiny_vlm_gguf(&Device::flex());
    assert_eq!(
        g.prompt("Q:<image>\nA:", &[&img]).unwrap().0,
        common::ids(&r, "img.input_ids")
    );
    assert_eq!(
        g.prompt("Q:France\nA:Paris\n\nQ:Spain\nA:", &[]).unwrap().0,
        common::ids(&r, "txt.input_ids")
    );
}

#[test]
fn image_preprocessing_is_close_to_the_processor() {
    let m = tiny_vlm_safetensors(&Device::flex());
    let r = refs();
    let v = m.model.config.vision.clone().unwrap();
    for (case, file) in [("img", "image_a.png"), ("img_b", "image_b.jpg")] {
        let bytes = read(&fixture(&format!("tiny_vlm/{file}")));
        let got = taskvec::preprocess::load_image(&bytes, &v, m.longest_edge).unwrap();
        let want = tensor(&r, &format!("{case}.pixel_values")).1;
        let max = got
            .iter()
            .zip(&want)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        let mean = got
            .iter()
            .zip(&want)
            .map(|(x, y)| (x - y).abs())
            .sum::<f32>()
            / want.len() as f32;
        eprintln!(
            "{case}: pixel max abs diff {max:.4}, mean {mean:.5} (in normalized units, 1/255 = 0.0078)"
        );
        assert!(
            max == 0.0,
            "{case}: preprocessing differs from the processor (max {max}, mean {mean})"
        );
    }
}

#[test]
fn decode_and_resize_are_bit_exact_with_pillow() {
    let r = refs();
    for (case, file) in [("img", "image_a.png"), ("img_b", "image_b.jpg")] {
        let img =
            taskvec::preprocess::decode(&read(&fixture(&format!("tiny_vlm/{file}")))).unwrap();
        let u8s = |name: &str| -> Vec<u8> {
            let st = safetensors::SafeTensors::deserialize(&r).unwrap();
            st.tensor(&format!("{case}.{name}"))
                .unwrap()
                .data()
                .to_vec()
        };
        let decoded = u8s("decoded_u8");
        let diff = img
            .as_raw()
            .iter()
            .zip(&decoded)
            .filter(|(a, b)| a != b)
            .count();
        eprintln!("{case}: {diff} decoded bytes differ from PIL");
        // Start from PIL's decode so the resize is tested on its own.
        let src = image::RgbImage::from_raw(img.width(), img.height(), decoded).unwrap();
        let (w, h) = taskvec::preprocess::longest_edge_size(src.width(), src.height(), 64);
        let r1 = taskvec::preprocess::resize_lanczos(&src, w, h);
        assert_eq!(
            r1.as_raw(),
            &u8s("resized1_u8"),
            "{case}: longest-edge resize"
        );
        let r2 = taskvec::preprocess::resize_lanczos(&r1, 64, 64);
        assert_eq!(r2.as_raw(), &u8s("resized_u8"), "{case}: square resize");
        // PNG and JPEG (libjpeg-turbo's decoder, as Pillow's) both decode exactly.
        assert_eq!(diff, 0, "{case}: decoded bytes differ from PIL");
    }
}
