"""Where a sample's image lives, and proof that it stays inside the dataset.

An annotation file is data from the internet: ``img_filename`` must not reach outside the
dataset (``../``, absolute paths, symlinks pointing elsewhere). The one exception is the HF cache,
whose snapshot files are symlinks into the repository's own ``blobs/`` folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

from screenspot_eval.data.errors import UnsafePathError

IMAGES_DIR = "images"
ANNOTATIONS_DIR = "annotations"


def trusted_roots(root: Path) -> tuple[Path, ...]:
    """The folders a resolved path may land in: the root, plus ``blobs/`` for an HF snapshot."""
    root = root.resolve()
    roots = [root]
    if root.parent.name == "snapshots" and (root.parent.parent / "blobs").is_dir():
        roots.append(root.parent.parent / "blobs")
    return tuple(roots)


def image_relpath(img_filename: str, image_dir: str = IMAGES_DIR) -> str:
    """The image path relative to the dataset root, as used in fingerprints and messages
    (``image_dir``: the layout's image folder, ``images`` for ScreenSpot-Pro)."""
    return f"{image_dir}/{img_filename}"


def resolve_image_path(
    root: Path,
    img_filename: str,
    *,
    sample_id: str | None = None,
    source_file: str | None = None,
    roots: tuple[Path, ...] | None = None,
    image_dir: str = IMAGES_DIR,
) -> Path:
    """``root/<image_dir>/<img_filename>`` (``image_dir`` is ``images`` for ScreenSpot-Pro), or
    :class:`UnsafePathError` if it escapes the dataset.

    The check is lexical first (no ``..``, not absolute, no drive) and then on the resolved path,
    so a symlink that points outside the root is caught too. The file need not exist.
    """

    def unsafe(reason: str) -> UnsafePathError:
        return UnsafePathError(
            f"{reason}: {img_filename!r}",
            file=source_file,
            sample_id=sample_id,
            field="img_filename",
        )

    if not img_filename or "\x00" in img_filename:
        raise unsafe("empty or invalid image path")
    posix, windows = PurePosixPath(img_filename), PureWindowsPath(img_filename)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        raise unsafe("absolute image path is not allowed")
    if ".." in posix.parts or ".." in windows.parts:
        raise unsafe("image path escapes the dataset folder ('..')")
    path = root / image_dir / posix
    resolved = path.resolve()
    allowed = roots if roots is not None else trusted_roots(root)
    if not any(resolved.is_relative_to(base) for base in allowed):
        raise unsafe(f"image path resolves outside the dataset folder (to {resolved})")
    return path


SourceKind = Literal["folder", "hub", "parquet"]


@dataclass(frozen=True)
class DatasetSource:
    """A dataset folder in the official layout and how it was obtained."""

    root: Path
    kind: SourceKind
    spec: str
    revision: str | None = None
    """The resolved hub commit (``None`` for a local folder)."""
