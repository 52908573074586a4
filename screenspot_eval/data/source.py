"""Where the ScreenSpot-Pro release comes from: a local folder, the hub, or a parquet mirror.

Every source ends as a folder in the official layout (``annotations/*.json`` and
``images/<folder>/<file>.png``), so validation, image loading and fingerprints have one code
path. The hub snapshot goes to the standard HF cache and its resolved commit (the snapshot
folder name) is recorded, so a run says exactly which data it saw.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from screenspot_eval.data.errors import (
    DatasetError,
    DatasetLayoutError,
    DatasetUnavailableError,
)
from screenspot_eval.data.paths import ANNOTATIONS_DIR, IMAGES_DIR, DatasetSource
from screenspot_eval.data.sample import DEFAULT_LAYOUT

if TYPE_CHECKING:
    from screenspot_eval.data.layouts import Layout

OFFICIAL_REPO_ID = "likaixin/ScreenSpot-Pro"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "ON", "YES", "TRUE"}
_LOCAL_COPY_HINT = (
    "Point at a local copy of the release instead (a folder holding annotations/ and images/): "
    "`screenspot-eval data check /path/to/ScreenSpot-Pro`, or `--data /path/to/ScreenSpot-Pro` "
    "on the run commands."
)


def load_dataset_source(
    spec: str,
    revision: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
    layout: str | None = None,
) -> DatasetSource:
    """Resolve ``spec`` to a folder in the official layout.

    ``spec`` is a local folder in the official layout, a ``.parquet`` file or folder of parquet
    files (or ``parquet:<path-or-repo-id>``), or a hub repo id such as ``likaixin/ScreenSpot-Pro``.
    A local path wins over a repo id of the same spelling. ``offline=None`` reads
    ``HF_HUB_OFFLINE`` at call time; ``cache_dir=None`` reads ``HF_HUB_CACHE`` at call time.

    ``layout`` (default ScreenSpot-Pro, whose sources are the ones above): another layout of
    :mod:`screenspot_eval.data.layouts` reads a local folder in that layout only.
    """
    from screenspot_eval.data.layouts import get_layout

    chosen = get_layout(layout)
    if chosen.name != DEFAULT_LAYOUT:
        return _layout_folder(spec, revision, chosen)
    if spec.startswith("parquet:"):
        from screenspot_eval.data.parquet import parquet_source

        return parquet_source(spec.removeprefix("parquet:"), revision, cache_dir=cache_dir)
    path = Path(spec).expanduser()
    if path.exists():
        if revision is not None:
            raise DatasetError(
                f"--revision {revision!r} applies to hub datasets only; {spec!r} is a local path"
            )
        if path.is_dir() and (path / ANNOTATIONS_DIR).is_dir():
            return DatasetSource(root=path.resolve(), kind="folder", spec=spec)
        if path.suffix == ".parquet" or (path.is_dir() and any(path.rglob("*.parquet"))):
            from screenspot_eval.data.parquet import parquet_source

            return parquet_source(spec, revision, cache_dir=cache_dir)
        raise DatasetLayoutError(
            f"{path} is not a ScreenSpot-Pro folder: expected {ANNOTATIONS_DIR}/*.json and "
            f"{IMAGES_DIR}/<folder>/<file>.png inside it"
        )
    if _REPO_ID.match(spec):
        return hub_source(spec, revision, cache_dir=cache_dir, offline=offline)
    raise DatasetUnavailableError(
        f"{spec!r} is neither an existing folder nor a hub repo id (owner/name). {_LOCAL_COPY_HINT}"
    )


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (huggingface_hub reads it only once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return value.upper() in _TRUE if value is not None else constants.HF_HUB_OFFLINE


def hub_cache_dir() -> Path:
    """``HF_HUB_CACHE`` as set now, else huggingface_hub's default."""
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE).expanduser()


def hub_source(
    repo_id: str,
    revision: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
) -> DatasetSource:
    """Download (or find in the HF cache) the official layout of ``repo_id``.

    A full commit hash is looked up in the cache first (it cannot change), so a pinned, cached
    release never touches the network. Branches and tags are resolved online unless offline.
    """
    from huggingface_hub import snapshot_download

    offline = hub_offline() if offline is None else offline
    cache = Path(cache_dir).expanduser() if cache_dir is not None else hub_cache_dir()
    wanted = revision or "main"

    def download(local_only: bool) -> str:
        return snapshot_download(
            repo_id,
            repo_type="dataset",
            revision=revision,
            cache_dir=cache,
            local_files_only=local_only,
            allow_patterns=[f"{ANNOTATIONS_DIR}/*", f"{IMAGES_DIR}/*"],
        )

    try:
        if offline or (revision is not None and _COMMIT.match(revision)):
            try:
                folder = download(local_only=True)
            except OSError:
                if offline:
                    raise
                folder = download(local_only=False)
        else:
            folder = download(local_only=False)
    except (OSError, ValueError) as error:
        why = "HF_HUB_OFFLINE is set" if offline else "the hub could not be reached"
        raise DatasetUnavailableError(
            f"Dataset {repo_id!r} (revision {wanted!r}) is not in the HF cache at {cache} and "
            f"{why} ({type(error).__name__}: {error}). Download it once with network access "
            f"(`hf download {repo_id} --repo-type dataset`), or: {_LOCAL_COPY_HINT}"
        ) from error
    root = Path(folder)
    if not (root / ANNOTATIONS_DIR).is_dir():
        raise DatasetLayoutError(
            f"hub snapshot {root} has no {ANNOTATIONS_DIR}/ folder: {repo_id!r} is not in the "
            "official ScreenSpot-Pro layout (for a parquet mirror use `parquet:<repo id>`)"
        )
    return DatasetSource(root=root, kind="hub", spec=repo_id, revision=root.name)


def _layout_folder(spec: str, revision: str | None, layout: Layout) -> DatasetSource:
    """A local folder in ``layout`` (not ScreenSpot-Pro), or an error that names the fix."""
    where = (
        f"download the release ({layout.home}) and pass its folder: "
        f"`--data /path/to/folder --layout {layout.name}`"
    )
    if spec == OFFICIAL_REPO_ID:
        raise DatasetUnavailableError(
            f"--layout {layout.name} needs --data: the default dataset {OFFICIAL_REPO_ID} is "
            f"ScreenSpot-Pro; {where}"
        )
    if spec.startswith("parquet:") or spec.endswith(".parquet"):
        raise DatasetError(
            f"parquet mirrors are read in the screenspot-pro layout only; for {layout.title} "
            f"{where}"
        )
    path = Path(spec).expanduser()
    if not path.exists():
        raise DatasetUnavailableError(
            f"{spec!r} is not an existing folder; the {layout.name} layout reads a local copy "
            f"only: {where}"
        )
    if revision is not None:
        raise DatasetError(
            f"--revision {revision!r} applies to hub datasets only; {spec!r} is a local path"
        )
    declared = [p for p in layout.annotations if not any(ch in p for ch in "*?[")]
    if not path.is_dir() or not any((path / name).is_file() for name in declared):
        raise DatasetLayoutError(
            f"{path} is not a {layout.title} folder: expected {', '.join(layout.annotations)} "
            f"and {layout.image_dir}/ inside it"
        )
    if not (path / layout.image_dir).is_dir():
        zipped = path / f"{layout.image_dir}.zip"
        fix = f"; unzip it first: `unzip {zipped} -d {path}`" if zipped.is_file() else ""
        raise DatasetLayoutError(
            f"{path} has no {layout.image_dir}/ folder (the {layout.title} screenshots){fix}"
        )
    return DatasetSource(root=path.resolve(), kind="folder", spec=spec)
