"""Parity statistics: how close each variant's logprobs are to HF transformers'.

Pure (plain numbers in, numbers and a verdict out; :mod:`screenspot_eval.report.parity` writes
the files). One :class:`PositionLogprobs` is one answer
position of one sample: the reference token there (HF's greedy answer, teacher-forced), its
logprob under HF and under the variant, and both sides' top tokens. Per variant:

- ``max_abs_delta`` / ``mean_abs_delta``: |variant logprob - HF logprob| of the reference token,
  over every sample and answer position;
- ``first_max_abs_delta`` / ``first_mean_abs_delta``: the same at the first answer position only;
- ``mean_kl`` / ``max_kl``: KL(HF || variant) over **HF's top-k tokens**, both distributions
  renormalised over that set (:func:`topk_kl`); a token of HF's top-k that the variant did not
  return gets the variant's lowest returned logprob at that position (an upper bound on its
  true value) and is counted in ``kl_imputed``;
- ``first_token_agreement``: the share of samples whose greedy first token (argmax at the first
  answer position) is the same under the variant as under HF.

The verdict names the variant with the smallest ``mean_abs_delta`` and, where both sides ran
in fp32, whether it is within :data:`FP32_TOLERANCE` on the first-token max and the mean
|delta|. When no variant is, the deviation lies outside the embedder, and a config switch the
engine ignores while the reference honours it (:class:`SwitchCheck`) is named.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: |delta logprob| that fp32 on both sides stays under when they compute the same function
#: (seen: ~5e-7 on every family twin whose engine matches HF).
FP32_TOLERANCE = 1e-5

KL_DEFINITION = (
    "KL(HF || vLLM) over HF's top-k tokens at each answer position, both distributions "
    "renormalised over that set; a top-k token vLLM did not return takes vLLM's lowest "
    "returned logprob there (counted in kl_imputed)"
)


@dataclass(frozen=True)
class PositionLogprobs:
    """One answer position of one sample, scored by the reference and by one variant."""

    sample_id: str
    position: int  # 0 = the first answer token
    token: int  # the reference token (HF's greedy answer)
    ref_logprob: float
    test_logprob: float
    ref_top: Mapping[int, float]  # HF's top-k: token -> logprob
    test_top: Mapping[int, float]  # what the variant returned: token -> logprob


@dataclass(frozen=True)
class VariantParity:
    """The summary of one variant against the reference."""

    variant: str
    samples: int
    positions: int
    max_abs_delta: float
    mean_abs_delta: float
    first_max_abs_delta: float
    first_mean_abs_delta: float
    mean_kl: float
    max_kl: float
    kl_imputed: int
    first_token_agreement: float
    first_token_agree_n: int


@dataclass(frozen=True)
class SwitchCheck:
    """A config switch set to null on both sides: how much each side's logprobs move.

    ``engine_change`` / ``reference_change``: max |logprob with the switch - without| of the
    reference tokens, in vLLM (the closest variant) and in HF. ``off_mean`` / ``off_first_max``:
    |vLLM - HF| with the switch null on both sides."""

    key: str
    value: Any
    variant: str
    engine_change: float
    reference_change: float
    off_mean: float
    off_first_max: float

    @property
    def ignored_by_engine(self) -> bool:
        """The engine computes the same with and without it while the reference does not."""
        return self.engine_change <= FP32_TOLERANCE / 10 and self.reference_change > FP32_TOLERANCE

    def within(self, tolerance: float) -> bool:
        return within_rule(self.off_first_max, self.off_mean, tolerance)

    def describe(self, tolerance: float) -> str:
        name = f"{self.key}={self.value!r}"
        off = (
            f"with it null on both sides {self.variant} "
            f"{'is' if self.within(tolerance) else 'is still not'} within the tolerance "
            f"(mean {self.off_mean:.3g}, first-token max {self.off_first_max:.3g})"
        )
        if self.ignored_by_engine:
            return (
                f"vLLM ignores {name}: its logprobs are the same with the switch null "
                f"(max change {self.engine_change:.3g}) while HF's move by up to "
                f"{self.reference_change:.3g}; {off}"
            )
        return (
            f"{name}: null moves vLLM's logprobs by up to {self.engine_change:.3g} and HF's by "
            f"{self.reference_change:.3g}; {off}"
        )


@dataclass
class ParityReport:
    """Every variant's summary, the verdict, and the settings the numbers were made with.

    ``tolerance``: the fp32 tolerance the verdict applied (None: a 16-bit side, none applied)."""

    variants: list[VariantParity]
    verdict: str
    closest: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    tolerance: float | None = None
    switch_checks: list[SwitchCheck] = field(default_factory=list)

    @property
    def within_tolerance(self) -> list[str]:
        """The variants within the tolerance (empty where none was applied)."""
        if self.tolerance is None:
            return []
        return [s.variant for s in self.variants if is_within(s, self.tolerance)]


def within_rule(first_max: float, mean: float, tolerance: float) -> bool:
    """The tolerance rule: first-token max and mean |delta logprob| both within it."""
    return first_max <= tolerance and mean <= tolerance


def is_within(summary: VariantParity, tolerance: float) -> bool:
    return within_rule(summary.first_max_abs_delta, summary.mean_abs_delta, tolerance)


def argmax_token(top: Mapping[int, float]) -> int:
    """The most likely token of a top-k map (ties: the smaller token id, as argmax does)."""
    if not top:
        raise ValueError("an empty top-k has no argmax")
    return min(top, key=lambda token: (-top[token], token))


def _log_normalise(logprobs: Sequence[float]) -> list[float]:
    peak = max(logprobs)
    log_total = peak + math.log(sum(math.exp(lp - peak) for lp in logprobs))
    return [lp - log_total for lp in logprobs]


def topk_kl(ref_top: Mapping[int, float], test_top: Mapping[int, float]) -> tuple[float, int]:
    """KL(ref || test) over ``ref_top``'s tokens, both renormalised over them (nats), and the
    number of those tokens ``test_top`` lacked (imputed with its lowest returned logprob)."""
    tokens = sorted(ref_top)
    if not tokens:
        return 0.0, 0
    floor = min(test_top.values()) if test_top else -math.inf
    missing = sum(token not in test_top for token in tokens)
    p = _log_normalise([ref_top[t] for t in tokens])
    q = _log_normalise([test_top.get(t, floor) for t in tokens])
    kl = sum(math.exp(lp) * (lp - lq) for lp, lq in zip(p, q, strict=True))
    return max(kl, 0.0), missing


def summarise(variant: str, positions: Sequence[PositionLogprobs]) -> VariantParity:
    """One variant's parity numbers over all its scored positions."""
    if not positions:
        raise ValueError(f"no scored positions for {variant}")
    deltas = [abs(p.test_logprob - p.ref_logprob) for p in positions]
    first = [p for p in positions if p.position == 0]
    first_deltas = [abs(p.test_logprob - p.ref_logprob) for p in first]
    kls = [topk_kl(p.ref_top, p.test_top) for p in positions]
    agree = sum(argmax_token(p.test_top) == argmax_token(p.ref_top) for p in first)
    return VariantParity(
        variant=variant,
        samples=len({p.sample_id for p in positions}),
        positions=len(positions),
        max_abs_delta=max(deltas),
        mean_abs_delta=sum(deltas) / len(deltas),
        first_max_abs_delta=max(first_deltas) if first_deltas else math.nan,
        first_mean_abs_delta=sum(first_deltas) / len(first_deltas) if first_deltas else math.nan,
        mean_kl=sum(kl for kl, _ in kls) / len(kls),
        max_kl=max(kl for kl, _ in kls),
        kl_imputed=sum(missing for _, missing in kls),
        first_token_agreement=agree / len(first) if first else math.nan,
        first_token_agree_n=agree,
    )


def _ratio(smaller: float, larger: float) -> str:
    if smaller <= 0.0:
        return "infinitely" if larger > 0.0 else "not"
    ratio = larger / smaller
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.3g}x"


def verdict(summaries: Sequence[VariantParity]) -> tuple[str | None, str]:
    """The variant closest to the reference (smallest mean |delta logprob|) and a sentence
    saying by how much it beats the next one.

    Variants with exactly the same mean (``native`` runs upstream's pre-norm embedder, so on
    vLLM >= 0.20 it ties with ``pre`` bit for bit) are named together; the first of them in
    the order scored is the one returned."""
    if not summaries:
        return None, "no variant was scored"
    ranked = sorted(summaries, key=lambda s: s.mean_abs_delta)  # stable: ties keep the order
    best = ranked[0]
    tied = [s for s in ranked[1:] if s.mean_abs_delta == best.mean_abs_delta]
    rest = ranked[1 + len(tied) :]
    line = f"closest to the HF reference: {best.variant}"
    if tied:
        line += f" (tied with {', '.join(s.variant for s in tied)}: identical logprob deltas)"
    line += (
        f", mean |delta logprob| {best.mean_abs_delta:.3g}, "
        f"first-token max {best.first_max_abs_delta:.3g}"
    )
    if not rest:
        return best.variant, line + ("; the only variant scored" if not tied else "")
    nxt = rest[0]
    return best.variant, (
        f"{line}; next {nxt.variant} at {nxt.mean_abs_delta:.3g}, "
        f"{_ratio(best.mean_abs_delta, nxt.mean_abs_delta)} larger"
    )


TOLERANCE_RULE = "on the first-token max and the mean |delta logprob|"
#: pre is HF's own embedder formula (native runs it too on vLLM >= 0.20): a deviation they
#: share cannot come from the norm placement.
HF_FORMULA_VARIANTS = frozenset({"pre", "native"})


def tolerance_verdict(
    summaries: Sequence[VariantParity],
    tolerance: float | None,
    switch_checks: Sequence[SwitchCheck] = (),
) -> tuple[str | None, str]:
    """:func:`verdict`, prefixed by what the tolerance says: which variants are within it, or
    that none is, where the deviation lies, and each switch check's finding."""
    closest, line = verdict(summaries)
    if tolerance is None or closest is None:
        return closest, line + ("; no tolerance applied (a 16-bit side)" if closest else "")
    within = [s.variant for s in summaries if is_within(s, tolerance)]
    rule = f"the fp32 tolerance ({tolerance:g} {TOLERANCE_RULE})"
    if within:
        return (
            closest,
            f"{' and '.join(within)} {'is' if len(within) == 1 else 'are'} within {rule}; {line}",
        )
    text = f"no variant is within {rule}: {line.replace('closest to the HF reference: ', '', 1)}"
    text = text.replace(closest, f"{closest} is closest", 1)
    explained = any(c.ignored_by_engine and c.within(tolerance) for c in switch_checks)
    if closest in HF_FORMULA_VARIANTS or explained:
        text += "; the deviation lies outside the embedder"
    for check in switch_checks:
        text += f"; {check.describe(tolerance)}"
    return closest, text


def build_report(
    scored: Mapping[str, Sequence[PositionLogprobs]],
    settings: dict[str, Any] | None = None,
    *,
    tolerance: float | None = None,
    switch_checks: Sequence[SwitchCheck] = (),
) -> ParityReport:
    """Summaries in the order of ``scored`` (variant -> positions), and the verdict."""
    summaries = [summarise(variant, positions) for variant, positions in scored.items()]
    closest, line = tolerance_verdict(summaries, tolerance, switch_checks)
    return ParityReport(
        summaries, line, closest, dict(settings or {}), tolerance, list(switch_checks)
    )
