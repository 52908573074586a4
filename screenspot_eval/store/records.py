"""Typed, versioned per-sample records: one JSON line in ``predictions.jsonl`` per sample.

A record carries everything needed to rescore, slice and audit a sample without the dataset:
the slice fields, the prompt hash, the raw answer, how it was parsed, the outcome and the cost.
``schema_version`` changes whenever a field changes meaning; readers refuse newer versions.
"""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict

from screenspot_eval.backends.base import Completion
from screenspot_eval.data.sample import Sample
from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.protocol.parsing import ParsedClick, ParseFailure, parse_click
from screenspot_eval.protocol.scoring import Outcome, failed_score, score_click

SCHEMA_VERSION = 1


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

    @property
    def finished(self) -> bool:
        """A ``failed`` record (request error) is retried on resume; every other is final."""
        return self.outcome is not Outcome.FAILED


def build_record(
    sample: Sample,
    *,
    instruction: str | None,
    language: Literal["en", "cn"],
    completion: Completion,
    convention: CoordinateConvention,
    prompt_hash: str,
    variant: str,
    sent_size: tuple[int, int] | None = None,
) -> PredictionRecord:
    """Parse and score one completion; a failed request becomes ``failed``, never a click."""
    parsed: ParsedClick | ParseFailure | None = None
    if completion.ok:
        parsed = parse_click(
            completion.text or "", convention, sample.img_size, sent_size=sent_size
        )
        score = score_click(parsed, sample.bbox)
    else:
        score = failed_score()
    return PredictionRecord(
        id=sample.id,
        img_filename=sample.img_filename,
        img_size=sample.img_size,
        bbox=sample.bbox,
        instruction=instruction,
        language=language,
        application=sample.application,
        platform=sample.platform,
        group=sample.group,
        ui_type=sample.ui_type,
        source_file=sample.source_file,
        prompt_hash=prompt_hash,
        convention=convention,
        variant=variant,
        raw_response=completion.text,
        parse_status=None if parsed is None else parsed.status,
        failure_kind=parsed.kind.value if isinstance(parsed, ParseFailure) else None,
        answer_format=parsed.answer_format.value if isinstance(parsed, ParsedClick) else None,
        out_of_image=parsed.out_of_image if isinstance(parsed, ParsedClick) else None,
        outcome=score.outcome,
        pred_x=score.x,
        pred_y=score.y,
        distance_px=score.distance_px,
        error=completion.error,
        attempts=completion.attempts,
        latency_s=completion.latency_s,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        endpoint=completion.endpoint,
    )


def records_frame(records: list[PredictionRecord]) -> pd.DataFrame:
    """Records as a DataFrame with the columns the metrics and reports read."""
    rows: list[dict[str, Any]] = [r.model_dump(mode="json") for r in records]
    columns = list(PredictionRecord.model_fields)
    df = pd.DataFrame(rows, columns=columns)
    df["bbox"] = [tuple(b) for b in df["bbox"]] if len(df) else df["bbox"]
    return df
