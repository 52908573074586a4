"""A backend that answers from a script instead of a model, shipped for tests and dry runs.

It implements the same contract as the engine and the HTTP backend, so the whole pipeline
(prompts, parsing, scoring, records, resume, reports) can be exercised without vLLM. It can also
play the faults a real backend has: a request that fails, or the backend dying midway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from screenspot_eval.backends.base import (
    Backend,
    BackendError,
    Completion,
    GroundingRequest,
    SamplingSettings,
)
from screenspot_eval.backends.provenance import EngineProvenance
from screenspot_eval.backends.variant import EmbedderReport, unverified_report

Answer = Callable[[GroundingRequest], str]
"""The script: the raw answer text for one request."""


def prompt_text(request: GroundingRequest) -> str:
    """The text items of a request's messages, joined: what the model was asked."""
    return "\n".join(
        item["text"]
        for message in request.messages
        for item in message["content"]
        if item.get("type") == "text"
    )


class ScriptedBackend(Backend):
    """Answers each request with ``answer(request)``; records what it was asked.

    ``fail_ids`` get a failed completion (as after exhausted retries); after ``die_after``
    requests (over all its passes) the backend raises ``die_with`` (a :class:`BackendError` by default), as an engine
    or server that goes away does.
    """

    def __init__(
        self,
        answer: Answer,
        *,
        report: EmbedderReport | None = None,
        provenance: EngineProvenance | None = None,
        image_soft_tokens: int | None = None,
        die_after: int | None = None,
        die_with: type[BaseException] = BackendError,
        fail_ids: Iterable[str] = (),
        fail_error: str = "HTTP 500 (scripted)",
        check: Callable[[GroundingRequest], Any] | None = None,
    ):
        self.answer = answer
        self._report = report or unverified_report("none (scripted backend)")
        self._provenance = provenance
        self.image_soft_tokens = image_soft_tokens
        self.die_after = die_after
        self.die_with = die_with
        self.fail_ids = set(fail_ids)
        self.fail_error = fail_error
        self.check = check
        self.requested: list[str] = []
        self.prompts: dict[str, str] = {}
        self.closed = False

    @property
    def report(self) -> EmbedderReport:
        return self._report

    @property
    def provenance(self) -> EngineProvenance | None:
        """The provenance it was given (a script has no engine: None by default)."""
        return self._provenance

    def generate(
        self, requests: Iterable[GroundingRequest], sampling: SamplingSettings
    ) -> Iterator[Completion]:
        for request in requests:
            done = len(self.requested)  # over the backend's life: a protocol's steps are passes
            if self.die_after is not None and done >= self.die_after:
                raise self.die_with(f"backend died (scripted): engine died after {done} requests")
            if self.check is not None:
                self.check(request)
            self.requested.append(request.sample_id)
            self.prompts[request.sample_id] = prompt_text(request)
            if request.sample_id in self.fail_ids:
                yield Completion(request.sample_id, None, error=self.fail_error, attempts=3)
                continue
            text = self.answer(request)
            yield Completion(
                request.sample_id,
                text,
                latency_s=0.01,
                completion_tokens=9,
                image_soft_tokens=self.image_soft_tokens,
            )

    def close(self) -> None:
        self.closed = True
