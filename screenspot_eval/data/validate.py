"""Read the official annotation files into :class:`Sample` objects, checking every field.

Strict mode raises on invalid data (the first problem, carrying the full list); lenient mode
excludes each bad sample and returns it as an :class:`Exclusion`, so a run can name every sample
it left out. Checks: JSON syntax, required fields and types, ``ui_type`` in text/icon, the bbox
inside the image with ``x1 < x2`` and ``y1 < y2``, unique ids across files, image paths inside the
dataset, images present, and the PNG header size equal to ``img_size`` (read without decoding).

Choices: a sample without a usable ``id`` is named ``#<index>`` (its position in the file); an id
that occurs more than once is excluded everywhere it occurs (no copy is more right than another);
unknown extra keys are ignored.

Layouts: every release is read through its declaration in :mod:`screenspot_eval.data.layouts`
(ScreenSpot-Pro by default, whose checks and messages are the ones above). A layout whose
records carry ``[x, y, w, h]`` boxes, polygons or refusal items is converted here, once, into
``(x1, y1, x2, y2)`` pixels; a box that does not fit the declared format (normalised numbers in
a pixel layout, corners where widths are declared, a box outside the image) is a named problem
that says what to fix, never a silent zero.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError

from screenspot_eval.data.errors import (
    DatasetLayoutError,
    Exclusion,
    InvalidSampleError,
)
from screenspot_eval.data.layouts import Layout, get_layout
from screenspot_eval.data.paths import (
    ANNOTATIONS_DIR,
    DatasetSource,
    resolve_image_path,
    trusted_roots,
)
from screenspot_eval.data.sample import DEFAULT_LAYOUT, UI_TYPES, Sample
from screenspot_eval.data.source import load_dataset_source

Header = tuple[tuple[int, int] | None, str | None]


@dataclass(frozen=True)
class LoadedDataset:
    """The valid samples in dataset order, every exclusion, and where the data came from."""

    root: Path
    samples: list[Sample]
    exclusions: list[Exclusion]
    source: str
    revision: str | None
    annotation_files: list[str]
    layout: str = DEFAULT_LAYOUT
    notes: list[str] = dataclass_field(default_factory=list)
    """What loading could not establish but did not exclude a sample for (e.g. no
    classification file: every item is ``unclassified``)."""


def open_dataset(
    spec: str,
    revision: str | None = None,
    *,
    strict: bool = True,
    check_images: bool = True,
    workers: int = 4,
    layout: str | Layout | None = None,
) -> LoadedDataset:
    """Resolve ``spec`` (folder, hub repo id, parquet) and load it in ``layout`` (a name of
    :data:`~screenspot_eval.data.layouts.LAYOUTS`, default ``screenspot-pro``): the one-call
    entry point."""
    chosen = get_layout(layout)
    source = load_dataset_source(spec, revision, layout=chosen.name)
    return load_release(
        source, strict=strict, check_images=check_images, workers=workers, layout=chosen
    )


def load_release(
    source: DatasetSource | Path,
    *,
    strict: bool = True,
    check_images: bool = True,
    workers: int = 4,
    layout: str | Layout | None = None,
) -> LoadedDataset:
    """Load and validate a folder in ``layout`` (default ScreenSpot-Pro's official layout).

    ``check_images=False`` skips opening the images (existence and size), for annotation-only
    work; the path-safety check always runs. A layout without image sizes in its records reads
    each screenshot's header (never its pixels) either way.
    """
    layout = get_layout(layout)
    if isinstance(source, Path):
        source = DatasetSource(root=source.resolve(), kind="folder", spec=str(source))
    root = source.root
    problems: list[InvalidSampleError] = []
    files = _annotation_files(root, layout, problems)
    roots = trusted_roots(root)
    notes: list[str] = []
    categories = _read_categories(root, layout, roots, notes)
    headers: dict[str, Header] = {}
    parsed: list[Sample] = []
    for file in files:
        rel = file.relative_to(root).as_posix()
        target = file.resolve()
        if not any(target.is_relative_to(trusted) for trusted in roots):
            problems.append(
                InvalidSampleError(
                    f"annotation file resolves outside the dataset folder (to {str(target)!r}); "
                    "the whole file is excluded",
                    file=rel,
                )
            )
            continue
        records = _read_annotation_file(file, rel, problems)
        for index, record in enumerate(records):
            try:
                parsed.append(
                    parse_layout_record(
                        record,
                        rel,
                        index,
                        root=root,
                        roots=roots,
                        layout=layout,
                        categories=categories,
                        headers=headers,
                    )
                )
            except InvalidSampleError as error:
                problems.append(error)
    samples = _drop_duplicate_ids(parsed, problems)
    if check_images:
        samples = _check_images(samples, root, problems, workers=workers, headers=headers)
    problems = _in_file_order(problems, [f.relative_to(root).as_posix() for f in files])
    if strict and problems:
        first = problems[0]
        raise type(first)(
            first.reason,
            file=first.file,
            sample_id=first.sample_id,
            field=first.field,
            problems=[p.to_exclusion() for p in problems],
        )
    return LoadedDataset(
        root=root,
        samples=samples,
        exclusions=[p.to_exclusion() for p in problems],
        source=source.spec,
        revision=source.revision,
        annotation_files=[f.relative_to(root).as_posix() for f in files],
        layout=layout.name,
        notes=notes,
    )


def _annotation_files(root: Path, layout: Layout, problems: list[InvalidSampleError]) -> list[Path]:
    """The layout's annotation files under ``root``, in declaration order (a glob sorted).

    A declared file (not a pattern) that is missing is a whole-file problem, so a release
    with one of its files gone is never read as complete."""
    files: list[Path] = []
    for pattern in layout.annotations:
        if any(ch in pattern for ch in "*?["):
            files += sorted(root.glob(pattern))
        elif (root / pattern).is_file():
            files.append(root / pattern)
        elif any((root / p).is_file() for p in layout.annotations if p != pattern):
            problems.append(
                InvalidSampleError(
                    f"annotation file missing: the {layout.title} release has {pattern}",
                    file=pattern,
                )
            )
    if not files:
        if layout.annotations == (f"{ANNOTATIONS_DIR}/*.json",):
            raise DatasetLayoutError(f"no {ANNOTATIONS_DIR}/*.json in {root}")
        raise DatasetLayoutError(
            f"no {' / '.join(layout.annotations)} in {root}: not a {layout.title} folder "
            f"(layout {layout.name!r})"
        )
    return files


def _read_categories(
    root: Path, layout: Layout, roots: tuple[Path, ...], notes: list[str]
) -> dict[str, tuple[str, ...]] | None:
    """id -> categories from the layout's classification file (None: the layout has none).

    The file is ``{"classified": {category: [{"id": ...}, ...]}}`` (the official OSWorld-G
    ``classification_result.json``); an id it does not list gets no category (reported as
    ``unclassified``). A missing or unreadable file is a note, not an exclusion: categories
    are slices, not ground truth."""
    if layout.categories_file is None:
        return None
    path = root / layout.categories_file
    if not path.is_file() or not any(path.resolve().is_relative_to(r) for r in roots):
        notes.append(
            f"{layout.categories_file} not found (or outside the dataset): categories unknown, "
            "every item is 'unclassified'"
        )
        return {}
    try:
        classified = json.loads(path.read_text(encoding="utf-8"))["classified"]
        found: dict[str, list[str]] = defaultdict(list)
        for category, members in classified.items():
            for member in members:
                found[str(member["id"])].append(str(category))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        notes.append(
            f"{layout.categories_file} unreadable ({type(error).__name__}: {error}): "
            "categories unknown, every item is 'unclassified'"
        )
        return {}
    order = {c: i for i, c in enumerate(layout.categories)}
    return {
        item: tuple(sorted(dict.fromkeys(cats), key=lambda c: (order.get(c, len(order)), c)))
        for item, cats in found.items()
    }


def _read_annotation_file(file: Path, rel: str, problems: list[InvalidSampleError]) -> list[Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        reason = (
            f"malformed JSON at line {error.lineno} column {error.colno} ({error.msg}); "
            "the whole file is excluded"
        )
        problems.append(InvalidSampleError(reason, file=rel))
        return []
    except (OSError, UnicodeDecodeError) as error:
        reason = f"cannot read the file ({error}); the whole file is excluded"
        problems.append(InvalidSampleError(reason, file=rel))
        return []
    if not isinstance(data, list):
        reason = f"expected a JSON list of samples, got {type(data).__name__}; the whole file is excluded"
        problems.append(InvalidSampleError(reason, file=rel))
        return []
    return data


def parse_record(
    record: Any, source_file: str, index: int, *, root: Path, roots: tuple[Path, ...]
) -> Sample:
    """One ScreenSpot-Pro annotation entry to a :class:`Sample`, or :class:`InvalidSampleError`
    naming the field."""
    return parse_layout_record(record, source_file, index, root=root, roots=roots)


def parse_layout_record(
    record: Any,
    source_file: str,
    index: int,
    *,
    root: Path,
    roots: tuple[Path, ...],
    layout: str | Layout | None = None,
    categories: dict[str, tuple[str, ...]] | None = None,
    headers: dict[str, Header] | None = None,
) -> Sample:
    """One release record to a :class:`Sample` through ``layout``'s declaration, or
    :class:`InvalidSampleError` naming the field (the release's own key) and what to fix.

    ``categories``: id -> categories from the layout's classification file; ``headers``: a
    cache of image headers, for layouts whose records carry no image size."""
    layout = get_layout(layout)
    keys = layout.fields
    file_name = PurePosixPath(source_file).name
    platform_of_file = layout.platform_by_file.get(file_name)
    fallback_id = f"#{index}"
    if not isinstance(record, dict):
        raise InvalidSampleError(
            f"expected a JSON object, got {type(record).__name__}",
            file=source_file,
            sample_id=fallback_id,
        )
    if keys.id is None:
        name = layout.id_pattern.format(
            platform=platform_of_file or PurePosixPath(file_name).stem, index=index
        )
        sample_id = name
    else:
        raw_id = record.get(keys.id)
        sample_id = raw_id if isinstance(raw_id, str) and raw_id else fallback_id

    def bad(field: str, reason: str) -> InvalidSampleError:
        return InvalidSampleError(reason, file=source_file, sample_id=sample_id, field=field)

    required_str = [
        k for k in (keys.id, keys.image, keys.instruction, keys.application, keys.platform) if k
    ]
    required = [*required_str, keys.box, keys.size, keys.ui_type, keys.target_kind]
    kind_name = record.get(keys.target_kind) if keys.target_kind else None
    target = layout.target_kinds.get(kind_name) if isinstance(kind_name, str) else None
    for field in (k for k in required if k):
        if field == keys.box and target == "refusal":
            continue  # a refusal item has no target: its coordinates are not read
        if field not in record or record[field] is None:
            raise bad(field, "missing required field")
    for field in required_str:
        value = record[field]
        if not isinstance(value, str):
            raise bad(field, f"expected a string, got {type(value).__name__} {value!r}")
        if not value.strip():
            raise bad(field, "empty string")
    for field in (k for k in (keys.instruction_cn, keys.group) if k):
        value = record.get(field)
        if value is not None and not isinstance(value, str):
            raise bad(field, f"expected a string or null, got {type(value).__name__} {value!r}")
    if keys.ui_type and record[keys.ui_type] not in UI_TYPES:
        raise bad(
            keys.ui_type,
            f"unknown {keys.ui_type} {record[keys.ui_type]!r} (expected one of {UI_TYPES})",
        )
    if keys.target_kind and target is None:
        known = tuple(layout.target_kinds)
        raise bad(
            keys.target_kind, f"unknown {keys.target_kind} {kind_name!r} (expected one of {known})"
        )
    image = record[keys.image]
    resolve_image_path(
        root,
        image,
        sample_id=sample_id,
        source_file=source_file,
        roots=roots,
        image_dir=layout.image_dir,
    )
    if keys.size is not None:
        width, height = _int_pair(record[keys.size], bad, keys.size)
    else:
        width, height = _header_size(root, layout, image, headers, bad, keys.image)
    bbox: tuple[float, float, float, float] | None
    polygon: tuple[float, ...] | None = None
    if target == "polygon":
        polygon = _polygon(record[keys.box], (width, height), layout, bad, keys.box)
        xs, ys = polygon[0::2], polygon[1::2]
        bbox = (min(xs), min(ys), max(xs), max(ys))
    elif target == "refusal":
        bbox = None
    elif layout.box_format == "xyxy" and layout.name == DEFAULT_LAYOUT:
        bbox = _official_box(record[keys.box], (width, height), bad, keys.box)
    else:
        bbox = _layout_box(record[keys.box], (width, height), layout, bad, keys.box)
    platform = record[keys.platform] if keys.platform else platform_of_file
    group = record.get(keys.group) if keys.group else None
    if layout.group_from == "platform":
        group = platform
    return Sample(
        id=sample_id,
        img_filename=image,
        instruction=record[keys.instruction],
        instruction_cn=record.get(keys.instruction_cn) if keys.instruction_cn else None,
        bbox=bbox,
        img_size=(width, height),
        application=record[keys.application] if keys.application else None,
        platform=platform,
        group=group,
        ui_type=record[keys.ui_type] if keys.ui_type else None,
        source_file=source_file,
        layout=layout.name,
        image_dir=layout.image_dir,
        target=target or "box",
        polygon=polygon,
        categories=(categories or {}).get(sample_id, ()),
    )


def _official_box(
    value: Any, size: tuple[int, int], bad: Any, field: str
) -> tuple[float, float, float, float]:
    """ScreenSpot-Pro's ``[x1, y1, x2, y2]`` pixel box, checked as it always was."""
    width, height = size
    x1, y1, x2, y2 = _bbox(value, bad, field)
    if not (x1 < x2 and y1 < y2):
        raise bad(field, f"empty or inverted box {value} (need x1 < x2 and y1 < y2)")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise bad(field, f"box {value} lies outside the {width}x{height} image")
    return x1, y1, x2, y2


def _fits(corners: Sequence[float], size: tuple[int, int]) -> bool:
    x1, y1, x2, y2 = corners
    return 0 <= x1 < x2 <= size[0] and 0 <= y1 < y2 <= size[1]


def _normalised_hint(values: Sequence[float], size: tuple[int, int], layout: Layout) -> str | None:
    """Why ``values`` look normalised in a pixel layout (all within 0..1 of a larger image)."""
    if layout.box_units != "pixels" or max(size) <= 2:
        return None
    if all(0.0 <= v <= 1.0 for v in values):
        return (
            f"every number lies within 0..1: normalised coordinates, but the {layout.title} "
            f"layout declares pixels of the {size[0]}x{size[1]} image; convert them "
            "(x * width, y * height) or load the file with a layout that declares normalised "
            "boxes"
        )
    return None


def _layout_box(
    value: Any, size: tuple[int, int], layout: Layout, bad: Any, field: str
) -> tuple[float, float, float, float]:
    """A box in the layout's declared format, as ``(x1, y1, x2, y2)`` pixels, or a problem
    that says what format the numbers look like instead."""
    width, height = size
    xywh = layout.box_format == "xywh"
    form = "[x, y, w, h]" if xywh else "[x1, y1, x2, y2]"
    if not (isinstance(value, list) and len(value) == 4 and all(map(_is_number, value))):
        raise bad(field, f"expected {form} as four finite numbers, got {value!r}")
    numbers = [float(v) for v in value]
    hint = _normalised_hint(numbers, size, layout)
    if hint is not None:
        raise bad(field, f"box {value}: {hint}")
    if layout.box_units == "normalised":
        numbers = [v * (width if i % 2 == 0 else height) for i, v in enumerate(numbers)]
    if xywh:
        x, y, w, h = numbers
        if w <= 0 or h <= 0:
            raise bad(
                field,
                f"box {value} read as {form} has width {w:g} and height {h:g}: a box needs both "
                f"> 0 (the {layout.title} layout declares {form}, not corners)",
            )
        corners = (x, y, x + w, y + h)
        if not _fits(corners, size):
            if _fits(numbers, size):
                raise bad(
                    field,
                    f"box {value} read as {form} ends at ({x + w:g}, {y + h:g}), outside the "
                    f"{width}x{height} image, but as corners [x1, y1, x2, y2] it fits: the file "
                    f"writes corners, not the {layout.title} layout's {form}; convert it "
                    "(w = x2 - x1, h = y2 - y1) or load it with a layout that declares corners",
                )
            raise bad(field, f"box {value} read as {form} lies outside the {width}x{height} image")
        return corners
    x1, y1, x2, y2 = numbers
    if not (x1 < x2 and y1 < y2):
        looks_xywh = numbers[2] > 0 and numbers[3] > 0 and _fits((x1, y1, x1 + x2, y1 + y2), size)
        also = (
            f"; as [x, y, w, h] it would fit: the file writes widths, not the {layout.title} "
            "layout's corners; convert it (x2 = x + w, y2 = y + h)"
            if looks_xywh
            else ""
        )
        raise bad(field, f"empty or inverted box {value} (need x1 < x2 and y1 < y2){also}")
    if not _fits(numbers, size):
        raise bad(field, f"box {value} lies outside the {width}x{height} image")
    return x1, y1, x2, y2


def _polygon(
    value: Any, size: tuple[int, int], layout: Layout, bad: Any, field: str
) -> tuple[float, ...]:
    """A flat ``[x1, y1, x2, y2, ...]`` pixel outline of at least three points, inside the
    image and with an area."""
    width, height = size
    ok = isinstance(value, list) and len(value) >= 6 and len(value) % 2 == 0
    if not ok or not all(map(_is_number, value)):
        raise bad(
            field,
            "expected a polygon as a flat list [x1, y1, x2, y2, ...] of at least three points "
            f"(finite numbers), got {value!r}",
        )
    numbers = tuple(float(v) for v in value)
    hint = _normalised_hint(numbers, size, layout)
    if hint is not None:
        raise bad(field, f"polygon {value}: {hint}")
    for x, y in zip(numbers[0::2], numbers[1::2], strict=True):
        if not (0 <= x <= width and 0 <= y <= height):
            raise bad(
                field, f"polygon point ({x:g}, {y:g}) lies outside the {width}x{height} image"
            )
    xs, ys = numbers[0::2], numbers[1::2]
    if not (min(xs) < max(xs) and min(ys) < max(ys)):
        raise bad(field, f"polygon {value} has no area")
    return numbers


def _header_size(
    root: Path,
    layout: Layout,
    image: str,
    headers: dict[str, Header] | None,
    bad: Any,
    field: str,
) -> tuple[int, int]:
    """The screenshot's size from its header, for layouts whose records give none."""
    cache = headers if headers is not None else {}
    if image not in cache:
        cache[image] = image_header_problem(root / layout.image_dir / image)
    size, reason = cache[image]
    if size is None:
        raise bad(field, f"{reason} (the {layout.title} layout reads the image size from it)")
    return size


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int_pair(value: Any, bad: Any, field: str = "img_size") -> tuple[int, int]:
    ok = isinstance(value, list) and len(value) == 2
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise bad(field, f"expected [width, height] as two positive integers, got {value!r}")
    return value[0], value[1]


def _bbox(value: Any, bad: Any, field: str = "bbox") -> tuple[float, float, float, float]:
    if not (isinstance(value, list) and len(value) == 4 and all(map(_is_number, value))):
        raise bad(field, f"expected [x1, y1, x2, y2] as four finite numbers, got {value!r}")
    return float(value[0]), float(value[1]), float(value[2]), float(value[3])


def _drop_duplicate_ids(samples: list[Sample], problems: list[InvalidSampleError]) -> list[Sample]:
    counts = Counter(s.id for s in samples)
    files: dict[str, list[str]] = defaultdict(list)
    for s in samples:
        if counts[s.id] > 1:
            files[s.id].append(s.source_file)
    for s in samples:
        if counts[s.id] > 1:
            where = ", ".join(files[s.id])
            reason = f"duplicate id: occurs {counts[s.id]} times ({where}); every copy is excluded"
            problems.append(
                InvalidSampleError(reason, file=s.source_file, sample_id=s.id, field="id")
            )
    return [s for s in samples if counts[s.id] == 1]


def image_header_problem(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """``(size, None)`` from the image header, or ``(None, reason)``; never decodes pixels."""
    if not path.is_file():
        return None, f"image file not found: {path}"
    try:
        with Image.open(path) as image:
            size = image.size
    except Image.DecompressionBombError as error:
        return None, f"decompression bomb refused: {error}"
    except UnidentifiedImageError:
        return None, f"not a readable image: {path}"
    except OSError as error:
        return None, f"cannot open image {path}: {error}"
    if Image.MAX_IMAGE_PIXELS and size[0] * size[1] > Image.MAX_IMAGE_PIXELS:
        limit = Image.MAX_IMAGE_PIXELS
        return None, f"decompression bomb refused: {size[0]}x{size[1]} exceeds {limit} pixels"
    return size, None


def _check_images(
    samples: list[Sample],
    root: Path,
    problems: list[InvalidSampleError],
    *,
    workers: int,
    headers: dict[str, Header] | None = None,
) -> list[Sample]:
    known = headers or {}
    images = {s.img_filename: s.image_path for s in samples}
    paths = sorted(p for p in images if p not in known)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = pool.map(lambda p: image_header_problem(root / images[p]), paths)
        known = {**known, **dict(zip(paths, found, strict=True))}
    kept = []
    for s in samples:
        size, reason = known[s.img_filename]
        field = "img_filename"
        if size is not None and size != s.img_size:
            reason = f"image is {size[0]}x{size[1]} but img_size says {s.width}x{s.height}"
            field = "img_size"
        if reason is None:
            kept.append(s)
        else:
            problems.append(
                InvalidSampleError(reason, file=s.source_file, sample_id=s.id, field=field)
            )
    return kept


def _in_file_order(
    problems: list[InvalidSampleError], files: list[str]
) -> list[InvalidSampleError]:
    """Problems sorted by annotation file (stable within a file), for readable listings."""
    order = {f: i for i, f in enumerate(files)}
    return sorted(problems, key=lambda p: order.get(p.file or "", len(order)))
