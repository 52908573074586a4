"""The official ScreenSpot-Pro results JSON (``{"details": [...], "metrics": {...}}``).

Mirrors what ``eval_screenspot_pro.py`` (likaixin2000/ScreenSpot-Pro-GUI-Grounding) writes
for positive-ground-truth, ``instruction``-style runs, so leaderboard tooling can read our runs:
per-sample ``pred`` in original pixels (null for no click), ``raw_response``, ``bbox``,
``correctness``; metric sections ``fine_grained`` (platform x application),
``seeclick_style`` (platform), ``leaderboard_simple_style`` (group),
``leaderboard_detailed_style`` (application) and ``overall``, each with the official keys.

The official format knows no ``failed`` outcome: a request that failed after retries has no
answer, so it is written as ``correctness: "wrong_format"`` (a miss in the denominator, as
in the official script) and our own ``outcome`` field keeps ``failed``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from screenspot_eval.report.metrics import validate_records

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


def _section(
    details: Sequence[dict[str, Any]], key_of: Callable[[dict[str, Any]], str]
) -> dict[str, dict[str, int | float]]:
    """Metrics per key (only keys with samples, as the official script skips empty ones)."""
    buckets: dict[str, list[dict[str, Any]]] = {}
    for entry in details:
        buckets.setdefault(key_of(entry), []).append(entry)
    return {key: _metric(buckets[key]) for key in sorted(buckets)}


def official_metrics(details: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``metrics`` block, keys spelled as in the official script."""
    style = f"inst_style:{INSTRUCTION_STYLE} gt_type:{GT_TYPE}"
    return {
        "fine_grained": _section(
            details, lambda r: f"plat:{r['platform']} app:{r['application']} {style}"
        ),
        "seeclick_style": _section(details, lambda r: f"plat:{r['platform']} {style}"),
        "leaderboard_simple_style": _section(details, lambda r: f"group:{r['group']}"),
        "leaderboard_detailed_style": _section(details, lambda r: f"app:{r['application']}"),
        "overall": _metric(details),
    }


def official_results(df: pd.DataFrame) -> dict[str, Any]:
    """``{"details": [...], "metrics": {...}}`` for a DataFrame of scored records."""
    details = official_details(df)
    return {"details": details, "metrics": official_metrics(details)}


def write_official_json(df: pd.DataFrame, path: str | Path) -> Path:
    """Write the official results JSON (strict JSON: no NaN) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(official_results(df), indent=4, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path
