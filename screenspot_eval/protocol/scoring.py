"""Official ScreenSpot-Pro scoring of one click against one ground-truth box.

Correct iff ``x1 <= x <= x2 and y1 <= y <= y2`` in original-image pixels, edges included, as
in the official ``eval_screenspot_pro.py``. An unparseable answer is ``wrong_format``: a miss
that stays in the denominator. ``failed`` (the request itself failed after retries) is set by
the run layer, never by parsing, and is also a miss in the denominator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from screenspot_eval.protocol.parsing import FailureKind, ParsedClick, ParseFailure


class Outcome(StrEnum):
    """Per-sample outcome; only ``correct`` counts as a hit."""

    CORRECT = "correct"
    WRONG = "wrong"
    WRONG_FORMAT = "wrong_format"
    FAILED = "failed"


OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)


class Score(BaseModel):
    """The outcome, the click scored (None without one) and its distance to the box."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    x: float | None = None
    y: float | None = None
    distance_px: float | None = None
    """Euclidean pixel distance from the click to the box: 0 inside, None without a click."""

    @property
    def is_correct(self) -> bool:
        return self.outcome is Outcome.CORRECT


def distance_to_box(x: float, y: float, bbox: Sequence[float]) -> float:
    """Euclidean distance in pixels from ``(x, y)`` to the box ``(x1, y1, x2, y2)``; 0 inside."""
    x1, y1, x2, y2 = bbox
    dx = max(x1 - x, 0.0, x - x2)
    dy = max(y1 - y, 0.0, y - y2)
    return math.hypot(dx, dy)


def score_click(parsed: ParsedClick | ParseFailure, bbox: Sequence[float]) -> Score:
    """Score a parsed answer against ``bbox = (x1, y1, x2, y2)`` in original pixels."""
    if not isinstance(parsed, ParsedClick):  # our parser's own bug is no model miss
        internal = parsed.kind is FailureKind.INTERNAL_ERROR
        return Score(outcome=Outcome.FAILED if internal else Outcome.WRONG_FORMAT)
    x1, y1, x2, y2 = (float(v) for v in bbox)
    x, y = parsed.x, parsed.y
    inside = x1 <= x <= x2 and y1 <= y <= y2
    return Score(
        outcome=Outcome.CORRECT if inside else Outcome.WRONG,
        x=x,
        y=y,
        distance_px=0.0 if inside else distance_to_box(x, y, (x1, y1, x2, y2)),
    )


def failed_score() -> Score:
    """The score of a sample whose request failed after all retries (no answer to parse)."""
    return Score(outcome=Outcome.FAILED)
