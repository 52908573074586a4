"""Parquet mirrors of ScreenSpot-Pro, rewritten into the official folder layout.

Mirrors carry the images inside the table. Writing them out once as ``images/<img_filename>``
and the rows as ``annotations/<application>_<platform>.json`` lets every later stage (validation,
streaming images, fingerprints) use the one folder code path. The mapping is generic: columns
named like the official fields are copied, one image column holds the screenshot. A missing
``img_filename`` becomes ``<application>_<platform>/<id>.png``; a missing ``img_size`` is read
from the image header. Anything else missing is left for validation to report.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from PIL import Image

from screenspot_eval.data.errors import DatasetUnavailableError
from screenspot_eval.data.paths import (
    ANNOTATIONS_DIR,
    IMAGES_DIR,
    DatasetSource,
    resolve_image_path,
)

OFFICIAL_FIELDS = (
    "id",
    "img_filename",
    "instruction",
    "instruction_cn",
    "bbox",
    "img_size",
    "application",
    "platform",
    "group",
    "ui_type",
)
_DONE = ".complete"


def default_parquet_cache() -> Path:
    """Where mirrors are written out: ``$SCREENSPOT_EVAL_CACHE/parquet`` or ``~/.cache/...``."""
    base = os.environ.get("SCREENSPOT_EVAL_CACHE") or Path.home() / ".cache" / "screenspot_eval"
    return Path(base) / "parquet"


def parquet_source(
    spec: str,
    revision: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    image_column: str = "image",
) -> DatasetSource:
    """Load a parquet file, folder of parquet files, or hub parquet repo as a folder source."""
    import datasets

    base = Path(cache_dir).expanduser() if cache_dir is not None else default_parquet_cache()
    hf_cache = str(base / "hf-datasets")
    path = Path(spec).expanduser()
    if path.exists():
        files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
        stamp = "|".join(f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
        data_files = [str(f) for f in files]
        table = datasets.load_dataset(
            "parquet", data_files=data_files, split="train", cache_dir=hf_cache
        )
    else:
        stamp = f"{spec}@{revision}"
        try:
            loaded = datasets.load_dataset(spec, revision=revision, cache_dir=hf_cache)
        except Exception as error:  # datasets raises many unrelated types for "unreachable"
            raise DatasetUnavailableError(
                f"parquet mirror {spec!r} could not be loaded ({type(error).__name__}: {error})"
            ) from error
        table = loaded[next(iter(loaded))] if isinstance(loaded, datasets.DatasetDict) else loaded
    out = base / hashlib.sha256(stamp.encode()).hexdigest()[:16]
    if not (out / _DONE).exists():
        materialise_rows(table, out, image_column=image_column)
    return DatasetSource(root=out.resolve(), kind="parquet", spec=spec, revision=revision)


def materialise_rows(rows: Any, out: Path, *, image_column: str = "image") -> Path:
    """Write ``rows`` (a ``datasets.Dataset``) into the official layout under ``out``."""
    import datasets

    if image_column not in rows.column_names:
        raise DatasetUnavailableError(
            f"parquet mirror has no {image_column!r} column (columns: {rows.column_names})"
        )
    if isinstance(rows.features[image_column], datasets.Image):
        rows = rows.cast_column(image_column, datasets.Image(decode=False))
    files: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for index, row in enumerate(rows):
        record = {k: row[k] for k in OFFICIAL_FIELDS if k in row and row[k] is not None}
        record.setdefault("id", f"row_{index}")
        app, platform = record.get("application", "unknown"), record.get("platform", "unknown")
        record.setdefault("img_filename", f"{app}_{platform}/{record['id']}.png")
        data = _image_bytes(row[image_column])
        if "img_size" not in record:
            record["img_size"] = list(Image.open(io.BytesIO(data)).size)
        target = resolve_image_path(out, str(record["img_filename"]), sample_id=str(record["id"]))
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        files[f"{app}_{platform}.json"].append(record)
    (out / ANNOTATIONS_DIR).mkdir(parents=True, exist_ok=True)
    (out / IMAGES_DIR).mkdir(exist_ok=True)
    for name, records in files.items():
        (out / ANNOTATIONS_DIR / name).write_text(json.dumps(records, ensure_ascii=False, indent=1))
    (out / _DONE).touch()
    return out


def _image_bytes(value: Any) -> bytes:
    """The encoded screenshot from an image cell: bytes, ``{"bytes", "path"}`` or a PIL image."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            return Path(value["path"]).read_bytes()
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return buffer.getvalue()
    raise DatasetUnavailableError(f"unsupported image cell of type {type(value).__name__}")
