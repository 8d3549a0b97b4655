#!/usr/bin/env python3
"""A random-weight SmolVLM-256M-Instruct for speed tests: the GGUF pair users download.

    bash models/make-random-smolvlm.sh            # venv with gguf + numpy, then this script
    python models/make_random_smolvlm.py OUT_DIR [--smollm2 models/SmolLM2-135M-Instruct.Q4_1.gguf]

Writes OUT_DIR/SmolVLM-256M-random-Q8_0.gguf (text model: 2-D weights Q8_0, norms F32, untied
lm_head) and OUT_DIR/mmproj-SmolVLM-256M-random-f32.gguf (SigLIP vision encoder + connector,
F32), with exactly SmolVLM-256M-Instruct's configuration (vision 768 x 12 layers, image 512,
patch 16, pixel-shuffle scale 4; text 576 x 30 layers, 9/3 heads, MLP 1536, vocab 49280) and
exactly the keys and tensor names llama.cpp's `convert_hf_to_gguf.py` writes for it (the
`gguf` package's own name tables, as `tests/fixtures/make_tiny_vlm.py` documents in
`tests/fixtures/tiny_vlm/gguf_names.md`). The vocabulary is SmolLM2's (read from its GGUF, the
base model of SmolVLM's LM) plus SmolVLM's 128 added tokens at their real ids.

Weights are N(0, 0.02) like transformers' init (LayerNorm/RMSNorm weights 1, biases 0), seeded,
so the numbers mean nothing but every matrix has the real size: the time of a forward pass is
the real model's. Not committed (≈ 580 MB); `models/random-smolvlm/` is git-ignored.
Needs only numpy and gguf (llama.cpp's gguf-py).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import gguf

VISION = dict(hidden=768, layers=12, heads=12, ffn=3072, image=512, patch=16, eps=1e-6)
TEXT = dict(hidden=576, layers=30, heads=9, kv_heads=3, ffn=1536, vocab=49280, eps=1e-5,
            rope_theta=100000.0, context=8192)
SCALE_FACTOR = 4
PREPROC_LONGEST_EDGE = 2048  # SmolVLM's processor `size.longest_edge`, which the converter records


def added_tokens() -> list[str]:
    """SmolVLM's tokens after SmolLM2's 49152: <global-img>, 36 <row_r_col_c>, the image tokens,
    reserved fillers and <end_of_utterance> at 49279 (ids as in ../shared/SPEC.md)."""
    toks = ["<global-img>"]
    toks += [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    toks += ["<fake_token_around_image>", "<image>"]
    while len(toks) < 127:
        toks.append(f"<|reserved_special_token_{len(toks) - 39}|>")
    toks.append("<end_of_utterance>")
    assert len(toks) == 128 and toks[38] == "<image>" and toks[37] == "<fake_token_around_image>"
    return toks


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key]


def vocab_from_smollm2(path: Path):
    r = gguf.GGUFReader(str(path))
    f = field(r, "tokenizer.ggml.tokens")
    tokens = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    f = field(r, "tokenizer.ggml.token_type")
    types = [int(f.parts[i][0]) for i in f.data]
    f = field(r, "tokenizer.ggml.merges")
    merges = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    assert len(tokens) == 49152, len(tokens)
    return tokens, types, merges


class Rand:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def normal(self, *shape: int) -> np.ndarray:
        return (self.rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)


def write_text(out: Path, smollm2: Path, rnd: Rand) -> Path:
    t = TEXT
    path = out / "SmolVLM-256M-random-Q8_0.gguf"
    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name("SmolVLM-256M-Instruct (random weights, taskvec speed tests)")
    w.add_block_count(t["layers"])
    w.add_context_length(t["context"])
    w.add_embedding_length(t["hidden"])
    w.add_feed_forward_length(t["ffn"])
    w.add_head_count(t["heads"])
    w.add_head_count_kv(t["kv_heads"])
    w.add_rope_freq_base(t["rope_theta"])
    w.add_layer_norm_rms_eps(t["eps"])
    head_dim = t["hidden"] // t["heads"]
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_vocab_size(t["vocab"])
    w.add_rope_dimension_count(head_dim)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tokens, types, merges = vocab_from_smollm2(smollm2)
    tokens += added_tokens()
    types += [int(gguf.TokenType.CONTROL)] * 128
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_add_space_prefix(False)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(49279)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)

    q8 = gguf.GGMLQuantizationType.Q8_0

    def matrix(name: str, rows: int, cols: int) -> None:
        a = rnd.normal(rows, cols)
        w.add_tensor(name, gguf.quants.quantize(a, q8), raw_dtype=q8)

    def norm(name: str, n: int) -> None:
        w.add_tensor(name, np.ones(n, dtype=np.float32), raw_dtype=gguf.GGMLQuantizationType.F32)

    h, kv = t["hidden"], t["kv_heads"] * head_dim
    matrix("token_embd.weight", t["vocab"], h)
    for b in range(t["layers"]):
        norm(f"blk.{b}.attn_norm.weight", h)
        matrix(f"blk.{b}.attn_q.weight", h, h)
        matrix(f"blk.{b}.attn_k.weight", kv, h)
        matrix(f"blk.{b}.attn_v.weight", kv, h)
        matrix(f"blk.{b}.attn_output.weight", h, h)
        norm(f"blk.{b}.ffn_norm.weight", h)
        matrix(f"blk.{b}.ffn_gate.weight", t["ffn"], h)
        matrix(f"blk.{b}.ffn_up.weight", t["ffn"], h)
        matrix(f"blk.{b}.ffn_down.weight", h, t["ffn"])
    norm("output_norm.weight", h)
    matrix("output.weight", t["vocab"], h)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_mmproj(out: Path, rnd: Rand) -> Path:
    v = VISION
    path = out / "mmproj-SmolVLM-256M-random-f32.gguf"
    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.MMPROJ])
    w.add_type(gguf.GGUFType.MMPROJ)
    w.add_name("SmolVLM-256M-Instruct (random weights, taskvec speed tests)")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_clip_has_vision_encoder(True)
    w.add_vision_projection_dim(TEXT["hidden"])
    w.add_vision_image_size(v["image"])
    w.add_vision_patch_size(v["patch"])
    w.add_vision_embedding_length(v["hidden"])
    w.add_vision_feed_forward_length(v["ffn"])
    w.add_vision_block_count(v["layers"])
    w.add_vision_head_count(v["heads"])
    w.add_vision_image_mean([0.5, 0.5, 0.5])
    w.add_vision_image_std([0.5, 0.5, 0.5])
    w.add_clip_projector_type(gguf.VisionProjectorType.IDEFICS3)
    w.add_vision_attention_layernorm_eps(v["eps"])
    w.add_vision_projector_scale_factor(SCALE_FACTOR)
    w.add_vision_use_gelu(True)
    w.add_vision_preproc_image_size(PREPROC_LONGEST_EDGE)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    def f32(name: str, a: np.ndarray) -> None:
        w.add_tensor(name, a.astype(np.float32), raw_dtype=gguf.GGMLQuantizationType.F32)

    d, p = v["hidden"], v["patch"]
    n_patches = (v["image"] // p) ** 2
    f32("mm.model.fc.weight", rnd.normal(TEXT["hidden"], d * SCALE_FACTOR * SCALE_FACTOR))
    f32("v.patch_embd.weight", rnd.normal(d, 3, p, p))
    f32("v.patch_embd.bias", np.zeros(d))
    f32("v.position_embd.weight", rnd.normal(n_patches, d))
    for b in range(v["layers"]):
        for ln in ("ln1", "ln2"):
            f32(f"v.blk.{b}.{ln}.weight", np.ones(d))
            f32(f"v.blk.{b}.{ln}.bias", np.zeros(d))
        for a in ("attn_q", "attn_k", "attn_v", "attn_out"):
            f32(f"v.blk.{b}.{a}.weight", rnd.normal(d, d))
            f32(f"v.blk.{b}.{a}.bias", np.zeros(d))
        f32(f"v.blk.{b}.ffn_up.weight", rnd.normal(v["ffn"], d))
        f32(f"v.blk.{b}.ffn_up.bias", np.zeros(v["ffn"]))
        f32(f"v.blk.{b}.ffn_down.weight", rnd.normal(d, v["ffn"]))
        f32(f"v.blk.{b}.ffn_down.bias", np.zeros(d))
    f32("v.post_ln.weight", np.ones(d))
    f32("v.post_ln.bias", np.zeros(d))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--smollm2", type=Path, default=Path("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    rnd = Rand(a.seed)
    for p in (write_text(a.out, a.smollm2, rnd), write_mmproj(a.out, rnd)):
        print(f"wrote {p} ({p.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
