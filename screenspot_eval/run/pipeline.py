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
from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.protocol.prompts import PromptTemplate, render_messages
from screenspot_eval.protocol.zoom import Box, view_size
from screenspot_eval.run.grading import build_record
from screenspot_eval.run.images import ImagePlan, LoadedImage, plan_images
from screenspot_eval.store.records import IMAGE_ERROR_PREFIX, PredictionRecord


@dataclass(frozen=True)
class PipelineSpec:
    """What turns a sample into a request and an answer into a record."""

    template: PromptTemplate
    convention: CoordinateConvention
    language: Language
    sampling: SamplingSettings
    variant: str
    image_budget: int | None  # the budget knob's value, sent with each request
    sent_size: Callable[[int, int], tuple[int, int]] | None = None
    """The size the model sees for an image (the family's resize), for ``xy-pixels-sent``."""


def make_request(
    sample: Sample,
    image: object,
    spec: PipelineSpec,
    *,
    loaded: LoadedImage | None = None,
    uuid: str | None = None,
) -> GroundingRequest:
    instruction = instruction_for(sample, spec.language) or ""
    return GroundingRequest(
        sample_id=sample.id,
        messages=render_messages(spec.template, instruction),
        image=image,
        chat_template_kwargs=dict(spec.template.chat_template_kwargs),
        structured_regex=spec.template.structured_regex,
        image_budget=spec.image_budget,
        image_file=loaded.image_file if loaded else None,
        image_uuid=uuid,
        image_path=loaded.path if loaded else None,
    )


def to_record(
    sample: Sample,
    completion: Completion,
    spec: PipelineSpec,
    *,
    view: Box | None = None,
    calls: int = 1,
) -> PredictionRecord:
    """The sample's record from its (last) completion; ``view``: the crop that answer was
    given in (a multi-step protocol), whose own resize ``xy-pixels-sent`` reads it in."""
    sent_size = None
    if spec.convention.needs_sent_size and spec.sent_size is not None:
        width, height = view_size(view) if view else sample.img_size
        sent_size = spec.sent_size(width, height)
    return build_record(
        sample,
        instruction=instruction_for(sample, spec.language),
        language=spec.language,
        completion=completion,
        convention=spec.convention,
        prompt_hash=spec.template.content_hash,
        variant=spec.variant,
        sent_size=sent_size,
        view=view,
        calls=calls,
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
    images: ImagePlan | None = None,
) -> ImagePlan:
    """Run ``samples`` through ``backend``; ``on_record`` gets each record as it finishes.

    Screenshots are decoded (and prepared, see :mod:`screenspot_eval.run.images`) ahead in
    threads; one that cannot be decoded becomes a ``failed`` record with the reason (it is
    retried on resume, and counted apart from wrong answers). Exceptions from the backend
    propagate after every finished record was handed over. Returns the image plan with what
    it counted (paths taken, decode and preparation time).
    """
    by_id = {s.id: s for s in samples}
    unreadable: deque[tuple[Sample, ImageLoadError]] = deque()
    plan = images or plan_images(backend, samples, budget=spec.image_budget, hashes=None)
    requested: dict[str, str] = {}

    def requests() -> Iterator[GroundingRequest]:
        stream = iter_images(
            samples, root, workers=image_workers, prefetch=prefetch, load=plan.load
        )
        for sample, loaded in stream:
            if isinstance(loaded, ImageLoadError):
                unreadable.append((sample, loaded))
                continue
            requested[sample.id] = loaded.path
            uuid = plan.uuid_for(sample, loaded)
            yield make_request(sample, loaded.image, spec, loaded=loaded, uuid=uuid)

    def flush_unreadable() -> None:
        while unreadable:
            sample, error = unreadable.popleft()
            failure = Completion(sample.id, None, error=f"{IMAGE_ERROR_PREFIX}{error.reason}")
            on_record(to_record(sample, failure, spec))

    try:
        for completion in backend.generate(requests(), spec.sampling):
            flush_unreadable()
            asked = requested.pop(completion.sample_id, None)
            path = completion.image_path or asked
            plan.stats.took(completion.sample_id, path)
            on_record(to_record(by_id[completion.sample_id], completion, spec))
    finally:
        flush_unreadable()
    return plan
