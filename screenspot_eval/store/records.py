"""Typed, versioned per-sample records: one JSON line in ``predictions.jsonl`` per sample.

A record carries everything needed to rescore, slice and audit a sample without the dataset:
the slice fields, the prompt hash, the raw answer, how it was parsed, the outcome and the cost.
``schema_version`` changes whenever a field changes meaning; readers refuse newer versions.
"""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict

from screenspot_eval.data.sample import DEFAULT_LAYOUT, TargetKind
from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.protocol.scoring import Outcome, Target, click_hits

SCHEMA_VERSION = 4
"""4 added ``calls`` (model calls made for the sample: the steps of a multi-step protocol)
and ``view`` (the crop the final click was answered in, original pixels; None: the whole
image), with ``prompt_tokens``, ``completion_tokens``, ``image_soft_tokens`` and
``latency_s`` summed over the calls (for one call, as before). 2 added ``image_soft_tokens``; 3 added the dataset ``layout``, the ``target`` kind (box,
polygon, refusal), the ``polygon`` outline and the ``categories``, with ``bbox``,
``application``, ``platform`` and ``ui_type`` None where a layout has none (a refusal target
has no box). Older records read as before: ScreenSpot-Pro boxes (layout ``screenspot-pro``,
target ``box``, no polygon, no categories); version 1 records have ``image_soft_tokens``
None."""

#: How a ``failed`` record's ``error`` names a cause other than the request itself: the image
#: could not be read, or our own parser failed (a bug, never a model miss).
IMAGE_ERROR_PREFIX = "image: "
PARSER_ERROR_PREFIX = "internal parser error: "


def failed_cause(error: str | None) -> str:
    """Why a ``failed`` record has no click: ``image``, ``internal parser error`` or ``request``."""
    text = error or ""
    if text.startswith(PARSER_ERROR_PREFIX):
        return PARSER_ERROR_PREFIX.removesuffix(": ")
    if text.startswith(IMAGE_ERROR_PREFIX):
        return IMAGE_ERROR_PREFIX.removesuffix(": ")
    return "request"


class PredictionRecord(BaseModel):
    """One evaluated (or failed) sample."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    id: str
    img_filename: str
    img_size: tuple[int, int]
    bbox: tuple[float, float, float, float] | None
    instruction: str | None
    language: Literal["en", "cn"]
    application: str | None
    platform: str | None
    group: str | None
    ui_type: str | None
    source_file: str
    prompt_hash: str
    convention: CoordinateConvention
    variant: str
    raw_response: str | None
    parse_status: Literal["parsed", "failed"] | None
    failure_kind: str | None
    answer_format: str | None
    out_of_image: bool | None
    outcome: Outcome
    pred_x: float | None
    pred_y: float | None
    distance_px: float | None
    error: str | None
    attempts: int
    latency_s: float
    prompt_tokens: int | None
    completion_tokens: int | None
    endpoint: str | None = None
    image_soft_tokens: int | None = None
    """Image placeholder tokens in the prompt the engine ran (None: unknown, or version 1)."""
    layout: str = DEFAULT_LAYOUT
    """The dataset layout (:mod:`screenspot_eval.data.layouts`) the sample was read in."""
    target: TargetKind = "box"
    """What the click was scored against: ``bbox``, ``polygon`` or nothing (``refusal``)."""
    polygon: tuple[float, ...] | None = None
    """A polygon target's flat ``(x1, y1, x2, y2, ...)`` outline in pixels (``bbox`` is its
    bounding box); rescoring needs it, the bounding box is not the target."""
    categories: tuple[str, ...] = ()
    """The release's capability groups of the sample (OSWorld-G), for slices."""
    calls: int = 1
    """Model calls made for this sample (a multi-step protocol's steps; ``steps.jsonl``)."""
    view: tuple[int, int, int, int] | None = None
    """The crop the final answer was given in, original pixels (None: the whole image)."""

    @property
    def finished(self) -> bool:
        """A ``failed`` record (request error) is retried on resume; every other is final."""
        return self.outcome is not Outcome.FAILED


def rescore(record: PredictionRecord) -> Outcome:
    """The record's outcome recomputed from its stored click (original pixels) and target,
    without the dataset: ``wrong_format`` and ``failed`` have no click and stay as they are."""
    if record.outcome in (Outcome.WRONG_FORMAT, Outcome.FAILED):
        return record.outcome
    if record.pred_x is None or record.pred_y is None:
        raise ValueError(f"record {record.id}: outcome {record.outcome} without a click")
    hit = click_hits(record.pred_x, record.pred_y, Target.of(record))
    return Outcome.CORRECT if hit else Outcome.WRONG


def records_frame(records: list[PredictionRecord]) -> pd.DataFrame:
    """Records as a DataFrame with the columns the metrics and reports read."""
    rows: list[dict[str, Any]] = [r.model_dump(mode="json") for r in records]
    columns = list(PredictionRecord.model_fields)
    df = pd.DataFrame(rows, columns=columns)
    if len(df):
        df["bbox"] = [tuple(b) if b is not None else None for b in df["bbox"]]
        df["polygon"] = [tuple(p) if p is not None else None for p in df["polygon"]]
        df["categories"] = [tuple(c) for c in df["categories"]]
    return df
