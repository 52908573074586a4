"""From a model's raw answer text to one click in original-image pixels, or a typed failure.

Rules (the parser never raises; every input yields a ``ParsedClick`` or a ``ParseFailure``):

0. Punctuation is read by meaning, not by code point (:func:`normalize_answer`, the one place):
   the text is NFKC-normalised (full-width ``［］（）｛｝，：；＂＇＝－．``, full-width digits,
   the ideographic space U+3000, ... become ASCII), then a small table maps what NFKC keeps:
   curly and corner quotes to ``"`` / ``'``, the ideographic comma ``、`` to ``,``, ``【】〔〕``
   to ``[]`` and the minus sign U+2212 to ``-``. So an answer written with Chinese punctuation
   is the same click as its ASCII form. (The record keeps the raw text as the model wrote it.)
1. Thinking is not the answer. Closed ``<|channel>...<channel|>`` and ``<think>...</think>``
   blocks are removed; a lone closer keeps only what follows it; a lone opener (thinking cut
   off by the token limit) keeps only what precedes it. Coordinates inside thinking never count.
2. Candidates are found anywhere in the remaining text (code fences and prose are ignored), in
   three tiers: named lists (``"box_2d": [...]``, ``"point_2d": [...]``, ``"bbox"``, ``"point"``,
   ..., and Qwen2-VL's corner pair ``(x1,y1),(x2,y2)`` as one box), then named axes (``x=.., y=..``, ``{"x": .., "y": ..}``), then bare lists or tuples
   (``[a, b]``, ``[a, b, c, d]``, ``(a, b)``). Within a list, numbers are read in the
   convention's written order; named axes are read by name.
3. The first complete candidate of the highest tier present wins (so a structured answer beats
   a number pair mentioned in prose); ``n_candidates`` counts every complete candidate so that
   answers with several targets can be found later. With ``on_multiple="fail"`` two candidates
   that disagree give an ``ambiguous`` failure instead.
4. A box becomes its centre. Values are kept as given: negative or huge values give a click
   outside the image, flagged ``out_of_image`` (it scores as a miss), never clamped.
5. Without any complete candidate the failure kind is that of the first incomplete one
   (``wrong_arity``, ``non_finite``, ``malformed_json``), else ``malformed_json`` for a
   coordinate key whose list never closes, else ``empty`` or ``no_coordinates``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from screenspot_eval.protocol.coords import CoordinateConvention, model_to_original


class AnswerFormat(StrEnum):
    """Which written form the winning candidate had."""

    BOX_2D = "box_2d"
    POINT_2D = "point_2d"
    NAMED_BOX = "named_box"
    NAMED_POINT = "named_point"
    NAMED_AXES = "named_axes"
    BARE_BOX = "bare_box"
    BARE_POINT = "bare_point"


class FailureKind(StrEnum):
    """Why no click could be read. The last three are caller errors, not model errors."""

    EMPTY = "empty"
    UNCLOSED_THINKING = "unclosed_thinking"
    NO_COORDINATES = "no_coordinates"
    MALFORMED_JSON = "malformed_json"
    NON_FINITE = "non_finite"
    WRONG_ARITY = "wrong_arity"
    AMBIGUOUS = "ambiguous"
    INVALID_IMAGE_SIZE = "invalid_image_size"
    MISSING_SENT_SIZE = "missing_sent_size"
    UNKNOWN_CONVENTION = "unknown_convention"
    INTERNAL_ERROR = "internal_error"


class ParsedClick(BaseModel):
    """A click in original-image pixels, with how it was read."""

    model_config = ConfigDict(frozen=True)

    status: Literal["parsed"] = "parsed"
    x: float
    y: float
    convention: CoordinateConvention
    answer_format: AnswerFormat
    values: tuple[float, ...]
    """The winning candidate's numbers as written (model space, written order)."""
    out_of_image: bool
    n_candidates: int
    thinking_stripped: bool


class ParseFailure(BaseModel):
    """No usable click: scored ``wrong_format`` (a miss that stays in the denominator)."""

    model_config = ConfigDict(frozen=True)

    status: Literal["failed"] = "failed"
    kind: FailureKind
    detail: str
    n_candidates: int = 0
    thinking_stripped: bool = False


ParseResult = Annotated[ParsedClick | ParseFailure, Field(discriminator="status")]
PARSE_RESULT_ADAPTER: TypeAdapter[ParsedClick | ParseFailure] = TypeAdapter(ParseResult)

# --- patterns -----------------------------------------------------------------------------

_NUMBER = r"""["']?[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?["']?|["']?[-+]?(?:nan|inf(?:inity)?)["']?"""
_NUMBER_RE = re.compile(rf"\s*(?:{_NUMBER})\s*", re.IGNORECASE)
_BOX_KEYS = ("box_2d", "bbox_2d", "bbox", "box")
_POINT_KEYS = ("point_2d", "point", "click")
_EITHER_KEYS = ("coordinates", "coordinate", "coords", "position", "location")
_KEYS = "|".join(sorted(_BOX_KEYS + _POINT_KEYS + _EITHER_KEYS, key=len, reverse=True))
_KEY_PREFIX = rf"""(?<![A-Za-z0-9_])["']?(?P<key>{_KEYS})["']?\s*[:=]\s*"""
_NAMED_LIST_RE = re.compile(rf"{_KEY_PREFIX}[\[(](?P<body>[^\[\]()]*)[\])]", re.IGNORECASE)
_UNCLOSED_KEY_RE = re.compile(rf"{_KEY_PREFIX}[\[(](?![^\[\]()]*[\])])", re.IGNORECASE)
_AXIS = r"""(?<![A-Za-z0-9_])["']?(?P<{name}>[xy])["']?\s*[:=]\s*(?P<{value}>{number})"""
_NAMED_AXES_RE = re.compile(
    _AXIS.format(name="k1", value="v1", number=_NUMBER)
    + r"\s*[,;]?\s*(?:and\s+)?"
    + _AXIS.format(name="k2", value="v2", number=_NUMBER),
    re.IGNORECASE,
)
_BARE_LIST_RE = re.compile(
    rf"[\[(](?P<body>\s*(?:{_NUMBER})(?:\s*,\s*(?:{_NUMBER}))+\s*,?\s*)[\])]", re.IGNORECASE
)
#: Two corners in parentheses, ``(x1,y1),(x2,y2)``: the box form of Qwen2-VL's grounding
#: tokens (``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``), read as one box, not two points.
_CORNER_PAIR_RE = re.compile(
    rf"\((?P<a>\s*(?:{_NUMBER})\s*,\s*(?:{_NUMBER})\s*)\)\s*,\s*"
    rf"\((?P<b>\s*(?:{_NUMBER})\s*,\s*(?:{_NUMBER})\s*)\)",
    re.IGNORECASE,
)
_THINKING_TAGS = (("<|channel>", "<channel|>"), ("<think>", "</think>"))
#: Punctuation that NFKC leaves alone but that an answer means as ASCII (rule 0).
_PUNCTUATION = str.maketrans(
    {
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u301d\u301e\u300c\u300d\u300e\u300f", '"'),
        **dict.fromkeys("\u2018\u2019\u201a\u201b", "'"),
        "\u3001": ",",  # ideographic comma
        "\u3010": "[",  # lenticular brackets
        "\u3011": "]",
        "\u3014": "[",  # tortoise-shell brackets
        "\u3015": "]",
        "\u2212": "-",  # minus sign
    }
)


def normalize_answer(text: str) -> str:
    """An answer with its punctuation in ASCII where it means ASCII (rule 0): NFKC (full-width
    forms, ideographic space), then curly / corner quotes, ``、``, ``【】`` / ``〔〕`` and
    U+2212. ASCII text is returned unchanged."""
    return unicodedata.normalize("NFKC", text).translate(_PUNCTUATION)


@dataclass(frozen=True)
class _Candidate:
    """One coordinate-looking span; ``error`` is set when it is not a complete answer."""

    start: int
    end: int
    tier: int
    answer_format: AnswerFormat | None
    values: tuple[float, ...]
    error: FailureKind | None = None
    detail: str = ""


def _strip_thinking(text: str) -> tuple[str, bool, bool]:
    """Return (answer text, whether thinking was removed, whether thinking never closed)."""
    stripped = False
    unclosed = False
    for opener, closer in _THINKING_TAGS:
        block = re.compile(re.escape(opener) + r".*?" + re.escape(closer), re.DOTALL)
        text, n_blocks = block.subn(" ", text)
        stripped |= n_blocks > 0
        if closer in text:
            text = text.rsplit(closer, 1)[1]
            stripped = True
        if opener in text:
            text = text.split(opener, 1)[0]
            stripped = unclosed = True
    return text, stripped, unclosed


def _read_numbers(body: str) -> tuple[float, ...] | None:
    """Numbers of a comma-separated list body, or None if an element is not a number."""
    items = body.split(",")
    if items and not items[-1].strip():
        items = items[:-1]
    if not items or any(not _NUMBER_RE.fullmatch(item) for item in items):
        return None
    return tuple(float(item.strip().strip("\"'")) for item in items)


def _list_candidate(span: tuple[int, int], tier: int, key: str | None, body: str) -> _Candidate:
    """Build a candidate from a (named or bare) list, checking numbers, arity and finiteness."""
    name = key or "bare list"
    numbers = _read_numbers(body)
    if numbers is None:
        return _Candidate(
            *span, tier, None, (), FailureKind.MALFORMED_JSON, f"{name}: not a list of numbers"
        )
    if key is None:
        allowed = {2: AnswerFormat.BARE_POINT, 4: AnswerFormat.BARE_BOX}
    elif key in _BOX_KEYS:
        allowed = {4: AnswerFormat.BOX_2D if key == "box_2d" else AnswerFormat.NAMED_BOX}
    elif key in _POINT_KEYS:
        allowed = {2: AnswerFormat.POINT_2D if key == "point_2d" else AnswerFormat.NAMED_POINT}
    else:
        allowed = {2: AnswerFormat.NAMED_POINT, 4: AnswerFormat.NAMED_BOX}
    if len(numbers) not in allowed:
        detail = f"{name}: {len(numbers)} numbers, expected {' or '.join(map(str, allowed))}"
        return _Candidate(*span, tier, None, numbers, FailureKind.WRONG_ARITY, detail)
    return _checked(span, tier, allowed[len(numbers)], numbers, name)


def _checked(
    span: tuple[int, int], tier: int, fmt: AnswerFormat, values: tuple[float, ...], name: str
) -> _Candidate:
    """A complete candidate, or a ``non_finite`` one if a value is NaN or infinite."""
    if all(math.isfinite(v) for v in values):
        return _Candidate(*span, tier, fmt, values)
    return _Candidate(*span, tier, None, values, FailureKind.NON_FINITE, f"{name}: {list(values)}")


def _find_candidates(text: str, convention: CoordinateConvention) -> list[_Candidate]:
    """All candidates in text order within tiers (tier 0 named lists, 1 axes, 2 bare lists)."""
    found: list[_Candidate] = []
    for m in _NAMED_LIST_RE.finditer(text):
        found.append(_list_candidate(m.span(), 0, m["key"].lower(), m["body"]))
    for m in _NAMED_AXES_RE.finditer(text):
        k1, k2 = m["k1"].lower(), m["k2"].lower()
        if k1 == k2:
            continue
        axes = {k1: float(m["v1"].strip("\"'")), k2: float(m["v2"].strip("\"'"))}
        values = (axes["y"], axes["x"]) if convention.y_first else (axes["x"], axes["y"])
        found.append(_checked(m.span(), 1, AnswerFormat.NAMED_AXES, values, "x/y"))
    taken = [(c.start, c.end) for c in found]
    for m in _CORNER_PAIR_RE.finditer(text):
        if not any(start <= m.start() < end for start, end in taken):
            found.append(_list_candidate(m.span(), 0, None, f"{m['a']},{m['b']}"))
    taken = [(c.start, c.end) for c in found]
    for m in _BARE_LIST_RE.finditer(text):
        if not any(start <= m.start() < end for start, end in taken):
            found.append(_list_candidate(m.span(), 2, None, m["body"]))
    found.sort(key=lambda c: (c.tier, c.start))
    return found


def _click_from(
    candidate: _Candidate,
    convention: CoordinateConvention,
    image_size: tuple[float, float],
    sent_size: tuple[float, float] | None,
) -> tuple[float, float]:
    """Original-pixel click of a complete candidate (a box gives its centre)."""
    values = candidate.values
    if len(values) == 4:
        values = ((values[0] + values[2]) / 2, (values[1] + values[3]) / 2)
    return model_to_original(values[0], values[1], convention, image_size, sent_size)


def _valid_size(size: Sequence[float] | None) -> tuple[float, float] | None:
    """A (width, height) pair of positive finite numbers, or None."""
    try:
        width, height = (float(v) for v in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        return None
    return width, height


def parse_click(
    text: str | None,
    convention: CoordinateConvention | str,
    image_size: Sequence[float],
    sent_size: Sequence[float] | None = None,
    *,
    on_multiple: Literal["first", "fail"] = "first",
) -> ParsedClick | ParseFailure:
    """Read one click in original-image pixels from a raw answer; never raises.

    ``image_size`` is the original screenshot's ``(width, height)``; ``sent_size`` the size
    the model received, needed only for ``xy-pixels-sent`` (the model adapter's ``sent_size``).
    """
    try:
        return _parse_click(text, convention, image_size, sent_size, on_multiple)
    except Exception as exc:  # a safety net: a parser bug must not end a 1581-sample run
        return ParseFailure(kind=FailureKind.INTERNAL_ERROR, detail=f"{type(exc).__name__}: {exc}")


def _parse_click(
    text: str | None,
    convention: CoordinateConvention | str,
    image_size: Sequence[float],
    sent_size: Sequence[float] | None,
    on_multiple: str,
) -> ParsedClick | ParseFailure:
    try:
        convention = CoordinateConvention(convention)
    except ValueError:
        return ParseFailure(kind=FailureKind.UNKNOWN_CONVENTION, detail=repr(convention))
    size = _valid_size(image_size)
    if size is None:
        return ParseFailure(kind=FailureKind.INVALID_IMAGE_SIZE, detail=repr(image_size))
    sent = _valid_size(sent_size) if sent_size is not None else None
    if convention.needs_sent_size and sent is None:
        return ParseFailure(kind=FailureKind.MISSING_SENT_SIZE, detail=repr(sent_size))

    raw = text if isinstance(text, str) else str(text or "")
    answer, thinking, unclosed = _strip_thinking(normalize_answer(raw))
    candidates = _find_candidates(answer, convention)
    complete = [c for c in candidates if c.error is None]
    if not complete:
        return _failure(answer, candidates, thinking, unclosed)

    winner = complete[0]
    x, y = _click_from(winner, convention, size, sent)
    if not (math.isfinite(x) and math.isfinite(y)):
        return ParseFailure(
            kind=FailureKind.NON_FINITE,
            detail=f"{list(winner.values)} overflows in pixels",
            n_candidates=len(complete),
            thinking_stripped=thinking,
        )
    if on_multiple == "fail":
        clicks = {_click_from(c, convention, size, sent) for c in complete}
        if len(clicks) > 1:
            return ParseFailure(
                kind=FailureKind.AMBIGUOUS,
                detail=f"{len(clicks)} different clicks",
                n_candidates=len(complete),
                thinking_stripped=thinking,
            )
    return ParsedClick(
        x=x,
        y=y,
        convention=convention,
        answer_format=winner.answer_format,  # type: ignore[arg-type]
        values=winner.values,
        out_of_image=not (0 <= x <= size[0] and 0 <= y <= size[1]),
        n_candidates=len(complete),
        thinking_stripped=thinking,
    )


def _failure(
    answer: str, candidates: list[_Candidate], thinking: bool, unclosed: bool
) -> ParseFailure:
    """The failure for an answer without a complete candidate (see rule 5)."""
    if candidates:
        first = candidates[0]
        return ParseFailure(
            kind=first.error or FailureKind.INTERNAL_ERROR,
            detail=first.detail,
            thinking_stripped=thinking,
        )
    if m := _UNCLOSED_KEY_RE.search(answer):
        return ParseFailure(
            kind=FailureKind.MALFORMED_JSON,
            detail=f"{m['key']}: list never closes",
            thinking_stripped=thinking,
        )
    if not answer.strip():
        kind = FailureKind.UNCLOSED_THINKING if unclosed else FailureKind.EMPTY
        detail = (
            "thinking never closed"
            if unclosed
            else "no text after thinking"
            if thinking
            else "empty answer"
        )
        return ParseFailure(kind=kind, detail=detail, thinking_stripped=thinking)
    snippet = answer.strip()[:80]
    return ParseFailure(
        kind=FailureKind.NO_COORDINATES,
        detail=f"no coordinates in {snippet!r}",
        thinking_stripped=thinking,
    )
