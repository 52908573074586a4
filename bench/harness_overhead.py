"""Harness overhead (issues 8, 16): `screenspot-eval run` versus a bare vLLM script, same engine.

    .venv/bin/python bench/harness_overhead.py [--n 200] [--max-num-seqs 8] [--repeats 3]

Both sides run the tiny model (fp32, structured decoding, the same `max_num_seqs`) over the
same ``n`` synthetic samples, screenshots 1920x1080 up to 3840x2160 (the synthetic mix capped at
3840 px wide). Each side is its own process, one engine at a time:

* harness: ``screenspot-eval run`` in-process (streams screenshots through its decode pool into
  ``VllmEngine.generate``). Its manifest gives ``eval_s`` (first sample to last record) and
  ``engine_idle_s`` (time the engine had nothing to do while waiting for a screenshot).
* bare: this file with ``--bare``. It takes the run's resolved configuration from
  ``run --print-config`` (the same ``vllm.LLM`` arguments, template and sampling settings),
  decodes every screenshot first, renders the same messages with
  ``screenspot_eval.protocol.prompts.render_messages`` and hands all conversations to ONE
  ``LLM.chat`` call. Only that call is timed (``generate_s``).

What each side does, exactly:

* harness ``eval_s``: decodes every screenshot (2 pool threads), prepares it (resize to the
  processor's size where the self-check allows, in the pool), renders and enqueues each request
  with a uuid (no pixel hash), steps the engine, parses, scores, writes and fsyncs each record.
* bare ``generate_s``: ONE ``LLM.chat`` over conversations holding the already decoded
  full-size screenshots (no uuid: vLLM hashes the pixels and its processor copies and resizes
  the full image), nothing else. ``decode_s``: its own single-threaded decode, before the timer.

Both engines get the same ``vllm.LLM`` arguments (from ``run --print-config``, including the
processor cache default and ``enable_mm_processor_stats``, so both report vLLM's own stage
timers). The sides run as ``repeats`` back-to-back pairs (which side goes first alternates);
the median of the pairs' ratios is the headline. The bare answers must equal the harness's
answers (fp32 greedy), else the comparison is void.

Figures: ``eval_s / generate_s`` (goal <= 0.80: the harness, its own decoding included,
against a bare call handed decoded images), ``eval_s / (decode_s + generate_s)`` (the same
work on both sides), CPU-seconds per sample of each side's process tree during its timed part,
per-stage cost per request (decode, preparation, enqueue and vLLM's hash / processor split),
the window's queue depth, whole-process walls. Written to ``bench/out/harness_overhead.json``.
Runtime on 2 cores: about 2 minutes a pair.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common  # bench/common.py (the script's folder is on sys.path)

NAME = "harness_overhead"


def tree_cpu_s() -> float:
    """CPU seconds used so far by this process and its live descendants."""
    total = 0.0
    for proc in common.tree(os.getpid()):
        try:
            times = proc.cpu_times()
        except common.psutil.Error:
            continue
        total += times.user + times.system
    return total


def bare(config_path: Path, result_path: Path, engine_core: str) -> None:
    """The bare side: pre-decode, one ``LLM.chat`` call, nothing else. ``engine_core``:
    ``process`` (vLLM's default, what a plain script gets) or ``inline``
    (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, the harness's default on the CPU build)."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if engine_core == "inline" else "1"
    from screenspot_eval.data.images import decode_image
    from screenspot_eval.data.select import instruction_for, select_samples
    from screenspot_eval.data.validate import open_dataset
    from screenspot_eval.protocol.prompts import load_template, render_messages
    from screenspot_eval.run.config import RunConfig

    resolved = json.loads(config_path.read_text())
    config = RunConfig.model_validate(resolved["config"])
    template = load_template(config.prompt.template)
    data = open_dataset(config.data.source, config.data.revision, check_images=False)
    samples, _ = select_samples(data.samples, config.data.selection)

    started = time.perf_counter()
    images: dict[str, Any] = {}
    for sample in samples:
        if sample.img_filename not in images:
            images[sample.img_filename] = decode_image(sample, data.root)
    decode_s = time.perf_counter() - started

    def conversation(sample: Any) -> list[dict[str, Any]]:
        instruction = instruction_for(sample, config.data.selection.language) or ""
        messages = render_messages(template, instruction)
        for message in messages:
            content = message["content"]
            if isinstance(content, list):
                message["content"] = [
                    {"type": "image_pil", "image_pil": images[sample.img_filename]}
                    if item.get("type") == "image"
                    else item
                    for item in content
                ]
        return messages

    conversations = [conversation(s) for s in samples]

    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    sampling = config.sampling
    structured = (
        StructuredOutputsParams(regex=template.structured_regex)
        if sampling.structured and template.structured_regex
        else None
    )
    params = [
        SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed if sampling.seed is not None else config.engine.seed,
            structured_outputs=structured,
        )
        for _ in samples
    ]
    started = time.perf_counter()
    llm = LLM(**resolved["llm_kwargs"])
    load_s = time.perf_counter() - started
    registry = llm.renderer._mm_timing_registry
    registry.stat()  # nothing from start-up
    cpu_before = tree_cpu_s()
    started = time.perf_counter()
    outputs = llm.chat(
        conversations,
        params,
        use_tqdm=False,
        chat_template_kwargs=dict(template.chat_template_kwargs),
    )
    generate_s = time.perf_counter() - started
    generate_cpu_s = tree_cpu_s() - cpu_before
    stages: dict[str, float] = {}
    per_request = registry.stat()
    for stats in per_request.values():
        for name, seconds in stats.items():
            stages[name.removesuffix("_secs")] = stages.get(name.removesuffix("_secs"), 0) + seconds
    result = {
        "samples": len(samples),
        "screenshots": len(images),
        "decode_s": round(decode_s, 3),
        "load_s": round(load_s, 3),
        "generate_s": round(generate_s, 3),
        # CPU time of this process, the engine core and its worker during the call: how many
        # of the machine's cores the bare engine kept busy (room left for decoding images)
        "generate_cpu_s": round(generate_cpu_s, 2),
        "generate_cores_busy": round(generate_cpu_s / generate_s, 2),
        "generate_cpu_s_per_sample": round(generate_cpu_s / len(samples), 4),
        "decode_ms_per_screenshot": round(1000 * decode_s / len(images), 2),
        "vllm_stages_ms_per_request": {
            name: round(1000 * seconds / max(1, len(per_request)), 2)
            for name, seconds in sorted(stages.items())
        },
        "answers": {s.id: o.outputs[0].text for s, o in zip(samples, outputs, strict=True)},
    }
    result_path.write_text(json.dumps(result))
    llm.llm_engine.engine_core.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--max-width", type=int, default=3840)
    parser.add_argument("--max-num-seqs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--engine-core",
        choices=("auto", "process", "inline"),
        default="auto",
        help="the harness's --engine-core (auto: inline on the CPU build)",
    )
    parser.add_argument(
        "--bare-engine-core",
        choices=("same", "process", "inline"),
        default="same",
        help="where the bare script's engine core runs (same: where the harness's ran)",
    )
    parser.add_argument("--bare", nargs=3, metavar=("CONFIG", "RESULT", "ENGINE_CORE"))
    args = common.parse_args(
        parser, n=common.SMOKE_SAMPLES, max_width=common.SMOKE_MAX_WIDTH, repeats=1
    )
    env = common.set_env_defaults()
    if args.bare:
        bare(Path(args.bare[0]), Path(args.bare[1]), args.bare[2])
        return

    started = time.perf_counter()
    work = common.out_dir() / NAME
    model = common.ensure_tiny_model()
    data, synth = common.ensure_release(
        f"mixed{args.n}-w{args.max_width}", args.n, max_width=args.max_width, target_scale=4.0
    )
    run_dir = work / "run"
    run_cmd = [
        common.CLI, "run", "--model", str(model), "--norm", "pre", "--data", str(data),
        "--out", str(run_dir), *common.engine_args(), "--max-num-seqs", str(args.max_num_seqs),
        *common.DECODING_ARGS, "--restart", "--engine-arg", "enable_mm_processor_stats=true",
        "--engine-core", args.engine_core,
    ]  # fmt: skip
    from screenspot_eval.backends.vllm.engine_args import resolve_engine_core

    harness_core = resolve_engine_core(args.engine_core)
    bare_core = harness_core if args.bare_engine_core == "same" else args.bare_engine_core
    resolved = subprocess.run(
        [*run_cmd, "--print-config"], check=True, capture_output=True, text=True
    ).stdout
    config_path = work / "resolved-config.json"
    work.mkdir(parents=True, exist_ok=True)
    config_path.write_text(resolved)

    def run_harness(trial: int) -> tuple[dict[str, Any], dict[str, str | None]]:
        harness = common.timed_process(run_cmd, log=work / f"run-{trial}.log")
        harness["session"] = common.session(run_dir)
        provenance = common.manifest(run_dir).get("engine_provenance") or {}
        if provenance.get("engine_core") != harness_core:
            raise RuntimeError(f"the harness's engine core ran {provenance.get('engine_core')}")
        return harness, common.answers(run_dir)

    def run_bare(trial: int) -> tuple[dict[str, Any], dict[str, str | None]]:
        result_path = work / f"bare-{trial}.json"
        bare_cmd = [
            sys.executable, __file__, "--bare", str(config_path), str(result_path), bare_core
        ]  # fmt: skip
        bare_side = common.timed_process(bare_cmd, log=work / f"bare-{trial}.log")
        bare_result = json.loads(result_path.read_text())
        bare_answers = bare_result.pop("answers")
        bare_side.update(bare_result)
        return bare_side, bare_answers

    trials: list[dict[str, Any]] = []
    for trial in range(args.repeats):  # alternate which side goes first: drift cancels out
        if trial % 2 == 0:
            harness, harness_answers = run_harness(trial)
            bare_side, bare_answers = run_bare(trial)
        else:
            bare_side, bare_answers = run_bare(trial)
            harness, harness_answers = run_harness(trial)
        same = sum(harness_answers.get(k) == v for k, v in bare_answers.items())
        s = harness["session"]
        trials.append(
            {
                "harness": harness,
                "bare": bare_side,
                "answers_equal": f"{same}/{len(bare_answers)}",
                "eval_over_generate": common.ratio(s["eval_s"], bare_side["generate_s"]),
                "eval_over_decode_plus_generate": common.ratio(
                    s["eval_s"], bare_side["decode_s"] + bare_side["generate_s"]
                ),
                "wall_over_wall": common.ratio(harness["wall_s"], bare_side["wall_s"]),
            }
        )
        print(json.dumps(trials[-1]["eval_over_generate"]), file=sys.stderr)

    def median(key: str) -> float:
        return round(statistics.median(t[key] for t in trials), 3)

    best_h = min(trials, key=lambda t: t["harness"]["session"]["eval_s"])["harness"]
    best_b = min(trials, key=lambda t: t["bare"]["generate_s"])["bare"]
    s = best_h["session"]
    figures = {
        "benchmark": NAME,
        "date": common.now_utc(),
        "machine": common.machine(),
        "env": env,
        "command": f".venv/bin/python bench/{Path(__file__).name} --n {args.n} "
        f"--max-num-seqs {args.max_num_seqs} --repeats {args.repeats} "
        f"--engine-core {args.engine_core} --bare-engine-core {args.bare_engine_core}",
        "data": {"root": common.rel(data), **synth},
        "settings": {
            "harness_engine_core": harness_core,
            "bare_engine_core": bare_core,
            "max_num_seqs": args.max_num_seqs,
            "dtype": "float32",
            "structured": True,
            "max_tokens": 48,
            "image_workers": 2,
            "prefetch": 8,
        },
        "headline": {
            "eval_over_generate_median_of_pairs": median("eval_over_generate"),
            "eval_over_generate_per_pair": [t["eval_over_generate"] for t in trials],
            "goal": "<= 0.80",
            # the same work on both sides: the bare script's own decode counted
            "eval_over_decode_plus_generate_median_of_pairs": median(
                "eval_over_decode_plus_generate"
            ),
            "eval_over_decode_plus_generate_per_pair": [
                t["eval_over_decode_plus_generate"] for t in trials
            ],
            "eval_s": s["eval_s"],
            "bare_generate_s": best_b["generate_s"],
            "eval_over_generate_best_vs_best": common.ratio(s["eval_s"], best_b["generate_s"]),
            "harness_eval_cpu_s_per_sample": (s.get("frontend") or {}).get("cpu_s_per_sample"),
            "bare_generate_cpu_s_per_sample": best_b.get("generate_cpu_s_per_sample"),
            "harness_stages": {
                "decode_ms_per_image": (s.get("images") or {}).get("decode_ms_per_image"),
                "prepare_ms_per_image": (s.get("images") or {}).get("prepare_ms_per_image"),
                "enqueue_ms_per_request": (s.get("frontend") or {}).get("enqueue_ms_per_request"),
                "vllm": (s.get("frontend") or {}).get("vllm_stages_ms_per_request"),
                "window": (s.get("frontend") or {}).get("window"),
                "steps_with_queued_work_share": (s.get("frontend") or {}).get(
                    "steps_with_queued_work_share"
                ),
                "starved_wait_s": (s.get("frontend") or {}).get("starved_wait_s"),
                "paths": (s.get("images") or {}).get("paths"),
            },
            "bare_stages": {
                "decode_ms_per_screenshot": best_b.get("decode_ms_per_screenshot"),
                "vllm": best_b.get("vllm_stages_ms_per_request"),
            },
            "bare_generate_cores_busy": best_b.get("generate_cores_busy"),
            "harness_total_wall_s": best_h["wall_s"],
            "bare_total_wall_s": best_b["wall_s"],
            "total_wall_over_bare_total_wall": common.ratio(best_h["wall_s"], best_b["wall_s"]),
            "total_wall_over_bare_generate": common.ratio(best_h["wall_s"], best_b["generate_s"]),
            "harness_load_s": s.get("load_s"),
            "bare_load_s": best_b["load_s"],
            "bare_decode_s": best_b["decode_s"],
            "engine_idle_s": s.get("engine_idle_s"),
            "engine_idle_share_of_eval": common.ratio(s.get("engine_idle_s", 0), s["eval_s"]),
            "harness_samples_per_s": s.get("samples_per_s"),
            "bare_samples_per_s": round(best_b["samples"] / best_b["generate_s"], 3),
            "any_trial_disturbed": any(
                t[side]["disturbed"] for t in trials for side in ("harness", "bare")
            ),
        },
        "trials": trials,
        "total_runtime_s": round(time.perf_counter() - started, 1),
        "loadavg_1min_end": round(os.getloadavg()[0], 2),
    }
    tag = (
        "" if (harness_core, bare_core) == ("inline", "inline") else f"-{harness_core}-{bare_core}"
    )
    path = common.write_figures(NAME + tag, figures)
    print(json.dumps(figures["headline"], indent=1))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
