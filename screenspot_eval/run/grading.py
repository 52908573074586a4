"""Raw answer -> click -> score -> record: the one place a completion becomes an outcome.

The store only keeps records; grading lives here so that rescoring never needs the store to
know how answers are parsed.
"""

from __future__ import annotations

from typing import Literal

from screenspot_eval.backends.base import Completion
from screenspot_eval.data.sample import Sample
from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.protocol.parsing import FailureKind, ParsedClick, ParseFailure, parse_click
from screenspot_eval.protocol.scoring import Target, failed_score, score_target
from screenspot_eval.protocol.zoom import Box, full_view, to_original, view_size
from screenspot_eval.store.records import PARSER_ERROR_PREFIX, PredictionRecord


def build_record(
    sample: Sample,
    *,
    instruction: str | None,
    language: Literal["en", "cn"],
    completion: Completion,
    convention: CoordinateConvention,
    prompt_hash: str,
    variant: str,
    sent_size: tuple[int, int] | None = None,
    view: Box | None = None,
    calls: int = 1,
) -> PredictionRecord:
    """Parse and score one completion; a failed request becomes ``failed``, never a click.

    ``view``: the crop the answer was given in (a multi-step protocol's last step): the click
    is read in the crop's pixels (``sent_size`` is the crop's) and mapped back through its
    offset; ``completion`` then carries the costs summed over the sample's ``calls``."""
    parsed: ParsedClick | ParseFailure | None = None
    if completion.ok:
        parsed = read_click(completion.text, convention, sample.img_size, sent_size, view)
        score = score_target(parsed, Target.of(sample))
    else:
        score = failed_score()
    return PredictionRecord(
        id=sample.id,
        img_filename=sample.img_filename,
        img_size=sample.img_size,
        bbox=sample.bbox,
        instruction=instruction,
        language=language,
        application=sample.application,
        platform=sample.platform,
        group=sample.group,
        ui_type=sample.ui_type,
        source_file=sample.source_file,
        prompt_hash=prompt_hash,
        convention=convention,
        variant=variant,
        raw_response=completion.text,
        parse_status=None if parsed is None else parsed.status,
        failure_kind=parsed.kind.value if isinstance(parsed, ParseFailure) else None,
        answer_format=parsed.answer_format.value if isinstance(parsed, ParsedClick) else None,
        out_of_image=parsed.out_of_image if isinstance(parsed, ParsedClick) else None,
        outcome=score.outcome,
        pred_x=score.x,
        pred_y=score.y,
        distance_px=score.distance_px,
        error=completion.error or _internal_error(parsed),
        attempts=completion.attempts,
        latency_s=completion.latency_s,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        endpoint=completion.endpoint,
        image_soft_tokens=completion.image_soft_tokens,
        layout=sample.layout,
        target=sample.target,
        polygon=sample.polygon,
        categories=sample.categories,
        calls=calls,
        view=None if view is None or view == full_view(*sample.img_size) else view,
    )


def read_click(
    text: str | None,
    convention: CoordinateConvention,
    image_size: tuple[int, int],
    sent_size: tuple[int, int] | None,
    view: Box | None,
) -> ParsedClick | ParseFailure:
    """The answer's click in original-image pixels: read in the ``view`` (a crop; None: the
    whole image) and mapped back through the crop's offset."""
    if view is None:
        return parse_click(text or "", convention, image_size, sent_size=sent_size)
    parsed = parse_click(text or "", convention, view_size(view), sent_size=sent_size)
    if not isinstance(parsed, ParsedClick):
        return parsed
    x, y = to_original(view, parsed.x, parsed.y)
    return parsed.model_copy(update={"x": x, "y": y})


def _internal_error(parsed: ParsedClick | ParseFailure | None) -> str | None:
    """A parser bug, named as one (the record is ``failed``, retried on resume, and counted
    apart from the model's misses)."""
    if isinstance(parsed, ParseFailure) and parsed.kind is FailureKind.INTERNAL_ERROR:
        return f"{PARSER_ERROR_PREFIX}{parsed.detail}"
    return None


#: Parsed clicks outside the image above this share (of at least ``MIN_PARSED`` clicks) mean
#: the answers are in another coordinate convention than the one they were read in.
OUT_OF_IMAGE_ALARM = 0.5
MIN_PARSED = 5


def convention_warning(records: list[PredictionRecord]) -> str | None:
    """A warning when most parsed clicks fall outside the image: the model answers in another
    convention than the template's (e.g. pixels read as 0-1000), which scores as a silent 0."""
    parsed = [r for r in records if r.out_of_image is not None]
    outside = sum(1 for r in parsed if r.out_of_image)
    if len(parsed) < MIN_PARSED or outside <= OUT_OF_IMAGE_ALARM * len(parsed):
        return None
    convention = parsed[0].convention
    return (
        f"{outside} of {len(parsed)} parsed clicks fall outside the image: the answers are "
        f"probably not in the {convention} convention they were read in. Check the prompt "
        "and the model's own convention (screenspot-eval presets), then set --prompt, "
        "--preset or --convention and rescore with --restart"
    )
