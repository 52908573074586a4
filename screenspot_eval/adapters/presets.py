"""Presets: a published grounding model's prompt, convention and image budget, as data.

Each ``presets/*.toml`` names its adapter, the prompt template (a built-in template name), the
processor settings of the budget, and the source it was taken from. A preset the engine cannot
serve as published (``supported = false``) is refused with its reason.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from importlib.resources.abc import Traversable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from screenspot_eval.adapters.base import AdapterError

PRESETS_DIR: Traversable = resources.files("screenspot_eval.adapters").joinpath("presets")


class Preset(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    model: str  # the published checkpoint (hub id)
    adapter: str
    template: str
    processor: dict[str, int] = Field(default_factory=dict)  # mm_processor_kwargs of the budget
    source: str
    supported: bool = True
    reason: str | None = None  # why not, when unsupported


def preset_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml") for p in PRESETS_DIR.iterdir() if p.name.endswith(".toml")
    )


def read_preset(name: str) -> Preset:
    """The preset called ``name`` as written, supported or not; an unknown name is refused."""
    path = PRESETS_DIR / f"{name}.toml"
    if not path.is_file():
        raise AdapterError(f"unknown preset {name!r}; known: {', '.join(preset_names())}")
    try:
        return Preset(**tomllib.loads(path.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, ValidationError, TypeError) as exc:
        raise AdapterError(f"invalid preset {path}: {exc}") from exc


def load_preset(name: str) -> Preset:
    """The preset called ``name`` to run; unknown or unsupported ones are refused in one line."""
    preset = read_preset(name)
    if not preset.supported:
        raise AdapterError(f"preset {name!r} cannot run here: {preset.reason}")
    return preset
