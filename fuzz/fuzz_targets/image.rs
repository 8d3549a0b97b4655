//! Image bytes (any format) → decode with limits, resize, normalize for a 32-px SigLIP input:
//! errors are fine, panics and decompression bombs are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskvec::model::VisionConfig;
use taskvec::preprocess::load_image;

fuzz_target!(|data: &[u8]| {
    let cfg = VisionConfig {
        image_size: 32,
        patch_size: 16,
        hidden_size: 32,
        intermediate_size: 64,
        num_layers: 1,
        num_heads: 2,
        layer_norm_eps: 1e-6,
        scale_factor: 2,
        image_mean: [0.5; 3],
        image_std: [0.5; 3],
    };
    let _ = load_image(data, &cfg, Some(64));
});
