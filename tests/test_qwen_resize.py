"""Qwen's resize, checked against transformers' real image processor.

The size an image is sent at decides where a pixel answer lands, so the adapter's arithmetic
(:func:`screenspot_eval.adapters.qwen_vl.qwen_sent_size`) is compared with what
``Qwen2VLImageProcessor`` really produces (the processor Qwen2-VL, Qwen2.5-VL and Qwen3-VL all
use): the processed grid ``image_grid_thw`` is ``(t, h / patch, w / patch)``, so the sent size is
``(w_grid * patch, h_grid * patch)``. Nothing here reimplements ``smart_resize``; the reference
is the processor run on an image of each size.
"""

from __future__ import annotations

import functools

import pytest

#: Screenshot sizes: the largest ScreenSpot-Pro screens, common ones, a phone, tiny, extreme.
SIZES: list[tuple[int, int]] = [
    (6016, 3384),
    (3840, 2160),
    (1920, 1080),
    (1366, 768),
    (1080, 2400),
    (30, 30),
    (28, 28),
    (2000, 50),
    (50, 2000),
]
#: (min_pixels, max_pixels): each family's published default, and a common grounding setting.
BUDGETS: dict[str, tuple[int, int]] = {
    "qwen2.5-vl-published": (3136, 12845056),  # Qwen/Qwen2.5-VL-7B-Instruct
    "qwen3-vl-published": (65536, 16777216),  # Qwen/Qwen3-VL-8B-Instruct
    "100-16384x28x28": (100 * 28 * 28, 16384 * 28 * 28),
}
#: Vision patch size per family; both merge 2 x 2 (factor 28 and 32).
PATCHES: dict[str, int] = {"patch14": 14, "patch16": 16}
MERGE = 2


@functools.cache
def transformers_sent_size(
    width: int, height: int, min_pixels: int, max_pixels: int, patch: int
) -> tuple[int, int]:
    """``(width, height)`` of the image transformers' processor sends for a ``width x height``
    image: a real ``Qwen2VLImageProcessor`` run on a real image."""
    from PIL import Image
    from transformers import Qwen2VLImageProcessor

    processor = Qwen2VLImageProcessor(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=patch,
        merge_size=MERGE,
        temporal_patch_size=2,
    )
    # No rescale / normalize: they change pixel values, not the size, and halve the time.
    image = Image.new("RGB", (width, height))
    out = processor(images=[image], do_rescale=False, do_normalize=False, return_tensors="pt")
    _, grid_h, grid_w = out["image_grid_thw"][0].tolist()
    return grid_w * patch, grid_h * patch


def _adapter():
    """The function under test, imported here so a missing module fails each test plainly."""
    from screenspot_eval.adapters.qwen_vl import qwen_sent_size

    return qwen_sent_size


@pytest.mark.parametrize("patch", PATCHES.values(), ids=PATCHES.keys())
@pytest.mark.parametrize("budget", BUDGETS.values(), ids=BUDGETS.keys())
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_the_adapter_sends_what_transformers_sends(
    size: tuple[int, int], budget: tuple[int, int], patch: int
):
    (width, height), (min_pixels, max_pixels) = size, budget
    expected = transformers_sent_size(width, height, min_pixels, max_pixels, patch)
    got = _adapter()(
        width, height, min_pixels=min_pixels, max_pixels=max_pixels, factor=patch * MERGE
    )
    assert tuple(got) == expected


@pytest.mark.parametrize("budget", BUDGETS.values(), ids=BUDGETS.keys())
def test_the_reference_sizes_are_whole_merged_patches_inside_the_budget(budget: tuple[int, int]):
    """The reference itself is sane: each side a whole number of merged patches, the area in
    ``[min_pixels, max_pixels]`` (true of every size here, the extreme aspects included)."""
    min_pixels, max_pixels = budget
    for patch in PATCHES.values():
        factor = patch * MERGE
        for width, height in SIZES:
            w, h = transformers_sent_size(width, height, min_pixels, max_pixels, patch)
            assert w % factor == 0 and h % factor == 0, (width, height, patch)
            assert min_pixels <= w * h <= max_pixels, (width, height, patch)


def test_known_sizes():
    """Hand-checked anchors: 1920 x 1080 under Qwen2.5-VL's published budget is sent as is,
    rounded to 28 (1932 x 1092, 2691 tokens); a 6016 x 3384 screen is scaled down under the
    cap."""
    assert transformers_sent_size(1920, 1080, 3136, 12845056, 14) == (1932, 1092)
    assert transformers_sent_size(1920, 1080, 65536, 16777216, 16) == (1920, 1088)
    assert transformers_sent_size(6016, 3384, 3136, 12845056, 14) == (4760, 2688)
    assert transformers_sent_size(30, 30, 3136, 12845056, 14) == (56, 56)


@pytest.mark.parametrize("size", [(6000, 20), (20, 6000)])
def test_an_aspect_over_200_is_refused_by_both(size: tuple[int, int]):
    width, height = size
    with pytest.raises(ValueError, match="aspect ratio"):
        transformers_sent_size(width, height, 3136, 12845056, 14)
    with pytest.raises(ValueError, match="aspect ratio"):
        _adapter()(width, height, min_pixels=3136, max_pixels=12845056, factor=28)
