"""Outputs of the image-budget sweep, regenerated from the cells' records and manifests.

``sweep.csv``: one row per budget x variant (n, repeats, accuracy with its screenshot-clustered
interval, wrong_format and failed shares, soft tokens per image and prompt tokens as the engine
counted them, wall time and samples/s). ``sweep_deltas.csv``: the B - A delta per budget with
its screenshot-clustered interval, the sign-flip p over screenshots and its Holm adjustment across
budgets, and the item-level p beside it (A and B: the first two variants). ``sweep.md``: the
headline,
the tables, the interaction test and how everything was computed. ``accuracy_vs_budget.png``:
both variants' accuracy with intervals, and the delta per budget with its interval.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from screenspot_eval.report.csv_export import write_csv
from screenspot_eval.report.repeats import common_items, load_repeat_frames, outcome_matrix
from screenspot_eval.report.run_exports import markdown_table
from screenspot_eval.stats.accuracy import accuracy_interval
from screenspot_eval.stats.interaction import budget_interaction
from screenspot_eval.stats.repeats import compare_repeats
from screenspot_eval.store.run_dir import RunDir

SWEEP_CSV = "sweep.csv"
DELTAS_CSV = "sweep_deltas.csv"
SWEEP_MD = "sweep.md"
SWEEP_PNG = "accuracy_vs_budget.png"


def _mean(frame: pd.DataFrame, column: str) -> float | None:
    if column not in frame or frame[column].isna().all():
        return None
    return round(float(frame[column].dropna().mean()), 2)


def _timing(run_dirs: list[Path]) -> tuple[float, float | None]:
    eval_s, samples = 0.0, 0
    for run_dir in run_dirs:
        manifest = RunDir(run_dir).read_manifest()
        for session in manifest.sessions if manifest else []:
            eval_s += session.eval_s or 0.0
            samples += session.samples or 0
    return round(eval_s, 3), (round(samples / eval_s, 3) if eval_s > 0 else None)


def cell_row(budget: int, variant: str, frames: list[pd.DataFrame], items: pd.DataFrame,
             run_dirs: list[Path], *, seed: int, n_resamples: int) -> dict[str, object]:  # fmt: skip
    y = outcome_matrix(frames, list(items["id"]))
    acc = accuracy_interval(y, items["img_filename"], seed=seed, n_resamples=n_resamples)
    everything = pd.concat(frames, ignore_index=True)
    outcomes = everything["outcome"]
    eval_s, per_s = _timing(run_dirs)
    return {
        "budget": budget,
        "variant": variant,
        "n": acc.n,
        "repeats": y.shape[1],
        "accuracy": round(100 * acc.value, 3),
        "ci_low": round(100 * acc.low, 3),
        "ci_high": round(100 * acc.high, 3),
        "wrong_format": round(100 * float((outcomes == "wrong_format").mean()), 3),
        "failed": round(100 * float((outcomes == "failed").mean()), 3),
        "soft_tokens_per_image": _mean(everything, "image_soft_tokens"),
        "prompt_tokens": _mean(everything, "prompt_tokens"),
        "eval_s": eval_s,
        "samples_per_s": per_s,
    }


def accuracy_vs_budget_png(table: pd.DataFrame, deltas: pd.DataFrame | None, label: str) -> bytes:
    """Left: accuracy per variant vs budget with intervals; right: the delta per budget."""
    fig = Figure(figsize=(11, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    left = fig.add_subplot(1, 2, 1)
    for variant, rows in table.groupby("variant", sort=False):
        x = rows["budget"].to_numpy(dtype=float)
        y = rows["accuracy"].to_numpy(dtype=float)
        err = [np.maximum(y - rows["ci_low"], 0), np.maximum(rows["ci_high"] - y, 0)]
        left.errorbar(x, y, yerr=err, fmt="o-", capsize=4, label=str(variant))
    left.set_xscale("log")
    budgets = sorted(table["budget"].unique())
    left.set_xticks(budgets, [str(b) for b in budgets])
    left.set_xlabel("image budget (soft tokens per image)")
    left.set_ylabel("click accuracy (%), 95% CI")
    left.legend()
    left.grid(alpha=0.3)
    right = fig.add_subplot(1, 2, 2)
    if deltas is not None and len(deltas):
        x = deltas["budget"].to_numpy(dtype=float)
        d = deltas["delta_pp"].to_numpy(dtype=float)
        err = [np.maximum(d - deltas["ci_low_pp"], 0), np.maximum(deltas["ci_high_pp"] - d, 0)]
        right.errorbar(x, d, yerr=err, fmt="s-", color="black", capsize=4)
        right.axhline(0.0, color="#d62728", linewidth=1.0)
        right.set_xscale("log")
        right.set_xticks(budgets, [str(b) for b in budgets])
    else:
        right.text(0.5, 0.5, "one variant: no delta", ha="center", va="center",
                   transform=right.transAxes)  # fmt: skip
    right.set_xlabel("image budget (soft tokens per image)")
    right.set_ylabel("delta B - A (pp), 95% CI")
    right.set_title(label.replace("$", r"\$"), fontsize=10)
    right.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def write_sweep(
    out: Path,
    budgets: tuple[int, ...],
    variants: tuple[str, ...],
    cells: dict[tuple[int, str], list[Path]],
    *,
    seed: int,
    n_resamples: int,
    notes: list[str],
) -> tuple[dict[str, Path], str]:
    """Every sweep output into ``out``; returns the files and the headline."""
    frames = {key: load_repeat_frames(dirs) for key, dirs in cells.items()}
    items = common_items(*frames.values())
    ids = list(items["id"])
    rows = [
        cell_row(b, v, frames[(b, v)], items, cells[(b, v)], seed=seed, n_resamples=n_resamples)
        for v in variants
        for b in budgets
    ]
    table = pd.DataFrame(rows)
    files = {"sweep": write_csv(table, out / SWEEP_CSV)}
    deltas, lines, label = None, [], variants[0]
    if len(variants) >= 2:
        a, b = variants[0], variants[1]
        label = f"{b} vs {a}"
        ys_a = {bud: outcome_matrix(frames[(bud, a)], ids) for bud in budgets}
        ys_b = {bud: outcome_matrix(frames[(bud, b)], ids) for bud in budgets}
        if len(budgets) >= 2:
            result = budget_interaction(
                ys_a, ys_b, items["img_filename"], seed=seed, n_resamples=n_resamples
            )
            deltas = result.table.copy()
            headline = result.headline(a, b)
            inter = result.interaction
            lines += [
                f"- Interaction (does the delta depend on the budget?): {inter.method}; "
                f"p = {inter.p_value:.3g} (F approximation p = {inter.p_f:.3g})",
                f"- Per budget: `p` (the headline's): {result.settings['per_budget_test']}; "
                f"`p_holm`: {result.settings['multiple_testing']}; interval: "
                f"{result.settings['per_budget_interval']}",
                f"- `p_items`: {result.settings['per_budget_item_test']}",
            ]
        else:
            only = compare_repeats(ys_a[budgets[0]], ys_b[budgets[0]], items["img_filename"],
                                   seed=seed, n_resamples=n_resamples)  # fmt: skip
            headline = f"budget {budgets[0]}: {only.headline(a, b)}"
            deltas = pd.DataFrame([{"budget": budgets[0], "delta_pp": only.delta_pp,
                                    "ci_low_pp": only.ci_low_pp, "ci_high_pp": only.ci_high_pp,
                                    "p": only.p_value, "p_holm": only.p_value,
                                    "p_items": only.item_test.p_value}])  # fmt: skip
            lines += [f"- `p`: {only.test.description}; `p_items`: {only.settings['item_test']}"]
        files["deltas"] = write_csv(deltas, out / DELTAS_CSV)
    else:
        best = table.loc[table["accuracy"].idxmax()]
        headline = f"{variants[0]}: best budget {best['budget']} ({best['accuracy']:.2f} %)"
    png = out / SWEEP_PNG
    png.write_bytes(accuracy_vs_budget_png(table, deltas, label))
    files["chart"] = png
    shown = table.drop(columns=["ci_low", "ci_high"]).copy()
    shown.insert(
        5,
        "95% CI",
        [f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)],
    )
    md = [
        "# Image-budget sweep",
        "",
        f"**{headline}**",
        "",
        f"![accuracy vs budget]({SWEEP_PNG})",
        "",
        "## Accuracy per budget and variant (%)",
        "",
        markdown_table(shown),
        "",
    ]
    if deltas is not None:
        shown_d = deltas.copy()
        for column in shown_d.columns:
            if shown_d[column].dtype.kind == "f":
                shown_d[column] = shown_d[column].map(
                    lambda v: "" if isinstance(v, float) and math.isnan(v) else f"{v:.3g}"
                )
        md += [f"## {label}: delta per budget (pp)", "", markdown_table(shown_d), ""]
    md += [
        "## How",
        "",
        f"- {len(items)} samples present in every cell; accuracy intervals: percentile "
        "bootstrap resampling screenshots with all their samples and repeats "
        f"(seed {seed}, {n_resamples} resamples)",
        *lines,
        "- Soft tokens per image and prompt tokens: as the engine counted them (records).",
        *[f"- {note}" for note in notes],
        "",
    ]
    (out / SWEEP_MD).write_text("\n".join(md), encoding="utf-8")
    files["summary"] = out / SWEEP_MD
    return files, headline
