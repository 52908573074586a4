"""A/B of a declared engine-side factor: prove it reached the model and changes it, then run.

Two sides whose settings differ need an engine each (the model is built differently), started
one at a time. Before the first sample, each side's engine reports every factor setting as it
built the model (:meth:`EngineHandle.read_settings`) and answers a probe image: a side whose
setting did not reach the model is refused, and so is a factor that reaches it but changes
nothing the engine computes (the same probe logprobs on both sides), which would otherwise be
reported as a 0.0 pp effect. Order: A is started for its proof and closed, B is started,
proven, and runs its passes, then A is started again for its passes (three model loads, one
engine at a time).

For servers the factor is the vLLM installation (``--factor vllm``): both endpoints'
provenances are read before the first sample; they must differ in the release and in nothing
else that can change an answer.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from screenspot_eval.backends.engines import EngineHandle, EngineSettings
from screenspot_eval.backends.provenance import EngineProvenance, provenance_differences
from screenspot_eval.backends.sides import (
    DEFAULT_MARKERS,
    EMBEDDER,
    SettingReading,
    SideSettings,
    allowed_paths,
    describe_factor,
    explained,
    probe_difference,
    require_applied,
    require_effect,
    setting_value,
)
from screenspot_eval.errors import UserError
from screenspot_eval.run.repeats import Pass, borrowing, engine_starter, run_passes
from screenspot_eval.run.session import RunResult

FRESH_ENGINES = (
    "fresh engine per side (their settings differ), one at a time: A proven, B proven and run, "
    "A run"
)


class FactorMismatchError(UserError, ValueError):
    """The two sides differ in something other than the declared factor, or not in it."""


def is_default(value: Any) -> bool:
    """A value the side did not set (the checkpoint's or vLLM's own)."""
    return isinstance(value, str) and value in DEFAULT_MARKERS


def setting_keys(factor: dict[str, Any]) -> list[str]:
    return [key for key in factor if key != EMBEDDER]


def requested(engine: EngineSettings, keys: list[str]) -> dict[str, Any]:
    """What a side's engine settings (its own laid over the shared ones) ask each factor
    setting to be; a marker where neither sets it (the checkpoint's or vLLM's own value)."""
    return {key: setting_value(engine, {}, key) for key in keys}


def prove_side(engine: EngineHandle, name: str, wanted: dict[str, Any]) -> list[SettingReading]:
    """The side's factor settings read inside its engine; refused unless each reached the model."""
    readings = [
        r.model_copy(update={"reached": True}) if is_default(r.requested) else r
        for r in engine.read_settings(wanted)
    ]
    require_applied(name, readings)
    return readings


def require_built_differently(
    readings_a: list[SettingReading], readings_b: list[SettingReading]
) -> None:
    """Refuse a factor setting the two engines resolved to the same value."""
    for a, b in zip(readings_a, readings_b, strict=True):
        if a.resolved == b.resolved:
            raise FactorMismatchError(
                f"{a.key} resolves to {a.resolved!r} on both sides ({a.where}): it is no "
                "factor here; drop it from --a-set / --b-set"
            )


def as_built(
    factor: dict[str, Any], readings_a: list[SettingReading], readings_b: list[SettingReading]
) -> dict[str, Any]:
    """The factor as the two engines built it (``dtype`` ``auto`` made concrete, a value left
    to the checkpoint read from the model's config): what the headline and manifests show."""
    built = dict(factor)
    for a, b in zip(readings_a, readings_b, strict=True):
        built[a.key] = (a.resolved, b.resolved)
    return built


def run_factor_sides(
    passes_a: list[Pass],
    passes_b: list[Pass],
    sides: tuple[SideSettings, SideSettings],
    factor: dict[str, Any],
    out: Path,
    log: Any,
    **kwargs: Any,
) -> tuple[list[RunResult], list[RunResult], list[str]]:
    """Both sides on fresh engines, each proven from inside before any sample runs."""
    a, b = sides
    engine_a, engine_b = passes_a[0].config.engine, passes_b[0].config.engine
    keys = setting_keys(factor)
    start_a = engine_starter(passes_a[0].config, out)
    start_b = engine_starter(passes_b[0].config, out)
    engine = start_a(a.variant)
    try:
        readings_a = prove_side(engine, "A", requested(engine_a, keys))
        probe_a = engine.probe_logprobs()
        provenance_a = engine.provenance
    finally:
        engine.close()
    engine = start_b(b.variant)
    try:
        readings_b = prove_side(engine, "B", requested(engine_b, keys))
        require_built_differently(readings_a, readings_b)
        factor = as_built(factor, readings_a, readings_b)
        probe = require_effect(
            factor,
            probe_difference(probe_a, engine.probe_logprobs()),
            [
                f"{name}: {r.detail}"
                for name, rs in (("A", readings_a), ("B", readings_b))
                for r in rs
                if r.detail
            ],
        )
        resolved = resolved_differences(provenance_a, engine.provenance)
        log(f"factor {describe_factor(factor)}: proven inside both engines; {probe}")
        record_b = side_record("B", b, factor, readings_b, probe, resolved)
        results_b = run_passes(
            [replace(p, side=record_b) for p in passes_b],
            backend_factory=borrowing(engine),
            **kwargs,
        )
    finally:
        engine.close()
    record_a = side_record("A", a, factor, readings_a, probe, resolved)
    engine = start_a(a.variant)
    try:
        again = prove_side(engine, "A", requested(engine_a, keys))
        if [r.resolved for r in again] != [r.resolved for r in readings_a]:
            raise FactorMismatchError(
                "side A's engine, started again for its samples, built the model differently "
                f"from the one proven first: {[r.describe() for r in again]}"
            )
        results_a = run_passes(
            [replace(p, side=record_a) for p in passes_a],
            backend_factory=borrowing(engine),
            **kwargs,
        )
    finally:
        engine.close()
    notes = [
        f"factor {describe_factor(factor)}: {FRESH_ENGINES}; {probe}",
        *(
            [f"the engines resolved from the factor: {', '.join(resolved)} differ"]
            if resolved
            else []
        ),
        *(f"A: {r.describe()}" for r in readings_a),
        *(f"B: {r.describe()}" for r in readings_b),
    ]
    return results_a, results_b, notes


def resolved_differences(a: EngineProvenance | None, b: EngineProvenance | None) -> list[str]:
    """Provenance fields in which the two proven engines differ. Both were started from the
    same settings but the factor, so the factor decided them (on a GPU, image ranges can change
    the attention backend vLLM picks): the comparison allows them and lists them."""
    return [d.field for d in provenance_differences(a, b) if d.changes_outcomes]


def side_record(
    name: str,
    side: SideSettings,
    factor: dict[str, Any],
    readings: list[SettingReading],
    probe: str,
    resolved: list[str],
) -> dict[str, Any]:
    """The manifest's ``side`` entry: everything that says what this side was and ran."""
    return {
        "name": name,
        "variant": side.variant,
        "settings": side.settings,
        "factor": {key: list(values) for key, values in factor.items()},
        "readings": [r.model_dump(mode="json") for r in readings],
        "probe": probe,
        "resolved_from_factor": resolved,
        "engines": FRESH_ENGINES,
    }


def check_server_factor(
    factor: tuple[str, ...],
    provenance_a: EngineProvenance | None,
    provenance_b: EngineProvenance | None,
) -> str:
    """Before the first sample against two servers: their provenances must differ in the
    declared factor and in nothing else that can change an answer. Returns the factor line."""
    if provenance_a is None or provenance_b is None:
        raise FactorMismatchError(
            "--factor needs both servers' engine provenance (serve them with "
            "`screenspot-eval serve`, which adds the /screenspot/engine route)"
        )
    paths = allowed_paths(factor)
    changed = [d for d in provenance_differences(provenance_a, provenance_b) if d.changes_outcomes]
    undeclared = [d.describe() for d in changed if not explained(d.describe(), paths)]
    if undeclared:
        raise FactorMismatchError(
            f"the servers differ in more than the declared factor ({', '.join(factor)}):\n  "
            + "\n  ".join(undeclared)
        )
    declared = [d.describe() for d in changed]
    if not declared:
        raise FactorMismatchError(
            f"the declared factor ({', '.join(factor)}) does not differ between the servers "
            f"(both vLLM {provenance_a.vllm_version}); nothing to A/B"
        )
    return "; ".join(declared)
