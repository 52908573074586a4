"""Read the official annotation files into :class:`Sample` objects, checking every field.

Strict mode raises on invalid data (the first problem, carrying the full list); lenient mode
excludes each bad sample and returns it as an :class:`Exclusion`, so a run can name every sample
it left out. Checks: JSON syntax, required fields and types, ``ui_type`` in text/icon, the bbox
inside the image with ``x1 < x2`` and ``y1 < y2``, unique ids across files, image paths inside the
dataset, images present, and the PNG header size equal to ``img_size`` (read without decoding).

Choices: a sample without a usable ``id`` is named ``#<index>`` (its position in the file); an id
that occurs more than once is excluded everywhere it occurs (no copy is more right than another);
unknown extra keys are ignored.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from screenspot_eval.data.errors import (
    DatasetLayoutError,
    Exclusion,
    InvalidSampleError,
)
from screenspot_eval.data.paths import (
    ANNOTATIONS_DIR,
    IMAGES_DIR,
    DatasetSource,
    resolve_image_path,
    trusted_roots,
)
from screenspot_eval.data.sample import UI_TYPES, Sample
from screenspot_eval.data.source import load_dataset_source

_REQUIRED_STR = ("id", "img_filename", "instruction", "application", "platform")
_OPTIONAL_STR = ("instruction_cn", "group")


@dataclass(frozen=True)
class LoadedDataset:
    """The valid samples in dataset order, every exclusion, and where the data came from."""

    root: Path
    samples: list[Sample]
    exclusions: list[Exclusion]
    source: str
    revision: str | None
    annotation_files: list[str]


def open_dataset(
    spec: str,
    revision: str | None = None,
    *,
    strict: bool = True,
    check_images: bool = True,
    workers: int = 4,
) -> LoadedDataset:
    """Resolve ``spec`` (folder, hub repo id, parquet) and load it: the one-call entry point."""
    source = load_dataset_source(spec, revision)
    return load_release(source, strict=strict, check_images=check_images, workers=workers)


def load_release(
    source: DatasetSource | Path,
    *,
    strict: bool = True,
    check_images: bool = True,
    workers: int = 4,
) -> LoadedDataset:
    """Load and validate a folder in the official layout.

    ``check_images=False`` skips opening the images (existence and size), for annotation-only
    work; the path-safety check always runs.
    """
    if isinstance(source, Path):
        source = DatasetSource(root=source.resolve(), kind="folder", spec=str(source))
    root = source.root
    files = sorted((root / ANNOTATIONS_DIR).glob("*.json"))
    if not files:
        raise DatasetLayoutError(f"no {ANNOTATIONS_DIR}/*.json in {root}")
    roots = trusted_roots(root)
    problems: list[InvalidSampleError] = []
    parsed: list[Sample] = []
    for file in files:
        rel = f"{ANNOTATIONS_DIR}/{file.name}"
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
                parsed.append(parse_record(record, rel, index, root=root, roots=roots))
            except InvalidSampleError as error:
                problems.append(error)
    samples = _drop_duplicate_ids(parsed, problems)
    if check_images:
        samples = _check_images(samples, root, problems, workers=workers)
    problems = _in_file_order(problems, files)
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
        annotation_files=[f"{ANNOTATIONS_DIR}/{f.name}" for f in files],
    )


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
    """One annotation entry to a :class:`Sample`, or :class:`InvalidSampleError` naming the field."""
    fallback_id = f"#{index}"
    if not isinstance(record, dict):
        raise InvalidSampleError(
            f"expected a JSON object, got {type(record).__name__}",
            file=source_file,
            sample_id=fallback_id,
        )
    raw_id = record.get("id")
    sample_id = raw_id if isinstance(raw_id, str) and raw_id else fallback_id

    def bad(field: str, reason: str) -> InvalidSampleError:
        return InvalidSampleError(reason, file=source_file, sample_id=sample_id, field=field)

    for field in (*_REQUIRED_STR, "bbox", "img_size", "ui_type"):
        if field not in record or record[field] is None:
            raise bad(field, "missing required field")
    for field in _REQUIRED_STR:
        value = record[field]
        if not isinstance(value, str):
            raise bad(field, f"expected a string, got {type(value).__name__} {value!r}")
        if not value.strip():
            raise bad(field, "empty string")
    for field in _OPTIONAL_STR:
        value = record.get(field)
        if value is not None and not isinstance(value, str):
            raise bad(field, f"expected a string or null, got {type(value).__name__} {value!r}")
    if record["ui_type"] not in UI_TYPES:
        raise bad("ui_type", f"unknown ui_type {record['ui_type']!r} (expected one of {UI_TYPES})")
    width, height = _int_pair(record["img_size"], bad)
    x1, y1, x2, y2 = _bbox(record["bbox"], bad)
    box = record["bbox"]
    if not (x1 < x2 and y1 < y2):
        raise bad("bbox", f"empty or inverted box {box} (need x1 < x2 and y1 < y2)")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise bad("bbox", f"box {box} lies outside the {width}x{height} image")
    resolve_image_path(
        root, record["img_filename"], sample_id=sample_id, source_file=source_file, roots=roots
    )
    return Sample(
        id=sample_id,
        img_filename=record["img_filename"],
        instruction=record["instruction"],
        instruction_cn=record.get("instruction_cn"),
        bbox=(x1, y1, x2, y2),
        img_size=(width, height),
        application=record["application"],
        platform=record["platform"],
        group=record.get("group"),
        ui_type=record["ui_type"],
        source_file=source_file,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int_pair(value: Any, bad: Any) -> tuple[int, int]:
    ok = isinstance(value, list) and len(value) == 2
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise bad("img_size", f"expected [width, height] as two positive integers, got {value!r}")
    return value[0], value[1]


def _bbox(value: Any, bad: Any) -> tuple[float, float, float, float]:
    if not (isinstance(value, list) and len(value) == 4 and all(map(_is_number, value))):
        raise bad("bbox", f"expected [x1, y1, x2, y2] as four finite numbers, got {value!r}")
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
    samples: list[Sample], root: Path, problems: list[InvalidSampleError], *, workers: int
) -> list[Sample]:
    paths = sorted({s.img_filename for s in samples})
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = pool.map(lambda p: image_header_problem(root / IMAGES_DIR / p), paths)
        headers = dict(zip(paths, found, strict=True))
    kept = []
    for s in samples:
        size, reason = headers[s.img_filename]
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
    problems: list[InvalidSampleError], files: list[Path]
) -> list[InvalidSampleError]:
    """Problems sorted by annotation file (stable within a file), for readable listings."""
    order = {f"{ANNOTATIONS_DIR}/{f.name}": i for i, f in enumerate(files)}
    return sorted(problems, key=lambda p: order.get(p.file or "", len(order)))
