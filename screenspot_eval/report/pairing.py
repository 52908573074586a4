"""Pair the records of two runs sample by sample, for the paired A/B statistics.

The comparison is only paired if both variants answered the same samples: a sample that one run
lacks would silently change one side's denominator. So ids must match exactly, unless the caller
explicitly asks for the shared samples only, and then every dropped id is kept for the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from screenspot_eval.errors import UserError
from screenspot_eval.protocol.scoring import OUTCOMES

#: Per-sample fields, identical for both sides (taken from A), in output order.
SAMPLE_FIELDS: tuple[str, ...] = (
    "id",
    "img_filename",
    "instruction",
    "bbox",
    "img_size",
    "group",
    "ui_type",
    "application",
    "platform",
    "language",
)
#: Per-side fields, suffixed ``_a`` / ``_b`` in the paired frame. Only ``outcome`` is required.
SIDE_FIELDS: tuple[str, ...] = (
    "outcome",
    "pred_x",
    "pred_y",
    "distance_px",
    "raw_response",
    "error",
    "view",
)
#: Fields that define what was scored: if they differ between the runs, the pair is suspect.
CHECKED_FIELDS: tuple[str, ...] = ("img_filename", "bbox", "img_size", "instruction")
#: How many ids of each side an error message lists.
LISTED_IDS: int = 20

#: Columns of ``flips.csv``: the sample's fields (but its language), then both sides' answers.
FLIP_COLUMNS: tuple[str, ...] = (
    "id",
    "direction",
    *(name for name in SAMPLE_FIELDS if name not in ("id", "language")),
    "outcome_a",
    "outcome_b",
    "pred_x_a",
    "pred_y_a",
    "pred_x_b",
    "pred_y_b",
    "raw_response_a",
    "raw_response_b",
    "error_a",
    "error_b",
)


def _listed(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:LISTED_IDS])
    more = len(ids) - LISTED_IDS
    return shown + (f", ... ({more} more)" if more > 0 else "") if ids else "none"


class UnpairedSamplesError(UserError, ValueError):
    """Runs A and B did not score the same samples, so a paired comparison is not defined."""

    def __init__(self, only_a: list[str], only_b: list[str], n_shared: int) -> None:
        self.only_a = only_a
        self.only_b = only_b
        self.n_shared = n_shared
        super().__init__(
            "runs A and B did not score the same samples: "
            f"{len(only_a)} only in A ({_listed(only_a)}); "
            f"{len(only_b)} only in B ({_listed(only_b)}). "
            f"Pass --shared-only to compare the {n_shared} shared samples "
            "(the dropped ids are listed in the report)."
        )


@dataclass(frozen=True)
class PairedRecords:
    """One row per paired sample, plus what was left out to get there.

    ``frame`` holds :data:`SAMPLE_FIELDS`, the ``_a`` / ``_b`` copies of :data:`SIDE_FIELDS`,
    and the columns :func:`~screenspot_eval.stats.slices.compare_slices` reads: ``cluster``
    (the screenshot) and the bool ``correct_*``, ``wrong_format_*`` and ``failed_*``.
    ``differing`` maps a :data:`CHECKED_FIELDS` name to the ids whose value differs between
    the runs (A's value is kept).
    """

    frame: pd.DataFrame
    only_a: list[str]
    only_b: list[str]
    shared_only: bool
    differing: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.frame)


def _check_side(df: pd.DataFrame, side: str) -> pd.DataFrame:
    """Validate one run's frame and give it every expected column (optional ones as None)."""
    missing = [c for c in ("id", "img_filename", "outcome") if c not in df.columns]
    if missing:
        raise ValueError(f"records of {side} lack columns {missing}")
    if df["id"].isna().any():
        raise ValueError(f"records of {side} have samples without an id")
    dupes = df.loc[df["id"].duplicated(), "id"].astype(str).unique().tolist()
    if dupes:
        raise ValueError(f"records of {side} score some samples twice: {_listed(dupes)}")
    bad = sorted({str(v) for v in df["outcome"] if v not in OUTCOMES})
    if bad:
        raise ValueError(f"records of {side} have unknown outcomes {bad}; expected {OUTCOMES}")
    out = df.copy()
    out["id"] = out["id"].astype(str)
    out["outcome"] = out["outcome"].map(str)
    for name in (*SAMPLE_FIELDS, *SIDE_FIELDS):
        if name not in out.columns:
            out[name] = None
    return out


def _normal(value: Any) -> Any:
    """A comparable form: sequences (bbox, img_size) as float tuples, NaN as None."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(float(v) for v in value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def pair_records(a: pd.DataFrame, b: pd.DataFrame, *, shared_only: bool = False) -> PairedRecords:
    """Merge the record frames of runs A and B on ``id`` (rows in A's order).

    Raises :class:`UnpairedSamplesError` if the id sets differ, unless ``shared_only``; then
    the intersection is kept and the dropped ids are returned in ``only_a`` / ``only_b``.
    """
    a = _check_side(a, "A")
    b = _check_side(b, "B")
    ids_a, ids_b = set(a["id"]), set(b["id"])
    only_a = [i for i in a["id"] if i not in ids_b]
    only_b = [i for i in b["id"] if i not in ids_a]
    if (only_a or only_b) and not shared_only:
        raise UnpairedSamplesError(only_a, only_b, len(ids_a & ids_b))

    side_a = a[list(SAMPLE_FIELDS) + list(SIDE_FIELDS)].rename(
        columns={f: f"{f}_a" for f in SIDE_FIELDS}
    )
    side_b = b[["id", *CHECKED_FIELDS, *SIDE_FIELDS]].rename(
        columns={f: f"{f}_b" for f in (*CHECKED_FIELDS, *SIDE_FIELDS)}
    )
    frame = side_a.merge(side_b, on="id", how="inner", validate="one_to_one", sort=False)

    differing: dict[str, list[str]] = {}
    for name in CHECKED_FIELDS:
        differs = [
            _normal(x) != _normal(y) for x, y in zip(frame[name], frame[f"{name}_b"], strict=True)
        ]
        ids = frame.loc[differs, "id"].tolist()
        if ids:
            differing[name] = ids
    frame = frame.drop(columns=[f"{name}_b" for name in CHECKED_FIELDS])

    frame["cluster"] = frame["img_filename"]
    for side in ("a", "b"):
        outcome = frame[f"outcome_{side}"]
        frame[f"correct_{side}"] = (outcome == "correct").to_numpy(dtype=bool)
        frame[f"wrong_format_{side}"] = (outcome == "wrong_format").to_numpy(dtype=bool)
        frame[f"failed_{side}"] = (outcome == "failed").to_numpy(dtype=bool)
    frame = frame.reset_index(drop=True)
    return PairedRecords(
        frame=frame,
        only_a=only_a if shared_only else [],
        only_b=only_b if shared_only else [],
        shared_only=shared_only,
        differing=differing,
    )


def flips(frame: pd.DataFrame) -> pd.DataFrame:
    """Every sample whose correctness changed: B's gains (``b_only``) first, then its losses.

    These are the only samples that carry information about the difference (McNemar's
    discordant pairs), so they are the ones worth looking at one by one.
    """
    changed = frame.loc[frame["correct_a"].to_numpy(bool) != frame["correct_b"].to_numpy(bool)]
    out = changed.copy()
    out["direction"] = ["b_only" if right else "a_only" for right in changed["correct_b"]]
    out["_order"] = (out["direction"] == "a_only").astype(int)
    out = out.sort_values("_order", kind="stable")
    for name in FLIP_COLUMNS:
        if name not in out.columns:
            out[name] = None
    return out[list(FLIP_COLUMNS)].reset_index(drop=True)
