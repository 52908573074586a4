"""The results folder: durable appends, repair on open, schema refusal, the lock, the manifest."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import fake_manifest

from screenspot_eval.backends.base import Completion
from screenspot_eval.data.sample import Sample
from screenspot_eval.protocol.coords import CoordinateConvention
from screenspot_eval.run.grading import build_record
from screenspot_eval.store.records import SCHEMA_VERSION, PredictionRecord
from screenspot_eval.store.run_dir import (
    LOCK,
    MANIFEST,
    PREDICTIONS,
    RunDir,
    RunDirError,
    RunLockedError,
)


def sample(sample_id: str) -> Sample:
    return Sample(
        id=sample_id,
        img_filename="app_windows/screenshot_00000.png",
        instruction="Click the Save button.",
        bbox=(100.0, 100.0, 200.0, 150.0),
        img_size=(1000, 500),
        application="app",
        platform="windows",
        group="Dev",
        ui_type="text",
        source_file="annotations/app_windows.json",
    )


def record(sample_id: str, *, answer: str | None = "inside", error: str | None = None):
    """A ``correct`` (answer inside), ``wrong`` (outside) or ``failed`` (error) record."""
    text = {
        "inside": '[{"box_2d": [250, 150, 250, 150], "label": "Save"}]',
        "outside": '[{"box_2d": [900, 900, 900, 900], "label": "Save"}]',
        None: None,
    }[answer]
    return build_record(
        sample(sample_id),
        instruction="Click the Save button.",
        language="en",
        completion=Completion(sample_id, text, error=error),
        convention=CoordinateConvention.YX_1000,
        prompt_hash="abc123",
        variant="pre",
    )


def failed(sample_id: str) -> PredictionRecord:
    return record(sample_id, answer=None, error="HTTP 500")


def file_lines(run: RunDir) -> list[bytes]:
    return run.predictions.read_bytes().splitlines()


# --- records -------------------------------------------------------------------------------


def test_record_helpers_give_the_intended_outcomes():
    assert record("a").outcome.value == "correct"
    assert record("a", answer="outside").outcome.value == "wrong"
    assert failed("a").outcome.value == "failed"
    assert not failed("a").finished and record("a").finished


def test_append_and_read_round_trip(tmp_path):
    written = [record("a"), record("b", answer="outside"), failed("c")]
    with RunDir(tmp_path / "run") as run:
        for r in written:
            run.append(r)
    run = RunDir(tmp_path / "run")
    records, report = run.read_records()
    assert records == written
    assert report.truncated_bytes == 0 and report.dropped_failed == [] and report.duplicates == []
    assert len(file_lines(run)) == 3
    assert all(json.loads(line)["schema_version"] == SCHEMA_VERSION for line in file_lines(run))


def test_missing_records_file_reads_empty(tmp_path):
    records, report = RunDir(tmp_path / "nothing").read_records(repair=True)
    assert records == []
    assert report.truncated_bytes == 0
    assert not (tmp_path / "nothing").exists()  # reading creates nothing


def test_truncated_last_line_is_ignored_without_repair(tmp_path):
    run = RunDir(tmp_path)
    run.append(record("a"))
    run.append(record("b"))
    run.close()
    tail = b'{"schema_version": 1, "id": "c", "img_fil'
    with run.predictions.open("ab") as handle:
        handle.write(tail)
    before = run.predictions.read_bytes()

    records, report = run.read_records()

    assert [r.id for r in records] == ["a", "b"]
    assert report.truncated_bytes == len(tail)
    assert run.predictions.read_bytes() == before  # left as it is


def test_truncated_last_line_is_cut_off_with_repair(tmp_path):
    run = RunDir(tmp_path)
    run.append(record("a"))
    run.append(record("b"))
    run.close()
    clean = run.predictions.read_bytes()
    tail = b'{"schema_version": 1, "id": "c", "img_fil'
    with run.predictions.open("ab") as handle:
        handle.write(tail)

    records, report = run.read_records(repair=True)

    assert [r.id for r in records] == ["a", "b"]
    assert report.truncated_bytes == len(tail)
    assert run.predictions.read_bytes() == clean  # rewritten without the tail
    assert not list(tmp_path.glob("*.tmp"))
    assert run.read_records(repair=True)[1].truncated_bytes == 0  # nothing left to repair
    run.append(record("c"))  # appends start on a fresh line
    run.close()
    assert [r.id for r in run.read_records()[0]] == ["a", "b", "c"]


def test_repair_drops_failed_records_so_they_run_again(tmp_path):
    run = RunDir(tmp_path)
    for r in (record("a"), failed("b"), record("c", answer="outside"), failed("d")):
        run.append(r)
    run.close()

    plain, _ = run.read_records()
    assert [r.id for r in plain] == ["a", "b", "c", "d"]  # without repair nothing is dropped

    records, report = run.read_records(repair=True)
    assert [r.id for r in records] == ["a", "c"]
    assert report.dropped_failed == ["b", "d"]
    assert [json.loads(line)["id"] for line in file_lines(run)] == ["a", "c"]


def test_duplicate_ids_last_record_wins_and_is_reported(tmp_path):
    run = RunDir(tmp_path)
    run.append(record("a", answer="outside"))
    run.append(record("b"))
    run.append(record("a"))
    run.close()

    records, report = run.read_records()
    assert [r.id for r in records] == ["a", "b"]
    assert records[0].outcome.value == "correct"  # the later line
    assert report.duplicates == ["a"]
    assert len(file_lines(run)) == 3  # unchanged without repair

    records, report = run.read_records(repair=True)
    assert report.duplicates == ["a"]
    assert [json.loads(line)["id"] for line in file_lines(run)] == ["a", "b"]
    assert json.loads(file_lines(run)[0])["outcome"] == "correct"


def test_failed_then_retried_record_keeps_the_retry(tmp_path):
    run = RunDir(tmp_path)
    run.append(failed("a"))
    run.append(record("a"))
    run.close()
    records, report = run.read_records(repair=True)
    assert [(r.id, r.outcome.value) for r in records] == [("a", "correct")]
    assert report.dropped_failed == []


def test_newer_schema_version_is_refused_with_a_clear_message(tmp_path):
    run = RunDir(tmp_path)
    run.append(record("a"))
    run.close()
    newer = record("b").model_dump(mode="json") | {"schema_version": SCHEMA_VERSION + 1}
    with run.predictions.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(newer) + "\n")
    with pytest.raises(RunDirError) as caught:
        run.read_records(repair=True)
    message = str(caught.value)
    assert f"{PREDICTIONS}:2" in message
    assert f"schema_version {SCHEMA_VERSION + 1}" in message
    assert f"reads up to {SCHEMA_VERSION}" in message
    assert "upgrade" in message
    assert len(file_lines(run)) == 2  # nothing rewritten


def test_corrupt_line_in_the_middle_is_an_error_not_a_repair(tmp_path):
    run = RunDir(tmp_path)
    run.append(record("a"))
    run.close()
    with run.predictions.open("ab") as handle:
        handle.write(b"garbage\n")
        handle.write(record("b").model_dump_json().encode() + b"\n")
    with pytest.raises(RunDirError, match=rf"{PREDICTIONS}:2 is not JSON"):
        run.read_records(repair=True)


def test_a_line_that_is_not_a_record_is_named(tmp_path):
    run = RunDir(tmp_path)
    run.path.mkdir(exist_ok=True)
    run.predictions.write_text('{"schema_version": 1, "id": "a"}\n', encoding="utf-8")
    with pytest.raises(RunDirError, match=rf"{PREDICTIONS}:1 is not a record"):
        run.read_records()


def test_reset_removes_records_manifest_and_exports_but_keeps_the_lock(tmp_path):
    with RunDir(tmp_path) as run:
        run.append(record("a"))
        run.write_manifest(fake_manifest())
        (tmp_path / "summary.md").write_text("x")
        run.reset()
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK]
        run.append(record("b"))
    assert [r.id for r in RunDir(tmp_path).read_records()[0]] == ["b"]


# --- lock ----------------------------------------------------------------------------------


def _lock_file(folder: Path, pid: int, host: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK
    lock.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname()}))
    return lock


def test_lock_is_taken_and_released(tmp_path):
    run = RunDir(tmp_path / "run")
    with run:
        holder = json.loads((tmp_path / "run" / LOCK).read_text())
        assert holder == {"pid": os.getpid(), "host": socket.gethostname()}
    assert not (tmp_path / "run" / LOCK).exists()


def test_lock_held_by_another_live_process_is_refused_naming_its_pid(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; "
            "from screenspot_eval.store.run_dir import RunDir; "
            "run = RunDir(Path(sys.argv[1])); run.acquire(); "
            "print('locked', flush=True); sys.stdin.read(); run.release()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError) as caught:
            RunDir(tmp_path).acquire()
        assert f"pid {holder.pid}" in str(caught.value)
        assert str(tmp_path) in str(caught.value)
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == holder.pid  # untouched
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not (tmp_path / LOCK).exists()  # the holder released it on exit
    with RunDir(tmp_path):
        pass


def test_live_pid_in_a_hand_written_lock_is_refused(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock_file(tmp_path, sleeper.pid)
        with pytest.raises(RunLockedError, match=rf"pid {sleeper.pid} on"):
            RunDir(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)


def test_second_run_dir_in_the_same_process_is_refused(tmp_path):
    with RunDir(tmp_path), pytest.raises(RunLockedError, match=rf"pid {os.getpid()}"):
        RunDir(tmp_path).acquire()


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    lock = _lock_file(tmp_path, dead.pid)
    run = RunDir(tmp_path)
    note = run.acquire()
    try:
        assert note is not None
        assert f"stale lock of dead process {dead.pid}" in note
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    finally:
        run.release()
    assert not lock.exists()


@pytest.mark.parametrize("content", ["", "{not json", '{"host": "x"}'])
def test_unreadable_lock_file_is_taken_over(tmp_path, content):
    (tmp_path / LOCK).write_text(content)
    run = RunDir(tmp_path)
    assert run.acquire() is not None
    run.release()


def test_lock_from_another_host_is_never_taken_over(tmp_path):
    lock = _lock_file(tmp_path, 4242, host="some-other-host.invalid")
    with pytest.raises(RunLockedError) as caught:
        RunDir(tmp_path).acquire()
    message = str(caught.value)
    assert "pid 4242 on host some-other-host.invalid" in message
    assert str(lock) in message  # says which file to delete
    assert lock.exists()


# --- manifest ------------------------------------------------------------------------------


def test_manifest_round_trip_is_plain_json(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.read_manifest() is None
    manifest = fake_manifest(status="running")
    run.write_manifest(manifest)
    text = (tmp_path / "run" / MANIFEST).read_text(encoding="utf-8")
    assert json.loads(text) == manifest.model_dump(mode="json")
    assert json.loads(text)["counts"] == {
        "selected": 2,
        "recorded": 2,
        "missing": 0,
        "outcomes": {"correct": 1, "wrong": 1},
    }
    assert text.endswith("\n")
    assert run.read_manifest() == manifest
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_manifest_write_is_atomic(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    run.write_manifest(fake_manifest(status="complete"))
    before = run.manifest_path.read_bytes()

    def crash(src, dst):
        raise OSError("killed before the rename (test)")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        run.write_manifest(fake_manifest(status="running"))
    assert run.manifest_path.read_bytes() == before  # the old manifest, whole
    monkeypatch.undo()
    run.write_manifest(fake_manifest(status="running"))  # a leftover temp file does not matter
    assert run.read_manifest() == fake_manifest(status="running")
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupt_manifest_is_an_error(tmp_path):
    (tmp_path / MANIFEST).write_text('{"status": "runn')
    with pytest.raises(RunDirError, match="not valid JSON"):
        RunDir(tmp_path).read_manifest()
