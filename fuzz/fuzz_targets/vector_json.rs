//! Vector JSON text → parse, validate, and check against a model: errors are fine, panics are
//! not (this is what a stranger's file goes through in the CLI and the page).
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskvec::loader::ModelInfo;
use taskvec::taskvec::format::VectorFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(v) = VectorFile::from_json(text) else {
        return;
    };
    let _ = v.validate();
    let model = ModelInfo {
        name: "tiny-smolvlm-test".into(),
        format: "gguf".into(),
        quant: "f32".into(),
        storage: "f32".into(),
        file_bytes: 1,
        fingerprint: "0123456789abcdef".into(),
        layers: 4,
        hidden: 48,
        vision: true,
    };
    let _ = v.check_model(&model, false);
    let _ = v.check_model(&model, true);
    let _ = v.to_json();
});
