"""The delta chart: per-group (and overall) accuracy difference with its interval.

Drawn on a bare :class:`~matplotlib.figure.Figure` with the Agg canvas, never through pyplot,
so it neither needs a display nor touches a global backend another caller may have chosen.
"""

from __future__ import annotations

import io
import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from screenspot_eval.stats.slices import SliceComparison

OVERALL_COLOUR = "#333333"
GROUP_COLOUR = "#1f77b4"


def _plain(text: str) -> str:
    """Keep matplotlib from reading ``$...$`` in dataset names as mathtext."""
    return str(text).replace("$", r"\$")


def deltas_png(
    comparison: SliceComparison, *, label_a: str, label_b: str, family: str = "group"
) -> bytes:
    """A horizontal chart of delta (pp) per ``family`` value and overall, as PNG bytes.

    Slices without items (delta undefined) are left out of the chart; they are in the tables.
    """
    table = comparison.table
    rows = table.loc[(table["slice"] == "overall") | (table["slice"] == family)]
    rows = rows.loc[rows["n"] > 0]
    labels, deltas, lows, highs, colours = [], [], [], [], []
    for _, row in rows.iterrows():
        name = "overall" if row["slice"] == "overall" else str(row["value"])
        labels.append(f"{_plain(name)} (n={int(row['n'])})")
        delta = float(row["delta_pp"])
        low, high = float(row["ci_low_pp"]), float(row["ci_high_pp"])
        deltas.append(delta)
        # Percentile intervals need not contain the estimate: clip so error bars stay >= 0.
        lows.append(max(delta - low, 0.0) if not math.isnan(low) else 0.0)
        highs.append(max(high - delta, 0.0) if not math.isnan(high) else 0.0)
        colours.append(OVERALL_COLOUR if row["slice"] == "overall" else GROUP_COLOUR)

    height = 1.2 + 0.45 * max(len(labels), 1)
    fig = Figure(figsize=(7.5, height), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ys = list(range(len(labels)))[::-1]  # overall on top
    ax.barh(ys, deltas, color=colours, alpha=0.35, height=0.6)
    ax.errorbar(
        deltas, ys, xerr=[lows, highs], fmt="o", color="black", ecolor="black", capsize=4, ms=4
    )
    ax.axvline(0.0, color="#d62728", linewidth=1.0)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels)
    confidence = float(comparison.settings.get("confidence", 0.95))
    ax.set_xlabel(f"accuracy delta, B - A (percentage points), {100 * confidence:g}% bootstrap CI")
    ax.set_title(_plain(f"{label_b} (B) vs {label_a} (A) by {family}"), fontsize=11)
    if not labels:
        ax.text(0.5, 0.5, "no paired samples", ha="center", va="center", transform=ax.transAxes)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
