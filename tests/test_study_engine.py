"""`screenspot-eval study` in the real engine: the family twins as one study (shared with the
family tests, tests/study_helpers.py), stopped with Ctrl-C in its second cell and resumed; its
combined report; and the same study split into cells run by separate processes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import run_cli
from study_helpers import SAMPLES, TWINS, FamilyStudy

pytestmark = pytest.mark.engine


def test_ctrl_c_in_the_second_cell_then_the_same_command_loses_and_repeats_nothing(
    family_study: FamilyStudy,
):
    stopped, resumed = family_study.interrupted, family_study.resumed
    assert stopped.returncode == 130, stopped.stdout[-3000:]
    assert "Traceback" not in stopped.stdout + resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    first, second = (family_study.out / "cells" / name for name in TWINS[:2])
    before = family_study.before_resume
    assert (first / "cell.json").stat().st_mtime_ns == before["first_cell_record"]
    assert (first / "b-pre" / "predictions.jsonl").read_bytes() == before["first_cell_records"]
    assert f"cell {TWINS[0]} finished earlier, not run again" in resumed.stdout
    assert before["second_a_records"] >= 3
    manifest = json.loads((second / "a-post" / "manifest.json").read_text())
    assert len(manifest["sessions"]) == 2 and manifest["sessions"][1]["resumed_from"] >= 3
    for name in TWINS:
        for side in ("a-post", "b-pre"):
            lines = (family_study.out / "cells" / name / side / "predictions.jsonl").read_text()
            ids = [json.loads(x)["id"] for x in lines.splitlines()]
            assert len(ids) == len(set(ids)) == SAMPLES, (name, side)


def test_the_combined_report_holds_each_cells_own_figures_and_their_pooled_answer(
    family_study: FamilyStudy,
):
    out = family_study.out
    for name in ("study.csv", "study.md", "forest.png", "study.html", "pooled.json"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "study.csv")
    assert list(table["cell"]) == list(TWINS)
    for row in table.itertuples():
        own = pd.read_csv(out / "cells" / row.cell / "comparison.csv")
        overall = own.loc[own["slice"] == "overall"].iloc[0]
        assert row.delta_pp == pytest.approx(overall["delta_pp"])
        assert (row.ci_low_pp, row.ci_high_pp, row.p) == pytest.approx(
            (overall["ci_low_pp"], overall["ci_high_pp"], overall["p"])
        )
        assert row.n == SAMPLES
    assert (table["p_holm"] >= table["p"] - 1e-12).all()
    [pooled] = json.loads((out / "pooled.json").read_text())
    assert pooled["group"] == "all cells" and pooled["weights"] == [0.25] * 4
    assert 100 * pooled["pooled"] == pytest.approx(table["delta_pp"].mean())
    assert pooled["ci_low"] <= pooled["pooled"] <= pooled["ci_high"]
    html = (out / "study.html").read_text()
    assert "pooled (equal weights, 4 cells)" in html and "data:image/png;base64," in html
    assert "pooled (equal weights, 4 cells)" in family_study.resumed.stdout


def test_cells_run_by_separate_processes_give_the_same_table(
    family_study: FamilyStudy, tmp_path: Path
):
    listed = run_cli(["study", str(family_study.file), "--list-cells"])
    assert listed.returncode == 0, listed.stderr
    names = [line.split(":")[0] for line in listed.stdout.splitlines()]
    assert names == list(TWINS)
    out = tmp_path / "by-cell"
    for name in names:
        proc = run_cli(["study", str(family_study.file), "--out", str(out), "--cell", name, "-q"])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert f"cell {name} finished" in proc.stdout
    partial = run_cli(["study", str(family_study.file), "--out", str(out), "--report"])
    assert partial.returncode == 0, partial.stderr
    assert "not finished" not in partial.stdout
    one_command = pd.read_csv(family_study.out / "study.csv")
    pd.testing.assert_frame_equal(pd.read_csv(out / "study.csv"), one_command)
    assert json.loads((out / "pooled.json").read_text()) == json.loads(
        (family_study.out / "pooled.json").read_text()
    )


def test_the_study_page_opens_in_a_real_browser(family_study: FamilyStudy, tmp_path: Path):
    import os

    from report_browser import find_chromium, inspect_report

    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI must open the study page in a browser: no Chromium")
        pytest.skip("no Chromium")
    check = inspect_report(family_study.out / "study.html", chromium=chromium)
    [pooled] = json.loads((family_study.out / "pooled.json").read_text())
    assert check.headline is not None and check.headline.startswith("pooled (equal weights")
    assert f"{100 * pooled['pooled']:+.2f} pp" in check.headline
    [forest] = check.images
    assert (
        forest["alt"] == "forest plot" and forest["naturalWidth"] > 0 and forest["shownWidth"] > 0
    )
    assert check.console_errors == [] and check.page_errors == []
    assert check.outside_requests == [] and check.scripts == 0


@pytest.mark.server
def test_cells_against_two_servers_run_at_the_same_time(tiny_model_dir, synth_data, tmp_path):
    """Two checkpoints, each with its own server: their cells run concurrently (each a process
    of its own), and their runs' sessions overlap in time."""
    from test_server_engine import free_port, start_server, stop_server

    ports = [free_port(), free_port()]
    servers = [start_server(tiny_model_dir, p, tmp_path / f"serve-{p}.log") for p in ports]
    try:
        lines = [
            'name = "two-servers"',
            f'out = "{tmp_path / "study"}"',
            "[settings]",
            f'"data.source" = "{synth_data}"',
            '"data.selection.limit" = 8',
            '"sampling.structured" = true',
            '"sampling.max_tokens" = 48',
            '[a]\nvariant = "pre"\nset = ["protocol=one-shot"]',
            '[b]\nvariant = "pre"\nset = ["protocol=reground"]',
        ]
        for name, port in zip(("left", "right"), ports, strict=True):
            url = f"http://127.0.0.1:{port}"
            lines += [
                "[[checkpoints]]",
                f'name = "{name}"',
                f'model = "{tiny_model_dir}"',
                f'endpoint_a = "{url}"',
                f'endpoint_b = "{url}"',
            ]
        file = tmp_path / "study.toml"
        file.write_text("\n".join(lines) + "\n")
        proc = run_cli(["study", str(file)], timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    finally:
        for server in servers:
            stop_server(server)
    spans = {}
    for name in ("left", "right"):
        starts, ends = [], []
        for side in ("a-pre", "b-pre"):
            manifest = json.loads(
                (tmp_path / "study" / "cells" / name / side / "manifest.json").read_text()
            )
            assert manifest["status"] == "complete" and manifest["counts"]["recorded"] == 8
            starts.append(manifest["sessions"][0]["started_at"])
            ends.append(manifest["sessions"][-1]["ended_at"])
        spans[name] = (min(starts), max(ends))
    (l0, l1), (r0, r1) = spans["left"], spans["right"]
    assert l0 < r1 and r0 < l1, spans  # ISO timestamps in UTC compare as text
    table = pd.read_csv(tmp_path / "study" / "study.csv")
    assert list(table["cell"]) == ["left", "right"]
