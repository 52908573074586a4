"""ReGround's crop written out again from the official ``crop_to_center`` (ScreenSpot-Pro
repository, ``models/methods/reground.py``), for the tests that check recorded crops: a 1024 px
box centred on the click, clipped to the image, extended on the other side where clipped, and
rounded to whole pixels as PIL's ``Image.crop`` rounds."""

from __future__ import annotations


def reground_view(x: float, y: float, width: int, height: int) -> tuple[int, int, int, int]:
    def span(centre: float, limit: int) -> tuple[int, int]:
        low, high = max(0.0, centre - 512), min(limit, centre + 512)
        if low == 0:
            high = min(limit, 1024)
        if high == limit:
            low = max(0, limit - 1024)
        return round(low), round(high)

    (x0, x1), (y0, y1) = span(x, width), span(y, height)
    return (x0, y0, x1, y1)
