"""A 2-call zoom protocol versus one-shot (issue 32): does the engine's batch stay full?

    .venv/bin/python bench/zoom_protocol.py [--n 200] [--max-num-seqs 8] [--repeats 2]

Both sides run the whole ``run`` command on the same ``n`` synthetic samples (screenshots up to
3840 px wide, so ReGround's 1024 px crops are real crops) with the tiny model, fp32, structured
decoding, ``--max-num-seqs`` sequences in the engine at once:

* ``one-shot``: one request per sample, the whole screenshot (one streaming pass);
* ``reground``: step 1 as one-shot, then step 2: every sample whose first answer gave a click
  sends a 1024 x 1024 crop around it (a second streaming pass, crops cut and prepared in the
  decode pool).

The sides alternate ``repeats`` times; the best of each counts. Headline: ``reground_over_one_shot``
= reground's evaluation time over one-shot's (manifest ``eval_s``: from the first request to the
last record, engine start-up excluded, the same on both sides); goal <= 2.2 (two passes, each
with a full batch). Also: the same ratio of whole-process wall times, and the calls per sample
reground made (below 2 where a first answer gave no click).
Written to ``bench/out/zoom_protocol.json``. Runtime on 2 cores: about 8 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import common  # bench/common.py (the script's folder is on sys.path)

NAME = "zoom_protocol"
PROTOCOLS = ("one-shot", "reground")


def calls_per_sample(run_dir: Any) -> float:
    """Mean ``calls`` over the run's records (reground: 1 or 2 per sample)."""
    lines = (run_dir / "predictions.jsonl").read_text().splitlines()
    calls = [json.loads(line).get("calls", 1) for line in lines if line.strip()]
    return round(sum(calls) / len(calls), 3) if calls else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--max-width", type=int, default=3840)
    parser.add_argument("--max-num-seqs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = common.parse_args(parser, n=common.SMOKE_SAMPLES, max_width=1600, repeats=1)
    env = common.set_env_defaults()
    started = time.perf_counter()
    work = common.out_dir() / NAME
    model = common.ensure_tiny_model()
    data, synth = common.ensure_release(
        f"mixed{args.n}-w{args.max_width}", args.n, max_width=args.max_width, target_scale=4.0
    )

    def run(protocol: str, trial: int) -> dict[str, Any]:
        out = work / protocol
        command = [
            common.CLI, "run", "--model", str(model), "--norm", "pre", "--protocol", protocol,
            "--data", str(data), "--out", str(out), *common.engine_args(),
            "--max-num-seqs", str(args.max_num_seqs), *common.DECODING_ARGS, "--restart",
        ]  # fmt: skip
        result = common.timed_process(command, log=work / f"{protocol}-{trial}.log")
        result["session"] = common.session(out)
        result["calls_per_sample"] = calls_per_sample(out)
        return result

    trials: dict[str, list[dict[str, Any]]] = {p: [] for p in PROTOCOLS}
    for trial in range(args.repeats):
        for protocol in PROTOCOLS:
            trials[protocol].append(run(protocol, trial))
    best = {
        p: min(results, key=lambda r: r["session"].get("eval_s") or float("inf"))
        for p, results in trials.items()
    }
    eval_s = {p: best[p]["session"].get("eval_s") for p in PROTOCOLS}
    figures = {
        "benchmark": NAME,
        "date": common.now_utc(),
        "machine": common.machine(),
        "env": env,
        "command": f".venv/bin/python bench/zoom_protocol.py --n {args.n} "
        f"--max-num-seqs {args.max_num_seqs} --repeats {args.repeats}",
        "data": {"root": common.rel(data), **synth},
        "settings": {
            "max_num_seqs": args.max_num_seqs,
            "dtype": "float32",
            "structured": True,
            "max_tokens": 48,
            "variant": "pre",
        },
        "headline": {
            "one_shot_eval_s": eval_s["one-shot"],
            "reground_eval_s": eval_s["reground"],
            "reground_over_one_shot": common.ratio(eval_s["reground"], eval_s["one-shot"]),
            "goal_at_most": 2.2,
            "wall_ratio": common.ratio(best["reground"]["wall_s"], best["one-shot"]["wall_s"]),
            "reground_calls_per_sample": best["reground"]["calls_per_sample"],
            "any_trial_disturbed": any(r["disturbed"] for rs in trials.values() for r in rs),
        },
        "trials": trials,
        "total_runtime_s": round(time.perf_counter() - started, 1),
        "loadavg_1min_end": round(os.getloadavg()[0], 2),
    }
    path = common.write_figures(NAME, figures)
    print(json.dumps(figures["headline"], indent=1))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
