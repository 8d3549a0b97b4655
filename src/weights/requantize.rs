//! `taskvec quantize`: rewrites a GGUF with its matrices in Q8_0, Q4_0 or Q4_1 (llama.cpp's
//! block formats, so llama.cpp and taskvec both load the result). Metadata is copied entry by
//! entry; `general.file_type` is updated.

use super::gguf::GgufHeader;
use super::quant::{self, GgmlType};
use crate::error::{Error, Result};

/// What a requantization did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequantizeReport {
    /// Tensors rewritten in the new type.
    pub quantized: usize,
    /// Tensors copied unchanged (vectors, convolutions, rows that do not split into blocks).
    pub kept: usize,
    /// Size of the input file.
    pub bytes_in: usize,
    /// Size of the output file.
    pub bytes_out: usize,
}

/// llama.cpp's `general.file_type` for a whole-file quantization type.
fn file_type(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        _ => 7, // Q8_0
    }
}

/// The type a tensor is stored in after requantizing to `ty`: matrices (2-D, rows a multiple of
/// 32, not position embeddings) take `ty` — the token embedding / output head stay 8-bit when
/// `ty` is 4-bit, as llama.cpp does — everything else keeps its type.
pub fn target_type(name: &str, dims: &[usize], stored: GgmlType, ty: GgmlType) -> GgmlType {
    let matrix = dims.len() == 2
        && dims[0].is_multiple_of(32)
        && name.ends_with(".weight")
        && !name.contains("position_embd");
    if !matrix {
        return stored;
    }
    let head = super::names::from_gguf(name)
        .is_some_and(|(p, n)| super::names::is_embedding_or_head(p, &n));
    if head && ty != GgmlType::Q8_0 {
        GgmlType::Q8_0
    } else {
        ty
    }
}

/// Appends a GGUF string (u64 length, then the bytes).
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// Rewrites the GGUF file `bytes` with its matrices quantized to `ty` (Q8_0, Q4_0 or Q4_1).
pub fn requantize(bytes: &[u8], ty: GgmlType) -> Result<(Vec<u8>, RequantizeReport)> {
    if !matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1) {
        return Err(Error::load(format!(
            "cannot quantize to {}: use q8_0, q4_0 or q4_1",
            ty.name()
        )));
    }
    let h = GgufHeader::parse(bytes)?;
    let align = h
        .get("general.alignment")
        .and_then(|v| v.as_u64())
        .unwrap_or(32) as usize;
    let mut out = Vec::with_capacity(bytes.len());
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend((h.order.len() as u64).to_le_bytes());
    let has_ft = h.metadata.contains_key("general.file_type");
    out.extend(((h.metadata_spans.len() + usize::from(!has_ft)) as u64).to_le_bytes());
    let put_file_type = |out: &mut Vec<u8>| {
        put_str(out, "general.file_type");
        out.extend(4u32.to_le_bytes()); // u32
        out.extend(file_type(ty).to_le_bytes());
    };
    for (key, span) in &h.metadata_spans {
        if key == "general.file_type" {
            put_file_type(&mut out);
        } else {
            out.extend(&bytes[span.clone()]);
        }
    }
    if !has_ft {
        put_file_type(&mut out);
    }
    // New tensor data, then the directory that points into it.
    let mut data: Vec<u8> = Vec::new();
    let mut report = RequantizeReport {
        quantized: 0,
        kept: 0,
        bytes_in: bytes.len(),
        bytes_out: 0,
    };
    let mut directory = Vec::new();
    for name in &h.order {
        let info = &h.tensors[name];
        let raw = &bytes[info.offset..info.offset + info.size];
        let target = target_type(name, &info.dims, info.ty, ty);
        let blob = if target == info.ty {
            report.kept += 1;
            raw.to_vec()
        } else {
            report.quantized += 1;
            quant::quantize(target, &quant::dequantize(info.ty, raw))?
        };
        data.resize(data.len().div_ceil(align) * align, 0);
        put_str(&mut directory, name);
        directory.extend((info.dims.len() as u32).to_le_bytes());
        for &d in &info.dims {
            directory.extend((d as u64).to_le_bytes());
        }
        directory.extend(target.id().to_le_bytes());
        directory.extend((data.len() as u64).to_le_bytes());
        data.extend(blob);
    }
    out.extend(directory);
    out.resize(out.len().div_ceil(align) * align, 0);
    out.extend(data);
    report.bytes_out = out.len();
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrices_take_the_type_and_the_rest_is_kept() {
        let q4 = GgmlType::Q4_0;
        assert_eq!(
            target_type("blk.0.attn_q.weight", &[64, 64], GgmlType::F32, q4),
            q4
        );
        assert_eq!(
            target_type("token_embd.weight", &[64, 100], GgmlType::F16, q4),
            GgmlType::Q8_0
        );
        assert_eq!(
            target_type("blk.0.attn_norm.weight", &[64], GgmlType::F32, q4),
            GgmlType::F32
        );
        assert_eq!(
            target_type("v.patch_embd.weight", &[16, 16, 3, 32], GgmlType::F16, q4),
            GgmlType::F16
        );
        assert_eq!(
            target_type("blk.0.ffn_down.weight", &[48, 96], GgmlType::F32, q4),
            GgmlType::F32
        );
    }
}
