"""Which adapter a model gets: named, from a preset, or from its checkpoint's architecture.

The one place that knows every family; the generic layers ask here by name or architecture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from screenspot_eval.adapters.base import AdapterError, ImageBudget, ModelAdapter
from screenspot_eval.adapters.gemma4 import Gemma4Adapter
from screenspot_eval.adapters.qwen_vl import QWEN2_5_VL, QWEN2_VL, QWEN3_VL

__all__ = ["ADAPTERS", "AdapterError", "ImageBudget", "ModelAdapter"]

ADAPTERS: dict[str, ModelAdapter] = {
    a.name: a for a in (Gemma4Adapter(), QWEN2_VL, QWEN2_5_VL, QWEN3_VL)
}
ADAPTER_NAMES: tuple[str, ...] = tuple(ADAPTERS)


def get_adapter(name: str) -> ModelAdapter:
    """The adapter called ``name``; an unknown name is refused with the known ones."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise AdapterError(
            f"unknown model adapter {name!r}; known: {', '.join(ADAPTER_NAMES)}"
        ) from None


def adapter_for_architecture(architecture: str) -> ModelAdapter | None:
    """The adapter covering an HF architecture or vLLM model class name, else None."""
    name = architecture.rsplit(".", 1)[-1]
    for adapter in ADAPTERS.values():
        if name in adapter.architectures:
            return adapter
    return None


def checkpoint_dir(model: str) -> Path | None:
    """A local checkpoint folder, or None for a hub id (or anything else)."""
    path = Path(model).expanduser()
    return path if (path / "config.json").is_file() else None


def read_architectures(model: str, revision: str | None = None) -> tuple[str, ...]:
    """``architectures`` of a checkpoint's ``config.json``: a local folder, else the hub (the
    cache first; nothing when it cannot be read, e.g. offline without a cached copy)."""
    local = checkpoint_dir(model)
    path: Path | None = local / "config.json" if local else None
    if path is None:
        path = _hub_config(model, revision)
    if path is None:
        return ()
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ()
    architectures = data.get("architectures") if isinstance(data, dict) else None
    return tuple(str(a) for a in architectures) if isinstance(architectures, list) else ()


def _hub_config(model: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(model, "config.json", revision=revision))
    except Exception:  # not a repo id, offline without a cached copy, gated, ...
        return None


def detect_adapter(architectures: tuple[str, ...], where: str) -> ModelAdapter:
    """The adapter of the first architecture one covers; refused in one line otherwise."""
    for architecture in architectures:
        adapter = adapter_for_architecture(architecture)
        if adapter is not None:
            return adapter
    seen = ", ".join(architectures) if architectures else "no architecture could be read"
    raise AdapterError(
        f"cannot tell which model family {where} is ({seen}); name it with --adapter "
        f"({', '.join(ADAPTER_NAMES)}) or --preset (screenspot-eval presets)"
    )
