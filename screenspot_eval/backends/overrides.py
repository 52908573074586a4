"""The one grammar of every ``KEY=VALUE`` setting the tool takes, and config overrides.

``--engine-arg``, ``--a-set`` / ``--b-set``, a sides file's ``set`` table, a config file's
``[engine.extra]`` table and parity's ``--override`` all go through :func:`parse_settings`
(text from the command line) or :func:`collect_settings` (typed values from TOML):

- **keys**: dashes and underscores are the same (``enforce-eager`` is ``enforce_eager``), and
  ``hf_overrides.`` before a dotted key is the same as none (``hf_overrides.text_config.x`` is
  ``text_config.x``); a top-level config field keeps the prefix (``hf_overrides.image_token_id``),
  because a plain key is an engine argument. A key given twice in any spelling, or one that is
  a field of another, is refused, naming the option.
- **values**: on the command line, JSON where the text is JSON (``null``, ``true``, ``1024``,
  ``{"k": 2}``), else the text itself (``vision``); from TOML, the TOML value as it is.
- **meaning**: a dotted key overrides a field of the checkpoint's config (vLLM's
  ``hf_overrides``, HF's config via :func:`apply_to_config`); a plain key is an engine argument.
  ``--override`` takes config fields only (:func:`parse_overrides`).

Pure: vLLM gets the nested dict as ``hf_overrides``.
"""

from __future__ import annotations

import datetime
import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from screenspot_eval.errors import UserError

Settings = dict[str, Any]  # canonical key -> value
Overrides = dict[str, Any]  # dotted config field -> value

HF_PREFIX = "hf_overrides."


def canonical_key(key: str) -> str:
    """The one spelling of a setting's key (see the module docstring)."""
    key = key.strip().replace("-", "_")
    rest = key.removeprefix(HF_PREFIX)
    return rest if "." in rest else key


def is_config_override(key: str) -> bool:
    """A (canonical) key that overrides the checkpoint's config, not an engine argument."""
    return "." in key


def config_key(key: str) -> str:
    """The config field a model-config override names (``hf_overrides.`` dropped)."""
    return key.removeprefix(HF_PREFIX)


def parse_value(text: str) -> Any:
    """A command-line value: JSON where it is JSON, else the text as given."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def split_setting(item: str, option: str) -> tuple[str, Any]:
    """``"a.b=null"`` -> ``("a.b", None)``; a malformed item is a user error naming ``option``."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise UserError(
            f"{option} must be KEY=VALUE (e.g. text_config.sliding_window=64), not {item!r}"
        )
    return key, parse_value(raw)


def parse_settings(items: Iterable[str] | None, option: str) -> Settings:
    """``["dtype=bfloat16", "enforce-eager=true"]`` -> ``{"dtype": "bfloat16",
    "enforce_eager": True}``: command-line settings in their one spelling."""
    return collect_settings((split_setting(item, option) for item in items or ()), option)


def collect_settings(pairs: Iterable[tuple[str, Any]], option: str) -> Settings:
    """Typed ``(key, value)`` pairs (a TOML table's, or parsed text) under canonical keys;
    a key given twice, or one that is a field of another, is refused."""
    settings: Settings = {}
    for key, value in pairs:
        name = canonical_key(key)
        if name in settings:
            raise UserError(f"{option} {name}: given twice")
        settings[name] = _plain(value)
    for key in settings:
        for other in settings:
            if other.startswith(key + "."):
                raise UserError(f"{option} {key} and {other}: one is a field of the other")
    return settings


def _plain(value: Any) -> Any:
    """TOML's dates and times as their text: JSON (manifests, vLLM's flags) has no such type."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parse_overrides(items: Iterable[str] | None, option: str = "--override") -> Overrides:
    """``["text_config.x=null", "hf_overrides.image_token_id=7"]`` -> config fields
    ``{"text_config.x": None, "image_token_id": 7}``: every key names a config field."""
    parsed = (split_setting(item, option) for item in items or ())
    return collect_settings(((config_key(canonical_key(k)), v) for k, v in parsed), option)


def read_toml(path: Path, what: str, error: type[UserError] = UserError) -> dict[str, Any]:
    """A TOML file as a dict; a missing or malformed file is ``error`` naming ``what``."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{what} {path} not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {path} is not valid TOML: {exc}") from exc


def nested(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys as nested dicts: vLLM's ``hf_overrides`` walks sub-configs that way."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        set_dotted(out, key, value)
    return out


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_dotted(t, "data.selection.limit", 5)`` creates the path as needed."""
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def merge_nested(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, sub-dicts merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_nested(out[key], value)
        else:
            out[key] = value
    return out


def read_value(config: Any, key: str) -> Any:
    """The value a dotted key names in a config object (``AttributeError`` when absent)."""
    node = config
    for part in key.split("."):
        node = node[part] if isinstance(node, Mapping) else getattr(node, part)
    return node


def apply_to_config(config: Any, overrides: Mapping[str, Any]) -> None:
    """Set each dotted key on a (HF) config object; a key naming no field is a user error."""
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = config
        try:
            for part in parents:
                node = getattr(node, part)
            getattr(node, leaf)
        except AttributeError as exc:
            raise UserError(f"--override {key}: the model's config has no such field") from exc
        setattr(node, leaf, value)
