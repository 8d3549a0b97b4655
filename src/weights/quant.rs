//! GGML storage types and their dequantization to f32 (reference-exact: the same arithmetic as
//! llama.cpp's `dequantize_row_*`).

use half::{bf16, f16};

/// A GGML tensor storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    BF16,
    /// 4-bit, block of 32, scale only.
    Q4_0,
    /// 4-bit, block of 32, scale and minimum.
    Q4_1,
    /// 5-bit, block of 32, scale only.
    Q5_0,
    /// 5-bit, block of 32, scale and minimum.
    Q5_1,
    /// 8-bit, block of 32, scale only.
    Q8_0,
}

impl GgmlType {
    /// Maps the GGML type id to a supported type, or says which type is unsupported.
    pub fn from_id(id: u32) -> Result<Self, String> {
        Ok(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            30 => GgmlType::BF16,
            10..=23 => {
                return Err(format!(
                    "GGML type {id} (a K-quant or IQ type) is not supported; use F32/F16/BF16/Q8_0/Q5_0/Q5_1/Q4_0/Q4_1 (e.g. `taskvec quantize`)"
                ));
            }
            other => return Err(format!("unknown GGML type {other}")),
        })
    }

    /// Elements per block.
    pub fn block_elems(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            _ => 32,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
        }
    }

    /// Short lower-case name (`q4_1`, `f16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::BF16 => "bf16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
        }
    }
}

fn h(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Dequantizes `data` (whole blocks of type `ty`) into f32 values appended to `out`.
pub fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut Vec<f32>) {
    let bb = ty.block_bytes();
    debug_assert_eq!(data.len() % bb, 0);
    out.reserve(data.len() / bb * ty.block_elems());
    for b in data.chunks_exact(bb) {
        match ty {
            GgmlType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            GgmlType::F16 => out.push(h(b)),
            GgmlType::BF16 => out.push(bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            GgmlType::Q8_0 => {
                let d = h(b);
                out.extend(b[2..34].iter().map(|&q| q as i8 as f32 * d));
            }
            GgmlType::Q4_0 => {
                let d = h(b);
                let qs = &b[2..18];
                out.extend(qs.iter().map(|&q| ((q & 0xF) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
            }
            GgmlType::Q4_1 => {
                let (d, m) = (h(b), h(&b[2..]));
                let qs = &b[4..20];
                out.extend(qs.iter().map(|&q| (q & 0xF) as f32 * d + m));
                out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
            }
            GgmlType::Q5_0 | GgmlType::Q5_1 => {
                let (d, m, rest) = if ty == GgmlType::Q5_0 {
                    (h(b), None, &b[2..])
                } else {
                    (h(b), Some(h(&b[2..])), &b[4..])
                };
                let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let qs = &rest[4..20];
                let val = |q: u32| match m {
                    None => (q as i32 - 16) as f32 * d,
                    Some(m) => q as f32 * d + m,
                };
                let lo: Vec<f32> = (0..16)
                    .map(|j| val((qs[j] & 0xF) as u32 | (((qh >> j) << 4) & 0x10)))
                    .collect();
                out.extend(lo);
                out.extend((0..16).map(|j| val((qs[j] >> 4) as u32 | ((qh >> (j + 12)) & 0x10))));
            }
        }
    }
}

/// Dequantizes `data` into a new vector.
pub fn dequantize(ty: GgmlType, data: &[u8]) -> Vec<f32> {
    let mut v = Vec::new();
    dequantize_into(ty, data, &mut v);
    v
}
