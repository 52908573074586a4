"""Protocol names and crop geometry, against an independent implementation of the official
methods (ScreenSpot-Pro repository, ``models/methods/``): real PIL crops of nested images whose
pixels encode their own coordinates, so each crop's origin is read back from its pixels."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from screenspot_eval.protocol.zoom import (
    Protocol,
    ProtocolError,
    inside,
    next_view,
    parse_protocol,
)


def coordinate_image(width: int, height: int) -> Image.Image:
    """R,G = x low/high byte, B = y low byte; y high byte is recovered from the crop's height
    and position ranges used here (< 4096 px), via the alpha-free second image below."""
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    array = np.stack([xs % 256, xs // 256, ys % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(array, "RGB")


def row_image(width: int, height: int) -> Image.Image:
    _, ys = np.meshgrid(np.arange(width), np.arange(height))
    array = np.stack([ys // 256, ys // 256, ys // 256], axis=-1).astype(np.uint8)
    return Image.fromarray(array, "RGB")


def origin(crop: Image.Image, rows: Image.Image) -> tuple[int, int]:
    r, g, b = crop.getpixel((0, 0))
    high = rows.getpixel((0, 0))[0]
    return r + 256 * g, b + 256 * high


def official_reground(img: Image.Image, point: tuple[float, float]) -> tuple[float, ...]:
    """ReGround's ``crop_to_center`` as written (relative bbox in, float pixel box out)."""
    w, h = img.size
    cx, cy = point
    crop_w = crop_h = 1024
    x1, y1 = max(0, cx - crop_w / 2), max(0, cy - crop_h / 2)
    x2, y2 = min(w, cx + crop_w / 2), min(h, cy + crop_h / 2)
    if x1 == 0:
        x2 = min(w, x1 + crop_w)
    if y1 == 0:
        y2 = min(h, y1 + crop_h)
    if x2 == w:
        x1 = max(0, x2 - crop_w)
    if y2 == h:
        y1 = max(0, y2 - crop_h)
    return (x1, y1, x2, y2)


def official_nested(img: Image.Image, rows: Image.Image, clicks, method: str):
    """Iterative focusing / narrowing as the official loop crops: each area normalised in the
    current image, cut with ``int(norm * size)``; returns each view's absolute pixel box."""
    views = [(0, 0, *img.size)]
    for fx, fy in clicks:  # the click as a fraction of the current image
        w, h = img.size
        if method == "iterative-focusing":
            ax1 = 0.0 if fx < 0.5 else 0.5
            ay1 = 0.0 if fy < 0.5 else 0.5
            area = (ax1, ay1, ax1 + 0.5, ay1 + 0.5)
        else:
            area = (max(0, fx - 0.25), max(0, fy - 0.25), min(1, fx + 0.25), min(1, fy + 0.25))
        box = (int(area[0] * w), int(area[1] * h), int(area[2] * w), int(area[3] * h))
        img, rows = img.crop(box), rows.crop(box)
        x0, y0 = origin(img, rows)
        views.append((x0, y0, x0 + img.width, y0 + img.height))
    return views


@pytest.mark.parametrize("size", [(3840, 2160), (2560, 1440), (1000, 700), (1100, 3000)])
def test_reground_crop_is_the_official_box_as_pil_crops_it(size):
    rng = random.Random(size[0])
    img, rows = coordinate_image(*size), row_image(*size)
    protocol = parse_protocol("reground")
    for _ in range(40):
        x, y = rng.uniform(0, size[0] - 1e-6), rng.uniform(0, size[1] - 1e-6)
        view = next_view(protocol, (0, 0, *size), x, y, size)
        expected = img.crop(official_reground(img, (x, y)))
        expected_rows = rows.crop(official_reground(img, (x, y)))
        x0, y0 = origin(expected, expected_rows)
        assert view == (x0, y0, x0 + expected.width, y0 + expected.height)
        assert view[2] - view[0] == min(1024, size[0]) and view[3] - view[1] == min(1024, size[1])


@pytest.mark.parametrize("method", ["iterative-focusing", "iterative-narrowing"])
@pytest.mark.parametrize("size", [(3840, 2160), (1919, 1079), (777, 555)])
def test_nested_crops_equal_the_official_loop(method, size):
    rng = random.Random(f"{method}{size}")
    img, rows = coordinate_image(*size), row_image(*size)
    protocol = parse_protocol(method)
    assert protocol.steps == 3
    for _ in range(25):
        fractions = [(rng.random(), rng.random()) for _ in range(2)]
        expected = official_nested(img, rows, fractions, method)
        view = (0, 0, *size)
        for (fx, fy), want in zip(fractions, expected[1:], strict=True):
            w, h = view[2] - view[0], view[3] - view[1]
            x, y = view[0] + fx * w, view[1] + fy * h
            view = next_view(protocol, view, x, y, size)
            assert view == want


def test_zoom_keeps_the_minimum_and_stays_inside():
    protocol = parse_protocol("zoom:steps=3,ratio=0.5,min=768")
    size = (3840, 2160)
    view = next_view(protocol, (0, 0, *size), 3800, 10, size)
    assert view == (3840 - 1920, 0, 3840, 1080)
    view2 = next_view(protocol, view, 3000, 500, size)
    assert view2 is not None and (view2[2] - view2[0], view2[3] - view2[1]) == (960, 768)
    assert all(v >= 0 for v in view2) and view2[2] <= 3840 and view2[3] <= 2160


def test_a_click_outside_the_view_makes_no_crop():
    protocol = parse_protocol("iterative-narrowing")
    assert next_view(protocol, (100, 100, 500, 500), 50, 200, (1000, 1000)) is None
    assert next_view(protocol, (0, 0, 1000, 1000), -1, -1, (1000, 1000)) is None
    assert inside((0, 0, 10, 10), 9.99, 0) and not inside((0, 0, 10, 10), 10, 0)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("one-shot", Protocol()),
        ("reground", Protocol(name="reground", steps=2)),
        ("iterative-focusing", Protocol(name="iterative-focusing", steps=3)),
        (
            " zoom:steps=3, ratio=0.4 ,min=512",
            Protocol(name="zoom", steps=3, ratio=0.4, min_px=512),
        ),
        ("zoom", Protocol(name="zoom", steps=2)),
    ],
)
def test_protocol_specs_parse_and_print_back(spec, expected):
    parsed = parse_protocol(spec)
    assert parsed == expected
    assert parse_protocol(parsed.spec) == parsed


@pytest.mark.parametrize(
    "spec, says",
    [
        ("regrounding", "unknown protocol"),
        ("reground:steps=3", "unknown protocol"),
        ("zoom:steps=0", "steps"),
        ("zoom:ratio=2", "ratio"),
        ("zoom:size=5", "zoom takes steps=N"),
        ("zoom:steps=two", "steps"),
    ],
)
def test_bad_protocols_are_one_line_errors(spec, says):
    with pytest.raises(ProtocolError) as caught:
        parse_protocol(spec)
    assert says in str(caught.value) and "\n" not in str(caught.value)
