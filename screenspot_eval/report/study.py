"""A study's combined report: one row per finished cell, a forest plot, the pooled answer.

Each cell's figures are read from its own ``comparison.csv`` (so the study table shows exactly
what that ``compare`` reported); Holm's adjustment runs across the cells' screenshot-level p;
the pooled answer (:mod:`screenspot_eval.stats.pooled`) resamples and flips the screenshots
jointly across cells, overall and within each budget or protocol shared by several cells.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from screenspot_eval.report.csv_export import write_csv
from screenspot_eval.report.pairing import pair_records
from screenspot_eval.report.run_exports import markdown_table
from screenspot_eval.stats.paired import holm
from screenspot_eval.stats.pooled import CellOutcomes, PooledDelta, Weighting, pool_cells
from screenspot_eval.store.records import records_frame
from screenspot_eval.store.run_dir import RunDir

STUDY_CSV = "study.csv"
STUDY_MD = "study.md"
FOREST_PNG = "forest.png"
STUDY_HTML = "study.html"
POOLED_JSON = "pooled.json"


@dataclass(frozen=True)
class FinishedCell:
    """What the report reads of one finished cell: its labels and its two sides' folders."""

    name: str
    checkpoint: str
    budget: int | None
    protocol: str
    folder: Path
    side_a: Path
    side_b: Path
    dataset: str | None = None


def cell_row(cell: FinishedCell) -> dict[str, Any]:
    """The cell's headline figures as its ``compare`` reported them: from ``repeats.csv``
    (all repeats, with the A/A noise floor) where repeats ran, else ``comparison.csv``."""
    table = pd.read_csv(cell.folder / "comparison.csv")
    overall = table.loc[table["slice"] == "overall"].iloc[0]
    row = {
        "cell": cell.name,
        "checkpoint": cell.checkpoint,
        "budget": cell.budget if cell.budget is not None else "default",
        "protocol": cell.protocol,
        "dataset": cell.dataset or "default",
        "n": int(overall["n"]),
        "screenshots": int(overall["n_clusters"]),
        "acc_a": float(overall["acc_a"]),
        "acc_b": float(overall["acc_b"]),
        "delta_pp": float(overall["delta_pp"]),
        "ci_low_pp": float(overall["ci_low_pp"]),
        "ci_high_pp": float(overall["ci_high_pp"]),
        "p": float(overall["p"]),
        "ab_discordant": float("nan"),
        "aa_expected_discordant": float("nan"),
    }
    repeats_csv = cell.folder / "repeats.csv"
    if repeats_csv.exists():
        repeats = pd.read_csv(repeats_csv)
        every = repeats.loc[repeats["slice"] == "all"].iloc[0]
        for name in ("delta_pp", "ci_low_pp", "ci_high_pp", "ab_discordant"):
            row[name] = float(every[name])
        row["p"] = float(every["p_sign_flip"])
        row["aa_expected_discordant"] = float(every["aa_expected_discordant"])
    return row


def group_deltas(cells: list[FinishedCell]) -> pd.DataFrame:
    """Per cell and slice group, the delta of its ``comparison.csv`` (the second panel)."""
    rows = []
    for cell in cells:
        table = pd.read_csv(cell.folder / "comparison.csv")
        for part in table.loc[(table["slice"] == "group") & (table["n"] > 0)].itertuples():
            rows.append({"cell": cell.name, "group": str(part.value), "delta_pp": part.delta_pp})
    return pd.DataFrame(rows, columns=["cell", "group", "delta_pp"])


def cell_outcomes(cell: FinishedCell) -> CellOutcomes:
    """The cell's paired per-sample outcomes (its first repeats) by screenshot."""
    frames = []
    for folder in (cell.side_a, cell.side_b):
        records, _ = RunDir(folder).read_records()
        frames.append(records_frame(records))
    paired = pair_records(frames[0], frames[1]).frame
    return CellOutcomes(
        cell.name, paired["correct_a"].to_numpy(), paired["correct_b"].to_numpy(),
        paired["cluster"].to_numpy(),
    )  # fmt: skip


def pooled_answers(
    cells: list[FinishedCell], weighting: Weighting
) -> list[tuple[str, PooledDelta]]:
    """The pooled answer over all cells, then within each dataset, budget and protocol that
    several cells share (where those vary)."""
    outcomes = {c.name: cell_outcomes(c) for c in cells}
    groups: list[tuple[str, list[FinishedCell]]] = [("all cells", cells)]
    for attribute in ("dataset", "budget", "protocol"):
        values = sorted({str(getattr(c, attribute)) for c in cells})
        if len(values) > 1:
            for value in values:
                members = [c for c in cells if str(getattr(c, attribute)) == value]
                groups.append((f"{attribute} {value}", members))
    return [
        (label, pool_cells([outcomes[c.name] for c in members], weighting=weighting))
        for label, members in groups
        if len(members) >= 2
    ]


def forest_png(
    table: pd.DataFrame, pooled: list[tuple[str, PooledDelta]], groups: pd.DataFrame
) -> bytes:
    """Left: each cell's delta and interval, with the pooled answers below. Right: per slice
    group, each cell's delta (one marker per cell), so a family that differs shows."""
    labels = [f"{r.cell} (n={r.n})" for r in table.itertuples()]
    deltas = list(table["delta_pp"])
    lows, highs = list(table["ci_low_pp"]), list(table["ci_high_pp"])
    for label, result in pooled:
        labels.append(f"pooled: {label}")
        deltas.append(100 * result.pooled)
        lows.append(100 * result.ci_low)
        highs.append(100 * result.ci_high)
    y = np.arange(len(labels))[::-1]
    names = sorted(groups["group"].unique()) if len(groups) else []
    height = 0.45 * max(len(labels), len(names)) + 1.2
    figure = Figure(figsize=(12.5 if names else 7.5, height))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 2 if names else 1, 1)
    errors = [np.subtract(deltas, lows), np.subtract(highs, deltas)]
    n_cells = len(table)
    colours = ["#1f77b4"] * n_cells + ["#333333"] * len(pooled)
    for i in range(len(labels)):
        axes.errorbar(
            deltas[i], y[i], xerr=[[errors[0][i]], [errors[1][i]]],
            fmt="D" if i >= n_cells else "o", color=colours[i], capsize=3,
        )  # fmt: skip
    axes.axvline(0.0, color="#999999", linewidth=1)
    axes.set_yticks(y, [label.replace("$", r"\$") for label in labels])
    axes.set_xlabel("delta, B - A (pp), with its screenshot-level interval")
    if names:
        panel = figure.add_subplot(1, 2, 2)
        rows = {name: i for i, name in enumerate(reversed(names))}
        for cell, part in groups.groupby("cell", sort=False):
            panel.plot(part["delta_pp"], [rows[g] for g in part["group"]], "o", label=cell)
        panel.axvline(0.0, color="#999999", linewidth=1)
        panel.set_yticks(list(rows.values()), [n.replace("$", r"\$") for n in rows])
        panel.set_xlabel("delta per slice group (pp), one marker per cell")
        panel.legend(fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_study_report(
    out: Path,
    title: str,
    cells: list[FinishedCell],
    missing: list[str],
    weighting: Weighting = "equal",
) -> dict[str, Path]:
    """study.csv, forest.png, study.md and study.html from the finished ``cells``."""
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([cell_row(c) for c in cells])
    if len(table):
        table["p_holm"] = holm(table["p"].to_numpy())
    pooled = pooled_answers(cells, weighting) if len(cells) >= 2 else []
    files = {"study.csv": write_csv(table, out / STUDY_CSV)}
    png = forest_png(table, pooled, group_deltas(cells)) if len(table) else b""
    if png:
        (out / FOREST_PNG).write_bytes(png)
        files["forest.png"] = out / FOREST_PNG
    (out / POOLED_JSON).write_text(
        json.dumps([{"group": label, **asdict(result)} for label, result in pooled], indent=2),
        encoding="utf-8",
    )
    files["pooled.json"] = out / POOLED_JSON
    lines = study_lines(title, table, pooled, missing)
    (out / STUDY_MD).write_text("\n".join(lines) + "\n", encoding="utf-8")
    files["study.md"] = out / STUDY_MD
    (out / STUDY_HTML).write_text(study_html(title, table, pooled, missing, png), "utf-8")
    files["study.html"] = out / STUDY_HTML
    return files


def study_lines(
    title: str, table: pd.DataFrame, pooled: list[tuple[str, PooledDelta]], missing: list[str]
) -> list[str]:
    lines = [f"# Study {title}", ""]
    if missing:
        lines += [f"Not finished (left out): {', '.join(missing)}", ""]
    for label, result in pooled:
        lines.append(f"- {label}: {result.line()}")
    if pooled:
        lines.append("")
    if len(table):
        lines.append(markdown_table(table.round(4)))
    return lines


def study_html(
    title: str,
    table: pd.DataFrame,
    pooled: list[tuple[str, PooledDelta]],
    missing: list[str],
    png: bytes,
) -> str:
    """A self-contained page: the pooled answers, the forest plot, the table."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Study {e(title)}</title></head><body>",
        f"<h1>Study {e(title)}</h1>",
        f"<p id='headline'>{e(pooled[0][1].line() if pooled else 'no pooled answer yet')}</p>",
    ]
    if missing:
        parts.append(f"<p class='missing'>Not finished (left out): {e(', '.join(missing))}</p>")
    parts.append("<ul>")
    parts += [f"<li>{e(label)}: {e(result.line())}</li>" for label, result in pooled]
    parts.append("</ul>")
    if png:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<img id='forest' alt='forest plot' src='data:image/png;base64,{data}'>")
    parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))
    parts.append("</body></html>")
    return "\n".join(parts)
