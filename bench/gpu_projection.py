"""GPU projection on paper (issue 8): a full A/B (2 x 1581 samples) on one H200, per model/budget.

    .venv/bin/python bench/gpu_projection.py [--per-resolution 3] [--threads 1]

Measures, on this machine, the two per-screenshot CPU costs that a GPU does not remove:

1. PNG decode (PIL, one thread) of synthetic ScreenSpot-Pro-sized screenshots, per resolution
   (1920x1080 ... 6016x3384), from the 1581-sample release that ``memory_bound.py`` builds
   (``bench/out/data/official1581-full``; synthesized here if missing).
2. Gemma 4's image preprocessing (HF ``Gemma4ImageProcessor``: aspect-preserving bicubic resize
   to the budget, rescale, 16x16 patches), which vLLM runs in its front-end process for every
   request, at 280 and 1120 soft tokens, with ``--threads`` torch threads.

and combines them with stated assumptions (model sizes, H200 peak, MFU, HBM and disk speed) into
the terms of a full A/B: vision + text prefill FLOPs at an assumed MFU, memory-bound decode,
image decode with the tool's pool, front-end preprocessing, model load. Every assumption is in
``ASSUMED`` below and in the JSON. Written to ``bench/out/gpu_projection.json``; prints a
markdown table. Runtime: about 1 minute (plus 2 minutes of synthesis the first time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import common  # bench/common.py (the script's folder is on sys.path)

NAME = "gpu_projection"
SAMPLES = 1581
SIDES = 2  # A and B
BUDGETS = (280, 1120)

#: Everything below is assumed or read from public sources, not measured here.
ASSUMED: dict[str, Any] = {
    "h200_dense_bf16_flops": 989e12,
    "mfu": 0.40,  # achieved fraction of dense BF16 peak in prefill (vLLM, mixed batches)
    "hbm_bytes_per_s": 4.8e12,
    "hbm_efficiency": 0.80,  # fraction of HBM bandwidth a decode step achieves
    "decode_batch": 64,  # sequences decoding together (continuous batching, max_num_seqs 256)
    "text_prompt_tokens": 60,  # template + instruction + chat markup
    "image_markup_tokens": 2,  # begin/end-of-image tokens around the soft tokens
    "answer_tokens": 25,
    "disk_bytes_per_s": 2.0e9,  # HF cache on local NVMe, cold page cache
    "engine_init_s": {"gemma-4-E4B-it": 40.0, "gemma-4-31B-it": 90.0},  # profile + graphs
    "image_workers": 2,  # the tool's default decode pool
    "host_core_speed_vs_here": 1.0,  # per-core speed of the GPU host relative to this machine
    "models": {
        # text_params: weights multiplied per token in prefill (no embedding tables, no towers)
        # lm_head: tied embedding, applied to the last prompt token and every answer token
        # weights_bytes: the whole bf16 checkpoint (read at load; decode reads text + lm_head)
        "gemma-4-E4B-it": {
            "text_params": 3.8e9,  # 42 layers, hidden 2560, FFN 10240 (NVIDIA NeMo: ~3.8B)
            "lm_head_params": 262144 * 2560,
            "weights_bytes": 16e9,  # 8B total incl. per-layer embeddings, audio and vision
            "vision": {"params": 151e6, "layers": 16, "hidden": 768},
        },
        "gemma-4-31B-it": {
            "text_params": 28.7e9,  # 30.7B - 1.41B embedding (262144 x 5376) - 0.57B vision
            "lm_head_params": 262144 * 5376,
            "weights_bytes": 61.4e9,  # 30.7B bf16
            "vision": {"params": 569.6e6, "layers": 27, "hidden": 1152},
        },
    },
    "sources": [
        "31B: 30.7B params, 60 layers, hidden 5376, vocab 262144, tied embeddings "
        "(apxml.com/models/gemma-4-31b; huggingface.co/mlboydaisuke/Gemma-4-31B-CoreAI); "
        "bf16 61 GB (kaitchup.substack.com)",
        "31B vision tower: 569.6M params, 27 layers, hidden 1152, MLP 4304, patch 16, pool 3x3 "
        "(huggingface.co/rnagabh/gemma4-vision-encoder config, _verified_total_params)",
        "E4B: 42 layers, hidden 2560, FFN 10240, ~3.8B (docs.nvidia.com Megatron-Bridge "
        "gemma4 recipe); 8B total with embeddings (gigarouter.ai model card copy)",
        "E2B/E4B vision tower: transformers Gemma4VisionConfig defaults (hidden 768, MLP 3072, "
        "16 layers) = 151M params by count; field notes: hidden 768",
        "patches: max_soft_tokens x 3^2 patches of 16x16 (transformers "
        "image_processing_gemma4.py: max_patches = max_soft_tokens * pooling_kernel_size**2)",
    ],
}


def measure_cpu(per_resolution: int, threads: int) -> dict[str, Any]:
    """PNG decode and Gemma 4 preprocessing, ms per screenshot, per resolution."""
    import torch
    from PIL import Image
    from transformers import AutoProcessor

    torch.set_num_threads(threads)
    root, _ = common.ensure_release(
        f"official{SAMPLES}-full", SAMPLES, like_official=True, target_scale=4.0
    )
    by_size: dict[str, list[Path]] = {}
    for path in sorted((root / "annotations").glob("*.json")):
        for record in json.loads(path.read_text()):
            key = "x".join(str(v) for v in record["img_size"])
            image = root / "images" / record["img_filename"]
            if image not in by_size.setdefault(key, []):
                by_size[key].append(image)
    processor = AutoProcessor.from_pretrained(common.ensure_tiny_model()).image_processor
    result: dict[str, Any] = {}
    for size, paths in sorted(by_size.items(), key=lambda kv: int(kv[0].split("x")[0])):
        chosen = paths[:per_resolution]
        for path in chosen:
            path.read_bytes()  # page cache
        decode, prep = [], {b: [] for b in BUDGETS}
        for path in chosen:
            started = time.perf_counter()
            with Image.open(path) as opened:
                opened.load()
                image = opened.convert("RGB")
            decode.append(time.perf_counter() - started)
            for budget in BUDGETS:
                processor(images=[image], max_soft_tokens=budget, return_tensors="pt")  # warm
                started = time.perf_counter()
                out = processor(images=[image], max_soft_tokens=budget, return_tensors="pt")
                prep[budget].append(time.perf_counter() - started)
                assert out["pixel_values"].shape[1] == budget * 9
        result[size] = {
            "screenshots": len(chosen),
            "decode_ms": round(1000 * statistics.median(decode), 1),
            **{f"preprocess_ms_{b}": round(1000 * statistics.median(prep[b]), 1) for b in BUDGETS},
        }
    mix = list(result.values())  # the synthetic mix: resolutions equally likely
    result["mean_over_mix"] = {
        key: round(statistics.fmean(r[key] for r in mix), 1)
        for key in ("decode_ms", *(f"preprocess_ms_{b}" for b in BUDGETS))
    }
    return result


def measure_frontend(count: int) -> dict[str, Any]:
    """vLLM's own front-end cost per request: ``LLM.enqueue_chat`` of one 3840x2160 screenshot.

    ``enqueue_chat`` runs synchronously in the caller's process: chat rendering, Gemma 4 image
    preprocessing, multimodal hashing, tokenization and the hand-off to the engine core. The
    tiny model (its engine is started with a 1120 budget, 280 is asked per request) makes the
    engine core's own work negligible; every screenshot is distinct, so no cache hit.
    """
    from PIL import Image
    from vllm import LLM, SamplingParams

    root, _ = common.ensure_release(
        f"official{SAMPLES}-full", SAMPLES, like_official=True, target_scale=4.0
    )
    paths: list[Path] = []
    for path in sorted((root / "annotations").glob("*.json")):
        for record in json.loads(path.read_text()):
            image = root / "images" / record["img_filename"]
            if record["img_size"] == [3840, 2160] and image not in paths:
                paths.append(image)
    needed = 2 * (count + 1)
    if len(paths) < needed:
        raise RuntimeError(f"need {needed} distinct 3840x2160 screenshots, found {len(paths)}")
    images = []
    for path in paths[:needed]:
        with Image.open(path) as opened:
            images.append(opened.convert("RGB"))
    llm = LLM(
        model=str(common.ensure_tiny_model()),
        dtype="float32",
        max_model_len=2048,
        max_num_seqs=8,
        mm_processor_kwargs={"max_soft_tokens": 1120},
        limit_mm_per_prompt={"image": 1, "audio": 0},
    )
    params = SamplingParams(max_tokens=1, temperature=0.0)
    result: dict[str, Any] = {"screenshot": "3840x2160", "requests_per_budget": count}
    try:
        for budget in BUDGETS:
            times = []
            for image in images[: count + 1]:
                messages = [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_pil", "image_pil": image},
                            {"type": "text", "text": "Click the Save button."},
                        ],
                    }
                ]
                started = time.perf_counter()
                llm.enqueue_chat(
                    messages,
                    params,
                    use_tqdm=False,
                    chat_template_kwargs={"enable_thinking": False},
                    mm_processor_kwargs={"max_soft_tokens": budget},
                )
                times.append(time.perf_counter() - started)
            outputs = llm.wait_for_completion(use_tqdm=False)
            tokens = {len(o.prompt_token_ids or []) for o in outputs}
            result[f"enqueue_ms_{budget}"] = round(1000 * statistics.median(times[1:]), 1)
            result[f"prompt_tokens_{budget}"] = sorted(tokens)
            images = images[count + 1 :]
    finally:
        llm.llm_engine.engine_core.shutdown()
    return result


def project(cpu: dict[str, Any], frontend: dict[str, Any]) -> list[dict[str, Any]]:
    a = ASSUMED
    n = SAMPLES * SIDES
    flops_per_s = a["h200_dense_bf16_flops"] * a["mfu"]
    mix = cpu["mean_over_mix"]
    speed = a["host_core_speed_vs_here"]
    rows = []
    for model, m in a["models"].items():
        for budget in BUDGETS:
            patches = budget * 9
            v = m["vision"]
            vision_linear = 2 * v["params"] * patches
            vision_attention = 4 * v["layers"] * patches**2 * v["hidden"]  # QK^T and AV
            prompt = budget + a["image_markup_tokens"] + a["text_prompt_tokens"]
            text_prefill = 2 * m["text_params"] * prompt + 2 * m["lm_head_params"]
            text_decode = 2 * (m["text_params"] + m["lm_head_params"]) * a["answer_tokens"]
            per_sample = vision_linear + vision_attention + text_prefill + text_decode
            compute_s = n * per_sample / flops_per_s
            step_bytes = 2 * (m["text_params"] + m["lm_head_params"])  # bf16, per decode step
            step_s = step_bytes / (a["hbm_bytes_per_s"] * a["hbm_efficiency"])
            decode_steps = n * a["answer_tokens"] / a["decode_batch"]
            decode_s = decode_steps * step_s
            image_decode_s = n * mix["decode_ms"] / 1000 / a["image_workers"] / speed
            # One front-end process pays vLLM's whole per-request cost serially (measured at
            # 4K; the mix averages about 4K pixels, see mean_over_mix).
            preprocess_s = n * frontend[f"enqueue_ms_{budget}"] / 1000 / speed
            load_once_s = m["weights_bytes"] / a["disk_bytes_per_s"] + a["engine_init_s"][model]
            # GPU terms add up (prefill and decode share the GPU); CPU terms overlap with them.
            gpu_s = compute_s + decode_s
            terms = {
                "gpu (prefill+vision compute, decode)": gpu_s,
                "vLLM front end per request (1 process)": preprocess_s,
                "png decode (pool)": image_decode_s,
            }
            bound = max(terms, key=lambda k: terms[k])
            rows.append(
                {
                    "model": model,
                    "soft_tokens": budget,
                    "patches_per_image": patches,
                    "prefill_tokens_per_sample": prompt,
                    "tflop_per_sample": {
                        "vision_linear": round(vision_linear / 1e12, 2),
                        "vision_attention": round(vision_attention / 1e12, 2),
                        "text_prefill": round(text_prefill / 1e12, 2),
                        "text_decode": round(text_decode / 1e12, 2),
                        "total": round(per_sample / 1e12, 2),
                    },
                    "total_pflop_ab": round(n * per_sample / 1e15, 1),
                    "compute_bound_s": round(compute_s, 1),
                    "decode_step_ms": round(1000 * step_s, 2),
                    "decode_memory_bound_s": round(decode_s, 1),
                    "png_decode_s": round(image_decode_s, 1),
                    "frontend_preprocess_s": round(preprocess_s, 1),
                    "load_s_per_engine": round(load_once_s, 1),
                    "bound_by": bound,
                    "eval_s_estimate": round(max(terms.values()), 1),
                    "ab_wall_s_one_engine": round(max(terms.values()) + load_once_s, 1),
                    "ab_wall_s_two_engines": round(max(terms.values()) + 2 * load_once_s, 1),
                }
            )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | soft tokens | prefill tok/sample | TFLOP/sample (vision+text) | "
        "compute @MFU s | decode s | PNG decode s | vLLM front end s | load s/engine | "
        "bound by | A/B wall, one engine |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        t = r["tflop_per_sample"]
        vision = t["vision_linear"] + t["vision_attention"]
        lines.append(
            f"| {r['model']} | {r['soft_tokens']} | {r['prefill_tokens_per_sample']} | "
            f"{t['total']} ({vision:.2f}+{t['text_prefill'] + t['text_decode']:.2f}) | "
            f"{r['compute_bound_s']} | {r['decode_memory_bound_s']} | {r['png_decode_s']} | "
            f"{r['frontend_preprocess_s']} | {r['load_s_per_engine']} | {r['bound_by']} | "
            f"{r['ab_wall_s_one_engine'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-resolution", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frontend-requests", type=int, default=12)
    args = parser.parse_args()
    env = common.set_env_defaults()
    started = time.perf_counter()
    cpu = measure_cpu(args.per_resolution, args.threads)
    frontend = measure_frontend(args.frontend_requests)
    rows = project(cpu, frontend)
    figures = {
        "benchmark": NAME,
        "date": common.now_utc(),
        "machine": common.machine(),
        "env": env,
        "command": f".venv/bin/python bench/gpu_projection.py --per-resolution "
        f"{args.per_resolution} --threads {args.threads}",
        "measured_here": {
            "torch_threads": args.threads,
            "per_resolution": cpu,
            "vllm_frontend": frontend,
        },
        "assumed": ASSUMED,
        "projection": rows,
        "total_runtime_s": round(time.perf_counter() - started, 1),
    }
    path = common.write_figures(NAME, figures)
    print(json.dumps({**cpu["mean_over_mix"], **frontend}, indent=1))
    print(markdown(rows))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
