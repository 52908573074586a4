"""A run's exports, all regenerated from ``predictions.jsonl`` + ``manifest.json``.

``samples.csv`` (one row per sample), ``metrics.csv`` (one row per slice),
``screenspot_pro_results.json`` (the official format) and ``summary.md``.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from screenspot_eval.report.csv_export import write_csv
from screenspot_eval.report.metrics import leaderboard_table, metrics_table
from screenspot_eval.report.official_json import write_official_json
from screenspot_eval.store.manifest import Manifest
from screenspot_eval.store.records import PredictionRecord, failed_cause, records_frame

SAMPLES_CSV = "samples.csv"
METRICS_CSV = "metrics.csv"
OFFICIAL_JSON = "screenspot_pro_results.json"
SUMMARY_MD = "summary.md"


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table; floats as given by the caller (format before)."""
    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = [
        "| " + " | ".join("" if _is_nan(v) else _cell(v) for v in row) + " |"
        for row in df.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


def _cell(value: Any) -> str:
    """One table cell: a line break or a pipe in dataset text must not break the table."""
    text = " ".join(str(value).splitlines())
    return text.replace("|", "\\|")


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def leaderboard_markdown(frame: pd.DataFrame) -> str:
    """Group x (text, icon, avg) accuracy in percent with n, like the official leaderboard."""
    wide = leaderboard_table(frame)
    shown = pd.DataFrame({"group": wide["group"]})
    for ui in ("text", "icon", "avg"):
        shown[f"{ui} %"] = wide[f"{ui}_accuracy"].map(_pct)
        shown[f"{ui} n"] = wide[f"{ui}_n"]
    return markdown_table(shown)


def outcome_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Non-zero outcome counts of the records, by outcome name (sorted, as in the manifest)."""
    return dict(sorted(Counter(str(o) for o in frame["outcome"]).items()))


def failure_kinds(frame: pd.DataFrame) -> dict[str, int]:
    """Every failure's kind and count: ``wrong_format`` by the parser's reason (the model's
    answer), ``failed`` by cause (request, image, our parser's own error), so a bug of ours
    never reads as a model miss."""
    kinds: dict[str, int] = {}
    for outcome, kind, error in zip(
        frame.get("outcome", []),
        frame.get("failure_kind", []),
        frame.get("error", []),
        strict=False,
    ):
        if outcome == "wrong_format":
            key = f"wrong_format: {kind if isinstance(kind, str) else 'unknown'}"
        elif outcome == "failed":
            key = f"failed: {failed_cause(error if isinstance(error, str) else None)}"
        else:
            continue
        kinds[key] = kinds.get(key, 0) + 1
    return dict(sorted(kinds.items()))


def _kinds_line(kinds: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in kinds.items()) or "none"


def _embedder_lines(manifest: Manifest) -> str:
    """Each embedder as the engine found it, e.g. ``(embed_vision: pre; embed_audio: not loaded)``."""
    report = manifest.engine_report or {}
    lines = [f"{e['attribute']}: {e['measured_placement']}" for e in report.get("embedders", [])]
    lines += [f"{name}: not loaded" for name in report.get("not_loaded", [])]
    return f" ({'; '.join(lines)})" if lines else ""


def summary_markdown(frame: pd.DataFrame, manifest: Manifest) -> str:
    """A short human summary: what ran, on what, the headline numbers and the leaderboard."""
    model = manifest.config.get("engine", {}).get("model")
    n = len(frame)
    # from the records, like metrics.csv and the official JSON, so the three files agree
    outcomes = outcome_counts(frame)
    correct = outcomes.get("correct", 0)
    failed = outcomes.get("failed", 0)
    sessions = manifest.sessions
    rates = [s.samples_per_s for s in sessions if s.samples_per_s]
    lines = [
        f"# ScreenSpot-Pro run: {model} ({manifest.requested_variant})",
        "",
        f"- **Click accuracy: {_pct(correct / n) if n else '0.00'} %** ({correct} / {n})",
        f"- Outcomes: {', '.join(f'{k} {v}' for k, v in outcomes.items()) or 'none'}",
        *(
            [
                f"- Failed requests: {failed} (no answer): misses that stay in the denominator; "
                f"`{OFFICIAL_JSON}` counts them as `wrong_format`"
            ]
            if failed
            else []
        ),
        *(
            [f"- Failure kinds: {_kinds_line(failure_kinds(frame))}"]
            if failed or n > correct
            else []
        ),
        f"- Variant: requested `{manifest.requested_variant}`, engine reports "
        f"`{manifest.effective_variant}`{_embedder_lines(manifest)}",
        f"- Prompt: `{manifest.prompt.get('name')}` (hash "
        f"`{manifest.prompt_hash}`), convention `{manifest.convention.value}`, "
        f"structured decoding {'on' if manifest.structured_decoding else 'off'}",
        f"- Image budget: {manifest.image_budget} soft tokens per image",
        f"- Data: `{manifest.dataset.source}` (content hash "
        f"`{manifest.dataset.content_hash}`), {manifest.counts.selected} "
        f"selected, {len(manifest.exclusions)} excluded (listed in manifest.json)",
        f"- Status: {manifest.status}; sessions: {len(sessions)}"
        + (f"; last throughput {rates[-1]:.2f} samples/s" if rates else ""),
        "",
        "## Accuracy (%) by group and UI type",
        "",
        leaderboard_markdown(frame) if n else "(no records)",
        "",
    ]
    return "\n".join(lines)


def write_run_exports(
    out: Path, records: list[PredictionRecord], manifest: Manifest
) -> dict[str, Path]:
    """Write every export next to the records; returns their paths by name."""
    out = Path(out)
    frame = records_frame(records)
    paths = {
        "samples": out / SAMPLES_CSV,
        "metrics": out / METRICS_CSV,
        "official": out / OFFICIAL_JSON,
        "summary": out / SUMMARY_MD,
    }
    samples = frame.copy()
    if len(samples):
        samples["bbox"] = samples["bbox"].map(lambda b: " ".join(f"{v:g}" for v in b))
        samples["img_size"] = samples["img_size"].map(lambda s: f"{s[0]}x{s[1]}")
    write_csv(samples, paths["samples"])
    write_csv(metrics_table(frame), paths["metrics"])
    write_official_json(frame, paths["official"])
    paths["summary"].write_text(summary_markdown(frame, manifest), encoding="utf-8")
    return paths


def regenerate_run_exports(run_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """``screenspot-eval report``: rewrite every export of a results folder from its records.

    Returns the files written and notes on what reading the folder had to skip."""
    from screenspot_eval.errors import UserError
    from screenspot_eval.store.run_dir import RunDir

    store = RunDir(run_dir)
    manifest = store.read_manifest()
    if manifest is None:
        raise UserError(f"{run_dir} has no manifest.json: is it a results folder?")
    records, repair = store.read_records()
    notes = []
    if repair.truncated_bytes:
        notes.append(f"ignored a truncated last line ({repair.truncated_bytes} bytes)")
    return write_run_exports(run_dir, records, manifest), notes
