//! JPEG decoding equals Pillow's (libjpeg-turbo's): `taskvec::preprocess::decode` of each
//! fixture in tests/fixtures/jpeg/ (made by tests/fixtures/make_jpeg.py) against Pillow's
//! `Image.open(f).convert("RGB")` of the same file, saved as a lossless `<name>.pillow.png`.
//! Bar: max |diff| <= 1 and mean |diff| <= 0.05 per channel value. And truncated, corrupt or
//! oversized JPEGs are errors, never panics.

use std::path::PathBuf;

use taskvec::Error;
use taskvec::preprocess::{MAX_SIDE, decode};

const CASES: &[&str] = &[
    "q90_420.jpg",
    "q90_444.jpg",
    "q90_422.jpg",
    "progressive_420.jpg",
    "gray.jpg",
    "odd_420.jpg",
    "odd_422.jpg",
    "rst_420.jpg",
    "cmyk.jpg",
];

fn read(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jpeg")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Pillow's RGB, through the `image` crate's PNG decoder (exact).
fn pillow(name: &str) -> image::RgbImage {
    image::load_from_memory_with_format(
        &read(&format!("{name}.pillow.png")),
        image::ImageFormat::Png,
    )
    .unwrap()
    .to_rgb8()
}

fn image_message(r: taskvec::Result<image::RgbImage>) -> String {
    match r {
        Err(Error::Image(m)) => m,
        Err(other) => panic!("expected Error::Image, got {other:?}"),
        Ok(img) => panic!(
            "expected an error, decoded {}x{}",
            img.width(),
            img.height()
        ),
    }
}

#[test]
fn jpeg_decoding_matches_pillow() {
    let mut failures = vec![];
    for &name in CASES {
        let got = decode(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = pillow(name);
        assert_eq!(got.dimensions(), want.dimensions(), "{name}: size");
        let (mut max, mut sum, mut differ) = (0u8, 0u64, 0usize);
        for (a, b) in got.as_raw().iter().zip(want.as_raw()) {
            let d = a.abs_diff(*b);
            max = max.max(d);
            sum += d as u64;
            differ += (d != 0) as usize;
        }
        let n = want.as_raw().len();
        let mean = sum as f64 / n as f64;
        let (w, h) = want.dimensions();
        eprintln!(
            "{name:20} {w}x{h}: max |diff| {max}, mean {mean:.5}, {differ} of {n} values differ"
        );
        if max > 1 || mean > 0.05 {
            failures.push(format!("{name}: max {max}, mean {mean:.5}"));
        }
    }
    assert!(
        failures.is_empty(),
        "JPEG decoding differs from Pillow: {failures:?}"
    );
}

#[test]
fn truncated_jpeg_is_an_error_not_a_panic() {
    for name in [
        "q90_420.jpg",
        "progressive_420.jpg",
        "rst_420.jpg",
        "cmyk.jpg",
    ] {
        let bytes = read(name);
        let full = decode(&bytes).unwrap();
        let n = bytes.len();
        // Every prefix: the markers, the tables, the frame header and every byte of entropy data.
        for len in 0..n {
            let r = std::panic::catch_unwind(|| decode(&bytes[..len])).unwrap_or_else(|_| {
                panic!("{name}: decoding the first {len} of {n} bytes panicked")
            });
            if len + 2 >= n {
                // Only the end-of-image marker is missing: libjpeg-turbo accepts that too.
                if let Ok(img) = r {
                    assert!(img.as_raw() == full.as_raw(), "{name}: without EOI");
                }
            } else {
                let m = image_message(r);
                assert!(
                    len < 3 || m.contains("JPEG"),
                    "{name} cut at {len}: unclear message {m:?}"
                );
            }
        }
        eprintln!(
            "{name}: all {} prefixes cut before the end-of-image marker are errors, e.g. {:?}",
            n - 2,
            image_message(decode(&bytes[..n / 2]))
        );
    }
}

#[test]
fn corrupt_jpeg_is_an_error_or_an_image_never_a_panic() {
    let bytes = read("q90_420.jpg");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut errors, mut decoded) = (0, 0);
    for i in 0..600 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let p = (next() as usize) % b.len();
            b[p] = match next() % 3 {
                0 => next() as u8,
                1 => b[p] ^ (1 << (next() % 8)),
                _ => 0xFF,
            };
        }
        match std::panic::catch_unwind(|| decode(&b)) {
            Err(_) => panic!("corruption {i} panicked"),
            Ok(Ok(_)) => decoded += 1,
            Ok(Err(Error::Image(_))) => errors += 1,
            Ok(Err(other)) => panic!("corruption {i}: not an image error: {other:?}"),
        }
    }
    eprintln!("600 corrupted copies of q90_420.jpg: {errors} errors, {decoded} decoded");
}

#[test]
fn oversized_jpeg_is_refused_before_decoding() {
    // The frame header (SOF0) declares the size: rewrite it, keep the few KB of data.
    let bytes = read("q90_420.jpg");
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0 marker");
    for (w, h) in [
        (60_000u16, 60_000u16),
        (MAX_SIDE as u16 + 1, 100),
        (100, MAX_SIDE as u16 + 1),
    ] {
        let mut b = bytes.clone();
        b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        let t = std::time::Instant::now();
        let m = image_message(decode(&b));
        assert!(m.contains("too large"), "{w}x{h}: {m}");
        assert!(
            t.elapsed().as_secs_f64() < 1.0,
            "{w}x{h}: refused only after {:?}",
            t.elapsed()
        );
    }
}
