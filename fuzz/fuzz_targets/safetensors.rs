//! Safetensors bytes → the source and every tensor converted to f32, and a whole model load
//! with the tiny VLM's config: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskvec::weights::SafetensorsSource;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = SafetensorsSource::new(vec![data.to_vec()]) else {
        return;
    };
    let _ = src.storage_types();
    for name in src.names() {
        let _ = src.tensor(&name);
    }
});
