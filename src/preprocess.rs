//! Image preprocessing as Idefics3's image processor does it without image splitting: decode,
//! RGB, resize the longest edge (aspect kept, even side), resize to the encoder's square input
//! (Lanczos, with Pillow's exact fixed-point arithmetic, so the pixels equal transformers'),
//! rescale by 1/255, normalize with the config's mean and std. Channel-first f32.

use std::io::Cursor;

use image::{ImageReader, Limits, RgbImage};

use crate::error::{Error, Result};
use crate::model::VisionConfig;
use crate::model::par::par_chunks;

/// Largest accepted image side, checked before decoding.
pub const MAX_SIDE: u32 = 12_000;
/// Largest decoder allocation.
pub const MAX_ALLOC: u64 = 512 << 20;
/// Largest accepted image file (encoded bytes), checked before anything is read from it.
pub const MAX_IMAGE_BYTES: usize = 50 << 20;

/// Decodes PNG / JPEG / WebP bytes to RGB, refusing files over [`MAX_IMAGE_BYTES`] and absurd
/// declared sizes before decoding.
///
/// JPEG goes through `decode_jpeg` (libjpeg-turbo's arithmetic, bit-exact with Pillow); PNG
/// and WebP through the `image` crate, whose decoders are exact.
pub fn decode(bytes: &[u8]) -> Result<RgbImage> {
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(Error::Image(format!(
            "the image file is {:.1} MiB; images are at most {} MiB",
            bytes.len() as f64 / 1048576.0,
            MAX_IMAGE_BYTES >> 20
        )));
    }
    // The JPEG magic the `image` crate's format guess uses too (SOI followed by a marker).
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return decode_jpeg(bytes);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Image(format!("cannot read the image: {e}")))?;
    if reader.format().is_none() {
        return Err(Error::Image(
            "not an image (PNG, JPEG or WebP expected)".into(),
        ));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    let mut reader = reader;
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => too_large(),
        other => Error::Image(format!("cannot decode the image: {other}")),
    })?;
    Ok(img.to_rgb8())
}

fn too_large() -> Error {
    Error::Image(format!(
        "the image is too large (over {MAX_SIDE} pixels a side or {} MiB decoded): scale it down first",
        MAX_ALLOC >> 20
    ))
}

/// Decodes a JPEG to RGB exactly as Pillow's `Image.open(f).convert("RGB")` does, which is what
/// transformers' image processors see.
///
/// Pillow decodes JPEG with libjpeg-turbo at its defaults: the ISLOW integer IDCT (`jidctint.c`),
/// "fancy" chroma upsampling (`jdsample.c`: a triangle filter, 3/4 of the nearer chroma sample
/// and 1/4 of the farther, vertically then horizontally for 4:2:0, with libjpeg's alternating
/// rounding biases) and the fixed-point YCbCr->RGB of `jdcolor.c`. The `image` crate's JPEG
/// decoder (zune-jpeg) rounds its upsampling and IDCT differently: measured against Pillow
/// 13.0 / libjpeg-turbo 3.2 it is off by up to 11 per channel value (mean 0.3) on 4:2:0 images,
/// enough to move the vision encoder's embeddings by 1e-2 while the same pixels as PNG match to
/// 3e-6. `jpeg-decoder` 0.3 is no closer (stb_image-style IDCT and upsampling: max 3-4, mean
/// 0.1-0.2). `libjpeg-turbo-rs` is a pure-Rust port of libjpeg-turbo's decoder (so it also
/// builds for wasm32) and reproduces Pillow's RGB bit for bit on 4:2:0, 4:2:2, 4:4:4,
/// progressive, grayscale, odd-sized, restart-marker and Adobe CMYK files (`tests/jpeg.rs`;
/// YCCK too, checked on a hand-made file when the crate was chosen).
/// It is used without its `simd` feature: the scalar code is the same on every target (and was
/// checked bit-exact natively and in wasm) and decodes a 640x427 JPEG in about 3 ms.
///
/// The frame header is read first (markers only, no pixel work) and absurd declared sizes are
/// refused before any pixel buffer is allocated. Grayscale is replicated to RGB; Adobe CMYK and
/// YCCK are converted the way libjpeg-turbo and Pillow do (`R = C * K / 255` on the stored,
/// inverted values). Truncated or corrupt data is an error, never a panic.
fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage> {
    use libjpeg_turbo_rs::{DecodeLimits, Decoder, JpegError, PixelFormat};
    let err = |e: JpegError| match e {
        JpegError::LimitExceeded { .. } => too_large(),
        JpegError::UnexpectedEof => {
            Error::Image("cannot decode the JPEG: the file is truncated".into())
        }
        other => Error::Image(format!("cannot decode the JPEG: {other}")),
    };
    let limits = DecodeLimits {
        max_width: MAX_SIDE as usize,
        max_height: MAX_SIDE as usize,
        max_memory: Some(MAX_ALLOC),
        ..DecodeLimits::default()
    };
    let decoder = Decoder::new_with_limits(bytes, limits).map_err(err)?;
    let (w, h) = (decoder.header().width(), decoder.header().height());
    if w == 0 || h == 0 {
        return Err(Error::Image("cannot decode the JPEG: empty frame".into()));
    }
    if w > MAX_SIDE as usize || h > MAX_SIDE as usize || w as u64 * h as u64 * 3 > MAX_ALLOC {
        return Err(too_large());
    }
    let img = decoder
        .with_output_format(PixelFormat::Rgb)
        .decode_image()
        .map_err(err)?;
    if img.pixel_format != PixelFormat::Rgb || img.precision != 8 {
        return Err(Error::Image(format!(
            "cannot decode the JPEG: {}-bit {:?} output, 8-bit RGB expected",
            img.precision, img.pixel_format
        )));
    }
    RgbImage::from_raw(img.width as u32, img.height as u32, img.data)
        .ok_or_else(|| Error::Image("cannot decode the JPEG: short pixel buffer".into()))
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
            cur = resize_lanczos(&cur, w, h);
        }
    }
    if cur.dimensions() != (s, s) {
        cur = resize_lanczos(&cur, s, s);
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

/// Fixed-point precision of Pillow's 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

fn lanczos3(x: f64) -> f64 {
    let sinc = |x: f64| {
        if x == 0.0 {
            1.0
        } else {
            (x * std::f64::consts::PI).sin() / (x * std::f64::consts::PI)
        }
    };
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`: for each output index, the first
/// input index and the fixed-point weights.
fn coefficients(in_size: u32, out_size: u32) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 3.0 * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize; // C cast truncates
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let w: Vec<f64> = (xmin..xmax.max(xmin))
                .map(|x| lanczos3((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = w.iter().sum();
            let k = w
                .iter()
                .map(|&v| {
                    let v = if total != 0.0 { v / total } else { v };
                    let f = v * (1u32 << PRECISION_BITS) as f64;
                    (if f < 0.0 { -0.5 + f } else { 0.5 + f }) as i32
                })
                .collect();
            (xmin, k)
        })
        .collect()
}

fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One output pixel's channels: `acc = ½ + Σ kᵢ · pixel(i)`, `pixel(i)` the source index of tap
/// `i`, in i32 as Pillow's `ImagingResampleHorizontal_8bpc` (the weights sum to 2²², so the
/// sum stays below 2³¹).
#[inline(always)]
fn taps(src: &[u8], k: &[i32], index: impl Fn(usize) -> usize, out: &mut [u8]) {
    let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
    for (i, &kv) in k.iter().enumerate() {
        let p = index(i);
        for (a, &v) in acc.iter_mut().zip(&src[p..p + 3]) {
            *a += v as i32 * kv;
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        *o = clip8(a);
    }
}

/// Resizes an RGB image with Pillow's Lanczos (`Image.resize(..., LANCZOS)`): a horizontal
/// then a vertical pass in 8-bit fixed point, bit-exact with Pillow; rows in parallel.
pub fn resize_lanczos(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (iw, ih) = img.dimensions();
    let (iw, w) = (iw as usize, w as usize);
    let src = img.as_raw();
    let tmp: Vec<u8> = if w != iw {
        let cx = coefficients(iw as u32, w as u32);
        let mut t = vec![0u8; w * ih as usize * 3];
        par_chunks(&mut t, w * 3, |y, row| {
            for ((x0, k), px) in cx.iter().zip(row.chunks_exact_mut(3)) {
                taps(src, k, |i| (y * iw + x0 + i) * 3, px);
            }
        });
        t
    } else {
        src.to_vec()
    };
    if h == ih {
        return RgbImage::from_raw(w as u32, h, tmp).expect("buffer size");
    }
    let cy = coefficients(ih, h);
    let mut out = vec![0u8; w * h as usize * 3];
    par_chunks(&mut out, w * 3, |y, row| {
        let (y0, k) = &cy[y];
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            taps(&tmp, k, |i| ((y0 + i) * w + x) * 3, px);
        }
    });
    RgbImage::from_raw(w as u32, h, out).expect("buffer size")
}
