"""``screenspot-eval parity``: which embedder variant matches HF transformers on real inputs?

For N samples of the selected data: HF transformers (the reference, loaded once, freed before
any engine starts) greedy-decodes a short answer and scores it teacher-forced; every variant
then scores the same token ids in vLLM (pre and post in one engine, switched in place; native
in its own). The per-variant differences, the verdict and the settings go to ``--out``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from screenspot_eval.backends.engines import (
    EngineRotation,
    EngineSettings,
    llm_kwargs,
)
from screenspot_eval.backends.engines import (
    open_reference as open_hf_reference,
)
from screenspot_eval.backends.overrides import merge_nested, nested
from screenspot_eval.backends.variant import SWITCHABLE, VARIANTS
from screenspot_eval.data.errors import ImageLoadError
from screenspot_eval.data.fingerprint import fingerprint_dataset
from screenspot_eval.data.images import iter_images
from screenspot_eval.data.sample import Sample
from screenspot_eval.data.select import instruction_for
from screenspot_eval.errors import UserError
from screenspot_eval.protocol.prompts import PromptTemplate, load_template, render_messages
from screenspot_eval.report.parity import render_terminal, write_parity
from screenspot_eval.run.config import RunConfig, describe_config, require_out
from screenspot_eval.run.repeats import engine_starter
from screenspot_eval.run.session import VLLM_LOG, image_budget, open_selection, say
from screenspot_eval.stats.parity import (
    FP32_TOLERANCE,
    KL_DEFINITION,
    ParityReport,
    PositionLogprobs,
    SwitchCheck,
    build_report,
    summarise,
)
from screenspot_eval.store.manifest import environment, utc_now

DEFAULT_VARIANTS: tuple[str, ...] = VARIANTS
#: Config switches that change attention over image tokens (the 12B, 26B-A4B and 31B set the
#: first to "vision"): a parity gap outside the embedder is checked against each.
CHECKED_SWITCHES: tuple[str, ...] = ("text_config.use_bidirectional_attention",)
PARITY_DTYPE = "float32"  # vLLM's dtype unless --dtype says otherwise (auto would be 16-bit)
DEFAULT_SAMPLES = 20
DEFAULT_TOP_K = 10
DEFAULT_ANSWER_TOKENS = 16
VLLM_DEFAULT_MAX_LOGPROBS = 20


@dataclass
class ParityResult:
    out: Path
    report: ParityReport
    files: dict[str, Path]
    terminal: str


@dataclass(frozen=True)
class ParityOptions:
    """What ``parity`` adds to a run configuration."""

    variants: tuple[str, ...] = DEFAULT_VARIANTS
    reference_device: str = "cpu"
    reference_dtype: str = "float32"
    top_k: int = DEFAULT_TOP_K
    answer_tokens: int = DEFAULT_ANSWER_TOKENS
    #: Dotted config keys -> values, applied to the HF reference and to vLLM alike.
    overrides: dict[str, Any] = field(default_factory=dict)
    #: With no variant within the fp32 tolerance, rerun both sides with each switch in
    #: :data:`CHECKED_SWITCHES` null, to name one the engine ignores.
    check_switches: bool = True

    @property
    def vllm_top_k(self) -> int:
        """vLLM returns more tokens than HF's top-k, so HF's top-k is rarely outside them."""
        return 2 * self.top_k

    def check(self) -> None:
        unknown = [v for v in self.variants if v not in DEFAULT_VARIANTS]
        if unknown or not self.variants or len(set(self.variants)) != len(self.variants):
            raise UserError(
                f"--variant must name distinct variants among {', '.join(DEFAULT_VARIANTS)}; "
                f"got {', '.join(self.variants) or 'none'}"
            )
        if self.top_k < 1 or self.answer_tokens < 1:
            raise UserError("--top-k and --answer-tokens must be at least 1")


def engine_settings(config: RunConfig, options: ParityOptions, budget: int) -> EngineSettings:
    """The engine settings parity runs vLLM with: the run's, with the image budget explicit
    (the reference uses the same), enough logprobs per position and ``options.overrides`` as
    ``hf_overrides``."""
    extra = dict(config.engine.extra)
    if options.vllm_top_k > VLLM_DEFAULT_MAX_LOGPROBS:
        extra["max_logprobs"] = max(int(extra.get("max_logprobs", 0)), options.vllm_top_k)
    if options.overrides:
        extra["hf_overrides"] = merge_nested(
            extra.get("hf_overrides", {}), nested(options.overrides)
        )
    return config.engine.model_copy(update={"max_soft_tokens": budget, "extra": extra})


def tolerance_for(config: RunConfig, options: ParityOptions) -> float | None:
    """The fp32 tolerance, where both sides run in float32 (else none is applied)."""
    both_fp32 = options.reference_dtype == "float32" and config.engine.dtype == "float32"
    return FP32_TOLERANCE if both_fp32 else None


def engine_groups(variants: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Variants that share one engine (pre and post switch in place), in the order given."""
    switchable = tuple(v for v in variants if v in SWITCHABLE)
    groups: list[tuple[str, ...]] = []
    for variant in variants:
        if variant in SWITCHABLE:
            if switchable not in groups:
                groups.append(switchable)
        else:
            groups.append((variant,))
    return groups


@dataclass(frozen=True)
class _Item:
    sample: Sample
    messages: list[dict[str, Any]]


@dataclass(frozen=True)
class _Job:
    """What every pass of one parity command shares."""

    config: RunConfig
    options: ParityOptions
    template: PromptTemplate
    budget: int
    items: list[_Item]
    root: Path
    out: Path
    quiet: bool

    def say(self, line: str) -> None:
        say(self.quiet, line)

    def images(self, items: list[_Item] | None = None) -> Iterator[tuple[_Item, Any]]:
        """Each item (all of them by default) with its decoded image, in the decode pool."""
        chosen = self.items if items is None else items
        by_id = {item.sample.id: item for item in chosen}
        workers = self.config.runtime.image_workers
        for sample, image in iter_images([i.sample for i in chosen], self.root, workers=workers):
            yield by_id[sample.id], image

    def answered(self, answers: list[Any]) -> tuple[dict[str, Any], list[_Item]]:
        """The answers by sample id, and the items that have one."""
        by_id = {a.sample_id: a for a in answers}
        return by_id, [item for item in self.items if item.sample.id in by_id]


def open_reference(config: RunConfig, options: ParityOptions, budget: int) -> Any:
    """HF transformers' model as the reference, with the run's image budget and overrides."""
    return open_hf_reference(
        config.engine.model,
        revision=config.engine.revision,
        device=options.reference_device,
        dtype=options.reference_dtype,
        max_soft_tokens=budget,
        overrides=options.overrides,
    )


def _reference_pass(job: _Job) -> tuple[list[Any], dict[str, str], int, dict[str, Any]]:
    """HF's answers for every sample whose image decodes (the others are listed with why), and
    the attention switches the reference's config sets (:data:`CHECKED_SWITCHES`)."""
    options = job.options
    job.say(f"reference: HF transformers, {options.reference_dtype} on {options.reference_device}")
    answers, skipped = [], {}
    with open_reference(job.config, options, job.budget) as reference:
        image_token_id = reference.image_token_id
        switches = reference.config_values(CHECKED_SWITCHES)
        for n, (item, image) in enumerate(job.images(), start=1):
            if isinstance(image, ImageLoadError):
                skipped[item.sample.id] = f"image: {image.reason}"
                continue
            answer = reference.answer(
                item.sample.id,
                item.messages,
                image,
                chat_template_kwargs=dict(job.template.chat_template_kwargs),
                answer_tokens=options.answer_tokens,
                top_k=options.top_k,
            )
            if answer is None:
                skipped[item.sample.id] = (
                    "the reference's greedy answer starts with a multimodal placeholder token"
                )
                continue
            answers.append(answer)
            job.say(f"reference: {n}/{len(job.items)} {item.sample.id}")
    return answers, skipped, image_token_id, switches


def _rescore_reference(job: _Job, answers: list[Any]) -> list[Any]:
    """The reference, loaded with ``job.options.overrides``, scoring the same answer tokens."""
    answered, kept = job.answered(answers)
    with open_reference(job.config, job.options, job.budget) as reference:
        return [
            reference.score(
                answered[item.sample.id],
                item.messages,
                image,
                chat_template_kwargs=dict(job.template.chat_template_kwargs),
                top_k=job.options.top_k,
            )
            for item, image in job.images(kept)
        ]


def _max_change(before: list[float], after: list[float]) -> float:
    return max((abs(a - b) for a, b in zip(before, after, strict=True)), default=0.0)


def _switch_checks(
    job: _Job,
    switches: dict[str, Any],
    variant: str,
    scored: list[PositionLogprobs],
    answers: list[Any],
    image_token_id: int,
) -> list[SwitchCheck]:
    """Each switch set to null on both sides: does the engine's output move, does HF's?"""
    checks = []
    for key, value in switches.items():
        if key in job.options.overrides:
            continue  # the user chose its value: nothing to localise
        overrides = {**job.options.overrides, key: None}
        off = replace(job, options=replace(job.options, variants=(variant,), overrides=overrides))
        job.say(
            f"no variant is within the tolerance: checking {key}={value!r} (null on both sides)"
        )
        ref_off = _rescore_reference(off, answers)
        positions_off = _engine_passes(off, ref_off, image_token_id)[0][variant]
        summary_off = summarise(variant, positions_off)
        checks.append(
            SwitchCheck(
                key=key,
                value=value,
                variant=variant,
                engine_change=_max_change(
                    [p.test_logprob for p in scored], [p.test_logprob for p in positions_off]
                ),
                reference_change=_max_change(
                    [lp for a in answers for lp in a.logprobs],
                    [lp for a in ref_off for lp in a.logprobs],
                ),
                off_mean=summary_off.mean_abs_delta,
                off_first_max=summary_off.first_max_abs_delta,
            )
        )
    return checks


def _positions(answers: list[Any], scores: list[Any]) -> list[PositionLogprobs]:
    by_id = {s.sample_id: s for s in scores}
    positions = []
    for ref in answers:
        got = by_id[ref.sample_id]
        for j, token in enumerate(ref.answer_ids):
            positions.append(
                PositionLogprobs(
                    sample_id=ref.sample_id,
                    position=j,
                    token=token,
                    ref_logprob=ref.logprobs[j],
                    test_logprob=got.logprobs[j],
                    ref_top=ref.top[j],
                    test_top=got.top[j],
                )
            )
    return positions


def _engine_passes(
    job: _Job, answers: list[Any], image_token_id: int
) -> tuple[dict[str, list[PositionLogprobs]], dict[str, Any], list[str]]:
    """Every variant's scores of the reference answers; the engines' reports; notes.

    The engines rotate as everywhere else (:class:`EngineRotation`): pre and post share one,
    switched in place once its self-check has passed; native gets its own."""
    answered, kept = job.answered(answers)
    base = engine_settings(job.config, job.options, job.budget)
    job.say(f"starting vLLM with {base.model}; logs in {job.out / VLLM_LOG}")
    start = engine_starter(job.config.model_copy(update={"engine": base}), job.out)
    order = [v for group in engine_groups(job.options.variants) for v in group]
    engines = EngineRotation(start, order, log=job.say)  # type: ignore[arg-type]
    scored: dict[str, list[PositionLogprobs]] = {}
    reports: dict[str, Any] = {}
    try:
        for variant in order:
            engine = engines.ready(variant)  # type: ignore[arg-type]
            reports[variant] = engine.report.model_dump(mode="json")
            job.say(f"{variant}: embedder verified; scoring {len(kept)} sample(s)")
            pairs = ((answered[item.sample.id], image) for item, image in job.images(kept))
            scores = engine.score(
                pairs, top_k=job.options.vllm_top_k, image_token_id=image_token_id, seed=base.seed
            )
            scored[variant] = _positions(answers, list(scores))
    finally:
        engines.close()
    notes = list(engines.notes)
    switched = [v for v in order if v in SWITCHABLE]
    if engines.can_switch and len(switched) > 1:
        notes.append(
            f"{' and '.join(switched)}: one engine, the embedder switched in place after its "
            "self-check (caches reset, variant re-verified from inside the engine)"
        )
    notes.append(f"model loads: {engines.loads}")
    return {v: scored[v] for v in job.options.variants}, reports, notes


def run_parity(config: RunConfig, options: ParityOptions, *, quiet: bool = False) -> ParityResult:
    """Score the reference's answers under every variant and write the parity outputs."""
    options.check()
    out = require_out(config)
    out.mkdir(parents=True, exist_ok=True)
    started = utc_now()
    template = load_template(config.prompt.template)
    language = config.data.selection.language
    data, selected, exclusions = open_selection(config)
    if not selected:
        raise UserError("the data selection holds no sample to score")
    items = [
        _Item(s, render_messages(template, instruction_for(s, language) or "")) for s in selected
    ]
    budget = image_budget(config.engine)
    job = _Job(config, options, template, budget, items, data.root, out, quiet)
    answers, skipped, image_token_id, switches = _reference_pass(job)
    if not answers:
        raise UserError(f"no sample could be scored by the reference: {skipped}")
    scored, reports, notes = _engine_passes(job, answers, image_token_id)
    tolerance = tolerance_for(config, options)
    checks: list[SwitchCheck] = []
    if options.check_switches and tolerance is not None:
        first = build_report(scored, tolerance=tolerance)
        if not first.within_tolerance:
            # pre is HF's own formula: what moves it towards HF lies outside the embedder.
            probe = "pre" if "pre" in scored else first.closest or options.variants[0]
            checks = _switch_checks(job, switches, probe, scored[probe], answers, image_token_id)
    files_hash = fingerprint_dataset(data.root, [i.sample for i in items])
    settings = {
        "model": config.engine.model,
        "revision": config.engine.revision,
        "vllm_dtype": config.engine.dtype,
        "reference_dtype": options.reference_dtype,
        "reference_device": options.reference_device,
        "samples": len(answers),
        "top_k": options.top_k,
        "vllm_top_k": options.vllm_top_k,
        "answer_tokens": options.answer_tokens,
        "image_budget": budget,
        "prompt": f"{template.name} ({template.content_hash})",
        "data": data.source if str(data.root) == data.source else f"{data.source} ({data.root})",
        "variants": list(options.variants),
        "overrides": options.overrides,
        "kl_definition": KL_DEFINITION,
        "sample_ids": [a.sample_id for a in answers],
        "answer_lengths": {a.sample_id: len(a.answer_ids) for a in answers},
        "answers_cut_before_a_placeholder": [a.sample_id for a in answers if a.cut],
        "skipped": skipped,
        "selection_exclusions": [e.model_dump(mode="json") for e in exclusions],
        "dataset_revision": data.revision,
        "dataset_files": files_hash,
        "engine_reports": reports,
        "llm_kwargs": llm_kwargs(engine_settings(config, options, budget)),
        "notes": notes,
        "config": config.to_record(),
        "environment": environment().model_dump(mode="json"),
        "started_at": started,
        "ended_at": utc_now(),
    }
    report = build_report(scored, settings, tolerance=tolerance, switch_checks=checks)
    files = write_parity(out, report, scored)
    return ParityResult(out=out, report=report, files=files, terminal=render_terminal(report))


def describe_parity(config: RunConfig, options: ParityOptions) -> dict[str, Any]:
    """What ``parity --print-config`` shows: the run configuration, the parity options and the
    exact ``vllm.LLM`` arguments (per engine, only ``norm`` differs)."""
    options.check()
    budget = image_budget(config.engine)
    described = describe_config(config)
    described["llm_kwargs"] = llm_kwargs(engine_settings(config, options, budget))
    described["parity"] = {
        "variants": list(options.variants),
        "engines": [list(g) for g in engine_groups(options.variants)],
        "reference_device": options.reference_device,
        "reference_dtype": options.reference_dtype,
        "top_k": options.top_k,
        "vllm_top_k": options.vllm_top_k,
        "answer_tokens": options.answer_tokens,
        "image_budget": budget,
        "overrides": options.overrides,
        "check_switches": options.check_switches,
    }
    return described
