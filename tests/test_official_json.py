"""``screenspot_pro_results.json`` holds exactly what the official script computes.

``reference_metrics`` below is an independent re-implementation, written from the rules of
``eval_screenspot_pro.py`` (likaixin2000/ScreenSpot-Pro-GUI-Grounding), not from the library:

- a sample is counted by its ``correctness`` (``correct`` / ``wrong`` / ``wrong_format``);
  per list: ``num_correct_action``, ``num_total``, ``wrong_format_num``, ``action_acc`` =
  correct / total, ``text_acc`` and ``icon_acc`` over the ``ui_type`` text / icon samples,
  0 for an empty list;
- a breakdown takes every combination of the distinct values of its fields and keeps the
  samples matching the combination, where a value None matches *every* sample (the script's
  "None means no filter"); combinations without samples are left out;
- ``fine_grained``: platform x application (x the constant instruction style and gt type),
  ``seeclick_style``: platform, ``leaderboard_simple_style``: group,
  ``leaderboard_detailed_style``: application, ``overall``: all samples.

The records are real ones (``build_record``) written by ``write_run_exports``; the same test
checks that ``metrics.csv`` and ``summary.md`` agree with the JSON on totals and on how a
failed request is counted.
"""

from __future__ import annotations

import csv
import json
import re
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from fakes import fake_manifest
from hypothesis import given, settings
from hypothesis import strategies as st

from screenspot_eval.backends.base import Completion
from screenspot_eval.data.sample import Sample
from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.report.official_json import OWN_KEY, official_results
from screenspot_eval.report.run_exports import write_run_exports
from screenspot_eval.run.grading import build_record
from screenspot_eval.store.records import PredictionRecord, records_frame

STYLE = "inst_style:instruction gt_type:positive"
SECTIONS = (
    "fine_grained",
    "seeclick_style",
    "leaderboard_simple_style",
    "leaderboard_detailed_style",
    "overall",
)
BBOX = (100.0, 100.0, 200.0, 150.0)
SIZE = (1000, 800)
ANSWERS = {
    "correct": "(150, 120)",  # inside the box (pixels of the original image)
    "wrong": "(500, 500)",
    "wrong_format": "I cannot see that element.",
}


# --- the official rules, re-implemented ------------------------------------------------------


def reference_metric(results: list[dict[str, Any]]) -> dict[str, Any]:
    def acc(items: list[dict[str, Any]]) -> float:
        n = len(items)
        return sum(1 for r in items if r["correctness"] == "correct") / n if n > 0 else 0

    return {
        "num_correct_action": sum(1 for r in results if r["correctness"] == "correct"),
        "num_total": len(results),
        "wrong_format_num": sum(1 for r in results if r["correctness"] == "wrong_format"),
        "action_acc": acc(results),
        "text_acc": acc([r for r in results if r["ui_type"] == "text"]),
        "icon_acc": acc([r for r in results if r["ui_type"] == "icon"]),
    }


def reference_breakdown(
    details: list[dict[str, Any]], fields: tuple[str, ...], key: str
) -> dict[str, Any]:
    distinct = [list({d.get(f) for d in details}) for f in fields]
    out = {}
    for combo in product(*distinct):
        wanted = dict(zip(fields, combo, strict=True))
        kept = [d for d in details if all(v is None or d.get(f) == v for f, v in wanted.items())]
        if kept:
            out[key.format(**wanted)] = reference_metric(kept)
    return out


def reference_metrics(details: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "fine_grained": reference_breakdown(
            details, ("platform", "application"), "plat:{platform} app:{application} " + STYLE
        ),
        "seeclick_style": reference_breakdown(details, ("platform",), "plat:{platform} " + STYLE),
        "leaderboard_simple_style": reference_breakdown(details, ("group",), "group:{group}"),
        "leaderboard_detailed_style": reference_breakdown(
            details, ("application",), "app:{application}"
        ),
        "overall": reference_metric(details),
    }


# --- records ---------------------------------------------------------------------------------

#: (id, group, ui_type, application, platform, outcome): every outcome, a group None, two
#: platforms, an application on two platforms, text and icon.
PLAN: list[tuple[str, str | None, str, str, str, str]] = [
    ("s0", "Dev", "text", "vscode", "macos", "correct"),
    ("s1", "Dev", "icon", "vscode", "macos", "wrong"),
    ("s2", "Dev", "text", "vscode", "windows", "wrong_format"),
    ("s3", "Dev", "icon", "pycharm", "windows", "failed"),
    ("s4", "CAD", "text", "autocad", "windows", "correct"),
    ("s5", "CAD", "text", "autocad", "windows", "correct"),
    ("s6", "CAD", "icon", "autocad", "windows", "failed"),
    ("s7", None, "icon", "word", "macos", "correct"),
    ("s8", None, "text", "word", "macos", "wrong_format"),
    ("s9", "Office", "icon", "word", "windows", "wrong"),
    ("s10", "Office", "text", "excel", "macos", "correct"),
    ("s11", "Creative", "icon", "photoshop", "windows", "wrong"),
]


def make_record(
    sample_id: str, group: str | None, ui_type: str, application: str, platform: str, outcome: str
) -> PredictionRecord:
    sample = Sample(
        id=sample_id,
        img_filename=f"{application}_{platform}/shot_{sample_id}.png",
        instruction=f"Click target {sample_id}",
        bbox=BBOX,
        img_size=SIZE,
        application=application,
        platform=platform,
        group=group,
        ui_type=ui_type,  # type: ignore[arg-type]
        source_file=f"annotations/{application}_{platform}.json",
    )
    completion = (
        Completion(sample_id, None, error="HTTP 503 (after 3 attempts)", attempts=3)
        if outcome == "failed"
        else Completion(sample_id, ANSWERS[outcome])
    )
    record = build_record(
        sample,
        instruction=sample.instruction,
        language="en",
        completion=completion,
        convention=CoordinateConvention.XY_PIXELS_ORIGINAL,
        prompt_hash="h",
        variant="pre",
    )
    assert record.outcome.value == outcome, record
    return record


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    records = [make_record(*row) for row in PLAN]
    return write_run_exports(tmp_path_factory.mktemp("run"), records, fake_manifest())


def test_every_official_key_and_number_matches_the_official_rules(
    written: dict[str, Path],
) -> None:
    result = json.loads(written["official"].read_text(encoding="utf-8"))
    details = result["details"]
    assert [d["id"] for d in details] == [row[0] for row in PLAN]
    expected = reference_metrics(details)
    assert set(result["metrics"]) == set(SECTIONS)
    for section in SECTIONS:
        assert result["metrics"][section] == expected[section], section
    # spot checks by hand, so the reference itself is checked too
    simple = result["metrics"]["leaderboard_simple_style"]
    assert set(simple) == {"group:Dev", "group:CAD", "group:Office", "group:Creative", "group:None"}
    assert simple["group:None"] == result["metrics"]["overall"]  # None = no filter = all
    assert simple["group:None"]["num_total"] == len(PLAN)
    assert simple["group:Dev"] == {
        "num_correct_action": 1,
        "num_total": 4,
        "wrong_format_num": 2,  # one unparseable answer, one failed request
        "action_acc": 0.25,
        "text_acc": 0.5,
        "icon_acc": 0.0,
    }
    fine = result["metrics"]["fine_grained"]
    assert fine[f"plat:windows app:vscode {STYLE}"]["num_total"] == 1
    assert f"plat:windows app:excel {STYLE}" not in fine  # no such samples: left out
    assert result["metrics"]["overall"]["wrong_format_num"] == 4


def test_failed_is_wrong_format_in_the_details_and_named_in_our_own_key(
    written: dict[str, Path],
) -> None:
    result = json.loads(written["official"].read_text(encoding="utf-8"))
    by_id = {d["id"]: d for d in result["details"]}
    for sample_id, *_, outcome in PLAN:
        detail = by_id[sample_id]
        assert detail["outcome"] == outcome
        assert detail["correctness"] == ("wrong_format" if outcome == "failed" else outcome)
        assert (detail["pred"] is None) == (outcome in ("failed", "wrong_format"))
    own = result[OWN_KEY]
    assert own["failed_counted_as"] == "wrong_format"
    assert own["outcomes"] == {"correct": 5, "wrong": 3, "wrong_format": 2, "failed": 2}
    assert (
        own["outcomes"]["wrong_format"] + own["outcomes"]["failed"]
        == result["metrics"]["overall"]["wrong_format_num"]
    )
    ungrouped = [d for d in result["details"] if d["group"] is None]
    assert own["samples_without_group"] == reference_metric(ungrouped)
    assert own["samples_without_group"]["num_total"] == 2
    assert "group:None" in own["group_none"] and "failed" in own["counting"]


def test_metrics_csv_and_summary_agree_with_the_json(written: dict[str, Path]) -> None:
    result = json.loads(written["official"].read_text(encoding="utf-8"))
    metrics = result["metrics"]
    with written["metrics"].open(newline="", encoding="utf-8") as handle:
        rows = {(r["slice"], r["value"]): r for r in csv.DictReader(handle)}

    def agrees(row: dict[str, str], official: dict[str, Any]) -> None:
        assert int(row["n"]) == official["num_total"]
        assert int(row["correct"]) == official["num_correct_action"]
        assert float(row["accuracy"]) == pytest.approx(official["action_acc"])
        # wrong_format and failed apart in the CSV, together in the official count
        assert int(row["wrong_format"]) + int(row["failed"]) == official["wrong_format_num"]

    agrees(rows[("overall", "all")], metrics["overall"])
    for group in ("Dev", "CAD", "Office", "Creative"):
        agrees(rows[("group", group)], metrics["leaderboard_simple_style"][f"group:{group}"])
    agrees(rows[("group", "(missing)")], result[OWN_KEY]["samples_without_group"])
    for key, official in metrics["leaderboard_detailed_style"].items():
        agrees(rows[("application", key.removeprefix("app:"))], official)
    for key, official in metrics["seeclick_style"].items():
        agrees(rows[("platform", key.split()[0].removeprefix("plat:"))], official)
    assert int(rows[("overall", "all")]["failed"]) == result[OWN_KEY]["outcomes"]["failed"]

    summary = written["summary"].read_text(encoding="utf-8")
    overall = metrics["overall"]
    headline = re.search(r"Click accuracy: ([\d.]+) %\*\* \((\d+) / (\d+)\)", summary)
    assert headline is not None, summary
    assert (int(headline[2]), int(headline[3])) == (
        overall["num_correct_action"],
        overall["num_total"],
    )
    assert float(headline[1]) == pytest.approx(100 * overall["action_acc"], abs=0.005)
    assert "Outcomes: correct 5, failed 2, wrong 3, wrong_format 2" in summary
    assert "Failed requests: 2" in summary and "`wrong_format`" in summary
    all_row = next(line for line in summary.splitlines() if line.startswith("| all |"))
    assert all_row.split(" | ")[-1].rstrip(" |") == str(overall["num_total"])


# --- any mix of records ----------------------------------------------------------------------

_ROWS = st.lists(
    st.tuples(
        st.sampled_from(["Dev", "CAD", "Office", None, "None "]),
        st.sampled_from(["text", "icon"]),
        st.sampled_from(["vscode", "word", "autocad"]),
        st.sampled_from(["macos", "windows", "linux"]),
        st.sampled_from(["correct", "wrong", "wrong_format", "failed"]),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(_ROWS)
def test_any_mix_of_records_gives_the_official_numbers(rows: list[tuple]) -> None:
    records = [make_record(f"r{i}", *row) for i, row in enumerate(rows)]
    result = official_results(records_frame(records))
    assert result["metrics"] == reference_metrics(result["details"])
    assert sum(result[OWN_KEY]["outcomes"].values()) == len(rows)
