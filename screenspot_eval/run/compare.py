"""The A/B comparison: run two variants with identical settings, pair them, report.

Two ways in: :func:`run_ab` runs both variants (each a resumable ``run`` into ``OUT/a-<A>`` and
``OUT/b-<B>``) and then compares; :func:`compare_runs` compares two existing run folders.
Runs that differ in anything but the variant are refused unless explicitly allowed, and then
every difference is written into the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from screenspot_eval.backends.engines import EngineRotation
from screenspot_eval.backends.provenance import provenance_differences
from screenspot_eval.backends.sides import (
    EMBEDDER,
    HARNESS_SETTINGS,
    PROVENANCE_KEY,
    SideSettings,
    allowed_paths,
    apply_settings,
    describe_factor,
    engine_settings_of,
    explained,
    factor_of,
    harness_settings_of,
)
from screenspot_eval.backends.variant import SWITCHABLE, VARIANTS, Variant
from screenspot_eval.errors import BackendFailure, UserError
from screenspot_eval.report.comparison import render_terminal, write_comparison
from screenspot_eval.report.pairing import pair_records
from screenspot_eval.report.repeats import (
    compare_with_repeats,
    load_repeat_frames,
    repeats_markdown,
    write_repeats_comparison,
)
from screenspot_eval.report.run_exports import sample_cost
from screenspot_eval.run.config import (
    PromptSettings,
    RunConfig,
    describe_config,
    diff_settings,
    require_out,
)
from screenspot_eval.run.factor import run_factor_sides
from screenspot_eval.run.repeats import (
    Pass,
    borrowing,
    engine_starter,
    repeat_dirs,
    run_passes,
    run_side,
    side_passes,
)
from screenspot_eval.run.session import RunResult
from screenspot_eval.stats.paired import DEFAULT_N_RESAMPLES, DEFAULT_SEED
from screenspot_eval.stats.slices import compare_slices
from screenspot_eval.store.manifest import Manifest
from screenspot_eval.store.records import records_frame
from screenspot_eval.store.run_dir import RunDir, RunDirError

ENGINE_MODES: tuple[str, ...] = ("auto", "one", "two")


class OneEngineUnavailableError(BackendFailure, RuntimeError):
    """``--engines one`` was required but the in-place switch did not pass its self-check."""


class RunMismatchError(UserError, ValueError):
    """Two runs whose settings differ in more than the variant."""


@dataclass
class ComparisonResult:
    out: Path
    headline: str
    terminal: str
    files: dict[str, Path]
    notes: list[str] = field(default_factory=list)


def variant_label(variant: str) -> str:
    return f"{variant}-norm" if variant in ("pre", "post") else variant


def _load(run_dir: Path) -> tuple[Manifest, Any]:
    store = RunDir(run_dir)
    manifest = store.read_manifest()
    if manifest is None:
        raise RunDirError(f"{run_dir} has no manifest.json: is it a results folder of `run`?")
    records, _ = store.read_records()
    return manifest, records_frame(records)


def settings_differences(a: Manifest, b: Manifest) -> list[str]:
    """Everything but the variant that differs between two manifests and can change outcomes:
    the outcome settings, prompt, data and image budget, and the engine provenance fields of
    :data:`~screenspot_eval.backends.provenance.OUTCOME_FIELDS` (dtype, vLLM version, commit
    and build, torch, transformers, device, attention backend, batch invariance, compilation
    and CUDA-graph mode, eager, chunked prefill, tensor/pipeline split). The other provenance
    fields (max_num_seqs, prefix caching, ...) are listed by :func:`provenance_notes` only."""

    def comparable(m: Manifest) -> dict[str, Any]:
        settings = json.loads(json.dumps(m.outcome_settings))
        settings.get("engine", {}).pop("norm", None)
        if m.repeat is not None:  # a repeat's sampling seed is set by its plan (recorded)
            settings.get("sampling", {}).pop("seed", None)
        return {
            "settings": settings,
            "prompt_hash": m.prompt_hash,
            "dataset_content_hash": m.dataset.content_hash,
            "image_budget": m.image_budget,
        }

    engine = provenance_differences(a.engine_provenance, b.engine_provenance)
    changed = [d.describe() for d in engine if d.changes_outcomes]
    return diff_settings(comparable(a), comparable(b)) + changed


def provenance_notes(a: Manifest, b: Manifest) -> list[str]:
    """Report notes for the provenance differences that do not refuse a comparison, and for a
    side whose engine did not report its provenance."""
    notes = []
    listed = [
        d.describe()
        for d in provenance_differences(a.engine_provenance, b.engine_provenance)
        if not d.changes_outcomes
    ]
    if listed:
        notes.append(
            "Engine provenance differs in scheduling or caching only: " + "; ".join(listed)
        )
    unknown = [name for name, m in (("A", a), ("B", b)) if m.engine_provenance is None]
    if unknown:
        notes.append(f"Engine provenance unknown for {' and '.join(unknown)}: not compared")
    return notes


def declared_factor(
    a: Manifest, b: Manifest, given: tuple[str, ...] | list[str] | None
) -> dict[str, Any]:
    """The factor two runs may differ in: what their side records declare (key -> the two
    values), plus the keys given (``--factor``); empty for a plain embedder A/B."""
    factor: dict[str, Any] = {}
    if a.side and b.side and a.side.get("factor") == b.side.get("factor"):
        factor.update({k: tuple(v) for k, v in (a.side.get("factor") or {}).items()})
        resolved = a.side.get("resolved_from_factor") or ()
        if resolved == (b.side.get("resolved_from_factor") or ()):
            factor.update({f"{PROVENANCE_KEY}{field}": None for field in resolved})
    for key in given or ():
        factor.setdefault(key, None)
    return factor


def shown_factor(declared: dict[str, Any], a: Manifest, b: Manifest) -> dict[str, Any]:
    """The factor with its two values: a side's setting as recorded, and a factor given by
    name (``vllm``) as the provenance fields of it that differ (``transformers_version``)."""
    shown = {k: v for k, v in declared.items() if v is not None}
    given = [k for k, v in declared.items() if v is None and not k.startswith(PROVENANCE_KEY)]
    paths = allowed_paths(given)
    for d in provenance_differences(a.engine_provenance, b.engine_provenance):
        if explained(d.describe(), paths):
            shown[d.field] = (d.a, d.b)
    return shown


def side_label(variant: str, factor: dict[str, Any], index: int) -> str:
    """``pre-norm`` or, with a factor from the sides, ``pre-norm [dtype=bfloat16]``."""
    values = [
        f"{k}={json.dumps(v[index], default=str)}" for k, v in factor.items() if k != EMBEDDER
    ]
    label = variant_label(variant)
    return f"{label} [{', '.join(values)}]" if values else label


def compare_runs(
    run_a: Path,
    run_b: Path,
    out: Path,
    *,
    allow_mismatch: bool = False,
    shared_only: bool = False,
    seed: int = DEFAULT_SEED,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    notes: list[str] | None = None,
    factor: tuple[str, ...] | list[str] | None = None,
) -> ComparisonResult:
    """Pair two finished runs by sample id and write every comparison output into ``out``.

    A side that holds repeats (``r1..rK``) adds the comparison over all repeats (sign-flip
    test, interval over screenshots with all repeats, the A/A noise floor beside the A/B
    discordance: ``repeats.csv`` and a section of ``comparison.md``); the per-sample outputs
    (2x2 table, flips, per-slice tables with their screenshot-level p and McNemar) are those of
    the first repeats."""
    dirs_a, dirs_b = repeat_dirs(run_a), repeat_dirs(run_b)
    manifest_a, frame_a = _load(dirs_a[0])
    manifest_b, frame_b = _load(dirs_b[0])
    notes = list(notes or [])
    declared = declared_factor(manifest_a, manifest_b, factor)
    differences = settings_differences(manifest_a, manifest_b)
    factor_line = None
    shown = shown_factor(declared, manifest_a, manifest_b) if declared else {}
    if declared:
        paths = allowed_paths(declared)
        of_factor = [d for d in differences if explained(d, paths)]
        differences = [d for d in differences if not explained(d, paths)]
        if not of_factor and set(declared) - {EMBEDDER}:
            raise RunMismatchError(
                f"{run_a} and {run_b} do not differ in the declared factor "
                f"({', '.join(declared)}): nothing to A/B"
            )
        factor_line = describe_factor(shown)
        notes.append(f"declared factor: {'; '.join(of_factor)}")
    what = f"the declared factor ({', '.join(declared)})" if declared else "the embedder variant"
    if differences and not allow_mismatch:
        listed = "\n  ".join(differences)
        raise RunMismatchError(
            f"{run_a} and {run_b} differ in more than {what}:\n  {listed}\n"
            "compare runs made with identical settings, declare the factor, or pass "
            "--allow-mismatch"
        )
    if differences:
        notes.append("Settings differ (allowed by --allow-mismatch): " + "; ".join(differences))
    notes.extend(provenance_notes(manifest_a, manifest_b))
    for name, manifest in ((run_a, manifest_a), (run_b, manifest_b)):
        if manifest.status != "complete":
            notes.append(f"{name} is not complete (status {manifest.status})")
    var_a, var_b = manifest_a.effective_variant, manifest_b.effective_variant
    label_a = side_label(str(var_a), shown, 0)
    label_b = side_label(str(var_b), shown, 1)
    if label_a == label_b:
        label_a, label_b = f"A ({run_a.name})", f"B ({run_b.name})"
    costs = f"cost per sample: A {sample_cost(frame_a)}; B {sample_cost(frame_b)}"
    notes.append(costs)
    paired = pair_records(frame_a, frame_b, shared_only=shared_only)
    comparison = compare_slices(paired.frame, seed=seed, n_resamples=n_resamples)
    root = manifest_b.dataset.root
    notes.append(
        f"A = {run_a} (variant {var_a}), B = {run_b} (variant {var_b}); "
        f"structured decoding {'on' if manifest_a.structured_decoding else 'off'}"
    )
    control = manifest_a.requested_variant == manifest_b.requested_variant and not declared
    headline = comparison.headline(label_a, label_b)
    repeated = None
    if len(dirs_a) > 1 or len(dirs_b) > 1:
        repeated = compare_with_repeats(
            load_repeat_frames(dirs_a),
            load_repeat_frames(dirs_b),
            seed=seed,
            n_resamples=n_resamples,
        )
        headline = repeated[0].headline(label_a, label_b)
        notes.append(f"{len(dirs_a)} repeat(s) of A, {len(dirs_b)} of B: {headline}")
        notes.append(repeated[0].noise_line())
        notes.append("the 2x2 table, flips and per-slice tables are those of the first repeats")
    if control:
        headline = f"A/A control ({manifest_a.requested_variant} twice): {headline}"
    elif factor_line:
        headline = f"factor {factor_line}: {headline}"
    out.mkdir(parents=True, exist_ok=True)
    files = write_comparison(
        out,
        paired,
        comparison,
        label_a=label_a,
        label_b=label_b,
        dataset_root=Path(root) if root else None,
        notes=notes,
    )
    terminal = render_terminal(comparison, label_a=label_a, label_b=label_b)
    if repeated is not None:
        overall, table = repeated
        files["repeats.csv"] = write_repeats_comparison(out, table)
        section = repeats_markdown(overall, table, headline)
        md = files.get("comparison.md", out / "comparison.md")
        md.write_text(md.read_text(encoding="utf-8") + "\n" + section, encoding="utf-8")
        terminal = f"{terminal}\n\n{headline}\n{overall.noise_line()}"
    elif control or factor_line:
        terminal = f"{headline}\n{terminal}"
    terminal = f"{terminal}\n{costs}"
    return ComparisonResult(out=out, headline=headline, terminal=terminal, files=files, notes=notes)


def side_config(
    config: RunConfig, side: SideSettings, out: Path, endpoint: str | None
) -> RunConfig:
    """The config of one side: the shared settings with the side's variant and settings laid
    over them, its own folder and (optional) server."""
    runtime = config.runtime
    if endpoint is not None:
        runtime = runtime.model_copy(update={"endpoints": (endpoint,)})
    engine = config.engine.model_copy(update={"norm": side.variant})
    engine = apply_settings(engine, engine_settings_of(side))
    harness = harness_settings_of(side)
    prompt = config.prompt
    if "protocol" in harness:
        prompt = PromptSettings.model_validate(
            {**prompt.model_dump(), "protocol": str(harness["protocol"])}
        )
    update = {"engine": engine, "runtime": runtime, "prompt": prompt, "out": str(out)}
    return config.model_copy(update=update)


def describe_sides(config: RunConfig, a: SideSettings, b: SideSettings) -> dict[str, Any]:
    """What ``compare --print-config`` shows: the shared configuration as one side resolves
    it, or, when the sides have settings of their own, each side's (with its vLLM arguments)."""
    if not (a.settings or b.settings):
        return describe_config(config)
    out = Path(config.out or ".")
    return {
        name: describe_config(side_config(config, side, out / f"{name}-{side.variant}", None))
        for name, side in (("a", a), ("b", b))
    }


@dataclass(frozen=True)
class SideRuns:
    """How :func:`run_ab` runs the two sides, declared once for it and :func:`compare_variants`
    (which checks ``engines`` and ``repeats`` and hands the rest on untouched)."""

    engines: str = "auto"  # one of ENGINE_MODES
    endpoint_a: str | None = None
    endpoint_b: str | None = None
    restart: bool = False
    quiet: bool = False
    resume_command: str | None = None
    log: Any = print
    repeats: int = 1
    factor: tuple[str, ...] = ()  # declared for servers: the provenance fields that may differ

    def pass_settings(self) -> dict[str, Any]:
        """What every pass of either side runs with (``run_passes`` / ``run_side`` keywords)."""
        return {"restart": self.restart, "quiet": self.quiet, "resume_command": self.resume_command}


def run_ab(
    config: RunConfig, a: SideSettings, b: SideSettings, out: Path, how: SideRuns = SideRuns()
) -> tuple[list[RunResult], list[RunResult], list[str]]:
    """Run A then B (each ``how.repeats`` times) with identical settings but the factor;
    returns both sides' runs and notes for the report. Sides that differ only in the embedder
    share one engine where the switch is proven; sides whose settings differ get an engine each
    (:mod:`screenspot_eval.run.factor`). Identical sides are an A/A control: at temperature > 0
    side B draws its own sampling seeds, so the control shows sampling noise rather than one
    draw twice."""
    factor = factor_of(a, b, config.engine, {"protocol": config.prompt.protocol})
    control = not factor and not how.factor
    dir_a, dir_b = out / f"a-{a.variant}", out / f"b-{b.variant}"
    passes_a = side_passes(side_config(config, a, dir_a, how.endpoint_a), dir_a, how.repeats)
    offset = how.repeats if control else 0
    passes_b = side_passes(
        side_config(config, b, dir_b, how.endpoint_b), dir_b, how.repeats, seed_offset=offset
    )
    kwargs = how.pass_settings()
    notes: list[str] = [f"A/A control: {a.describe()} on both sides"] if control else []
    in_process = not how.endpoint_a and not how.endpoint_b and not config.against_servers
    harness = set(factor) & set(HARNESS_SETTINGS)
    if harness:
        return _harness_sides(passes_a, passes_b, (a, b), factor, in_process, out, how)
    if (engine_settings_of(a) or engine_settings_of(b)) and not in_process:
        raise UserError(
            "--a-set / --b-set set the in-process engine; a server's settings are set where it "
            "is served (`screenspot-eval serve --engine-arg ...`): compare two servers with "
            "--endpoint-a / --endpoint-b and declare what differs with --factor"
        )
    if how.factor and (a.settings or b.settings):
        raise UserError(
            "--factor declares what differs between two servers or two run folders; in-process "
            "sides declare it with their own settings (--a-set / --b-set)"
        )
    if set(factor) - {EMBEDDER}:  # the model is built differently: an engine per side
        if how.engines == "one":
            raise UserError(
                f"the sides differ in engine settings ({describe_factor(factor)}): each needs "
                "an engine of its own; use --engines auto or two"
            )
        return run_factor_sides(passes_a, passes_b, (a, b), factor, out, how.log, **kwargs)
    if how.factor:
        how.log(_server_factor(passes_a[0].config, passes_b[0].config, how.factor))
    variant_a, variant_b = a.variant, b.variant
    one_possible = in_process and (control or ({variant_a, variant_b} <= SWITCHABLE))
    if how.engines == "one" and not one_possible:
        raise UserError(
            "--engines one needs the in-process engine and the variants pre and post "
            "(or the same variant twice, an A/A control)"
        )
    if one_possible and how.engines != "two":
        shared = _one_engine(passes_a, passes_b, variant_a, variant_b, kwargs, how.log, out)
        if shared is not None:
            return shared[0], shared[1], [*notes, shared[2]]
        if how.engines == "one":
            raise OneEngineUnavailableError(
                "the one-engine self-check failed (see above); use --engines two or auto"
            )
        notes.append("one-engine self-check failed: ran two engines instead")
    results_a = run_side(passes_a, out, **kwargs)
    results_b = run_side(passes_b, out, **kwargs)
    if in_process:
        notes.append("two engines: the model was loaded once per variant")
    return results_a, results_b, notes


def _harness_sides(
    passes_a: list[Pass],
    passes_b: list[Pass],
    sides: tuple[SideSettings, SideSettings],
    factor: dict[str, Any],
    in_process: bool,
    out: Path,
    how: SideRuns,
) -> tuple[list[RunResult], list[RunResult], list[str]]:
    """Sides that differ in a harness setting (the protocol) only: one engine (or the same
    servers) for both, each side's manifest recording the factor it ran."""
    a, b = sides
    others = sorted(set(factor) - set(HARNESS_SETTINGS))
    if others or how.factor:
        raise UserError(
            f"the sides differ in {describe_factor(factor)}: an A/B of the protocol has no "
            "second factor; give both sides the same variant and engine settings"
        )
    if how.engines == "two":
        raise UserError("a protocol A/B runs both sides on one engine; drop --engines two")
    shown = {key: list(values) for key, values in factor.items()}
    line = f"factor {describe_factor(factor)}: one engine, the harness differs"
    how.log(line)

    def marked(passes: list[Pass], name: str, side: SideSettings) -> list[Pass]:
        record = {"name": name, "variant": side.variant, "settings": side.settings}
        return [replace(p, side={**record, "factor": shown}) for p in passes]

    passes_a, passes_b = marked(passes_a, "A", a), marked(passes_b, "B", b)
    kwargs = how.pass_settings()
    if not in_process:
        return run_side(passes_a, out, **kwargs), run_side(passes_b, out, **kwargs), [line]
    shared = _one_engine(passes_a, passes_b, a.variant, b.variant, kwargs, how.log, out)
    assert shared is not None  # the same variant on both sides: no switch to self-check
    return shared[0], shared[1], [line, shared[2]]


def _server_factor(config_a: RunConfig, config_b: RunConfig, factor: tuple[str, ...]) -> str:
    """Both servers' provenances, checked against the declared factor before any sample."""
    from screenspot_eval.backends.http.server import fetch_engine_provenance
    from screenspot_eval.run.factor import check_server_factor

    if not (config_a.against_servers and config_b.against_servers):
        raise UserError("--factor names what differs between two servers: give --endpoint-a/-b")
    key = config_a.runtime.api_key
    found = [fetch_engine_provenance(c.runtime.endpoints[0], key) for c in (config_a, config_b)]
    line = check_server_factor(factor, found[0], found[1])
    return f"declared factor {', '.join(factor)}: {line}"


def _one_engine(
    passes_a: list[Pass],
    passes_b: list[Pass],
    a: Variant,
    b: Variant,
    kwargs: dict[str, Any],
    log: Any,
    out: Path,
) -> tuple[list[RunResult], list[RunResult], str] | None:
    """Both sides from one engine (switched in place after its self-check); None when the
    self-check fails (the caller then runs two engines)."""
    rotation = EngineRotation(engine_starter(passes_a[0].config, out), (a, b), log=log)
    try:
        rotation.ready(a)
        if a != b and not rotation.can_switch:
            return None
        results_a = run_passes(passes_a, backend_factory=borrowing(rotation.ready(a)), **kwargs)
        results_b = run_passes(passes_b, backend_factory=borrowing(rotation.ready(b)), **kwargs)
    finally:
        rotation.close()
    if a == b:
        return results_a, results_b, "one engine: model loaded once; one engine for both sides"
    return (
        results_a,
        results_b,
        f"one engine: model loaded once, embedder switched in place; {rotation.check_message}",
    )


def compare_variants(
    config: RunConfig,
    a: SideSettings,
    b: SideSettings,
    how: SideRuns = SideRuns(),
    *,
    seed: int = DEFAULT_SEED,
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> ComparisonResult:
    """``screenspot-eval compare --a A --b B [--a-set/--b-set KEY=VALUE] [--repeats K]``: run
    both sides (K times each) into ``config.out``, compare."""
    for name, side in (("--a", a), ("--b", b)):
        if side.variant not in VARIANTS:
            raise UserError(f"{name} must be one of {', '.join(VARIANTS)}, not {side.variant!r}")
    if how.engines not in ENGINE_MODES:
        raise UserError(f"--engines must be one of {', '.join(ENGINE_MODES)}, not {how.engines!r}")
    out = require_out(config)
    if how.repeats < 1:
        raise UserError(f"--repeats must be at least 1, not {how.repeats}")
    _, _, notes = run_ab(config, a, b, out, how)
    return compare_runs(
        out / f"a-{a.variant}",
        out / f"b-{b.variant}",
        out,
        notes=notes,
        factor=how.factor or None,
        seed=seed,
        n_resamples=n_resamples,
    )
