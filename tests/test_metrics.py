"""Breakdowns and the official results JSON, on small hand-counted record sets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from screenspot_eval.report.metrics import (
    METRICS_COLUMNS,
    MISSING_VALUE,
    count_outcomes,
    group_ui_table,
    leaderboard_table,
    metrics_table,
    overall_table,
    slice_table,
    validate_records,
)
from screenspot_eval.report.official_json import (
    DETAIL_KEYS,
    METRIC_KEYS,
    METRIC_SECTIONS,
    official_results,
    write_official_json,
)


def record(
    id: str,
    outcome: str,
    group: str | None = "Dev",
    ui_type: str = "text",
    application: str = "vscode",
    platform: str = "macos",
    language: str = "en",
    pred: tuple[float, float] | None = (10.0, 20.0),
) -> dict[str, object]:
    return {
        "id": id,
        "application": application,
        "platform": platform,
        "group": group,
        "ui_type": ui_type,
        "language": language,
        "outcome": outcome,
        "pred_x": pred[0] if pred else math.nan,
        "pred_y": pred[1] if pred else math.nan,
        "raw_response": f"answer {id}" if outcome != "failed" else None,
        "bbox": [1.0, 2.0, 30.0, 40.5],
    }


@pytest.fixture
def records() -> pd.DataFrame:
    return pd.DataFrame(
        [
            record("a", "correct"),
            record("b", "wrong", ui_type="icon"),
            record("c", "wrong_format", pred=None),
            record("d", "correct", group="CAD", application="autocad", platform="windows"),
            record(
                "e", "failed", group="CAD", application="autocad", platform="windows", pred=None
            ),
            record("f", "correct", group=None, ui_type="icon", application="word", language="cn"),
        ]
    )


def test_counts_keep_wrong_format_and_failed_in_the_denominator() -> None:
    counts = count_outcomes(["correct", "wrong", "wrong_format", "failed"])
    assert (counts.n, counts.correct, counts.wrong, counts.wrong_format, counts.failed) == (
        4,
        1,
        1,
        1,
        1,
    )
    assert counts.accuracy == 0.25 and counts.wrong_format_rate == 0.25


def test_empty_slices_are_zero_not_nan(records: pd.DataFrame) -> None:
    empty = count_outcomes([])
    assert (empty.n, empty.accuracy, empty.wrong_format_rate) == (0, 0.0, 0.0)
    overall = overall_table(records.iloc[:0])
    assert overall.loc[0, "n"] == 0 and overall.loc[0, "accuracy"] == 0.0
    table = group_ui_table(records)
    cad_icon = table[(table["group"] == "CAD") & (table["ui_type"] == "icon")].iloc[0]
    assert cad_icon["n"] == 0 and cad_icon["accuracy"] == 0.0
    assert not metrics_table(records)[["accuracy", "wrong_format_rate"]].isna().any().any()
    assert not metrics_table(records.iloc[:0]).isna().any().any()


def test_overall_and_leaderboard_by_hand(records: pd.DataFrame) -> None:
    overall = overall_table(records).iloc[0]
    assert (overall["n"], overall["correct"], overall["wrong_format"], overall["failed"]) == (
        6,
        3,
        1,
        1,
    )
    assert overall["accuracy"] == pytest.approx(0.5)
    table = group_ui_table(records).set_index(["group", "ui_type"])
    assert table.loc[("Dev", "text"), "n"] == 2 and table.loc[("Dev", "text"), "accuracy"] == 0.5
    assert table.loc[("Dev", "icon"), "accuracy"] == 0.0
    assert table.loc[("Dev", "avg"), "accuracy"] == pytest.approx(1 / 3)
    assert table.loc[("CAD", "avg"), "accuracy"] == 0.5
    assert table.loc[(MISSING_VALUE, "icon"), "accuracy"] == 1.0
    assert table.loc[("all", "avg"), "n"] == 6
    assert table.loc[("all", "text"), "accuracy"] == pytest.approx(2 / 4)
    wide = leaderboard_table(records).set_index("group")
    assert list(wide.index) == ["CAD", "Dev", MISSING_VALUE, "all"]
    assert wide.loc["Dev", "avg_accuracy"] == pytest.approx(1 / 3)
    assert wide.loc["CAD", "icon_n"] == 0


def test_slice_tables(records: pd.DataFrame) -> None:
    apps = slice_table(records, "application").set_index("application")
    assert apps.loc["vscode", "n"] == 3 and apps.loc["autocad", "failed"] == 1
    assert slice_table(records, "platform").set_index("platform").loc["windows", "accuracy"] == 0.5
    languages = slice_table(records, "language").set_index("language")
    assert languages.loc["cn", "n"] == 1 and languages.loc["en", "n"] == 5


def test_metrics_table_layout(records: pd.DataFrame) -> None:
    table = metrics_table(records)
    assert tuple(table.columns) == METRICS_COLUMNS
    assert table.iloc[0][["slice", "value", "n", "correct"]].tolist() == ["overall", "all", 6, 3]
    assert set(table["slice"]) == {
        "overall",
        "group",
        "ui_type",
        "group/ui_type",
        "application",
        "platform",
        "language",
    }
    row = table[(table["slice"] == "group/ui_type") & (table["value"] == "CAD/icon")].iloc[0]
    assert row["n"] == 0 and row["accuracy"] == 0.0


def test_bad_records_are_rejected(records: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown outcomes"):
        validate_records(records.assign(outcome="maybe"))
    with pytest.raises(ValueError, match="lack columns"):
        validate_records(records.drop(columns=["language"]))


def test_official_json_structure(records: pd.DataFrame, tmp_path: Path) -> None:
    path = write_official_json(records, tmp_path / "out" / "results.json")
    result = json.loads(path.read_text())
    assert list(result) == ["details", "metrics", "screenspot_eval"]  # official keys, then ours
    assert list(result["metrics"]) == list(METRIC_SECTIONS)
    details = {d["id"]: d for d in result["details"]}
    assert len(details) == 6
    for detail in details.values():
        assert tuple(detail) == DETAIL_KEYS
        assert detail["bbox"] == [1, 2, 30, 40.5]
        assert detail["instruction_style"] == "instruction" and detail["gt_type"] == "positive"
    assert details["a"]["pred"] == [10.0, 20.0] and details["a"]["correctness"] == "correct"
    assert details["b"]["pred"] == [10.0, 20.0] and details["b"]["correctness"] == "wrong"
    assert details["c"]["pred"] is None and details["c"]["correctness"] == "wrong_format"
    assert details["e"]["pred"] is None and details["e"]["correctness"] == "wrong_format"
    assert details["e"]["outcome"] == "failed" and details["e"]["raw_response"] is None
    assert details["f"]["group"] is None and details["f"]["lang"] == "cn"
    assert details["d"]["task_filename"] == "autocad_windows"

    metrics = result["metrics"]
    assert set(metrics["fine_grained"]) == {
        "plat:macos app:vscode inst_style:instruction gt_type:positive",
        "plat:windows app:autocad inst_style:instruction gt_type:positive",
        "plat:macos app:word inst_style:instruction gt_type:positive",
    }
    assert set(metrics["seeclick_style"]) == {
        "plat:macos inst_style:instruction gt_type:positive",
        "plat:windows inst_style:instruction gt_type:positive",
    }
    assert set(metrics["leaderboard_simple_style"]) == {"group:Dev", "group:CAD", "group:None"}
    assert set(metrics["leaderboard_detailed_style"]) == {"app:vscode", "app:autocad", "app:word"}
    for section in METRIC_SECTIONS[:-1]:
        for values in metrics[section].values():
            assert tuple(values) == METRIC_KEYS
    assert metrics["overall"] == {
        "num_correct_action": 3,
        "num_total": 6,
        "wrong_format_num": 2,  # one unparseable answer and one failed request
        "action_acc": 0.5,
        "text_acc": 0.5,
        "icon_acc": 0.5,
    }
    cad = metrics["leaderboard_simple_style"]["group:CAD"]
    assert cad["icon_acc"] == 0 and cad["num_total"] == 2 and cad["text_acc"] == 0.5


def test_official_json_optional_columns(records: pd.DataFrame) -> None:
    extra = records.assign(
        img_filename="vscode_mac/shot.png",
        instruction="Refresh the file explorer.",
        source_file="annotations/vscode_macos.json",
    )
    detail = official_results(extra)["details"][0]
    assert detail["img_path"] == "vscode_mac/shot.png"
    assert detail["prompt_to_evaluate"] == "Refresh the file explorer."
    assert detail["task_filename"] == "vscode_macos"


def test_official_json_rejects_a_scored_click_without_pred(records: pd.DataFrame) -> None:
    broken = records.copy()
    broken.loc[0, "pred_x"] = math.nan
    with pytest.raises(ValueError, match="finite pred"):
        official_results(broken)
