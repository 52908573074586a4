"""A run's exports, all regenerated from ``predictions.jsonl`` + ``manifest.json``.

``samples.csv`` (one row per sample), ``metrics.csv`` (one row per slice),
``screenspot_pro_results.json`` (the official format) and ``summary.md``. Runs on another
dataset layout (:mod:`screenspot_eval.data.layouts`) write that layout's slices and its own
results JSON (``screenspot_v2_results.json``, ``osworld_g_results.json``) instead.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from screenspot_eval.data.layouts import Layout, get_layout
from screenspot_eval.data.sample import DEFAULT_LAYOUT
from screenspot_eval.report.csv_export import write_csv
from screenspot_eval.report.layout_json import write_layout_json
from screenspot_eval.report.metrics import (
    layout_metrics_table,
    layout_slice_table,
    leaderboard_table,
    overall_table,
    records_layout,
    without_refusal,
)
from screenspot_eval.report.official_json import write_official_json
from screenspot_eval.store.manifest import Manifest
from screenspot_eval.store.records import PredictionRecord, failed_cause, records_frame
from screenspot_eval.store.steps import StepLog, StepRecord

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


def category_markdown(frame: pd.DataFrame, layout: Layout) -> str:
    """Accuracy per category (an item counts in each of its categories), then all items and,
    with refusal items, all but them."""
    table = layout_slice_table(frame, layout.leaderboard, layout)
    rows = [(str(r["value"]), float(r["accuracy"]), int(r["n"])) for _, r in table.iterrows()]
    overall = overall_table(frame).iloc[0]
    rows.append(("all", float(overall["accuracy"]), int(overall["n"])))
    if layout.has_refusal:
        kept = overall_table(without_refusal(frame)).iloc[0]
        rows.append(("all without refusal", float(kept["accuracy"]), int(kept["n"])))
    shown = pd.DataFrame(
        {
            layout.leaderboard: [r[0] for r in rows],
            "accuracy %": [_pct(r[1]) for r in rows],
            "n": [r[2] for r in rows],
        }
    )
    return markdown_table(shown)


def results_json_name(layout: str | Layout | None = None) -> str:
    """The results JSON a run in ``layout`` writes (the official file for ScreenSpot-Pro)."""
    return get_layout(layout).results_json


def frame_layout(frame: pd.DataFrame, manifest: Manifest | None = None) -> Layout:
    """The records' layout; without records, the one the run was configured with."""
    if len(frame):
        return get_layout(records_layout(frame))
    configured = (manifest.config.get("data", {}) if manifest is not None else {}).get("layout")
    return get_layout(configured or DEFAULT_LAYOUT)


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


def _budget_line(manifest: Manifest) -> str:
    """The adapter and its image budget, e.g. ``qwen2.5-vl, max_pixels 12845056 (min_pixels
    3136)``; runs from before adapters recorded soft tokens only (Gemma 4)."""
    family = manifest.model_family
    if not family:
        return f"gemma4, max_soft_tokens {manifest.image_budget}"
    others = {k: v for k, v in family.get("processor", {}).items() if k != family["knob"]}
    rest = f" ({', '.join(f'{k} {v}' for k, v in others.items())})" if others else ""
    return f"{family['adapter']}, {family['knob']} {family['value']}{rest}"


def _embedder_lines(manifest: Manifest) -> str:
    """Each embedder as the engine found it, e.g. ``(embed_vision: pre; embed_audio: not loaded)``."""
    report = manifest.engine_report or {}
    lines = [f"{e['attribute']}: {e['measured_placement']}" for e in report.get("embedders", [])]
    lines += [f"{name}: not loaded" for name in report.get("not_loaded", [])]
    return f" ({'; '.join(lines)})" if lines else ""


def summary_markdown(frame: pd.DataFrame, manifest: Manifest) -> str:
    """A short human summary: what ran, on what, the headline numbers and the leaderboard."""
    layout = frame_layout(frame, manifest)
    official_json = layout.results_json
    model = manifest.config.get("engine", {}).get("model")
    n = len(frame)
    # from the records, like metrics.csv and the official JSON, so the three files agree
    outcomes = outcome_counts(frame)
    correct = outcomes.get("correct", 0)
    failed = outcomes.get("failed", 0)
    sessions = manifest.sessions
    rates = [s.samples_per_s for s in sessions if s.samples_per_s]
    lines = [
        f"# {layout.title} run: {model} ({manifest.requested_variant})",
        "",
        f"- **Click accuracy: {_pct(correct / n) if n else '0.00'} %** ({correct} / {n})",
        *_without_refusal_line(frame, layout),
        f"- Outcomes: {', '.join(f'{k} {v}' for k, v in outcomes.items()) or 'none'}",
        *(
            [
                f"- Failed requests: {failed} (no answer): misses that stay in the denominator; "
                f"`{official_json}` counts them as `wrong_format`"
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
        f"- Model family: {_budget_line(manifest)}",
        f"- Protocol: `{manifest.config.get('prompt', {}).get('protocol', 'one-shot')}`; "
        f"{cost_line(frame)}",
        f"- Data: `{manifest.dataset.source}` (content hash "
        f"`{manifest.dataset.content_hash}`), {manifest.counts.selected} "
        f"selected, {len(manifest.exclusions)} excluded (listed in manifest.json)",
        f"- Status: {manifest.status}; sessions: {len(sessions)}"
        + (f"; last throughput {rates[-1]:.2f} samples/s" if rates else ""),
        *_layout_lines(layout),
        "",
        _leaderboard_title(layout),
        "",
        _leaderboard(frame, layout) if n else "(no records)",
        "",
    ]
    return "\n".join(lines)


def cost_line(frame: pd.DataFrame) -> str:
    """Model calls and image tokens per sample (a multi-step protocol's cost)."""
    if not len(frame):
        return "no calls"
    line = f"{frame['calls'].mean():.2f} calls per sample"
    tokens = frame["image_soft_tokens"]
    if tokens.notna().all():
        line += f", {tokens.mean():.0f} image tokens per sample"
    return line


def sample_cost(frame: pd.DataFrame) -> str:
    """``1.00 calls, 65 image tokens``: the same per sample, short, for one side of an A/B."""
    return cost_line(frame).replace(" per sample", "")


def _without_refusal_line(frame: pd.DataFrame, layout: Layout) -> list[str]:
    if not layout.has_refusal or not len(frame):
        return []
    kept = without_refusal(frame)
    hits = int((kept["outcome"].astype(str) == "correct").sum())
    share = _pct(hits / len(kept)) if len(kept) else "0.00"
    refusals = len(frame) - len(kept)
    lines = [
        f"- Click accuracy without the {refusals} refusal items: {share} % ({hits} / {len(kept)})"
    ]
    refused = int(((frame["target"] == "refusal") & (frame["outcome"] == "correct")).sum())
    if refusals and not refused:
        lines.append(
            f"- None of the {refusals} refusal items was answered with negative coordinates "
            "(the only answer the official scoring counts as a refusal): does the prompt say "
            "how to refuse?"
        )
    return lines


def _layout_lines(layout: Layout) -> list[str]:
    if layout.name == DEFAULT_LAYOUT:
        return []
    return [
        f"- Layout: `{layout.name}` ({layout.home}); its scoring rule and sources are in "
        f"`{layout.results_json}`"
    ]


def _leaderboard_title(layout: Layout) -> str:
    if layout.leaderboard == "group":
        by = "group" if layout.group_from == "group" else layout.group_from
        return f"## Accuracy (%) by {by} and UI type"
    return f"## Accuracy (%) by {layout.leaderboard}"


def _leaderboard(frame: pd.DataFrame, layout: Layout) -> str:
    if layout.leaderboard == "group":
        table = leaderboard_markdown(frame)
        if layout.group_from != "group":
            table = table.replace("| group |", f"| {layout.group_from} |", 1)
        return table
    return category_markdown(frame, layout)


STEPS_CSV = "steps.csv"


def write_run_exports(
    out: Path, records: list[PredictionRecord], manifest: Manifest
) -> dict[str, Path]:
    """Write every export next to the records; returns their paths by name."""
    out = Path(out)
    frame = records_frame(records)
    layout = frame_layout(frame, manifest)
    paths = {
        "samples": out / SAMPLES_CSV,
        "metrics": out / METRICS_CSV,
        "official": out / layout.results_json,
        "summary": out / SUMMARY_MD,
    }
    samples = frame.copy()
    if len(samples):
        samples["bbox"] = samples["bbox"].map(_numbers_cell)
        samples["img_size"] = samples["img_size"].map(lambda s: f"{s[0]}x{s[1]}")
        samples["polygon"] = samples["polygon"].map(_numbers_cell)
        samples["categories"] = samples["categories"].map(lambda c: ";".join(c))
    write_csv(samples, paths["samples"])
    write_csv(layout_metrics_table(frame, layout), paths["metrics"])
    if layout.name == DEFAULT_LAYOUT:
        write_official_json(frame, paths["official"])
    else:
        write_layout_json(frame, paths["official"], layout)
    paths["summary"].write_text(summary_markdown(frame, manifest), encoding="utf-8")
    steps = StepLog(out).read()
    if steps:
        paths["steps"] = out / STEPS_CSV
        write_csv(steps_table(steps), paths["steps"])
    return paths


def steps_table(steps: list[StepRecord]) -> pd.DataFrame:
    """``steps.csv``: one row per model call, sorted by sample and step; views and clicks
    split into columns (original pixels; ``view_click_*`` in the crop's own pixels)."""
    rows = []
    for step in sorted(steps, key=lambda s: (s.id, s.step)):
        row = step.model_dump(mode="json", exclude={"view", "click", "click_view"})
        row.update(zip(("view_x0", "view_y0", "view_x1", "view_y1"), step.view, strict=True))
        for name, point in (("click", step.click), ("view_click", step.click_view)):
            row[f"{name}_x"], row[f"{name}_y"] = point if point else (None, None)
        for name in ("image_size", "model_size"):
            size = row[name]
            row[name] = f"{size[0]}x{size[1]}" if size else None
        rows.append(row)
    return pd.DataFrame(rows)


def _numbers_cell(value: Any) -> str | None:
    """``x1 y1 x2 y2`` (or a polygon's outline) for samples.csv; None (an empty cell) for none."""
    return None if value is None else " ".join(f"{v:g}" for v in value)


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
