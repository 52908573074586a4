"""`data check` for the layouts beside ScreenSpot-Pro: totals and slices against the published
counts each layout declares (:mod:`screenspot_eval.data.layouts`), every exclusion named.

ScreenSpot-Pro keeps its own, more detailed accounting (:mod:`screenspot_eval.data.accounting`,
group inference included); this one counts whatever slices a layout reports.
"""

from __future__ import annotations

import textwrap
from collections import Counter

import pandas as pd
from pydantic import BaseModel, ConfigDict

from screenspot_eval.data.layouts import Layout, get_layout, published_count, slice_values
from screenspot_eval.data.sample import Sample

_WIDTH = 100


class SliceCount(BaseModel):
    """One slice value: how many samples were loaded, and the published count if recorded."""

    model_config = ConfigDict(frozen=True)

    slice: str
    value: str
    actual: int
    published: int | None
    source: str | None

    @property
    def delta(self) -> int | None:
        return None if self.published is None else self.actual - self.published


class LayoutAccounting(BaseModel):
    """Every count of a loaded copy of a layout and how it compares with the published ones."""

    layout: str
    total: int
    rows: list[SliceCount]

    @property
    def diff(self) -> list[SliceCount]:
        return [r for r in self.rows if r.delta not in (None, 0)]

    @property
    def matches_published(self) -> bool:
        return not self.diff


def count_slices(samples: list[Sample], layout: str | Layout) -> LayoutAccounting:
    """Count ``samples`` per slice of ``layout`` (language aside) and per published count."""
    chosen = get_layout(layout)
    columns = [c for c in chosen.report_slices if c != "language"]
    columns += [p.slice for p in chosen.published if p.slice not in (*columns, "total")]
    rows = [_row(chosen, "total", "all", len(samples))]
    for column in dict.fromkeys(columns):
        counts: Counter[str] = Counter(v for s in samples for v in slice_values(s, column))
        values = list(counts)
        values += [p.value for p in chosen.published if p.slice == column and p.value not in counts]
        rows += [_row(chosen, column, value, counts[value]) for value in sorted(values)]
    return LayoutAccounting(layout=chosen.name, total=len(samples), rows=rows)


def _row(layout: Layout, column: str, value: str, actual: int) -> SliceCount:
    published = published_count(layout, column, value)
    return SliceCount(
        slice=column,
        value=value,
        actual=actual,
        published=published.count if published else None,
        source=published.source if published else None,
    )


def render_layout_check(loaded: object, acc: LayoutAccounting, exclusion_lines: list[str]) -> str:
    """The terminal report of ``data check --layout`` for a layout other than ScreenSpot-Pro."""
    layout = get_layout(acc.layout)
    revision = getattr(loaded, "revision", None)
    files = getattr(loaded, "annotation_files", [])
    out = [
        f"dataset: {getattr(loaded, 'source', '?')}{f' @ {revision}' if revision else ''}",
        f"root: {getattr(loaded, 'root', '?')}",
        *_wrapped(f"layout: {layout.name} ({layout.title}; {layout.home})", indent=""),
        *_wrapped(f"annotation files: {len(files)} ({', '.join(files)})", indent=""),
        f"samples loaded: {acc.total}; excluded: {len(getattr(loaded, 'exclusions', []))}",
        *_wrapped(f"scoring: {layout.scoring}", indent=""),
    ]
    for note in getattr(loaded, "notes", []):
        out += _wrapped(f"note: {note}", indent="")
    frame = pd.DataFrame(
        [
            {
                "slice": r.slice,
                "value": r.value,
                "samples": r.actual,
                "published": "" if r.published is None else r.published,
                "delta": "" if r.delta is None else f"{r.delta:+d}",
            }
            for r in acc.rows
        ]
    )
    out += ["", "Samples per slice (published: the layout's recorded counts):"]
    out += ["  " + line for line in frame.to_string(index=False, line_width=_WIDTH).splitlines()]
    out.append("")
    if acc.matches_published:
        out.append(f"Matches every published count of {layout.title}.")
    else:
        out.append(f"Differences from the published counts ({len(acc.diff)}):")
        for r in acc.diff:
            out.append(f"  {r.slice} {r.value}: {r.actual} (published {r.published}, {r.delta:+d})")
    sources = sorted({r.source for r in acc.rows if r.source})
    if sources:
        out += ["", "Sources of the published counts:"]
        out += [line for s in sources for line in _wrapped(f"- {s}")]
    if layout.notes:
        out += ["", "Layout notes:"]
        out += [line for n in layout.notes for line in _wrapped(f"- {n}")]
    out += ["", *exclusion_lines]
    return "\n".join(out)


def _wrapped(text: str, indent: str = "  ") -> list[str]:
    """``text`` wrapped to the terminal width with a hanging indent."""
    return textwrap.wrap(
        text,
        width=_WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + "    ",
        break_on_hyphens=False,
        break_long_words=False,
    )
