"""Reports of runs in the layouts beside ScreenSpot-Pro: metrics.csv, summary.md and the
layout's results JSON slice by the layout (ScreenSpot-v2: platform x ui_type; OSWorld-G:
category and target kind, with and without the refusal items); ScreenSpot-Pro's stay as they
were. The layout is part of a run's outcome settings, so a resume in another one is refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fakes import fake_manifest

from screenspot_eval.backends.base import Completion
from screenspot_eval.data.synth_layouts import synthesize
from screenspot_eval.data.validate import load_release
from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.report.layout_json import layout_results
from screenspot_eval.report.metrics import layout_metrics_table, metrics_table
from screenspot_eval.report.run_exports import write_run_exports
from screenspot_eval.run.config import DataSettings, RunConfig, diff_settings
from screenspot_eval.run.grading import build_record
from screenspot_eval.store.records import PredictionRecord, records_frame

PX = CoordinateConvention.XY_PIXELS_ORIGINAL


def _records(root: Path, layout: str, answer) -> list[PredictionRecord]:
    loaded = load_release(root, layout=layout)
    return [
        build_record(
            s,
            instruction=s.instruction,
            language="en",
            completion=Completion(s.id, answer(s)),
            convention=PX,
            prompt_hash="h",
            variant="pre",
        )
        for s in loaded.samples
    ]


def _centre_or_refuse(sample) -> str:
    """A perfect answer: the first polygon vertex region, the box centre, or a refusal."""
    if sample.target == "refusal":
        return "[-1, -1]"
    if sample.target == "polygon":
        x1, y1, x2, y2 = sample.bbox
        return f"[{x1 + (x2 - x1) / 8}, {y1 + (y2 - y1) / 8}]"
    x1, y1, x2, y2 = sample.bbox
    return f"[{(x1 + x2) / 2}, {(y1 + y2) / 2}]"


def _always_click(sample) -> str:
    """A model that never refuses: right on boxes and polygons, wrong on refusal items."""
    return "[5, 5]" if sample.target == "refusal" else _centre_or_refuse(sample)


@pytest.fixture(scope="module")
def oswg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("oswg")
    synthesize("osworld-g", root, 40, seed=3, max_width=400, target_scale=2)
    return root


@pytest.fixture(scope="module")
def ssv2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ssv2")
    synthesize("screenspot-v2", root, 24, seed=3, max_width=400, target_scale=2)
    return root


def _manifest(layout: str):
    manifest = fake_manifest()
    config = {**manifest.config, "data": {"layout": layout}}
    return manifest.model_copy(update={"config": config})


def test_osworld_g_exports_report_with_and_without_refusal(oswg: Path, tmp_path: Path) -> None:
    records = _records(oswg, "osworld-g", _always_click)
    refusals = sum(r.target == "refusal" for r in records)
    assert refusals and all(
        r.outcome.value == ("wrong" if r.target == "refusal" else "correct") for r in records
    )
    paths = write_run_exports(tmp_path, records, _manifest("osworld-g"))
    assert paths["official"].name == "osworld_g_results.json"
    result = json.loads(paths["official"].read_text())
    metrics = result["metrics"]
    n = len(records)
    assert metrics["overall"]["total"] == n and metrics["overall"]["correct"] == n - refusals
    without = metrics["overall_without_refusal"]
    assert without["total"] == n - refusals and without["accuracy"] == 1.0
    assert metrics["category"]["refusal"]["accuracy"] == 0.0
    assert metrics["target"]["polygon"]["accuracy"] == 1.0
    official = metrics["official"]
    assert set(official) == {"total", "correct", "accuracy", "accuracy_dict_group"}
    assert set(official["accuracy_dict_group"]) <= {
        "text_matching",
        "element_recognition",
        "layout_understanding",
        "fine_grained_manipulation",
        "refusal",
        "unclassified",
    }
    detail = next(d for d in result["details"] if d["box_type"] == "polygon")
    assert detail["polygon"] and detail["target"] == "polygon"
    refusal = next(d for d in result["details"] if d["box_type"] == "refusal")
    assert refusal["bbox"] is None and refusal["correctness"] == "wrong"

    with paths["metrics"].open(newline="") as handle:
        rows = {(r["slice"], r["value"]): r for r in csv.DictReader(handle)}
    assert float(rows[("overall_without_refusal", "all")]["accuracy"]) == 1.0
    assert int(rows[("target", "refusal")]["n"]) == refusals
    summary = paths["summary"].read_text()
    assert summary.startswith("# OSWorld-G run")
    assert f"without the {refusals} refusal items: 100.00 %" in summary
    assert "## Accuracy (%) by category" in summary and "all without refusal" in summary
    assert "does the prompt say how to refuse?" in summary  # this model never refused
    samples = paths["samples"].read_text()
    assert "refusal" in samples and "osworld-g" in samples


def test_an_item_counts_in_each_of_its_categories(oswg: Path) -> None:
    records = _records(oswg, "osworld-g", _centre_or_refuse)
    frame = records_frame(records)
    table = layout_metrics_table(frame)
    per_category = table[table["slice"] == "category"].set_index("value")["n"]
    expected: dict[str, int] = {}
    for r in records:
        for c in r.categories or ("unclassified",):
            expected[c] = expected.get(c, 0) + 1
    assert per_category.to_dict() == expected
    assert sum(expected.values()) > len(records)  # some items are in two categories
    assert table.loc[table["slice"] == "overall", "accuracy"].item() == 1.0


def test_screenspot_v2_exports_platform_by_ui_type(ssv2: Path, tmp_path: Path) -> None:
    records = _records(ssv2, "screenspot-v2", _centre_or_refuse)
    paths = write_run_exports(tmp_path, records, _manifest("screenspot-v2"))
    assert paths["official"].name == "screenspot_v2_results.json"
    metrics = json.loads(paths["official"].read_text())["metrics"]
    assert set(metrics["platform"]) == {"desktop", "mobile", "web"}
    assert metrics["overall"]["num_total"] == len(records) and metrics["overall"]["action_acc"] == 1
    assert {"text_acc", "icon_acc"} <= set(metrics["platform"]["mobile"])
    assert "mobile/icon" in metrics["platform/ui_type"]
    assert "overall_without_refusal" not in metrics
    summary = paths["summary"].read_text()
    assert summary.startswith("# ScreenSpot-v2 run")
    assert "## Accuracy (%) by platform and UI type" in summary and "| mobile |" in summary


def test_screenspot_pro_exports_are_unchanged(tmp_path: Path) -> None:
    root = tmp_path / "pro"
    synthesize(None, root, 12, seed=1, max_width=200, target_scale=4)
    records = _records(root, "screenspot-pro", _centre_or_refuse)
    frame = records_frame(records)
    assert layout_metrics_table(frame).equals(metrics_table(frame))
    paths = write_run_exports(tmp_path / "run", records, fake_manifest())
    assert paths["official"].name == "screenspot_pro_results.json"
    summary = paths["summary"].read_text()
    assert summary.startswith("# ScreenSpot-Pro run") and "Layout:" not in summary
    assert "## Accuracy (%) by group and UI type" in summary


def test_layout_results_refuses_mixed_layouts(oswg: Path, ssv2: Path) -> None:
    frame = records_frame(
        _records(oswg, "osworld-g", _centre_or_refuse)[:2]
        + _records(ssv2, "screenspot-v2", _centre_or_refuse)[:2]
    )
    with pytest.raises(ValueError, match="several dataset layouts"):
        layout_results(frame)


# --- configuration -----------------------------------------------------------------------------


def test_the_layout_is_an_outcome_setting_with_screenspot_pro_as_default() -> None:
    assert DataSettings().layout == "screenspot-pro"
    pro = RunConfig(engine={"model": "m"})  # type: ignore[arg-type]
    v2 = RunConfig(engine={"model": "m"}, data=DataSettings(layout="screenspot-v2"))  # type: ignore[arg-type]
    assert pro.outcome_settings()["data"]["layout"] == "screenspot-pro"
    differences = diff_settings(pro.outcome_settings(), v2.outcome_settings())
    assert differences == ['data.layout: "screenspot-pro" -> "screenspot-v2"']
    assert pro.fingerprint("h") != v2.fingerprint("h")


def test_an_unknown_layout_in_the_config_is_one_line() -> None:
    from screenspot_eval.data.layouts import UnknownLayoutError

    with pytest.raises(UnknownLayoutError) as caught:
        DataSettings(layout="screenspot-v9")
    assert "\n" not in str(caught.value) and "osworld-g" in str(caught.value)
