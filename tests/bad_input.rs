//! Issue 6/6: every class of bad input gets a specific message and exit code 1 from the CLI —
//! never a panic (exit 101), a hang or a huge allocation. Each case names the class, the input
//! and a phrase the message must contain.

use super::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn taskvec(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_taskvec"))
        .args(args)
        .output()
        .expect("run taskvec")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A PNG whose header declares `w`×`h` pixels (the data is a few bytes): a decompression bomb.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn every_bad_input_class_gets_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("taskvec-badinput-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let w = |name: &str, bytes: &[u8]| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let tiny = fixture("tiny_vlm");
    let lm_bytes = read(&fixture("tiny_vlm/tiny_lm.gguf"));
    let lm = fixture("tiny_vlm/tiny_lm.gguf");
    let mm = fixture("tiny_vlm/tiny_mmproj.gguf");

    // Model files.
    let empty = w("empty.gguf", b"");
    let truncated = w("truncated.gguf", &lm_bytes[..lm_bytes.len() / 2]);
    let mut absurd = lm_bytes.clone();
    absurd[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes()); // tensor count
    let absurd_count = w("absurd_count.gguf", &absurd);
    let mut big_dims = lm_bytes.clone();
    {
        // The first tensor's first dimension → 2^40 (header: magic, version, counts, then KVs).
        let h = taskvec::weights::GgufHeader::parse(&lm_bytes).unwrap();
        let kv_end = h.metadata_spans.last().unwrap().1.end;
        let name_len = u64::from_le_bytes(lm_bytes[kv_end..kv_end + 8].try_into().unwrap());
        let dim0 = kv_end + 8 + name_len as usize + 4;
        big_dims[dim0..dim0 + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    }
    let absurd_dims = w("absurd_dims.gguf", &big_dims);
    let not_gguf = w("model.gguf", b"<html>404 Not Found</html>");
    let st_dir = dir.join("st");
    std::fs::create_dir_all(&st_dir).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(tiny.join(f), st_dir.join(f)).unwrap();
    }
    let st = read(&tiny.join("model.safetensors"));
    std::fs::write(st_dir.join("model.safetensors"), &st[..st.len() / 3]).unwrap();
    let shape_dir = dir.join("shape");
    std::fs::create_dir_all(&shape_dir).unwrap();
    let cfg = std::fs::read_to_string(tiny.join("config.json")).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    let mut cfg2 = cfg.clone();
    cfg2["text_config"]["intermediate_size"] = 64.into();
    std::fs::write(shape_dir.join("config.json"), cfg2.to_string()).unwrap();
    std::fs::copy(
        tiny.join("tokenizer.json"),
        shape_dir.join("tokenizer.json"),
    )
    .unwrap();
    std::fs::copy(
        tiny.join("model.safetensors"),
        shape_dir.join("model.safetensors"),
    )
    .unwrap();

    // Images, examples, prompts, vectors.
    let bomb = w("bomb.png", &png_bomb(60_000, 60_000));
    let fake_png = w("photo.png", b"this is a text file");
    let mut huge = png_bomb(16, 16);
    huge.resize(taskvec::preprocess::MAX_IMAGE_BYTES + 1, 0);
    let huge_png = w("huge.png", &huge);
    let empty_tsv = w("empty.tsv", b"");
    let one_pair = w("one.tsv", b"France\tParis\n");
    let long_prompt = "word ".repeat(3000);
    let empty_json = w("empty.json", b"");
    let broken_json = w("broken.json", b"{\"format\": \"taskvec-vector\", ");
    let vec_ok = dir.join("ok.json");
    let pairs = w("p.tsv", b"France\tParis\nSpain\tMadrid\nItaly\tRome\n");
    let o = taskvec(&[
        "extract",
        "--model",
        s(&tiny),
        "--pairs",
        s(&pairs),
        "--prompts",
        "2",
        "--out",
        s(&vec_ok),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&vec_ok).unwrap()).unwrap();
    let variant = |name: &str, f: &dyn Fn(&mut serde_json::Value)| -> PathBuf {
        let mut v = good.clone();
        f(&mut v);
        w(name, v.to_string().as_bytes())
    };
    let other_fp = variant("other_fp.json", &|v| {
        v["model"]["fingerprint"] = "ffffffffffffffff".into()
    });
    let wrong_hidden = variant("wrong_hidden.json", &|v| {
        for l in v["vectors"].as_array_mut().unwrap() {
            l.as_array_mut().unwrap().pop();
        }
    });
    let wrong_layers = variant("wrong_layers.json", &|v| {
        v["vectors"].as_array_mut().unwrap().pop();
    });
    let nan = w(
        "nan.json",
        std::fs::read_to_string(&vec_ok)
            .unwrap()
            .replacen("[", "[NaN,", 2)
            .as_bytes(),
    );
    let version = variant("version.json", &|v| v["version"] = 99.into());

    let m = ["--model", s(&tiny)];
    let generate = |model: &[&str]| {
        let mut a = vec!["generate", "--prompt", "x", "--max-tokens", "1"];
        a.extend_from_slice(model);
        a.iter().map(|x| x.to_string()).collect::<Vec<_>>()
    };
    let apply = |v: &Path| {
        let mut a: Vec<String> = ["apply", "--vector", s(v), "--text", "France"]
            .iter()
            .map(|x| x.to_string())
            .collect();
        a.extend(m.iter().map(|x| x.to_string()));
        a
    };
    let owned = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "empty model file",
            generate(&["--model", s(&empty)]),
            "empty (0 bytes)",
        ),
        (
            "truncated GGUF",
            generate(&["--model", s(&truncated)]),
            "truncated",
        ),
        (
            "absurd tensor count",
            generate(&["--model", s(&absurd_count)]),
            "corrupt",
        ),
        (
            "absurd tensor dimensions",
            generate(&["--model", s(&absurd_dims)]),
            "absurd dimensions",
        ),
        (
            "not a GGUF (an HTML error page)",
            generate(&["--model", s(&not_gguf)]),
            "not a GGUF",
        ),
        (
            "another architecture (a vision projector as the model)",
            generate(&["--model", s(&mm)]),
            "architecture 'clip' is not supported",
        ),
        (
            "text GGUF paired with a text GGUF as projector",
            generate(&["--model", s(&lm), "--mmproj", s(&lm)]),
            "not",
        ),
        (
            "truncated safetensors",
            generate(&["--model", s(&st_dir)]),
            "truncated",
        ),
        (
            "weights that do not match the config",
            generate(&["--model", s(&shape_dir)]),
            "do not match",
        ),
        (
            "missing model file",
            generate(&["--model", "/nonexistent/model.gguf"]),
            "nonexistent",
        ),
        (
            "image bomb (60000×60000 PNG)",
            owned(&[
                "generate",
                "--model",
                s(&tiny),
                "--prompt",
                "<image>x",
                "--image",
                s(&bomb),
                "--max-tokens",
                "1",
            ]),
            "too large",
        ),
        (
            "an image file over the byte limit",
            owned(&[
                "generate",
                "--model",
                s(&tiny),
                "--prompt",
                "<image>x",
                "--image",
                s(&huge_png),
                "--max-tokens",
                "1",
            ]),
            "images are at most 50 MiB",
        ),
        (
            "a text file named .png",
            owned(&[
                "generate",
                "--model",
                s(&tiny),
                "--prompt",
                "<image>x",
                "--image",
                s(&fake_png),
                "--max-tokens",
                "1",
            ]),
            "not an image",
        ),
        (
            "empty example list",
            owned(&[
                "extract",
                "--model",
                s(&tiny),
                "--pairs",
                s(&empty_tsv),
                "--out",
                s(&dir.join("x.json")),
            ]),
            "got 0",
        ),
        (
            "one example only",
            owned(&[
                "extract",
                "--model",
                s(&tiny),
                "--pairs",
                s(&one_pair),
                "--out",
                s(&dir.join("x.json")),
            ]),
            "at least 2 examples",
        ),
        (
            "prompt longer than the context",
            owned(&[
                "generate",
                "--model",
                s(&tiny),
                "--prompt",
                &long_prompt,
                "--max-tokens",
                "1",
            ]),
            "exceeds the model's context",
        ),
        ("empty vector file", apply(&empty_json), "empty"),
        ("broken vector JSON", apply(&broken_json), "not valid JSON"),
        ("vector with NaN", apply(&nan), "non-finite values"),
        (
            "vector with a wrong hidden size",
            apply(&wrong_hidden),
            "hidden size",
        ),
        (
            "vector with a wrong layer count",
            apply(&wrong_layers),
            "vectors",
        ),
        (
            "vector of another model (fingerprint)",
            apply(&other_fp),
            "another model",
        ),
        (
            "vector of an unknown format version",
            apply(&version),
            "version 99 is not supported",
        ),
    ];
    let mut report = String::new();
    for (class, args, needle) in &cases {
        let o = Command::new(env!("CARGO_BIN_EXE_taskvec"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
        report.push_str(&format!("| {class} | {err} |\n"));
        assert_eq!(
            o.status.code(),
            Some(1),
            "{class}: exit {:?}, {err}",
            o.status
        );
        assert!(!err.contains("panicked"), "{class}: panicked: {err}");
        assert!(
            err.contains(needle),
            "{class}: expected {needle:?} in {err:?}"
        );
    }
    eprintln!("{report}");
    std::fs::remove_dir_all(&dir).ok();
}
