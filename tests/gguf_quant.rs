//! GGUF parsing and dequantization of every supported storage type against gguf-py's
//! reference dequantizer (`tests/fixtures/make_quant_blocks.py`).

use super::common;

use common::*;
use taskvec::weights::GgufSource;

#[test]
fn every_type_dequantizes_like_gguf_py() {
    let src = GgufSource::new(read(&fixture("quant/blocks.gguf"))).unwrap();
    let expected = read(&fixture("quant/expected.safetensors"));
    let mut names: Vec<&String> = src.header.tensors.keys().collect();
    names.sort();
    assert!(names.len() >= 28);
    for name in names {
        let got = src.tensor(name).unwrap();
        let (shape, want) = tensor(&expected, name);
        assert_eq!(got.shape, shape, "{name}: shape");
        let legacy = !name.contains("_k");
        if legacy {
            // Same float operations in the same order: bit-exact.
            let diff = got
                .data
                .iter()
                .zip(&want)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(diff, 0, "{name}: {diff} values differ");
        } else {
            let e = rel_err(&got.data, &want);
            assert!(e < 1e-6, "{name}: relative error {e:e}");
        }
    }
}

#[test]
fn truncated_and_corrupt_headers_are_refused() {
    let bytes = read(&fixture("quant/blocks.gguf"));
    let h = taskvec::weights::GgufHeader::parse(&bytes).unwrap();
    let data_end = h.tensors.values().map(|t| t.offset + t.size).max().unwrap();
    for cut in [0, 3, 10, 24, 100, bytes.len() / 2, data_end - 1] {
        let e = GgufSource::new(bytes[..cut].to_vec())
            .err()
            .unwrap_or_else(|| panic!("cut at {cut} accepted"));
        let msg = e.to_string();
        assert!(
            msg.contains("GGUF") || msg.contains("truncated"),
            "cut {cut}: {msg}"
        );
    }
    // An absurd tensor count in the header.
    let mut b = bytes.clone();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(
        GgufSource::new(b)
            .err()
            .unwrap()
            .to_string()
            .contains("corrupt")
    );
}

/// taskvec's quantizer (quantize on load, `taskvec quantize`) makes the same blocks as gguf-py's
/// `gguf.quants.quantize` (llama.cpp's reference algorithm), byte for byte.
#[test]
fn quantizer_makes_the_blocks_gguf_py_makes() {
    use taskvec::weights::quant::{GgmlType, quantize};
    let f = read(&fixture("quant/quantize_ref.safetensors"));
    let st = safetensors::SafeTensors::deserialize(&f).unwrap();
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
        let (_, x) = tensor(&f, &format!("x.{}", ty.name()));
        let want = st.tensor(&format!("blocks.{}", ty.name())).unwrap();
        let got = quantize(ty, &x).unwrap();
        assert_eq!(got.len(), want.data().len(), "{ty:?}: length");
        let diff = got.iter().zip(want.data()).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{ty:?}: {diff} bytes differ");
    }
}
