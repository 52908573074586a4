"""Synthetic ScreenSpot-Pro releases in the exact official layout, for tests and benchmarks.

The output has what makes the real release awkward: several annotation files per group, some
files without ``group`` (their application has a grouped file elsewhere, as in the official
release) or ``instruction_cn``, several instructions on one screenshot, and screenshots from
1920x1080 up to 6016x3384. Each target box is drawn on the screenshot so it is visible. The same
seed gives byte-identical files. ``max_width`` scales screenshots (and boxes) down so tests stay
fast; PNGs are written with a low compression level for speed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel

from screenspot_eval.data.accounting import OFFICIAL_GROUP_UI
from screenspot_eval.data.paths import ANNOTATIONS_DIR, IMAGES_DIR
from screenspot_eval.data.sample import UI_TYPES

RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (1920, 1080),
    (2560, 1440),
    (2560, 1664),
    (3024, 1964),
    (3840, 2160),
    (5120, 2880),
    (6016, 3384),
)
# 26 applications as (application, platform, group), in the official group order.
OFFICIAL_LIKE_APPS: tuple[tuple[str, str, str], ...] = (
    *[(a, p, "Dev") for a, p in [("vscode", "macos"), ("pycharm", "macos"),
      ("android_studio", "macos"), ("quartus", "windows"), ("vmware", "macos")]],
    *[(a, p, "Creative") for a, p in [("photoshop", "windows"), ("premiere", "windows"),
      ("illustrator", "windows"), ("blender", "windows"), ("fruitloops", "windows"),
      ("unreal_engine", "windows"), ("davinci", "macos")]],
    *[(a, p, "CAD") for a, p in [("autocad", "windows"), ("solidworks", "windows"),
      ("inventor", "windows"), ("vivado", "windows")]],
    *[(a, p, "Scientific") for a, p in [("matlab", "macos"), ("origin", "windows"),
      ("stata", "windows"), ("eviews", "windows")]],
    *[(a, p, "Office") for a, p in [("word", "macos"), ("excel", "macos"),
      ("powerpoint", "windows")]],
    *[(a, p, "OS") for a, p in [("linux_common", "linux"), ("macos_common", "macos"),
      ("windows_common", "windows")]],
)  # fmt: skip
# Second-platform files that omit `group`: their application has a grouped file above.
UNGROUPED_FILES: tuple[tuple[str, str], ...] = (("vscode", "linux"), ("excel", "windows"))
_SMALL_APPS = ("vscode", "quartus", "photoshop", "blender", "autocad", "vivado", "matlab",
               "stata", "word", "excel", "linux_common", "windows_common")  # fmt: skip
_LABELS = ("Open", "Save", "Export", "Run", "Debug", "Layers", "Render", "Filter", "Insert",
           "Format", "Terminal", "Settings", "Search", "Preview", "Compile", "Plot")  # fmt: skip
_COLOURS = ("red", "blue", "green", "orange", "purple", "teal")


class SynthSummary(BaseModel):
    root: Path
    samples: int
    screenshots: int
    annotation_files: list[str]
    applications: int


def synthesize_release(
    out_dir: Path,
    n: int,
    *,
    seed: int = 0,
    like_official: bool = False,
    max_width: int | None = None,
    resolutions: Sequence[tuple[int, int]] = RESOLUTIONS,
    max_per_screenshot: int = 3,
    target_scale: float = 1.0,
) -> SynthSummary:
    """Write ``n`` samples under ``out_dir`` in the official layout.

    ``like_official``: the 26 official-style applications and the official group x ui_type
    proportions (exact at ``n=1581``). Otherwise 12 applications (two per group) and an even mix.
    Every group and both ui_types appear once ``n >= 12``. ``target_scale`` enlarges target
    boxes (real ones are tiny: a random demo model would almost never hit one).
    """
    if target_scale <= 0:
        raise ValueError("target_scale must be > 0")
    rng = random.Random(seed)
    files = _plan_files(n, like_official)
    (out_dir / ANNOTATIONS_DIR).mkdir(parents=True, exist_ok=True)
    screenshots = 0
    for file_index, ((app, platform, group), ui_types) in enumerate(files.items()):
        folder = f"{app}_{platform[:3] if platform == 'macos' else platform}"
        with_cn = file_index % 4 != 1
        records: list[dict[str, object]] = []
        position = 0
        while position < len(ui_types):
            batch = ui_types[position : position + rng.randint(1, max_per_screenshot)]
            size = _scaled(rng.choice(list(resolutions)), max_width)
            name = f"{folder}/screenshot_{screenshots:05d}.png"
            boxes = _draw_screenshot(out_dir / IMAGES_DIR / name, size, batch, rng, target_scale)
            for ui_type, (box, label) in zip(batch, boxes, strict=True):
                record: dict[str, object] = {
                    "id": f"{app}_{platform}_{position}",
                    "img_filename": name,
                    "instruction": f"Click the {label} {'button' if ui_type == 'text' else 'icon'}.",
                }
                if with_cn:
                    record["instruction_cn"] = (
                        f"点击{label}{'按钮' if ui_type == 'text' else '图标'}。"
                    )
                record |= {"bbox": box, "img_size": list(size), "application": app,
                           "platform": platform}  # fmt: skip
                if group is not None:
                    record["group"] = group
                record["ui_type"] = ui_type
                records.append(record)
                position += 1
            screenshots += 1
        text = json.dumps(records, ensure_ascii=False, indent=1)
        (out_dir / ANNOTATIONS_DIR / f"{app}_{platform}.json").write_text(text, encoding="utf-8")
    return SynthSummary(
        root=out_dir,
        samples=sum(len(v) for v in files.values()),
        screenshots=screenshots,
        annotation_files=[f"{ANNOTATIONS_DIR}/{a}_{p}.json" for a, p, _ in files],
        applications=len({a for a, _, _ in files}),
    )


def _cell_counts(n: int, like_official: bool) -> dict[tuple[str, str], int]:
    """group x ui_type counts summing to ``n`` (largest remainder), each >= 1 when n >= 12.

    With the official weights and ``n = 1581`` the quotas are whole: the official table exactly.
    """
    cells = [(g, ui) for g in OFFICIAL_GROUP_UI for ui in UI_TYPES]
    weights = [OFFICIAL_GROUP_UI[g][ui] if like_official else 1 for g, ui in cells]
    quotas = [n * w / sum(weights) for w in weights]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(len(cells)), key=lambda i: quotas[i] - counts[i], reverse=True)
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    while n >= len(cells) and 0 in counts:  # every group and ui_type must appear
        counts[counts.index(max(counts))] -= 1
        counts[counts.index(0)] = 1
    return dict(zip(cells, counts, strict=True))


def _plan_files(n: int, like_official: bool) -> dict[tuple[str, str, str | None], list[str]]:
    """(application, platform, group or None) -> ui_types of its samples, round-robin per group."""
    apps = [a for a in OFFICIAL_LIKE_APPS if like_official or a[0] in _SMALL_APPS]
    cells = _cell_counts(n, like_official)
    files: dict[tuple[str, str, str | None], list[str]] = {}
    for group in OFFICIAL_GROUP_UI:
        keys: list[tuple[str, str, str | None]] = [a for a in apps if a[2] == group]
        names = {k[0] for k in keys}
        keys += [(a, p, None) for a, p in UNGROUPED_FILES if a in names]
        slots: list[list[str]] = [[] for _ in keys]
        turn = 0
        for ui in UI_TYPES:
            for _ in range(cells[(group, ui)]):
                slots[turn % len(keys)].append(ui)
                turn += 1
        files |= {k: s for k, s in zip(keys, slots, strict=True) if s}
    return files


def _scaled(size: tuple[int, int], max_width: int | None) -> tuple[int, int]:
    if max_width is None or size[0] <= max_width:
        return size
    return max_width, max(8, round(size[1] * max_width / size[0]))


def _draw_screenshot(
    path: Path,
    size: tuple[int, int],
    ui_types: list[str],
    rng: random.Random,
    target_scale: float = 1.0,
) -> list[tuple[list[int], str]]:
    """Draw a plausible screen with one visible target per sample; return (bbox, label) each."""
    width, height = size
    scale = width / 1920 * target_scale
    image = Image.new("RGB", size, (236, 236, 236))
    # A "document" area with coarse texture (4x4-pixel cells), so a screenshot costs about what
    # a real one does to decode and compress (a few MB at 4K) without slowing synthesis down.
    box = (width // 5, height // 8, width * 4 // 5, height * 7 // 8)
    grid = (max(1, (box[3] - box[1]) // 4), max(1, (box[2] - box[0]) // 4), 3)
    noise = np.random.default_rng(rng.getrandbits(32)).integers(90, 200, grid, dtype=np.uint8)
    texture = Image.fromarray(noise, "RGB").resize(
        (box[2] - box[0], box[3] - box[1]), Image.Resampling.NEAREST
    )
    image.paste(texture, box)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, max(2, height // 20)), fill=(60, 63, 65))
    draw.rectangle((0, 0, max(2, width // 12), height), fill=(45, 45, 48))
    taken: list[list[int]] = []
    result = []
    for ui_type in ui_types:
        label = rng.choice(_LABELS)
        colour = rng.choice(_COLOURS)
        w = max(
            2, round((rng.randint(40, 140) if ui_type == "text" else rng.randint(20, 48)) * scale)
        )
        h = max(2, round((rng.randint(18, 30) if ui_type == "text" else w / scale) * scale))
        w, h = min(w, width - 2), min(h, height - 2)
        box = [0, 0, w, h]
        for _ in range(20):  # avoid overlapping targets: each instruction has one answer
            x, y = rng.randint(0, width - w - 1), rng.randint(0, height - h - 1)
            box = [x, y, x + w, y + h]
            if not any(_overlaps(box, other) for other in taken):
                break
        taken.append(box)
        if ui_type == "icon":
            draw.ellipse(box, fill=colour, outline="black")
            label = f"{colour} {label.lower()}"
        else:
            draw.rectangle(box, fill="white", outline=colour)
            draw.text((box[0] + 1, box[1]), label, fill="black")
        result.append((box, label))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", compress_level=1)
    return result


def _overlaps(a: list[int], b: list[int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
