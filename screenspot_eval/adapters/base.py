"""The adapter contract: one small class per model family, and the image budget it resolves."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from screenspot_eval.errors import UserError


class AdapterError(UserError, ValueError):
    """An adapter that cannot be found, or a setting the family does not have."""


@dataclass(frozen=True)
class ImageBudget:
    """The image budget a run resolved: the knob's value and the processor settings beside it.

    ``value`` is what sweeps and records call the budget (Gemma 4: soft tokens per image;
    Qwen-VL: ``max_pixels``); ``processor`` is every processor setting that decides the size
    the model sees (what a request passes as ``mm_processor_kwargs``).
    """

    adapter: str
    knob: str
    value: int
    processor: Mapping[str, int] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "adapter": self.adapter,
            "knob": self.knob,
            "value": self.value,
            "processor": dict(self.processor),
        }


class ModelAdapter(ABC):
    """What a model family declares. Subclasses are stateless; settings arrive as arguments."""

    name: str
    description: str
    architectures: tuple[str, ...]  # HF ``architectures`` entries (and vLLM class names)
    variants: tuple[str, ...] = ("native",)  # embedder variants the family can run
    default_template: str
    budget_knob: str

    @abstractmethod
    def image_budget(
        self, explicit: int | None, mm_processor_kwargs: Mapping[str, Any], checkpoint: Path | None
    ) -> ImageBudget:
        """The budget a run uses: the setting, else the checkpoint's processor config, else the
        family's default; refuses a value the family's processor cannot take."""

    @abstractmethod
    def sent_size(self, width: int, height: int, budget: ImageBudget) -> tuple[int, int]:
        """``(width, height)`` of the image the model sees for a ``width x height`` input."""

    def check_variant(self, variant: str) -> None:
        """Refuse, in one line, a variant the family does not have."""
        if variant not in self.variants:
            raise AdapterError(
                f"--norm {variant} needs a model with a switchable multimodal embedder; "
                f"{self.name} ({self.description}) has {', '.join(self.variants)} only: "
                "run it with --norm native"
            )


def processor_config(checkpoint: Path | None) -> dict[str, Any]:
    """A local checkpoint's image-processor settings (``processor_config.json`` or
    ``preprocessor_config.json``), empty when there is none."""
    if checkpoint is None:
        return {}
    for name in ("processor_config.json", "preprocessor_config.json"):
        path = checkpoint / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
            if isinstance(data, dict):
                inner = data.get("image_processor")
                return {**data, **inner} if isinstance(inner, dict) else data
    return {}
