"""Every benchmark in bench/README.md's table runs at smoke size and writes its figures (issue 25).

Each benchmark script runs once, as its plainest row of the table (``SCREENSPOT_BENCH_SMOKE_ALL=1``:
every row and ``(or `...`)`` alternative too), as the README shows it,
with ``SCREENSPOT_BENCH_SMOKE=1`` (bench/common.py: a few samples, screenshots 640 px wide, one
repeat, eager engines) and ``SCREENSPOT_BENCH_OUT`` pointing at one temporary folder, which the
commands share (the tiny model and the synthetic releases are built once). A command passes when
it exits 0 and writes its JSON, marked ``"smoke": true``, with its figures, into that folder
(so nothing goes into the repository). The figures' values mean nothing at this size; a full-size run is
``bench/README.md``'s business.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "bench" / "README.md"
TIMEOUT_S = 600

HARNESS = [
    "headline.eval_over_generate_median_of_pairs",
    "headline.eval_over_decode_plus_generate_median_of_pairs",
    "headline.total_wall_over_bare_total_wall",
    "trials",
]
MEMORY = ["headline.full_over_small", "headline.peak_rss_mb_small", "headline.peak_rss_mb_full"]
FRONTEND = [
    "cells",
    "enqueue_ms_280_original",
    "enqueue_ms_1120_prepared+uuid",
    "prepare_ms_1120_prepared+uuid",
]

#: README command (without `.venv/bin/python`) -> (figures file name, keys it must hold, with
#: a dot between levels; each must be present and not null).
EXPECTED: dict[str, tuple[str, list[str]]] = {
    "bench/image_pipeline.py --dir /tmp/ssbench": (
        "image_pipeline",
        ["stream_vs_hold_ratio", "speedup", "pool_cpu_per_wall"],
    ),
    "bench/harness_overhead.py --repeats 3": ("harness_overhead", HARNESS),
    "bench/harness_overhead.py --repeats 3 --bare-engine-core process": (
        "harness_overhead-inline-process",
        HARNESS,
    ),
    "bench/memory_bound.py": ("memory_bound", MEMORY),
    "bench/memory_bound.py --engine-arg mm_processor_cache_gb=0 --tag nocache": (
        "memory_bound-nocache",
        MEMORY,
    ),
    "bench/server_vs_inprocess.py --repeats 2": (
        "server_vs_inprocess",
        [
            "headline.server_over_inprocess_throughput",
            "headline.per_transfer.auto.server_over_inprocess_throughput_median",
            "headline.per_transfer.bytes.server_over_inprocess_throughput_median",
            "headline.answers_equal",
        ],
    ),
    "bench/ab_one_vs_two_engines.py --repeats 2": (
        "ab_one_vs_two_engines",
        ["headline.one_over_two", "headline.answer_mismatches_across_all_trials"],
    ),
    "bench/gpu_projection.py --frontend-only --engine-core inline": (
        "gpu_projection-frontend-inline",
        FRONTEND,
    ),
    "bench/gpu_projection.py --frontend-only --engine-core process": (
        "gpu_projection-frontend-process",
        FRONTEND,
    ),
    "bench/gpu_projection.py": (
        "gpu_projection",
        ["measured_here.per_resolution.mean_over_mix", "measured_here.vllm_frontend", "projection"],
    ),
    "bench/zoom_protocol.py --repeats 2": (
        "zoom_protocol",
        ["headline.reground_over_one_shot", "headline.reground_calls_per_sample"],
    ),
    "bench/soak.py": ("soak", ["recorded_once", "records_lost", "outcome_mismatches"]),
}
#: Scripts that start no vLLM engine, and those that start a server.
NO_ENGINE = {"image_pipeline"}
SERVERS = {"server_vs_inprocess", "soak"}


def readme_commands() -> list[str]:
    """The table's commands: each row's first code span, and its ``(or `x`)`` alternative
    (the code span's last word replaced by ``x``)."""
    commands = []
    for line in README.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        command = re.search(r"`([^`]+)`", line).group(1)
        commands.append(command)
        for alternative in re.findall(r"\(or `([^`]+)`\)", line):
            commands.append(command.rsplit(" ", 1)[0] + " " + alternative)
    return [c.removeprefix(".venv/bin/python ") for c in commands]


#: Set to 1 to run every row; by default each script runs once, as its plainest row (fewest
#: arguments): the other rows only change where the engine core runs or a cache setting, and
#: their nine engine starts would cost CI about three minutes.
ALL_ROWS = os.environ.get("SCREENSPOT_BENCH_SMOKE_ALL") == "1"


def primary_commands(commands: list[str]) -> set[str]:
    """Per script, the row with the fewest arguments."""
    best: dict[str, str] = {}
    for command in commands:
        script = command.split()[0]
        if script not in best or len(command.split()) < len(best[script].split()):
            best[script] = command
    return set(best.values())


def _param(command: str) -> Any:
    script = Path(command.split()[0]).stem
    marks = [] if script in NO_ENGINE else [pytest.mark.engine]
    if not ALL_ROWS and command not in primary_commands(readme_commands()):
        marks.append(pytest.mark.skip(reason="a variant row: SCREENSPOT_BENCH_SMOKE_ALL=1 runs it"))
    if script in SERVERS:
        marks.append(pytest.mark.server)
    ident = re.sub(r"[^A-Za-z0-9=_.]+", "-", command.removeprefix("bench/").replace(".py", ""))
    return pytest.param(command, marks=marks, id=ident)


def test_the_table_and_the_expected_figures_agree() -> None:
    """A new benchmark in the README needs its expected figures here (and the other way)."""
    assert sorted(readme_commands()) == sorted(EXPECTED)


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """One output folder for every command; the session's tiny model is the one bench/common.py
    would build (`screenspot-eval tiny-model`, default seed)."""
    out = tmp_path_factory.mktemp("bench-out")
    (out / "tiny-gemma4").symlink_to(tiny_model_dir, target_is_directory=True)
    return out


def _lookup(figures: dict[str, Any], key: str) -> Any:
    value: Any = figures
    for part in key.split("."):
        assert isinstance(value, dict) and part in value, f"no {key!r} in the figures"
        value = value[part]
    return value


@pytest.mark.parametrize("command", [_param(c) for c in readme_commands()])
def test_benchmark_smoke(command: str, bench_out: Path) -> None:
    name, keys = EXPECTED[command]
    args = [sys.executable]
    for arg in shlex.split(command):
        # a scratch folder the README puts in /tmp goes to the smoke output folder instead
        args.append(str(bench_out / "tmp" / Path(arg).name) if arg.startswith("/tmp/") else arg)
    env = {**os.environ, "SCREENSPOT_BENCH_SMOKE": "1", "SCREENSPOT_BENCH_OUT": str(bench_out)}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    log = bench_out / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the engines and servers it started too
            proc.wait()
            pytest.fail(f"{command} ran over {TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
    seconds = time.monotonic() - started
    assert code == 0, f"{command} exited with {code}:\n{log.read_text(errors='replace')[-4000:]}"
    path = bench_out / f"{name}.json"
    assert path.is_file(), f"{command} wrote no {path.name}:\n{log.read_text()[-2000:]}"
    figures = json.loads(path.read_text())
    assert figures.get("smoke") is True
    for key in keys:
        assert _lookup(figures, key) is not None, f"{key} is null in {path.name}"
    print(f"{command}: {seconds:.0f} s")
