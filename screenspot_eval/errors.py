"""One family of errors, each kind with its exit code, so the CLI never guesses from message text.

Every failure a user can cause or meet (a bad option, a broken dataset, a server that went
away, Ctrl-C) is a :class:`ScreenspotError`; the CLI prints its message (and how to resume,
where that applies) and exits with :attr:`ScreenspotError.exit_code`. Anything else is a bug:
the CLI names it in one line, keeps its traceback in a file and exits with 1. The module sits
below every layer: it imports nothing of the package.
"""

from __future__ import annotations

EXIT_INTERNAL_ERROR = 1
EXIT_USER_ERROR = 2
EXIT_DATA_ERROR = 3
EXIT_BACKEND_FAILURE = 4
EXIT_INTERRUPTED = 130


class ScreenspotError(Exception):
    """Base of every expected failure; ``exit_code`` says which kind it is."""

    exit_code: int = 1
    #: The command that continues the interrupted work, when there is one.
    resume: str | None = None


class UserError(ScreenspotError):
    """The options, the config or the results folder cannot make this run (exit 2)."""

    exit_code = EXIT_USER_ERROR


class DataError(ScreenspotError):
    """The dataset is missing, unreadable or invalid (exit 3)."""

    exit_code = EXIT_DATA_ERROR


class BackendFailure(ScreenspotError):
    """The engine or server failed, or does not run what was asked (exit 4)."""

    exit_code = EXIT_BACKEND_FAILURE


class RunAborted(ScreenspotError):
    """A run stopped early with everything finished on disk; ``resume`` says how to go on.

    Exit 130 when a person or a signal stopped it, 4 when the backend did.
    """

    def __init__(self, message: str, resume: str | None, *, interrupted: bool):
        super().__init__(message)
        self.resume = resume
        self.interrupted = interrupted

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return EXIT_INTERRUPTED if self.interrupted else EXIT_BACKEND_FAILURE
