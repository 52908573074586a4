"""Synthetic releases: official layout and field names, awkward cases present, deterministic."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from screenspot_eval.cli.app import app
from screenspot_eval.data.accounting import OFFICIAL_GROUP_UI
from screenspot_eval.data.sample import UI_TYPES
from screenspot_eval.data.synth import RESOLUTIONS, synthesize_release
from screenspot_eval.data.validate import load_release

FIELDS = ["id", "img_filename", "instruction", "instruction_cn", "bbox", "img_size",
          "application", "platform", "group", "ui_type"]  # fmt: skip


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_and_field_names(tmp_path: Path) -> None:
    summary = synthesize_release(tmp_path, 40, seed=1, max_width=64)
    files = sorted((tmp_path / "annotations").glob("*.json"))
    assert len(files) == len(summary.annotation_files) > 6
    records = []
    for file in files:
        data = json.loads(file.read_text())
        assert isinstance(data, list) and data
        app, platform = data[0]["application"], data[0]["platform"]
        assert file.name == f"{app}_{platform}.json"
        for record in data:
            assert [k for k in FIELDS if k in record] == list(record)  # official names and order
            assert (tmp_path / "images" / record["img_filename"]).is_file()
            assert record["img_filename"].count("/") == 1
        records += data
    assert len(records) == summary.samples == 40
    assert {r["group"] for r in records if "group" in r} == set(OFFICIAL_GROUP_UI)
    assert {r["ui_type"] for r in records} == set(UI_TYPES)
    assert any("group" not in r for r in records)
    assert any("instruction_cn" not in r for r in records)
    per_image = [r["img_filename"] for r in records]
    assert len(set(per_image)) < len(per_image)  # several instructions per screenshot
    assert len(load_release(tmp_path).samples) == 40


def test_like_official_resolutions_and_visible_targets(tmp_path: Path) -> None:
    """Unscaled screenshots keep the official sizes; a couple at full size is still quick."""
    synthesize_release(tmp_path, 2, seed=4, like_official=True, resolutions=[(1920, 1080)])
    loaded = load_release(tmp_path)
    assert len(loaded.samples) == 2
    for sample in loaded.samples:
        assert sample.img_size == (1920, 1080)
        with Image.open(tmp_path / "images" / sample.img_filename) as image:
            crop = image.convert("RGB").crop(tuple(int(v) for v in sample.bbox))
            assert any(lo != hi for lo, hi in crop.getextrema())  # the target is drawn
    assert (1920, 1080) in RESOLUTIONS and (6016, 3384) in RESOLUTIONS


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    synthesize_release(tmp_path / "a", 25, seed=9, max_width=48)
    synthesize_release(tmp_path / "b", 25, seed=9, max_width=48)
    synthesize_release(tmp_path / "c", 25, seed=10, max_width=48)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "c")


@pytest.mark.parametrize("n", [12, 13, 59, 200])
def test_proportional_mix_covers_every_cell(tmp_path: Path, n: int) -> None:
    synthesize_release(tmp_path, n, seed=0, like_official=True, max_width=16)
    samples = load_release(tmp_path).samples
    assert len(samples) == n
    from screenspot_eval.data.accounting import account

    table = account(samples).group_ui_inferred
    assert all(table[g][ui] >= 1 for g in OFFICIAL_GROUP_UI for ui in UI_TYPES)


def test_cli_synth_then_check(tmp_path: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(
        app, ["data", "synth", str(tmp_path), "--n", "30", "--seed", "3", "--max-width", "40"]
    )
    assert made.exit_code == 0, made.output
    assert "wrote 30 samples" in made.stdout
    checked = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert checked.exit_code == 0 and "samples loaded: 30" in checked.stdout


def test_pure_core_imports_neither_vllm_nor_torch() -> None:
    code = (
        "import sys, screenspot_eval.data.validate, screenspot_eval.data.images, "
        "screenspot_eval.data.synth, screenspot_eval.data.select, screenspot_eval.data.check, "
        "screenspot_eval.data.fingerprint, screenspot_eval.data.parquet, "
        "screenspot_eval.cli.data_cmds; "
        "print(sorted(m for m in ('vllm', 'torch') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
