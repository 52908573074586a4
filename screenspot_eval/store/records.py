"""Typed, versioned per-sample records: one JSON line in ``predictions.jsonl`` per sample.

A record carries everything needed to rescore, slice and audit a sample without the dataset:
the slice fields, the prompt hash, the raw answer, how it was parsed, the outcome and the cost.
``schema_version`` changes whenever a field changes meaning; readers refuse newer versions.
"""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict

from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.protocol.scoring import Outcome

SCHEMA_VERSION = 2
"""2 added ``image_soft_tokens``; version 1 records read as before (the field is None)."""

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
    bbox: tuple[float, float, float, float]
    instruction: str | None
    language: Literal["en", "cn"]
    application: str
    platform: str
    group: str | None
    ui_type: str
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

    @property
    def finished(self) -> bool:
        """A ``failed`` record (request error) is retried on resume; every other is final."""
        return self.outcome is not Outcome.FAILED


def records_frame(records: list[PredictionRecord]) -> pd.DataFrame:
    """Records as a DataFrame with the columns the metrics and reports read."""
    rows: list[dict[str, Any]] = [r.model_dump(mode="json") for r in records]
    columns = list(PredictionRecord.model_fields)
    df = pd.DataFrame(rows, columns=columns)
    df["bbox"] = [tuple(b) for b in df["bbox"]] if len(df) else df["bbox"]
    return df
