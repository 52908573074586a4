"""Multi-step grounding protocols: ground, crop around the answer, ground again.

A protocol is a recorded, named setting (``one-shot``, ``reground``, ``iterative-focusing``,
``iterative-narrowing``, or ``zoom:steps=3,ratio=0.5,min=768``). Each step after the first
sends a crop of the original screenshot; this module says which crop, from the previous view
and its click, in original-image pixels. The geometry follows the ScreenSpot-Pro repository's
``models/methods/`` (likaixin2000/ScreenSpot-Pro-GUI-Grounding, read 2026-12):

- ``reground.py``: a 1024 x 1024 crop centred on the first click, clipped to the image and
  then extended on the other side so it keeps its size where the image allows; PIL rounds the
  float box to whole pixels (``Image.crop``).
- ``iterative_focusing.py``: three calls; twice keep the quadrant (half width, half height of
  the current view) that holds the click, split at ``int(0.5 * width)`` as its crop does.
- ``iterative_narrowing.py``: three calls; twice a window of half the current view's width and
  height centred on the click, clipped to the view (not shifted), cut with ``int()``.

One deliberate difference: the official code maps the last click back through a normalised
float viewport while it cropped whole pixels; here every crop is a whole-pixel box and the
click is mapped back through that exact box (``x + x0``), so the mapping is exact.

Pure: no vLLM, torch or PIL.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from screenspot_eval.errors import UserError

Box = tuple[int, int, int, int]
"""A view in original-image pixels: ``(x0, y0, x1, y1)``, x1 and y1 exclusive."""

ProtocolName = Literal["one-shot", "reground", "iterative-focusing", "iterative-narrowing", "zoom"]
ONE_SHOT = "one-shot"
REGROUND_CROP_PX = 1024


class ProtocolError(UserError, ValueError):
    """A protocol name or parameter that does not make a protocol."""


class Protocol(BaseModel):
    """One protocol with its parameters; :attr:`spec` is its recorded one-line name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ProtocolName = ONE_SHOT
    steps: int = Field(default=1, ge=1, le=8)
    """Model calls per sample at most (a step without a click ends the sample early)."""
    ratio: float = Field(default=0.5, gt=0.0, le=1.0)
    """``zoom``: each crop's width and height as a share of the previous view's."""
    min_px: int = Field(default=768, ge=1)
    """``zoom``: the smallest crop side in pixels (capped at the image's side)."""

    @property
    def spec(self) -> str:
        """The protocol as written in configs and manifests (parses back to itself)."""
        if self.name == "zoom":
            return f"zoom:steps={self.steps},ratio={self.ratio:g},min={self.min_px}"
        return self.name

    @property
    def multi_step(self) -> bool:
        return self.steps > 1


#: The named protocols and their fixed number of calls.
NAMED_STEPS: dict[str, int] = {
    ONE_SHOT: 1,
    "reground": 2,
    "iterative-focusing": 3,
    "iterative-narrowing": 3,
}
ZOOM_KEYS = {"steps": "steps", "ratio": "ratio", "min": "min_px"}


def parse_protocol(spec: str) -> Protocol:
    """``reground`` or ``zoom:steps=3,ratio=0.5,min=768`` as a :class:`Protocol`; anything
    else is one line naming what is accepted."""
    text = spec.strip()
    name, _, params = text.partition(":")
    if name in NAMED_STEPS and not params:
        return Protocol(name=name, steps=NAMED_STEPS[name])  # type: ignore[arg-type]
    if name != "zoom":
        known = ", ".join([*NAMED_STEPS, "zoom:steps=N,ratio=R,min=PX"])
        raise ProtocolError(f"unknown protocol {spec!r}: use one of {known}")
    values: dict[str, str] = {"steps": "2"}
    for part in filter(None, (p.strip() for p in params.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ZOOM_KEYS:
            raise ProtocolError(
                f"protocol {spec!r}: zoom takes steps=N, ratio=R and min=PX, not {part!r}"
            )
        values[key.strip()] = value.strip()
    try:
        return Protocol(name="zoom", **{ZOOM_KEYS[k]: v for k, v in values.items()})
    except ValueError as exc:
        raise ProtocolError(f"protocol {spec!r}: {_first_error(exc)}") from None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc)


def full_view(width: int, height: int) -> Box:
    return (0, 0, width, height)


def inside(view: Box, x: float, y: float) -> bool:
    """Is a click (original pixels) inside the view the model saw?"""
    x0, y0, x1, y1 = view
    return x0 <= x < x1 and y0 <= y < y1


def next_view(
    protocol: Protocol, view: Box, x: float, y: float, image_size: tuple[int, int]
) -> Box | None:
    """The view of the next step, from the current ``view`` and its click ``(x, y)`` (original
    pixels); None when no crop can be made from that click (it lies outside the view)."""
    if not inside(view, x, y):
        return None
    crop = _crop(protocol, view, x, y, image_size)
    width, height = view_size(crop)
    return crop if width > 0 and height > 0 else None


def _crop(protocol: Protocol, view: Box, x: float, y: float, image_size: tuple[int, int]) -> Box:
    if protocol.name == "reground":
        return centred_crop(x, y, (REGROUND_CROP_PX, REGROUND_CROP_PX), image_size)
    if protocol.name == "iterative-focusing":
        return quadrant(view, x, y)
    if protocol.name == "iterative-narrowing":
        return narrowed(view, x, y)
    if protocol.name == "zoom":
        x0, y0, x1, y1 = view
        width, height = image_size
        size = (
            min(width, max(protocol.min_px, math.floor((x1 - x0) * protocol.ratio))),
            min(height, max(protocol.min_px, math.floor((y1 - y0) * protocol.ratio))),
        )
        return centred_crop(x, y, size, image_size)
    raise ProtocolError(f"protocol {protocol.spec} has no second step")


def centred_crop(x: float, y: float, size: tuple[int, int], image_size: tuple[int, int]) -> Box:
    """A ``size`` crop centred on the click, clipped to the image and extended on the other
    side where the clip cut it (ReGround's ``crop_to_center``), rounded as PIL rounds."""
    left, right = _centred_span(x, size[0], image_size[0])
    top, bottom = _centred_span(y, size[1], image_size[1])
    return (round(left), round(top), round(right), round(bottom))


def _centred_span(centre: float, size: float, limit: float) -> tuple[float, float]:
    low = max(0.0, centre - size / 2)
    high = min(float(limit), centre + size / 2)
    if low == 0:
        high = min(float(limit), low + size)
    if high == limit:
        low = max(0.0, high - size)
    return low, high


def quadrant(view: Box, x: float, y: float) -> Box:
    """The quarter of ``view`` that holds the click, split at ``int(0.5 * side)``."""
    x0, y0, x1, y1 = view
    mid_x = x0 + int(0.5 * (x1 - x0))
    mid_y = y0 + int(0.5 * (y1 - y0))
    left = (x - x0) / (x1 - x0) < 0.5
    top = (y - y0) / (y1 - y0) < 0.5
    return (
        x0 if left else mid_x,
        y0 if top else mid_y,
        mid_x if left else x1,
        mid_y if top else y1,
    )


def narrowed(view: Box, x: float, y: float) -> Box:
    """Half the view's width and height centred on the click, clipped to the view."""
    x0, y0, x1, y1 = view
    width, height = x1 - x0, y1 - y0
    cx, cy = (x - x0) / width, (y - y0) / height
    return (
        x0 + int(max(0.0, cx - 0.25) * width),
        y0 + int(max(0.0, cy - 0.25) * height),
        x0 + int(min(1.0, cx + 0.25) * width),
        y0 + int(min(1.0, cy + 0.25) * height),
    )


def view_size(view: Box) -> tuple[int, int]:
    return (view[2] - view[0], view[3] - view[1])


def to_original(view: Box, x: float, y: float) -> tuple[float, float]:
    """A click in the crop's own pixels, in original-image pixels."""
    return (x + view[0], y + view[1])
