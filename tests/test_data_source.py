"""Sources: local folder, HF cache (offline, fake layout), offline-and-missing, parquet mirror."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from screenspot_eval.cli.app import app
from screenspot_eval.data.errors import (
    DatasetError,
    DatasetLayoutError,
    DatasetUnavailableError,
)
from screenspot_eval.data.source import OFFICIAL_REPO_ID, load_dataset_source
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release, open_dataset
from screenspot_eval.errors import EXIT_DATA_ERROR

SHA = "210e78d3844251110bff86c95835ebd37a6930fa"


@pytest.fixture
def release(tmp_path: Path) -> Path:
    root = tmp_path / "release"
    synthesize_release(root, 20, seed=5, max_width=48)
    return root


def build_hf_cache(release: Path, cache: Path, sha: str = SHA) -> Path:
    """The real HF cache layout: snapshot files are relative symlinks into ``blobs/``."""
    repo = cache / "datasets--likaixin--ScreenSpot-Pro"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    snapshot = repo / "snapshots" / sha
    for file in sorted(p for p in release.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / file.relative_to(release)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    return snapshot


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_local_folder(release: Path) -> None:
    source = load_dataset_source(str(release))
    assert (source.kind, source.root, source.revision) == ("folder", release.resolve(), None)


def test_revision_with_a_local_folder_is_refused_not_ignored(release: Path) -> None:
    with pytest.raises(DatasetError, match="hub datasets only"):
        load_dataset_source(str(release), "main")


def test_folder_not_in_the_official_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="annotations"):
        load_dataset_source(str(tmp_path))


def test_neither_folder_nor_repo_id(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="--data"):
        load_dataset_source(str(tmp_path / "nowhere" / "at" / "all"))


@pytest.mark.parametrize("revision", [None, "main", SHA])
def test_hub_source_from_the_cache_offline(
    release: Path, offline_cache: Path, revision: str | None
) -> None:
    snapshot = build_hf_cache(release, offline_cache)
    source = load_dataset_source(OFFICIAL_REPO_ID, revision)
    assert source.kind == "hub"
    assert source.revision == SHA  # the resolved commit is recorded
    assert source.root == snapshot
    loaded = load_release(source)  # symlinks into blobs/ are inside the trusted roots
    assert len(loaded.samples) == 20
    assert loaded.revision == SHA and loaded.source == OFFICIAL_REPO_ID


def test_hub_snapshot_symlink_outside_cache_is_rejected(
    release: Path, offline_cache: Path, tmp_path: Path
) -> None:
    snapshot = build_hf_cache(release, offline_cache)
    first = json.loads((release / "annotations" / "vscode_macos.json").read_text())[0]
    target = snapshot / "images" / first["img_filename"]
    outside = tmp_path / "outside.png"
    shutil.copy(target, outside)
    target.unlink()
    os.symlink(outside, target)
    loaded = load_release(load_dataset_source(OFFICIAL_REPO_ID), strict=False)
    assert any(
        e.sample_id == first["id"] and "outside the dataset" in e.reason for e in loaded.exclusions
    )


def test_offline_and_not_cached_is_a_clear_error(offline_cache: Path) -> None:
    with pytest.raises(DatasetUnavailableError) as caught:
        load_dataset_source(OFFICIAL_REPO_ID, SHA)
    message = str(caught.value)
    assert OFFICIAL_REPO_ID in message and "HF_HUB_OFFLINE" in message
    assert "--data /path/to/ScreenSpot-Pro" in message


def test_offline_and_not_cached_via_the_cli(offline_cache: Path) -> None:
    result = CliRunner().invoke(app, ["data", "check", OFFICIAL_REPO_ID])
    assert result.exit_code == EXIT_DATA_ERROR
    assert "--data /path/to/ScreenSpot-Pro" in result.stderr


def test_unknown_revision_offline_is_a_clear_error(release: Path, offline_cache: Path) -> None:
    build_hf_cache(release, offline_cache)
    with pytest.raises(DatasetUnavailableError, match="v9"):
        load_dataset_source(OFFICIAL_REPO_ID, "v9")


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, format="PNG")
    return buffer.getvalue()


def _rows() -> list[dict]:
    return [
        {
            "id": f"word_macos_{i}",
            "img_filename": f"word_mac/shot_{i // 2}.png",
            "instruction": f"Click item {i}.",
            "instruction_cn": None if i == 2 else f"点击 {i}",
            "bbox": [1.0, 2.0, 10.0, 12.0],
            "img_size": [40, 30],
            "application": "word",
            "platform": "macos",
            "group": "Office",
            "ui_type": "text" if i % 2 else "icon",
            "image": _png((40, 30)),
        }
        for i in range(3)
    ]


def test_parquet_mirror_with_binary_image_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    monkeypatch.setenv("SCREENSPOT_EVAL_CACHE", str(tmp_path / "cache"))
    pd.DataFrame(_rows()).to_parquet(tmp_path / "mirror.parquet")
    loaded = open_dataset(str(tmp_path / "mirror.parquet"))
    assert [s.id for s in loaded.samples] == ["word_macos_0", "word_macos_1", "word_macos_2"]
    assert loaded.samples[2].instruction_cn is None
    assert loaded.samples[0].source_file == "annotations/word_macos.json"
    assert loaded.samples[0].bbox == (1.0, 2.0, 10.0, 12.0)


def test_parquet_mirror_with_datasets_image_feature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    monkeypatch.setenv("SCREENSPOT_EVAL_CACHE", str(tmp_path / "cache"))
    rows = _rows()
    for row in rows:
        row["image"] = {"bytes": row["image"], "path": None}
        del row["img_size"]  # filled in from the image header
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    table = datasets.Dataset.from_dict(columns).cast_column("image", datasets.Image())
    (tmp_path / "mirror").mkdir()
    table.to_parquet(str(tmp_path / "mirror" / "test-00000.parquet"))
    source = load_dataset_source(f"parquet:{tmp_path / 'mirror'}")
    assert source.kind == "parquet" and source.root.is_relative_to(tmp_path / "cache")
    loaded = load_release(source)
    assert len(loaded.samples) == 3 and loaded.samples[0].img_size == (40, 30)
