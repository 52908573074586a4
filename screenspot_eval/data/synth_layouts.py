"""Synthetic releases in the exact layout of each declared dataset, for tests and demos.

ScreenSpot-Pro is :func:`screenspot_eval.data.synth.synthesize_release`. ScreenSpot-v2 gets
its three ``screenspot_{desktop,mobile,web}_v2.json`` files at the root (records
``img_filename``, ``bbox`` as ``[x, y, w, h]`` pixels, ``instruction``, ``data_type``,
``data_source``; no id, no image size) and ``screenspotv2_image/``. OSWorld-G gets
``OSWorld-G.json`` (or ``OSWorld-G_refined.json``: records ``id``, ``image_path``,
``image_size``, ``instruction``, ``box_type``, ``box_coordinates``, ``GUI_types``), ``images/``
and ``classification_result.json``, with box, polygon and refusal items in the release's
proportions (470 / 40 / 54 of 564). Polygons are triangles, so a click in their bounding box
can miss them. A refusal item's ``box_coordinates`` are ``[-1, -1, -1, -1]`` here (the
release's own value was not read; the loader ignores it). The same seed gives the same files.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

from PIL import Image, ImageDraw

from screenspot_eval.data.layouts import Layout, get_layout, published_count
from screenspot_eval.data.sample import DEFAULT_LAYOUT
from screenspot_eval.data.synth import SynthSummary, _draw_screenshot, _scaled, synthesize_release
from screenspot_eval.errors import UserError

#: ScreenSpot-v2 platforms: (file, image-name prefix, data sources, screen sizes, weight).
_SSV2_PLATFORMS: tuple[tuple[str, str, tuple[str, ...], tuple[tuple[int, int], ...], int], ...] = (
    ("screenspot_mobile_v2.json", "mobile", ("ios", "android"), ((1170, 2532), (1080, 2400)), 501),
    ("screenspot_desktop_v2.json", "pc", ("windows", "macos"), ((1920, 1080), (2880, 1800)), 334),
    ("screenspot_web_v2.json", "web", ("shop", "forum", "gitlab", "tool"), ((1920, 1080),), 437),
)
_OSWG_KINDS = (("bbox", 470), ("polygon", 40), ("refusal", 54))
_OSWG_FUNCTIONAL = (
    "text_matching",
    "element_recognition",
    "layout_understanding",
    "fine_grained_manipulation",
)
_GUI_TYPES = ("Button", "Icon", "Label", "Text Field", "Menu", "Checkbox", "Dropdown", "Tab")
_LABELS = ("Save", "Search", "Settings", "Close", "Share", "Download", "Filter", "Edit")


def synthesize(
    layout: str | Layout | None,
    out_dir: Path,
    n: int,
    *,
    seed: int = 0,
    max_width: int | None = None,
    target_scale: float = 1.0,
    like_official: bool = False,
) -> SynthSummary:
    """Write ``n`` samples under ``out_dir`` in ``layout`` (default ScreenSpot-Pro).

    ``like_official`` applies to ScreenSpot-Pro only (its 26 applications); the other layouts
    always follow their release's proportions."""
    chosen = get_layout(layout)
    if target_scale <= 0:
        raise ValueError("target_scale must be > 0")
    if chosen.name == DEFAULT_LAYOUT:
        return synthesize_release(
            out_dir,
            n,
            seed=seed,
            like_official=like_official,
            max_width=max_width,
            target_scale=target_scale,
        )
    if like_official:
        raise UserError(
            f"--like-official is ScreenSpot-Pro's 26 applications; {chosen.name} always follows "
            "its own release's proportions"
        )
    if chosen.fields.target_kind is not None:
        return _synthesize_osworld_g(chosen, out_dir, n, seed, max_width, target_scale)
    return _synthesize_screenspot_v2(chosen, out_dir, n, seed, max_width, target_scale)


def _split(n: int, weights: list[int]) -> list[int]:
    """``n`` split by ``weights`` (largest remainder), each part >= 1 when n allows."""
    quotas = [n * w / sum(weights) for w in weights]
    counts = [int(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: quotas[i] - counts[i], reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    while n >= len(counts) and 0 in counts:
        counts[counts.index(max(counts))] -= 1
        counts[counts.index(0)] = 1
    return counts


def _platform(layout: Layout, file: str) -> str:
    return layout.platform_by_file.get(file, file)


def _ui_mix(layout: Layout, platform: str, count: int) -> list[str]:
    """``count`` ui_types, text and icon alternating in the platform's published proportion
    (even where none is recorded)."""
    weights = []
    for ui in ("text", "icon"):
        published = published_count(layout, "platform/ui_type", f"{platform}/{ui}")
        weights.append(published.count if published else 1)
    text, icon = _split(count, weights)
    mixed: list[str] = []
    while text or icon:
        if text >= icon and text:
            mixed.append("text")
            text -= 1
        else:
            mixed.append("icon")
            icon -= 1
    return mixed


def _uuid(rng: random.Random) -> str:
    hexes = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    return f"{hexes[:8]}-{hexes[8:12]}-{hexes[12:16]}-{hexes[16:20]}-{hexes[20:]}"


def _synthesize_screenspot_v2(
    layout: Layout, out_dir: Path, n: int, seed: int, max_width: int | None, scale: float
) -> SynthSummary:
    rng = random.Random(seed)
    images = out_dir / layout.image_dir
    images.mkdir(parents=True, exist_ok=True)
    screenshots = 0
    files = []
    counts = _split(n, [weight for *_, weight in _SSV2_PLATFORMS])
    for (file, prefix, sources, sizes, _), count in zip(_SSV2_PLATFORMS, counts, strict=True):
        records: list[dict[str, object]] = []
        ui_types = _ui_mix(layout, _platform(layout, file), count)
        position = 0
        while position < count:
            batch = ui_types[position : position + rng.randint(1, 3)]
            size = _scaled(rng.choice(sizes), max_width)
            name = f"{prefix}_{_uuid(rng)}.png"
            boxes = _draw_screenshot(images / name, size, batch, rng, scale)
            source = rng.choice(sources)
            for ui_type, (box, label) in zip(batch, boxes, strict=True):
                x1, y1, x2, y2 = box
                records.append(
                    {
                        "img_filename": name,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "instruction": f"click the {label}",
                        "data_type": ui_type,
                        "data_source": source,
                    }
                )
                position += 1
            screenshots += 1
        (out_dir / file).write_text(json.dumps(records, indent=4), encoding="utf-8")
        files.append(file)
    return SynthSummary(
        root=out_dir,
        samples=n,
        screenshots=screenshots,
        annotation_files=files,
        applications=sum(len(s) for _, _, s, _, _ in _SSV2_PLATFORMS),
    )


def _synthesize_osworld_g(
    layout: Layout, out_dir: Path, n: int, seed: int, max_width: int | None, scale: float
) -> SynthSummary:
    rng = random.Random(seed)
    images = out_dir / layout.image_dir
    images.mkdir(parents=True, exist_ok=True)
    counts = _split(n, [weight for _, weight in _OSWG_KINDS])
    kinds = [k for (k, _), c in zip(_OSWG_KINDS, counts, strict=True) for _ in range(c)]
    rng.shuffle(kinds)
    records: list[dict[str, object]] = []
    classified: dict[str, list[dict[str, str]]] = {c: [] for c in layout.categories}
    screenshots = 0
    position = 0
    while position < len(kinds):
        batch = kinds[position : position + rng.randint(1, 3)]
        size = _scaled((1920, 1080), max_width)
        shot = "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(10))
        targets = _draw_targets(images / f"{shot}.png", size, batch, rng, scale)
        for k, (kind, (coords, label)) in enumerate(zip(batch, targets, strict=True)):
            item_id = f"{shot}-{k}"
            records.append(
                {
                    "id": item_id,
                    "image_path": f"{shot}.png",
                    "image_size": list(size),
                    "instruction": (
                        f"Click the {label} button"
                        if kind != "refusal"
                        else f"Click the {label} button in the side panel"
                    ),
                    "box_type": kind,
                    "box_coordinates": coords,
                    "GUI_types": sorted(rng.sample(_GUI_TYPES, 2)),
                }
            )
            if kind == "refusal":
                classified["refusal"].append({"id": item_id})
            elif position + k != 0:  # the first item stays unclassified, as some may be
                for category in sorted(rng.sample(_OSWG_FUNCTIONAL, rng.randint(1, 2))):
                    classified[category].append({"id": item_id})
        position += len(batch)
        screenshots += 1
    annotation = layout.annotations[0]
    (out_dir / annotation).write_text(json.dumps(records, indent=2), encoding="utf-8")
    if layout.categories_file is not None:
        text = json.dumps({"classified": classified}, indent=2)
        (out_dir / layout.categories_file).write_text(text, encoding="utf-8")
    return SynthSummary(
        root=out_dir,
        samples=len(records),
        screenshots=screenshots,
        annotation_files=[annotation],
        applications=0,
    )


def _draw_targets(
    path: Path, size: tuple[int, int], kinds: list[str], rng: random.Random, scale: float
) -> list[tuple[list[float], str]]:
    """A screen with one visible target per box or polygon item (none for a refusal item);
    returns each item's release coordinates and label."""
    width, height = size
    image = Image.new("RGB", size, (232, 232, 236))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, max(2, height // 24)), fill=(48, 48, 52))
    unit = width / 1920 * scale
    out: list[tuple[list[float], str]] = []
    for column, kind in enumerate(kinds):
        label = rng.choice(_LABELS)
        w = min(width - 4, max(4, round(rng.randint(60, 160) * unit)))
        h = min(height - 4, max(4, round(rng.randint(30, 70) * unit)))
        slot = max(1, width // max(1, len(kinds)))
        x = min(width - w - 2, column * slot + rng.randint(0, max(0, slot - w - 1)))
        y = min(height - h - 2, rng.randint(height // 12, max(height // 12, height - h - 2)))
        if kind == "bbox":
            draw.rectangle((x, y, x + w, y + h), fill="white", outline="blue")
            draw.text((x + 2, y + 1), label, fill="black")
            # the release writes floats with decimals, e.g. [1422.9, 326.4, 26.68, 28.4]
            out.append(([x + 0.5, y + 0.5, w - 1.0, h - 1.0], label))
        elif kind == "polygon":
            points = [(x, y), (x + w, y), (x, y + h)]  # a right triangle: half its bbox
            draw.polygon(points, fill="orange", outline="black")
            out.append(([float(v) for p in points for v in p], label))
        else:
            out.append(([-1, -1, -1, -1], label))
    image.save(path, format="PNG", compress_level=1)
    return out
