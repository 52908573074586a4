"""The typed manifest: round trip, version refusal, unknown fields, and what ``execute_run`` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import fake_manifest
from pydantic import ValidationError

from screenspot_eval.backends.base import BackendError, GroundingRequest
from screenspot_eval.backends.scripted import ScriptedBackend
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.run.config import RunConfig, resolve_config
from screenspot_eval.run.session import RunAbortedError, execute_run
from screenspot_eval.store.manifest import MANIFEST_VERSION, Manifest, Repair, Session
from screenspot_eval.store.run_dir import MANIFEST, RunDir, RunDirError

OLD_MANIFEST = Path(__file__).parent / "data" / "manifest_v1_untyped_interrupted.json"
"""Written by the untyped (dict) manifest code of commit 195502a: a run stopped after 1 of 2."""

TOP_LEVEL = {
    "manifest_version",
    "status",
    "started_at",
    "ended_at",
    "config",
    "config_fingerprint",
    "outcome_settings",
    "prompt",
    "prompt_hash",
    "convention",
    "image_budget",
    "structured_decoding",
    "requested_variant",
    "effective_variant",
    "engine_report",
    "dataset",
    "exclusions",
    "environment",
    "resume_command",
    "counts",
    "sessions",
}


def written(run: RunDir) -> dict[str, Any]:
    return json.loads(run.manifest_path.read_text(encoding="utf-8"))


def write_raw(folder: Path, data: dict[str, Any]) -> RunDir:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps(data), encoding="utf-8")
    return RunDir(folder)


# --- round trip ----------------------------------------------------------------------------


def test_round_trip_keeps_every_field_and_the_json_names(tmp_path):
    run = RunDir(tmp_path)
    manifest = fake_manifest()
    run.write_manifest(manifest)
    back = run.read_manifest()
    assert back == manifest
    assert isinstance(back, Manifest) and isinstance(back.sessions[0], Session)
    data = written(run)
    assert set(data) == TOP_LEVEL  # no error: it is left out while there is none
    assert data["manifest_version"] == MANIFEST_VERSION
    assert data["convention"] == "yx-1000"
    assert data["dataset"]["files"] == manifest.dataset.files
    assert data["environment"]["git"] == {"commit": "f" * 40, "dirty": False}
    assert data["environment"]["packages"] == {"vllm": None, "pandas": "2.2.3"}  # None kept
    assert data["sessions"][0]["lock"] is None  # always written, as before
    assert data["engine_report"]["model_class"] == manifest.engine_report["model_class"]


def test_fields_known_only_later_are_absent_until_set(tmp_path):
    run = RunDir(tmp_path)
    manifest = fake_manifest(
        status="running", ended_at=None, effective_variant=None, engine_report=None
    )
    manifest.sessions[0] = Session(
        started_at="2026-12-01T10:00:00+00:00",
        resumed_from=0,
        repaired=Repair(truncated_bytes=0, retried_failed=[]),
    )
    run.write_manifest(manifest)
    data = written(run)
    assert not {"ended_at", "effective_variant", "engine_report", "error"} & set(data)
    assert set(data["sessions"][0]) == {"started_at", "resumed_from", "repaired", "lock"}
    assert run.read_manifest() == manifest

    manifest.status = "interrupted"
    manifest.error = "backend failed: gone"
    manifest.sessions[0].error = "backend failed: gone"
    run.write_manifest(manifest)
    data = written(run)
    assert data["error"] == data["sessions"][0]["error"] == "backend failed: gone"
    assert run.read_manifest() == manifest


def test_assignments_are_validated():
    manifest = fake_manifest()
    with pytest.raises(ValidationError, match="status"):
        manifest.status = "finished"  # type: ignore[assignment]
    with pytest.raises(ValidationError, match="samples"):
        manifest.sessions[0].samples = "many"  # type: ignore[assignment]
    with pytest.raises(ValidationError, match="frozen"):
        manifest.counts.selected = 3  # type: ignore[misc]


def test_a_manifest_written_by_the_untyped_code_loads(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / MANIFEST).write_text(OLD_MANIFEST.read_text(encoding="utf-8"), encoding="utf-8")
    manifest = RunDir(folder).read_manifest()
    assert manifest is not None
    assert manifest.status == "interrupted"
    assert manifest.error == "backend failed: backend died (scripted)"
    assert manifest.counts.model_dump() == {
        "selected": 2,
        "recorded": 1,
        "missing": 1,
        "outcomes": {},
    }
    (session,) = manifest.sessions
    assert session.samples == 1 and session.eval_s is None and session.ended_at is not None
    assert manifest.effective_variant == "native"
    assert manifest.engine_report is not None
    # written back, it is the same JSON (the untyped code wrote no key this code leaves out)
    RunDir(folder).write_manifest(manifest)
    assert written(RunDir(folder)) == json.loads(OLD_MANIFEST.read_text(encoding="utf-8"))


# --- refusals ------------------------------------------------------------------------------


def test_a_newer_manifest_version_is_refused_with_a_clear_message(tmp_path):
    data = fake_manifest().model_dump(mode="json")
    data["manifest_version"] = MANIFEST_VERSION + 1
    data["a_field_from_the_future"] = {"x": 1}  # refused for its version, not for this field
    run = write_raw(tmp_path, data)
    with pytest.raises(RunDirError) as caught:
        run.read_manifest()
    message = str(caught.value)
    assert str(run.manifest_path) in message
    assert f"manifest_version {MANIFEST_VERSION + 1} is newer" in message
    assert f"up to {MANIFEST_VERSION}" in message and "upgrade screenspot-eval" in message
    assert "a_field_from_the_future" not in message


def test_the_model_itself_refuses_a_newer_version():
    data = fake_manifest().model_dump(mode="json")
    data["manifest_version"] = MANIFEST_VERSION + 1
    with pytest.raises(ValidationError, match="upgrade screenspot-eval"):
        Manifest.model_validate(data)


@pytest.mark.parametrize(
    "where",
    [(), ("counts",), ("dataset",), ("environment",), ("environment", "git"), ("sessions", 0)],
)
def test_an_unknown_field_is_refused_and_named(tmp_path, where):
    data = fake_manifest().model_dump(mode="json")
    target = data
    for key in where:
        target = target[key]
    target["surprise"] = 1
    run = write_raw(tmp_path, data)
    with pytest.raises(RunDirError, match=r"is not a manifest") as caught:
        run.read_manifest()
    assert "surprise" in str(caught.value)
    assert "Extra inputs are not permitted" in str(caught.value)


def test_a_missing_required_field_is_refused(tmp_path):
    data = fake_manifest().model_dump(mode="json")
    del data["dataset"]
    with pytest.raises(RunDirError, match=r"is not a manifest(.|\n)*dataset"):
        write_raw(tmp_path, data).read_manifest()


def test_a_manifest_that_is_not_an_object_is_refused(tmp_path):
    (tmp_path / MANIFEST).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(RunDirError, match="not a JSON object"):
        RunDir(tmp_path).read_manifest()


# --- what a real run writes ----------------------------------------------------------------

N = 6


@pytest.fixture
def config(tmp_path: Path) -> RunConfig:
    root = tmp_path / "data"
    synthesize_release(root, N, seed=0, max_width=320)
    return resolve_config(
        None,
        {
            "engine.model": "fake/model",
            "engine.max_soft_tokens": 70,
            "data.source": str(root),
            "runtime.image_workers": 1,
        },
    )


def centre_answer(request: GroundingRequest) -> str:
    return json.dumps([{"box_2d": [500, 500, 500, 500], "label": "x"}])


def test_the_manifest_of_a_scripted_run_validates(tmp_path, config):
    out = tmp_path / "out"
    result = execute_run(
        config,
        out,
        quiet=True,
        resume_command="screenspot-eval run --out out",
        backend_factory=lambda _config: ScriptedBackend(centre_answer),
    )
    text = (out / MANIFEST).read_text(encoding="utf-8")
    assert Manifest.model_validate_json(text) == result.manifest == RunDir(out).read_manifest()
    manifest = result.manifest
    assert manifest.status == "complete" and manifest.error is None
    assert manifest.counts.selected == manifest.counts.recorded == N
    assert manifest.counts.missing == 0
    assert sum(manifest.counts.outcomes.values()) == N
    assert manifest.requested_variant == "native" and manifest.effective_variant == "native"
    assert manifest.engine_report is not None
    assert manifest.engine_report["vllm_version"] == "none (scripted backend)"
    assert manifest.config == config.model_dump(mode="json")
    assert manifest.config_fingerprint == config.fingerprint(manifest.prompt_hash)
    assert manifest.prompt["content_hash"] == manifest.prompt_hash
    assert manifest.image_budget == 70
    assert manifest.resume_command == "screenspot-eval run --out out"
    assert len(manifest.dataset.files) == len(manifest.dataset.annotation_files) + N
    (session,) = manifest.sessions
    assert session.samples == N and session.resumed_from == 0
    assert session.ended_at == manifest.ended_at
    assert session.load_s is not None and session.eval_s is not None
    assert set(json.loads(text)) == TOP_LEVEL | {"model_family"}
    assert json.loads(text)["model_family"]["adapter"] == "gemma4"


def test_an_interrupted_then_resumed_scripted_run_validates_at_each_step(tmp_path, config):
    out = tmp_path / "out"
    with pytest.raises(RunAbortedError):
        execute_run(
            config,
            out,
            quiet=True,
            backend_factory=lambda _config: ScriptedBackend(
                centre_answer, die_after=2, die_with=BackendError
            ),
        )
    stopped = RunDir(out).read_manifest()
    assert stopped is not None
    assert stopped.status == "interrupted"
    assert stopped.error is not None and "backend died" in stopped.error
    assert stopped.counts.recorded == 2 and stopped.counts.missing == N - 2
    assert stopped.sessions[0].samples == 2 and stopped.sessions[0].error == stopped.error

    result = execute_run(
        config,
        out,
        quiet=True,
        backend_factory=lambda _config: ScriptedBackend(centre_answer),
    )
    assert RunDir(out).read_manifest() == result.manifest
    assert result.manifest.status == "complete" and result.manifest.error is None
    assert "error" not in json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    assert result.manifest.started_at == stopped.started_at
    assert [s.resumed_from for s in result.manifest.sessions] == [0, 2]
    assert result.manifest.sessions[0] == stopped.sessions[0]
    assert result.manifest.counts.recorded == N
