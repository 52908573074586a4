"""A study file's cells, its refusals and its command-line errors (no engine: the engine runs
are tests/test_study_engine.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from screenspot_eval.cli.app import app
from screenspot_eval.run.study import CELL_RECORD, Study, StudyError, finished

ROOT = Path(__file__).resolve().parents[1]


def study_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(body, encoding="utf-8")
    return path


BASIC = """
name = "s"
out = "{out}"
budgets = [70, 140]
protocols = ["one-shot", "reground"]
[[checkpoints]]
name = "tiny"
model = "{model}"
[[checkpoints]]
name = "other"
model = "{model}"
"""


def test_cells_are_the_matrix_in_order_named_by_what_varies(tmp_path, tiny_model_dir):
    study = Study.load(study_file(tmp_path, BASIC.format(out=tmp_path, model=tiny_model_dir)))
    names = [c.name for c in study.cells()]
    assert names == [
        "tiny-b70-one-shot", "tiny-b70-reground", "tiny-b140-one-shot", "tiny-b140-reground",
        "other-b70-one-shot", "other-b70-reground", "other-b140-one-shot", "other-b140-reground",
    ]  # fmt: skip
    config = study.config(study.cell("other-b140-reground"))
    assert config.engine.max_soft_tokens == 140 and config.prompt.protocol == "reground"
    assert config.out == str(tmp_path / "cells" / "other-b140-reground")


def test_a_cell_whose_definition_changed_is_refused(tmp_path, tiny_model_dir):
    path = study_file(tmp_path, BASIC.format(out=tmp_path, model=tiny_model_dir))
    study = Study.load(path)
    cell = study.cell("tiny-b70-one-shot")
    folder = study.cell_dir(cell)
    folder.mkdir(parents=True)
    definition = study.definition(cell)
    older = json.loads(json.dumps(definition))
    del older["outcome_settings"]["sampling"]["seed"]  # a setting added since, at its default
    (folder / CELL_RECORD).write_text(json.dumps({"definition": older, "headline": "h"}))
    assert finished(study, cell) == {"definition": older, "headline": "h"}
    older["outcome_settings"]["sampling"]["max_tokens"] = 7
    (folder / CELL_RECORD).write_text(json.dumps({"definition": older}))
    with pytest.raises(StudyError, match="changed since it ran") as caught:
        finished(study, cell)
    assert "outcome_settings.sampling.max_tokens: 7 -> 128" in str(caught.value)
    assert finished(study, study.cell("tiny-b70-reground")) is None


def test_the_shipped_study_of_the_gemma_4_families_lists_its_cells():
    result = CliRunner().invoke(
        app, ["study", str(ROOT / "configs" / "studies" / "gemma-4.toml"), "--list-cells"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 10 and lines[0].startswith("e2b-b280: google/gemma-4-E2B-it")
    assert {line.split(":")[0].rsplit("-b", 1)[0] for line in lines} == {
        "e2b", "e4b", "12b", "26b-a4b", "31b"
    }  # fmt: skip


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "studies").glob("*.toml")))
def test_every_cell_of_every_shipped_study_resolves_to_a_run_config(path):
    study = Study.load(path)
    for cell in study.cells():
        config = study.config(cell)
        assert config.engine.model == cell.model and config.engine.adapter == "gemma4"
        assert config.engine.max_soft_tokens == cell.budget
        assert config.out == str(study.cell_dir(cell))


@pytest.mark.parametrize(
    "body, says",
    [
        ('name = "s"\nout = "x"\n', "checkpoints"),
        ('name = "s"\nout = "x"\n[[checkpoints]]\nname = "a b"\nmodel = "m"\n', "name"),
        (
            'name = "s"\nout = "x"\nbudgets = [1, 1]\n[[checkpoints]]\nname = "a"\nmodel = "m"\n',
            "share a name",
        ),
        ("name = ", "study file"),
    ],
)
def test_a_bad_study_file_is_one_clear_error(tmp_path, body, says):
    result = CliRunner().invoke(app, ["study", str(study_file(tmp_path, body)), "--list-cells"])
    assert result.exit_code != 0
    assert says in result.output and "Traceback" not in result.output


def test_an_unknown_cell_names_the_cells(tmp_path, tiny_model_dir):
    path = study_file(tmp_path, BASIC.format(out=tmp_path, model=tiny_model_dir))
    result = CliRunner().invoke(app, ["study", str(path), "--cell", "nope"])
    assert result.exit_code != 0 and "no cell 'nope'" in result.output
    assert "tiny-b70-one-shot" in result.output


def test_datasets_are_a_dimension_of_the_matrix(tmp_path, tiny_model_dir):
    body = f"""
name = "s"
out = "{tmp_path}"
[[checkpoints]]
name = "tiny"
model = "{tiny_model_dir}"
[[datasets]]
name = "pro"
source = "{tmp_path / "pro"}"
[[datasets]]
name = "v2"
source = "{tmp_path / "v2"}"
layout = "screenspot-v2"
"""
    study = Study.load(study_file(tmp_path, body))
    assert [c.name for c in study.cells()] == ["tiny-pro", "tiny-v2"]
    config = study.config(study.cell("tiny-v2"))
    assert config.data.source == str(tmp_path / "v2") and config.data.layout == "screenspot-v2"
    assert "v2 (screenspot-v2)" in study.cell("tiny-v2").describe()
