"""Every output of an A/B comparison: CSV tables, Markdown, the chart, HTML and terminal text.

All are regenerated from the paired records and the slice comparison, so they agree with each
other by construction. The Markdown and terminal views are for reading; ``comparison.csv`` and
``flips.csv`` keep full precision for anyone who wants to recompute.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd

from screenspot_eval.report import comparison_format as fmt
from screenspot_eval.report.annotate import annotate_all
from screenspot_eval.report.csv_export import write_csv
from screenspot_eval.report.html_report import pick_flips, render_html
from screenspot_eval.report.pairing import PairedRecords, flips
from screenspot_eval.report.plots import deltas_png
from screenspot_eval.report.run_exports import markdown_table
from screenspot_eval.stats.slices import SliceComparison

COMPARISON_CSV = "comparison.csv"
FLIPS_CSV = "flips.csv"
COMPARISON_MD = "comparison.md"
DELTAS_PNG = "deltas.png"
REPORT_HTML = "report.html"
TERMINAL_WIDTH = 100


def _sequence_text(value: Any) -> Any:
    """bbox / img_size as ``[x1, y1, x2, y2]`` in the CSV rather than a Python tuple repr."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f"{float(v):g}" for v in value) + "]"
    return value


def flips_csv_frame(flip_frame: pd.DataFrame) -> pd.DataFrame:
    out = flip_frame.copy()
    for name in ("bbox", "img_size"):
        out[name] = out[name].map(_sequence_text)
    return out


def write_comparison_csvs(
    out_dir: Path, comparison: SliceComparison, flip_frame: pd.DataFrame
) -> dict[str, Path]:
    """Write ``comparison.csv`` (one row per slice) and ``flips.csv`` (one row per flipped
    sample, from :func:`~screenspot_eval.report.pairing.flips`) with the shared CSV writer."""
    return {
        COMPARISON_CSV: write_csv(comparison.table, out_dir / COMPARISON_CSV),
        FLIPS_CSV: write_csv(flips_csv_frame(flip_frame), out_dir / FLIPS_CSV),
    }


def _facts_md(items: list[tuple[str, str]]) -> list[str]:
    return [f"- **{name}**: {text}" for name, text in items]


def _ids_md(title: str, ids: list[str]) -> list[str]:
    listed = ", ".join(f"`{i}`" for i in ids) or "none"
    return [f"**{title}** ({len(ids)}): {listed}", ""]


def comparison_markdown(
    paired: PairedRecords,
    comparison: SliceComparison,
    *,
    label_a: str,
    label_b: str,
    notes: list[str] | None = None,
    n_flips: int = 0,
) -> str:
    """``comparison.md``: the headline first, then the facts, the tables and the settings."""
    cells = fmt.agreement_cells(comparison)
    lines = [
        f"# A/B comparison: {label_b} (B) vs {label_a} (A)",
        "",
        f"**{comparison.headline(label_a, label_b)}**",
        "",
        f"Delta is the accuracy of B ({label_b}) minus that of A ({label_a}), in percentage "
        "points (pp). " + fmt.units_text(comparison),
        "",
    ]
    if notes:
        lines += [*(f"- Note: {n}" for n in notes), ""]
    lines += [
        "## Summary",
        "",
        *_facts_md(fmt.summary_items(paired, comparison, label_a=label_a, label_b=label_b)),
        f"- **Flipped samples**: {n_flips} (listed in `{FLIPS_CSV}`, drawn in `{REPORT_HTML}`)",
        "",
        "Paired outcomes:",
        "",
        "| | B correct | B wrong |",
        "|---|---|---|",
        f"| **A correct** | {cells['both_right']} | {cells['a_only']} |",
        f"| **A wrong** | {cells['b_only']} | {cells['both_wrong']} |",
        "",
    ]
    for title, table in fmt.slice_tables(comparison):
        lines += [f"## {title}", "", markdown_table(table), ""]
    lines += [
        f"In `{COMPARISON_CSV}` the accuracies (`acc_a`, `acc_b`) and wrong-format rates are "
        "fractions in [0, 1]; every `*_pp` column is in percentage points of B minus A; `p` is "
        "the sign-flip test over screenshots (`test`: exact or monte-carlo) and `p_holm` its "
        "Holm adjustment within the slice family (overall: unadjusted); `p_mcnemar` is the "
        "exact McNemar test over items; `mdd_pp` and `mde_pp` are the screenshot-level test's "
        "significance threshold and 80 %-power minimum detectable effect.",
        "",
    ]
    if paired.shared_only:
        lines += ["## Unpaired samples (dropped by --shared-only)", ""]
        lines += _ids_md("Only in A", paired.only_a) + _ids_md("Only in B", paired.only_b)
    if paired.differing:
        lines += ["## Sample fields that differ between the runs (A's values used)", ""]
        for name, ids in paired.differing.items():
            lines += _ids_md(name, ids)
    lines += ["## Statistics settings", "", *_facts_md(fmt.settings_items(comparison)), ""]
    return "\n".join(lines)


#: Results of other commands that a comparison's report links when they sit beside it.
RELATED = (("budget sweep", "sweep.md"), ("parity with the HF reference", "parity.md"))


def related_results(out_dir: Path) -> list[tuple[str, str]]:
    """``(title, relative link)`` for each sweep / parity summary in ``out_dir``, its subfolders,
    its parent or its sibling folders (e.g. ``results/e4b/{ab,sweep,parity}``)."""
    found = []
    places = (
        [out_dir, *sorted(p for p in out_dir.iterdir() if p.is_dir())] if out_dir.is_dir() else []
    )
    if out_dir.parent != out_dir:
        siblings = sorted(p for p in out_dir.parent.iterdir() if p.is_dir() and p != out_dir)
        places += [out_dir.parent, *siblings]
    for title, name in RELATED:
        for place in places:
            if (place / name).is_file():
                link = os.path.relpath(place / name, out_dir)
                found.append((f"{title} ({Path(link).parent or '.'})", Path(link).as_posix()))
    return found


def write_comparison(
    out_dir: Path,
    paired: PairedRecords,
    comparison: SliceComparison,
    *,
    label_a: str,
    label_b: str,
    dataset_root: Path | None,
    notes: list[str] | None = None,
    max_flip_images: int = 60,
) -> dict[str, Path]:
    """Write comparison.csv, flips.csv, comparison.md, deltas.png and report.html into
    ``out_dir``; returns them by file name. Screenshots come from ``dataset_root`` (optional:
    without it, or for a missing file, the HTML shows a placeholder)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = list(notes or [])
    paths = {
        name: out_dir / name
        for name in (COMPARISON_CSV, FLIPS_CSV, COMPARISON_MD, DELTAS_PNG, REPORT_HTML)
    }
    flip_frame = flips(paired.frame)
    write_comparison_csvs(out_dir, comparison, flip_frame)
    markdown = comparison_markdown(
        paired, comparison, label_a=label_a, label_b=label_b, notes=notes, n_flips=len(flip_frame)
    )
    paths[COMPARISON_MD].write_text(markdown, encoding="utf-8")
    chart = deltas_png(comparison, label_a=label_a, label_b=label_b)
    paths[DELTAS_PNG].write_bytes(chart)
    shown = pick_flips(flip_frame, max(0, max_flip_images))
    rows = [row.to_dict() for _, row in shown.iterrows()]
    page = render_html(
        paired,
        comparison,
        label_a=label_a,
        label_b=label_b,
        notes=notes,
        related=related_results(out_dir),
        chart_png=chart,
        shown_flips=shown,
        shots=annotate_all(rows, dataset_root),
        n_flips=len(flip_frame),
    )
    paths[REPORT_HTML].write_text(page, encoding="utf-8")
    return paths


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def render_terminal(comparison: SliceComparison, *, label_a: str, label_b: str) -> str:
    """The headline and the overall + per-group table, every line at most 100 columns."""
    wrap = textwrap.TextWrapper(width=TERMINAL_WIDTH, subsequent_indent="  ")
    lines = wrap.wrap(comparison.headline(label_a, label_b))
    lines += wrap.wrap(f"A = {label_a}; B = {label_b}; delta = B - A in percentage points")
    lines += wrap.wrap(fmt.units_text(comparison))
    overall = fmt.slice_rows(comparison, "overall").assign(slice="overall")
    rows = pd.concat([overall, _group_rows(comparison)])
    columns = ["n", "acc A %", "acc B %", "delta pp", fmt.confidence_label(comparison), "p"]
    columns.append("p Holm")
    widths = [max(len(c), *(len(str(v)) for v in rows[c])) for c in columns]
    fixed = sum(widths) + 2 * len(columns)
    name_width = max(8, min(TERMINAL_WIDTH - fixed, max(len(str(v)) for v in rows["slice"])))
    header = "slice".ljust(name_width) + "".join(
        "  " + c.rjust(w) for c, w in zip(columns, widths, strict=True)
    )
    lines += ["", header, "-" * min(len(header), TERMINAL_WIDTH)]
    for _, row in rows.iterrows():
        cells = "".join("  " + str(row[c]).rjust(w) for c, w in zip(columns, widths, strict=True))
        lines.append(_cut(str(row["slice"]), name_width).ljust(name_width) + cells)
    return "\n".join(_cut(line, TERMINAL_WIDTH) for line in lines)


def _group_rows(comparison: SliceComparison) -> pd.DataFrame:
    rows = fmt.slice_rows(comparison, "group")
    return rows.rename(columns={"group": "slice"})
