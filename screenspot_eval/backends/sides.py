"""A side of an A/B: the embedder variant plus named engine-side settings, and the factor.

``compare --a pre --b pre --b-set dtype=bfloat16`` A/Bs any engine-side setting, not only the
embedder. A setting is ``KEY=VALUE`` in the one grammar of :mod:`screenspot_eval.backends.overrides`
(dashes and underscores the same; a dotted key overrides a field of the checkpoint's config,
a plain key is a vLLM engine argument: one of our engine settings or any other, passed to vLLM
as given).

The **factor** is what differs between the two sides' resolved settings; ``compare`` allows
exactly those differences, names them in its headline, and refuses any other. Pure: no vLLM.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from screenspot_eval.backends.overrides import (
    collect_settings,
    config_key,
    is_config_override,
    parse_settings,
    read_toml,
    set_dotted,
)
from screenspot_eval.backends.variant import Variant
from screenspot_eval.backends.vllm.engine_args import EngineSettings, llm_kwargs
from screenspot_eval.errors import UserError
from screenspot_eval.protocol.zoom import parse_protocol

#: Two probes whose top-k first-token logprobs differ by less compute the same thing (the
#: embedder switch's self-check and a factor's no-effect refusal use the one threshold).
MIN_PROBE_DIFFERENCE = 1e-4
#: What a side asks for a setting it does not set (the checkpoint's or vLLM's own value).
CHECKPOINT_VALUE = "<checkpoint>"
VLLM_DEFAULT = "<vLLM default>"
DEFAULT_MARKERS: frozenset[str] = frozenset({CHECKPOINT_VALUE, VLLM_DEFAULT})
#: The factor that names the embedder variant (``--a`` and ``--b``).
EMBEDDER = "embedder"
#: A factor entry naming a provenance field the proven engines resolved differently.
PROVENANCE_KEY = "provenance."
#: The factor that names the vLLM installation (servers from two installations).
VLLM_RELEASE = "vllm"
#: Engine settings a side may not set: the model is the thing evaluated, the variant has its
#: own option, and the rest decide placement, not the computation.
NOT_SIDE_SETTINGS: frozenset[str] = frozenset(
    {
        "model",
        "norm",
        "extra",
        "engine_core",
        "allow_untested_vllm",
        "max_num_seqs",
        "gpu_memory_utilization",
        "data_parallel_size",
        "distributed_executor_backend",
    }
)
#: The checkpoint's sub-configs: a nested table under one of them in a sides file is a config
#: override; any other nested table is an engine argument that takes a dict.
CONFIG_TABLES: frozenset[str] = frozenset(
    {"hf_overrides", "text_config", "vision_config", "audio_config"}
)
#: Provenance fields a declared factor may change besides its own setting (what the engine
#: resolved from it); every other outcome-changing difference is refused.
PROVENANCE_OF: dict[str, tuple[str, ...]] = {
    "dtype": ("dtype", "parameter_dtypes"),
    "kv_cache_dtype": ("kv_cache_dtype",),
    "quantization": ("quantization", "parameter_dtypes"),
    "attention_backend": ("attention_backends",),
    "enforce_eager": ("enforce_eager", "compilation_mode", "cudagraph_mode"),
    "compilation_config": ("compilation_mode", "cudagraph_mode"),
    "enable_chunked_prefill": ("chunked_prefill",),
    "batch_invariant": ("batch_invariant", "batch_invariant_kernels"),
    VLLM_RELEASE: (
        "vllm_version",
        "vllm_commit",
        "vllm_build",
        "torch_version",
        "transformers_version",
    ),
}
#: Side settings that the harness applies, not the engine (key -> the run setting they set):
#: the same engine serves both sides, and the recorded steps show what each side did.
HARNESS_SETTINGS: dict[str, str] = {"protocol": "prompt.protocol"}
#: Manifest entries (beside the settings) a declared factor may change.
RECORDED_OF: dict[str, tuple[str, ...]] = {
    "max_soft_tokens": ("image_budget",),
    "mm_processor_kwargs": ("image_budget",),
}


class SideSettings(BaseModel):
    """One side as given: its variant and its settings (dotted keys as given)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: Variant
    settings: dict[str, Any] = Field(default_factory=dict)

    def describe(self) -> str:
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in self.settings.items())
        return f"{self.variant}" + (f" with {shown}" if shown else "")


def side_settings(settings: Mapping[str, Any], option: str) -> dict[str, Any]:
    """Parsed settings (canonical keys), refused where a key is no side setting."""
    for key in settings:
        if not is_config_override(key) and key in NOT_SIDE_SETTINGS:
            raise UserError(f"{option} {key}: not a side setting ({_not_side_reason(key)})")
    return dict(settings)


def _not_side_reason(key: str) -> str:
    if key == "norm":
        return "the embedder variant is --a / --b"
    if key == "model":
        return "both sides evaluate the same checkpoint"
    return "it places the engine, it does not change what it computes"


def engine_setting_paths(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as the dotted paths of the run configuration they set: a config override
    under ``engine.extra.hf_overrides``, one of our engine settings as itself, any other
    vLLM engine argument under ``engine.extra``."""
    paths: dict[str, Any] = {}
    for key, value in settings.items():
        if is_config_override(key):
            paths[f"engine.extra.hf_overrides.{config_key(key)}"] = value
        elif key in EngineSettings.model_fields and key != "extra":
            paths[f"engine.{key}"] = value
        else:
            paths[f"engine.extra.{key}"] = value
    return paths


def apply_settings(engine: EngineSettings, settings: Mapping[str, Any]) -> EngineSettings:
    """``engine`` with a side's settings laid over it (validated as the engine settings are)."""
    data = {"engine": engine.model_dump()}
    engine_part = {k: v for k, v in settings.items() if k not in HARNESS_SETTINGS}
    for path, value in engine_setting_paths(engine_part).items():
        set_dotted(data, path, value)
    try:
        engine = EngineSettings.model_validate(data["engine"])
        llm_kwargs(engine)  # buildable engine arguments, as for the shared settings
    except ValueError as exc:
        raise UserError(f"a side's settings do not make valid engine settings:\n{exc}") from exc
    return engine


def engine_settings_of(side: SideSettings) -> dict[str, Any]:
    """The side's settings the engine applies (its harness settings left out)."""
    return {k: v for k, v in side.settings.items() if k not in HARNESS_SETTINGS}


def harness_value(key: str, value: Any) -> Any:
    """A harness setting in its normal spelling (``zoom`` is ``zoom:steps=2,...``)."""
    if key == "protocol" and value is not None:
        return parse_protocol(str(value)).spec
    return value


def harness_settings_of(side: SideSettings) -> dict[str, Any]:
    """The side's settings the harness applies (:data:`HARNESS_SETTINGS`)."""
    return {k: v for k, v in side.settings.items() if k in HARNESS_SETTINGS}


def factor_of(
    a: SideSettings,
    b: SideSettings,
    base: EngineSettings,
    harness: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings that differ between the two sides (key -> (A's value, B's value)), as each
    side resolves against ``base`` (``harness``: the shared values of the harness settings,
    each side's given in its normal spelling); ``embedder`` when the variants differ."""
    factor: dict[str, Any] = {}
    if a.variant != b.variant:
        factor[EMBEDDER] = (a.variant, b.variant)
    for key in sorted(set(a.settings) | set(b.settings)):
        if key in HARNESS_SETTINGS:
            shared = (harness or {}).get(key)
            left = harness_value(key, a.settings.get(key, shared))
            right = harness_value(key, b.settings.get(key, shared))
        else:
            left = setting_value(base, a.settings, key)
            right = setting_value(base, b.settings, key)
        if left != right:
            factor[key] = (left, right)
    return factor


def setting_value(base: EngineSettings, settings: Mapping[str, Any], key: str) -> Any:
    """What ``key`` is on a side: its own setting, else the base configuration's value."""
    if key in settings:
        return settings[key]
    if is_config_override(key):
        node: Any = base.extra.get("hf_overrides", {})
        for part in config_key(key).split("."):
            if not isinstance(node, Mapping) or part not in node:
                return CHECKPOINT_VALUE
            node = node[part]
        return node
    if key in EngineSettings.model_fields:
        return getattr(base, key)
    return base.extra.get(key, VLLM_DEFAULT)


def allowed_paths(factor: Iterable[str]) -> tuple[str, ...]:
    """Difference paths (as ``compare`` lists them) that a declared factor accounts for."""
    paths: list[str] = []
    for key in factor:
        if key == EMBEDDER:
            continue
        if key.startswith(PROVENANCE_KEY):  # a field the engines resolved from the factor
            paths.append(key)
        elif key in HARNESS_SETTINGS:
            paths.append(f"settings.{HARNESS_SETTINGS[key]}")
        elif is_config_override(key):
            paths.append(f"settings.engine.extra.hf_overrides.{config_key(key)}")
        elif key in EngineSettings.model_fields:
            paths.append(f"settings.engine.{key}")
        else:
            paths.append(f"settings.engine.extra.{key}")
        paths.extend(f"provenance.{name}" for name in PROVENANCE_OF.get(key, ()))
        paths.extend(RECORDED_OF.get(key, ()))
    return tuple(paths)


def explained(difference: str, paths: Iterable[str]) -> bool:
    """Is a listed difference (``path: a -> b``) accounted for by one of ``paths``?"""
    where = difference.split(": ", 1)[0]
    return any(where == p or where.startswith(p + ".") for p in paths)


def describe_factor(factor: Mapping[str, Any]) -> str:
    """``dtype "float32" -> "bfloat16"``; several joined by ``; ``."""
    return "; ".join(
        f"{key} {json.dumps(a, default=str)} -> {json.dumps(b, default=str)}"
        for key, (a, b) in factor.items()
    )


SideFile = tuple[str | None, dict[str, Any]]  # a side's variant (None: not given), settings


def read_sides_file(path: Path) -> dict[str, SideFile]:
    """A TOML file with tables ``[a]`` and ``[b]``, each with an optional ``variant``, a ``set``
    table of settings (keys as on the command line, values typed by TOML) and a ``null`` list
    of settings set to null, which TOML cannot write. A config override is a quoted dotted key
    (``"text_config.sliding_window" = 64``) or a table under one of :data:`CONFIG_TABLES`; any
    other table is an engine argument that takes a dict."""
    data = read_toml(path, "sides file")
    unknown = sorted(set(data) - {"a", "b"})
    if unknown:
        raise UserError(f"sides file {path}: only tables [a] and [b], not {unknown}")
    return {
        name: _read_side(table, f"sides file {path}, [{name}]", name)
        for name, table in data.items()
    }


def _read_side(table: Any, where: str, name: str) -> SideFile:
    if not isinstance(table, dict) or not isinstance(table.get("set", {}), dict):
        raise UserError(f"{where}: [{name}] and [{name}.set] must be tables")
    extra = sorted(set(table) - {"variant", "set", "null"})
    if extra:
        raise UserError(f"{where}: only variant, set and null, not {extra}")
    variant = table.get("variant")
    if variant is not None and not isinstance(variant, str):
        raise UserError(f"{where}: variant must be a string")
    nulls = table.get("null", [])
    if not isinstance(nulls, list) or not all(isinstance(k, str) for k in nulls):
        raise UserError(f"{where}: null must be a list of setting names")
    flat = _flatten(table.get("set", {}))
    for key, value in flat.items():
        if value == "null":
            raise UserError(
                f'{where}: {key} = "null" is the text null; TOML has no null value: '
                f'list the setting in null = ["{key}"]'
            )
    pairs = [*flat.items(), *((key, None) for key in nulls)]
    return variant, side_settings(collect_settings(pairs, f"[{name}.set]"), f"[{name}.set]")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A TOML ``set`` table as dotted keys: tables under a config table are walked into."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        top = dotted.split(".")[0]
        if isinstance(value, Mapping) and top in CONFIG_TABLES:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


class SettingReading(BaseModel):
    """One setting of a side as the engine built it, read from inside the engine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    requested: Any
    resolved: Any
    where: str  # where inside the engine it was read
    reached: bool | None  # None: the engine has no reading for it
    detail: str | None = None

    def describe(self) -> str:
        text = f"{self.key}={json.dumps(self.resolved, default=str)} ({self.where})"
        return f"{text}: {self.detail}" if self.detail else text


class SettingNotAppliedError(UserError, RuntimeError):
    """A side's setting did not reach the model the engine built (or cannot be shown to)."""


class NoEffectError(UserError, RuntimeError):
    """The declared factor reaches the model but changes nothing the engine computes."""


def require_applied(side: str, readings: Iterable[SettingReading]) -> None:
    """Refuse a side whose settings the engine did not build the model with."""
    for reading in readings:
        if reading.reached is None:
            raise SettingNotAppliedError(
                f"side {side}: {reading.key}={json.dumps(reading.requested)} cannot be shown to "
                f"reach the model ({reading.where}); the A/B was not run"
            )
        if not reading.reached:
            detail = f"; {reading.detail}" if reading.detail else ""
            raise SettingNotAppliedError(
                f"side {side}: {reading.key}={json.dumps(reading.requested)} did not reach the "
                f"model: {reading.where} says {json.dumps(reading.resolved, default=str)}"
                f"{detail}; the A/B was not run"
            )


def probe_difference(a: Mapping[int, float], b: Mapping[int, float]) -> float:
    """Largest difference between two probes' top-k first-token logprobs (inf: other tokens)."""
    if set(a) != set(b):
        return float("inf")
    return max((abs(a[k] - b[k]) for k in a), default=0.0)


def require_effect(
    factor: Mapping[str, Any],
    difference: float,
    details: Iterable[str] = (),
    *,
    threshold: float = MIN_PROBE_DIFFERENCE,
) -> str:
    """The probe line for a factor that changes the computation; refuse one that does not."""
    if difference >= threshold:
        shown = "different top tokens" if difference == float("inf") else f"{difference:.3g}"
        return f"the factor changes the probe's first-token logprobs (max diff {shown})"
    shown = "; ".join(details)
    raise NoEffectError(
        f"the factor ({describe_factor(factor)}) reaches the model but has no effect here: "
        f"both sides give the same probe logprobs (max diff {difference:.2e})"
        + (f"; {shown}" if shown else "")
        + "; refused rather than reported as a 0.0 pp effect"
    )


DEFAULT_SIDES: tuple[Variant, Variant] = ("post", "pre")
#: Sides with settings of their own default to one variant, so that the embedder is no second,
#: undeclared factor.
DEFAULT_WITH_SETTINGS: tuple[Variant, Variant] = ("pre", "pre")


def resolve_sides(
    a: str | None,
    b: str | None,
    a_set: Iterable[str] = (),
    b_set: Iterable[str] = (),
    file: Path | None = None,
) -> tuple[SideSettings, SideSettings]:
    """The two sides, one precedence: the command line > the ``--sides`` file > the
    defaults (post vs pre; pre on both sides when either side has settings). Settings merge
    key by key (a command-line setting replaces the file's)."""
    from_file = read_sides_file(file) if file is not None else {}
    given = [(a, a_set), (b, b_set)]
    merged = []
    for name, (variant, items) in zip("ab", given, strict=True):
        filed_variant, filed = from_file.get(name, (None, {}))
        option = f"--{name}-set"
        settings = {**filed, **side_settings(parse_settings(items, option), option)}
        merged.append((variant or filed_variant, settings))
    defaults = DEFAULT_WITH_SETTINGS if any(s for _, s in merged) else DEFAULT_SIDES
    sides = []
    for name, (variant, settings), default in zip("ab", merged, defaults, strict=True):
        chosen = variant or default
        try:
            sides.append(SideSettings(variant=chosen, settings=settings))
        except ValueError:
            raise UserError(f"--{name} must be one of pre, post, native, not {chosen!r}") from None
    return sides[0], sides[1]
