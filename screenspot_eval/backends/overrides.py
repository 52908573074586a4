"""Model-config overrides given as ``KEY=VALUE`` (``text_config.use_bidirectional_attention=null``).

One override changes one field of the checkpoint's config, for HF transformers and for vLLM
alike: dotted keys walk into sub-configs, and the value is read as JSON (``null``, ``true``,
``1024``, ``"vision"``), or taken as a plain string when it is not JSON (``vision``). Pure:
vLLM gets the nested dict as ``hf_overrides``; HF's config object gets :func:`apply_to_config`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from screenspot_eval.errors import UserError

Overrides = dict[str, Any]  # dotted key -> value


def parse_overrides(items: Iterable[str]) -> Overrides:
    """``["a.b=null", "c=2"]`` -> ``{"a.b": None, "c": 2}``; a malformed item is a user error."""
    parsed: Overrides = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(
                f"--override must be KEY=VALUE (e.g. text_config.sliding_window=64), not {item!r}"
            )
        try:
            parsed[key] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key] = raw
    return parsed


def nested(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys as nested dicts: vLLM's ``hf_overrides`` walks sub-configs that way."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


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
