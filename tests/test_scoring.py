"""Official scoring on hand-computed cases: edges count, one pixel outside misses."""

from __future__ import annotations

import math

import pytest

from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.protocol.parsing import (
    AnswerFormat,
    FailureKind,
    ParsedClick,
    ParseFailure,
    parse_click,
)
from screenspot_eval.protocol.scoring import (
    Outcome,
    Score,
    distance_to_box,
    failed_score,
    score_click,
)

BOX = (473, 183, 503, 219)  # vscode_macos_0: x1, y1, x2, y2 in pixels of 2560x1664


def click(x: float, y: float) -> ParsedClick:
    return ParsedClick(
        x=x,
        y=y,
        convention=CoordinateConvention.XY_PIXELS_ORIGINAL,
        answer_format=AnswerFormat.BARE_POINT,
        values=(x, y),
        out_of_image=False,
        n_candidates=1,
        thinking_stripped=False,
    )


@pytest.mark.parametrize(
    ("x", "y"),
    [(473, 183), (503, 219), (473, 219), (503, 183), (473, 200), (488, 183), (488, 201)],
)
def test_edges_and_corners_count_as_correct(x: float, y: float) -> None:
    score = score_click(click(x, y), BOX)
    assert score.outcome is Outcome.CORRECT and score.is_correct
    assert score.distance_px == 0.0


@pytest.mark.parametrize(
    ("x", "y", "distance"),
    [
        (472, 200, 1.0),  # one pixel left
        (504, 200, 1.0),  # one pixel right
        (488, 182, 1.0),  # one pixel above
        (488, 220, 1.0),  # one pixel below
        (472.999, 183, 0.001),
        (470, 179, 5.0),  # 3-4-5 from the top-left corner
        (506, 223, 5.0),  # 3-4-5 from the bottom-right corner
        (0, 0, math.hypot(473, 183)),
    ],
)
def test_outside_is_wrong_with_distance_to_the_box(x: float, y: float, distance: float) -> None:
    score = score_click(click(x, y), BOX)
    assert score.outcome is Outcome.WRONG
    assert score.distance_px == pytest.approx(distance)
    assert (score.x, score.y) == (x, y)


def test_unparseable_is_wrong_format_without_a_click() -> None:
    failure = ParseFailure(kind=FailureKind.NO_COORDINATES, detail="prose")
    score = score_click(failure, BOX)
    assert score == Score(outcome=Outcome.WRONG_FORMAT)
    assert score.distance_px is None and score.x is None and not score.is_correct


def test_failed_request_has_its_own_outcome() -> None:
    assert failed_score() == Score(outcome=Outcome.FAILED)


def test_end_to_end_from_a_gemma_answer() -> None:
    # Box centre on the 0-1000 grid (y=121, x=191) -> (488.96, 201.344) px in 2560x1664.
    answer = '```json\n[{"box_2d": [110, 185, 132, 197], "label": "refresh"}]\n```'
    parsed = parse_click(answer, "yx-1000", (2560, 1664))
    assert isinstance(parsed, ParsedClick)
    assert (parsed.x, parsed.y) == pytest.approx((488.96, 201.344))
    assert score_click(parsed, BOX).outcome is Outcome.CORRECT
    # The same numbers read in the wrong order land far away: the convention matters.
    swapped = parse_click(answer, "xy-1000", (2560, 1664))
    assert score_click(swapped, BOX).outcome is Outcome.WRONG  # type: ignore[arg-type]


def test_distance_is_symmetric_in_axes() -> None:
    assert distance_to_box(10, 0, (0, 5, 20, 6)) == 5.0
    assert distance_to_box(0, 10, (5, 0, 6, 20)) == 5.0
