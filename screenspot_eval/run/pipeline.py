"""Samples -> requests -> backend -> completions -> records, streaming and in bounded memory."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from screenspot_eval.backends.base import Backend, Completion, GroundingRequest, SamplingSettings
from screenspot_eval.data.errors import ImageLoadError
from screenspot_eval.data.images import iter_images
from screenspot_eval.data.sample import Sample
from screenspot_eval.data.select import Language, instruction_for
from screenspot_eval.protocol.coords import CoordinateConvention, gemma4_sent_size
from screenspot_eval.protocol.prompts import PromptTemplate, render_messages
from screenspot_eval.run.grading import build_record
from screenspot_eval.store.records import PredictionRecord


@dataclass(frozen=True)
class PipelineSpec:
    """What turns a sample into a request and an answer into a record."""

    template: PromptTemplate
    convention: CoordinateConvention
    language: Language
    sampling: SamplingSettings
    variant: str
    image_budget: int | None  # soft tokens per image, for the ``xy-pixels-sent`` convention


def make_request(sample: Sample, image: object, spec: PipelineSpec) -> GroundingRequest:
    instruction = instruction_for(sample, spec.language) or ""
    return GroundingRequest(
        sample_id=sample.id,
        messages=render_messages(spec.template, instruction),
        image=image,
        chat_template_kwargs=dict(spec.template.chat_template_kwargs),
        structured_regex=spec.template.structured_regex,
        image_budget=spec.image_budget,
    )


def to_record(sample: Sample, completion: Completion, spec: PipelineSpec) -> PredictionRecord:
    sent_size = None
    if spec.convention.needs_sent_size and spec.image_budget is not None:
        sent_size = gemma4_sent_size(sample.width, sample.height, spec.image_budget)
    return build_record(
        sample,
        instruction=instruction_for(sample, spec.language),
        language=spec.language,
        completion=completion,
        convention=spec.convention,
        prompt_hash=spec.template.content_hash,
        variant=spec.variant,
        sent_size=sent_size,
    )


def evaluate_samples(
    samples: list[Sample],
    root: Path,
    backend: Backend,
    spec: PipelineSpec,
    *,
    on_record: Callable[[PredictionRecord], None],
    image_workers: int = 2,
    prefetch: int = 8,
) -> None:
    """Run ``samples`` through ``backend``; ``on_record`` gets each record as it finishes.

    Screenshots are decoded ahead in threads; one that cannot be decoded becomes a ``failed``
    record with the reason (it is retried on resume, and counted apart from wrong answers).
    Exceptions from the backend propagate after every finished record was handed over.
    """
    by_id = {s.id: s for s in samples}
    unreadable: deque[tuple[Sample, ImageLoadError]] = deque()

    def requests() -> Iterator[GroundingRequest]:
        for sample, image in iter_images(samples, root, workers=image_workers, prefetch=prefetch):
            if isinstance(image, ImageLoadError):
                unreadable.append((sample, image))
                continue
            yield make_request(sample, image, spec)

    def flush_unreadable() -> None:
        while unreadable:
            sample, error = unreadable.popleft()
            failure = Completion(sample.id, None, error=f"image: {error.reason}")
            on_record(to_record(sample, failure, spec))

    try:
        for completion in backend.generate(requests(), spec.sampling):
            flush_unreadable()
            on_record(to_record(by_id[completion.sample_id], completion, spec))
    finally:
        flush_unreadable()
