"""``execute_run`` end to end with a fake backend: records, exports, resume, refusals, repair.

No vLLM: the backend is a small class implementing the :class:`Backend` protocol that answers
in the default template's ``box_2d`` format, correctly for some samples and wrongly for others.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fakes import PLUGIN_MODEL, UPSTREAM_EMBEDDER, UPSTREAM_MODEL, box_answer, fake_report
from PIL import Image

from screenspot_eval.backends.base import (
    BackendError,
    GroundingRequest,
)
from screenspot_eval.backends.scripted import ScriptedBackend
from screenspot_eval.backends.variant import (
    EmbedderReport,
    VariantMismatchError,
)
from screenspot_eval.data.errors import DatasetError
from screenspot_eval.data.sample import Sample
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release
from screenspot_eval.run.config import RunConfig, resolve_config
from screenspot_eval.run.session import (
    RunAbortedError,
    RunRefusedError,
    execute_run,
)
from screenspot_eval.store.run_dir import LOCK, RunDir, RunLockedError

N = 12
OUR_MODEL = PLUGIN_MODEL


def embedder_report(variant: str) -> EmbedderReport:
    """What an engine running ``variant`` reports: upstream classes for native, ours otherwise."""
    if variant == "native":
        return fake_report(
            "native",
            measured="post",
            model_class=UPSTREAM_MODEL,
            class_path=UPSTREAM_EMBEDDER,
            vllm_version="0.0.test",
        )
    return fake_report(variant, vllm_version="0.0.test")


class FakeBackend(ScriptedBackend):
    """Answers every request from the known samples; can fail per sample or die midway."""

    def __init__(
        self,
        samples: dict[str, Sample],
        *,
        variant: str = "native",
        die_after: int | None = None,
        die_with: type[BaseException] = BackendError,
        error_ids: Iterable[str] = (),
        all_correct: bool = False,
    ):
        self.samples = samples
        self.all_correct = all_correct
        super().__init__(
            lambda request: box_answer(
                samples[request.sample_id], correct=self.correct(request.sample_id)
            ),
            report=embedder_report(variant),
            die_after=die_after,
            die_with=die_with,
            fail_ids=error_ids,
            fail_error="HTTP 500 (test)",
            check=lambda request: _same_size(request, samples),
        )

    def correct(self, sample_id: str) -> bool:
        return self.all_correct or sorted(self.samples).index(sample_id) % 2 == 0


def _same_size(request: GroundingRequest, samples: dict[str, Sample]) -> None:
    assert request.image.size == samples[request.sample_id].img_size


class Factory:
    """A ``backend_factory`` that hands out one prepared backend and counts its calls."""

    def __init__(self, backend: FakeBackend | None):
        self.backend = backend
        self.calls = 0

    def __call__(self, config: RunConfig) -> FakeBackend:
        self.calls += 1
        if self.backend is None:
            raise AssertionError("the backend factory must not be called")
        return self.backend


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    synthesize_release(root, N, seed=0, max_width=320)
    return root


@pytest.fixture
def samples(data_root: Path) -> dict[str, Sample]:
    return {s.id: s for s in load_release(data_root).samples}


@pytest.fixture
def make_config(data_root: Path) -> Callable[..., RunConfig]:
    def make(**overrides: Any) -> RunConfig:
        given = {
            "engine.model": "fake/model",
            "engine.adapter": "gemma4",  # a fake model: no checkpoint config to read it from
            "engine.max_soft_tokens": 70,
            "data.source": str(data_root),
            "runtime.image_workers": 1,
            "runtime.prefetch": 2,
        }
        return resolve_config(None, {**given, **overrides})

    return make


def lines_on_disk(out: Path) -> list[dict[str, Any]]:
    text = (out / "predictions.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def manifest_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def run(config: RunConfig, out: Path, backend: FakeBackend | None, **kwargs: Any):
    factory = Factory(backend)
    result = execute_run(config, out, quiet=True, backend_factory=factory, **kwargs)
    return result, factory


# --- a full run ----------------------------------------------------------------------------


def test_full_run_writes_every_sample_once_and_all_exports(tmp_path, make_config, samples):
    out = tmp_path / "out"
    backend = FakeBackend(samples)
    result, factory = run(make_config(), out, backend)

    assert factory.calls == 1
    assert backend.closed
    assert sorted(backend.requested) == sorted(samples)
    ids = [line["id"] for line in lines_on_disk(out)]
    assert sorted(ids) == sorted(samples)  # every sample exactly once
    assert [r.id for r in result.records] == list(samples)  # dataset order
    outcomes = {r.id: r.outcome.value for r in result.records}
    assert outcomes == {i: "correct" if backend.correct(i) else "wrong" for i in samples}
    assert {r.variant for r in result.records} == {"native"}

    assert set(result.exports) == {"samples", "metrics", "official", "summary"}
    for path in result.exports.values():
        assert path.is_file() and path.stat().st_size > 0, path
    manifest = manifest_of(out)
    assert manifest["status"] == "complete"
    assert manifest["counts"] == {
        "selected": N,
        "recorded": N,
        "missing": 0,
        "outcomes": {"correct": N // 2, "wrong": N // 2},
    }
    assert manifest["effective_variant"] == "native"
    assert manifest["requested_variant"] == "native"
    assert manifest["image_budget"] == 70
    assert len(manifest["sessions"]) == 1
    assert not (out / ".lock").exists()  # released


def test_second_run_with_nothing_to_do_never_starts_a_backend(tmp_path, make_config, samples):
    out = tmp_path / "out"
    config = make_config()
    first, _ = run(config, out, FakeBackend(samples))
    before = (out / "predictions.jsonl").read_bytes()

    second, factory = run(config, out, None)  # a factory that would fail if called

    assert factory.calls == 0
    assert (out / "predictions.jsonl").read_bytes() == before
    assert second.records == first.records
    manifest = manifest_of(out)
    assert manifest["status"] == "complete"
    assert len(manifest["sessions"]) == 2
    assert manifest["sessions"][1]["resumed_from"] == N


# --- interruption and resume ---------------------------------------------------------------


def test_backend_death_keeps_finished_records_then_resume_completes(tmp_path, make_config, samples):
    out = tmp_path / "out"
    config = make_config()
    k = 5
    dying = FakeBackend(samples, die_after=k)
    with pytest.raises(RunAbortedError, match="backend failed") as caught:
        run(config, out, dying, resume_command="screenspot-eval run --again")
    assert caught.value.resume == "screenspot-eval run --again"
    assert dying.closed
    first_ids = [line["id"] for line in lines_on_disk(out)]
    assert len(first_ids) == k == len(set(first_ids))
    manifest = manifest_of(out)
    assert manifest["status"] == "interrupted"
    assert "engine died" in manifest["error"]
    assert manifest["sessions"][0]["samples"] == k
    assert not (out / ".lock").exists()

    healthy = FakeBackend(samples)
    result, factory = run(config, out, healthy)

    assert factory.calls == 1
    assert sorted(healthy.requested) == sorted(set(samples) - set(first_ids))  # only the missing
    ids = [line["id"] for line in lines_on_disk(out)]
    assert sorted(ids) == sorted(samples)  # all 12, each exactly once
    assert ids[:k] == first_ids  # the first session's records are kept as they were
    assert len(result.records) == N
    manifest = manifest_of(out)
    assert manifest["status"] == "complete"
    assert [s["resumed_from"] for s in manifest["sessions"]] == [0, k]


def test_keyboard_interrupt_is_an_aborted_run_too(tmp_path, make_config, samples):
    out = tmp_path / "out"
    with pytest.raises(RunAbortedError, match="interrupted"):
        run(make_config(), out, FakeBackend(samples, die_after=3, die_with=KeyboardInterrupt))
    assert len(lines_on_disk(out)) == 3
    assert manifest_of(out)["status"] == "interrupted"


def test_interrupted_manifest_counts_what_is_on_disk(tmp_path, make_config, samples):
    out = tmp_path / "out"
    with pytest.raises(RunAbortedError):
        run(make_config(), out, FakeBackend(samples, die_after=4))
    assert manifest_of(out)["counts"]["recorded"] == 4


def test_completed_resume_clears_the_previous_error(tmp_path, make_config, samples):
    out = tmp_path / "out"
    config = make_config()
    with pytest.raises(RunAbortedError):
        run(config, out, FakeBackend(samples, die_after=4))
    run(config, out, FakeBackend(samples))
    manifest = manifest_of(out)
    assert manifest["status"] == "complete"
    assert "error" not in manifest


def test_failed_completion_is_recorded_and_only_it_is_retried(tmp_path, make_config, samples):
    out = tmp_path / "out"
    config = make_config()
    bad = sorted(samples)[3]
    result, _ = run(config, out, FakeBackend(samples, error_ids=[bad]))
    failed = [r for r in result.records if r.outcome.value == "failed"]
    assert [r.id for r in failed] == [bad]
    assert failed[0].error == "HTTP 500 (test)"
    assert failed[0].attempts == 3
    assert failed[0].pred_x is None and failed[0].raw_response is None
    assert manifest_of(out)["counts"]["outcomes"]["failed"] == 1

    retry = FakeBackend(samples, all_correct=True)
    result, _ = run(config, out, retry)

    assert retry.requested == [bad]
    by_id = {r.id: r for r in result.records}
    assert by_id[bad].outcome.value == "correct"
    ids = [line["id"] for line in lines_on_disk(out)]
    assert sorted(ids) == sorted(samples)  # the failed line was dropped, not duplicated
    session = manifest_of(out)["sessions"][-1]
    assert session["repaired"] == {"truncated_bytes": 0, "retried_failed": [bad]}


def test_truncated_tail_from_a_killed_run_is_cut_and_rerun(tmp_path, make_config, samples):
    out = tmp_path / "out"
    config = make_config()
    with pytest.raises(RunAbortedError):
        run(config, out, FakeBackend(samples, die_after=4))
    half = b'{"schema_version": 1, "id": "half-writ'
    with (out / "predictions.jsonl").open("ab") as handle:
        handle.write(half)
    healthy = FakeBackend(samples)
    run(config, out, healthy)
    assert len(healthy.requested) == N - 4
    assert sorted(line["id"] for line in lines_on_disk(out)) == sorted(samples)
    assert manifest_of(out)["sessions"][-1]["repaired"]["truncated_bytes"] == len(half)


# --- refusals ------------------------------------------------------------------------------


def test_changed_prompt_template_is_refused_with_the_setting_named(tmp_path, make_config, samples):
    out = tmp_path / "out"
    run(make_config(), out, FakeBackend(samples))
    before = (out / "predictions.jsonl").read_bytes()
    changed = make_config(**{"prompt.template": "gemma4-point2d"})
    with pytest.raises(RunRefusedError) as caught:
        run(changed, out, None)
    message = str(caught.value)
    assert 'prompt.template: "gemma4-box2d" -> "gemma4-point2d"' in message
    assert "prompt_hash" in message
    assert "--restart" in message
    assert (out / "predictions.jsonl").read_bytes() == before


def test_changed_sampling_is_refused_but_a_runtime_knob_is_not(tmp_path, make_config, samples):
    out = tmp_path / "out"
    run(make_config(), out, FakeBackend(samples))
    with pytest.raises(RunRefusedError, match=r"sampling\.max_tokens: 128 -> 64"):
        run(make_config(**{"sampling.max_tokens": 64}), out, None)
    _, factory = run(make_config(**{"runtime.image_workers": 3}), out, None)
    assert factory.calls == 0


def test_modified_image_is_refused_naming_the_file(tmp_path, data_root, make_config, samples):
    out = tmp_path / "out"
    run(make_config(), out, FakeBackend(samples))
    target = sorted(samples.values(), key=lambda s: s.id)[0]
    path = data_root / "images" / target.img_filename
    with Image.open(path) as image:
        edited = image.convert("RGB")
    edited.putpixel((0, 0), (1, 2, 3))
    edited.save(path, format="PNG")

    with pytest.raises(RunRefusedError) as caught:
        run(make_config(), out, None)
    message = str(caught.value)
    assert "dataset changed" in message
    assert f"changed (1): images/{target.img_filename}" in message
    assert not (out / LOCK).exists()  # the refusal released the folder


def test_restart_discards_the_old_records(tmp_path, make_config, samples):
    out = tmp_path / "out"
    run(make_config(), out, FakeBackend(samples))
    changed = make_config(**{"prompt.template": "point-xy-1000"})
    fresh = FakeBackend(samples, all_correct=True)
    result, _ = run(changed, out, fresh, restart=True)
    assert sorted(fresh.requested) == sorted(samples)  # everything ran again
    lines = lines_on_disk(out)
    assert len(lines) == N
    assert {line["convention"] for line in lines} == {"xy-1000"}  # the new template's
    manifest = manifest_of(out)
    assert len(manifest["sessions"]) == 1
    assert manifest["config"]["prompt"]["template"] == "point-xy-1000"
    assert len(result.records) == N


def _write_lock(out: Path, pid: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def test_folder_locked_by_a_live_run_is_refused_before_the_backend(tmp_path, make_config):
    out = tmp_path / "out"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(out, other.pid)
        with pytest.raises(RunLockedError, match=rf"pid {other.pid}"):
            run(make_config(), out, None)
    finally:
        other.kill()
        other.wait(timeout=30)
    assert not (out / "manifest.json").exists()


def test_stale_lock_of_a_dead_run_does_not_stop_the_next(tmp_path, make_config, samples):
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    _write_lock(out, dead.pid)
    result, _ = run(make_config(), out, FakeBackend(samples))
    assert len(result.records) == N
    assert not (out / LOCK).exists()


# --- unreadable images ---------------------------------------------------------------------


def _break_image(data_root: Path, sample: Sample) -> None:
    (data_root / "images" / sample.img_filename).write_bytes(b"this is not a PNG at all")


def test_non_image_file_stops_a_strict_run_before_any_backend(
    tmp_path, data_root, make_config, samples
):
    _break_image(data_root, next(iter(samples.values())))
    with pytest.raises(DatasetError, match="not a readable image"):
        run(make_config(), tmp_path / "out", None)


def test_non_image_file_is_excluded_by_a_lenient_run(tmp_path, data_root, make_config, samples):
    broken = next(iter(samples.values()))
    _break_image(data_root, broken)
    backend = FakeBackend(samples)
    result, _ = run(make_config(**{"data.strict": False}), tmp_path / "out", backend)
    assert broken.id not in backend.requested
    assert len(result.records) == N - 1
    exclusions = result.manifest.exclusions
    assert [e.sample_id for e in exclusions] == [broken.id]
    assert "not a readable image" in exclusions[0].reason
    assert result.manifest.counts.selected == N - 1


def test_undecodable_image_without_header_check_becomes_a_failed_record(
    tmp_path, data_root, make_config, samples
):
    broken = next(iter(samples.values()))
    _break_image(data_root, broken)
    config = make_config(**{"data.strict": False, "data.check_images": False})
    backend = FakeBackend(samples)
    result, _ = run(config, tmp_path / "out", backend)
    assert broken.id not in backend.requested
    assert len(result.records) == N
    record = next(r for r in result.records if r.id == broken.id)
    assert record.outcome.value == "failed"
    assert record.error is not None
    assert record.error.startswith(f"image: cannot decode {broken.img_filename}")
    assert "UnidentifiedImageError" in record.error


def test_truncated_png_passing_the_header_check_becomes_a_failed_record(
    tmp_path, data_root, make_config, samples
):
    broken = next(iter(samples.values()))
    path = data_root / "images" / broken.img_filename
    path.write_bytes(path.read_bytes()[:200])  # header intact, pixel data cut
    result, _ = run(make_config(**{"data.strict": False}), tmp_path / "out", FakeBackend(samples))
    record = next(r for r in result.records if r.id == broken.id)
    assert record.outcome.value == "failed"
    assert record.error is not None and record.error.startswith("image: cannot decode")
    assert result.manifest.exclusions == []


# --- the embedder check --------------------------------------------------------------------


def test_variant_mismatch_is_refused_and_writes_no_records(tmp_path, make_config, samples):
    out = tmp_path / "out"
    backend = FakeBackend(samples, variant="post")
    with pytest.raises(VariantMismatchError, match="'native'"):
        run(make_config(**{"engine.norm": "native"}), out, backend)
    assert backend.requested == []
    assert backend.closed
    assert not (out / "predictions.jsonl").exists()
    assert RunDir(out).read_records()[0] == []
    assert not (out / ".lock").exists()


def test_variant_mismatch_does_not_leave_a_running_manifest(tmp_path, make_config, samples):
    out = tmp_path / "out"
    with pytest.raises(VariantMismatchError):
        run(make_config(), out, FakeBackend(samples, variant="post"))
    assert manifest_of(out)["status"] != "running"


def test_plugin_variant_that_matches_runs_and_labels_records(tmp_path, make_config, samples):
    result, _ = run(
        make_config(**{"engine.norm": "pre"}), tmp_path / "out", FakeBackend(samples, variant="pre")
    )
    assert {r.variant for r in result.records} == {"pre"}
    assert result.manifest.effective_variant == "pre"
    assert result.manifest.engine_report is not None
    assert result.manifest.engine_report["model_class"] == OUR_MODEL


def test_restart_discards_records_even_without_a_manifest(tmp_path, make_config, samples):
    out = tmp_path / "out"
    run(make_config(), out, FakeBackend(samples))
    (out / "manifest.json").unlink()
    fresh = FakeBackend(samples, all_correct=True)
    run(make_config(), out, fresh, restart=True)
    assert sorted(fresh.requested) == sorted(samples)


# --- the window after the last sample (engine shutdown, exports) --------------------------


class InterruptedAtClose(FakeBackend):
    """Every sample answered; then Ctrl-C lands while the engine shuts down."""

    def close(self) -> None:
        super().close()
        raise KeyboardInterrupt


def test_ctrl_c_while_the_engine_shuts_down_still_writes_the_exports(
    tmp_path, make_config, samples
):
    out = tmp_path / "out"
    with pytest.raises(RunAbortedError) as caught:
        run(make_config(), out, InterruptedAtClose(samples))
    assert caught.value.exit_code == 130
    assert "engine shut down" in str(caught.value) and "exports are written" in str(caught.value)
    assert len(lines_on_disk(out)) == N
    assert manifest_of(out)["status"] == "complete"
    for name in ("samples.csv", "metrics.csv", "summary.md", "screenspot_pro_results.json"):
        assert (out / name).is_file(), name


def test_ctrl_c_while_writing_the_exports_is_recorded_and_resumable(
    tmp_path, make_config, samples, monkeypatch
):
    import screenspot_eval.run.session as session

    def interrupted(*args: Any, **kwargs: Any) -> dict[str, Path]:
        raise KeyboardInterrupt

    out = tmp_path / "out"
    config = make_config()
    monkeypatch.setattr(session, "write_run_exports", interrupted)
    with pytest.raises(RunAbortedError) as caught:
        execute_run(
            config,
            out,
            quiet=True,
            backend_factory=Factory(FakeBackend(samples)),
            resume_command="screenspot-eval run --out x",
        )
    assert caught.value.exit_code == 130
    assert caught.value.resume == "screenspot-eval run --out x"
    manifest = manifest_of(out)
    assert manifest["status"] == "interrupted"
    assert "writing the exports" in manifest["error"]
    assert len(lines_on_disk(out)) == N
    monkeypatch.undo()
    result, factory = run(config, out, None)  # the resume: no backend, exports written
    assert factory.calls == 0
    assert manifest_of(out)["status"] == "complete"
    assert all(path.is_file() for path in result.exports.values())


class SignalAtLine:
    """Sends this process a real SIGINT (odd ``at``) or SIGTERM (even) at the ``at``-th line
    that the run's own modules execute once ``armed()`` holds: a Ctrl-C or a ``kill`` at that
    exact moment, reaching whatever handler the run has installed there."""

    FILES = ("run/session.py", "store/run_dir.py")
    EXPORTS = "write_run_exports"  # one moment for the exports: the same handler covers them

    def __init__(self, at: int, armed: Callable[[], bool]):
        self.at, self.armed = at, armed
        self.seen = 0

    def __enter__(self) -> SignalAtLine:
        sys.settrace(self._call)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(None)

    def _call(self, frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_name == self.EXPORTS:
            self._moment()
        name = frame.f_code.co_filename.replace("\\", "/")
        return self._line if name.endswith(self.FILES) else None

    def _line(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            self._moment()
        return self._line

    def _moment(self) -> None:
        if self.armed():
            self.seen += 1
            if self.seen == self.at:  # Ctrl-C and SIGTERM take turns: each must do the same
                signal.raise_signal(signal.SIGINT if self.at % 2 else signal.SIGTERM)


def quick_exports(out: Path, records: Any, manifest: Any) -> dict[str, Path]:
    """The exports' files, written without computing them: here only the moments around them
    matter (their content is tested with the real exports above)."""
    paths = {name: out / f"{name}.csv" for name in ("samples", "metrics")}
    paths["summary"] = out / "summary.md"
    for path in paths.values():
        path.write_text(str(len(records)), encoding="utf-8")
    return paths


@pytest.mark.parametrize(
    ("moments", "limit"),
    [("after the last request", None), ("from the first manifest on", 2)],
)
def test_a_ctrl_c_or_sigterm_at_any_line_of_a_run_loses_nothing(
    tmp_path, make_config, samples, monkeypatch, moments, limit
):
    """At every line the run executes (start-up, each sample, the last record, the engine's
    shutdown, the manifest, the exports, the lock) a Ctrl-C or SIGTERM ends in one of two
    defined states: complete with every export written, or interrupted with the resume command,
    which finishes the run. Never a raw KeyboardInterrupt, never a manifest left 'running',
    never an engine left open. The samples' lines are swept on a two-sample run."""
    import screenspot_eval.run.session as session

    monkeypatch.setattr(session, "write_run_exports", quick_exports)
    here = session.environment()  # git and package metadata: read once, not per moment
    monkeypatch.setattr(session, "environment", lambda: here)
    config = make_config(**({"data.selection.limit": limit} if limit else {}))
    clean, _ = run(config, tmp_path / "clean", FakeBackend(samples))
    expected = sorted(r.id for r in clean.records)
    at = 0
    while True:
        at += 1
        out = tmp_path / f"at{at}"
        backend = FakeBackend(samples)
        factory = Factory(backend)
        armed = (
            (out / "manifest.json").exists
            if limit
            else partial(lambda b: len(b.requested) == len(expected), backend)
        )
        with SignalAtLine(at, armed) as signals:
            try:
                execute_run(
                    config, out, quiet=True, backend_factory=factory, resume_command="resume"
                )
                raised = None
            except RunAbortedError as exc:
                raised = exc
            except KeyboardInterrupt as exc:  # the failure this test exists for: say where
                raise AssertionError(f"a raw interrupt escaped at line {at} {moments}") from exc
        if signals.seen < at:  # the run ended before the at-th line: every moment was covered
            break
        where = f"a signal at line {at} {moments}"
        assert raised is not None and raised.exit_code == 130, where
        assert backend.closed or not factory.calls, where
        status = manifest_of(out)["status"]
        assert status in ("complete", "interrupted"), where
        if status == "interrupted":
            assert raised.resume == "resume", where
            run(config, out, FakeBackend(samples))
        assert manifest_of(out)["status"] == "complete", where
        assert sorted(line["id"] for line in lines_on_disk(out)) == expected, where
        assert all((out / name).is_file() for name in ("samples.csv", "summary.md")), where
    assert at > 40  # the sweep reached the exports, not just the last record


# --- fingerprints that survive new settings -------------------------------------------------


def test_against_servers_the_servers_engine_settings_are_neither_recorded_nor_fingerprinted(
    tmp_path, make_config, samples, capsys
):
    """A run against servers records only the engine settings the client decides; vLLM's given
    anyway are named on the terminal as the servers'. The folder resumes when given other
    vLLM values."""
    servers = {"runtime.endpoints": ("http://127.0.0.1:9",)}
    given = make_config(**servers, **{"engine.dtype": "float32", "engine.max_model_len": 2048})
    plain = make_config(**servers)
    assert given.fingerprint("p") == plain.fingerprint("p")
    assert given.outcome_settings() == plain.outcome_settings()
    out = tmp_path / "out"
    with pytest.raises(RunAbortedError):
        execute_run(
            given, out, quiet=False, backend_factory=Factory(FakeBackend(samples, die_after=4))
        )
    assert "the servers' own dtype, max_model_len apply" in capsys.readouterr().err
    manifest = manifest_of(out)
    client = {"model", "norm", "adapter", "preset", "revision", "max_soft_tokens"}
    assert set(manifest["config"]["engine"]) == client
    assert set(manifest["outcome_settings"]["engine"]) <= set(manifest["config"]["engine"])

    other = make_config(**servers, **{"engine.dtype": "bfloat16"})
    run(other, out, FakeBackend(samples))  # the servers' dtype is no setting of this run
    assert manifest_of(out)["status"] == "complete"
    assert len(lines_on_disk(out)) == N
    local = tmp_path / "local"  # in-process, vLLM's settings are the run's own
    with pytest.raises(RunAbortedError):
        run(make_config(**{"engine.dtype": "float32"}), local, FakeBackend(samples, die_after=4))
    with pytest.raises(RunRefusedError, match=r"engine\.dtype"):
        run(make_config(**{"engine.dtype": "bfloat16"}), local, FakeBackend(samples))


def _rewrite_manifest(out: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_a_setting_added_since_the_run_started_resumes_at_its_default(
    tmp_path, make_config, samples
):
    """A run recorded before `engine.enforce_eager` existed (absent from its manifest) resumes:
    the one rule fills in the new field's default, which keeps its behaviour; the recorded
    fingerprint plays no part."""
    out = tmp_path / "out"
    with pytest.raises(RunAbortedError):
        run(make_config(), out, FakeBackend(samples, die_after=4))

    def as_before_the_field(manifest: dict[str, Any]) -> None:
        del manifest["outcome_settings"]["engine"]["enforce_eager"]
        manifest["config_fingerprint"] = "0" * 16

    _rewrite_manifest(out, as_before_the_field)
    result, factory = run(make_config(), out, FakeBackend(samples))
    assert factory.calls == 1 and len(result.records) == N
    with pytest.raises(RunRefusedError, match=r"engine\.enforce_eager: false -> true"):
        run(make_config(**{"engine.enforce_eager": True}), out, None, restart=False)


def test_the_fingerprint_ignores_fields_at_their_default(make_config):
    from screenspot_eval.run.config import without_defaults

    config = make_config()
    settings = config.outcome_settings()
    assert "enforce_eager" in settings["engine"]
    assert "enforce_eager" not in without_defaults(settings)["engine"]
    assert config.fingerprint("h") != config.fingerprint("other prompt")
    assert make_config(**{"sampling.max_tokens": 64}).fingerprint("h") != config.fingerprint("h")
