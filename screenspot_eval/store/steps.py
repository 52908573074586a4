"""Per-step records of a multi-step protocol: one JSON line in ``steps.jsonl`` per model call.

``predictions.jsonl`` keeps one final record per sample (the last step's click, mapped back);
this file keeps every step, so a run interrupted in step k resumes in step k without repeating
a finished step, and a reader sees each crop, answer and click. Appended and fsynced as the
records are; a truncated last line is ignored, a ``failed`` step (request error) is not a
finished step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from screenspot_eval.errors import UserError

STEPS = "steps.jsonl"
STEP_SCHEMA_VERSION = 1

StepOutcome = Literal["continued", "last", "no-click", "outside-view", "failed"]
"""``continued``: its click made the next crop; ``last``: the protocol's last step; ``no-click``:
the answer gave no click, the sample ends here; ``outside-view``: the click lies outside the
view the model saw, no crop can be made from it, the sample ends here; ``failed``: the request
failed (retried on resume)."""


class StepRecord(BaseModel):
    """One model call of one sample."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = STEP_SCHEMA_VERSION
    id: str
    step: int
    """1-based."""
    protocol: str
    view: tuple[int, int, int, int]
    """The crop the model saw, in original-image pixels (the whole image at step 1)."""
    image_size: tuple[int, int] | None
    """The image handed to the backend (after the decode pool's preparation); None when the
    backend got the file."""
    model_size: tuple[int, int] | None
    """The size the model sees for this view (the family's resize), where known."""
    raw_response: str | None
    click_view: tuple[float, float] | None
    """The parsed click in the crop's own pixels."""
    click: tuple[float, float] | None
    """The same click in original-image pixels."""
    hit: bool | None
    """Does this step's click hit the target (None: no click, or a refusal target)."""
    outcome: StepOutcome
    error: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    image_soft_tokens: int | None = None

    @property
    def finished(self) -> bool:
        return self.outcome != "failed"

    @property
    def ends_sample(self) -> bool:
        return self.outcome in ("last", "no-click", "outside-view")


class StepLogError(UserError, RuntimeError):
    """A steps file that cannot be read (not JSON, newer schema)."""


class StepLog:
    """``steps.jsonl`` of one results folder."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / STEPS
        self._handle: IO[str] | None = None

    def append(self, record: StepRecord) -> None:
        """Write one step and make it durable before returning."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(record.model_dump_json() + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def read(self) -> list[StepRecord]:
        """Every step in file order, a truncated last line ignored; for a step written twice
        (a resumed step) the last wins."""
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        lines.pop()  # empty after the last newline, or a truncated line
        by_key: dict[tuple[str, int], StepRecord] = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if data.get("schema_version", 0) > STEP_SCHEMA_VERSION:
                    raise StepLogError(
                        f"{self.path}:{number} has schema_version {data['schema_version']}; "
                        f"this screenspot-eval reads up to {STEP_SCHEMA_VERSION}: upgrade it"
                    )
                record = StepRecord.model_validate(data)
            except (ValueError, ValidationError) as exc:
                if isinstance(exc, StepLogError):
                    raise
                raise StepLogError(f"{self.path}:{number} is not a step record: {exc}") from exc
            by_key[(record.id, record.step)] = record
        return list(by_key.values())


def finished_steps(steps: list[StepRecord]) -> dict[str, list[StepRecord]]:
    """Each sample's finished steps in order, up to the first gap (a failed step is redone)."""
    by_id: dict[str, dict[int, StepRecord]] = {}
    for record in steps:
        if record.finished:
            by_id.setdefault(record.id, {})[record.step] = record
    chains: dict[str, list[StepRecord]] = {}
    for sample_id, numbered in by_id.items():
        chain = []
        while len(chain) + 1 in numbered:
            chain.append(numbered[len(chain) + 1])
        if chain:
            chains[sample_id] = chain
    return chains
