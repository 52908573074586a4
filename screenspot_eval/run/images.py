"""How each screenshot reaches the backend: decoded and prepared in the pool, or as a file.

The in-process engine gets pixels: the decode pool decodes each screenshot and, where the
engine's self-checked preparer says so, resizes it to the size Gemma 4's processor would resize
it to (the processor then leaves it alone, so ``pixel_values`` are the same bytes, and vLLM's
single front-end thread does not copy and resize a 20 MP image per request). A backend that
sends files (``image_input == "file"``, the HTTP backend) gets the file checked but not decoded:
the server decodes it itself.

Every image carries a stable uuid built from the file's sha256 (already computed for the run's
fingerprint), the image budget and the preparation, so vLLM never hashes pixels and equal
inputs still share cache entries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from screenspot_eval.backends.base import Backend
from screenspot_eval.backends.frontend import ImageStats, image_uuid
from screenspot_eval.data.errors import ImageLoadError
from screenspot_eval.data.images import Loader, decode_image, inspect_image
from screenspot_eval.data.paths import image_relpath
from screenspot_eval.data.sample import Sample

PREPARED, ORIGINAL, FILE = "prepared", "original", "file"


@dataclass(frozen=True)
class LoadedImage:
    """What the pool hands on: the image (or file), its path and the uuid tag of its pixels."""

    image: Any
    image_file: Any
    path: str
    tag: str


@dataclass
class ImagePlan:
    """The loader the decode pool runs for one pass, and what it records."""

    load: Loader
    mode: str  # "decoded" or "file"
    budget: int | None
    hashes: dict[str, str]
    uuids: bool
    stats: ImageStats = field(default_factory=ImageStats)
    preparer: Any = None
    note: str = ""

    def uuid_for(self, sample: Sample, loaded: LoadedImage) -> str | None:
        if not self.uuids:
            return None
        sha = self.hashes.get(image_relpath(sample.img_filename, sample.image_dir))
        return image_uuid(sha, self.budget, loaded.tag) if sha else None

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "input": self.mode,
            "uuids": self.uuids,
            **self.stats.to_record(),
        }
        if self.preparer is not None:
            record["preparation"] = self.preparer.record()
        if self.note:
            record["note"] = self.note
        return record


def _timed(fn: Any, *args: Any) -> tuple[Any, tuple[float, float]]:
    wall, cpu = time.perf_counter(), time.thread_time()
    result = fn(*args)
    return result, (time.perf_counter() - wall, time.thread_time() - cpu)


def plan_images(
    backend: Backend,
    samples: list[Sample],
    *,
    budget: int | None,
    hashes: dict[str, str] | None,
    prepare: bool = True,
    uuids: bool = True,
) -> ImagePlan:
    """The loader for ``samples`` on ``backend``: files for a backend that sends files, else a
    decode plus, where the backend offers a self-checked preparer, the preparation."""
    known = dict(hashes or {})
    if backend.image_input == "file":
        stats = ImageStats(first_stage="inspect")

        def load_file(sample: Sample, root: Path, roots: tuple[Path, ...]) -> Any:
            result, took = _timed(inspect_image, sample, root, roots)
            if isinstance(result, ImageLoadError):
                return result
            stats.loaded(took, (0.0, 0.0))
            return LoadedImage(None, result, FILE, FILE)

        return ImagePlan(load_file, "file", budget, known, uuids, stats)

    preparer = None
    note = ""
    if not prepare:
        note = "preparation off (--image-prep off): every image is sent as decoded"
    elif budget is not None:
        preparer = backend.image_preparation(budget, {s.img_size for s in samples})
    if prepare and preparer is None:
        note = "this backend offers no preparation: every image is sent as decoded"
    stats = ImageStats()

    def load_decoded(sample: Sample, root: Path, roots: tuple[Path, ...]) -> Any:
        image, decode_took = _timed(decode_image, sample, root, roots)
        if isinstance(image, ImageLoadError):
            return image
        if preparer is None:
            stats.loaded(decode_took, (0.0, 0.0))
            return LoadedImage(image, None, ORIGINAL, "rgb")
        (sent, path), prepare_took = _timed(preparer.prepare, image)
        stats.loaded(decode_took, prepare_took)
        if path == PREPARED:
            return LoadedImage(sent, None, PREPARED, f"prepared-{sent.width}x{sent.height}")
        return LoadedImage(sent, None, ORIGINAL, "rgb")

    return ImagePlan(load_decoded, "decoded", budget, known, uuids, stats, preparer, note)


def crop_loader(
    plan: ImagePlan, views: dict[str, tuple[int, int, int, int]], preparer: Any
) -> Loader:
    """The decode pool's loader for a crop step: each screenshot decoded, cut to its sample's
    view (``Image.crop`` copies only the crop) and prepared by the same ``preparer`` as whole
    images (sizes self-checked for this pass; None: sent as cut). Never a PNG re-encode here:
    a backend that sends files gets the crop's pixels."""
    stats = plan.stats

    def load_crop(sample: Sample, root: Path, roots: tuple[Path, ...]) -> Any:
        image, decode_took = _timed(decode_image, sample, root, roots)
        if isinstance(image, ImageLoadError):
            return image
        view = views[sample.id]
        crop, crop_took = _timed(image.crop, view)
        tag = "crop-{}-{}-{}-{}".format(*view)
        if preparer is None:
            stats.loaded(decode_took, crop_took)
            return LoadedImage(crop, None, ORIGINAL, f"{tag}-rgb")
        (sent, path), prepare_took = _timed(preparer.prepare, crop)
        stats.loaded(decode_took, (crop_took[0] + prepare_took[0], crop_took[1] + prepare_took[1]))
        if path == PREPARED:
            return LoadedImage(sent, None, PREPARED, f"{tag}-prepared-{sent.width}x{sent.height}")
        return LoadedImage(sent, None, ORIGINAL, f"{tag}-rgb")

    return load_crop
