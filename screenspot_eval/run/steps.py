"""Multi-step protocols: step k of every sample still in its protocol, as one streaming pass.

Per step: states -> requests (the whole screenshot at step 1, a crop of it after) -> backend
-> completions -> step records (``steps.jsonl``) -> the next step's views. The engine sees one
pass per step, so its batch stays full; a sample whose protocol ends (its last step, no click,
or a click outside what it saw) gets its final record at once: the last step's click mapped
back, the costs summed over its calls. A run stopped in step k resumes there from the step
records: no finished step runs again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from screenspot_eval.backends.base import Backend, Completion, GroundingRequest
from screenspot_eval.data.errors import ImageLoadError
from screenspot_eval.data.images import iter_images
from screenspot_eval.data.sample import Sample
from screenspot_eval.protocol.parsing import ParsedClick
from screenspot_eval.protocol.scoring import Outcome, Target, score_target
from screenspot_eval.protocol.zoom import Box, Protocol, full_view, next_view, view_size
from screenspot_eval.run.grading import read_click
from screenspot_eval.run.images import ImagePlan, LoadedImage, crop_loader
from screenspot_eval.run.pipeline import PipelineSpec, make_request, to_record
from screenspot_eval.store.records import IMAGE_ERROR_PREFIX, PredictionRecord
from screenspot_eval.store.steps import StepOutcome, StepRecord


@dataclass
class SampleState:
    """Where one sample stands: its finished steps and the view its next step sends."""

    sample: Sample
    steps: list[StepRecord]
    view: Box

    @property
    def step(self) -> int:
        return len(self.steps) + 1


def plan_states(
    samples: list[Sample], chains: dict[str, list[StepRecord]], protocol: Protocol
) -> tuple[list[SampleState], list[SampleState]]:
    """``(to run, ended)``: each sample's next step from its finished steps. An ended chain
    without a final record (a stop between the two writes) only needs that record."""
    running: list[SampleState] = []
    ended: list[SampleState] = []
    for sample in samples:
        chain = list(chains.get(sample.id, []))
        state = SampleState(sample, chain, full_view(*sample.img_size))
        if chain and chain[-1].ends_sample:
            ended.append(state)
            continue
        if chain:
            last = chain[-1]
            view = last.click and next_view(protocol, last.view, *last.click, sample.img_size)
            if not view:  # a continued step always has its next view; recompute defensively
                ended.append(state)
                continue
            state.view = view
        running.append(state)
    return running, ended


def model_size(spec: PipelineSpec, view: Box) -> tuple[int, int] | None:
    """The size the model sees for ``view`` (the family's resize), where the spec knows it."""
    return spec.sent_size(*view_size(view)) if spec.sent_size is not None else None


def step_record(
    state: SampleState,
    completion: Completion,
    spec: PipelineSpec,
    protocol: Protocol,
    image_size: tuple[int, int] | None,
) -> StepRecord:
    """One call's record: its view, answer, click (crop and original pixels) and outcome."""
    sample, view = state.sample, state.view
    sent = model_size(spec, view) if spec.convention.needs_sent_size else None
    click = click_view = None
    hit = None
    outcome: StepOutcome = "failed"
    if completion.ok:
        parsed = read_click(completion.text, spec.convention, sample.img_size, sent, view)
        outcome = "no-click"
        if isinstance(parsed, ParsedClick):
            click = (parsed.x, parsed.y)
            click_view = (parsed.x - view[0], parsed.y - view[1])
            hit = score_target(parsed, Target.of(sample)).outcome is Outcome.CORRECT
            if state.step >= protocol.steps:
                outcome = "last"
            elif next_view(protocol, view, *click, sample.img_size) is None:
                outcome = "outside-view"
            else:
                outcome = "continued"
    return StepRecord(
        id=sample.id,
        step=state.step,
        protocol=protocol.spec,
        view=view,
        image_size=image_size,
        model_size=model_size(spec, view),
        raw_response=completion.text,
        click_view=click_view,
        click=click,
        hit=hit,
        outcome=outcome,
        error=completion.error,
        latency_s=completion.latency_s,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        image_soft_tokens=completion.image_soft_tokens,
    )


def _total(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def final_record(
    state: SampleState,
    spec: PipelineSpec,
    failure: Completion | None = None,
    *,
    failed_call: bool = False,
) -> PredictionRecord:
    """The sample's record: the last finished step's answer read in its view and mapped back
    (or ``failure``: an image error, or with ``failed_call`` a request error, in the step
    after them), costs summed over the calls made."""
    steps, sample = state.steps, state.sample
    if failure is not None or not steps:
        completion = failure or Completion(sample.id, None, error="no step ran")
        view: Box | None = state.view
    else:
        last = steps[-1]
        completion = Completion(sample.id, last.raw_response)
        view = last.view
    completion = replace(
        completion,
        latency_s=sum(s.latency_s for s in steps) + completion.latency_s,
        prompt_tokens=_total([s.prompt_tokens for s in steps] or [completion.prompt_tokens]),
        completion_tokens=_total(
            [s.completion_tokens for s in steps] or [completion.completion_tokens]
        ),
        image_soft_tokens=_total(
            [s.image_soft_tokens for s in steps] or [completion.image_soft_tokens]
        ),
    )
    return to_record(sample, completion, spec, view=view, calls=len(steps) + failed_call)


def evaluate_protocol(
    samples: list[Sample],
    root: Path,
    backend: Backend,
    spec: PipelineSpec,
    protocol: Protocol,
    *,
    chains: dict[str, list[StepRecord]],
    on_step: Callable[[StepRecord], None],
    on_record: Callable[[PredictionRecord], None],
    images: ImagePlan,
    image_workers: int = 2,
    prefetch: int = 8,
) -> ImagePlan:
    """Run ``samples`` through ``protocol``'s steps, resuming each from its finished steps
    (``chains``); ``on_step`` gets every call's record, ``on_record`` each final record."""
    running, ended = plan_states(samples, chains, protocol)
    for state in ended:
        on_record(final_record(state, spec))
    for step in range(1, protocol.steps + 1):
        batch = [s for s in running if s.step == step]
        passed = step_pass(batch, root, backend, spec, images, step, image_workers, prefetch)
        for state, result, size in passed:
            if isinstance(result, ImageLoadError):
                error = f"{IMAGE_ERROR_PREFIX}{result.reason}"
                on_record(final_record(state, spec, Completion(state.sample.id, None, error)))
                continue
            record = step_record(state, result, spec, protocol, size)
            on_step(record)
            if not record.finished:
                on_record(final_record(state, spec, result, failed_call=True))
                continue
            state.steps.append(record)
            if record.ends_sample or record.click is None:
                on_record(final_record(state, spec))
                continue
            view = next_view(protocol, state.view, *record.click, state.sample.img_size)
            state.view = view or state.view
        running = [s for s in running if s.step > step and not s.steps[-1].ends_sample]
    return images


def step_pass(
    batch: list[SampleState],
    root: Path,
    backend: Backend,
    spec: PipelineSpec,
    images: ImagePlan,
    step: int,
    image_workers: int,
    prefetch: int,
) -> Iterator[tuple[SampleState, Completion | ImageLoadError, tuple[int, int] | None]]:
    """One streaming pass of step ``step`` over ``batch``: the whole screenshots at step 1 (as
    a one-shot run loads them), crops after; yields each state with its completion (or why
    its image could not be read) and the size of the image the backend got."""
    if not batch:
        return
    by_id = {s.sample.id: s for s in batch}
    unreadable: deque[tuple[SampleState, ImageLoadError]] = deque()
    sizes: dict[str, tuple[int, int] | None] = {}
    if step == 1:
        load, share = images.load, True
    else:
        preparer = None
        if images.preparer is not None and images.budget is not None:
            crops = {view_size(s.view) for s in batch}
            preparer = backend.image_preparation(images.budget, crops)
        load = crop_loader(images, {s.sample.id: s.view for s in batch}, preparer)
        share = False

    def requests() -> Iterator[GroundingRequest]:
        samples = [s.sample for s in batch]
        stream = iter_images(
            samples, root, workers=image_workers, prefetch=prefetch, load=load, share=share
        )
        for sample, loaded in stream:
            if isinstance(loaded, ImageLoadError):
                unreadable.append((by_id[sample.id], loaded))
                continue
            assert isinstance(loaded, LoadedImage)
            image = loaded.image
            sizes[sample.id] = tuple(image.size) if image is not None else None
            uuid = images.uuid_for(sample, loaded)
            yield make_request(sample, image, spec, loaded=loaded, uuid=uuid)

    for completion in backend.generate(requests(), spec.sampling):
        while unreadable:
            yield (*unreadable.popleft(), None)
        images.stats.took(completion.sample_id, completion.image_path)
        yield by_id[completion.sample_id], completion, sizes.pop(completion.sample_id, None)
    while unreadable:  # after a stop in the backend these stay unrecorded: they run on resume
        yield (*unreadable.popleft(), None)
