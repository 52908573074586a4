"""Parity outputs: ``parity.csv``, ``parity_positions.csv``, ``parity.md``, ``parity.json`` and
the terminal lines, from the statistics of :mod:`screenspot_eval.stats.parity`."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from screenspot_eval.report.csv_export import write_csv
from screenspot_eval.report.run_exports import markdown_table
from screenspot_eval.stats.parity import (
    KL_DEFINITION,
    TOLERANCE_RULE,
    ParityReport,
    PositionLogprobs,
    argmax_token,
    topk_kl,
)

PARITY_CSV = "parity.csv"
PARITY_MD = "parity.md"
PARITY_JSON = "parity.json"
POSITIONS_CSV = "parity_positions.csv"


def parity_frame(report: ParityReport) -> pd.DataFrame:
    """One row per variant (``parity.csv``)."""
    return pd.DataFrame([asdict(s) for s in report.variants])


def positions_frame(scored: Mapping[str, Iterable[PositionLogprobs]]) -> pd.DataFrame:
    """One row per variant, sample and answer position (``parity_positions.csv``)."""
    rows = []
    for variant, positions in scored.items():
        for p in positions:
            kl, missing = topk_kl(p.ref_top, p.test_top)
            rows.append(
                {
                    "variant": variant,
                    "sample_id": p.sample_id,
                    "position": p.position,
                    "token": p.token,
                    "ref_logprob": p.ref_logprob,
                    "vllm_logprob": p.test_logprob,
                    "abs_delta": abs(p.test_logprob - p.ref_logprob),
                    "kl_topk": kl,
                    "kl_imputed": missing,
                    "ref_argmax": argmax_token(p.ref_top),
                    "vllm_argmax": argmax_token(p.test_top),
                }
            )
    return pd.DataFrame(rows)


def _g(value: float) -> str:
    return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.3g}"


def display_table(report: ParityReport) -> pd.DataFrame:
    """The table ``parity.md`` and the terminal show."""
    return pd.DataFrame(
        [
            {
                "variant": s.variant,
                "first-token max abs delta": _g(s.first_max_abs_delta),
                "max abs delta": _g(s.max_abs_delta),
                "mean abs delta": _g(s.mean_abs_delta),
                "mean KL top-k": _g(s.mean_kl),
                "first token agrees": f"{s.first_token_agree_n}/{s.samples}",
                "positions": s.positions,
            }
            for s in report.variants
        ]
    )


SETTING_LABELS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("vllm_dtype", "vLLM dtype"),
    ("reference_dtype", "reference dtype"),
    ("reference_device", "reference device"),
    ("samples", "samples"),
    ("top_k", "top-k"),
    ("vllm_top_k", "vLLM logprobs returned per position"),
    ("answer_tokens", "answer tokens (at most)"),
    ("image_budget", "image budget (soft tokens)"),
    ("prompt", "prompt"),
    ("data", "data"),
    ("overrides", "config overrides (both sides)"),
)


def parity_markdown(report: ParityReport) -> str:
    """``parity.md``: the verdict line, the table, the settings and the definitions."""
    lines = [
        "# Parity with HF transformers (teacher-forced logprobs)",
        "",
        f"**Verdict: {report.verdict}.**",
        "",
        markdown_table(display_table(report)),
        "",
        "## Settings",
        "",
    ]
    for key, label in SETTING_LABELS:
        if key in report.settings:
            lines.append(f"- {label}: `{report.settings[key]}`")
    lines += [
        "",
        "## Definitions",
        "",
        "- Reference: HF transformers' greedy answer on the same processed inputs (prompt "
        "token ids and image), then its teacher-forced logprobs; vLLM scores the same token "
        "ids (prompt logprobs), and its expanded prompt ids are checked equal to HF's.",
        "- abs delta: |vLLM logprob - HF logprob| of the reference token, over every sample and "
        "answer position (first-token: the first answer position only).",
        f"- {KL_DEFINITION}.",
        "- first token agrees: samples whose greedy first token (argmax at the first answer "
        "position) is the same in vLLM as in HF.",
        "",
    ]
    return "\n".join(lines)


def write_parity(
    out: Path, report: ParityReport, scored: Mapping[str, Sequence[PositionLogprobs]]
) -> dict[str, Path]:
    """Write parity.csv, parity_positions.csv, parity.md and parity.json into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        PARITY_CSV: write_csv(parity_frame(report), out / PARITY_CSV),
        POSITIONS_CSV: write_csv(positions_frame(scored), out / POSITIONS_CSV),
    }
    md = out / PARITY_MD
    md.write_text(parity_markdown(report), encoding="utf-8")
    files[PARITY_MD] = md
    payload = {
        "verdict": report.verdict,
        "closest": report.closest,
        "tolerance": report.tolerance,
        "tolerance_rule": TOLERANCE_RULE if report.tolerance is not None else None,
        "within_tolerance": report.within_tolerance,
        "switch_checks": [
            {**asdict(c), "ignored_by_engine": c.ignored_by_engine} for c in report.switch_checks
        ],
        "kl_definition": KL_DEFINITION,
        "variants": [asdict(s) for s in report.variants],
        "settings": report.settings,
    }
    js = out / PARITY_JSON
    js.write_text(json.dumps(_json_safe(payload), indent=2, default=str) + "\n")
    files[PARITY_JSON] = js
    return files


def _json_safe(value: Any) -> Any:
    """NaN (e.g. no first position) as null: the file stays strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def render_terminal(report: ParityReport) -> str:
    return f"{report.verdict}\n\n{markdown_table(display_table(report))}"
