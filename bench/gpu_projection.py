"""GPU projection on paper (issues 8, 16): a full A/B (2 x 1581 samples) on one H200.

    .venv/bin/python bench/gpu_projection.py [--per-resolution 3] [--threads 1]

Measures, on this machine, the per-screenshot CPU costs that a GPU does not remove:

1. PNG decode (PIL, one thread) of synthetic ScreenSpot-Pro-sized screenshots, per resolution
   (1920x1080 ... 6016x3384), from the 1581-sample release that ``memory_bound.py`` builds
   (``bench/out/data/official1581-full``; synthesized here if missing), and Gemma 4's image
   preprocessing alone (HF ``Gemma4ImageProcessor``) at 280 and 1120 soft tokens.
2. vLLM's front-end cost per request, stage by stage (:func:`measure_frontend`), at 3840x2160
   and 6016x3384, 280 and 1120 soft tokens, for the full screenshot without a uuid (before
   issue 16, and any bare ``LLM.chat``), with a uuid, and prepared in the decode pool with a
   uuid (now): PNG decode, the preparation, ``enqueue_chat`` and vLLM's own split of it
   (pixel hash, HF processor).

and combines them with stated assumptions (model sizes, H200 peak, MFU, HBM and disk speed) into
the terms of a full A/B, before and now: vision + text prefill FLOPs at an assumed MFU,
memory-bound decode, decode (+ preparation) in the tool's pool, the serial front end, model
load. Every assumption is in ``ASSUMED`` below and in the JSON. Written to
``bench/out/gpu_projection.json``; prints markdown tables. Runtime: about 4 minutes (plus 2
minutes of synthesis the first time).
"""

from __future__ import annotations

import argparse
import json
import os
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
    "image_workers_before": 2,  # the decode pool before issue 16 (fixed default)
    "image_workers": 8,  # now: half the host's cores, at most 8 (16+ cores on a GPU host)
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
    root = release()
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


#: The three ways a request can reach vLLM's front end, per 4K / 6K screenshot:
#: ``original``: the full decoded screenshot, no uuid (vLLM hashes the pixels): a bare
#: ``LLM.chat`` and the harness before issue 16; ``original+uuid``: the same with a uuid (no
#: pixel hash); ``prepared+uuid``: the harness now (resized in the decode pool, uuid).
PATHS = ("original", "original+uuid", "prepared+uuid")
FRONTEND_SIZES = ((3840, 2160), (6016, 3384))
#: Smoke mode: two small sizes instead (the projection reads the first as it reads 4K).
SMOKE_FRONTEND_SIZES = ((640, 360), (960, 540))


def frontend_sizes() -> tuple[tuple[int, int], ...]:
    return SMOKE_FRONTEND_SIZES if common.smoke() else FRONTEND_SIZES


def release() -> Path:
    """The 1581-sample release ``memory_bound.py`` builds; smoke: 12 small screenshots, one
    sample each, of the smoke front-end sizes."""
    if common.smoke():
        sizes = [list(size) for size in SMOKE_FRONTEND_SIZES]
        root, _ = common.ensure_release(
            "frontend-smoke", 12, resolutions=sizes, max_per_screenshot=1, target_scale=4.0
        )
        return root
    root, _ = common.ensure_release(
        f"official{SAMPLES}-full", SAMPLES, like_official=True, target_scale=4.0
    )
    return root


def measure_frontend(count: int, engine_core: str = "process") -> dict[str, Any]:
    """vLLM's front-end cost per request, stage by stage, for each path in :data:`PATHS`.

    ``LLM.enqueue_chat`` runs synchronously in the caller's thread: chat rendering, the image
    processor, multimodal hashing, cache bookkeeping and the hand-off to the engine core. The
    engine's scheduling is paused meanwhile (``sleep(level=0)``: requests queue, nothing runs),
    so the engine core does not compete for this machine's two cores. vLLM's own stage timers
    (``enable_mm_processor_stats``) split the call. Every request gets a distinct screenshot
    (no cache hit). Also timed, per image, on this thread: the PNG decode and the harness's
    preparation (``ImagePreparer.resize``, which runs in the decode pool in a real run).

    ``engine_core``: ``process`` (vLLM's layout on a GPU: the hand-off serialises the request
    to the engine-core process, whose worker spin-waits on this machine's cores meanwhile) or
    ``inline`` (the tool's default on the CPU build: no hand-off, nothing else running).
    """
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if engine_core == "inline" else "1"
    from PIL import Image
    from vllm import LLM, SamplingParams

    from screenspot_eval.backends.vllm.prepare import PREPARED, ImagePreparer, image_processor

    root = release()
    sizes = frontend_sizes()
    by_size: dict[tuple[int, int], list[Path]] = {}
    for path in sorted((root / "annotations").glob("*.json")):
        for record in json.loads(path.read_text()):
            image = root / "images" / record["img_filename"]
            size = tuple(record["img_size"])
            if size in sizes and image not in by_size.setdefault(size, []):
                by_size[size].append(image)
    llm = LLM(
        model=str(common.ensure_tiny_model()),
        dtype="float32",
        max_model_len=2048,
        max_num_seqs=8,
        mm_processor_kwargs={"max_soft_tokens": 1120},
        limit_mm_per_prompt={"image": 1, "audio": 0},
        mm_processor_cache_gb=0,  # distinct images: nothing to hit; no cache bookkeeping
        enable_mm_processor_stats=True,
        **common.llm_kwargs(),
    )
    registry = llm.renderer._mm_timing_registry
    params = SamplingParams(max_tokens=1, temperature=0.0)
    result: dict[str, Any] = {"requests_per_cell": count, "engine_core": engine_core, "cells": []}
    serial = 0
    try:
        llm.sleep(level=0)
        for size in sizes:
            paths = by_size.get(size, [])
            if len(paths) < count + 1:
                raise RuntimeError(f"need {count + 1} distinct {size} screenshots")
            for budget in BUDGETS:
                preparer = ImagePreparer(image_processor(llm, budget), budget)
                plan = preparer.plan(*size)
                for path_name in PATHS:
                    decode, prepare, enqueue = [], [], []
                    registry.stat()
                    for path in paths[: count + 1]:  # the first of each cell warms up
                        started = time.perf_counter()
                        with Image.open(path) as opened:
                            opened.load()
                            image = opened.convert("RGB")
                        decode.append(time.perf_counter() - started)
                        started = time.perf_counter()
                        if path_name == "prepared+uuid" and plan.path == PREPARED:
                            image = preparer.resize(image)
                        prepare.append(time.perf_counter() - started)
                        serial += 1
                        item: dict[str, Any] = {"type": "image_pil", "image_pil": image}
                        if path_name != "original":
                            item["uuid"] = f"bench-{serial}"
                        messages = [
                            {
                                "role": "user",
                                "content": [item, {"type": "text", "text": "Click Save."}],
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
                        enqueue.append(time.perf_counter() - started)
                    stages: dict[str, list[float]] = {}
                    for stats in list(registry.stat().values())[1:]:
                        for name, seconds in stats.items():
                            stages.setdefault(name.removesuffix("_secs"), []).append(seconds)
                    result["cells"].append(
                        {
                            "size": f"{size[0]}x{size[1]}",
                            "soft_tokens": budget,
                            "path": path_name,
                            "prepared": path_name == "prepared+uuid" and plan.path == PREPARED,
                            "decode_ms": round(1000 * statistics.median(decode[1:]), 1),
                            "prepare_ms": round(1000 * statistics.median(prepare[1:]), 1),
                            "enqueue_ms": round(1000 * statistics.median(enqueue[1:]), 1),
                            "vllm_stages_ms": {
                                name: round(1000 * statistics.median(values), 1)
                                for name, values in sorted(stages.items())
                            },
                        }
                    )
                    print(json.dumps(result["cells"][-1]), flush=True)
        llm.wake_up(tags=["scheduling"])
        llm.wait_for_completion(use_tqdm=False)
    finally:
        llm.llm_engine.engine_core.shutdown()
    for cell in result["cells"]:
        if cell["size"] == "{}x{}".format(*sizes[0]):
            result[f"enqueue_ms_{cell['soft_tokens']}_{cell['path']}"] = cell["enqueue_ms"]
            result[f"prepare_ms_{cell['soft_tokens']}_{cell['path']}"] = cell["prepare_ms"]
    return result


def project(cpu: dict[str, Any], frontend: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {**row, "scenario": scenario}
        for scenario in ("before", "now")
        for row in _project(cpu, frontend, scenario)
    ]


def _project(cpu: dict[str, Any], frontend: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    """``before``: the full screenshot to vLLM, pixels hashed (front end: ``original``), the
    decode pool of 2. ``now``: prepared in the pool (decode + preparation on
    ``image_workers`` threads), uuid (front end: ``prepared+uuid``)."""
    a = ASSUMED
    n = SAMPLES * SIDES
    flops_per_s = a["h200_dense_bf16_flops"] * a["mfu"]
    mix = cpu["mean_over_mix"]
    speed = a["host_core_speed_vs_here"]
    path = "original" if scenario == "before" else "prepared+uuid"
    workers = a["image_workers_before"] if scenario == "before" else a["image_workers"]
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
            prepare_ms = frontend[f"prepare_ms_{budget}_{path}"]
            image_decode_s = n * (mix["decode_ms"] + prepare_ms) / 1000 / workers / speed
            # One front-end thread pays vLLM's whole per-request cost serially (measured at
            # 4K; the mix averages about 4K pixels, see mean_over_mix).
            preprocess_s = n * frontend[f"enqueue_ms_{budget}_{path}"] / 1000 / speed
            load_once_s = m["weights_bytes"] / a["disk_bytes_per_s"] + a["engine_init_s"][model]
            # GPU terms add up (prefill and decode share the GPU); CPU terms overlap with them.
            gpu_s = compute_s + decode_s
            terms = {
                "gpu (prefill+vision compute, decode)": gpu_s,
                "vLLM front end per request (1 process)": preprocess_s,
                "png decode + preparation (pool)": image_decode_s,
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
        "| scenario | model | soft tokens | prefill tok/sample | TFLOP/sample (vision+text) | "
        "compute @MFU s | decode s | PNG decode (+prep) s | vLLM front end s | load s/engine | "
        "bound by | A/B wall, one engine |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        t = r["tflop_per_sample"]
        vision = t["vision_linear"] + t["vision_attention"]
        lines.append(
            f"| {r['scenario']} | {r['model']} | {r['soft_tokens']} | "
            f"{r['prefill_tokens_per_sample']} | "
            f"{t['total']} ({vision:.2f}+{t['text_prefill'] + t['text_decode']:.2f}) | "
            f"{r['compute_bound_s']} | {r['decode_memory_bound_s']} | {r['png_decode_s']} | "
            f"{r['frontend_preprocess_s']} | {r['load_s_per_engine']} | {r['bound_by']} | "
            f"{r['ab_wall_s_one_engine'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def stages_markdown(frontend: dict[str, Any]) -> str:
    lines = [
        "| screenshot | soft tokens | path | PNG decode ms | preparation ms (pool) | "
        "enqueue_chat ms | of which hash ms | of which HF processor ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in frontend["cells"]:
        stages = c["vllm_stages_ms"]
        lines.append(
            f"| {c['size']} | {c['soft_tokens']} | {c['path']}"
            f"{'' if c['prepared'] or c['path'] != 'prepared+uuid' else ' (not a fixed point: sent as original)'} | "
            f"{c['decode_ms']} | {c['prepare_ms']} | **{c['enqueue_ms']}** | "
            f"{stages.get('get_mm_hashes', '-')} | {stages.get('apply_hf_processor', '-')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-resolution", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frontend-requests", type=int, default=8)
    parser.add_argument("--engine-core", choices=("process", "inline"), default="process")
    parser.add_argument("--frontend-only", action="store_true", help="skip the CPU terms")
    args = common.parse_args(parser, per_resolution=1, frontend_requests=1)
    env = common.set_env_defaults()
    started = time.perf_counter()
    if args.frontend_only:
        frontend = measure_frontend(args.frontend_requests, args.engine_core)
        path = common.write_figures(f"{NAME}-frontend-{args.engine_core}", frontend)
        print(stages_markdown(frontend))
        print(f"written: {path}")
        return
    cpu = measure_cpu(args.per_resolution, args.threads)
    frontend = measure_frontend(args.frontend_requests, args.engine_core)
    rows = project(cpu, frontend)
    figures = {
        "benchmark": NAME,
        "date": common.now_utc(),
        "machine": common.machine(),
        "env": env,
        "command": f".venv/bin/python bench/gpu_projection.py --per-resolution "
        f"{args.per_resolution} --threads {args.threads} --engine-core {args.engine_core}",
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
    print(json.dumps(cpu["mean_over_mix"], indent=1))
    print(stages_markdown(frontend))
    print(markdown(rows))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
