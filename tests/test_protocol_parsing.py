"""Answer parsing: a table of realistic raw answers, and property tests of the round trip."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from screenspot_eval.adapters.gemma4 import gemma4_sent_size
from screenspot_eval.protocol.coords import (
    CoordinateConvention,
    original_to_model,
)
from screenspot_eval.protocol.parsing import (
    PARSE_RESULT_ADAPTER,
    AnswerFormat,
    FailureKind,
    ParsedClick,
    ParseFailure,
    normalize_answer,
    parse_click,
)

YX = CoordinateConvention.YX_1000
XY = CoordinateConvention.XY_1000
XY1 = CoordinateConvention.XY_1
SENT = CoordinateConvention.XY_PIXELS_SENT
ORIG = CoordinateConvention.XY_PIXELS_ORIGINAL
SIZE = (2000, 1000)  # width, height: x on a 0-1000 grid is x * 2 pixels, y is y * 1 pixel
FENCE = "```"

BOX_JSON = '[{"box_2d": [100, 200, 300, 400], "label": "Save button"}]'
# (raw answer, convention, expected (x, y) in original pixels or a FailureKind, expected format)
CASES: list[tuple[str, CoordinateConvention, tuple[float, float] | FailureKind, object]] = [
    # Gemma 4 native boxes, y1 x1 y2 x2 on 0-1000; centre (y=200, x=300) -> (600, 200)
    (BOX_JSON, YX, (600, 200), AnswerFormat.BOX_2D),
    (f"{FENCE}json\n{BOX_JSON}\n{FENCE}", YX, (600, 200), AnswerFormat.BOX_2D),
    (f"{FENCE}json\n{BOX_JSON}\n{FENCE}\nThe Save button is in the toolbar.", YX, (600, 200), None),
    (f"{FENCE}\n{BOX_JSON}\n{FENCE}", YX, (600, 200), AnswerFormat.BOX_2D),
    (
        '[{"box_2d":[100,200,300,400],"label":"a"},{"box_2d":[500,500,600,600],"label":"b"}]',
        YX,
        (600, 200),
        AnswerFormat.BOX_2D,
    ),
    ('[{"box_2d": [0, 0, 1000, 1000], "label": "whole screen"}]', YX, (1000, 500), None),
    ('{"point_2d": [500, 250]}', YX, (500, 500), AnswerFormat.POINT_2D),
    ('{"point_2d": ["400", "600"]}', YX, (1200, 400), AnswerFormat.POINT_2D),
    ('{"point_2d": [400.5, 600.25]}', YX, (1200.5, 400.5), AnswerFormat.POINT_2D),
    ('{"point_2d": [400, 600]}<turn|>', YX, (1200, 400), AnswerFormat.POINT_2D),
    ('目标位于 {"point_2d": [100, 900]}', YX, (1800, 100), AnswerFormat.POINT_2D),
    # thinking blocks: coordinates inside them never count
    ('<|channel>thought\nMaybe [10, 10]?<channel|>{"point_2d": [500, 250]}', YX, (500, 500), None),
    (f"<think>The toolbar (1, 2) ...</think>\n{BOX_JSON}", YX, (600, 200), AnswerFormat.BOX_2D),
    ("<|channel>thought\nIt is at [500, 500] but", YX, FailureKind.UNCLOSED_THINKING, None),
    ("<|channel>thought\nIt is at [500, 500].<channel|>", YX, FailureKind.EMPTY, None),
    ("...so the icon.</think>[250, 500]", YX, (1000, 250), AnswerFormat.BARE_POINT),
    # structured answers beat number pairs in prose
    ('The second icon (2, 3) is it. Answer: {"point_2d": [400, 600]}', YX, (1200, 400), None),
    # bare lists and tuples, in the convention's order
    ("[250, 500]", YX, (1000, 250), AnswerFormat.BARE_POINT),
    ("[100, 200, 300, 400]", YX, (600, 200), AnswerFormat.BARE_BOX),
    ("[[100, 200, 300, 400]]", YX, (600, 200), AnswerFormat.BARE_BOX),
    ("(250, 500)", YX, (1000, 250), AnswerFormat.BARE_POINT),
    ("[400, 600,]", YX, (1200, 400), AnswerFormat.BARE_POINT),
    ("click(500, 250)", XY, (1000, 250), AnswerFormat.BARE_POINT),
    # named axes are read by name, scaled by the convention
    ("x=100, y=200", XY, (200, 200), AnswerFormat.NAMED_AXES),
    ("y: 300, x: 700", YX, (1400, 300), AnswerFormat.NAMED_AXES),
    ('{"x": 0.25, "y": 0.5}', XY1, (500, 500), AnswerFormat.NAMED_AXES),
    ("click(x=0.5, y=0.5)", XY1, (1000, 500), AnswerFormat.NAMED_AXES),
    ('{"point": [250, 750]}', XY, (500, 750), AnswerFormat.NAMED_POINT),
    ('{"bbox": [100, 200, 300, 400]}', XY, (400, 300), AnswerFormat.NAMED_BOX),
    ("(1234.5, 678)", ORIG, (1234.5, 678), AnswerFormat.BARE_POINT),
    # failures
    ("", YX, FailureKind.EMPTY, None),
    ("   \n", YX, FailureKind.EMPTY, None),
    ("I cannot find that element.", YX, FailureKind.NO_COORDINATES, None),
    ('[{"label": "Save button"}]', YX, FailureKind.NO_COORDINATES, None),
    ("x=500", XY, FailureKind.NO_COORDINATES, None),
    ("NaN", YX, FailureKind.NO_COORDINATES, None),
    ('[{"box_2d": [100, 200, 300', YX, FailureKind.MALFORMED_JSON, None),
    ('{"point_2d": [500, 300}', YX, FailureKind.MALFORMED_JSON, None),
    ('{"point_2d": [y, x]}', YX, FailureKind.MALFORMED_JSON, None),
    ('{"point_2d": [NaN, 500]}', YX, FailureKind.NON_FINITE, None),
    ("[Infinity, 3]", YX, FailureKind.NON_FINITE, None),
    ('{"point_2d": [1e400, 3]}', YX, FailureKind.NON_FINITE, None),
    ('{"box_2d": [100, 200]}', YX, FailureKind.WRONG_ARITY, None),
    ('{"point_2d": [1, 2, 3]}', YX, FailureKind.WRONG_ARITY, None),
    ("[1, 2, 3]", YX, FailureKind.WRONG_ARITY, None),
    # Chinese-style punctuation reads as its ASCII form
    ('｛"point_2d"：［５００，２５０］｝', YX, (500, 500), AnswerFormat.POINT_2D),
    ("点击位置：（２５０，５００）", YX, (1000, 250), AnswerFormat.BARE_POINT),
    ("目标在［１００、２００、３００、４００］。", YX, (600, 200), AnswerFormat.BARE_BOX),
    ("{“box_2d”: [100, 200, 300, 400], “label”: “保存按钮”}", YX, (600, 200), AnswerFormat.BOX_2D),
    ("x＝１００，y＝２００", XY, (200, 200), AnswerFormat.NAMED_AXES),
    ("x：１００\u3000y：２００", XY, (200, 200), AnswerFormat.NAMED_AXES),
    ("【５００，２５０】", YX, (500, 500), AnswerFormat.BARE_POINT),
    ("{「point_2d」：[４００．５，６００．２５]}", YX, (1200.5, 400.5), AnswerFormat.POINT_2D),
    ("｛‘point’：［２５０，７５０］｝", XY, (500, 750), AnswerFormat.NAMED_POINT),
    ("无法找到该元素。", YX, FailureKind.NO_COORDINATES, None),
]


@pytest.mark.parametrize(("text", "convention", "expected", "answer_format"), CASES)
def test_realistic_answers(
    text: str,
    convention: CoordinateConvention,
    expected: tuple[float, float] | FailureKind,
    answer_format: object,
) -> None:
    result = parse_click(text, convention, SIZE)
    if isinstance(expected, FailureKind):
        assert isinstance(result, ParseFailure), result
        assert result.kind is expected, result
    else:
        assert isinstance(result, ParsedClick), result
        assert (result.x, result.y) == pytest.approx(expected)
        assert not result.out_of_image
        if answer_format is not None:
            assert result.answer_format is answer_format


def test_the_case_table_is_large() -> None:
    assert len(CASES) >= 30


def test_several_candidates_first_wins_and_is_counted() -> None:
    two = '[{"box_2d":[100,200,300,400],"label":"a"},{"box_2d":[500,500,600,600],"label":"b"}]'
    result = parse_click(two, YX, SIZE)
    assert isinstance(result, ParsedClick) and result.n_candidates == 2
    strict = parse_click(two, YX, SIZE, on_multiple="fail")
    assert isinstance(strict, ParseFailure) and strict.kind is FailureKind.AMBIGUOUS
    same = parse_click(
        '{"point_2d": [1, 2]} again {"point_2d": [1, 2]}', YX, SIZE, on_multiple="fail"
    )
    assert isinstance(same, ParsedClick) and same.n_candidates == 2


def test_a_complete_candidate_beats_an_earlier_incomplete_one() -> None:
    result = parse_click('{"point_2d": [1, 2, 3]} sorry: {"point_2d": [500, 500]}', YX, SIZE)
    assert isinstance(result, ParsedClick) and (result.x, result.y) == (1000, 500)


def test_values_outside_the_image_are_kept_and_flagged() -> None:
    result = parse_click('{"point_2d": [-50, 1200]}', YX, SIZE)
    assert isinstance(result, ParsedClick)
    assert (result.x, result.y) == (2400, -50) and result.out_of_image
    huge = parse_click('{"point_2d": [1e6, 5]}', YX, SIZE)
    assert isinstance(huge, ParsedClick) and huge.y == 1e6 and huge.out_of_image


def test_the_same_numbers_mean_what_the_convention_says() -> None:
    """No guessing from magnitudes: [300, 700] is read four different ways."""
    text = "[300, 700]"
    sent = (500, 250)
    clicks = {c: parse_click(text, c, SIZE, sent) for c in CoordinateConvention}
    expected = {YX: (1400, 300), XY: (600, 700), XY1: (600_000, 700_000), ORIG: (300, 700)}
    expected[SENT] = (300 * 2000 / 500, 700 * 1000 / 250)
    for convention, click in clicks.items():
        assert isinstance(click, ParsedClick)
        assert (click.x, click.y) == pytest.approx(expected[convention]), convention


def test_caller_errors_are_failures_not_exceptions() -> None:
    assert parse_click("[1, 2]", YX, (0, 100)).kind is FailureKind.INVALID_IMAGE_SIZE  # type: ignore[union-attr]
    assert parse_click("[1, 2]", YX, (math.nan, 100)).kind is FailureKind.INVALID_IMAGE_SIZE  # type: ignore[union-attr]
    assert parse_click("[1, 2]", SENT, SIZE).kind is FailureKind.MISSING_SENT_SIZE  # type: ignore[union-attr]
    assert parse_click("[1, 2]", "pixels", SIZE).kind is FailureKind.UNKNOWN_CONVENTION  # type: ignore[union-attr]
    assert parse_click(None, YX, SIZE).kind is FailureKind.EMPTY  # type: ignore[union-attr]
    assert isinstance(parse_click("[1, 2]", "yx-1000", SIZE), ParsedClick)


#: (answer written with non-ASCII punctuation, its ASCII form, convention)
NON_ASCII_FORMS: list[tuple[str, str, CoordinateConvention]] = [
    ("［－１０，５０］", "[-10, 50]", XY),  # full-width minus: a click left of the image
    ("[−10, 50]", "[-10, 50]", XY),  # U+2212 minus sign
    ("（１２３４．５，６７８）", "(1234.5, 678)", ORIG),
    ("〔100、200〕", "[100, 200]", YX),
    ("```json\n［｛＂box_2d＂：［１，２，３，４］｝］\n```", '[{"box_2d": [1, 2, 3, 4]}]', YX),
    ("＜think＞［９，９］＜／think＞［１，２］", "<think>[9, 9]</think>[1, 2]", YX),
    ("click(x＝0.25，\u3000y＝0.5)", "click(x=0.25, y=0.5)", XY1),
    ("『point_2d』：［1、2、3］", '"point_2d": [1, 2, 3]', YX),  # still the wrong arity
]


@pytest.mark.parametrize(("text", "ascii_text", "convention"), NON_ASCII_FORMS)
def test_non_ascii_punctuation_is_the_same_click_as_ascii(
    text: str, ascii_text: str, convention: CoordinateConvention
) -> None:
    expected = parse_click(ascii_text, convention, SIZE)
    assert parse_click(text, convention, SIZE) == expected
    assert isinstance(expected, ParsedClick) or expected.kind is FailureKind.WRONG_ARITY


def test_normalisation_leaves_ascii_alone() -> None:
    ascii_text = "".join(chr(c) for c in range(128))
    assert normalize_answer(ascii_text) == ascii_text


def test_results_round_trip_through_json() -> None:
    for text in (BOX_JSON, "garbage"):
        result = parse_click(text, YX, SIZE)
        assert PARSE_RESULT_ADAPTER.validate_json(result.model_dump_json()) == result


# --- property tests -----------------------------------------------------------------------


def _fmt(value: float, integers: bool) -> str:
    return str(round(value)) if integers else repr(value)


@st.composite
def written_clicks(
    draw: st.DrawFn,
) -> tuple[str, CoordinateConvention, tuple, tuple | None, tuple, float]:
    """A click in original pixels, written in some convention and format; returns
    (text, convention, image_size, sent_size, (x, y), tolerance in pixels)."""
    convention = draw(st.sampled_from(list(CoordinateConvention)))
    width, height = draw(st.integers(1, 8000)), draw(st.integers(1, 8000))
    sent = None
    if convention.needs_sent_size:
        budget = draw(st.sampled_from([70, 140, 280, 560, 1120]))
        try:
            sent = gemma4_sent_size(width, height, budget)
        except ValueError:
            assume(False)
    x = draw(st.floats(-0.2 * width, 1.2 * width, allow_nan=False))
    y = draw(st.floats(-0.2 * height, 1.2 * height, allow_nan=False))
    first, second = original_to_model(x, y, convention, (width, height), sent)
    integers = convention in (YX, XY) and draw(st.booleans())
    form = draw(st.sampled_from(["box_2d", "point_2d", "bare_point", "bare_box", "tuple", "axes"]))
    d1, d2 = draw(st.floats(0, 50)), draw(st.floats(0, 50))
    if integers:
        d1, d2 = float(round(d1)), float(round(d2))
    box = [first - d1, second - d2, first + d1, second + d2]
    if integers:  # a rounded box keeps its centre on the rounded point
        first, second = round(first), round(second)
        box = [first - d1, second - d2, first + d1, second + d2]
    point_text = f"{_fmt(first, integers)}, {_fmt(second, integers)}"
    box_text = ", ".join(_fmt(v, integers) for v in box)
    if form == "axes":
        named = dict(
            zip(("y", "x") if convention.y_first else ("x", "y"), (first, second), strict=True)
        )
        body = f'{{"x": {_fmt(named["x"], integers)}, "y": {_fmt(named["y"], integers)}}}'
    else:
        body = {
            "box_2d": f'[{{"box_2d": [{box_text}], "label": "target"}}]',
            "point_2d": f'{{"point_2d": [{point_text}]}}',
            "bare_point": f"[{point_text}]",
            "bare_box": f"[{box_text}]",
            "tuple": f"({point_text})",
        }[form]
    wrapper = draw(st.sampled_from(["plain", "fence", "thinking", "think", "prose"]))
    text = {
        "plain": body,
        "fence": f"{FENCE}json\n{body}\n{FENCE}",
        "thinking": f"<|channel>thought\nmaybe [1, 2, 3, 4]<channel|>{body}",
        "think": f"<think>[9, 9]</think>\n{body}",
        "prose": f"Here it is:\n{body}\nThat is the element.",
    }[wrapper]
    scale_x = width / (1000 if convention in (YX, XY) else 1)
    scale_y = height / (1000 if convention in (YX, XY) else 1)
    tolerance = (
        0.5 * max(scale_x, scale_y) + 1e-6
        if integers
        else 1e-6 * (1 + max(width, height, abs(x), abs(y)))
    )
    return text, convention, (width, height), sent, (x, y), tolerance


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(written_clicks())
def test_any_written_click_reads_back_to_the_same_pixel(case: tuple) -> None:
    text, convention, size, sent, (x, y), tolerance = case
    result = parse_click(text, convention, size, sent)
    assert isinstance(result, ParsedClick), (text, result)
    assert abs(result.x - x) <= tolerance and abs(result.y - y) <= tolerance, (text, result)
    assert result.out_of_image == (not (0 <= result.x <= size[0] and 0 <= result.y <= size[1]))


#: Non-ASCII ways of writing each ASCII character: full-width forms (U+FF01-U+FF5E) for every
#: printable one, plus the quotes, commas, brackets and minus signs of Chinese text.
_WIDE: dict[str, list[str]] = {chr(c): [chr(c + 0xFEE0)] for c in range(0x21, 0x7F)}
_WIDE[" "] = ["\u3000"]
_WIDE['"'] += ["\u201c", "\u201d", "\u300c", "\u300d"]
_WIDE["'"] += ["\u2018", "\u2019"]
_WIDE[","] += ["\u3001"]
_WIDE["["] += ["\u3010", "\u3014"]
_WIDE["]"] += ["\u3011", "\u3015"]
_WIDE["-"] += ["\u2212"]
_ASCII_PUNCTUATION_AND_DIGITS = {c for c in _WIDE if not c.isalpha()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(written_clicks(), st.booleans(), st.randoms(use_true_random=False))
def test_full_width_punctuation_reads_as_the_same_click(
    case: tuple, every: bool, rng: object
) -> None:
    """Writing every (or a random part of the) ASCII punctuation and digits of a valid answer
    in a full-width or other non-ASCII form gives exactly the same ParsedClick."""
    text, convention, size, sent, _, _ = case
    wide = "".join(
        rng.choice(_WIDE[c])  # type: ignore[attr-defined]
        if c in _ASCII_PUNCTUATION_AND_DIGITS and (every or rng.random() < 0.5)  # type: ignore[attr-defined]
        else c
        for c in text
    )
    if every:
        assert not _ASCII_PUNCTUATION_AND_DIGITS & set(wide), wide
    expected = parse_click(text, convention, size, sent)
    assert isinstance(expected, ParsedClick), (text, expected)
    assert parse_click(wide, convention, size, sent) == expected, (text, wide)


_ANSWERISH = st.text(
    alphabet=st.sampled_from(
        list("[]{}(),:;=.\"'0123456789-+eE xyXY\nnaifNI_box2dpointclk<>|/thk`")
    ),
    max_size=120,
)


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(st.text(max_size=200), _ANSWERISH),
    st.sampled_from([*CoordinateConvention, "bogus"]),
    st.tuples(st.floats(), st.floats()),
)
def test_arbitrary_text_never_raises(text: str, convention: str, size: tuple[float, float]) -> None:
    for image_size in (size, SIZE):
        result = parse_click(text, convention, image_size, (480, 240))
        assert isinstance(result, ParsedClick | ParseFailure)
        if isinstance(result, ParseFailure):
            assert result.kind is not FailureKind.INTERNAL_ERROR, result
        else:
            assert math.isfinite(result.x) and math.isfinite(result.y)
        assert PARSE_RESULT_ADAPTER.validate_json(result.model_dump_json()) == result
