"""The sweep without an engine: budgets refused up front, and the report from scripted cells."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fakes import box_answer, fake_report
from typer.testing import CliRunner

from screenspot_eval.backends.scripted import ScriptedBackend
from screenspot_eval.cli.app import app
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release
from screenspot_eval.errors import EXIT_USER_ERROR
from screenspot_eval.report.sweep import write_sweep
from screenspot_eval.run.compare import compare_runs
from screenspot_eval.run.config import resolve_config
from screenspot_eval.run.repeats import run_passes, side_passes
from screenspot_eval.run.sweep import cell_config, cell_dir

N = 24


@pytest.mark.parametrize("budgets", ["70,100", "64", "70,2240"])
def test_a_budget_the_processor_cannot_take_is_refused_before_anything_runs(budgets, tmp_path):
    result = CliRunner().invoke(
        app, ["sweep", "--model", "m", "--budgets", budgets, "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == EXIT_USER_ERROR, result.output
    assert "70, 140, 280, 560, 1120" in result.stderr
    assert not (tmp_path / "s").exists()


def test_an_unknown_variant_is_refused(tmp_path):
    result = CliRunner().invoke(
        app, ["sweep", "--model", "m", "--variants", "pre,sideways", "--out", str(tmp_path)]
    )
    assert result.exit_code == EXIT_USER_ERROR
    assert "sideways" in result.stderr


@pytest.fixture
def cells(tmp_path: Path) -> tuple[Path, dict]:
    """Scripted cells: A right on a share of samples growing with the budget, B on more."""
    data = tmp_path / "data"
    synthesize_release(data, N, seed=5, max_width=320)
    samples = {s.id: s for s in load_release(data).samples}
    order = sorted(samples)
    base = resolve_config(
        None,
        {"engine.model": "m", "data.source": str(data), "runtime.image_workers": 1,
         "out": str(tmp_path / "sweep")},
    )  # fmt: skip
    out = tmp_path / "sweep"
    share = {("post", 70): 0.25, ("post", 1120): 0.5, ("pre", 70): 0.25, ("pre", 1120): 0.75}
    cells = {}
    for (variant, budget), right in share.items():
        cutoff = int(right * N)

        def factory(cfg, cutoff=cutoff, variant=variant):
            return ScriptedBackend(
                lambda r: box_answer(
                    samples[r.sample_id], correct=order.index(r.sample_id) < cutoff
                ),
                report=fake_report(variant),
            )

        cfg = cell_config(base, budget, variant)
        passes = side_passes(cfg, cell_dir(out, budget, variant), 1)
        run_passes(passes, backend_factory=factory, quiet=True)
        cells[(budget, variant)] = [p.out for p in passes]
    return out, cells


def test_the_sweep_report_has_every_output_and_the_right_numbers(cells):
    out, dirs = cells
    _, headline = write_sweep(
        out, (70, 1120), ("post", "pre"), dirs, seed=1, n_resamples=300, notes=["note x"]
    )
    table = pd.read_csv(out / "sweep.csv")
    assert list(zip(table["variant"], table["budget"], table["accuracy"], strict=True)) == [
        ("post", 70, 25.0), ("post", 1120, 50.0), ("pre", 70, 25.0), ("pre", 1120, 75.0),
    ]  # fmt: skip
    assert (table["ci_low"] <= table["accuracy"]).all() and (
        table["accuracy"] <= table["ci_high"]
    ).all()
    deltas = pd.read_csv(out / "sweep_deltas.csv")
    assert list(deltas["delta_pp"]) == [0.0, 25.0]
    assert set(deltas.columns) >= {"p", "p_holm", "p_items", "ci_low_pp", "ci_high_pp"}
    assert (out / "accuracy_vs_budget.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "sweep.md").read_text()
    assert "interaction" in md.lower() and "note x" in md
    assert "sign-flip randomisation test over screenshots" in md  # which unit p is about
    assert "conditional on these items" in md
    assert "pre vs post by budget" in headline and "interaction" in headline


def test_a_comparison_beside_the_sweep_links_it_from_its_html_report(cells):
    out, dirs = cells
    write_sweep(out, (70, 1120), ("post", "pre"), dirs, seed=1, n_resamples=100, notes=[])
    compare_runs(out / "1120" / "post", out / "1120" / "pre", out / "ab", seed=1, n_resamples=100)
    page = (out / "ab" / "report.html").read_text()
    assert 'id="related"' in page and 'href="../sweep.md"' in page
