"""Official scoring of one click against one ground-truth target: a box, a polygon, or none.

Box (ScreenSpot-Pro, ScreenSpot-v2, OSWorld-G ``bbox``): correct iff ``x1 <= x <= x2 and
y1 <= y <= y2`` in original-image pixels, edges included, as in the official
``eval_screenspot_pro.py``. Polygon and refusal follow the official OSWorld-G evaluation
(``evaluation/eval.py``, ``GroundingEval._eval`` of xlang-ai/OSWorld-G, read in two verbatim
copies: VLMEvalKit's OSWorldG dataset and Onifin/Holo3.1-OSWorld-G, whose
``evaluation/holo_osworld_g.py`` imports it):

- polygon: the even-odd ray cast of :func:`point_in_polygon` on the flat ``[x1, y1, x2, y2,
  ...]`` outline, exactly as there (a point on the outline is in or out as the ray cast says,
  not "edges included");
- refusal (the instruction names nothing on the screenshot): correct iff both coordinates of
  the click are negative. The official model parsers turn a "no such element" answer into
  ``[-1, -1, -1, -1]`` and an unparseable one into ``[0, 0, 0, 0]`` (a miss); here the
  answer itself must carry the negative coordinates (for example ``[-1, -1]``), and an
  unparseable answer is ``wrong_format``, a miss, as everywhere.

The official OSWorld-G code also rescales a prediction whose numbers all lie in 0..1; this tool
never guesses a scale (each run states its convention), so that step has no counterpart.

An unparseable answer is ``wrong_format``: a miss that stays in the denominator. ``failed``
(the request itself failed after retries) is set by the run layer, never by parsing, and is
also a miss in the denominator. :func:`score_target` is the one function every target goes
through; :func:`score_click` is its box form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from screenspot_eval.data.sample import TargetKind
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
    """Euclidean pixel distance from the click to the box or polygon outline: 0 inside, None
    without a click or for a refusal target."""

    @property
    def is_correct(self) -> bool:
        return self.outcome is Outcome.CORRECT


def distance_to_box(x: float, y: float, bbox: Sequence[float]) -> float:
    """Euclidean distance in pixels from ``(x, y)`` to the box ``(x1, y1, x2, y2)``; 0 inside."""
    x1, y1, x2, y2 = bbox
    dx = max(x1 - x, 0.0, x - x2)
    dy = max(y1 - y, 0.0, y - y2)
    return math.hypot(dx, dy)


class Target(BaseModel):
    """What a click is scored against: a box ``(x1, y1, x2, y2)``, a polygon (flat
    ``(x1, y1, x2, y2, ...)``, its bounding box in ``bbox``) or a refusal (no target)."""

    model_config = ConfigDict(frozen=True)

    kind: TargetKind = "box"
    bbox: tuple[float, float, float, float] | None = None
    polygon: tuple[float, ...] | None = None

    @classmethod
    def of(cls, item: Any) -> Target:
        """The target of a :class:`~screenspot_eval.data.sample.Sample` or a stored record
        (records older than schema 3 have boxes only)."""
        kind = getattr(item, "target", None) or "box"
        bbox = getattr(item, "bbox", None)
        polygon = getattr(item, "polygon", None)
        return cls(
            kind=kind,
            bbox=tuple(float(v) for v in bbox) if bbox is not None else None,  # type: ignore[arg-type]
            polygon=tuple(float(v) for v in polygon) if polygon is not None else None,
        )


def point_in_polygon(x: float, y: float, polygon: Sequence[float]) -> bool:
    """The official OSWorld-G ``_is_point_in_polygon``: even-odd ray casting over the flat
    outline ``[x1, y1, x2, y2, ...]`` (xlang-ai/OSWorld-G ``evaluation/eval.py``, as copied
    verbatim by VLMEvalKit and Onifin/Holo3.1-OSWorld-G). Kept exactly, boundary included."""
    n = len(polygon) // 2
    inside = False
    j = n - 1
    for i in range(n):
        xi, yi = polygon[2 * i], polygon[2 * i + 1]
        xj, yj = polygon[2 * j], polygon[2 * j + 1]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def distance_to_polygon(x: float, y: float, polygon: Sequence[float]) -> float:
    """Euclidean distance in pixels from ``(x, y)`` to the polygon: 0 inside (by
    :func:`point_in_polygon`), else to the nearest point of its outline."""
    if point_in_polygon(x, y, polygon):
        return 0.0
    n = len(polygon) // 2
    best = math.inf
    for i in range(n):
        ax, ay = polygon[2 * i], polygon[2 * i + 1]
        bx, by = polygon[2 * ((i + 1) % n)], polygon[2 * ((i + 1) % n) + 1]
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / length2))
        best = min(best, math.hypot(x - (ax + t * dx), y - (ay + t * dy)))
    return best


def is_refusal_click(x: float, y: float) -> bool:
    """The official OSWorld-G refusal answer: both coordinates negative."""
    return x < 0 and y < 0


def click_hits(x: float, y: float, target: Target) -> bool:
    """Whether the click ``(x, y)`` (original pixels) is correct for ``target``: the one
    rule per target kind (see the module docstring), for scoring and rescoring alike."""
    if target.kind == "refusal":
        return is_refusal_click(x, y)
    if target.kind == "polygon":
        if target.polygon is None:
            raise ValueError("a polygon target needs its polygon")
        return point_in_polygon(x, y, target.polygon)
    if target.bbox is None:
        raise ValueError("a box target needs its box")
    x1, y1, x2, y2 = (float(v) for v in target.bbox)
    return x1 <= x <= x2 and y1 <= y <= y2


def score_target(parsed: ParsedClick | ParseFailure, target: Target) -> Score:
    """Score a parsed answer against ``target`` in original pixels (see the module docstring
    for each kind's rule)."""
    if not isinstance(parsed, ParsedClick):  # our parser's own bug is no model miss
        internal = parsed.kind is FailureKind.INTERNAL_ERROR
        return Score(outcome=Outcome.FAILED if internal else Outcome.WRONG_FORMAT)
    x, y = parsed.x, parsed.y
    hit = click_hits(x, y, target)
    outcome = Outcome.CORRECT if hit else Outcome.WRONG
    if target.kind == "refusal":
        return Score(outcome=outcome, x=x, y=y)
    if target.kind == "polygon":
        distance = 0.0 if hit else distance_to_polygon(x, y, target.polygon or ())
    else:
        distance = 0.0 if hit else distance_to_box(x, y, target.bbox or (0, 0, 0, 0))
    return Score(outcome=outcome, x=x, y=y, distance_px=distance)


def score_click(parsed: ParsedClick | ParseFailure, bbox: Sequence[float]) -> Score:
    """Score a parsed answer against ``bbox = (x1, y1, x2, y2)`` in original pixels."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return score_target(parsed, Target(kind="box", bbox=(x1, y1, x2, y2)))


def failed_score() -> Score:
    """The score of a sample whose request failed after all retries (no answer to parse)."""
    return Score(outcome=Outcome.FAILED)
