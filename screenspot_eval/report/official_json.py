"""The official ScreenSpot-Pro results JSON (``{"details": [...], "metrics": {...}}``).

Mirrors what ``eval_screenspot_pro.py`` (likaixin2000/ScreenSpot-Pro-GUI-Grounding) writes
for positive-ground-truth, ``instruction``-style runs, so leaderboard tooling can read our runs:
per-sample ``pred`` in original pixels (null for no click), ``raw_response``, ``bbox``,
``correctness``; metric sections ``fine_grained`` (platform x application),
``seeclick_style`` (platform), ``leaderboard_simple_style`` (group),
``leaderboard_detailed_style`` (application) and ``overall``, each with the official keys and
exactly the numbers the official script computes from the same ``details``: its breakdowns
filter with "None means no filter", so ``leaderboard_simple_style["group:None"]`` (present
when some sample has no group) covers *all* samples, not the ungrouped ones.

The official format knows no ``failed`` outcome: a request that failed after retries has no
answer, so it is written as ``correctness: "wrong_format"`` (a miss in the denominator, as
in the official script) and our own ``outcome`` field keeps ``failed``. What this tool adds
(outcome counts, how ``failed`` is counted, the samples without a group) sits under its own
top-level key, :data:`OWN_KEY`, never under the official ones.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from screenspot_eval.protocol.scoring import OUTCOMES
from screenspot_eval.report.metrics import validate_records

#: The top-level key of what this tool adds (next to the official ``details`` and ``metrics``).
OWN_KEY = "screenspot_eval"
INSTRUCTION_STYLE = "instruction"
GT_TYPE = "positive"
PREDICTION_COLUMNS: tuple[str, ...] = ("pred_x", "pred_y", "raw_response", "bbox")
METRIC_KEYS: tuple[str, ...] = (
    "num_correct_action",
    "num_total",
    "wrong_format_num",
    "action_acc",
    "text_acc",
    "icon_acc",
)
METRIC_SECTIONS: tuple[str, ...] = (
    "fine_grained",
    "seeclick_style",
    "leaderboard_simple_style",
    "leaderboard_detailed_style",
    "overall",
)
DETAIL_KEYS: tuple[str, ...] = (
    "img_path",
    "group",
    "platform",
    "application",
    "lang",
    "instruction_style",
    "prompt_to_evaluate",
    "gt_type",
    "ui_type",
    "task_filename",
    "pred",
    "raw_response",
    "bbox",
    "correctness",
    "id",
    "outcome",
)


def _plain(value: Any) -> Any:
    """A JSON-ready Python value: None for missing/NaN, ints for integral floats in boxes."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return _plain(value.item())
    return value


def _bbox(value: Any) -> list[int | float]:
    coords = [float(v) for v in value]
    if len(coords) != 4:
        raise ValueError(f"bbox must have 4 numbers, got {value!r}")
    return [int(v) if v.is_integer() else v for v in coords]


def _optional(row: pd.Series, column: str) -> Any:
    return _plain(row[column]) if column in row.index else None


def _task_filename(row: pd.Series) -> str:
    source = _optional(row, "source_file")
    if source:
        return PurePosixPath(str(source)).stem
    return f"{row['application']}_{row['platform']}"


def official_details(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Per-sample entries in the official layout, plus our ``id`` and four-valued ``outcome``."""
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"records lack columns {missing}")
    validate_records(df)  # columns and outcome values
    details = []
    for _, row in df.iterrows():
        outcome = str(row["outcome"])
        has_click = outcome in ("correct", "wrong")
        pred = None
        if has_click:
            pred = [float(row["pred_x"]), float(row["pred_y"])]
            if not all(math.isfinite(v) for v in pred):
                raise ValueError(f"sample {row['id']}: outcome {outcome} without a finite pred")
        entry = {
            "img_path": _optional(row, "img_filename"),
            "group": _plain(row["group"]),
            "platform": str(row["platform"]),
            "application": str(row["application"]),
            "lang": _plain(row["language"]),
            "instruction_style": INSTRUCTION_STYLE,
            "prompt_to_evaluate": _optional(row, "instruction"),
            "gt_type": GT_TYPE,
            "ui_type": str(row["ui_type"]),
            "task_filename": _task_filename(row),
            "pred": pred,
            "raw_response": _plain(row["raw_response"]),
            "bbox": _bbox(row["bbox"]),
            "correctness": "wrong_format" if outcome == "failed" else outcome,
            "id": str(row["id"]),
            "outcome": outcome,
        }
        details.append(entry)
    return details


def _metric(results: Sequence[dict[str, Any]]) -> dict[str, int | float]:
    """The official ``calc_metric_for_result_list``: empty parts give 0, not NaN."""

    def accuracy(items: Sequence[dict[str, Any]]) -> float:
        hits = sum(r["correctness"] == "correct" for r in items)
        return hits / len(items) if items else 0

    text = [r for r in results if r["ui_type"] == "text"]
    icon = [r for r in results if r["ui_type"] == "icon"]
    return {
        "num_correct_action": sum(r["correctness"] == "correct" for r in results),
        "num_total": len(results),
        "wrong_format_num": sum(r["correctness"] == "wrong_format" for r in results),
        "action_acc": accuracy(results),
        "text_acc": accuracy(text),
        "icon_acc": accuracy(icon),
    }


def _filtered(details: Sequence[dict[str, Any]], **criteria: Any) -> list[dict[str, Any]]:
    """The official ``collect_results_to_eval``: a criterion of None means *no filter*."""
    return [
        r
        for r in details
        if all(value is None or r.get(name) == value for name, value in criteria.items())
    ]


def _section(
    details: Sequence[dict[str, Any]],
    fields: Sequence[str],
    key_of: Callable[..., str],
) -> dict[str, dict[str, int | float]]:
    """The official per-combination breakdown (``make_combinations`` + filter + metric).

    Every combination of the distinct values of ``fields`` is filtered as the official script
    does, so a value None keeps *every* sample (``group:None`` covers all samples, not the
    ungrouped ones); combinations without samples are skipped, as there.
    """
    values = [
        sorted({r.get(f) for r in details}, key=lambda v: (v is not None, str(v))) for f in fields
    ]
    out: dict[str, dict[str, int | float]] = {}
    for combo in itertools.product(*values):
        criteria = dict(zip(fields, combo, strict=True))
        chosen = _filtered(details, **criteria)
        if chosen:
            out[key_of(**criteria)] = _metric(chosen)
    return dict(sorted(out.items()))


def official_metrics(details: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``metrics`` block, computed from ``details`` by the official script's rules."""
    style = f"inst_style:{INSTRUCTION_STYLE} gt_type:{GT_TYPE}"
    return {
        "fine_grained": _section(
            details,
            ("platform", "application"),
            lambda platform, application: f"plat:{platform} app:{application} {style}",
        ),
        "seeclick_style": _section(
            details, ("platform",), lambda platform: f"plat:{platform} {style}"
        ),
        "leaderboard_simple_style": _section(details, ("group",), lambda group: f"group:{group}"),
        "leaderboard_detailed_style": _section(
            details, ("application",), lambda application: f"app:{application}"
        ),
        "overall": _metric(details),
    }


def own_metrics(details: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What this tool adds, under its own key :data:`OWN_KEY` (never under official keys)."""
    outcomes = dict.fromkeys(OUTCOMES, 0)
    for entry in details:
        outcomes[entry["outcome"]] += 1
    ungrouped = [r for r in details if r["group"] is None]
    return {
        "failed_counted_as": "wrong_format",
        "counting": (
            "A failed request (outcome 'failed': no answer after retries) has no notion in the "
            "official script; it is written with correctness 'wrong_format' and counted in "
            "num_total and wrong_format_num, a miss in the denominator (so wrong_format_num = "
            "outcomes.wrong_format + outcomes.failed). metrics.csv and summary.md count it the "
            "same way (n and accuracy) and list it apart as 'failed'."
        ),
        "group_none": (
            "As in the official script, 'group:None' in leaderboard_simple_style means no "
            "filter: all samples. The samples without a group are 'samples_without_group'."
        ),
        "outcomes": outcomes,
        "samples_without_group": _metric(ungrouped),
    }


def official_results(df: pd.DataFrame) -> dict[str, Any]:
    """``{"details": [...], "metrics": {...}}`` for a DataFrame of scored records."""
    details = official_details(df)
    return {
        "details": details,
        "metrics": official_metrics(details),
        OWN_KEY: own_metrics(details),
    }


def write_official_json(df: pd.DataFrame, path: str | Path) -> Path:
    """Write the official results JSON (strict JSON: no NaN) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(official_results(df), indent=4, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path
