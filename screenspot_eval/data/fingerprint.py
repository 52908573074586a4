"""A sha256 per input file, so a resumed run can refuse data that changed under it.

Only the files a run uses are hashed: the annotation files its samples come from, their
screenshots, and a layout's classification file (OSWorld-G) where there is one. Hashing runs in a thread pool (hashlib releases the GIL on large buffers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from screenspot_eval.data.layouts import get_layout
from screenspot_eval.data.paths import image_relpath, resolve_image_path, trusted_roots
from screenspot_eval.data.sample import Sample

_CHUNK = 1 << 20


class FingerprintDiff(BaseModel):
    """Files whose hash changed, that appeared, or that disappeared between two fingerprints."""

    model_config = ConfigDict(frozen=True)

    changed: list[str]
    added: list[str]
    removed: list[str]

    @property
    def is_empty(self) -> bool:
        return not (self.changed or self.added or self.removed)

    def describe(self) -> str:
        if self.is_empty:
            return "inputs unchanged"
        parts = [
            f"{label} ({len(paths)}): {', '.join(paths[:5])}{' ...' if len(paths) > 5 else ''}"
            for label, paths in (
                ("changed", self.changed),
                ("added", self.added),
                ("removed", self.removed),
            )
            if paths
        ]
        return "inputs differ: " + "; ".join(parts)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_dataset(
    root: Path, samples: Iterable[Sample], *, workers: int = 4
) -> dict[str, str]:
    """Relative path (``annotations/x.json``, ``images/f/x.png``, or the layout's own files)
    -> sha256, sorted by path.

    A missing file raises ``FileNotFoundError``: a fingerprint of absent inputs means nothing.
    """
    roots = trusted_roots(root)
    samples = list(samples)
    files: dict[str, Path] = {}
    for s in samples:
        files[s.source_file] = root / s.source_file
        files[image_relpath(s.img_filename, s.image_dir)] = resolve_image_path(
            root,
            s.img_filename,
            sample_id=s.id,
            source_file=s.source_file,
            roots=roots,
            image_dir=s.image_dir,
        )
    for name in sorted({sample.layout for sample in samples}):
        extra = get_layout(name).categories_file
        if extra is not None and (root / extra).is_file():
            files[extra] = root / extra  # the slices the records carry come from it
    names = sorted(files)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digests = list(pool.map(lambda name: sha256_file(files[name]), names))
    return dict(zip(names, digests, strict=True))


def diff_fingerprints(old: dict[str, str], new: dict[str, str]) -> FingerprintDiff:
    """What differs between the fingerprint a run recorded and the inputs now."""
    return FingerprintDiff(
        changed=sorted(k for k in old.keys() & new.keys() if old[k] != new[k]),
        added=sorted(new.keys() - old.keys()),
        removed=sorted(old.keys() - new.keys()),
    )
