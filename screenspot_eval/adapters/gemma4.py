"""Gemma 4 (E2B/E4B, 12B unified, 26B-A4B, 31B): soft-token budget, embedder variants."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from screenspot_eval.adapters.base import AdapterError, ImageBudget, ModelAdapter, processor_config

#: The budgets Gemma 4's processor accepts (transformers ``Gemma4ImageProcessor``).
SOFT_TOKEN_BUDGETS: tuple[int, ...] = (70, 140, 280, 560, 1120)
DEFAULT_BUDGET = 280  # the processor's default ``max_soft_tokens``
PATCH_SIZE = 16
POOLING_KERNEL_SIZE = 3


def gemma4_sent_size(
    width: int,
    height: int,
    max_soft_tokens: int,
    patch_size: int = PATCH_SIZE,
    pooling_kernel_size: int = POOLING_KERNEL_SIZE,
) -> tuple[int, int]:
    """Return ``(width, height)`` of the image Gemma 4 sees for a ``width x height`` input.

    Reproduces ``get_aspect_ratio_preserving_size`` of transformers' ``Gemma4ImageProcessor``
    (5.x): the largest aspect-preserving size whose sides are multiples of
    ``pooling_kernel_size * patch_size`` and whose patch count fits ``max_soft_tokens``
    pooled tokens, with the same float arithmetic so sizes agree exactly. Raises
    ``ValueError`` where the processor raises (unsupported budget, degenerate size).
    """
    if max_soft_tokens not in SOFT_TOKEN_BUDGETS:
        raise ValueError(
            f"max_soft_tokens must be one of {SOFT_TOKEN_BUDGETS}, got {max_soft_tokens}"
        )
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    max_patches = max_soft_tokens * pooling_kernel_size**2
    target_px = max_patches * (patch_size**2)
    factor = math.sqrt(target_px / (height * width))
    side_mult = pooling_kernel_size * patch_size
    target_height = math.floor(factor * height / side_mult) * side_mult
    target_width = math.floor(factor * width / side_mult) * side_mult
    if target_height == 0 and target_width == 0:
        raise ValueError(f"a {width}x{height} image would be resized to 0x0")
    max_side_length = (max_patches // pooling_kernel_size**2) * side_mult
    if target_height == 0:
        target_height = side_mult
        target_width = min(math.floor(width / height) * side_mult, max_side_length)
    elif target_width == 0:
        target_width = side_mult
        target_height = min(math.floor(height / width) * side_mult, max_side_length)
    if target_height * target_width > target_px:
        raise ValueError(
            f"resizing {width}x{height} to {target_width}x{target_height} exceeds "
            f"{max_patches} patches of {patch_size}px"
        )
    return target_width, target_height


class Gemma4Adapter(ModelAdapter):
    name = "gemma4"
    description = "Gemma 4, every checkpoint family"
    architectures = (  # HF's names, then the plugin's vLLM classes that replace them
        "Gemma4ForConditionalGeneration",
        "Gemma4UnifiedForConditionalGeneration",
        "Gemma4WithSelectableEmbedder",
        "Gemma4UnifiedWithSelectableEmbedder",
    )
    variants = ("pre", "post", "native")
    default_template = "gemma4-box2d"
    budget_knob = "max_soft_tokens"

    def image_budget(
        self, explicit: int | None, mm_processor_kwargs: Mapping[str, Any], checkpoint: Path | None
    ) -> ImageBudget:
        value = explicit
        if value is None and isinstance(mm_processor_kwargs.get(self.budget_knob), int):
            value = int(mm_processor_kwargs[self.budget_knob])
        if value is None:
            saved = processor_config(checkpoint).get(self.budget_knob)
            value = saved if isinstance(saved, int) else DEFAULT_BUDGET
        if value not in SOFT_TOKEN_BUDGETS:
            raise AdapterError(
                f"max_soft_tokens must be one of {SOFT_TOKEN_BUDGETS} (Gemma 4's processor), "
                f"got {value}"
            )
        return ImageBudget(self.name, self.budget_knob, value, {self.budget_knob: value})

    def sent_size(self, width: int, height: int, budget: ImageBudget) -> tuple[int, int]:
        return gemma4_sent_size(width, height, budget.value)
