"""Streaming images: order, laziness, bounded look-ahead, and per-sample decode failures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from PIL import Image

from screenspot_eval.data.errors import ImageLoadError
from screenspot_eval.data.images import decode_image, iter_images
from screenspot_eval.data.sample import Sample
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, list[Sample]]:
    root = tmp_path / "release"
    synthesize_release(root, 30, seed=2, max_width=96)
    return root, load_release(root).samples


def test_yields_every_sample_in_order_as_rgb(release: tuple[Path, list[Sample]]) -> None:
    root, samples = release
    seen = list(iter_images(samples, root, workers=2, prefetch=3))
    assert [s.id for s, _ in seen] == [s.id for s in samples]
    for sample, image in seen:
        assert isinstance(image, Image.Image)
        assert image.mode == "RGB" and image.size == sample.img_size
        x1, y1, x2, y2 = (int(v) for v in sample.bbox)
        crop = image.crop((x1, y1, x2, y2))  # the target is drawn, not background
        assert crop.getextrema() != ((236, 236),) * 3


def test_consecutive_samples_sharing_a_screenshot_share_one_decode(
    release: tuple[Path, list[Sample]],
) -> None:
    root, samples = release
    seen = list(iter_images(samples, root))
    shared = [(a, b) for a, b in pairwise(seen) if a[0].img_filename == b[0].img_filename]
    assert shared, "the synthetic release must put several instructions on one screenshot"
    assert all(a[1] is b[1] for a, b in shared)


def test_lazy_with_bounded_look_ahead(release: tuple[Path, list[Sample]]) -> None:
    root, samples = release
    pulled = 0

    def counting() -> Iterator[Sample]:
        nonlocal pulled
        for sample in samples:
            pulled += 1
            yield sample

    stream = iter_images(counting(), root, workers=2, prefetch=4)
    assert pulled == 0  # nothing happens before the first next()
    next(stream)
    assert pulled == 4
    next(stream)
    assert pulled == 5
    stream.close()
    assert pulled == 5


def _broken(samples: list[Sample], root: Path, write: bytes | None) -> Sample:
    target = samples[0]
    path = root / "images" / target.img_filename
    if write is not None:
        path.write_bytes(write)
    return target


def test_not_an_image_yields_a_failure_and_the_stream_goes_on(
    release: tuple[Path, list[Sample]],
) -> None:
    root, samples = release
    target = _broken(samples, root, b"definitely not a PNG")
    results = dict((s.id, r) for s, r in iter_images(samples, root))
    assert len(results) == len(samples)
    failure = results[target.id]
    assert isinstance(failure, ImageLoadError)
    assert failure.sample_id == target.id and failure.file == target.source_file
    assert target.img_filename in str(failure) and "cannot decode" in str(failure)
    ok = [r for s, r in results.items() if s != target.id and isinstance(r, Image.Image)]
    assert ok


def test_truncated_png_yields_a_failure(release: tuple[Path, list[Sample]]) -> None:
    root, samples = release
    path = root / "images" / samples[0].img_filename
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    first_sample, first = next(iter(iter_images(samples, root)))
    assert first_sample == samples[0]
    assert isinstance(first, ImageLoadError)
    assert "truncated" in str(first).lower() or "cannot decode" in str(first)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("limit_factor", [0.9, 0.4])  # warning zone, and PIL's own hard error
def test_decompression_bomb_yields_a_clear_failure(
    release: tuple[Path, list[Sample]], monkeypatch: pytest.MonkeyPatch, limit_factor: float
) -> None:
    root, samples = release
    pixels = samples[0].width * samples[0].height
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(pixels * limit_factor))
    _, result = next(iter(iter_images(samples[:1], root)))
    assert isinstance(result, ImageLoadError)
    assert "decompression bomb" in str(result) and samples[0].id in str(result)


def test_size_drift_after_validation_is_a_failure(release: tuple[Path, list[Sample]]) -> None:
    root, samples = release
    Image.new("RGB", (7, 7)).save(root / "images" / samples[0].img_filename)
    result = decode_image(samples[0], root)
    assert isinstance(result, ImageLoadError) and "img_size says" in str(result)


def test_symlink_escaping_the_root_is_a_failure_not_a_read(
    release: tuple[Path, list[Sample]], tmp_path: Path
) -> None:
    root, samples = release
    outside = tmp_path / "secret.png"
    Image.new("RGB", samples[0].img_size).save(outside)
    path = root / "images" / samples[0].img_filename
    path.unlink()
    os.symlink(outside, path)
    result = decode_image(samples[0], root)
    assert isinstance(result, ImageLoadError) and "outside the dataset folder" in str(result)


def test_palette_and_alpha_images_come_out_rgb(release: tuple[Path, list[Sample]]) -> None:
    root, samples = release
    path = root / "images" / samples[0].img_filename
    Image.open(path).convert("RGBA").save(path)
    result = decode_image(samples[0], root)
    assert isinstance(result, Image.Image) and result.mode == "RGB"


def test_rejects_nonsense_pool_sizes(release: tuple[Path, list[Sample]]) -> None:
    root, samples = release
    with pytest.raises(ValueError):
        next(iter_images(samples, root, workers=0))
