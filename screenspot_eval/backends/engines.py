"""The in-process engine as the run layer sees it: one contract, one provider, one policy.

``run/`` imports this module, never ``backends.vllm`` (an import-linter contract): the provider
imports vLLM's implementation lazily, so HTTP evaluations run where vLLM is not installed, and
the way engines are started, shared across passes, switched in place, self-checked and shut
down is decided here once.

- :func:`start_engine` starts one engine (its variant verified from inside before it returns).
- :class:`EngineRotation` serves a sequence of variants with as few model loads as it can: the
  embedder is switched in place between ``pre`` and ``post`` after a self-check has proven the
  switch on a probe image; a variant it cannot switch to (``native``, a failed self-check, the
  switch turned off) gets a fresh engine, the old one closed first (one engine at a time).
- :func:`open_reference` opens HF transformers' model, the reference of ``parity``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from screenspot_eval.backends.base import Backend
from screenspot_eval.backends.sides import SettingReading
from screenspot_eval.backends.variant import SWITCHABLE, EmbedderReport, Variant
from screenspot_eval.backends.vllm.engine_args import (
    IMAGE_BUDGETS,
    EngineSettings,
    llm_kwargs,
)

__all__ = [
    "CLIENT_SETTINGS",
    "IMAGE_BUDGETS",
    "EngineHandle",
    "EngineRotation",
    "EngineSettings",
    "client_settings",
    "llm_kwargs",
    "open_reference",
    "server_side_settings",
    "start_engine",
]


#: The engine settings that a run against servers decides itself: which model to ask for, the
#: variant it claims (checked against the server's report), the checkpoint revision (parity's
#: reference) and the image budget its coordinates assume. Every other engine setting is the
#: server's own: recorded from the server's provenance, never from this side's configuration.
CLIENT_SETTINGS: frozenset[str] = frozenset(
    {"model", "norm", "adapter", "preset", "revision", "max_soft_tokens"}
)


def client_settings(engine: dict[str, Any]) -> dict[str, Any]:
    """The part of an engine section (as recorded) that applies to a run against servers."""
    return {key: value for key, value in engine.items() if key in CLIENT_SETTINGS}


def server_side_settings(settings: EngineSettings) -> list[str]:
    """Engine settings given away from their defaults that a server decides for itself."""
    given = settings.model_dump(mode="json", exclude_defaults=True)
    return sorted(key for key in given if key not in CLIENT_SETTINGS)


class EngineHandle(Protocol):
    """A started in-process engine that several passes share."""

    report: EmbedderReport

    def switch(self, variant: Variant) -> EmbedderReport:
        """Switch the embedder in place, reset the caches, re-prove it from inside."""
        ...

    def self_check(self, a: Variant, b: Variant) -> tuple[bool, str]:
        """Does switching between ``a`` and ``b`` change what the model computes? Leaves ``a``."""
        ...

    def borrow(self, *, window: int | None = None, reset_prefix_cache: bool = False) -> Backend:
        """A backend view for one pass; closing it leaves the engine running."""
        ...

    def score(
        self, items: Iterable[tuple[Any, Any]], *, top_k: int, image_token_id: int, seed: int
    ) -> Iterator[Any]:
        """Teacher-forced logprobs of reference answers (``parity``)."""
        ...

    def probe_logprobs(self) -> dict[int, float]:
        """First-token logprobs on the probe image (do two engines compute differently?)."""
        ...

    def read_settings(self, requested: dict[str, Any]) -> list[SettingReading]:
        """Each requested side setting as the engine built the model, read from inside."""
        ...

    def close(self) -> None: ...


def start_engine(
    settings: EngineSettings,
    *,
    window: int | None = None,
    log_file: Path | None = None,
    verbose: bool = False,
) -> Any:
    """The in-process vLLM engine for ``settings`` (an :class:`EngineHandle` and a
    :class:`Backend`); its logs go to ``log_file``."""
    from screenspot_eval.backends.vllm.engine import VllmEngine

    return VllmEngine(settings, window=window, log_file=log_file, verbose=verbose)


def open_reference(model: str, **kwargs: Any) -> Any:
    """HF transformers' model as ``parity``'s reference (a context manager)."""
    from screenspot_eval.backends.vllm.parity import HfReference

    return HfReference(model, **kwargs)


EngineStarter = Callable[[Variant], EngineHandle]


class EngineRotation:
    """Engines for a sequence of variants, started only when needed, one at a time.

    ``start(variant)`` starts an engine running ``variant``. With ``switch`` on, every engine
    started for a switchable variant is self-checked against the other switchable variant asked
    for; while the last check holds, later switches between them happen in place.
    """

    def __init__(
        self,
        start: EngineStarter,
        variants: Iterable[Variant],
        *,
        switch: bool = True,
        log: Callable[[str], None] = lambda line: None,
    ):
        self.start = start
        self.variants = tuple(variants)
        self.allow_switch = switch
        self.log = log
        self.engine: EngineHandle | None = None
        self.variant: Variant | None = None
        self.can_switch = False
        self.check_message: str | None = None
        self.loads = 0
        self.notes: list[str] = []

    def ready(self, variant: Variant) -> EngineHandle:
        """An engine running ``variant``: the current one (switched if it can), or a new one."""
        if self.engine is not None and variant != self.variant:
            if self.can_switch and {variant, self.variant} <= SWITCHABLE:
                self.engine.switch(variant)
            else:
                self.close()
        if self.engine is None:
            self._start(variant)
        self.variant = variant
        assert self.engine is not None
        return self.engine

    def _start(self, variant: Variant) -> None:
        self.engine = self.start(variant)
        self.loads += 1
        others = [v for v in self.variants if v != variant and v in SWITCHABLE]
        if self.allow_switch and variant in SWITCHABLE and others:
            ok, message = self.engine.self_check(variant, others[0])
            self.log(message)
            self.check_message = message
            self.can_switch = ok
            if not ok:
                self.notes.append("in-place switch self-check failed: one engine per variant")

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine = None
        self.variant = None
