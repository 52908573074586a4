"""Count the samples per group x ui_type and per application, and diff against the release.

The published totals of the official release are constants here, so a loaded copy that differs
by even one sample (the vLLM PR evaluated 1580 of 1581) is caught and explained cell by cell,
with the annotation files that feed each cell.

Missing ``group``: some official files omit it. Raw tables show such samples as ``(none)``. For
the comparison with the official totals, a sample without group takes the group its
application carries in the other files, but only when that is a single group; otherwise it stays
``(none)`` and shows up in the diff. Every inferred sample is reported per file.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from screenspot_eval.data.sample import UI_TYPES, Sample

NO_GROUP = "(none)"
OFFICIAL_TOTAL = 1581
OFFICIAL_APPLICATIONS = 26
OFFICIAL_GROUP_UI: dict[str, dict[str, int]] = {
    "Dev": {"icon": 145, "text": 154},
    "Creative": {"icon": 143, "text": 198},
    "CAD": {"icon": 64, "text": 197},
    "Scientific": {"icon": 110, "text": 144},
    "Office": {"icon": 53, "text": 177},
    "OS": {"icon": 89, "text": 107},
}
OFFICIAL_UI_TOTALS = {"text": 977, "icon": 604}


class CellDiff(BaseModel):
    """One group x ui_type cell whose count differs from the official release."""

    model_config = ConfigDict(frozen=True)

    group: str
    ui_type: str
    expected: int
    actual: int
    delta: int
    files: dict[str, int]
    """Annotation file -> samples it puts in this cell (in the loaded data)."""


class GroupInference(BaseModel):
    """Samples of one file that had no ``group`` and took their application's group."""

    model_config = ConfigDict(frozen=True)

    source_file: str
    application: str
    group: str | None
    count: int


class ApplicationRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    application: str
    group: str
    platforms: list[str]
    icon: int
    text: int
    files: list[str]


class Accounting(BaseModel):
    """Every count a reader needs to see that nothing was lost, and what differs if it was."""

    total: int
    group_ui: dict[str, dict[str, int]]
    """Raw ``group`` field (``(none)`` when missing) -> ui_type -> count."""
    group_ui_inferred: dict[str, dict[str, int]]
    """The same after group inference; this is what is compared with the official totals."""
    inferences: list[GroupInference]
    applications: list[ApplicationRow]
    diff: list[CellDiff]
    ui_totals: dict[str, int]

    @property
    def matches_official(self) -> bool:
        return (
            not self.diff
            and self.total == OFFICIAL_TOTAL
            and len(self.applications) == OFFICIAL_APPLICATIONS
        )


def application_groups(samples: Iterable[Sample]) -> dict[str, str]:
    """application -> group, from the samples that carry one, when that group is unique."""
    seen: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        if s.group is not None:
            seen[s.application].add(s.group)
    return {app: next(iter(groups)) for app, groups in seen.items() if len(groups) == 1}


def effective_group(sample: Sample, group_of: dict[str, str]) -> str | None:
    """The sample's own group, else its application's group from the other files, else None."""
    return sample.group if sample.group is not None else group_of.get(sample.application)


def account(samples: list[Sample]) -> Accounting:
    """Count ``samples`` and diff them against the official release."""
    group_of = application_groups(samples)
    raw: dict[str, Counter[str]] = defaultdict(Counter)
    inferred: dict[str, Counter[str]] = defaultdict(Counter)
    cell_files: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    inference_counts: Counter[tuple[str, str, str | None]] = Counter()
    for s in samples:
        raw[s.group or NO_GROUP][s.ui_type] += 1
        group = effective_group(s, group_of)
        inferred[group or NO_GROUP][s.ui_type] += 1
        cell_files[(group or NO_GROUP, s.ui_type)][s.source_file] += 1
        if s.group is None:
            inference_counts[(s.source_file, s.application, group)] += 1
    diff = []
    for group in [*OFFICIAL_GROUP_UI, *sorted(set(inferred) - set(OFFICIAL_GROUP_UI))]:
        for ui in UI_TYPES:
            expected = OFFICIAL_GROUP_UI.get(group, {}).get(ui, 0)
            actual = inferred.get(group, Counter())[ui]
            if actual != expected:
                files = dict(sorted(cell_files[(group, ui)].items()))
                diff.append(CellDiff(group=group, ui_type=ui, expected=expected, actual=actual,
                                     delta=actual - expected, files=files))  # fmt: skip
    return Accounting(
        total=len(samples),
        group_ui=_plain(raw),
        group_ui_inferred=_plain(inferred),
        inferences=[
            GroupInference(source_file=f, application=a, group=g, count=n)
            for (f, a, g), n in sorted(inference_counts.items(), key=lambda kv: kv[0][:2])
        ],
        applications=_application_rows(samples),
        diff=diff,
        ui_totals={ui: sum(1 for s in samples if s.ui_type == ui) for ui in UI_TYPES},
    )


def _plain(table: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
    return {g: {ui: table[g][ui] for ui in UI_TYPES} for g in sorted(table)}


def _application_rows(samples: list[Sample]) -> list[ApplicationRow]:
    by_app: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_app[s.application].append(s)
    return [
        ApplicationRow(
            application=app,
            group="/".join(sorted({s.group for s in rows if s.group})) or NO_GROUP,
            platforms=sorted({s.platform for s in rows}),
            icon=sum(s.ui_type == "icon" for s in rows),
            text=sum(s.ui_type == "text" for s in rows),
            files=sorted({s.source_file for s in rows}),
        )
        for app, rows in sorted(by_app.items())
    ]
