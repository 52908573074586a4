"""Flipped samples drawn for the eye: screenshot, ground-truth box and both variants' clicks.

A reviewer judges a flip in a second from the picture, not from coordinates. Screenshots are up
to 6016x3384, so each is downscaled and JPEG-encoded before it is inlined. A screenshot that
cannot be shown (no dataset root, missing or unsafe file, undecodable) yields a reason instead
of an exception: one bad file must not cost the whole report.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from screenspot_eval.data.errors import DatasetError
from screenspot_eval.data.layouts import get_layout
from screenspot_eval.data.paths import image_relpath, resolve_image_path

MAX_WIDTH = 960
JPEG_QUALITY = 80
#: Marker colours (RGB) and shapes; the HTML legend uses the same values.
BOX_COLOUR = (0, 160, 60)
CLICK_COLOURS: dict[str, tuple[int, int, int]] = {"a": (230, 100, 0), "b": (40, 90, 230)}
CLICK_SHAPES: dict[str, str] = {"a": "circle", "b": "cross"}


@dataclass(frozen=True)
class Shot:
    """One annotated screenshot as a data URI, or why there is none, plus caption notes."""

    data_uri: str | None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _size(value: Any) -> tuple[float, float] | None:
    if value is None or isinstance(value, (str, float)):
        return None
    try:
        w, h = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (w, h) if w > 0 and h > 0 else None


def click_notes(row: Mapping[str, Any]) -> list[str]:
    """Caption notes: a side without a click, a click outside the screenshot, the crop a
    zoom protocol's final answer was given in."""
    size = _size(row.get("img_size"))
    notes = []
    for side in ("a", "b"):
        view = _coords(row.get(f"view_{side}"))
        if view is not None and len(view) == 4:
            shown = ", ".join(f"{v:g}" for v in view)
            notes.append(f"{side.upper()} answered in the crop ({shown}), framed in its colour")
        x, y = _number(row.get(f"pred_x_{side}")), _number(row.get(f"pred_y_{side}"))
        if x is None or y is None:
            notes.append(f"{side.upper()} gave no click ({row.get(f'outcome_{side}')})")
        elif size is not None and not (0 <= x <= size[0] and 0 <= y <= size[1]):
            notes.append(
                f"{side.upper()}'s click ({round(x, 1):g}, {round(y, 1):g}) is outside the "
                f"{size[0]:g}x{size[1]:g} image (drawn at the nearest edge)"
            )
    return notes


def _marker(draw: ImageDraw.ImageDraw, x: float, y: float, side: str) -> None:
    colour = CLICK_COLOURS[side]
    r = 9
    for width, fill in ((7, (255, 255, 255)), (3, colour)):  # white halo, then the colour
        if CLICK_SHAPES[side] == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), outline=fill, width=width)
        else:
            draw.line((x - r, y - r, x + r, y + r), fill=fill, width=width)
            draw.line((x - r, y + r, x + r, y - r), fill=fill, width=width)
    draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)


def _draw(image: Image.Image, row: Mapping[str, Any], original: tuple[float, float]) -> None:
    """Draw the box and clicks, given in ``original`` pixels, onto the downscaled ``image``."""
    sx, sy = image.width / original[0], image.height / original[1]
    draw = ImageDraw.Draw(image)
    outline = _coords(row.get("polygon"))
    box = _coords(row.get("bbox"))
    if outline is not None and len(outline) >= 6:  # the target itself, not its bounding box
        points = [(x * sx, y * sy) for x, y in zip(outline[0::2], outline[1::2], strict=False)]
        draw.polygon(points, outline=(255, 255, 255), width=5)
        draw.polygon(points, outline=BOX_COLOUR, width=3)
    elif box is not None and len(box) == 4:
        x1, y1, x2, y2 = box
        rect = (x1 * sx, y1 * sy, max(x2 * sx, x1 * sx + 1), max(y2 * sy, y1 * sy + 1))
        draw.rectangle(rect, outline=(255, 255, 255), width=5)
        draw.rectangle(rect, outline=BOX_COLOUR, width=3)
    for side in ("a", "b"):
        view = _coords(row.get(f"view_{side}"))
        if view is not None and len(view) == 4:  # the crop a zoom protocol's answer came from
            x0, y0, x1, y1 = view
            draw.rectangle(
                (x0 * sx, y0 * sy, x1 * sx - 1, y1 * sy - 1), outline=CLICK_COLOURS[side], width=2
            )
    for side in ("a", "b"):
        x, y = _number(row.get(f"pred_x_{side}")), _number(row.get(f"pred_y_{side}"))
        if x is None or y is None:
            continue
        px = min(max(x * sx, 0.0), image.width - 1.0)
        py = min(max(y * sy, 0.0), image.height - 1.0)
        _marker(draw, px, py, side)


def _coords(value: Any) -> list[float] | None:
    """A box's or polygon's numbers, or None when there are none (a refusal) or they are not
    numbers."""
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return None


def _image_dir(row: Mapping[str, Any]) -> str:
    """The screenshot folder of the row's dataset layout (``images`` for ScreenSpot-Pro)."""
    name = row.get("layout")
    return get_layout(name if isinstance(name, str) else None).image_dir


def annotate(
    row: Mapping[str, Any], dataset_root: Path | None, *, max_width: int = MAX_WIDTH
) -> Shot:
    """The row's screenshot, downscaled to ``max_width`` with box and clicks, as a JPEG URI."""
    notes = click_notes(row)
    name = str(row.get("img_filename") or "")
    if dataset_root is None:
        return Shot(None, "no dataset root was given, so the screenshot is not shown", notes)
    try:
        image_dir = _image_dir(row)
        path = resolve_image_path(
            dataset_root, name, sample_id=str(row.get("id")), image_dir=image_dir
        )
        if not path.is_file():
            return Shot(None, f"screenshot not found: {image_relpath(name, image_dir)}", notes)
        with Image.open(path) as source:
            original = _size(row.get("img_size")) or (float(source.width), float(source.height))
            source.draft("RGB", (max_width, max_width))  # JPEG only: decode at reduced scale
            source.thumbnail((max_width, max_width * 4))
            image = source.convert("RGB")
        _draw(image, row, original)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    except (DatasetError, OSError, ValueError, Image.DecompressionBombError) as exc:
        return Shot(None, f"screenshot could not be shown: {exc}", notes)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Shot(f"data:image/jpeg;base64,{encoded}", None, notes)


def annotate_all(
    rows: Sequence[Mapping[str, Any]], dataset_root: Path | None, *, max_width: int = MAX_WIDTH
) -> list[Shot]:
    """:func:`annotate` for every row, in order; decoding runs in a few threads."""
    if not rows:
        return []
    workers = max(1, min(4, os.cpu_count() or 1, len(rows)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda r: annotate(r, dataset_root, max_width=max_width), rows))
