"""Fingerprints: one sha256 per used file; a diff names what changed, appeared or vanished."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from screenspot_eval.data.fingerprint import diff_fingerprints, fingerprint_dataset
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release


@pytest.fixture
def release(tmp_path: Path) -> Path:
    synthesize_release(tmp_path, 20, seed=6, max_width=40)
    return tmp_path


def test_covers_every_annotation_file_and_image_used(release: Path) -> None:
    samples = load_release(release).samples
    fingerprint = fingerprint_dataset(release, samples, workers=2)
    expected = {s.source_file for s in samples} | {f"images/{s.img_filename}" for s in samples}
    assert set(fingerprint) == expected
    some = samples[0].source_file
    assert fingerprint[some] == hashlib.sha256((release / some).read_bytes()).hexdigest()
    assert json.loads(json.dumps(fingerprint)) == fingerprint
    assert fingerprint_dataset(release, samples[:3]).keys() <= fingerprint.keys()


def test_diff_names_changed_added_removed(release: Path) -> None:
    samples = load_release(release).samples
    before = fingerprint_dataset(release, samples)
    assert diff_fingerprints(before, before).is_empty
    assert diff_fingerprints(before, before).describe() == "inputs unchanged"
    image = f"images/{samples[0].img_filename}"
    (release / image).write_bytes((release / image).read_bytes() + b"\0")
    gone = samples[-1].source_file
    assert gone != samples[0].source_file
    kept = [s for s in samples if s.source_file != gone]
    after = fingerprint_dataset(release, kept) | {"annotations/new_file.json": "0" * 64}
    diff = diff_fingerprints(before, after)
    assert diff.changed == [image]
    assert diff.added == ["annotations/new_file.json"]
    gone_images = {f"images/{s.img_filename}" for s in samples if s.source_file == gone}
    assert set(diff.removed) == {gone} | gone_images
    assert image in diff.describe() and "added (1)" in diff.describe()


def test_missing_file_raises(release: Path) -> None:
    samples = load_release(release).samples
    (release / "images" / samples[0].img_filename).unlink()
    with pytest.raises(FileNotFoundError):
        fingerprint_dataset(release, samples)
