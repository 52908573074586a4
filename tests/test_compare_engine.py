"""`screenspot-eval compare` in the real engine: every output, one engine == two engines.

One-engine mode loads the model once and switches the embedder in place; it must give exactly
the outcomes of two separate engines (greedy, fp32), with vLLM's default compilation and with
``--enforce-eager``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import COMPILED_ENGINE_ARGS, DECODING_ARGS, run_cli

from screenspot_eval.errors import EXIT_USER_ERROR

pytestmark = pytest.mark.engine

OUTPUTS = ("comparison.csv", "flips.csv", "comparison.md", "deltas.png", "report.html")


def compare_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "compare",
        "--model",
        str(model),
        "--a",
        "post",
        "--b",
        "pre",
        "--data",
        str(data),
        "--out",
        str(out),
        *COMPILED_ENGINE_ARGS,  # vLLM's default, compiled: the in-place switch must hold there
        *DECODING_ARGS,
        "--limit",
        "32",
        *extra,
    ]


def outcomes(run_dir: Path) -> dict[str, tuple[str, str]]:
    rows = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines() if x]
    return {r["id"]: (r["outcome"], r["raw_response"]) for r in rows}


@pytest.fixture(scope="module")
def compared(tiny_model_dir, synth_data, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("compare")
    outs = {}
    for name, extra in (("one", ["--engines", "one"]), ("two", ["--engines", "two"])):
        out = base / name
        proc = run_cli(compare_args(tiny_model_dir, synth_data, out, *extra))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        (out / "stdout.txt").write_text(proc.stdout)
        outs[name] = out
    return outs


def test_compare_writes_every_output(compared):
    out = compared["one"]
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    md = (out / "comparison.md").read_text()
    assert "pre-norm vs post-norm:" in md and "pp [" in md and "McNemar p" in md
    table = pd.read_csv(out / "comparison.csv")
    overall = table[table["slice"] == "overall"].iloc[0]
    assert overall["n"] == 32
    stdout = (out / "stdout.txt").read_text()
    assert "pre-norm vs post-norm:" in stdout
    assert "in-place switch verified" in stdout
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("pre-norm vs post-norm:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("note:"))
    assert end - start > 3
    assert max(len(line) for line in lines[start:end]) <= 100


def test_the_two_sides_differ_in_their_raw_answers(compared):
    a, b = outcomes(compared["one"] / "a-post"), outcomes(compared["one"] / "b-pre")
    assert set(a) == set(b)
    assert sum(a[i][1] != b[i][1] for i in a) > 0
    manifest_a = json.loads((compared["one"] / "a-post" / "manifest.json").read_text())
    manifest_b = json.loads((compared["one"] / "b-pre" / "manifest.json").read_text())
    assert manifest_a["effective_variant"] == "post"
    assert manifest_b["effective_variant"] == "pre"


def test_flips_csv_lists_every_changed_outcome(compared):
    a, b = outcomes(compared["one"] / "a-post"), outcomes(compared["one"] / "b-pre")
    changed = {i for i in a if (a[i][0] == "correct") != (b[i][0] == "correct")}
    flips = pd.read_csv(compared["one"] / "flips.csv")
    assert set(flips["id"]) == changed


def test_one_engine_equals_two_engines(compared):
    for side in ("a-post", "b-pre"):
        one = outcomes(compared["one"] / side)
        assert len(one) == 32, side
        assert one == outcomes(compared["two"] / side), side


def test_one_engine_eager_equals_two_engines(compared, tiny_model_dir, synth_data, tmp_path):
    out = tmp_path / "eager"
    proc = run_cli(
        compare_args(tiny_model_dir, synth_data, out, "--engines", "one", "--enforce-eager")
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for side in ("a-post", "b-pre"):
        eager = outcomes(out / side)
        assert len(eager) == 32, side
        assert eager == outcomes(compared["two"] / side), side


def test_mismatched_runs_are_refused_with_the_differences(compared, tmp_path):
    a = compared["one"] / "a-post"
    b = tmp_path / "b-other-prompt"
    shutil.copytree(compared["one"] / "b-pre", b)
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["prompt_hash"] = "0123456789ab"
    manifest["outcome_settings"]["prompt"]["template"] = "gemma4-point2d"
    (b / "manifest.json").write_text(json.dumps(manifest))
    proc = run_cli(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")])
    assert proc.returncode == EXIT_USER_ERROR
    assert "differ in more than the embedder variant" in proc.stderr
    assert "prompt_hash" in proc.stderr and "settings.prompt.template" in proc.stderr
    allowed = run_cli(
        ["compare", str(a), str(b), "--out", str(tmp_path / "ok"), "--allow-mismatch"]
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "prompt_hash" in (tmp_path / "ok" / "comparison.md").read_text()
