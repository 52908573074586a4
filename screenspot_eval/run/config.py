"""The full configuration of one run: a TOML file in ``configs/`` overlaid by the command line.

Every setting that can change an outcome is part of the configuration fingerprint that resume
checks; runtime knobs (decode threads, prefetch, progress output) are not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from screenspot_eval.backends.base import SamplingSettings
from screenspot_eval.backends.engines import (
    EngineSettings,
    client_settings,
    llm_kwargs,
    server_side_settings,
)
from screenspot_eval.backends.overrides import (
    collect_settings,
    merge_nested,
    read_toml,
    set_dotted,
)
from screenspot_eval.backends.sides import engine_setting_paths
from screenspot_eval.data.select import Selection
from screenspot_eval.errors import UserError
from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.protocol.prompts import DEFAULT_TEMPLATE_NAME, load_template
from screenspot_eval.protocol.zoom import ONE_SHOT, parse_protocol
from screenspot_eval.run.family import resolve_family, with_preset

#: Engine settings that decide scheduling or placement, not what a sample's answer is.
NON_OUTCOME_ENGINE_FIELDS: frozenset[str] = frozenset(
    {
        "gpu_memory_utilization",
        "max_num_seqs",
        "distributed_executor_backend",
        "data_parallel_size",
        "engine_core",
        "allow_untested_vllm",
    }
)


class ConfigError(UserError, ValueError):
    """A config file or option combination that cannot make a run."""


class DataSettings(BaseModel):
    """Where the samples come from and which of them run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = "likaixin/ScreenSpot-Pro"
    revision: str | None = None
    strict: bool = True
    check_images: bool = True
    selection: Selection = Field(default_factory=Selection)
    layout: str = "screenspot-pro"
    """The dataset layout (:mod:`screenspot_eval.data.layouts`): an outcome setting, so a
    resume in another layout is refused."""

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, value: str) -> str:
        """A declared layout's name; an unknown one is a one-line error listing them."""
        from screenspot_eval.data.layouts import get_layout

        return get_layout(value).name


class PromptSettings(BaseModel):
    """The prompt template, the convention its answers are read in, and the protocol: how
    many looks the model gets (:mod:`screenspot_eval.protocol.zoom`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    template: str = DEFAULT_TEMPLATE_NAME
    convention: CoordinateConvention | None = None  # None: the template's own
    protocol: str = ONE_SHOT
    """``one-shot``, ``reground``, ``iterative-focusing``, ``iterative-narrowing`` or
    ``zoom:steps=N,ratio=R,min=PX``; recorded in its normal spelling."""

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        return parse_protocol(value).spec


def default_image_workers() -> int:
    """Half the cores this process may use, at least 2 and at most 8: the pool decodes and
    prepares every screenshot (about 60 ms of CPU at 4K) beside vLLM's front-end thread."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(2, min(8, (cores or 2) // 2))


class RuntimeSettings(BaseModel):
    """How the harness runs; never changes an outcome, so not fingerprinted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_workers: int = Field(default_factory=lambda: default_image_workers(), ge=1)
    """Decode (and preparation) threads: half the usable cores, 2 to 8."""
    prefetch: int = Field(default=8, ge=1)
    window: int | None = Field(default=None, ge=1)  # requests in the engine at once
    order_seed: int | None = None  # shuffle the sample order with this seed (None: data order)
    reset_prefix_cache: bool = False  # empty a shared engine's prefix cache before the pass
    endpoints: tuple[str, ...] = ()
    api_key: str | None = Field(default=None, exclude=True)  # never written to disk
    concurrency: int = Field(default=8, ge=1)  # per endpoint
    request_timeout_s: float = 300.0
    max_retries: int = Field(default=4, ge=0)
    verbose: bool = False  # vLLM's logs on the terminal too (they always go to vllm.log)
    image_prep: Literal["auto", "off"] = "auto"
    """In-process: resize screenshots in the decode pool to the processor's size where its
    self-check proves identical ``pixel_values`` (auto), or send every image as decoded."""
    image_uuids: bool = True  # a stable uuid per image, so vLLM does not hash pixels
    image_transfer: Literal["auto", "bytes", "reencode"] = "auto"
    """Against servers: auto = a file:// URL where the server reads the dataset itself, else
    the file's own bytes (base64), else (not an RGB PNG) a decode and PNG re-encode; bytes =
    never file://; reencode = always decode and re-encode (the path before issue 16)."""


class RunConfig(BaseModel):
    """Everything a run needs; ``manifest.json`` stores :meth:`to_record`: all of it for an
    in-process engine, and against servers only the engine settings this side decides."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: EngineSettings
    data: DataSettings = Field(default_factory=DataSettings)
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    out: str | None = None  # the results folder; not part of the fingerprint

    @property
    def against_servers(self) -> bool:
        return bool(self.runtime.endpoints)

    def engine_record(self, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The engine settings that apply: vLLM's only where vLLM runs in this process."""
        engine = self.engine.model_dump(mode="json", exclude=set(exclude))
        return client_settings(engine) if self.against_servers else engine

    def unused_engine_settings(self) -> list[str]:
        """Engine settings given for a run against servers, which decide them themselves."""
        return server_side_settings(self.engine) if self.against_servers else []

    def to_record(self) -> dict[str, Any]:
        """The configuration as a manifest records it (see :meth:`engine_record`)."""
        return {**self.model_dump(mode="json"), "engine": self.engine_record()}

    def outcome_settings(self) -> dict[str, Any]:
        """The part of the configuration that can change outcomes (resume must match it)."""
        engine = self.engine_record(exclude=NON_OUTCOME_ENGINE_FIELDS)
        return {
            "engine": engine,
            "data": self.data.model_dump(mode="json", exclude={"strict", "check_images"}),
            "prompt": self.prompt.model_dump(mode="json"),
            "sampling": self.sampling.model_dump(mode="json"),
        }

    def fingerprint(self, prompt_hash: str) -> str:
        """Hash of :meth:`outcome_settings` without the fields at their defaults, plus the
        prompt template's content hash: a short name for the configuration, recorded in the
        manifest (whether a folder resumes is decided by ``check_resumable`` in
        :mod:`screenspot_eval.run.session`, on the settings themselves)."""
        return _hash({**without_defaults(self.outcome_settings()), "prompt_hash": prompt_hash})


def _hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def field_defaults(model: type[BaseModel]) -> dict[str, Any]:
    """Each field's default as it is written to JSON (fields without one are left out)."""
    defaults = {}
    for name, field in model.model_fields.items():
        if not field.is_required():
            value = field.get_default(call_default_factory=True)
            defaults[name] = TypeAdapter(field.annotation).dump_python(value, mode="json")
    return defaults


def outcome_defaults() -> dict[str, dict[str, Any]]:
    """The defaults of every outcome setting, section by section."""
    sections = {
        "engine": EngineSettings,
        "data": DataSettings,
        "prompt": PromptSettings,
        "sampling": SamplingSettings,
    }
    return {name: field_defaults(model) for name, model in sections.items()}


def without_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """Outcome settings with every field at its default left out."""
    defaults = outcome_defaults()
    return {
        section: {
            k: v
            for k, v in values.items()
            if k not in defaults.get(section, {}) or v != defaults[section][k]
        }
        for section, values in settings.items()
    }


def with_defaults(recorded: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Recorded outcome settings, with each field ``current`` has and they lack (a setting
    added since the run started) at its default: what the run ran with."""
    defaults = outcome_defaults()
    filled = {section: dict(values) for section, values in recorded.items()}
    for section, values in current.items():
        for key in values:
            if key not in filled.get(section, {}) and key in defaults.get(section, {}):
                filled.setdefault(section, {})[key] = defaults[section][key]
    return filled


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML run config as a nested dict (sections engine, data, prompt, sampling, runtime),
    its ``[engine]`` table in the one settings grammar (:func:`engine_table`)."""
    tree = read_toml(path, "config file", ConfigError)
    if isinstance(tree.get("engine"), dict):
        tree["engine"] = engine_table(tree["engine"], f"config {path} [engine]")
    return tree


def engine_table(table: dict[str, Any], where: str) -> dict[str, Any]:
    """An ``[engine]`` table with keys in their one spelling (``enforce-eager`` is
    ``enforce_eager``) and its ``extra`` table read as ``--engine-arg`` reads its settings: one
    of our engine settings sets that setting, a dotted key overrides the checkpoint's config."""
    extra = table.get("extra", {})
    own = collect_settings(((k, v) for k, v in table.items() if k != "extra"), where)
    if not isinstance(extra, dict):
        return {**own, "extra": extra}  # the model's validation names the bad type
    tree: dict[str, Any] = {"engine": own}
    for path, value in engine_setting_paths(collect_settings(extra.items(), where)).items():
        if path.removeprefix("engine.") in own:
            raise ConfigError(f"{where}: {path.removeprefix('engine.')} given twice")
        set_dotted(tree, path, value)
    return tree["engine"]


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Deep merge; values of ``top`` win, dicts merge key by key."""
    return merge_nested(base, top)


def dotted_tree(values: dict[str, Any] | None) -> dict[str, Any]:
    """``{"a.b": 1, "a.c": None}`` -> ``{"a": {"b": 1}}`` (``None`` means "not given")."""
    tree: dict[str, Any] = {}
    for dotted, value in (values or {}).items():
        if value is not None:
            set_dotted(tree, dotted, value)
    return tree


def model_from_servers(endpoints: list[str] | tuple[str, ...], api_key: str | None) -> str:
    """The one model the servers serve (``GET /v1/models``), for ``run --endpoint`` without
    ``--model``; refused when they serve none, several, or different ones."""
    from screenspot_eval.backends.http.server import served_models

    listed = {url: tuple(served_models(url, api_key)) for url in endpoints}
    names = {name for names in listed.values() for name in names}
    if len(names) != 1 or any(len(n) != 1 for n in listed.values()):
        raise ConfigError(
            f"cannot tell which model the servers run (they list {listed}); pass --model"
        )
    return names.pop()


def resolve_config(
    file: Path | None,
    overrides: dict[str, Any],
    *,
    defaults: dict[str, Any] | None = None,
    servers: tuple[str, ...] = (),
) -> RunConfig:
    """The one precedence for every command: ``overrides`` (the command line; dotted keys,
    ``None`` = not given) > config ``file`` > the command's ``defaults`` > built-in defaults.

    A data source given on the command line replaces the file's source with its revision and
    its layout.
    Without a model, a run against servers (``runtime.endpoints``, or ``servers`` for
    commands that name them otherwise) takes the model name from the servers."""
    from_file = read_config_file(file) if file is not None else {}
    given = dotted_tree(overrides)
    for belongs in ("revision", "layout"):  # a revision and a layout belong to their source
        if "source" in given.get("data", {}) and belongs not in given["data"]:
            from_file.get("data", {}).pop(belongs, None)
    tree = with_preset(merge(merge(dotted_tree(defaults), from_file), given))
    if "model" not in tree.get("engine", {}):
        endpoints = servers or tree.get("runtime", {}).get("endpoints")
        if not endpoints:
            raise ConfigError("no model given: pass --model or set engine.model in the config")
        api_key = tree.get("runtime", {}).get("api_key")
        set_dotted(tree, "engine.model", model_from_servers(endpoints, api_key))
    where = f" (config {file})" if file else ""
    tree = resolve_family(tree, servers)
    try:
        config = RunConfig.model_validate(tree)
        if not config.against_servers:  # vLLM's arguments must be buildable before anything runs
            llm_kwargs(config.engine)
    except (ValidationError, ValueError) as exc:
        raise ConfigError(f"invalid run configuration{where}:\n{exc}") from exc
    return config


def diff_settings(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two nested settings dicts."""
    lines: list[str] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            lines.extend(diff_settings(a, b, prefix=f"{path}."))
        elif a != b:
            lines.append(f"{path}: {json.dumps(a, default=str)} -> {json.dumps(b, default=str)}")
    return lines


def describe_config(config: RunConfig) -> dict[str, Any]:
    """What ``--print-config`` shows: the resolved configuration, the prompt template it loads
    (name, content hash, convention, source) and the exact ``vllm.LLM`` keyword arguments.
    A template that cannot be loaded fails here, as the run would."""
    template = load_template(config.prompt.template)
    prompt = {
        "name": template.name,
        "content_hash": template.content_hash,
        "convention": config.prompt.convention or template.convention,
        "source": template.source,
    }
    if config.against_servers:  # the servers' own settings apply, recorded from each server
        engine: dict[str, Any] = {"not_used_against_servers": config.unused_engine_settings()}
    else:
        engine = {"llm_kwargs": llm_kwargs(config.engine)}
    return {"config": config.to_record(), "prompt": prompt, **engine}


def require_out(config: RunConfig) -> Path:
    """The results folder a command writes into; none given is a user error."""
    if config.out is None:
        raise UserError("no results folder: pass --out results/NAME or set out in the config")
    return Path(config.out)
