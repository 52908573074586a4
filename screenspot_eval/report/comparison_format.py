"""Numbers of an A/B comparison as display strings, shared by the Markdown, HTML and terminal.

One place formats every figure, so the three outputs can never disagree on rounding or on
which columns a slice table shows. Everything returned is plain text: each renderer escapes it
for its own format.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from screenspot_eval.report.pairing import PairedRecords
from screenspot_eval.stats.paired import format_p
from screenspot_eval.stats.slices import SliceComparison

#: Slice families shown as tables, in order, with their display titles.
FAMILY_TITLES: dict[str, str] = {
    "overall": "Overall",
    "group": "Per group",
    "ui_type": "Per UI type",
    "application": "Per application",
    "platform": "Per platform",
}


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def pct(fraction: float, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage without the sign, ``n/a`` if undefined."""
    return "n/a" if is_missing(fraction) else f"{100.0 * fraction:.{digits}f}"


def pp(value: float, *, signed: bool = True) -> str:
    """Percentage points with one decimal, no ``-0.0``, ``n/a`` if undefined."""
    if is_missing(value):
        return "n/a"
    r = round(float(value), 1) + 0.0
    return f"{r:+.1f}" if signed else f"{r:.1f}"


def ci(low: float, high: float) -> str:
    if is_missing(low) or is_missing(high):
        return "n/a"
    return f"[{pp(low, signed=False)}, {pp(high, signed=False)}]"


def p_text(p: float) -> str:
    """``0.02`` / ``0.004`` / ``<0.001``: :func:`format_p` without the ``p =``."""
    return format_p(p).removeprefix("p = ").replace("p < ", "<")


def confidence_label(comparison: SliceComparison) -> str:
    confidence = float(comparison.settings.get("confidence", 0.95))
    return f"{100 * confidence:g}% CI"


def units_text(comparison: SliceComparison) -> str:
    """Which unit each figure is about, for the reader of any view."""
    if comparison.settings.get("resample_unit") != "cluster":
        return (
            "Interval and p (sign-flip test = exact McNemar) treat items as independent; "
            "p Holm is adjusted within each slice family."
        )
    return (
        "Interval and p are about screenshots: the interval resamples screenshots with all "
        "their samples, and p is a sign-flip test of the screenshots' summed differences "
        "(p Holm: adjusted within each slice family). McNemar p is the conventional "
        "item-level test, conditional on these items."
    )


def slice_rows(comparison: SliceComparison, family: str) -> pd.DataFrame:
    """One family's rows as display strings: accuracies in %, delta and CI in pp."""
    table = comparison.table
    rows = table.loc[table["slice"] == family]
    label = "slice" if family == "overall" else family
    return pd.DataFrame(
        {
            label: [str(v) for v in rows["value"]],
            "n": [str(int(v)) for v in rows["n"]],
            "acc A %": [pct(v) for v in rows["acc_a"]],
            "acc B %": [pct(v) for v in rows["acc_b"]],
            "delta pp": [pp(v) for v in rows["delta_pp"]],
            confidence_label(comparison): [
                ci(lo, hi) for lo, hi in zip(rows["ci_low_pp"], rows["ci_high_pp"], strict=True)
            ],
            "p": [p_text(v) for v in rows["p"]],
            "p Holm": [p_text(v) for v in rows["p_holm"]],
            "McNemar p": [p_text(v) for v in rows["p_mcnemar"]],
            "A only": [str(int(v)) for v in rows["a_only"]],
            "B only": [str(int(v)) for v in rows["b_only"]],
        }
    )


def slice_tables(comparison: SliceComparison) -> list[tuple[str, pd.DataFrame]]:
    """(title, display table) for overall and every slice family present in the table."""
    present = set(comparison.table["slice"])
    return [
        (title, slice_rows(comparison, family))
        for family, title in FAMILY_TITLES.items()
        if family in present
    ]


def _rate_line(name: str, a: float, b: float, label_a: str, label_b: str) -> tuple[str, str]:
    delta = (b - a) * 100.0 if not (is_missing(a) or is_missing(b)) else math.nan
    return (name, f"A ({label_a}) {pct(a)} %, B ({label_b}) {pct(b)} %, change {pp(delta)} pp")


def summary_items(
    paired: PairedRecords, comparison: SliceComparison, *, label_a: str, label_b: str
) -> list[tuple[str, str]]:
    """The overall facts as (name, text) pairs: accuracies, rates, detectable delta."""
    row = comparison.overall()
    n = int(row["n"])
    frame = paired.frame
    right_a = int(row["both_right"] + row["a_only"])
    right_b = int(row["both_right"] + row["b_only"])
    failed_a = float(frame["failed_a"].mean()) if n else math.nan
    failed_b = float(frame["failed_b"].mean()) if n else math.nan
    unit = "screenshots" if comparison.settings.get("resample_unit") == "cluster" else "items"
    return [
        ("Accuracy A", f"{pct(row['acc_a'], 2)} % ({right_a} / {n}), {label_a}"),
        ("Accuracy B", f"{pct(row['acc_b'], 2)} % ({right_b} / {n}), {label_b}"),
        ("Delta (B - A)", f"{pp(row['delta_pp'])} pp, {confidence_label(comparison)} "
         f"{ci(row['ci_low_pp'], row['ci_high_pp'])} pp (resampling {unit})"),
        (f"Test over {unit} (the headline p)", f"sign-flip {format_p(row['p'])} ({row['test']})"),
        ("Conventional item-level test", f"exact McNemar {format_p(row['p_mcnemar'])}, "
         "conditional on these items (valid for 'no difference on any of these items', not for "
         "a difference that varies from screenshot to screenshot)"),
        _rate_line("Wrong format", row["wrong_format_a"], row["wrong_format_b"], label_a, label_b),
        _rate_line("Failed requests", failed_a, failed_b, label_a, label_b),
        ("Minimum detectable delta", detectable_text(row, comparison.settings, unit)),
    ]  # fmt: skip


def detectable_text(row: pd.Series, settings: dict[str, Any], unit: str) -> str:
    """The power statement of the headline test, and what it assumes."""
    alpha = settings.get("alpha", 0.05)
    if is_missing(row["mde_pp"]):
        mde = f"n/a (needs at least 2 {unit})"
    else:
        mde = (
            f"{pp(row['mde_pp'], signed=False)} pp at {100 * settings.get('power', 0.8):g} % power"
        )
    if is_missing(row["mdd_pp"]):
        mdd = f"no sign pattern of these {unit} could reach p < {alpha:g}"
    else:
        mdd = (
            f"the smallest |delta| it could call significant at alpha = {alpha:g} given these "
            f"{unit}' summed differences is {pp(row['mdd_pp'], signed=False)} pp"
        )
    return f"{mde} for the test over {unit} (assumes {settings.get('mde', 'n/a')}); {mdd}"


def agreement_cells(comparison: SliceComparison) -> dict[str, int]:
    """The overall 2x2 table of paired outcomes."""
    row = comparison.overall()
    return {k: int(row[k]) for k in ("both_right", "a_only", "b_only", "both_wrong")}


def settings_items(comparison: SliceComparison) -> list[tuple[str, str]]:
    """The statistics settings needed to reproduce every interval and p-value."""
    s = comparison.settings
    unit = s.get("resample_unit")
    if unit == "cluster":
        unit_text = "screenshot (items sharing one are resampled together)"
    else:
        unit_text = "item"
    items = [
        ("Bootstrap seed", str(s.get("seed"))),
        ("Resamples", str(s.get("n_resamples"))),
        ("Resample unit", f"{unit}: {unit_text}" if unit else "n/a"),
        ("Confidence", str(s.get("confidence"))),
        ("Interval", str(s.get("interval"))),
        ("Test", str(s.get("test"))),
        ("Item-level test", str(s.get("item_test"))),
        ("Multiple testing", str(s.get("multiple_testing"))),
        ("Alpha", str(s.get("alpha"))),
        ("numpy", str(s.get("numpy_version"))),
    ]
    return [(k, v) for k, v in items if v != "None"]
