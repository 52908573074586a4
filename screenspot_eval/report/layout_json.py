"""The results JSON of the layouts beside ScreenSpot-Pro, in the spirit of the official one.

ScreenSpot-Pro runs keep the official ``{"details": [...], "metrics": {...}}`` file of
:mod:`screenspot_eval.report.official_json`, unchanged. ScreenSpot-v2 and OSWorld-G runs get the
same two blocks: per-sample ``details`` (``pred`` in original pixels or null, ``raw_response``,
the target, ``correctness``) and ``metrics`` per slice of the layout. For ScreenSpot-v2 each
metric has the official ScreenSpot-Pro keys (``num_correct_action``, ``num_total``,
``wrong_format_num``, ``action_acc``, ``text_acc``, ``icon_acc``). For OSWorld-G the metrics
also hold what the official ``evaluation/eval.py`` prints (``total``, ``correct``,
``accuracy``, ``accuracy_dict_group`` per category, an item counted in each of its categories,
``unclassified`` when it has none), plus the accuracy without the refusal items.

As in the official ScreenSpot-Pro file, a failed request is written ``correctness:
"wrong_format"`` (a miss in the denominator) and our own ``outcome`` keeps ``failed``; what this
tool adds sits under :data:`~screenspot_eval.report.official_json.OWN_KEY`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from screenspot_eval.data.layouts import Layout, get_layout, slice_values
from screenspot_eval.protocol.scoring import OUTCOMES
from screenspot_eval.report.metrics import records_layout, validate_records
from screenspot_eval.report.official_json import OWN_KEY, _metric, _plain

WITHOUT_REFUSAL = "overall_without_refusal"


def _numbers(value: Any) -> list[int | float] | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    coords = [float(v) for v in value]
    return [int(v) if v.is_integer() else v for v in coords]


def layout_details(df: pd.DataFrame, layout: Layout) -> list[dict[str, Any]]:
    """Per-sample entries: the sample's own fields in the layout, the answer and its outcome."""
    validate_records(df)
    release_kind = {ours: theirs for theirs, ours in layout.target_kinds.items()}
    details = []
    for row in df.to_dict("records"):
        outcome = str(row["outcome"])
        pred = None
        if outcome in ("correct", "wrong"):
            pred = [float(row["pred_x"]), float(row["pred_y"])]
            if not all(math.isfinite(v) for v in pred):
                raise ValueError(f"sample {row['id']}: outcome {outcome} without a finite pred")
        target = _plain(row.get("target")) or "box"
        entry: dict[str, Any] = {
            "id": str(row["id"]),
            "img_path": _plain(row.get("img_filename")),
            "instruction": _plain(row.get("instruction")),
            "lang": _plain(row.get("language")),
        }
        if layout.fields.target_kind is not None:
            entry["box_type"] = release_kind.get(target, target)
            entry["categories"] = slice_values(row, "category")
        else:
            entry |= {
                "platform": _plain(row.get("platform")),
                "application": _plain(row.get("application")),
                "ui_type": _plain(row.get("ui_type")),
            }
        entry |= {
            "target": target,
            "bbox": _numbers(row.get("bbox")),
            "polygon": _numbers(row.get("polygon")),
            "pred": pred,
            "raw_response": _plain(row.get("raw_response")),
            "correctness": "wrong_format" if outcome == "failed" else outcome,
            "outcome": outcome,
        }
        details.append(entry)
    return details


def _official_group(items: Sequence[dict[str, Any]]) -> dict[str, int | float]:
    """The official OSWorld-G per-group entry: total, correct, accuracy (0 when empty)."""
    correct = sum(d["correctness"] == "correct" for d in items)
    return {
        "total": len(items),
        "correct": correct,
        "accuracy": correct / len(items) if items else 0.0,
        "wrong_format_num": sum(d["correctness"] == "wrong_format" for d in items),
    }


def layout_metrics(details: Sequence[dict[str, Any]], layout: Layout) -> dict[str, Any]:
    """The ``metrics`` block of the layout, from ``details``."""
    osworld = layout.fields.target_kind is not None
    metric = _official_group if osworld else _metric
    out: dict[str, Any] = {"overall": metric(details)}
    if layout.has_refusal:
        out[WITHOUT_REFUSAL] = metric([d for d in details if d["target"] != "refusal"])
    for column in layout.report_slices:
        groups: dict[str, list[dict[str, Any]]] = {}
        for d in details:
            for value in _detail_values(d, column):
                groups.setdefault(value, []).append(d)
        out[column] = {value: metric(items) for value, items in sorted(groups.items())}
    if osworld:
        overall = _official_group(details)
        out["official"] = {
            "total": overall["total"],
            "correct": overall["correct"],
            "accuracy": overall["accuracy"],
            "accuracy_dict_group": {
                value: {k: v for k, v in entry.items() if k != "wrong_format_num"}
                for value, entry in out.get("category", {}).items()
            },
        }
    return out


def _detail_values(detail: dict[str, Any], column: str) -> list[str]:
    if column == "category":
        return list(detail.get("categories") or [])
    if column == "language":
        return slice_values({"language": detail.get("lang")}, "language")
    return slice_values(detail, column)


def layout_results(df: pd.DataFrame, layout: str | Layout | None = None) -> dict[str, Any]:
    """``{"details": [...], "metrics": {...}, OWN_KEY: {...}}`` for a layout's records."""
    chosen = get_layout(layout or records_layout(df))
    details = layout_details(df, chosen)
    outcomes = dict.fromkeys(OUTCOMES, 0)
    for entry in details:
        outcomes[entry["outcome"]] += 1
    own: dict[str, Any] = {
        "layout": chosen.name,
        "scoring": chosen.scoring,
        "failed_counted_as": "wrong_format",
        "counting": (
            "A failed request (outcome 'failed': no answer after retries) is written with "
            "correctness 'wrong_format' and counted in every total: a miss in the "
            "denominator. metrics.csv and summary.md count it the same way."
        ),
        "outcomes": outcomes,
    }
    if chosen.has_refusal:
        own["refusal"] = (
            "A refusal item (the instruction names nothing on the screenshot) is correct only "
            "when the click has both coordinates negative, as in the official OSWorld-G "
            f"evaluation; '{WITHOUT_REFUSAL}' leaves these items out."
        )
    return {"details": details, "metrics": layout_metrics(details, chosen), OWN_KEY: own}


def write_layout_json(
    df: pd.DataFrame, path: str | Path, layout: str | Layout | None = None
) -> Path:
    """Write :func:`layout_results` (strict JSON: no NaN) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(layout_results(df, layout), indent=4, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path
