"""The self-contained HTML report of an A/B comparison.

One file a reviewer can open anywhere, offline: inline CSS, the chart and every screenshot as
data URIs, no scripts and no external resources. Every string that came from the dataset or the
model (instructions, raw answers, ids, application names) is escaped, text and attributes alike:
a hostile annotation file or model answer must render as text, never as markup.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

import pandas as pd

from screenspot_eval.report import comparison_format as fmt
from screenspot_eval.report.annotate import BOX_COLOUR, CLICK_COLOURS, Shot
from screenspot_eval.report.pairing import PairedRecords
from screenspot_eval.stats.slices import SliceComparison

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.headline{font-size:1.25em;font-weight:600;background:#f3f6fa;padding:.6em .8em;
border-left:4px solid #1f77b4}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right}
th:first-child,td:first-child{text-align:left}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}
figure.flip{border:1px solid #ddd;margin:1em 0;padding:.6em}
figure.flip img{max-width:100%;height:auto;display:block}
.placeholder{background:#eee;color:#555;padding:2em;text-align:center;font-style:italic}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:.4em;margin:.2em 0;
max-height:12em;overflow:auto}
.legend span.sw{display:inline-block;width:1em;height:1em;vertical-align:middle;margin:0 .3em}
.b_only{color:#1a7f37}.a_only{color:#b35900}.note{color:#8a4b00}
"""


def _e(value: Any) -> str:
    """Escape any value for HTML text or a double-quoted attribute."""
    return escape("" if fmt.is_missing(value) else str(value), quote=True)


def _rgb(colour: tuple[int, int, int]) -> str:
    return "rgb({},{},{})".format(*colour)


def table_html(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def facts_html(items: Iterable[tuple[str, str]]) -> str:
    return (
        '<dl class="facts">'
        + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
        + "</dl>"
    )


def agreement_html(comparison: SliceComparison) -> str:
    c = fmt.agreement_cells(comparison)
    return (
        "<table><thead><tr><th></th><th>B correct</th><th>B wrong</th></tr></thead><tbody>"
        f"<tr><td>A correct</td><td>{c['both_right']}</td><td>{c['a_only']}</td></tr>"
        f"<tr><td>A wrong</td><td>{c['b_only']}</td><td>{c['both_wrong']}</td></tr>"
        "</tbody></table>"
    )


def _click(row: pd.Series, side: str) -> str:
    x, y = row.get(f"pred_x_{side}"), row.get(f"pred_y_{side}")
    if fmt.is_missing(x) or fmt.is_missing(y):
        return "no click"
    return f"click ({round(float(x), 1):g}, {round(float(y), 1):g})"


def flip_html(index: int, row: pd.Series, shot: Shot, *, label_a: str, label_b: str) -> str:
    """One flipped sample: the annotated screenshot (or why not) and its caption."""
    gained = row["direction"] == "b_only"
    title = "B right, A wrong" if gained else "A right, B wrong"
    if shot.data_uri:
        alt = f"screenshot {row['img_filename']} with the target box and both clicks"
        picture = f'<img src="{shot.data_uri}" alt="{_e(alt)}">'
    else:
        picture = f'<div class="placeholder">{_e(shot.problem)}</div>'
    where = " / ".join(
        str(row[k]) for k in ("application", "platform", "group", "ui_type")
        if not fmt.is_missing(row.get(k))
    )  # fmt: skip
    answers = "".join(
        f"<p><b>{side.upper()} ({_e(label)})</b>: {_e(row[f'outcome_{side}'])}, "
        f"{_e(_click(row, side))}</p><pre>{_e(row[f'raw_response_{side}'])}</pre>"
        + (f'<p class="note">error: {_e(row[f"error_{side}"])}</p>'
           if not fmt.is_missing(row.get(f"error_{side}")) else "")
        for side, label in (("a", label_a), ("b", label_b))
    )  # fmt: skip
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in shot.notes)
    return (
        f'<figure class="flip" id="flip-{index}">{picture}<figcaption>'
        f'<p class="{_e(row["direction"])}"><b>{_e(title)}</b> · id <code>{_e(row["id"])}</code>'
        f" · {_e(where)} · <code>{_e(row['img_filename'])}</code> · box {_e(_box(row['bbox']))}"
        f"</p><p><b>Instruction</b>: {_e(row['instruction'])}</p>{answers}{notes}"
        "</figcaption></figure>"
    )


def _box(bbox: Any) -> str:
    try:
        return "[" + ", ".join(f"{float(v):g}" for v in bbox) + "]"
    except (TypeError, ValueError):
        return "n/a"


def _ids(title: str, ids: Sequence[str]) -> str:
    listed = ", ".join(f"<code>{_e(i)}</code>" for i in ids) or "none"
    return f"<details><summary>{_e(title)} ({len(ids)})</summary><p>{listed}</p></details>"


def legend_html(label_a: str, label_b: str) -> str:
    box, a, b = _rgb(BOX_COLOUR), _rgb(CLICK_COLOURS["a"]), _rgb(CLICK_COLOURS["b"])
    return (
        '<p class="legend">'
        f'<span class="sw" style="border:3px solid {box}"></span>ground-truth box'
        f'<span class="sw" style="border:3px solid {a};border-radius:50%"></span>'
        f"A click, circle ({_e(label_a)})"
        f'<span class="sw" style="color:{b};font-weight:bold;width:auto">&#x2715;</span>'
        f"B click, cross ({_e(label_b)})</p>"
    )


def render_html(
    paired: PairedRecords,
    comparison: SliceComparison,
    *,
    label_a: str,
    label_b: str,
    notes: Sequence[str],
    chart_png: bytes,
    shown_flips: pd.DataFrame,
    shots: Sequence[Shot],
    n_flips: int,
    related: Sequence[tuple[str, str]] = (),
) -> str:
    """The whole report as one HTML string; ``shots`` align with the rows of ``shown_flips``.

    ``related``: (title, relative link) of results that sit beside this comparison (a budget
    sweep's ``sweep.md``, a parity check's ``parity.md``), linked in their own section."""
    headline = comparison.headline(label_a, label_b)
    chart = base64.b64encode(chart_png).decode("ascii")
    parts = [
        f"<h1>A/B comparison: {_e(label_b)} (B) vs {_e(label_a)} (A)</h1>",
        f'<p class="headline" id="headline">{_e(headline)}</p>',
        f"<p>{_e(fmt.units_text(comparison))}</p>",
        "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>" if notes else "",
        "<h2>Summary</h2>",
        facts_html(fmt.summary_items(paired, comparison, label_a=label_a, label_b=label_b)),
        "<h3>Paired outcomes</h3>",
        agreement_html(comparison),
        f'<img src="data:image/png;base64,{chart}" alt="accuracy delta per group with intervals">',
    ]
    parts.append('<section id="slices">')
    for title, table in fmt.slice_tables(comparison):
        parts += [f"<h2>{_e(title)}</h2>", table_html(table)]
    parts.append("</section>")
    left_out = n_flips - len(shown_flips)
    parts += [
        '<section id="flips">',
        f"<h2>Flipped samples ({n_flips})</h2>",
        "<p>Samples one variant got right and the other wrong (McNemar's discordant pairs)."
        + (f" {left_out} more are not shown here; flips.csv lists all." if left_out else "")
        + "</p>",
        legend_html(label_a, label_b) if len(shown_flips) else "<p>No flips.</p>",
    ]
    for i, ((_, row), shot) in enumerate(zip(shown_flips.iterrows(), shots, strict=True)):
        parts.append(flip_html(i, row, shot, label_a=label_a, label_b=label_b))
    parts.append("</section>")
    if paired.shared_only:
        parts += [
            "<h2>Unpaired samples (dropped by --shared-only)</h2>",
            _ids("Only in A", paired.only_a),
            _ids("Only in B", paired.only_b),
        ]
    if paired.differing:
        parts.append("<h2>Sample fields that differ between the runs (A's values shown)</h2>")
        parts += [_ids(name, ids) for name, ids in paired.differing.items()]
    if related:
        links = "".join(f'<li><a href="{_e(href)}">{_e(title)}</a></li>' for title, href in related)
        parts += ['<section id="related"><h2>Related results</h2>', f"<ul>{links}</ul></section>"]
    parts += ["<h2>Statistics settings</h2>", facts_html(fmt.settings_items(comparison))]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(headline)}</title><style>{CSS}</style></head><body>"
        + "\n".join(p for p in parts if p)
        + "</body></html>\n"
    )


def pick_flips(flip_frame: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most ``limit`` flips, split evenly between B's gains and losses where both exist."""
    if len(flip_frame) <= limit:
        return flip_frame
    gains = flip_frame.loc[flip_frame["direction"] == "b_only"]
    losses = flip_frame.loc[flip_frame["direction"] == "a_only"]
    n_gains = min(len(gains), max(limit - len(losses), math.ceil(limit / 2)))
    n_losses = min(len(losses), limit - n_gains)
    return pd.concat([gains.iloc[:n_gains], losses.iloc[:n_losses]])
