"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL (and the grounding models built on them): ``smart_resize``.

The image processor (transformers ``Qwen2VLImageProcessor``, used by all three) resizes each
image so that both sides are multiples of ``factor = patch_size * merge_size`` (28 for
Qwen2-VL / Qwen2.5-VL, 32 for Qwen3-VL) and the area lies in ``[min_pixels, max_pixels]``;
pixel answers of Qwen2.5-VL are in that resized image. Sources: transformers
``models/qwen2_vl/image_processing_qwen2_vl.py`` (``smart_resize``) and each checkpoint's
``preprocessor_config.json`` (defaults below).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from screenspot_eval.adapters.base import AdapterError, ImageBudget, ModelAdapter, processor_config

MAX_ASPECT_RATIO = 200


def qwen_sent_size(
    width: int, height: int, *, min_pixels: int, max_pixels: int, factor: int
) -> tuple[int, int]:
    """``(width, height)`` Qwen's ``smart_resize`` gives a ``width x height`` image.

    Python's ``round`` (half to even) as the processor uses; raises ``ValueError`` where it
    raises (an aspect ratio over 200).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"absolute aspect ratio must be smaller than {MAX_ASPECT_RATIO}, got "
            f"{max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return w_bar, h_bar


def _pixels(saved: Mapping[str, Any], key: str, size_key: str) -> int | None:
    """``min_pixels`` / ``max_pixels`` of a saved processor config, in either spelling
    (transformers 5 writes ``size = {shortest_edge: min, longest_edge: max}``, areas)."""
    value = saved.get(key)
    size = saved.get("size")
    if not isinstance(value, int) and isinstance(size, dict):
        value = size.get(size_key)
    return value if isinstance(value, int) else None


class QwenVLAdapter(ModelAdapter):
    """One Qwen-VL generation; ``factor`` and defaults from its published processor config."""

    variants = ("native",)
    budget_knob = "max_pixels"

    def __init__(
        self,
        name: str,
        description: str,
        architectures: tuple[str, ...],
        *,
        factor: int,
        min_pixels: int,
        max_pixels: int,
        default_template: str,
    ) -> None:
        self.name = name
        self.description = description
        self.architectures = architectures
        self.factor = factor
        self.default_min_pixels = min_pixels
        self.default_max_pixels = max_pixels
        self.default_template = default_template

    def image_budget(
        self, explicit: int | None, mm_processor_kwargs: Mapping[str, Any], checkpoint: Path | None
    ) -> ImageBudget:
        if explicit is not None:
            raise AdapterError(
                f"--max-soft-tokens is Gemma 4's image budget; {self.name}'s is max_pixels: "
                "--engine-arg 'mm_processor_kwargs={\"max_pixels\": N}'"
            )
        saved = processor_config(checkpoint)
        given = {**saved, **dict(mm_processor_kwargs)}
        min_pixels = _pixels(given, "min_pixels", "shortest_edge") or self.default_min_pixels
        max_pixels = _pixels(given, "max_pixels", "longest_edge") or self.default_max_pixels
        if not 0 < min_pixels <= max_pixels:
            raise AdapterError(
                f"{self.name}: min_pixels ({min_pixels}) must be positive and at most "
                f"max_pixels ({max_pixels})"
            )
        processor = {"min_pixels": min_pixels, "max_pixels": max_pixels}
        return ImageBudget(self.name, self.budget_knob, max_pixels, processor)

    def sent_size(self, width: int, height: int, budget: ImageBudget) -> tuple[int, int]:
        return qwen_sent_size(
            width,
            height,
            min_pixels=budget.processor["min_pixels"],
            max_pixels=budget.processor["max_pixels"],
            factor=self.factor,
        )


# Published processor defaults: Qwen/Qwen2-VL-7B-Instruct and Qwen/Qwen2.5-VL-7B-Instruct
# preprocessor_config.json (min_pixels 3136, max_pixels 12845056, patch 14, merge 2);
# Qwen/Qwen3-VL-8B-Instruct preprocessor_config.json (size shortest_edge 65536, longest_edge
# 16777216, patch 16, merge 2).
QWEN2_VL = QwenVLAdapter(
    "qwen2-vl",
    "Qwen2-VL (and OS-Atlas, UI-TARS v1)",
    ("Qwen2VLForConditionalGeneration",),
    factor=28,
    min_pixels=3136,
    max_pixels=12845056,
    default_template="os-atlas-box",
)
QWEN2_5_VL = QwenVLAdapter(
    "qwen2.5-vl",
    "Qwen2.5-VL (and UI-TARS-1.5, GTA1, UI-Venus)",
    ("Qwen2_5_VLForConditionalGeneration",),
    factor=28,
    min_pixels=3136,
    max_pixels=12845056,
    default_template="qwen2.5-vl-point",
)
QWEN3_VL = QwenVLAdapter(
    "qwen3-vl",
    "Qwen3-VL (and UI-Venus-1.5)",
    ("Qwen3VLForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration"),
    factor=32,
    min_pixels=65536,
    max_pixels=16777216,
    default_template="qwen3-vl-point",
)
