//! Image preprocessing as Idefics3's image processor does it without image splitting: decode,
//! RGB, resize the longest edge (aspect kept, even side), resize to the encoder's square input
//! (Lanczos), rescale by 1/255, normalize with the config's mean and std. Channel-first f32.

use std::io::Cursor;

use image::imageops::{FilterType, resize};
use image::{ImageReader, Limits, RgbImage};

use crate::error::{Error, Result};
use crate::model::VisionConfig;

/// Largest accepted image side, checked before decoding.
pub const MAX_SIDE: u32 = 12_000;
/// Largest decoder allocation.
pub const MAX_ALLOC: u64 = 512 << 20;

/// Decodes PNG / JPEG / WebP bytes to RGB, refusing absurd declared sizes before decoding.
pub fn decode(bytes: &[u8]) -> Result<RgbImage> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Image(format!("cannot read the image: {e}")))?;
    if reader.format().is_none() {
        return Err(Error::Image("not an image (PNG, JPEG or WebP expected)".into()));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    let mut reader = reader;
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => Error::Image(format!(
            "the image is too large (over {MAX_SIDE} pixels a side or {} MiB decoded): scale it down first",
            MAX_ALLOC >> 20
        )),
        other => Error::Image(format!("cannot decode the image: {other}")),
    })?;
    Ok(img.to_rgb8())
}

/// transformers' `resize_output_size_rescale_to_max_len`: longest edge to `max_len`, aspect
/// kept, the other side rounded down then up to even.
pub fn longest_edge_size(width: u32, height: u32, max_len: u32) -> (u32, u32) {
    let aspect = width as f64 / height as f64;
    let (mut w, mut h);
    if width >= height {
        w = max_len;
        h = (w as f64 / aspect) as u32;
        if h % 2 != 0 {
            h += 1;
        }
    } else {
        h = max_len;
        w = (h as f64 * aspect) as u32;
        if w % 2 != 0 {
            w += 1;
        }
    }
    (w.max(1), h.max(1))
}

/// Preprocessed pixels [3, S, S] for the vision encoder. `longest_edge` is the processor's
/// first resize target (`size.longest_edge`), when known.
pub fn preprocess(img: &RgbImage, cfg: &VisionConfig, longest_edge: Option<u32>) -> Vec<f32> {
    let s = cfg.image_size as u32;
    let mut cur = img.clone();
    if let Some(le) = longest_edge {
        let (w, h) = longest_edge_size(cur.width(), cur.height(), le);
        if (w, h) != cur.dimensions() {
            cur = resize(&cur, w, h, FilterType::Lanczos3);
        }
    }
    if cur.dimensions() != (s, s) {
        cur = resize(&cur, s, s, FilterType::Lanczos3);
    }
    let n = (s * s) as usize;
    let mut out = vec![0f32; 3 * n];
    for (i, p) in cur.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = (p[c] as f32 / 255.0 - cfg.image_mean[c]) / cfg.image_std[c];
        }
    }
    out
}

/// Decodes and preprocesses image bytes.
pub fn load_image(bytes: &[u8], cfg: &VisionConfig, longest_edge: Option<u32>) -> Result<Vec<f32>> {
    Ok(preprocess(&decode(bytes)?, cfg, longest_edge))
}
