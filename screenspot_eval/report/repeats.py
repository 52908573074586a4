"""Outputs of repeated runs: the within-variant noise floor, and the A/B with repeats.

``noise_floor.csv`` (one row per slice: items, within-variant flips, their share, the
discordant pairs two identical runs would show) and ``repeats.md`` for ``run --repeats``;
``repeats.csv`` (one row per slice: both accuracies over all repeats, the delta with its
screenshot-clustered interval, the sign-flip test over screenshots with its Holm adjustment
within the slice family, the item-level sign-flip test beside it, the screenshot-level test's
detectable deltas, both sides' flips and the A/B discordant pairs beside the A/A floor) for
``compare --repeats``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from screenspot_eval.report.csv_export import write_csv
from screenspot_eval.report.run_exports import markdown_table
from screenspot_eval.stats.paired import holm
from screenspot_eval.stats.repeats import RepeatsComparison, compare_repeats, noise_floor
from screenspot_eval.store.records import records_frame
from screenspot_eval.store.run_dir import RunDir

NOISE_CSV = "noise_floor.csv"
REPEATS_MD = "repeats.md"
REPEATS_CSV = "repeats.csv"
SLICE_FAMILIES = ("group", "ui_type", "application", "platform")
ITEM_FIELDS = ("id", "img_filename", *SLICE_FAMILIES)


def load_repeat_frames(run_dirs: list[Path]) -> list[pd.DataFrame]:
    """The record frames of each repeat, in repeat order."""
    frames = []
    for run_dir in run_dirs:
        records, _ = RunDir(run_dir).read_records()
        frames.append(records_frame(records))
    return frames


def outcome_matrix(frames: list[pd.DataFrame], ids: list[str]) -> np.ndarray:
    """``(items, K)`` booleans: sample ``ids[i]`` correct in repeat ``k``."""
    columns = []
    for frame in frames:
        correct = frame.set_index("id")["outcome"].eq("correct")
        columns.append(correct.reindex(ids).fillna(False).to_numpy(dtype=bool))
    return np.column_stack(columns) if columns else np.zeros((len(ids), 0), dtype=bool)


def common_items(*sides: list[pd.DataFrame]) -> pd.DataFrame:
    """The items present in every repeat of every side (slice fields from the first)."""
    frames = [f for side in sides for f in side]
    shared = set(frames[0]["id"])
    for frame in frames[1:]:
        shared &= set(frame["id"])
    first = frames[0]
    return first[first["id"].isin(shared)][list(ITEM_FIELDS)].reset_index(drop=True)


def _pp(value: float) -> float:
    return round(100.0 * value, 3) if not math.isnan(value) else math.nan


def noise_table(y: np.ndarray, items: pd.DataFrame) -> pd.DataFrame:
    """Within-variant flips overall and per slice of every family."""
    overall = noise_floor(y)
    rows = [
        {
            "slice": "all",
            "value": "all",
            "n": overall.n,
            "flips": overall.flips,
            "flip_share": overall.flip_share,
            "expected_aa_discordant": overall.expected_discordant,
        }
    ]
    for family in SLICE_FAMILIES:
        by = noise_floor(y, items[family]).by_slice
        if by is None:
            continue
        for row in by.to_dict("records"):
            values = list(row.values())
            rows.append(
                {
                    "slice": family,
                    "value": values[0],
                    "n": values[1],
                    "flips": values[2],
                    "flip_share": values[3],
                    "expected_aa_discordant": values[4],
                }
            )
    return pd.DataFrame(rows)


def write_noise_floor(
    out: Path, run_dirs: list[Path], *, label: str
) -> tuple[dict[str, Path], str]:
    """``noise_floor.csv`` and ``repeats.md`` for K repeats of one variant; returns the files and
    the headline."""
    frames = load_repeat_frames(run_dirs)
    items = common_items(frames)
    y = outcome_matrix(frames, list(items["id"]))
    floor = noise_floor(y)
    table = noise_table(y, items)
    k = y.shape[1]
    accuracy = ", ".join(f"{100 * a:.2f} %" for a in floor.acc_per_repeat)
    if k < 2:
        headline = f"{label}: 1 repeat, accuracy {accuracy}; within-variant flips need K >= 2"
    else:
        headline = (
            f"{label}, {k} repeats: accuracy {100 * floor.acc_min:.2f}-{100 * floor.acc_max:.2f} %"
            f" (sd {100 * floor.acc_sd:.2f} pp); within-variant flips {floor.flips} of "
            f"{floor.n} samples ({100 * floor.flip_share:.1f} %)"
        )
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(table, out / NOISE_CSV)
    shown = table.copy()
    shown["flip_share"] = shown["flip_share"].map(lambda v: f"{100 * v:.1f} %")
    shown["expected_aa_discordant"] = shown["expected_aa_discordant"].map(
        lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"
    )
    lines = [
        f"# Repeats: {label}",
        "",
        f"**{headline}**",
        "",
        f"- Accuracy per repeat: {accuracy}",
        f"- Runs: {', '.join(str(d) for d in run_dirs)}",
        "- A within-variant flip is a sample whose outcome differs between repeats of the same "
        "variant; the expected A/A discordant pairs are what two identical runs would disagree on.",
        "",
        markdown_table(shown),
        "",
    ]
    md_path = out / REPEATS_MD
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return {"noise_floor": csv_path, "repeats": md_path}, headline


def compare_with_repeats(
    frames_a: list[pd.DataFrame], frames_b: list[pd.DataFrame], *, seed: int, n_resamples: int
) -> tuple[RepeatsComparison, pd.DataFrame]:
    """The A/B over all repeats (overall), and one row per slice of every family."""
    items = common_items(frames_a, frames_b)
    ids = list(items["id"])
    y_a, y_b = outcome_matrix(frames_a, ids), outcome_matrix(frames_b, ids)
    overall = compare_repeats(y_a, y_b, items["img_filename"], seed=seed, n_resamples=n_resamples)
    rows = [_row("all", "all", overall)]
    for family in SLICE_FAMILIES:
        labels = items[family].astype(object).where(items[family].notna(), "(none)")
        family_rows = []
        for value in sorted(labels.unique(), key=str):
            mask = (labels == value).to_numpy()
            if mask.sum() < 2:
                continue
            part = compare_repeats(
                y_a[mask],
                y_b[mask],
                items["img_filename"][mask],
                seed=seed,
                n_resamples=n_resamples,
            )
            family_rows.append(_row(family, value, part))
        adjusted = holm([r["p_sign_flip"] for r in family_rows])
        for r, p_adj in zip(family_rows, adjusted, strict=True):
            r["p_holm"] = float(p_adj)
        rows.extend(family_rows)
    return overall, pd.DataFrame(rows)


def _row(family: str, value: object, c: RepeatsComparison) -> dict[str, object]:
    return {
        "slice": family,
        "value": value,
        "n": c.n,
        "k_a": c.k_a,
        "k_b": c.k_b,
        "acc_a": _pp(c.acc_a),
        "acc_b": _pp(c.acc_b),
        "delta_pp": round(c.delta_pp, 3),
        "ci_low_pp": round(c.ci_low_pp, 3),
        "ci_high_pp": round(c.ci_high_pp, 3),
        "p_sign_flip": c.p_value,
        "p_holm": c.p_value,  # the family's Holm adjustment replaces it
        "test": c.test.method,
        "p_items": c.item_test.p_value,
        "mdd_pp": round(100 * c.test.mdd, 3) if c.test.mdd is not None else None,
        "mde_pp": _pp(c.mde),
        "flips_a": c.noise_a.flips,
        "flips_b": c.noise_b.flips,
        "ab_discordant": round(c.ab_discordant, 3),
        "aa_expected_discordant": round(c.noise_discordant, 3)
        if not math.isnan(c.noise_discordant)
        else None,
    }


def repeats_markdown(overall: RepeatsComparison, table: pd.DataFrame, headline: str) -> str:
    """The repeats section appended to ``comparison.md``."""
    shown = table[table["slice"].isin(["all", "group", "ui_type"])].copy()
    for column in ("p_sign_flip", "p_holm", "p_items"):
        shown[column] = shown[column].map(lambda p: f"{p:.3g}")
    s = overall.settings
    return "\n".join(
        [
            "## With repeats",
            "",
            f"**{headline}**",
            "",
            f"- {overall.noise_line()}",
            f"- Interval: {s['interval']}",
            f"- Test (`p_sign_flip`, the headline p; `p_holm` within each slice family): "
            f"{overall.test.description}",
            f"- `p_items`: {s['item_test']}; valid for 'no difference on any of these items', "
            "not for a difference that varies from screenshot to screenshot",
            f"- Minimum detectable delta (`mde_pp`) at {100 * overall.power:g} % power: "
            f"{100 * overall.mde:.2f} pp; assumes {s['mde']}. `mdd_pp`: {s['mdd']}",
            "",
            markdown_table(shown),
            "",
        ]
    )


def write_repeats_comparison(out: Path, table: pd.DataFrame) -> Path:
    return write_csv(table, out / REPEATS_CSV)
