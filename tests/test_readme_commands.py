"""Every command the README and the manual show runs, in page order, on the tiny model and
synthetic data.

Each `screenspot-eval` command of the bash blocks of README.md and docs/*.md (collected by
``test_readme.readme_commands``: README first, then the pages in the order docs/README.md lists
them, a line shown on two pages once) is taken as written and made
CPU-sized by rewriting only what names the machine: the hub model becomes the tiny checkpoint
(a Qwen-VL model or a preset the tiny Qwen2.5-VL twin),
the hub dataset a synthetic release in the official layout, `results/...` a temporary folder,
ports free ones, `$KEY` a key; engine-facing commands get fp32 / short-context flags and a small
`--limit`. The servers are started exactly as docs/serving.md starts them (`serve ...` in the
background), on 127.0.0.1. `make demo` runs as written; `make test` is this suite itself (CI).
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_helpers import cli_env, popen_cli, run_cli
from conftest import VERIFY_COMMAND
from test_readme import readme_commands

pytestmark = [pytest.mark.engine, pytest.mark.server]

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = readme_commands("screenspot-eval ")
#: CPU-sized engine flags appended to every command that starts an engine.
CPU_ENGINE = [
    *("--dtype", "float32", "--max-model-len", "2048", "--max-num-seqs", "4"),
    "--enforce-eager",  # no torch.compile of the tiny model at each of the ~10 engine starts
]
CPU_RUN = ["--max-soft-tokens", "70", "--max-tokens", "24", "--limit", "6", "--quiet"]
#: Commands that evaluate samples in an engine: they get the small data and CPU flags.
EVALUATING = ("run", "compare", "sweep")
#: Commands covered elsewhere: shared with the variant tests (three engine starts, once).
SHARED = {"verify-embedder"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Machine:
    """How README commands are made CPU-sized here: every rewrite in one place."""

    def __init__(self, model: Path, data: Path, work: Path, qwen: Path):
        self.model, self.data, self.work, self.qwen = model, data, work, qwen
        self.key = secrets.token_hex(8)
        self.ports: dict[str, int] = {}

    def port(self, readme_port: str) -> str:
        return str(self.ports.setdefault(readme_port, free_port()))

    def rewrite(self, command: str) -> list[str]:
        command = command.replace('"$KEY"', self.key)
        command = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{self.port(m[1])}", command)
        args = shlex.split(command)[1:]
        out: list[str] = []
        for i, arg in enumerate(args):
            previous = args[i - 1] if i else ""
            if previous in ("--model", "-m"):
                arg = str(self.qwen if "qwen" in arg.lower() else self.model)
            elif previous == "--port":
                arg = self.port(arg)
            elif arg.startswith(("results/", "data/")):
                arg = str(self.work / arg)
            elif arg == "likaixin/ScreenSpot-Pro":
                arg = str(self.data)
            elif arg.startswith("configs/"):
                arg = str(ROOT / arg)
            out.append(arg)
        return out + self.cpu_flags(out)

    def cpu_flags(self, args: list[str]) -> list[str]:
        """Small data and CPU engine flags for the commands that evaluate or serve."""
        name = args[0]
        if name == "serve":
            return list(CPU_ENGINE)
        evaluates = name in EVALUATING and args[1:2] != [] and args[1].startswith("-")
        if not evaluates:  # e.g. `compare RUN_A RUN_B`, `report`, `data check`
            return []
        qwen = "--preset" in args or str(self.qwen) in args
        run = [f for f in CPU_RUN if f not in ("--max-soft-tokens", "70")] if qwen else CPU_RUN
        flags = ["--data", str(self.data), *run]
        if "--out" not in args:  # a config's own results folder: here, a temporary one
            flags += ["--out", str(self.work / "results" / f"from-config-{len(args)}")]
        if not any(a.startswith("--endpoint") for a in args):  # in-process: an engine here
            flags += CPU_ENGINE
            if "--model" not in args:
                flags += ["--model", str(self.qwen if qwen else self.model)]
        return flags


def wait_ready(proc: subprocess.Popen[str], url: str, key: str | None) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"serve exited: {proc.stdout.read() if proc.stdout else ''}"
        try:
            if httpx.get(f"{url}/screenspot/embedder", headers=headers, timeout=5).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} not ready")


def route_status(port: str, key: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    answer = httpx.get(f"http://127.0.0.1:{port}/screenspot/embedder", headers=headers, timeout=30)
    return answer.status_code, answer.json()


@pytest.fixture(scope="module")
def readme_run(
    tiny_model_dir: Path,
    synth_data: Path,
    tiny_qwen_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """Run every README and manual command once, in order. The servers are probed once all
    commands ran (alive? their route with and without the key?) and stopped before the tests
    look, so no idle engine competes with the next tests for the cores."""
    machine = Machine(
        tiny_model_dir, synth_data, tmp_path_factory.mktemp("readme"), tiny_qwen_model
    )
    done: dict[str, Any] = {"machine": machine, "results": [], "servers": [], "probes": []}
    done["repo_results_before"] = sorted(p.name for p in (ROOT / "results").iterdir())
    try:
        for command in COMMANDS:
            args = machine.rewrite(command)
            if args[0] in SHARED:
                done["results"].append((command, args, None))
                continue
            if args[0] == "serve":
                log = machine.work / f"serve-{len(done['servers'])}.log"
                proc = popen_cli([*args, "--log", str(log)])
                done["servers"].append((args, proc))
                port = args[args.index("--port") + 1]
                wait_ready(
                    proc, f"http://127.0.0.1:{port}", machine.key if "--api-key" in args else None
                )
                done["results"].append((command, args, proc))
                continue
            done["results"].append((command, args, run_cli(args, timeout=900)))
        for args, proc in done["servers"]:
            port = args[args.index("--port") + 1]
            keyed = "--api-key" in args
            done["probes"].append(
                {
                    "keyed": keyed,
                    "alive": proc.poll() is None,
                    "without_key": route_status(port, None),
                    "with_key": route_status(port, machine.key) if keyed else None,
                }
            )
    finally:
        for _, proc in done["servers"]:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)
    done["repo_results_after"] = sorted(p.name for p in (ROOT / "results").iterdir())
    yield done


def test_the_readme_commands_cover_every_command_they_document(readme_run):
    names = {args[0] for _, args, _ in readme_run["results"]}
    assert {"run", "compare", "sweep", "serve", "verify-embedder", "report", "data"} <= names


def test_the_rewritten_commands_write_nothing_into_the_repository(readme_run):
    assert readme_run["repo_results_after"] == readme_run["repo_results_before"]


def test_every_readme_command_exits_zero(readme_run):
    failed = []
    for command, args, proc in readme_run["results"]:
        if isinstance(proc, subprocess.CompletedProcess) and proc.returncode != 0:
            failed.append(f"{command}\n  -> {shlex.join(args)}\n{proc.stderr[-2000:]}")
    assert not failed, "\n\n".join(failed)


def test_servers_started_as_the_readme_says_stay_up_and_guard_their_route(readme_run):
    probes = readme_run["probes"]
    assert len(probes) == 2 and all(p["alive"] for p in probes)
    keyed = [p for p in probes if p["keyed"]]
    assert keyed, "docs/serving.md shows a server with an API key"
    for probe in keyed:
        assert probe["without_key"][0] == 401
        status, report = probe["with_key"]
        assert status == 200 and report["config_variant"] == "pre"
    for probe in probes:
        if not probe["keyed"]:
            status, report = probe["without_key"]
            assert status == 200 and report["config_variant"] == "post"


def test_run_against_a_server_without_model_takes_the_servers_model(readme_run):
    runs = [
        args
        for _, args, _ in readme_run["results"]
        if args[0] == "run" and any(a.startswith("--endpoint") for a in args)
    ]
    assert runs and all("--model" not in args for args in runs)
    out = Path(runs[0][runs[0].index("--out") + 1])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["engine"]["model"] == str(readme_run["machine"].model)
    assert manifest["effective_variant"] == "post"
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 6


def test_the_readme_compare_commands_write_their_reports(readme_run):
    compares = [
        Path(args[args.index("--out") + 1])
        for _, args, _ in readme_run["results"]
        if args[0] == "compare" and "--out" in args
    ]
    assert len(compares) >= 2
    for out in compares:
        for name in ("comparison.md", "comparison.csv", "flips.csv", "report.html"):
            assert (out / name).is_file(), out / name


def test_the_readme_repeat_commands_report_the_noise_floor(readme_run):
    repeated = [args for _, args, _ in readme_run["results"] if "--repeats" in args]
    assert {args[0] for args in repeated} == {"run", "compare"}
    for args in repeated:
        out = Path(args[args.index("--out") + 1])
        name = "noise_floor.csv" if args[0] == "run" else "repeats.csv"
        table = (out / name).read_text()
        assert table.count("\n") > 2, table  # the overall row and per-slice rows
    [aa] = [a for a in repeated if a[0] == "compare"]
    report = (Path(aa[aa.index("--out") + 1]) / "comparison.md").read_text()
    assert "A/A control" in report and "With repeats" in report


def test_the_readme_verify_command_is_the_one_the_variant_tests_run(verified_embedder):
    """`verify-embedder` runs once per session (three engines), shared with the variant tests;
    this pins that what runs there is the command docs/running.md shows."""
    [command] = [c for c in COMMANDS if shlex.split(c)[1] == "verify-embedder"]
    readme_args = shlex.split(command)[1:]
    assert readme_args[0] == VERIFY_COMMAND[0]
    assert readme_args[1:2] == VERIFY_COMMAND[1:2]
    proc, checks = verified_embedder
    assert proc.returncode == 0 and set(checks) == {"pre", "post", "native"}


def test_make_demo_runs_as_written(tmp_path):
    """The README's first command, as a user runs it on a fresh clone (the venv exists: CI's
    `make test` made it; `make` then only runs the demo)."""
    proc = subprocess.run(
        ["make", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "pre-norm vs post-norm" in proc.stdout
    for name in ("comparison.md", "flips.csv", "report.html", "deltas.png"):
        assert (ROOT / "results" / "demo" / name).is_file()


def test_the_readme_dtype_ab_is_proven_inside_both_engines_and_named_in_the_headline(
    readme_run,
):
    found = [
        (args, proc)
        for _, args, proc in readme_run["results"]
        if args[0] == "compare" and any(a.startswith("dtype=") for a in args)
    ]
    assert found, "docs/comparing.md shows an engine-side factor A/B"
    args, proc = found[0]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'factor dtype "float32" -> "bfloat16": ' in proc.stdout
    out = Path(args[args.index("--out") + 1])
    for side, dtype in (("a-pre", "float32"), ("b-pre", "bfloat16")):
        manifest = json.loads((out / side / "manifest.json").read_text())
        (reading,) = manifest["side"]["readings"]
        assert reading["key"] == "dtype" and reading["resolved"] == dtype and reading["reached"]
        assert manifest["engine_provenance"]["parameter_dtypes"] == [dtype]
        assert manifest["side"]["factor"] == {"dtype": ["float32", "bfloat16"]}
        assert manifest["counts"]["recorded"] == manifest["counts"]["selected"] > 0


def test_the_manuals_protocol_ab_names_the_factor_and_each_sides_calls(readme_run):
    found = [
        (args, proc)
        for _, args, proc in readme_run["results"]
        if args[0] == "compare" and "protocol=reground" in args
    ]
    assert found, "docs/protocols.md shows the protocol as an A/B factor"
    args, proc = found[0]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'factor protocol "one-shot" -> "reground": ' in proc.stdout
    [cost] = [line for line in proc.stdout.splitlines() if line.startswith("cost per sample: ")]
    assert "A 1.00 calls, " in cost
    b_calls = float(cost.split("; B ")[1].split(" calls")[0])
    # a first answer without a click ends its sample at one call (the random twin's free-text
    # answers, cut at 24 tokens, rarely hold one: tests/test_zoom_engine.py shows step 2)
    assert 1.0 <= b_calls <= 2.0
    out = Path(args[args.index("--out") + 1])
    steps = [json.loads(x) for x in (out / "b-pre" / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == round(b_calls * 6) and sum(s["step"] == 1 for s in steps) == 6
    assert all(s["outcome"] in ("continued", "last", "no-click", "outside-view") for s in steps)
    assert not (out / "a-pre" / "steps.jsonl").exists()
