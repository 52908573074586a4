"""Zoom protocols in the real engine (tiny Gemma 4 twin, screenshots above 1024 px).

A ``run --protocol reground`` is stopped with Ctrl-C in step 2 and resumed: no step 1 runs
again, and every sample's recorded crop and final click equal ReGround's geometry, written out
again here, applied to its recorded first click. (The protocol as a ``compare`` factor runs
as docs/protocols.md shows it, in tests/test_readme_commands.py.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from cli_helpers import popen_cli, run_args, run_cli
from zoom_reference import reground_view

pytestmark = pytest.mark.engine

N = 24


@pytest.fixture(scope="module")
def large_screens(tmp_path_factory) -> Path:
    """Screenshots of 1600 px width (crops of 1024 px are real crops) with large targets."""
    from screenspot_eval.data.synth import synthesize_release

    root = tmp_path_factory.mktemp("zoom-data")
    synthesize_release(root, N, seed=5, max_width=1600, target_scale=8.0)
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_lines(proc, path: Path, n: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.02)
    raise AssertionError("the run ended before step 2 could be interrupted")


NUMBER = r"(-?\d+(?:\.\d+)?)"
BOX_2D = re.compile(r"box_2d\D*?" + r"\D+?".join([NUMBER] * 4) + r"[^\d.]")


def yx1000_point(raw: str) -> tuple[float, float] | None:
    """The centre of the first ``box_2d`` of a structured answer, as (x, y) in 0-1000 (None:
    the answer was cut before its fourth number ended)."""
    found = BOX_2D.search(raw)
    if found is None:
        return None
    y1, x1, y2, x2 = (float(n) for n in found.groups())
    return ((x1 + x2) / 2, (y1 + y2) / 2)


@pytest.fixture(scope="module")
def reground_run(tiny_model_dir, large_screens, tmp_path_factory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("zoom") / "reground"
    args = run_args(tiny_model_dir, large_screens, out, "--protocol", "reground")
    proc = popen_cli(args)
    wait_for_lines(proc, out / "steps.jsonl", N + 2)  # step 1 done, step 2 under way
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-3000:]
    stopped = len(read_jsonl(out / "steps.jsonl"))
    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return out, stopped


def test_stopped_in_step_two_resumes_without_running_step_one_again(reground_run):
    out, stopped = reground_run
    lines = [json.loads(x) for x in (out / "steps.jsonl").read_text().splitlines()]
    assert N < stopped < 2 * N
    assert [s["step"] for s in lines].count(1) == N  # append-only: a rerun would show here
    assert len({(s["id"], s["step"]) for s in lines}) == len(lines)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["sessions"]) == 2


def test_every_crop_and_final_click_is_regrounds_geometry(reground_run, large_screens):
    out, _ = reground_run
    steps: dict[tuple[str, int], dict] = {
        (s["id"], s["step"]): s for s in read_jsonl(out / "steps.jsonl")
    }
    records = read_jsonl(out / "predictions.jsonl")
    assert len(records) == N
    checked = 0
    for record in records:
        first = steps[(record["id"], 1)]
        w, h = record["img_size"]
        assert first["view"] == [0, 0, w, h]
        if first["outcome"] != "continued":  # the answer ended the protocol: one call
            assert record["calls"] == 1 and (record["id"], 2) not in steps
            continue
        view = reground_view(*first["click"], w, h)
        second = steps[(record["id"], 2)]
        assert tuple(second["view"]) == view == tuple(record["view"] or (0, 0, w, h))
        assert max(second["image_size"] or view[2:]) <= 1024
        if second["click"] is None:
            assert record["outcome"] == "wrong_format"
            continue
        point = yx1000_point(second["raw_response"])
        if point is None:
            continue
        px, py = point
        x = view[0] + px / 1000 * (view[2] - view[0])
        y = view[1] + py / 1000 * (view[3] - view[1])
        assert (record["pred_x"], record["pred_y"]) == pytest.approx((x, y))
        assert record["calls"] == 2
        checked += 1
    assert checked >= N // 2, "too few samples reached step 2 to check the geometry"
    assert "calls per sample" in (out / "summary.md").read_text()
    assert (out / "steps.csv").is_file()
