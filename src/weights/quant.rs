//! GGML storage types and their dequantization to f32 (reference-exact: the same arithmetic as
//! llama.cpp's `dequantize_row_*`). The 32-value block formats the kernels compute with are
//! defined in [`super::blocks`]; this file adds the read-only ones (Q5_x, K-quants).

use half::bf16;

use super::blocks;

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
    /// K-quant 2-bit, super-block of 256.
    Q2K,
    /// K-quant 3-bit.
    Q3K,
    /// K-quant 4-bit.
    Q4K,
    /// K-quant 5-bit.
    Q5K,
    /// K-quant 6-bit.
    Q6K,
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
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            15..=29 => {
                return Err(format!(
                    "GGML type {id} (Q8_K or an IQ type) is not supported; use F32/F16/BF16/Q8_0/Q5_x/Q4_x or Q2_K..Q6_K"
                ));
            }
            other => return Err(format!("unknown GGML type {other}")),
        })
    }

    /// The GGML type id stored in GGUF tensor infos.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::BF16 => 30,
        }
    }

    /// Values per block.
    pub fn block_elems(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => 256,
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
            GgmlType::Q2K => 84,
            GgmlType::Q3K => 110,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
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
            GgmlType::Q2K => "q2_k",
            GgmlType::Q3K => "q3_k",
            GgmlType::Q4K => "q4_k",
            GgmlType::Q5K => "q5_k",
            GgmlType::Q6K => "q6_k",
        }
    }
}

fn h(b: &[u8]) -> f32 {
    blocks::f16_to_f32(u16::from_le_bytes([b[0], b[1]]))
}

/// Dequantizes `data` (whole blocks of type `ty`) into f32 values appended to `out`.
pub fn dequantize_into(ty: GgmlType, data: &[u8], out: &mut Vec<f32>) {
    let bb = ty.block_bytes();
    debug_assert_eq!(data.len() % bb, 0);
    out.reserve(data.len() / bb * ty.block_elems());
    let layout = blocks::layout(ty);
    for b in data.chunks_exact(bb) {
        match ty {
            GgmlType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            GgmlType::F16 => out.push(h(b)),
            GgmlType::BF16 => out.push(bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 => {
                let l = layout.as_ref().expect("a block format");
                let mut v = [0f32; blocks::BLOCK];
                l.dequantize(b, &mut v);
                out.extend(v);
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
            GgmlType::Q2K => kquant::q2k(b, out),
            GgmlType::Q3K => kquant::q3k(b, out),
            GgmlType::Q4K => kquant::q4k_q5k(b, false, out),
            GgmlType::Q5K => kquant::q4k_q5k(b, true, out),
            GgmlType::Q6K => kquant::q6k(b, out),
        }
    }
}

/// Quantizes `values` (a multiple of 32) into Q8_0, Q4_0 or Q4_1 blocks, as llama.cpp's
/// reference `quantize_row_*_ref` functions do.
pub fn quantize(ty: GgmlType, values: &[f32]) -> crate::error::Result<Vec<u8>> {
    if !values.len().is_multiple_of(32) {
        return Err(crate::error::Error::weights(format!(
            "cannot quantize {} values into 32-value blocks",
            values.len()
        )));
    }
    let Some(l) = blocks::layout(ty) else {
        return Err(crate::error::Error::weights(format!(
            "quantizing to {} is not supported (use q8_0, q4_0 or q4_1)",
            ty.name()
        )));
    };
    let mut out = Vec::with_capacity(values.len() / 32 * l.bytes);
    for x in values.chunks_exact(32) {
        l.quantize(x, &mut out);
    }
    Ok(out)
}

/// Dequantizes `data` into a new vector.
pub fn dequantize(ty: GgmlType, data: &[u8]) -> Vec<f32> {
    let mut v = Vec::new();
    dequantize_into(ty, data, &mut v);
    v
}

/// K-quant super-blocks (256 values), as ggml's `dequantize_row_q*_K`.
mod kquant {
    use super::h;

    /// 6-bit scale and min `j` of a Q4_K/Q5_K scales array.
    fn scale_min(j: usize, q: &[u8]) -> (f32, f32) {
        if j < 4 {
            ((q[j] & 63) as f32, (q[j + 4] & 63) as f32)
        } else {
            (
                ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)) as f32,
                ((q[j + 4] >> 4) | ((q[j] >> 6) << 4)) as f32,
            )
        }
    }

    pub fn q2k(b: &[u8], out: &mut Vec<f32>) {
        let (scales, qs, d, min) = (&b[..16], &b[16..80], h(&b[80..]), h(&b[82..]));
        let mut is = 0;
        for n in 0..2 {
            let q = &qs[n * 32..];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let sc = scales[is];
                    is += 1;
                    let (dl, ml) = (d * (sc & 0xF) as f32, min * (sc >> 4) as f32);
                    out.extend((0..16).map(|l| dl * ((q[l + 16 * half] >> shift) & 3) as f32 - ml));
                }
            }
        }
    }

    pub fn q3k(b: &[u8], out: &mut Vec<f32>) {
        let (hm, qs, sc_raw, d) = (&b[..32], &b[32..96], &b[96..108], h(&b[108..]));
        let mut aux = [0u32; 4];
        for (i, a) in aux.iter_mut().take(3).enumerate() {
            *a = u32::from_le_bytes([
                sc_raw[4 * i],
                sc_raw[4 * i + 1],
                sc_raw[4 * i + 2],
                sc_raw[4 * i + 3],
            ]);
        }
        let (k1, k2, tmp) = (0x0303_0303u32, 0x0f0f_0f0fu32, aux[2]);
        aux[2] = ((aux[0] >> 4) & k2) | (((tmp >> 4) & k1) << 4);
        aux[3] = ((aux[1] >> 4) & k2) | (((tmp >> 6) & k1) << 4);
        aux[0] = (aux[0] & k2) | ((tmp & k1) << 4);
        aux[1] = (aux[1] & k2) | (((tmp >> 2) & k1) << 4);
        let scales: Vec<i8> = aux
            .iter()
            .flat_map(|a| a.to_le_bytes())
            .map(|v| v as i8)
            .collect();
        let (mut is, mut m) = (0, 1u8);
        for n in 0..2 {
            let q = &qs[n * 32..];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let dl = d * (scales[is] as i32 - 32) as f32;
                    is += 1;
                    out.extend((0..16).map(|l| {
                        let i = l + 16 * half;
                        let v = ((q[i] >> shift) & 3) as i32 - if hm[i] & m != 0 { 0 } else { 4 };
                        dl * v as f32
                    }));
                }
                m <<= 1;
            }
        }
    }

    pub fn q4k_q5k(b: &[u8], five: bool, out: &mut Vec<f32>) {
        let (d, min, scales) = (h(b), h(&b[2..]), &b[4..16]);
        let (qh, ql) = if five {
            (&b[16..48], &b[48..176])
        } else {
            (&b[..0], &b[16..144])
        };
        let (mut u1, mut u2) = (1u8, 2u8);
        for j in 0..4 {
            let q = &ql[j * 32..];
            let (s1, m1) = scale_min(2 * j, scales);
            let (s2, m2) = scale_min(2 * j + 1, scales);
            let (d1, m1, d2, m2) = (d * s1, min * m1, d * s2, min * m2);
            let hi = |l: usize, u: u8| if five && qh[l] & u != 0 { 16 } else { 0 };
            out.extend((0..32).map(|l| d1 * ((q[l] & 0xF) + hi(l, u1)) as f32 - m1));
            out.extend((0..32).map(|l| d2 * ((q[l] >> 4) + hi(l, u2)) as f32 - m2));
            u1 <<= 2;
            u2 <<= 2;
        }
    }

    pub fn q6k(b: &[u8], out: &mut Vec<f32>) {
        let (ql, qh, sc, d) = (&b[..128], &b[128..192], &b[192..208], h(&b[208..]));
        for n in 0..2 {
            let (ql, qh, sc) = (&ql[n * 64..], &qh[n * 32..], &sc[n * 8..]);
            let mut y = [0f32; 128];
            for l in 0..32 {
                let is = l / 16;
                let q = |v: u8, hbits: u8| ((v | (hbits << 4)) as i32 - 32) as f32;
                y[l] = d * (sc[is] as i8) as f32 * q(ql[l] & 0xF, qh[l] & 3);
                y[l + 32] = d * (sc[is + 2] as i8) as f32 * q(ql[l + 32] & 0xF, (qh[l] >> 2) & 3);
                y[l + 64] = d * (sc[is + 4] as i8) as f32 * q(ql[l] >> 4, (qh[l] >> 4) & 3);
                y[l + 96] = d * (sc[is + 6] as i8) as f32 * q(ql[l + 32] >> 4, (qh[l] >> 6) & 3);
            }
            out.extend_from_slice(&y);
        }
    }
}
