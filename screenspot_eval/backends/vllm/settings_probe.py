"""What the engine built a side's settings into, read from inside (``compare --b-set``).

A setting that reaches vLLM's configuration can still miss the model (an attention backend the
platform does not use), and one that reaches the model can still change nothing (an attention
mask the kernel drops). Each reading says where it was taken and whether the model was built as
asked:

- ``dtype``: the dtype the engine resolved and the dtypes of the loaded weights (workers);
- ``attention_backend``: the backend every decoder attention layer really runs (workers);
- a model-config override (dotted key): the value in the config the worker's model was built
  with; for ``use_bidirectional_attention`` also each decoder layer's attention over image
  tokens, from the layer types, vLLM's mm-prefix mode and whether the layer's kernel applies it;
- any other engine argument: the value in vLLM's resolved configuration (engine config).

The probe that shows two sides compute different things is ``VllmEngine.probe_logprobs``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from functools import partial
from typing import Any

from screenspot_eval.backends.overrides import read_value
from screenspot_eval.backends.sides import SettingReading, config_key, is_config_override
from screenspot_eval.backends.vllm.engine_args import checkpoint_budget

BIDIRECTIONAL = "use_bidirectional_attention"
#: vLLM's resolved configuration, searched in this order for a plain engine argument.
CONFIG_SECTIONS = (
    "model_config",
    "cache_config",
    "scheduler_config",
    "parallel_config",
    "compilation_config",
    "attention_config",
    "load_config",
)


def _plain(value: Any) -> Any:
    """A JSON-safe form of a config value (enums by name, objects as text)."""
    if isinstance(value, enum.Enum):
        return value.name
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value


def worker_settings(model: Any, keys: list[str]) -> dict[str, Any]:
    """In every worker (``LLM.apply_model``): the config values the model was built with for
    ``keys``, and each decoder attention layer's index, backend and whether that backend
    applies vLLM's mm-prefix (bidirectional image) mask."""
    config = getattr(model, "config", None)
    values: dict[str, Any] = {}
    for key in keys:
        try:
            values[key] = _plain(read_value(config, key))
        except (AttributeError, KeyError, TypeError):
            values[key] = "<absent>"
    layers = []
    for name, module in model.named_modules():
        backend = getattr(module, "attn_backend", None)
        if backend is None or ".layers." not in name or "Encoder" in type(module).__name__:
            continue
        try:
            index = int(name.split(".layers.")[1].split(".")[0])
        except (ValueError, IndexError):
            continue
        supports = getattr(backend, "supports_mm_prefix", None)
        layers.append(
            {
                "index": index,
                "backend": str(backend.get_name())
                if hasattr(backend, "get_name")
                else str(backend),
                "mm_prefix": bool(supports()) if callable(supports) else False,
            }
        )
    full = sorted(getattr(model, "_full_attn_layer_idxs", ()) or ())
    return {"values": values, "layers": sorted(layers, key=lambda x: x["index"]), "full": full}


@dataclasses.dataclass(frozen=True)
class ImageRanges:
    """What decides whether an image longer than the sliding window keeps its bidirectional
    range: the release, its model runner, the window and the longest image the budget allows."""

    vllm_version: str | None
    v2_runner: bool
    sliding_window: int | None
    budget: int | None  # soft tokens per image at most (None: unknown)

    def long_ranges(self) -> str | None:
        """``kept`` (clamped to the window), ``dropped`` (the image falls back to causal) or
        None (not read for this release). Read in the released wheels' sources: vLLM 0.32's V2
        runner skips every range longer than the window (``v1/worker/gpu/attn_utils.py``), its
        V1 runner clamps (``mm_prefix_clamp_sliding_window``, which Gemma 4 sets); 0.34
        removed V1 and its V2 runner clamps; 0.33 and releases before 0.32 were not read."""
        release = _release(self.vllm_version)
        if release is None or release < (0, 32) or release[:2] == (0, 33):
            return None
        if release[:2] == (0, 32):
            return "dropped" if self.v2_runner else "kept"
        return "kept"

    def qualify(self) -> str:
        """What the layer count needs added for images longer than the window ('' if none)."""
        if self.sliding_window is None or (
            self.budget is not None and self.budget <= self.sliding_window
        ):
            return ""
        runner = "V2" if self.v2_runner else "V1"
        where = f"vLLM {self.vllm_version or 'unknown'}, {runner} model runner"
        longer = f"images over {self.sliding_window} soft tokens (the sliding window)"
        if self.budget is not None:
            longer += f", possible at the {self.budget} budget,"
        kept = self.long_ranges()
        if kept == "kept":
            return f"; {longer} keep their ranges, clamped to the window ({where})"
        if kept == "dropped":
            return f"; {longer} attend causally: this release drops their ranges ({where})"
        return f"; for {longer} this is not proven on this release ({where})"


def _release(version: str | None) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in (version or "").split("+")[0].split(".")[:3])
    except ValueError:
        return None


def image_attention(worker: Mapping[str, Any], mm_prefix_lm: bool, ranges: ImageRanges) -> str:
    """How the decoder layers attend over image tokens: bidirectionally where vLLM builds
    mm-prefix ranges for the model, the layer is not a full-attention layer it clears them for,
    and the layer's kernel applies them; causally otherwise, naming the layers whose ranges
    were built but ignored by their kernel. Where some layers attend bidirectionally, what the
    release's model runner does with images longer than the sliding window is added."""
    full = set(worker.get("full", ()))
    layers = list(worker.get("layers", ()))
    asked = [layer for layer in layers if mm_prefix_lm and layer["index"] not in full]
    dropped = [layer for layer in asked if not layer["mm_prefix"]]
    bidirectional = len(asked) - len(dropped)
    summary = f"image tokens attend bidirectionally on {bidirectional} of {len(layers)} layers"
    if not mm_prefix_lm:
        summary += " (vLLM builds no image ranges for this model)"
    if bidirectional:
        summary += ranges.qualify()
    if dropped:
        backends = ", ".join(sorted({layer["backend"] for layer in dropped}))
        summary += (
            f"; vLLM built image ranges for {len(dropped)} more, which their kernel "
            f"({backends}) ignores (no mm-prefix support)"
        )
    return summary


def image_ranges(engine: Any, vllm_config: Any) -> ImageRanges:
    """The facts :class:`ImageRanges` needs, read from a started engine."""
    provenance = engine.provenance
    text = getattr(vllm_config.model_config, "hf_text_config", None)
    window = getattr(text, "sliding_window", None)
    settings = engine.settings
    budget = settings.max_soft_tokens or settings.mm_processor_kwargs.get("max_soft_tokens")
    return ImageRanges(
        vllm_version=provenance.vllm_version if provenance else None,
        v2_runner=bool(getattr(vllm_config, "use_v2_model_runner", False)),
        sliding_window=window if isinstance(window, int) else None,
        budget=budget if isinstance(budget, int) else checkpoint_budget(settings.model),
    )


def read_settings(engine: Any, requested: Mapping[str, Any]) -> list[SettingReading]:
    """One reading per requested setting, from inside ``engine`` (a started ``VllmEngine``)."""
    vllm_config = engine.llm.llm_engine.vllm_config
    dotted = [config_key(k) for k in requested if is_config_override(k)]
    workers = engine.llm.apply_model(partial(worker_settings, keys=dotted))
    first = workers[0]
    if any(w != first for w in workers[1:]):
        raise RuntimeError(f"workers disagree about the settings they run: {workers}")
    mm_prefix_lm = bool(getattr(vllm_config.model_config, "is_mm_prefix_lm", False))
    ranges = image_ranges(engine, vllm_config)
    readings = []
    for key, value in requested.items():
        if is_config_override(key):
            readings.append(_config_reading(key, value, first, mm_prefix_lm, ranges))
        else:
            readings.append(_engine_reading(key, value, engine, vllm_config, first))
    return readings


def _config_reading(
    key: str, value: Any, worker: Mapping[str, Any], mm_prefix_lm: bool, ranges: ImageRanges
) -> SettingReading:
    resolved = worker["values"].get(config_key(key))
    detail = None
    if config_key(key).endswith(BIDIRECTIONAL):
        detail = image_attention(worker, mm_prefix_lm, ranges)
    return SettingReading(
        key=key,
        requested=value,
        resolved=resolved,
        where="the config the worker's model was built with",
        reached=resolved == value,
        detail=detail,
    )


def _engine_reading(
    key: str, value: Any, engine: Any, vllm_config: Any, worker: Mapping[str, Any]
) -> SettingReading:
    provenance = engine.provenance
    if key == "dtype":
        weights = list(provenance.parameter_dtypes) if provenance else []
        resolved = provenance.dtype if provenance else None
        return SettingReading(
            key=key,
            requested=value,
            resolved=resolved,
            where="the engine's resolved dtype and the loaded weights' dtypes (workers)",
            reached=value == "auto" or (resolved == _dtype(value) and weights == [resolved]),
            detail=f"weights: {', '.join(weights) or 'unknown'}",
        )
    if key == "attention_backend":
        used = sorted({layer["backend"] for layer in worker.get("layers", ())})
        return SettingReading(
            key=key,
            requested=value,
            resolved=", ".join(used),
            where="the backend of every decoder attention layer (workers)",
            reached=used == [str(value).upper()],
        )
    if key == "batch_invariant":
        resolved = provenance.batch_invariant if provenance else None
        return _reading(key, value, resolved, "VLLM_BATCH_INVARIANT as the workers see it")
    if key in MULTIMODAL_FIELDS or key == "max_soft_tokens":
        mm = getattr(vllm_config.model_config, "multimodal_config", None)
        kwargs = dict(getattr(mm, "mm_processor_kwargs", None) or {})
        if key == "max_soft_tokens":
            return _reading(key, value, kwargs.get(key), "vLLM's multimodal processor settings")
        return _reading(key, value, getattr(mm, key, None), "vLLM's resolved multimodal_config")
    for section in CONFIG_SECTIONS:
        holder = getattr(vllm_config, section, None)
        field = RENAMED.get(key, key)
        if holder is not None and field in _fields(holder):
            return _reading(key, value, getattr(holder, field), f"vLLM's resolved {section}")
    holder = getattr(vllm_config, key, None)
    if isinstance(value, Mapping) and holder is not None:  # a config object (compilation_config)
        resolved = {k: getattr(holder, k, "<absent>") for k in value}
        return _reading(key, value, resolved, f"vLLM's resolved {key}")
    return SettingReading(
        key=key,
        requested=value,
        resolved=None,
        where="nowhere: vLLM's resolved configuration has no such field",
        reached=None,
    )


#: Engine arguments vLLM keeps in its multimodal config (``ModelConfig`` only passes them on).
MULTIMODAL_FIELDS = frozenset({"mm_processor_kwargs", "limit_mm_per_prompt"})
#: Engine arguments stored under another name in vLLM's resolved configuration.
RENAMED = {"kv_cache_dtype": "cache_dtype"}
#: Spellings vLLM accepts for one dtype.
DTYPE_ALIASES = {"half": "float16", "float": "float32", "bf16": "bfloat16"}


def _fields(holder: Any) -> set[str]:
    """A config's real fields (a dataclass's init-only arguments, read back as None, are not)."""
    if dataclasses.is_dataclass(holder):
        return {f.name for f in dataclasses.fields(holder)}
    return set(vars(holder)) if hasattr(holder, "__dict__") else set()


def _reading(key: str, value: Any, raw: Any, where: str) -> SettingReading:
    """A reading of a value in vLLM's configuration (shown JSON-safe, matched as it is)."""
    shown = {k: _plain(v) for k, v in raw.items()} if isinstance(raw, Mapping) else _plain(raw)
    return SettingReading(
        key=key, requested=value, resolved=shown, where=where, reached=_matches(value, raw)
    )


def _dtype(name: Any) -> Any:
    return DTYPE_ALIASES.get(name, name) if isinstance(name, str) else name


def _matches(requested: Any, resolved: Any) -> bool:
    """Equal, or a dict whose given entries all hold (vLLM adds its own defaults); an enum
    matches its value or its name."""
    if isinstance(resolved, enum.Enum):
        return requested in (resolved.value, resolved.name) or (
            isinstance(requested, str) and requested.upper() == resolved.name
        )
    if isinstance(requested, Mapping) and isinstance(resolved, Mapping):
        return all(_matches(v, resolved.get(k)) for k, v in requested.items())
    if isinstance(resolved, str) and isinstance(requested, str):
        return requested.upper() == resolved.upper()
    return requested == resolved
