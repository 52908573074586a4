"""One engine for an A/B: switch the embedder in place instead of loading the model twice.

The placement lives in a tensor buffer that the embedder's forward reads (``torch.where`` over
both branches), so a switch reaches compiled and graph-captured code alike. After a switch the
multimodal and prefix caches are reset, otherwise image embeddings or KV blocks computed under
the other variant would be reused. :func:`self_check` proves the switch on a probe image before
any sample runs; when it fails, the caller falls back to two engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

from screenspot_eval.backends.base import Backend, Completion, GroundingRequest, SamplingSettings
from screenspot_eval.backends.provenance import EngineProvenance
from screenspot_eval.backends.sides import MIN_PROBE_DIFFERENCE, probe_difference
from screenspot_eval.backends.variant import SWITCHABLE, EmbedderReport, Variant, check_variant
from screenspot_eval.backends.vllm.engine import VllmEngine
from screenspot_eval.backends.vllm.failures import engine_stage
from screenspot_eval.backends.vllm.probe import set_embedder_placement


def switch_embedder(engine: VllmEngine, placement: Variant) -> EmbedderReport:
    """Set every selectable embedder to ``placement``, reset caches, re-prove it from inside."""
    if placement not in SWITCHABLE:
        raise ValueError(f"only pre and post can be switched in place, not {placement!r}")
    with engine_stage(f"switching the embedder to {placement}", engine.log_file):
        switched = engine.llm.apply_model(partial(set_embedder_placement, placement=placement))
        if not all(switched):
            raise RuntimeError(f"no selectable embedder to switch in the engine: {switched}")
        engine.reset_caches()
    engine.report = engine.read_embedder_report()
    check_variant(placement, engine.report)
    return engine.report


def self_check(engine: VllmEngine, a: Variant, b: Variant) -> tuple[bool, str]:
    """Does switching change what the model computes on a probe image? Leaves ``a`` active.

    Checks that each switch is reported from inside the engine with the right measured
    placement, that the first-token logprobs on the same probe image differ between the two
    placements, and that switching back reproduces ``a``'s logprobs (caches really reset).
    """
    try:
        switch_embedder(engine, a)
        first = engine.probe_logprobs()
        switch_embedder(engine, b)
        second = engine.probe_logprobs()
        switch_embedder(engine, a)
        again = engine.probe_logprobs()
    except Exception as exc:  # any failure means: do not trust the switch
        return False, f"in-place switch failed: {type(exc).__name__}: {exc}"
    difference = probe_difference(first, second)
    drift = probe_difference(first, again)
    if difference < MIN_PROBE_DIFFERENCE:
        return False, f"{a} and {b} gave the same probe logprobs (max diff {difference:.2e})"
    if drift > MIN_PROBE_DIFFERENCE:
        return False, f"switching back to {a} did not reproduce its logprobs ({drift:.2e})"
    shown = "different top tokens" if difference == float("inf") else f"{difference:.3g}"
    return True, f"in-place switch verified on a probe image ({a} vs {b} logprobs: {shown})"


class BorrowedEngine(Backend):
    """A backend view of a shared engine: ``close`` leaves the engine running for the next run.

    One pass may bound the requests in flight (``window``: the running batch can never exceed
    it, so a repeat varies the batch composition without reloading the model) and start from an
    empty prefix cache (``reset_prefix_cache``); both last for this pass only.
    """

    def __init__(
        self, engine: VllmEngine, *, window: int | None = None, reset_prefix_cache: bool = False
    ):
        self.engine = engine
        self.window = window
        if reset_prefix_cache:
            engine.llm.reset_prefix_cache()

    @property
    def report(self) -> EmbedderReport:
        return self.engine.report

    @property
    def provenance(self) -> EngineProvenance | None:
        return self.engine.provenance

    @property
    def idle_s(self) -> float:
        return self.engine.idle_s

    def image_preparation(self, budget: int, sizes: set[tuple[int, int]]) -> Any:
        return self.engine.image_preparation(budget, sizes)

    def frontend_stats(self) -> dict[str, Any]:
        return self.engine.frontend_stats()

    def generate(
        self, requests: Iterable[GroundingRequest], sampling: SamplingSettings
    ) -> Iterator[Completion]:
        own = self.engine.window
        self.engine.window = self.window or own
        try:
            yield from self.engine.generate(requests, sampling)
        finally:
            self.engine.window = own

    def close(self) -> None:
        """The owner closes the engine."""
