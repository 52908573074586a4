"""Stop a run that fails systematically, instead of recording a broken run as a weak model.

A missing vLLM method, a parser bug or a processor that rejects every input turns each sample
into a ``failed`` record; without a stop the run ends with exit 0 and a summary that reads like
a model that never answers (seen with ``LLM.enqueue_chat`` missing: 12 of 12 failed, exit 0).
Isolated failures stay what they were: recorded, and retried on resume. The thresholds follow
inspect's ``fail_on_error``: a streak of the same error, or a failure share over a floor of
samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from screenspot_eval.backends.base import BackendError
from screenspot_eval.store.records import PredictionRecord

#: This many consecutive failures with the same error stop the run.
SAME_ERROR_STREAK = 8
#: After this many records, a failure share above :data:`MAX_FAILED_SHARE` stops the run.
MIN_RECORDS_FOR_SHARE = 32
MAX_FAILED_SHARE = 0.5


@dataclass
class FailureGuard:
    """Watches records as they are written; :meth:`observe` says why to stop (None: go on)."""

    streak: int = 0
    last_error: str | None = None
    seen: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    tripped: bool = False  # raised once: a later record (flushed on the way out) is kept quietly

    def check(self, record: PredictionRecord) -> None:
        """Raise :class:`SystematicFailureError` once the failures are systematic."""
        reason = self.observe(record)
        if reason is not None and not self.tripped:
            self.tripped = True
            raise SystematicFailureError(reason)

    def finish(self, earlier_ok: int) -> None:
        """At the end of a session: a run whose every record failed (none earlier either) is
        broken, however short; it never ends as a complete run of misses."""
        if self.seen and self.failed == self.seen and not earlier_ok and not self.tripped:
            self.tripped = True
            raise SystematicFailureError(
                f"every one of the {self.seen} samples failed; most often "
                f"({self.errors[self._most_common()]}x): {self._most_common()}"
            )

    def _most_common(self) -> str:
        return max(self.errors, key=self.errors.__getitem__)

    def observe(self, record: PredictionRecord) -> str | None:
        self.seen += 1
        if record.outcome.value != "failed":
            self.streak, self.last_error = 0, None
            return None
        error = record.error or f"failed ({record.failure_kind or 'no answer'})"
        self.failed += 1
        self.errors[error] = self.errors.get(error, 0) + 1
        self.streak = self.streak + 1 if error == self.last_error else 1
        self.last_error = error
        if self.streak >= SAME_ERROR_STREAK:
            return f"the same error on {self.streak} samples in a row: {error}"
        if self.seen >= MIN_RECORDS_FOR_SHARE and self.failed / self.seen > MAX_FAILED_SHARE:
            common = self._most_common()
            return (
                f"{self.failed} of {self.seen} samples failed (over {MAX_FAILED_SHARE:.0%}); "
                f"most often ({self.errors[common]}x): {common}"
            )
        return None


class SystematicFailureError(BackendError):
    """The run failed the same way too often to be a property of the samples (exit 4)."""

    def __init__(self, reason: str):
        super().__init__(f"systematic failure, {reason}")
