//! GGUF bytes → header, config, tokenizer, every tensor dequantized, requantization: errors
//! are fine, panics, hangs and huge allocations are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskvec::model::{TextConfig, VisionConfig};
use taskvec::tokenize::TextTokenizer;
use taskvec::weights::quant::GgmlType;
use taskvec::weights::{GgufSource, requantize::requantize};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = GgufSource::new(data.to_vec()) else {
        return;
    };
    let _ = TextConfig::from_gguf(&src.header);
    let _ = VisionConfig::from_gguf(&src.header);
    let _ = TextTokenizer::from_gguf(&src.header);
    for name in src.header.order.clone() {
        let _ = src.tensor(&name);
    }
    let _ = requantize(data, GgmlType::Q4_1);
});
