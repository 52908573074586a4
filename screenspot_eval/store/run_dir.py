"""A results folder: append-only records, a manifest, and one writer at a time.

``predictions.jsonl`` is appended one line per finished sample and flushed + fsynced, so a
killed run loses at most the samples in flight. On open, a truncated last line (the process
died mid-write) is cut off and reported; ``failed`` records (request errors) are dropped so the
resume retries them, leaving every sample in the file exactly once.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from screenspot_eval.errors import UserError
from screenspot_eval.store.manifest import MANIFEST_VERSION, Manifest, newer_version_message
from screenspot_eval.store.records import SCHEMA_VERSION, PredictionRecord

PREDICTIONS = "predictions.jsonl"
MANIFEST = "manifest.json"
LOCK = ".lock"


_HELD: set[Path] = set()  # folders this process holds: its own pid in a lock is not stale


class RunDirError(UserError, RuntimeError):
    """A results folder that cannot be used as asked (locked, corrupt, newer schema)."""


class RunLockedError(RunDirError):
    """Another live process writes into this folder."""


@dataclass
class RepairReport:
    """What opening the records file had to fix."""

    truncated_bytes: int = 0
    dropped_failed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunDir:
    """One results folder. Use as a context manager to hold its lock while writing."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._handle: IO[str] | None = None
        self._locked = False
        self.lock_note: str | None = None

    @property
    def predictions(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    # --- lock ---------------------------------------------------------------------------

    def acquire(self) -> str | None:
        """Take the folder's lock; returns a note when a stale lock was taken over."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK
        note = None
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read_lock(lock)
                pid = int(holder.get("pid", -1))
                same_host = holder.get("host") == me["host"]
                mine = pid == os.getpid() and self.path.resolve() in _HELD
                if mine or (same_host and pid > 0 and pid != os.getpid() and _pid_alive(pid)):
                    raise RunLockedError(
                        f"{self.path} is being written by another run (pid {pid} on "
                        f"{holder.get('host')}); wait for it to finish or stop it first"
                    ) from None
                if not same_host and pid > 0:
                    raise RunLockedError(
                        f"{self.path} is locked by pid {pid} on host {holder.get('host')}; "
                        f"if that run is dead, delete {lock}"
                    ) from None
                note = f"took over a stale lock of dead process {pid}"
                lock.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self._locked = True
            _HELD.add(self.path.resolve())
            self.lock_note = note
            return note
        raise RunLockedError(f"could not lock {self.path}")

    @staticmethod
    def _read_lock(lock: Path) -> dict[str, Any]:
        try:
            return json.loads(lock.read_text())
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        self.close()
        if self._locked:
            (self.path / LOCK).unlink(missing_ok=True)
            _HELD.discard(self.path.resolve())
            self._locked = False

    def __enter__(self) -> RunDir:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # --- records ------------------------------------------------------------------------

    def read_records(self, *, repair: bool = False) -> tuple[list[PredictionRecord], RepairReport]:
        """Every record in file order. With ``repair``, also rewrite the file clean.

        Repairs: a truncated last line is cut off; ``failed`` records are dropped (their
        samples run again); for a duplicated id the last record wins. Without ``repair`` a
        truncated last line is ignored and the file is left as it is.
        """
        report = RepairReport()
        if not self.predictions.exists():
            return [], report
        raw = self.predictions.read_bytes()
        lines = raw.split(b"\n")
        tail = lines.pop() if lines else b""
        if tail.strip():
            report.truncated_bytes = len(tail)
        by_id: dict[str, PredictionRecord] = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise RunDirError(f"{self.predictions}:{number} is not JSON: {exc}") from exc
            if data.get("schema_version", 0) > SCHEMA_VERSION:
                raise RunDirError(
                    f"{self.predictions}:{number} has schema_version {data['schema_version']}; "
                    f"this screenspot-eval reads up to {SCHEMA_VERSION}: upgrade it"
                )
            try:
                record = PredictionRecord.model_validate(data)
            except ValidationError as exc:
                raise RunDirError(f"{self.predictions}:{number} is not a record: {exc}") from exc
            if record.id in by_id:
                report.duplicates.append(record.id)
            by_id[record.id] = record
        records = list(by_id.values())
        if repair:
            report.dropped_failed = [r.id for r in records if not r.finished]
            records = [r for r in records if r.finished]
            if report.truncated_bytes or report.dropped_failed or report.duplicates:
                self._rewrite(records)
        return records, report

    def _rewrite(self, records: list[PredictionRecord]) -> None:
        tmp = self.predictions.with_suffix(".jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(record.model_dump_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.predictions)

    def append(self, record: PredictionRecord) -> None:
        """Write one record and make it durable before returning."""
        if self._handle is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._handle = self.predictions.open("a", encoding="utf-8")
        self._handle.write(record.model_dump_json() + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def reset(self) -> None:
        """Start over: remove records, manifest and exports (keeps the lock)."""
        self.close()
        for child in self.path.iterdir():
            if child.name != LOCK and child.is_file():
                child.unlink()

    # --- manifest -----------------------------------------------------------------------

    def read_manifest(self) -> Manifest | None:
        """The folder's manifest, validated (None when there is none yet).

        A manifest newer than this code reads is refused before its fields are looked at, so
        the message says to upgrade instead of listing fields this version does not know.
        """
        if not self.manifest_path.exists():
            return None
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RunDirError(f"{self.manifest_path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RunDirError(f"{self.manifest_path} is not a manifest: not a JSON object")
        version = data.get("manifest_version", 0)
        if isinstance(version, int) and version > MANIFEST_VERSION:
            raise RunDirError(f"{self.manifest_path}: {newer_version_message(version)}")
        try:
            return Manifest.model_validate(data)
        except ValidationError as exc:
            raise RunDirError(f"{self.manifest_path} is not a manifest: {exc}") from exc

    def write_manifest(self, manifest: Manifest) -> None:
        """Atomic write, so a kill never leaves half a manifest."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_path.with_suffix(".json.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(manifest.model_dump_json(indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.manifest_path)
