"""Coordinate conventions: what the numbers in a model's answer mean, stated, never guessed.

A grounding answer is two (point) or four (box) numbers. Their meaning depends on the prompt
and the model, not on their size: a 0-1000 answer and a pixel answer in the top-left
1000x1000 of a screenshot look alike. Every run therefore records one explicit
:class:`CoordinateConvention`, and the parser converts with it, never with a heuristic.

Numbers are read in the convention's written order (``first, second``): ``y, x`` for
``yx-1000``, ``x, y`` for every other convention. Boxes repeat the order for both corners
(``[y1, x1, y2, x2]`` for ``yx-1000``). Scaling is linear and continuous: ``0`` is the left
(top) edge and ``1000`` / ``1.0`` / the image width (height) the right (bottom) edge.
"""

from __future__ import annotations

from enum import StrEnum


class CoordinateConvention(StrEnum):
    """How the numbers of an answer map to the original screenshot."""

    YX_1000 = "yx-1000"
    """y before x, both on 0-1000 of the image (the Gemini detection grid)."""
    XY_1000 = "xy-1000"
    """x before y, both on 0-1000 of the image."""
    XY_1 = "xy-1"
    """x before y, fractions 0-1 of the image (the official ScreenSpot-Pro model adapters)."""
    XY_PIXELS_SENT = "xy-pixels-sent"
    """x before y, pixels of the image as the model received it (after the processor resize,
    which the model's adapter computes: ``screenspot_eval.adapters``)."""
    XY_PIXELS_ORIGINAL = "xy-pixels-original"
    """x before y, pixels of the original screenshot."""

    @property
    def y_first(self) -> bool:
        """True when answers are written y before x."""
        return self is CoordinateConvention.YX_1000

    @property
    def needs_sent_size(self) -> bool:
        """True when converting needs the size of the image the model actually saw."""
        return self is CoordinateConvention.XY_PIXELS_SENT


def _axis_extents(
    convention: CoordinateConvention,
    image_size: tuple[float, float],
    sent_size: tuple[float, float] | None,
) -> tuple[float, float]:
    """Model-space extent of the x and y axes (what ``width`` and ``height`` are written as)."""
    match convention:
        case CoordinateConvention.YX_1000 | CoordinateConvention.XY_1000:
            return 1000.0, 1000.0
        case CoordinateConvention.XY_1:
            return 1.0, 1.0
        case CoordinateConvention.XY_PIXELS_SENT:
            if sent_size is None:
                raise ValueError("xy-pixels-sent needs the sent image size")
            return float(sent_size[0]), float(sent_size[1])
        case CoordinateConvention.XY_PIXELS_ORIGINAL:
            return float(image_size[0]), float(image_size[1])
    raise ValueError(f"unknown coordinate convention {convention!r}")


def model_to_original(
    first: float,
    second: float,
    convention: CoordinateConvention,
    image_size: tuple[float, float],
    sent_size: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Convert two numbers written in ``convention`` order to ``(x, y)`` original pixels."""
    x_model, y_model = (second, first) if convention.y_first else (first, second)
    x_extent, y_extent = _axis_extents(convention, image_size, sent_size)
    return x_model * image_size[0] / x_extent, y_model * image_size[1] / y_extent


def original_to_model(
    x: float,
    y: float,
    convention: CoordinateConvention,
    image_size: tuple[float, float],
    sent_size: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Inverse of :func:`model_to_original`: original pixels to numbers in written order."""
    x_extent, y_extent = _axis_extents(convention, image_size, sent_size)
    x_model, y_model = x * x_extent / image_size[0], y * y_extent / image_size[1]
    return (y_model, x_model) if convention.y_first else (x_model, y_model)
