"""A/B with one engine versus two (issue 8): wall time of `compare --engines one` vs `two`.

    .venv/bin/python bench/ab_one_vs_two_engines.py [--n 200] [--max-num-seqs 8] [--repeats 2]

Both modes run the whole ``compare`` command (post as A, pre as B) on the same ``n`` synthetic
samples (screenshots 1920x1080 up to 3840x2160) with the tiny model, fp32, structured decoding:

* ``--engines one``: one engine; the in-place self-check, A, switch the embedder, B;
* ``--engines two``: a fresh engine per variant (the model is loaded twice).

The modes alternate ``repeats`` times (one, two, one, two); the best wall time of each counts.
Ratio = one / two (below 1: one engine saves time). Per-side load and evaluation times come from
the two run manifests. Both modes must record the same answers for every sample.
Written to ``bench/out/ab_one_vs_two_engines.json``. Runtime on 2 cores: about 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import common  # bench/common.py (the script's folder is on sys.path)

NAME = "ab_one_vs_two_engines"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--max-width", type=int, default=3840)
    parser.add_argument("--max-num-seqs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = common.parse_args(
        parser, n=common.SMOKE_SAMPLES, max_width=common.SMOKE_MAX_WIDTH, repeats=1
    )
    env = common.set_env_defaults()
    started = time.perf_counter()
    work = common.out_dir() / NAME
    model = common.ensure_tiny_model()
    data, synth = common.ensure_release(
        f"mixed{args.n}-w{args.max_width}", args.n, max_width=args.max_width, target_scale=4.0
    )

    def compare(mode: str, trial: int) -> dict[str, Any]:
        out = work / mode
        command = [
            common.CLI, "compare", "--model", str(model), "--a", "post", "--b", "pre",
            "--engines", mode, "--data", str(data), "--out", str(out), *common.engine_args(),
            "--max-num-seqs", str(args.max_num_seqs), *common.DECODING_ARGS, "--restart",
        ]  # fmt: skip
        result = common.timed_process(command, log=work / f"{mode}-{trial}.log")
        sides = {side: out / side for side in ("a-post", "b-pre")}
        result["sessions"] = {side: common.session(path) for side, path in sides.items()}
        result["answers"] = {side: common.answers(path) for side, path in sides.items()}
        return result

    trials: dict[str, list[dict[str, Any]]] = {"one": [], "two": []}
    for trial in range(args.repeats):
        for mode in ("one", "two"):
            trials[mode].append(compare(mode, trial))

    reference = trials["two"][0]["answers"]
    mismatches = 0
    for result in trials["one"] + trials["two"]:
        answers = result.pop("answers")
        mismatches += sum(
            answers[side].get(k) != v for side in reference for k, v in reference[side].items()
        )
    best = {mode: min(results, key=lambda r: r["wall_s"]) for mode, results in trials.items()}

    def phase(mode: str, key: str) -> float:
        return round(sum(s.get(key, 0.0) for s in best[mode]["sessions"].values()), 3)

    figures = {
        "benchmark": NAME,
        "date": common.now_utc(),
        "machine": common.machine(),
        "env": env,
        "command": f".venv/bin/python bench/ab_one_vs_two_engines.py --n {args.n} "
        f"--max-num-seqs {args.max_num_seqs} --repeats {args.repeats}",
        "data": {"root": common.rel(data), **synth},
        "settings": {
            "max_num_seqs": args.max_num_seqs,
            "dtype": "float32",
            "structured": True,
            "max_tokens": 48,
            "a": "post",
            "b": "pre",
        },
        "headline": {
            "one_engine_wall_s": best["one"]["wall_s"],
            "two_engines_wall_s": best["two"]["wall_s"],
            "one_over_two": common.ratio(best["one"]["wall_s"], best["two"]["wall_s"]),
            "one_engine_eval_s": phase("one", "eval_s"),
            "two_engines_eval_s": phase("two", "eval_s"),
            # everything but evaluation: start-up, engine load(s), self-check, switch, report
            "one_engine_outside_eval_s": round(best["one"]["wall_s"] - phase("one", "eval_s"), 1),
            "two_engines_outside_eval_s": round(best["two"]["wall_s"] - phase("two", "eval_s"), 1),
            "two_engines_load_s_in_manifests": phase("two", "load_s"),
            "answer_mismatches_across_all_trials": mismatches,
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
