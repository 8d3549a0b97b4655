#!/usr/bin/env python3
"""transformers' side of the image benchmark: a random-weight Idefics3 with the exact
SmolVLM-256M-Instruct configuration (the same architecture as models/make-random-smolvlm.sh's
GGUF pair; speed does not depend on the weights' values), f32 eager on the CPU.

Usage: python bench/transformers_vlm.py [RUNS=3]
Env:   TASKVEC_BENCH_THREADS  torch intra-op threads (default: 2)

Prints one JSON object: {vision_ms, image_prefill_ms, first_token_ms, image_tokens,
prompt_tokens, threads, ...}, each the median of RUNS runs after one warm-up, mirroring
`taskvec bench --image` (src/bench/image.rs): one 512 × 512 image (1024 patches), the vision
encoder + connector; then a prompt of the 64 image tokens and a short question, prefilled from
an empty cache; image → first token = vision + prefill + argmax.
"""

import json
import os
import statistics
import sys
import time


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    threads = int(os.environ.get("TASKVEC_BENCH_THREADS", "2"))
    try:
        import torch
        import transformers
        from transformers import Idefics3Config, Idefics3ForConditionalGeneration
    except ImportError as e:
        sys.stderr.write(f"transformers_vlm.py: needs torch and transformers: {e}\n")
        sys.exit(1)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = Idefics3Config(
        vision_config=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            image_size=512,
            patch_size=16,
            layer_norm_eps=1e-6,
            hidden_act="gelu_pytorch_tanh",
        ),
        text_config=dict(
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            vocab_size=49280,
            rms_norm_eps=1e-5,
            rope_theta=100000.0,
            max_position_embeddings=8192,
            tie_word_embeddings=False,
        ),
        scale_factor=4,
        image_token_id=49190,
    )
    cfg._attn_implementation = "eager"
    model = Idefics3ForConditionalGeneration(cfg).eval().float()
    image_tokens = (512 // 16) ** 2 // (4 * 4)
    question = [1, 11126, 42, 49189] + [49190] * image_tokens + [49189, 2683, 314, 451, 30, 198, 9519, 42]
    ids = torch.tensor([question])
    pixels = torch.rand(1, 1, 3, 512, 512)
    mask = torch.ones(1, 1, 512, 512, dtype=torch.bool)

    def vision():
        return model.model.get_image_features(pixel_values=pixels, pixel_attention_mask=mask)

    def prefill(features):
        embeds = model.model.get_input_embeddings()(ids)
        feats = features.pooler_output[0]  # [image tokens, text hidden]
        embeds = model.model.inputs_merger(ids, embeds, feats)
        out = model(inputs_embeds=embeds, use_cache=True)
        return out.logits[0, -1].argmax()

    t_vision, t_prefill = [], []
    with torch.inference_mode():
        for run in range(runs + 1):
            s = time.perf_counter()
            f = vision()
            a = time.perf_counter()
            prefill(f)
            b = time.perf_counter()
            if run > 0:
                t_vision.append((a - s) * 1e3)
                t_prefill.append((b - a) * 1e3)
    v, p = statistics.median(t_vision), statistics.median(t_prefill)
    print(json.dumps({
        "vision_ms": v,
        "image_prefill_ms": p,
        "first_token_ms": v + p,
        "image_tokens": image_tokens,
        "prompt_tokens": len(question),
        "threads": threads,
        "runs": runs,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "api": "Idefics3ForConditionalGeneration (random weights, SmolVLM-256M config), f32 eager: "
               "model.get_image_features, then inputs_merger + forward with the image features",
    }))


if __name__ == "__main__":
    main()
