//! The one table between Hugging Face tensor names (relative to the text model, the vision
//! model or the connector, as [`super::TensorSource`] takes them) and llama.cpp's GGUF names
//! (`blk.N.*` in a text GGUF, `v.blk.N.*` / `mm.*` in an mmproj), read in both directions.

use super::Part;

/// Whole-model tensors: part, Hugging Face name, GGUF name.
const FIXED: [(Part, &str, &str); 9] = [
    (Part::Text, "embed_tokens.weight", "token_embd.weight"),
    (Part::Text, "norm.weight", "output_norm.weight"),
    (Part::Text, "lm_head.weight", "output.weight"),
    (
        Part::Vision,
        "embeddings.patch_embedding.weight",
        "v.patch_embd.weight",
    ),
    (
        Part::Vision,
        "embeddings.patch_embedding.bias",
        "v.patch_embd.bias",
    ),
    (
        Part::Vision,
        "embeddings.position_embedding.weight",
        "v.position_embd.weight",
    ),
    (Part::Vision, "post_layernorm.weight", "v.post_ln.weight"),
    (Part::Vision, "post_layernorm.bias", "v.post_ln.bias"),
    (
        Part::Connector,
        "modality_projection.proj.weight",
        "mm.model.fc.weight",
    ),
];

/// Per-layer modules of one part: the layer prefixes (`{prefix}{N}.`), the parameter kinds
/// the part's GGUF files hold, and each module's Hugging Face and GGUF names.
struct Layers {
    part: Part,
    hf_prefix: &'static str,
    gguf_prefix: &'static str,
    kinds: &'static [&'static str],
    modules: &'static [(&'static str, &'static str)],
}

const LAYERS: [Layers; 2] = [
    Layers {
        part: Part::Text,
        hf_prefix: "layers.",
        gguf_prefix: "blk.",
        kinds: &["weight"],
        modules: &[
            ("input_layernorm", "attn_norm"),
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
            ("post_attention_layernorm", "ffn_norm"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"),
            ("mlp.down_proj", "ffn_down"),
        ],
    },
    Layers {
        part: Part::Vision,
        hf_prefix: "encoder.layers.",
        gguf_prefix: "v.blk.",
        kinds: &["weight", "bias"],
        modules: &[
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.out_proj", "attn_out"),
            ("layer_norm1", "ln1"),
            ("layer_norm2", "ln2"),
            ("mlp.fc1", "ffn_up"),
            ("mlp.fc2", "ffn_down"),
        ],
    },
];

/// `name` split as `{prefix}{N}.{module}.{kind}` for one of `kinds`: (N, module, kind).
fn split_layer<'a>(
    name: &'a str,
    prefix: &str,
    kinds: &[&str],
) -> Option<(&'a str, &'a str, &'a str)> {
    let (idx, tail) = name.strip_prefix(prefix)?.split_once('.')?;
    let (module, kind) = tail.rsplit_once('.')?;
    (idx.parse::<usize>().is_ok() && kinds.contains(&kind)).then_some((idx, module, kind))
}

/// The GGUF name of the Hugging Face tensor `name` of `part`, when llama.cpp stores it.
pub fn to_gguf(part: Part, name: &str) -> Option<String> {
    if let Some((_, _, g)) = FIXED.iter().find(|(p, h, _)| *p == part && *h == name) {
        return Some(g.to_string());
    }
    let l = LAYERS.iter().find(|l| l.part == part)?;
    let (idx, module, kind) = split_layer(name, l.hf_prefix, l.kinds)?;
    let (_, g) = l.modules.iter().find(|(h, _)| *h == module)?;
    Some(format!("{}{idx}.{g}.{kind}", l.gguf_prefix))
}

/// The part and Hugging Face name of the GGUF tensor `name`, when the table knows it.
pub fn from_gguf(name: &str) -> Option<(Part, String)> {
    if let Some((p, h, _)) = FIXED.iter().find(|(_, _, g)| *g == name) {
        return Some((*p, h.to_string()));
    }
    LAYERS.iter().find_map(|l| {
        let (idx, module, kind) = split_layer(name, l.gguf_prefix, l.kinds)?;
        let (h, _) = l.modules.iter().find(|(_, g)| *g == module)?;
        Some((l.part, format!("{}{idx}.{h}.{kind}", l.hf_prefix)))
    })
}

/// Whether a Hugging Face tensor is the token embedding or the LM head: 4-bit quantization
/// keeps them in Q8_0, as llama.cpp does.
pub fn is_embedding_or_head(part: Part, name: &str) -> bool {
    part == Part::Text && matches!(name, "embed_tokens.weight" | "lm_head.weight")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        assert_eq!(
            to_gguf(Part::Text, "layers.3.mlp.down_proj.weight").unwrap(),
            "blk.3.ffn_down.weight"
        );
        assert_eq!(
            to_gguf(Part::Vision, "encoder.layers.1.self_attn.out_proj.bias").unwrap(),
            "v.blk.1.attn_out.bias"
        );
        assert!(to_gguf(Part::Text, "layers.x").is_none());
        assert!(to_gguf(Part::Text, "layers.0.self_attn.q_proj.bias").is_none());
        assert!(to_gguf(Part::Vision, "lm_head.weight").is_none());
        assert_eq!(
            from_gguf("v.blk.1.attn_out.bias").unwrap(),
            (
                Part::Vision,
                "encoder.layers.1.self_attn.out_proj.bias".into()
            )
        );
        assert_eq!(
            from_gguf("output.weight").unwrap(),
            (Part::Text, "lm_head.weight".into())
        );
        assert!(from_gguf("blk.0.attn_q.bias").is_none());
        // Every entry of the table goes there and back.
        let mut names: Vec<(Part, String)> =
            FIXED.iter().map(|(p, h, _)| (*p, h.to_string())).collect();
        for l in &LAYERS {
            for (h, _) in l.modules {
                for k in l.kinds {
                    names.push((l.part, format!("{}7.{h}.{k}", l.hf_prefix)));
                }
            }
        }
        for (p, h) in names {
            let g = to_gguf(p, &h).unwrap();
            assert_eq!(from_gguf(&g), Some((p, h)), "{g}");
        }
    }
}
