//! Vector files for other tools: safetensors (tensor `vectors`, f32 `[layers, hidden]`, with the
//! whole vector file in the metadata so that importing gives it back exactly) and llama.cpp's
//! control-vector GGUF (architecture `controlvector`, one f32 tensor `direction.{n}` per layer).
//!
//! llama.cpp numbers control-vector layers from 1 and adds `direction.{n}` to the output of its
//! decoder layer `n` (0-based, the layer loop's `il`) at every position; the output of layer 0
//! has no slot. taskvec's row `l` is the output of decoder layer `l`, so row `l` is written as
//! `direction.{l}` and row 0 cannot be exported.

use super::format::VectorFile;
use crate::error::{Error, Result};
use crate::named::Named;
use crate::weights::requantize::put_str;

/// Metadata key holding the vector file (with its `vectors` emptied) in a safetensors export.
pub const SAFETENSORS_KEY: &str = "taskvec_vector_file";

fn refuse<T>(m: impl Into<String>) -> Result<T> {
    Err(Error::TaskVector(m.into()))
}

/// The vector file as safetensors: tensor `vectors` f32 `[layers, hidden]` (little-endian) and
/// metadata (`format`, `model`, `layers`, `hidden`, `task`, `recommended_layer` and the file).
/// The header's keys are sorted, so the same file always gives the same bytes (the
/// `safetensors` crate's writer orders metadata by a randomly seeded hash map).
pub fn to_safetensors(f: &VectorFile) -> Result<Vec<u8>> {
    f.validate()?;
    let (l, d) = (f.model.layers, f.model.hidden);
    let data: Vec<u8> = f
        .vectors
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let mut head = f.clone();
    head.vectors.clear();
    let header = serde_json::json!({
        "__metadata__": {
            "format": "taskvec-vectors",
            "model": f.model.id,
            "layers": l.to_string(),
            "hidden": d.to_string(),
            "task": f.task.name,
            "recommended_layer": f.recommended_layer.to_string(),
            SAFETENSORS_KEY: head.to_json(),
        },
        "vectors": { "dtype": "F32", "shape": [l, d], "data_offsets": [0, data.len()] },
    });
    let mut text = header.to_string().into_bytes();
    // The format pads the header with spaces so that the data starts 8-byte aligned.
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + text.len() + data.len());
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text);
    out.extend(data);
    Ok(out)
}

/// Reads a [`to_safetensors`] file back into the vector file it came from (validated as any
/// vector file is: shapes, finite values).
pub fn from_safetensors(bytes: &[u8]) -> Result<VectorFile> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::TaskVector(format!("not a safetensors file: {e}")))?;
    let Some(text) = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(SAFETENSORS_KEY))
    else {
        return refuse(format!(
            "this safetensors file has no '{SAFETENSORS_KEY}' metadata: it was not exported by taskvec"
        ));
    };
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| Error::TaskVector(format!("not a safetensors file: {e}")))?;
    let t = st
        .tensor("vectors")
        .map_err(|_| Error::TaskVector("the file has no tensor 'vectors'".into()))?;
    if t.dtype() != safetensors::Dtype::F32 || t.shape().len() != 2 {
        return refuse(format!(
            "tensor 'vectors' is {:?} {:?}; expected F32 [layers, hidden]",
            t.dtype(),
            t.shape()
        ));
    }
    let mut raw: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::TaskVector(format!("the embedded vector file is not JSON: {e}")))?;
    let d = t.shape()[1].max(1);
    let values: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if values.iter().any(|x| !x.is_finite()) {
        return refuse("tensor 'vectors' contains a non-finite value (NaN or infinity)");
    }
    let rows: Vec<Vec<f32>> = values.chunks(d).map(<[f32]>::to_vec).collect();
    raw["vectors"] = serde_json::to_value(rows).expect("finite floats serialize");
    VectorFile::from_json(&raw.to_string())
}

/// llama.cpp's control-vector GGUF of the rows `layers` (each ≥ 1, see the module doc), each
/// multiplied by `scale`.
pub fn to_control_vector(f: &VectorFile, layers: &[usize], scale: f32) -> Result<Vec<u8>> {
    f.validate()?;
    if layers.is_empty() {
        return refuse("no layers to export");
    }
    if !scale.is_finite() {
        return refuse(format!("the scale {scale} is not a finite number"));
    }
    if let Some(&l) = layers.iter().find(|&&l| l == 0 || l >= f.model.layers) {
        return refuse(if l == 0 {
            "layer 0 cannot be exported as a control vector: llama.cpp has no slot for the output of its first layer (its directions start at 1)".to_string()
        } else {
            format!("layer {l} is outside 1..{}", f.model.layers)
        });
    }
    const ALIGN: usize = 32;
    let mut out = Vec::new();
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend((layers.len() as u64).to_le_bytes());
    out.extend(3u64.to_le_bytes());
    put_str(&mut out, "general.architecture");
    out.extend(8u32.to_le_bytes()); // string
    put_str(&mut out, "controlvector");
    put_str(&mut out, "controlvector.model_hint");
    out.extend(8u32.to_le_bytes());
    put_str(&mut out, &f.model.id);
    put_str(&mut out, "controlvector.layer_count");
    out.extend(4u32.to_le_bytes()); // u32
    out.extend((layers.len() as u32).to_le_bytes());
    let mut data = Vec::new();
    for &l in layers {
        data.resize(data.len().div_ceil(ALIGN) * ALIGN, 0);
        put_str(&mut out, &format!("direction.{l}"));
        out.extend(1u32.to_le_bytes());
        out.extend((f.model.hidden as u64).to_le_bytes());
        out.extend(0u32.to_le_bytes()); // F32
        out.extend((data.len() as u64).to_le_bytes());
        data.extend(f.vectors[l].iter().flat_map(|x| (x * scale).to_le_bytes()));
    }
    out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
    out.extend(data);
    Ok(out)
}

/// The layers a `--layers` spec names for `f`: `L`, `A-B` or `all` (1..layers, the rows
/// llama.cpp has slots for); none: the file's recommended layer.
pub fn parse_layers(spec: Option<&str>, f: &VectorFile) -> Result<Vec<usize>> {
    let bad = |s: &str| Error::TaskVector(format!("layers {s:?}: expected L, A-B or all"));
    let num = |s: &str, all: &str| s.trim().parse::<usize>().map_err(|_| bad(all));
    Ok(match spec.map(str::trim) {
        None | Some("") => vec![f.recommended_layer],
        Some("all") => (1..f.model.layers).collect(),
        Some(s) => match s.split_once('-') {
            Some((a, b)) => (num(a, s)?..=num(b, s)?).collect(),
            None => vec![num(s, s)?],
        },
    })
}

/// A format [`export`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Tensor `vectors` f32 `[layers, hidden]` with the vector file in the metadata.
    Safetensors,
    /// llama.cpp's control-vector GGUF.
    ControlVector,
}

impl Named for ExportFormat {
    const NAMED: &'static [(&'static str, ExportFormat)] = &[
        ("safetensors", ExportFormat::Safetensors),
        ("control-vector", ExportFormat::ControlVector),
    ];
}

impl std::str::FromStr for ExportFormat {
    type Err = Error;

    /// Parses a name of [`Named::NAMED`].
    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s).ok_or_else(|| {
            Error::TaskVector(format!(
                "unknown export format {s:?}: use safetensors or control-vector"
            ))
        })
    }
}

/// The bytes of `f` in `format` (`layers` and `scale` apply to the control vector): what
/// `taskvec export` writes and the page downloads.
pub fn export(
    f: &VectorFile,
    format: ExportFormat,
    layers: Option<&str>,
    scale: f32,
) -> Result<Vec<u8>> {
    match format {
        ExportFormat::Safetensors => to_safetensors(f),
        ExportFormat::ControlVector => to_control_vector(f, &parse_layers(layers, f)?, scale),
    }
}
