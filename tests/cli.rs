//! The CLI's fixed contracts, run as a user would: `generate`, `hidden`, `sweep --json`,
//! `bench --json` (and `--image`), and a clear error with a non-zero exit (never a panic) on bad input.

use super::common;

use std::process::Command;

use common::*;

fn taskvec(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_taskvec"))
        .args(args)
        .output()
        .expect("runs")
}

fn ok(args: &[&str]) -> String {
    let o = taskvec(args);
    assert!(
        o.status.success(),
        "taskvec {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn generate_prints_only_the_continuation() {
    let g: serde_json::Value =
        serde_json::from_slice(&read(&fixture("smollm2/greedy.json"))).unwrap();
    let model = smollm2_path();
    for i in [0, 3, 6] {
        let prompt = g["prompts"][i].as_str().unwrap();
        let want = g["text"][i].as_str().unwrap();
        let got = ok(&[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            prompt,
            "--max-tokens",
            "12",
        ]);
        // The CLI stops at end-of-turn tokens; transformers' reference does not.
        let want = want.split("<|im_end|>").next().unwrap();
        assert_eq!(got, want, "prompt {prompt:?}");
    }
}

#[test]
fn hidden_writes_every_layer_like_transformers() {
    let dir = std::env::temp_dir().join(format!("taskvec-hidden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let r = read(&fixture("tiny_vlm/ref.safetensors"));
    let ids: Vec<String> = common::ids(&r, "img.input_ids")
        .iter()
        .map(u32::to_string)
        .collect();
    let image = fixture("tiny_vlm/image_a.png");
    let runs = [
        (
            "st",
            vec![
                "--model".to_string(),
                fixture("tiny_vlm").display().to_string(),
            ],
        ),
        (
            "gguf",
            vec![
                "--model".to_string(),
                fixture("tiny_vlm/tiny_lm.gguf").display().to_string(),
                "--mmproj".to_string(),
                fixture("tiny_vlm/tiny_mmproj.gguf").display().to_string(),
            ],
        ),
    ];
    for (name, model) in runs {
        let out = dir.join(format!("{name}.safetensors"));
        let mut args: Vec<String> = vec!["hidden".into()];
        args.extend(model);
        args.extend([
            "--ids".into(),
            ids.join(","),
            "--image".into(),
            image.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ]);
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&a);
        let f = read(&out);
        let (shape, hidden) = tensor(&f, "hidden");
        assert_eq!(shape, vec![5, 12, 48], "{name}: [layers+1, seq, hidden]");
        let e = rel_err(&hidden, &tensor(&r, "img.hidden").1);
        assert!(e < 2e-5, "{name}: hidden rel err {e:e}");
        let (lshape, logits) = tensor(&f, "logits");
        assert_eq!(lshape, vec![12, 440]);
        assert!(rel_err(&logits, &tensor(&r, "img.logits").1) < 2e-5);
        assert_eq!(
            common::ids(&f, "input_ids"),
            common::ids(&r, "img.input_ids")
        );
    }
    // --prompt expands <image> exactly like the processor.
    let out = dir.join("prompt.safetensors");
    ok(&[
        "hidden",
        "--model",
        fixture("tiny_vlm").to_str().unwrap(),
        "--prompt",
        "Q:<image>\nA:",
        "--image",
        image.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        common::ids(&read(&out), "input_ids"),
        common::ids(&r, "img.input_ids")
    );
}

#[test]
fn sweep_json_and_bench_json_contracts() {
    let dir = std::env::temp_dir().join(format!("taskvec-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pairs = dir.join("pairs.tsv");
    std::fs::write(
        &pairs,
        "France\tParis\nSpain\tMadrid\nItaly\tRome\nJapan\tTokyo\nEgypt\tCairo\nPeru\tLima\n",
    )
    .unwrap();
    let model = fixture("tiny_vlm");
    let out = ok(&[
        "sweep",
        "--model",
        model.to_str().unwrap(),
        "--pairs",
        pairs.to_str().unwrap(),
        "--seed",
        "3",
        "--json",
    ]);
    let j: serde_json::Value = serde_json::from_str(out.trim()).expect("exactly one JSON object");
    assert_eq!(j["patched"].as_array().unwrap().len(), 4);
    assert!(j["zero_shot"].is_f64() && j["icl"].is_f64() && j["best_layer"].is_u64());
    // Added fields: validation accuracy per layer, the layer chosen on it, test accuracy there.
    let val = j["val_patched"].as_array().unwrap();
    assert_eq!(val.len(), 4);
    let sel = j["selected_layer"].as_u64().unwrap() as usize;
    let v: Vec<f64> = val.iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(sel, (0..4).fold(0, |b, l| if v[l] > v[b] { l } else { b }));
    assert_eq!(
        j["test_at_selected"].as_f64().unwrap(),
        j["patched"][sel].as_f64().unwrap()
    );
    assert_eq!(j["read_at"], "demo");
    let out = ok(&[
        "bench",
        "--model",
        model.to_str().unwrap(),
        "--prefill",
        "16",
        "--decode",
        "4",
        "--runs",
        "2",
        "--json",
    ]);
    let b: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for k in [
        "prefill_tok_s",
        "decode_ms_per_token",
        "sweep_ms",
        "naive_sweep_ms",
    ] {
        assert!(b[k].as_f64().unwrap() > 0.0, "{k}");
    }
    assert!(b["backend"].is_string());

    // The image path (`bench --image`): every figure measured, the estimate given.
    let img = fixture("tiny_vlm/image_a.png");
    let out = ok(&[
        "bench",
        "--model",
        model.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--runs",
        "1",
        "--json",
    ]);
    let b: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for k in [
        "preprocess_ms",
        "vision_ms",
        "vision_gflops",
        "image_prefill_ms",
        "first_token_ms",
        "apply_ms",
        "estimated_apply_ms",
    ] {
        assert!(b[k].as_f64().unwrap() > 0.0, "{k}: {b}");
    }
    assert!(b["first_token_ms"].as_f64() >= b["vision_ms"].as_f64());
    assert!(b["prompt_tokens"].as_u64() > b["image_tokens"].as_u64());
    // A text-only model cannot: a clear error, no panic.
    let o = taskvec(&[
        "bench",
        "--model",
        smollm2_path().to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no vision encoder"));
}

/// `taskvec tasks --json` (fixed contract) and `taskvec table --json` / `--csv` on the tiny VLM.
#[test]
fn tasks_and_table_contracts() {
    let t: serde_json::Value = serde_json::from_str(ok(&["tasks", "--json"]).trim()).unwrap();
    let t = t.as_array().unwrap();
    assert_eq!(t.len(), 6);
    for x in t {
        let o = x.as_object().unwrap();
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["image_items", "instruction", "name", "text_items"]);
        assert!(x["image_items"].as_u64().unwrap() >= 30);
        assert!(x["text_items"].as_u64() >= x["image_items"].as_u64());
    }
    assert_eq!(t[0]["name"], "country_capital");
    assert_eq!(t[0]["instruction"], "The capital city of the country:");
    let dir = std::env::temp_dir().join(format!("taskvec-table-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("t.csv");
    let lm = fixture("tiny_vlm/tiny_lm.gguf");
    let mm = fixture("tiny_vlm/tiny_mmproj.gguf");
    let args = [
        "table",
        "--model",
        lm.to_str().unwrap(),
        "--mmproj",
        mm.to_str().unwrap(),
        "--source-model",
        lm.to_str().unwrap(),
        "--rows",
        "no-context,text-xbase,text-xpatch,llm-xpatch,text-patch",
        "--tasks",
        "food_flavor",
        "--seeds",
        "0,1",
        "--prompts",
        "5",
        "--csv",
        csv.to_str().unwrap(),
    ];
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let j: serde_json::Value = serde_json::from_str(ok(&with_json).trim()).unwrap();
    assert_eq!(j["rows"].as_array().unwrap().len(), 5);
    assert_eq!(j["seeds"], serde_json::json!([0, 1]));
    assert_eq!(j["read_at"], "demo");
    for r in j["rows"].as_array().unwrap() {
        let m = r["average"]["mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&m));
    }
    // The tiny LM is the tiny VLM's text side: LLM → VLM with the same weights equals the
    // VLM's own text-demonstration vector.
    assert_eq!(j["rows"][3]["cells"], j["rows"][2]["cells"]);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("row,label,task,layer,mean,lo,hi,n,seeds\n"));
    assert_eq!(text.lines().count(), 1 + 5 * 2);
    let md = ok(&args);
    assert!(md.contains("| Text ICL xPatch (text → image) |"), "{md}");
    // Refusals: an image row on a text-only model, an unknown row.
    for (extra, needle) in [
        (
            vec!["--model", lm.to_str().unwrap(), "--rows", "text-xpatch"],
            "needs image queries",
        ),
        (
            vec!["--model", lm.to_str().unwrap(), "--rows", "text-xpach"],
            "unknown row",
        ),
    ] {
        let mut a = vec!["table", "--tasks", "food_color"];
        a.extend(extra);
        let o = taskvec(&a);
        assert_eq!(o.status.code(), Some(1), "{a:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(needle), "{a:?}: {e}");
    }
}

#[test]
fn bad_inputs_exit_nonzero_with_a_message() {
    let dir = std::env::temp_dir().join(format!("taskvec-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"GGUF\x03\x00\x00\x00trunc").unwrap();
    let txt = dir.join("notimage.png");
    std::fs::write(&txt, b"hello, I am text").unwrap();
    let tiny = fixture("tiny_vlm");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "generate",
                "--model",
                junk.to_str().unwrap(),
                "--prompt",
                "x",
                "--max-tokens",
                "1",
            ],
            "truncated",
        ),
        (
            vec![
                "generate",
                "--model",
                "/nonexistent.gguf",
                "--prompt",
                "x",
                "--max-tokens",
                "1",
            ],
            "nonexistent",
        ),
        (
            vec![
                "generate",
                "--model",
                tiny.to_str().unwrap(),
                "--prompt",
                "Q:<image>\nA:",
                "--image",
                txt.to_str().unwrap(),
                "--max-tokens",
                "1",
            ],
            "not an image",
        ),
        (
            vec![
                "apply",
                "--model",
                tiny.to_str().unwrap(),
                "--vector",
                txt.to_str().unwrap(),
                "--text",
                "x",
            ],
            "not valid JSON",
        ),
        (
            vec![
                "extract",
                "--model",
                tiny.to_str().unwrap(),
                "--instruction",
                "no colon",
                "--out",
                "/dev/null",
            ],
            "must end with ':'",
        ),
    ];
    for (args, needle) in cases {
        let o = taskvec(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err:?}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[test]
fn info_json_reports_file_and_resident_sizes() {
    let model = smollm2_path();
    let j: serde_json::Value =
        serde_json::from_str(ok(&["info", "--model", model.to_str().unwrap(), "--json"]).trim())
            .unwrap();
    assert_eq!(j["file_bytes"].as_u64(), Some(98_362_432));
    assert_eq!(
        (j["layers"].as_u64(), j["hidden"].as_u64()),
        (Some(30), Some(576))
    );
    assert_eq!(j["quant"].as_str(), Some("q4_1+q8_0"));
    // The Q4_1 / Q8_0 blocks stay in memory on the CPU: at most 1.2× the file (issue 4/6).
    let resident = j["resident_weight_bytes"].as_u64().unwrap();
    assert!(resident as f64 <= 1.2 * 98_362_432.0, "{resident}");
    assert_eq!(j["storage"].as_str(), Some("q4_1+q8_0"));
    // Dequantized on request: f32 matrices plus the transposed LM head, about 6.6× the file.
    let f: serde_json::Value = serde_json::from_str(
        ok(&[
            "info",
            "--model",
            model.to_str().unwrap(),
            "--weights",
            "f32",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    let dense = f["resident_weight_bytes"].as_u64().unwrap();
    assert!(dense > 6 * 98_362_432, "{dense}");
    assert_eq!(f["storage"].as_str(), Some("f32"));
    let t: serde_json::Value = serde_json::from_str(
        ok(&[
            "info",
            "--model",
            fixture("tiny_vlm").to_str().unwrap(),
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(
        t["file_bytes"].as_u64(),
        Some(
            std::fs::metadata(fixture("tiny_vlm/model.safetensors"))
                .unwrap()
                .len()
        ),
        "only the model's own shards"
    );
}

/// `taskvec quantize` writes a GGUF pair that loads (storage q8_0), answers like the
/// quantized-on-load model, and refuses what it cannot do without touching the input.
#[test]
fn quantize_writes_a_loadable_gguf_pair() {
    let dir = std::env::temp_dir().join(format!("taskvec-quantize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (lm, mm) = (dir.join("lm8.gguf"), dir.join("mm8.gguf"));
    let (lm_s, mm_s) = (lm.to_str().unwrap(), mm.to_str().unwrap());
    let src_lm = fixture("tiny_vlm/tiny_lm.gguf");
    let src_mm = fixture("tiny_vlm/tiny_mmproj.gguf");
    ok(&["quantize", src_lm.to_str().unwrap(), lm_s, "--type", "q8_0"]);
    ok(&["quantize", src_mm.to_str().unwrap(), mm_s, "--type", "q8_0"]);
    let info: serde_json::Value =
        serde_json::from_str(ok(&["info", "--model", lm_s, "--mmproj", mm_s, "--json"]).trim())
            .unwrap();
    assert_eq!(info["quant"].as_str(), Some("f32+q8_0"));
    assert!(info["storage"].as_str().unwrap().contains("q8_0"));
    let img = fixture("tiny_vlm/image_a.png");
    let generate = |args: &[&str]| {
        let mut a = vec!["generate", "--prompt", "<image>Q:\nA:", "--max-tokens", "6"];
        a.extend_from_slice(&["--image", img.to_str().unwrap()]);
        a.extend_from_slice(args);
        ok(&a)
    };
    let from_file = generate(&["--model", lm_s, "--mmproj", mm_s]);
    let on_load = generate(&[
        "--model",
        src_lm.to_str().unwrap(),
        "--mmproj",
        src_mm.to_str().unwrap(),
        "--weights",
        "q8_0",
    ]);
    assert_eq!(from_file, on_load);
    // Refusals: a directory, a non-GGUF, the input itself as output.
    let before = std::fs::read(&src_lm).unwrap();
    for (args, needle) in [
        (
            vec![
                "quantize",
                fixture("tiny_vlm").to_str().unwrap(),
                lm_s,
                "--type",
                "q4_0",
            ],
            "is a directory",
        ),
        (
            vec!["quantize", img.to_str().unwrap(), lm_s, "--type", "q4_0"],
            "not a GGUF",
        ),
        (
            vec![
                "quantize",
                src_lm.to_str().unwrap(),
                src_lm.to_str().unwrap(),
                "--type",
                "q4_0",
            ],
            "different file",
        ),
    ] {
        let o = taskvec(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(&src_lm).unwrap(), before, "input untouched");
    std::fs::remove_dir_all(&dir).ok();
}

/// `taskvec export` (fixed contract) and `taskvec import`: the safetensors round trip is exact;
/// the control-vector GGUF has llama.cpp's keys and `direction.{l}` = row l × scale; layer 0
/// and files not written by taskvec are refused clearly.
#[test]
fn export_and_import_vector_files() {
    let dir = std::env::temp_dir().join(format!("taskvec-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let model = fixture("tiny_vlm");
    ok(&[
        "extract",
        "--model",
        model.to_str().unwrap(),
        "--task",
        "country_capital",
        "--out",
        &p("v.json"),
    ]);
    ok(&[
        "export",
        &p("v.json"),
        "--format",
        "safetensors",
        "--out",
        &p("v.safetensors"),
    ]);
    ok(&[
        "export",
        &p("v.json"),
        "--format",
        "safetensors",
        "--out",
        &p("again.safetensors"),
    ]);
    assert_eq!(
        std::fs::read(p("v.safetensors")).unwrap(),
        std::fs::read(p("again.safetensors")).unwrap(),
        "deterministic bytes"
    );
    ok(&["import", &p("v.safetensors"), "--out", &p("back.json")]);
    assert_eq!(
        std::fs::read(p("v.json")).unwrap(),
        std::fs::read(p("back.json")).unwrap()
    );
    let st = std::fs::read(p("v.safetensors")).unwrap();
    let (shape, data) = tensor(&st, "vectors");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p("v.json")).unwrap()).unwrap();
    let rows = v["vectors"].as_array().unwrap();
    assert_eq!(shape, vec![rows.len(), rows[0].as_array().unwrap().len()]);
    assert_eq!(data[shape[1] + 3], rows[1][3].as_f64().unwrap() as f32);

    ok(&[
        "export",
        &p("v.json"),
        "--format",
        "control-vector",
        "--layers",
        "1-3",
        "--scale",
        "2",
        "--out",
        &p("cv.gguf"),
    ]);
    let bytes = std::fs::read(p("cv.gguf")).unwrap();
    let h = taskvec::weights::gguf::GgufHeader::parse(&bytes).unwrap();
    assert_eq!(
        h.get("general.architecture").and_then(|x| x.as_str()),
        Some("controlvector")
    );
    assert_eq!(
        h.get("controlvector.layer_count").and_then(|x| x.as_u64()),
        Some(3)
    );
    assert_eq!(h.order, ["direction.1", "direction.2", "direction.3"]);
    for (l, row) in rows.iter().enumerate().take(4).skip(1) {
        let t = &h.tensors[&format!("direction.{l}")];
        let got: Vec<f32> = bytes[t.offset..t.offset + t.size]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let want: Vec<f32> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32 * 2.0)
            .collect();
        assert_eq!(got, want, "direction.{l}");
    }
    let refused = |args: &[&str], msg: &str| {
        let o = taskvec(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(msg), "{args:?}: {e}");
    };
    refused(
        &[
            "export",
            &p("v.json"),
            "--format",
            "control-vector",
            "--layers",
            "0",
            "--out",
            &p("x.gguf"),
        ],
        "no slot",
    );
    refused(
        &[
            "export",
            &p("v.json"),
            "--format",
            "control-vector",
            "--scale",
            "NaN",
            "--out",
            &p("x.gguf"),
        ],
        "not a finite number",
    );
    refused(
        &["import", &p("v.json"), "--out", &p("x.json")],
        "not a safetensors file",
    );
    refused(
        &[
            "import",
            model.join("model.safetensors").to_str().unwrap(),
            "--out",
            &p("x.json"),
        ],
        "not exported by taskvec",
    );
}

#[test]
fn steering_combine_and_map() {
    let dir = std::env::temp_dir().join(format!("taskvec-steer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let tiny = fixture("tiny_vlm");
    let smol = smollm2_path();
    let (tiny, smol) = (tiny.to_str().unwrap(), smol.to_str().unwrap());
    for (name, m, task, spec) in [
        ("a", tiny, "country_capital", "text"),
        ("b", tiny, "country_currency", "text"),
        ("c", tiny, "country_capital", "instruction"),
        ("s", smol, "country_capital", "instruction"),
    ] {
        ok(&[
            "extract",
            "--model",
            m,
            "--task",
            task,
            "--spec",
            spec,
            "--prompts",
            "4",
            "--out",
            &p(&format!("{name}.json")),
        ]);
    }
    let json = |s: String| -> serde_json::Value { serde_json::from_str(&s).unwrap() };
    let apply = |m: &str, v: &str, extra: &[&str]| {
        let mut a = vec![
            "apply", "--model", m, "--vector", v, "--text", "Germany", "--json",
        ];
        a.extend_from_slice(extra);
        json(ok(&a))
    };
    // fixed contract: today's fields, plus the steering; add at scale 0 = unpatched
    let plain = apply(tiny, &p("a.json"), &["--max-tokens", "6"]);
    for f in ["layer", "patched", "zero_shot", "icl", "sweep"] {
        assert!(plain.get(f).is_some(), "{f}");
    }
    assert_eq!(plain["steering"]["op"], "replace");
    let zero = apply(
        tiny,
        &p("a.json"),
        &[
            "--mode",
            "add",
            "--scale",
            "0",
            "--layers",
            "0-3",
            "--every-token",
            "--max-tokens",
            "6",
        ],
    );
    assert_eq!(zero["patched"]["ids"], zero["zero_shot"]["ids"]);
    assert_eq!(
        zero["patched"]["ids"].as_array().unwrap().len(),
        6,
        "all N tokens"
    );
    assert_eq!(zero["steering"]["layers"], serde_json::json!([0, 3]));
    let same = apply(
        tiny,
        &p("a.json"),
        &["--mode", "replace", "--scale", "1", "--max-tokens", "6"],
    );
    assert_eq!(same["patched"], plain["patched"]);
    // the real SmolLM2: steering every token changes the continuation, full length
    let steered = apply(
        smol,
        &p("s.json"),
        &[
            "--mode",
            "add-normalized",
            "--scale",
            "0.6",
            "--layers",
            "12-14",
            "--every-token",
            "--max-tokens",
            "10",
        ],
    );
    assert_eq!(steered["patched"]["ids"].as_array().unwrap().len(), 10);
    assert_ne!(steered["patched"]["ids"], steered["zero_shot"]["ids"]);
    // bad steering: a clear error, exit 1
    let va = p("a.json");
    for bad in [
        vec!["--mode", "multiply"],
        vec!["--scale", "NaN"],
        vec!["--layers", "2-9"],
        vec!["--layers", "3-1"],
    ] {
        let mut a = vec!["apply", "--model", tiny, "--vector", &va, "--text", "x"];
        a.extend(bad.iter());
        let o = taskvec(&a);
        assert_eq!(o.status.code(), Some(1), "{bad:?}");
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("panicked"),
            "{bad:?}"
        );
    }
    // arithmetic: a − a = 0, provenance recorded; a mismatched shape is refused
    ok(&[
        "combine",
        &p("a.json"),
        "-",
        &p("a.json"),
        "--out",
        &p("z.json"),
    ]);
    let z: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p("z.json")).unwrap()).unwrap();
    assert!(
        z["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .all(|x| x.as_f64() == Some(0.0))
    );
    assert_eq!(z["task"]["spec"], "combination");
    assert_eq!(z["derivation"]["terms"][1]["weight"], -1.0);
    ok(&[
        "combine",
        &p("a.json"),
        "+",
        &p("b.json"),
        "x",
        "0.5",
        "--out",
        &p("ab.json"),
    ]);
    let ab: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p("ab.json")).unwrap()).unwrap();
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_slice(&std::fs::read(p("a.json")).unwrap()).unwrap(),
        serde_json::from_slice(&std::fs::read(p("b.json")).unwrap()).unwrap(),
    );
    let at = |v: &serde_json::Value| v["vectors"][2][5].as_f64().unwrap() as f32;
    assert_eq!(at(&ab), at(&a) + 0.5 * at(&b));
    let o = taskvec(&[
        "combine",
        &p("a.json"),
        "+",
        &p("s.json"),
        "--out",
        &p("x.json"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("shapes differ"));
    // the map: one point per file, JSON contract
    let m = json(ok(&[
        "map",
        &p("a.json"),
        &p("b.json"),
        &p("c.json"),
        "--layer",
        "2",
        "--json",
    ]));
    assert_eq!(m["layer"], 2);
    assert_eq!(m["points"].as_array().unwrap().len(), 3);
    assert_eq!(m["points"][2]["spec"], "instruction");
    let e = m["explained"].as_array().unwrap();
    assert!(e[0].as_f64().unwrap() >= e[1].as_f64().unwrap());
}

#[test]
fn aggregated_lens_shows_the_answer_phase_on_smollm2() {
    let smol = smollm2_path();
    let out = ok(&[
        "lens",
        "--model",
        smol.to_str().unwrap(),
        "--task",
        "country_capital",
        "--prompts",
        "8",
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["prompts"], 8);
    assert_eq!(r["task_word"], "capital");
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 30);
    for l in layers {
        for k in ["input", "task", "answer"] {
            let b = &l[k];
            let (lo, m, hi) = (
                b["lo"].as_f64().unwrap(),
                b["mean"].as_f64().unwrap(),
                b["hi"].as_f64().unwrap(),
            );
            assert!((0.0..=1.0).contains(&m) && lo <= hi, "{k}: {b}");
        }
        let share: f64 = l["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t[1].as_f64().unwrap())
            .sum();
        assert!(share <= 1.0 + 1e-6);
    }
    // the answer appears late: nothing at the first layers, clearly more near the end
    let ans = |l: usize| layers[l]["answer"]["mean"].as_f64().unwrap();
    assert!(
        ans(0) < 1e-3 && (24..30).map(ans).fold(0.0, f64::max) > 0.02,
        "{} {}",
        ans(0),
        ans(29)
    );
    let bad = taskvec(&[
        "lens",
        "--model",
        smol.to_str().unwrap(),
        "--task",
        "no_such_task",
    ]);
    assert_eq!(bad.status.code(), Some(1));
}
