"""`data check`: load a release, account for every sample, and render it for a terminal.

Kept apart from the counting so the CLI stays one call and the text stays under 100 columns.
"""

from __future__ import annotations

import textwrap
import unicodedata
from dataclasses import dataclass

import pandas as pd

from screenspot_eval.data.accounting import (
    NO_GROUP,
    OFFICIAL_APPLICATIONS,
    OFFICIAL_GROUP_UI,
    OFFICIAL_TOTAL,
    Accounting,
    account,
)
from screenspot_eval.data.errors import InvalidSampleError
from screenspot_eval.data.layout_check import LayoutAccounting, count_slices, render_layout_check
from screenspot_eval.data.layouts import get_layout
from screenspot_eval.data.sample import DEFAULT_LAYOUT
from screenspot_eval.data.validate import LoadedDataset, open_dataset

_WIDTH = 100


@dataclass(frozen=True)
class CheckReport:
    loaded: LoadedDataset
    accounting: Accounting | LayoutAccounting

    def render(self) -> str:
        if isinstance(self.accounting, LayoutAccounting):
            excluded = _exclusion_lines(self.loaded)
            return printable(render_layout_check(self.loaded, self.accounting, excluded))
        return render_check(self.loaded, self.accounting)


def check_dataset(
    spec: str,
    revision: str | None = None,
    *,
    strict: bool = True,
    check_images: bool = True,
    layout: str | None = None,
) -> CheckReport:
    """Load ``spec`` in ``layout`` (default ScreenSpot-Pro; raises in strict mode on invalid
    data) and account for its samples against the layout's published counts."""
    chosen = get_layout(layout)
    loaded = open_dataset(spec, revision, strict=strict, check_images=check_images, layout=chosen)
    if chosen.name == DEFAULT_LAYOUT:
        return CheckReport(loaded=loaded, accounting=account(loaded.samples))
    return CheckReport(loaded=loaded, accounting=count_slices(loaded.samples, chosen))


def render_problems(error: InvalidSampleError) -> str:
    """Every problem behind a strict-mode failure, one per line."""
    lines = [f"invalid dataset: {len(error.problems) or 1} problem(s)"]
    lines += [_item(p.describe()) for p in error.problems] or [_item(str(error))]
    return "\n".join(lines)


def _item(text: str) -> str:
    """One listed problem, wrapped to the terminal width with a hanging indent."""
    return textwrap.fill(
        text,
        width=_WIDTH,
        initial_indent="  ",
        subsequent_indent="      ",
        break_on_hyphens=False,
        break_long_words=False,
    )


def render_check(loaded: LoadedDataset, acc: Accounting) -> str:
    revision = f" @ {loaded.revision}" if loaded.revision else ""
    out = [
        f"dataset: {loaded.source}{revision}",
        f"root: {loaded.root}",
        f"annotation files: {len(loaded.annotation_files)}; samples loaded: {acc.total}; "
        f"excluded: {len(loaded.exclusions)}",
        "",
        "Samples per group x ui_type (group field as written):",
        _indent(_group_table(acc.group_ui, official=False)),
    ]
    if acc.inferences:
        out += ["", "Samples without `group` (group taken from the application's other files):"]
        for inf in acc.inferences:
            took = inf.group or f"{NO_GROUP}: no unique group for this application"
            out.append(f"  {inf.source_file}: {inf.count} x {inf.application} -> {took}")
    out += [
        "",
        "Compared with the official release (after group inference):",
        _indent(_group_table(acc.group_ui_inferred, official=True)),
        "",
        "Per application:",
        _indent(_application_table(acc)),
        "",
        *_diff_lines(acc),
        "",
        *_exclusion_lines(loaded),
    ]
    return printable("\n".join(out))


def printable(text: str) -> str:
    """Escape control and format characters (ANSI/OSC sequences, bidi overrides) that dataset
    text could smuggle into a terminal; line breaks between report lines stay."""
    return "".join(
        ch if ch == "\n" or unicodedata.category(ch)[0] != "C" else ascii(ch)[1:-1] for ch in text
    )


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _group_table(table: dict[str, dict[str, int]], *, official: bool) -> str:
    groups = [g for g in OFFICIAL_GROUP_UI if g in table or official]
    groups += sorted(set(table) - set(groups))
    rows = []
    for g in groups:
        row = {"group": g, "icon": table.get(g, {}).get("icon", 0)}
        row["text"] = table.get(g, {}).get("text", 0)
        row["total"] = row["icon"] + row["text"]
        if official:
            expected = OFFICIAL_GROUP_UI.get(g, {"icon": 0, "text": 0})
            row |= {"official icon": expected["icon"], "official text": expected["text"]}
            row["official total"] = expected["icon"] + expected["text"]
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("group")
    frame.loc["all"] = frame.sum()
    return frame.to_string(line_width=_WIDTH)


def _application_table(acc: Accounting) -> str:
    rows = [
        {
            "application": r.application,
            "group": r.group,
            "platform": ",".join(r.platforms),
            "icon": r.icon,
            "text": r.text,
            "total": r.icon + r.text,
            "files": ",".join(f.removeprefix("annotations/") for f in r.files),
        }
        for r in acc.applications
    ]
    if not rows:
        return "(no samples)"
    return pd.DataFrame(rows).to_string(index=False, line_width=_WIDTH, max_colwidth=40)


def _diff_lines(acc: Accounting) -> list[str]:
    apps = len(acc.applications)
    lines = [
        f"Total: {acc.total} (official {OFFICIAL_TOTAL}, {acc.total - OFFICIAL_TOTAL:+d}); "
        f"applications: {apps} (official {OFFICIAL_APPLICATIONS}, {apps - OFFICIAL_APPLICATIONS:+d})"
    ]
    if acc.matches_official:
        return [*lines, "Matches the official release in every group x ui_type cell."]
    lines.append(f"Differences from the official release ({len(acc.diff)} cell(s)):")
    for d in acc.diff:
        lines.append(f"  {d.group} / {d.ui_type}: {d.actual} (official {d.expected}, {d.delta:+d})")
        feeds = ", ".join(f"{f.removeprefix('annotations/')} ({n})" for f, n in d.files.items())
        lines.append(f"    from: {feeds or 'no file'}")
    return lines


def _exclusion_lines(loaded: LoadedDataset) -> list[str]:
    if not loaded.exclusions:
        return ["Excluded samples: none."]
    lines = [f"Excluded samples ({len(loaded.exclusions)}):"]
    return lines + [_item(e.describe()) for e in loaded.exclusions]
