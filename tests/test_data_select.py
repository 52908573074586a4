"""Selection: filters, limit, language; a sample that cannot be served is an exclusion."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from screenspot_eval.data.sample import Sample
from screenspot_eval.data.select import Selection, instruction_for, select_samples
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    root = tmp_path_factory.mktemp("select") / "release"
    synthesize_release(root, 60, seed=11, max_width=32)
    return load_release(root).samples


def test_no_filter_selects_everything_in_order(samples: list[Sample]) -> None:
    selected, exclusions = select_samples(samples, Selection())
    assert selected == samples and exclusions == []


@pytest.mark.parametrize(
    ("selection", "keep"),
    [
        (Selection(applications=("word", "excel")), lambda s: s.application in ("word", "excel")),
        (Selection(platforms=("windows",)), lambda s: s.platform == "windows"),
        (Selection(ui_types=("icon",)), lambda s: s.ui_type == "icon"),
        (
            Selection(platforms=("macos",), ui_types=("text",)),
            lambda s: s.platform == "macos" and s.ui_type == "text",
        ),
    ],
)
def test_filters(samples: list[Sample], selection: Selection, keep) -> None:
    selected, exclusions = select_samples(samples, selection)
    assert selected == [s for s in samples if keep(s)] and selected
    assert exclusions == []


def test_group_filter_uses_the_applications_group_for_ungrouped_files(
    samples: list[Sample],
) -> None:
    ungrouped = [s for s in samples if s.group is None and s.application == "vscode"]
    assert ungrouped
    selected, exclusions = select_samples(samples, Selection(groups=("Dev",)))
    assert set(ungrouped) <= set(selected)
    assert {s.application for s in selected} <= {"vscode", "quartus"}
    assert exclusions == []


def test_explicit_ids_and_unknown_ids(samples: list[Sample]) -> None:
    wanted = (samples[5].id, samples[1].id, "no_such_id")
    selected, exclusions = select_samples(samples, Selection(ids=wanted))
    assert [s.id for s in selected] == [samples[1].id, samples[5].id]  # dataset order
    assert [(e.sample_id, e.field, e.reason) for e in exclusions] == [
        ("no_such_id", "id", "id not in dataset")
    ]


def test_limit(samples: list[Sample]) -> None:
    selected, _ = select_samples(samples, Selection(limit=7))
    assert selected == samples[:7]
    assert select_samples(samples, Selection(limit=0))[0] == []


def test_chinese_instructions_exclude_samples_without_them(samples: list[Sample]) -> None:
    missing = [s for s in samples if s.instruction_cn is None]
    assert missing, "the synthetic release must have files without instruction_cn"
    selected, exclusions = select_samples(samples, Selection(language="cn"))
    assert len(selected) + len(exclusions) == len(samples)
    assert [e.sample_id for e in exclusions] == [s.id for s in missing]
    assert all(e.field == "instruction_cn" and e.source_file for e in exclusions)
    assert all(instruction_for(s, "cn") == s.instruction_cn for s in selected)


def test_limit_counts_selected_samples_not_exclusions(samples: list[Sample]) -> None:
    selected, exclusions = select_samples(samples, Selection(language="cn", limit=len(samples)))
    assert len(selected) == len([s for s in samples if s.instruction_cn])
    assert exclusions


def test_selection_is_frozen_and_serialisable() -> None:
    selection = Selection(groups=("CAD",), ui_types=("text",), limit=5, language="cn")
    restored = Selection.model_validate(json.loads(selection.model_dump_json()))
    assert restored == selection
    with pytest.raises(ValidationError):
        selection.limit = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Selection(language="fr")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Selection(ui_types=("widget",))  # type: ignore[arg-type]
