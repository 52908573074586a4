"""Scoring against every target kind: boxes (as always), OSWorld-G polygons and refusal items.

Polygons follow the official OSWorld-G even-odd ray cast exactly (not the polygon's bounding
box); a refusal item is correct only for a click with both coordinates negative; an unparseable
answer is ``wrong_format`` whatever the target. Records carry what rescoring needs, and records
of the previous schema still read.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from screenspot_eval.backends.base import Completion
from screenspot_eval.data.sample import Sample
from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.protocol.parsing import parse_click
from screenspot_eval.protocol.scoring import (
    Outcome,
    Target,
    click_hits,
    distance_to_polygon,
    point_in_polygon,
    score_click,
    score_target,
)
from screenspot_eval.run.grading import build_record
from screenspot_eval.store.records import SCHEMA_VERSION, PredictionRecord, rescore

SIZE = (200, 100)
PX = CoordinateConvention.XY_PIXELS_ORIGINAL
#: A right triangle: its bounding box is (10, 10, 110, 60), the triangle only its upper-left
#: half, so (100, 50) is in the box but not in the polygon.
TRIANGLE = (10.0, 10.0, 110.0, 10.0, 10.0, 60.0)


def parsed(text: str):
    return parse_click(text, PX, SIZE)


def sample(target: str, **fields: object) -> Sample:
    base: dict[str, object] = {
        "id": f"s-{target}",
        "img_filename": "A.png",
        "instruction": "Click the thing",
        "bbox": (10.0, 10.0, 110.0, 60.0),
        "img_size": SIZE,
        "application": None,
        "platform": None,
        "ui_type": None,
        "source_file": "OSWorld-G.json",
        "layout": "osworld-g",
        "target": target,
    }
    if target == "polygon":
        base["polygon"] = TRIANGLE
    if target == "refusal":
        base["bbox"] = None
    return Sample.model_validate({**base, **fields})


def record_for(s: Sample, answer: str | None) -> PredictionRecord:
    completion = (
        Completion(s.id, answer) if answer is not None else Completion(s.id, None, error="503")
    )
    return build_record(
        s,
        instruction=s.instruction,
        language="en",
        completion=completion,
        convention=PX,
        prompt_hash="h",
        variant="pre",
    )


# --- polygons ----------------------------------------------------------------------------------


def test_polygon_scoring_uses_the_polygon_not_its_bounding_box() -> None:
    target = Target(kind="polygon", bbox=(10, 10, 110, 60), polygon=TRIANGLE)
    inside_box_outside_triangle = parsed("[100, 50]")
    assert score_click(inside_box_outside_triangle, (10, 10, 110, 60)).is_correct
    score = score_target(inside_box_outside_triangle, target)
    assert score.outcome is Outcome.WRONG and score.distance_px and score.distance_px > 0
    assert score_target(parsed("[20, 20]"), target).outcome is Outcome.CORRECT
    assert record_for(sample("polygon"), "[100, 50]").outcome is Outcome.WRONG
    assert record_for(sample("polygon"), "[20, 20]").outcome is Outcome.CORRECT


def official_is_point_in_polygon(point: tuple[float, float], polygon: list[float]) -> bool:
    """The official OSWorld-G ``_is_point_in_polygon``, written out again as the reference."""
    x, y = point
    n = len(polygon) // 2
    inside = False
    j = n - 1
    for i in range(n):
        xi, yi = polygon[i * 2], polygon[i * 2 + 1]
        xj, yj = polygon[j * 2], polygon[j * 2 + 1]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


@given(
    st.lists(st.integers(0, 40), min_size=6, max_size=12).filter(lambda v: len(v) % 2 == 0),
    st.integers(-5, 45),
    st.integers(-5, 45),
)
def test_point_in_polygon_is_the_official_ray_cast(coords: list[int], x: int, y: int) -> None:
    polygon = [float(v) for v in coords]
    assert point_in_polygon(x, y, polygon) == official_is_point_in_polygon((x, y), polygon)


def test_polygon_boundary_follows_the_ray_cast_rule() -> None:
    square = (0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0)
    assert point_in_polygon(0, 5, square)  # left edge: in
    assert not point_in_polygon(10, 5, square)  # right edge: out, as the official code has it
    assert point_in_polygon(5, 5, square) and distance_to_polygon(5, 5, square) == 0.0
    assert distance_to_polygon(13, 14, square) == pytest.approx(5.0)


# --- refusal -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ("[-1, -1]", Outcome.CORRECT),  # the official refusal answer
        ('{"point_2d": [-5, -10]}', Outcome.CORRECT),
        ("[-1, 20]", Outcome.WRONG),  # only one coordinate negative
        ("[20, 20]", Outcome.WRONG),  # a click on the screen
        ("[0, 0]", Outcome.WRONG),  # the official parser's "unparseable" click
        ("There is no such element.", Outcome.WRONG_FORMAT),  # no click: a miss
        ("", Outcome.WRONG_FORMAT),
    ],
)
def test_a_refusal_item_is_correct_only_for_negative_coordinates(
    answer: str, outcome: Outcome
) -> None:
    record = record_for(sample("refusal"), answer)
    assert record.outcome is outcome
    assert record.target == "refusal" and record.bbox is None and record.distance_px is None


def test_a_negative_click_on_a_box_or_polygon_item_is_a_miss() -> None:
    assert record_for(sample("box"), "[-1, -1]").outcome is Outcome.WRONG
    assert record_for(sample("polygon"), "[-1, -1]").outcome is Outcome.WRONG


def test_a_failed_request_is_failed_for_every_target() -> None:
    for kind in ("box", "polygon", "refusal"):
        assert record_for(sample(kind), None).outcome is Outcome.FAILED


def test_refusal_is_not_scored_through_a_box() -> None:
    with pytest.raises(ValueError, match="needs its box"):
        click_hits(1, 1, Target(kind="box"))
    assert click_hits(-1, -1, Target(kind="refusal", bbox=(0, 0, 5, 5)))  # the box is ignored


# --- boxes stay as they were -------------------------------------------------------------------


def test_box_edges_count_and_score_click_is_the_box_form_of_score_target() -> None:
    box = (10.0, 10.0, 20.0, 20.0)
    for answer in ("[10, 10]", "[20, 20]", "[15, 21]"):
        assert score_click(parsed(answer), box) == score_target(
            parsed(answer), Target(kind="box", bbox=box)
        )
    assert score_click(parsed("[20, 20]"), box).is_correct
    assert not score_click(parsed("[15, 21]"), box).is_correct


# --- records -----------------------------------------------------------------------------------


def test_records_carry_what_rescoring_needs() -> None:
    for kind, answer in (("polygon", "[100, 50]"), ("polygon", "[20, 20]"), ("refusal", "[-1, -1]"),
                         ("refusal", "[5, 5]"), ("box", "[20, 20]")):  # fmt: skip
        record = record_for(sample(kind), answer)
        again = PredictionRecord.model_validate_json(record.model_dump_json())
        assert again == record and again.schema_version == SCHEMA_VERSION == 4
        assert rescore(again) is record.outcome
        assert again.layout == "osworld-g" and again.target == kind
    polygon_record = record_for(sample("polygon"), "[20, 20]")
    assert polygon_record.polygon == TRIANGLE


def test_a_schema_2_record_still_reads_as_a_screenspot_pro_box() -> None:
    old = {
        "schema_version": 2,
        "id": "vscode_macos_0",
        "img_filename": "vscode_mac/x.png",
        "img_size": [2560, 1664],
        "bbox": [473, 183, 503, 219],
        "instruction": "Refresh",
        "language": "en",
        "application": "vscode",
        "platform": "macos",
        "group": "Dev",
        "ui_type": "icon",
        "source_file": "annotations/vscode_macos.json",
        "prompt_hash": "h",
        "convention": "xy-pixels-original",
        "variant": "pre",
        "raw_response": "[480, 200]",
        "parse_status": "parsed",
        "failure_kind": None,
        "answer_format": "bare_point",
        "out_of_image": False,
        "outcome": "correct",
        "pred_x": 480.0,
        "pred_y": 200.0,
        "distance_px": 0.0,
        "error": None,
        "attempts": 1,
        "latency_s": 0.1,
        "prompt_tokens": None,
        "completion_tokens": None,
        "image_soft_tokens": 280,
    }
    record = PredictionRecord.model_validate_json(json.dumps(old))
    assert (record.layout, record.target, record.polygon, record.categories) == (
        "screenspot-pro",
        "box",
        None,
        (),
    )
    assert rescore(record) is Outcome.CORRECT
