"""``verify-embedder``: load the model once per variant and report what the engine runs."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import BaseModel

from screenspot_eval.backends.variant import EmbedderReport, VariantMismatchError, check_variant
from screenspot_eval.backends.vllm.engine_args import EngineSettings


class VariantCheck(BaseModel):
    requested: str
    report: EmbedderReport | None
    error: str | None
    # Greedy first-token top-k logprobs on the probe image: different variants, different numbers.
    probe_logprobs: dict[int, float] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def verify_variants(
    base: EngineSettings,
    variants: Iterable[str],
    on_result: Callable[[VariantCheck], None] | None = None,
    *,
    log_file: Path | None = None,
    verbose: bool = False,
) -> list[VariantCheck]:
    """One engine per variant, started and shut down in turn (memory is released between);
    their logs go to ``log_file`` (and the terminal too when ``verbose``)."""
    from screenspot_eval.backends.vllm.engine import VllmEngine

    results = []
    for variant in variants:
        settings = base.model_copy(update={"norm": variant})
        engine = VllmEngine(settings, verify=False, log_file=log_file, verbose=verbose)
        try:
            report = engine.read_embedder_report(with_hf_reference=True)
            logprobs = engine.probe_logprobs()
        finally:
            engine.close()
        error = None
        try:
            check_variant(variant, report)  # type: ignore[arg-type]
        except VariantMismatchError as exc:
            error = str(exc)
        result = VariantCheck(
            requested=variant, report=report, error=error, probe_logprobs=logprobs
        )
        results.append(result)
        if on_result:
            on_result(result)
    return results


def format_check(check: VariantCheck) -> str:
    status = "OK" if check.ok else "MISMATCH"
    lines = [f"[{status}] requested {check.requested}"]
    if check.report is not None:
        for e in check.report.embedders:
            hf = (
                f", max |diff| vs HF reference (fp32) = {e.hf_reference_max_abs_diff:.3g}"
                if e.hf_reference_max_abs_diff is not None
                else ""
            )
            lines.append(
                f"    {e.attribute}: class {e.class_path}\n"
                f"      placement {e.measured_placement} (declared {e.declared_placement}), "
                f"norm width {e.norm_width} (tower {e.in_dim} -> text {e.out_dim}){hf}"
            )
        lines.extend(
            f"    {name}: not loaded (its modality is off)" for name in check.report.not_loaded
        )
    if check.probe_logprobs:
        token, logprob = max(check.probe_logprobs.items(), key=lambda kv: kv[1])
        lines.append(f"    probe: greedy first token {token}, logprob {logprob:.6f}")
    if check.error:
        lines.append(f"    error: {check.error}")
    return "\n".join(lines)


def max_logprob_difference(a: VariantCheck, b: VariantCheck) -> float | None:
    """Max |logprob difference| over the tokens both probes returned (None if none shared)."""
    if not a.probe_logprobs or not b.probe_logprobs:
        return None
    shared = set(a.probe_logprobs) & set(b.probe_logprobs)
    if not shared:
        return None
    return max(abs(a.probe_logprobs[t] - b.probe_logprobs[t]) for t in shared)


def compare_probes(results: list[VariantCheck]) -> list[str]:
    """One line per pair of variants: how far apart their probe logprobs are."""
    lines = []
    for i, a in enumerate(results):
        for b in results[i + 1 :]:
            diff = max_logprob_difference(a, b)
            if diff is not None:
                lines.append(
                    f"probe logprobs {a.requested} vs {b.requested}: max |diff| = {diff:.3g}"
                )
    return lines


def verify_and_report(
    base: EngineSettings,
    variants: list[str],
    *,
    json_out: Path | None = None,
    echo: Callable[[str], None] = print,
    log_file: Path | None = None,
    verbose: bool = False,
) -> list[VariantCheck]:
    """``screenspot-eval verify-embedder``: check each variant inside a fresh engine, print the
    findings, write them to ``json_out``; raise :class:`VariantMismatchError` naming every
    variant the engine did not run as asked."""
    if log_file is None:
        log_file = Path(tempfile.gettempdir()) / f"screenspot-verify-{os.getpid()}.vllm.log"
    where = "the terminal and " if verbose else ""
    echo(f"checking {', '.join(variants)} inside vLLM; its logs go to {where}{log_file}")
    results = verify_variants(
        base,
        variants,
        on_result=lambda r: echo(format_check(r)),
        log_file=log_file,
        verbose=verbose,
    )
    for line in compare_probes(results):
        echo(line)
    if json_out is not None:
        json_out.write_text(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
    failed = [r.requested for r in results if not r.ok]
    if failed:
        raise VariantMismatchError(f"embedder verification FAILED for: {', '.join(failed)}")
    echo(f"all {len(results)} variant(s) verified inside the engine")
    return results
