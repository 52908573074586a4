"""Accounting: a synthetic official-like release matches the published totals; a lost file is
explained cell by cell."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from screenspot_eval.cli.app import app
from screenspot_eval.data.accounting import (
    NO_GROUP,
    OFFICIAL_APPLICATIONS,
    OFFICIAL_GROUP_UI,
    OFFICIAL_TOTAL,
    OFFICIAL_UI_TOTALS,
    account,
)
from screenspot_eval.data.sample import Sample
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release


@pytest.fixture(scope="module")
def official_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("official") / "ScreenSpot-Pro"
    synthesize_release(root, OFFICIAL_TOTAL, seed=0, like_official=True, max_width=32)
    return root


def test_published_constants_add_up() -> None:
    assert sum(sum(c.values()) for c in OFFICIAL_GROUP_UI.values()) == OFFICIAL_TOTAL
    for ui, total in OFFICIAL_UI_TOTALS.items():
        assert sum(c[ui] for c in OFFICIAL_GROUP_UI.values()) == total


def test_official_like_release_matches_the_published_totals(official_like: Path) -> None:
    loaded = load_release(official_like)  # strict, images opened and sizes checked
    acc = account(loaded.samples)
    assert acc.total == OFFICIAL_TOTAL
    assert {g: acc.group_ui_inferred[g] for g in OFFICIAL_GROUP_UI} == OFFICIAL_GROUP_UI
    assert acc.ui_totals == OFFICIAL_UI_TOTALS
    assert len(acc.applications) == OFFICIAL_APPLICATIONS
    assert acc.diff == [] and acc.matches_official
    # Some files carry no group: raw table shows them as (none), each inference is reported.
    assert sum(acc.group_ui[NO_GROUP].values()) == sum(i.count for i in acc.inferences) > 0
    assert all(i.group is not None for i in acc.inferences)


def test_cli_prints_the_official_table(official_like: Path) -> None:
    result = CliRunner().invoke(app, ["data", "check", str(official_like)])
    assert result.exit_code == 0, result.output
    assert "samples loaded: 1581" in result.stdout
    assert "Matches the official release in every group x ui_type cell." in result.stdout
    assert "Excluded samples: none." in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 100


def test_removing_one_file_gives_an_exact_diff(official_like: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(official_like, copy)
    removed = "annotations/photoshop_windows.json"
    lost = Counter(r["ui_type"] for r in json.loads((copy / removed).read_text()))
    (copy / removed).unlink()
    acc = account(load_release(copy).samples)
    assert acc.total == OFFICIAL_TOTAL - lost.total()
    cells = {(d.group, d.ui_type): d for d in acc.diff}
    assert set(cells) == {("Creative", ui) for ui in lost}
    for ui, count in lost.items():
        cell = cells[("Creative", ui)]
        assert (cell.actual, cell.expected, cell.delta) == (
            OFFICIAL_GROUP_UI["Creative"][ui] - count,
            OFFICIAL_GROUP_UI["Creative"][ui],
            -count,
        )
        assert removed not in cell.files and "annotations/premiere_windows.json" in cell.files
        assert sum(cell.files.values()) == cell.actual
    assert len(acc.applications) == OFFICIAL_APPLICATIONS - 1
    assert not acc.matches_official
    result = CliRunner().invoke(app, ["data", "check", str(copy)])
    assert f"Creative / icon: {cells[('Creative', 'icon')].actual} (official 143, " in result.stdout
    assert "applications: 25 (official 26, -1)" in result.stdout


def _sample(i: int, app: str, group: str | None, ui: str = "text", file: str = "a.json") -> Sample:
    return Sample(
        id=f"s{i}",
        img_filename="x.png",
        instruction="Click.",
        bbox=(0, 0, 1, 1),
        img_size=(2, 2),
        application=app,
        platform="linux",
        group=group,
        ui_type=ui,  # type: ignore[arg-type]
        source_file=f"annotations/{file}",
    )


def test_group_inference_only_when_the_application_has_one_group() -> None:
    samples = [
        _sample(0, "vscode", "Dev"),
        _sample(1, "vscode", None, file="b.json"),  # inferred: Dev
        _sample(2, "mystery", None, file="c.json"),  # no group anywhere: stays (none)
        _sample(3, "both", "Dev"),
        _sample(4, "both", "OS"),
        _sample(5, "both", None, file="d.json"),  # two groups: ambiguous, stays (none)
    ]
    acc = account(samples)
    assert acc.group_ui[NO_GROUP]["text"] == 3
    assert acc.group_ui_inferred[NO_GROUP]["text"] == 2
    assert acc.group_ui_inferred["Dev"]["text"] == 3
    inferred = {(i.source_file, i.group) for i in acc.inferences}
    assert inferred == {
        ("annotations/b.json", "Dev"),
        ("annotations/c.json", None),
        ("annotations/d.json", None),
    }
    none_cell = next(d for d in acc.diff if d.group == NO_GROUP)
    assert none_cell.files == {"annotations/c.json": 1, "annotations/d.json": 1}
    assert {r.application: r.group for r in acc.applications}["both"] == "Dev/OS"
