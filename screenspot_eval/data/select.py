"""Which samples a run evaluates, recorded as a small frozen model in the run manifest.

A filter that a sample simply does not match leaves it out quietly (that is what a filter is
for). A sample the filter wants but cannot serve (no ``instruction_cn`` under ``cn``, no known
group under a group filter, an explicit id that does not exist) becomes an :class:`Exclusion`,
so a run never loses a sample it was asked for without saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from screenspot_eval.data.accounting import application_groups, effective_group
from screenspot_eval.data.errors import Exclusion
from screenspot_eval.data.sample import Sample, UiType

Language = Literal["en", "cn"]


class Selection(BaseModel):
    """Filters applied in order; ``None`` means no filter. ``limit`` counts selected samples."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    groups: tuple[str, ...] | None = None
    applications: tuple[str, ...] | None = None
    platforms: tuple[str, ...] | None = None
    ui_types: tuple[UiType, ...] | None = None
    ids: tuple[str, ...] | None = None
    limit: int | None = Field(default=None, ge=0)
    language: Language = "en"


def instruction_for(sample: Sample, language: Language) -> str | None:
    """The instruction text in ``language``; ``None`` when the sample has none in it."""
    text = sample.instruction if language == "en" else sample.instruction_cn
    return text if text and text.strip() else None


def select_samples(
    samples: Sequence[Sample], selection: Selection
) -> tuple[list[Sample], list[Exclusion]]:
    """Apply ``selection`` in dataset order; return the selected samples and the exclusions.

    A sample without ``group`` matches a group filter through its application's group in the
    other files (see :mod:`screenspot_eval.data.accounting`); if that is unknown it is excluded.
    """
    group_of = application_groups(samples) if selection.groups is not None else {}
    wanted_ids = set(selection.ids) if selection.ids is not None else None
    selected: list[Sample] = []
    exclusions: list[Exclusion] = []

    def exclude(sample: Sample, field: str, reason: str) -> None:
        exclusions.append(
            Exclusion(
                sample_id=sample.id, source_file=sample.source_file, field=field, reason=reason
            )
        )

    for s in samples:
        if selection.limit is not None and len(selected) >= selection.limit:
            break
        if wanted_ids is not None and s.id not in wanted_ids:
            continue
        if not _matches(s.application, selection.applications):
            continue
        if not _matches(s.platform, selection.platforms):
            continue
        if not _matches(s.ui_type, selection.ui_types):
            continue
        if selection.groups is not None:
            group = effective_group(s, group_of)
            if group is None:
                exclude(s, "group", "no group, and none known for its application")
                continue
            if group not in selection.groups:
                continue
        if instruction_for(s, selection.language) is None:
            field = "instruction" if selection.language == "en" else "instruction_cn"
            exclude(s, field, f"no {field} for language {selection.language!r}")
            continue
        selected.append(s)
    if wanted_ids is not None:
        known = {s.id for s in samples}
        for missing in sorted(wanted_ids - known):
            exclusions.append(
                Exclusion(
                    sample_id=missing, source_file=None, field="id", reason="id not in dataset"
                )
            )
    return selected, exclusions


def _matches(value: str, allowed: tuple[str, ...] | None) -> bool:
    return allowed is None or value in allowed
