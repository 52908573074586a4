"""The study over the tiny family twins that the family and study engine tests share: one
`study` command (post vs pre on 8 samples per twin, CPU-sized), stopped with Ctrl-C in the
middle of its second cell and run again to the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cli_helpers import popen_cli, run_cli

#: The twins of the study, in cell order (E4B differs from E2B only in sizes: its own test).
TWINS = ("e2b", "26b-a4b", "31b", "12b")
SAMPLES = 8
#: CPU-sized settings of every cell, as dotted run settings (what ENGINE_ARGS and
#: DECODING_ARGS set on the command line).
CPU_SETTINGS = {
    "engine.dtype": "float32",
    "engine.max_model_len": 2048,
    "engine.max_num_seqs": 1,
    "engine.enforce_eager": True,
    "sampling.structured": True,
    "sampling.max_tokens": 48,
}


@dataclass
class FamilyStudy:
    file: Path
    out: Path
    interrupted: subprocess.CompletedProcess[str]
    resumed: subprocess.CompletedProcess[str]
    before_resume: dict[str, object]

    @property
    def both(self) -> subprocess.CompletedProcess[str]:
        """The two processes' output as one (the first cell ran in the first one)."""
        return subprocess.CompletedProcess(
            self.resumed.args,
            self.resumed.returncode,
            self.interrupted.stdout + self.resumed.stdout,
            self.interrupted.stderr + self.resumed.stderr,
        )


def write_study(path: Path, twins: dict[str, Path], data: Path, out: Path) -> Path:
    """A study file over ``twins``: post (A) vs pre (B), the CPU settings, ``SAMPLES`` each."""
    lines = [
        'name = "family-twins"',
        f'out = "{out}"',
        "",
        "[settings]",
        *(f'"{k}" = {json.dumps(v)}' for k, v in CPU_SETTINGS.items()),
        f'"data.source" = "{data}"',
        f'"data.selection.limit" = {SAMPLES}',
        "",
        "[a]",
        'variant = "post"',
        "[b]",
        'variant = "pre"',
    ]
    for name in TWINS:
        lines += ["", "[[checkpoints]]", f'name = "{name}"', f'model = "{twins[name]}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def wait_for_lines(proc: subprocess.Popen[str], path: Path, n: int) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"the study ended before {path} had {n} lines")


def run_family_study(twins: dict[str, Path], data: Path, work: Path) -> FamilyStudy:
    """The study, stopped in its second cell (3 of its A side's records on disk) and resumed."""
    file = write_study(work / "study.toml", twins, data, work / "study")
    args = ["study", str(file), "--quiet"]
    proc = popen_cli(args)
    wait_for_lines(proc, work / "study" / "cells" / TWINS[1] / "a-post" / "predictions.jsonl", 3)
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=180)
    interrupted = subprocess.CompletedProcess(args, proc.returncode, output, "")
    first = work / "study" / "cells" / TWINS[0]
    before = {
        "first_cell_record": (first / "cell.json").stat().st_mtime_ns,
        "first_cell_records": (first / "b-pre" / "predictions.jsonl").read_bytes(),
        "second_a_records": len(
            (work / "study" / "cells" / TWINS[1] / "a-post" / "predictions.jsonl")
            .read_text()
            .splitlines()
        ),
    }
    resumed = run_cli(args, timeout=1800)
    return FamilyStudy(file, work / "study", interrupted, resumed, before)
