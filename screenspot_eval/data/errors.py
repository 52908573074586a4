"""Typed dataset errors and exclusions.

Every problem names the annotation file, the sample id and the field, so a run record can point
a reader at the exact line to fix. Strict loading raises a :class:`DatasetError`; lenient loading
turns the same problem into an :class:`Exclusion` and keeps going, so nothing is dropped silently.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from screenspot_eval.errors import DataError


class Exclusion(BaseModel):
    """One sample (or a whole annotation file, ``sample_id=None``) left out of a run, and why."""

    model_config = ConfigDict(frozen=True)

    sample_id: str | None
    source_file: str | None
    field: str | None
    reason: str

    def describe(self) -> str:
        return describe_problem(self.source_file, self.sample_id, self.field, self.reason)


def describe_problem(
    source_file: str | None, sample_id: str | None, field: str | None, reason: str
) -> str:
    """One readable line: ``annotations/x.json: sample 'x_0': field 'bbox': reason``."""
    parts = [source_file or "(no file)"]
    parts.append(f"sample {sample_id!r}" if sample_id is not None else "whole file")
    if field is not None:
        parts.append(f"field {field!r}")
    return ": ".join([*parts, reason])


class DatasetError(DataError):
    """Base of every data-layer error; carries where the problem is and what it is."""

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        sample_id: str | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.sample_id = sample_id
        self.field = field
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        if self.file is None and self.sample_id is None and self.field is None:
            return self.reason
        return describe_problem(self.file, self.sample_id, self.field, self.reason)

    def to_exclusion(self) -> Exclusion:
        return Exclusion(
            sample_id=self.sample_id, source_file=self.file, field=self.field, reason=self.reason
        )


class DatasetUnavailableError(DatasetError):
    """The dataset cannot be found: not a folder, not cached, and the hub cannot be reached."""


class DatasetLayoutError(DatasetError):
    """The folder is not in the official layout (no ``annotations/*.json``)."""


class InvalidSampleError(DatasetError):
    """A sample (or its annotation file, or its image) fails validation.

    In strict mode the first problem is raised; ``problems`` lists every problem found, so one
    run shows them all instead of one per attempt.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        sample_id: str | None = None,
        field: str | None = None,
        problems: list[Exclusion] | None = None,
    ) -> None:
        self.problems = problems or []
        super().__init__(reason, file=file, sample_id=sample_id, field=field)

    def _message(self) -> str:
        message = super()._message()
        extra = len(self.problems) - 1
        return f"{message} (and {extra} more problem(s))" if extra > 0 else message


class UnsafePathError(InvalidSampleError):
    """An image path escapes the dataset folder (``..``, absolute path, outbound symlink)."""


class ImageLoadError(DatasetError):
    """An image that cannot be decoded; yielded in place of the image, never raised mid-stream."""
