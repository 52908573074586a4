"""Which model family a run is: its adapter, the preset's layer of settings, the budget.

Resolved before anything starts (a refusal here costs no engine start) and written into the
configuration, so the adapter is recorded with every run and part of what resume compares.
"""

from __future__ import annotations

from typing import Any

from screenspot_eval.adapters.base import AdapterError, ImageBudget, ModelAdapter
from screenspot_eval.adapters.presets import load_preset
from screenspot_eval.adapters.registry import (
    adapter_for_architecture,
    checkpoint_dir,
    detect_adapter,
    get_adapter,
    read_architectures,
)
from screenspot_eval.backends.engines import EngineSettings
from screenspot_eval.backends.overrides import merge_nested

#: Every run recorded before adapters existed ran Gemma 4 (the only family the tool served).
LEGACY_ADAPTER = "gemma4"
#: An in-process model whose config cannot be read before the start (a hub id offline); the
#: engine's own model class is checked against it before the first sample.
DEFAULT_ADAPTER = "gemma4"


def preset_layer(name: str) -> dict[str, Any]:
    """A preset as a settings tree under the config file and the command line."""
    preset = load_preset(name)
    engine: dict[str, Any] = {"adapter": preset.adapter, "model": preset.model}
    if preset.processor:
        engine["mm_processor_kwargs"] = dict(preset.processor)
    return {"engine": engine, "prompt": {"template": preset.template}}


def with_preset(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` over its preset's settings (the settings given win over the preset's; applying
    it twice changes nothing)."""
    name = tree.get("engine", {}).get("preset")
    return merge_nested(preset_layer(name), tree) if name else tree


def served_architectures(endpoints: tuple[str, ...], api_key: str | None) -> tuple[str, ...]:
    """The architectures of what the servers serve: ``/v1/models``' ``root`` (the checkpoint a
    vLLM server loaded) read as a local folder or hub id."""
    from screenspot_eval.backends.http.server import served_roots

    found: list[str] = []
    for url in endpoints:
        for root in served_roots(url, api_key):
            found.extend(a for a in read_architectures(root) if a not in found)
    return tuple(found)


def family_of(engine: dict[str, Any], endpoints: tuple[str, ...], api_key: str | None) -> str:
    """The adapter name: the one given, else the one the checkpoint's architecture names."""
    if engine.get("adapter"):
        return get_adapter(str(engine["adapter"])).name
    model = str(engine["model"])
    if endpoints:
        where = f"the model the servers serve ({model})"
        architectures = served_architectures(endpoints, api_key) or read_architectures(model)
        return detect_adapter(architectures, where).name
    architectures = read_architectures(model, engine.get("revision"))
    if not architectures:  # the engine names its model class before any sample: checked then
        return DEFAULT_ADAPTER
    return detect_adapter(architectures, f"the checkpoint {model}").name


def check_engine_family(adapter: str, model_class: str) -> None:
    """Refuse, before any sample, an engine whose model class belongs to another family than
    the adapter the run reads answers with (a class no adapter covers, or a server that does
    not say, is left to the adapter named or detected before the start)."""
    engine_family = adapter_for_architecture(model_class)
    if engine_family is not None and engine_family.name != adapter:
        raise AdapterError(
            f"the engine runs {model_class.rsplit('.', 1)[-1]} ({engine_family.name}), but the "
            f"answers would be read as {adapter}'s: pass --adapter {engine_family.name} (or "
            "leave --adapter out to read it from the checkpoint)"
        )


def resolve_family(tree: dict[str, Any], servers: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings tree with its preset applied, its adapter named, the family's default
    prompt template where none was given, and a variant the family lacks refused
    (``servers``: the endpoints of a command that names them otherwise than the runtime's)."""
    tree = with_preset(tree)
    engine = tree.setdefault("engine", {})
    runtime = tree.get("runtime", {})
    endpoints = tuple(servers or runtime.get("endpoints") or ())
    adapter = get_adapter(family_of(engine, endpoints, runtime.get("api_key")))
    engine["adapter"] = adapter.name
    if engine.get("norm") in ("pre", "post"):  # any other value: the settings' own error
        adapter.check_variant(str(engine["norm"]))
    kwargs = engine.get("mm_processor_kwargs")
    adapter.image_budget(  # a budget the family does not have is refused here, in one line
        engine.get("max_soft_tokens"),
        kwargs if isinstance(kwargs, dict) else {},
        checkpoint_dir(str(engine["model"])),
    )
    tree.setdefault("prompt", {}).setdefault("template", adapter.default_template)
    return tree


def run_adapter(engine: EngineSettings) -> ModelAdapter:
    """The adapter of resolved settings (read from the checkpoint when none was written in,
    as for settings built in code rather than by ``resolve_config``)."""
    if engine.adapter:
        return get_adapter(engine.adapter)
    return get_adapter(family_of(engine.model_dump(), (), None))


def image_budget(engine: EngineSettings) -> ImageBudget:
    """The run's image budget as its family reads the settings and the checkpoint."""
    adapter = run_adapter(engine)
    return adapter.image_budget(
        engine.max_soft_tokens, engine.mm_processor_kwargs, checkpoint_dir(engine.model)
    )


__all__ = ["AdapterError", "image_budget", "resolve_family", "run_adapter"]
