"""Bounded memory (issue 8): peak RSS of `run` over 1581 samples versus over 200.

    .venv/bin/python bench/memory_bound.py [--n 1581] [--small 200] [--max-width W]
                                           [--engine-arg KEY=VALUE ...]

One synthetic release of ``n`` samples with ``--like-official`` (26 applications, the official
group x ui_type mix, screenshots 1920x1080 up to 6016x3384 at full size unless ``--max-width``).
``screenspot-eval run`` (tiny model, fp32, structured decoding, ``max_num_seqs`` 8) evaluates
first ``--limit small`` of its samples, then all ``n``. The small run is the first ``small``
samples of the same release, so the resolution mix is the same random draw (both mixes are
recorded). Each run is its own process tree; the benchmark samples every 0.1 s the RSS of the
run process and all its descendants (vLLM's engine core and workers) and keeps the largest sum.

Ratio = peak(n) / peak(small) (goal <= 1.15). RSS sums count pages shared between the processes
(libraries, torch) once per process: the absolute figures overstate physical memory, the ratio
does not depend on that. ``--engine-arg`` is passed to both runs (e.g.
``mm_processor_cache_gb=0`` to see what vLLM's multimodal processor cache costs).
Written to ``bench/out/memory_bound.json`` (``memory_bound-<tag>.json`` with ``--tag``).
Runtime on 2 cores: about 2 minutes of synthesis (first time), then about 6 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import common  # bench/common.py (the script's folder is on sys.path)

NAME = "memory_bound"


def resolution_mix(run_dir: Path) -> dict[str, int]:
    """Screenshots per resolution among the samples a run recorded."""
    seen: dict[str, str] = {}
    with (run_dir / "predictions.jsonl").open() as lines:
        for line in lines:
            record = json.loads(line)
            seen[record["img_filename"]] = "x".join(str(v) for v in record["img_size"])
    counts = Counter(seen.values())
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0].split("x")[0])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1581)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--max-width", type=int, default=None)
    parser.add_argument("--max-num-seqs", type=int, default=8)
    parser.add_argument("--engine-arg", action="append", default=[])
    parser.add_argument("--tag", default=None)
    args = common.parse_args(
        parser,
        n=2 * common.SMOKE_SAMPLES,
        small=common.SMOKE_SAMPLES,
        max_width=common.SMOKE_MAX_WIDTH,
    )
    env = common.set_env_defaults()
    started = time.perf_counter()
    name = f"{NAME}-{args.tag}" if args.tag else NAME
    work = common.out_dir() / name
    model = common.ensure_tiny_model()
    width = f"w{args.max_width}" if args.max_width else "full"
    synth_kwargs: dict[str, Any] = {"like_official": True, "target_scale": 4.0}
    if args.max_width:
        synth_kwargs["max_width"] = args.max_width
    data, synth = common.ensure_release(f"official{args.n}-{width}", args.n, **synth_kwargs)
    extra = [a for arg in args.engine_arg for a in ("--engine-arg", arg)]
    base = [
        common.CLI, "run", "--model", str(model), "--norm", "pre", "--data", str(data),
        *common.engine_args(), "--max-num-seqs", str(args.max_num_seqs), *extra,
        *common.DECODING_ARGS, "--restart",
    ]  # fmt: skip

    runs: dict[str, dict[str, Any]] = {}
    for label, limit in (("small", args.small), ("full", None)):
        out = work / label
        command = [*base, "--out", str(out)]
        if limit is not None:
            command += ["--limit", str(limit)]
        result = common.timed_process(command, log=work / f"{label}.log")
        result["session"] = common.session(out)
        result["resolution_mix"] = resolution_mix(out)
        runs[label] = result
        print(f"{label}: peak {result['peak_rss_mb']} MB", flush=True)

    small, full = runs["small"], runs["full"]
    figures = {
        "benchmark": name,
        "date": common.now_utc(),
        "machine": common.machine(),
        "env": env,
        "command": f".venv/bin/python bench/memory_bound.py --n {args.n} --small {args.small}"
        + (f" --max-width {args.max_width}" if args.max_width else "")
        + "".join(f" --engine-arg {a}" for a in args.engine_arg)
        + (f" --tag {args.tag}" if args.tag else ""),
        "data": {"root": common.rel(data), **synth},
        "settings": {
            "max_num_seqs": args.max_num_seqs,
            "dtype": "float32",
            "structured": True,
            "max_tokens": 48,
            "image_workers": 2,
            "prefetch": 8,
            "engine_args": args.engine_arg,
            "rss_interval_s": 0.1,
        },
        "headline": {
            "samples": [small["session"]["samples"], full["session"]["samples"]],
            "peak_rss_mb_small": small["peak_rss_mb"],
            "peak_rss_mb_full": full["peak_rss_mb"],
            "full_over_small": common.ratio(full["peak_rss_mb"], small["peak_rss_mb"]),
            "goal": "<= 1.05 (issue 16; issue 8: <= 1.15)",
            "wall_s": [small["wall_s"], full["wall_s"]],
            "eval_s": [small["session"]["eval_s"], full["session"]["eval_s"]],
            "any_run_disturbed": small["disturbed"] or full["disturbed"],
        },
        "runs": runs,
        "total_runtime_s": round(time.perf_counter() - started, 1),
        "loadavg_1min_end": round(os.getloadavg()[0], 2),
    }
    path = common.write_figures(name, figures)
    print(json.dumps(figures["headline"], indent=1))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
