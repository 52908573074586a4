"""Whatever fails while an engine starts, loads, probes or self-checks: one line, exit 4.

vLLM raises many kinds of exceptions at start-up (a bad engine argument, a checkpoint that does
not load, an out-of-memory, a probe that cannot run on this model). None of them is the user's
to debug from a traceback: the tool names the stage that failed, the first line of the error
and where vLLM's own log is; the full traceback goes to that log.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

from screenspot_eval.errors import BackendFailure, ScreenspotError


class EngineStageError(BackendFailure, RuntimeError):
    """The vLLM engine failed in one named stage (starting, probing, switching, ...)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _append_traceback(log_file: Path | None, stage: str, exc: BaseException) -> None:
    """The full traceback into vLLM's log (the terminal gets one line)."""
    if log_file is None:
        logging.getLogger("screenspot_eval").error("vLLM failed while %s", stage, exc_info=exc)
        return
    with contextlib.suppress(OSError), log_file.open("a", encoding="utf-8") as log:
        log.write(f"\nscreenspot-eval: vLLM failed while {stage}:\n")
        log.write("".join(traceback.format_exception(exc)))


@contextlib.contextmanager
def engine_stage(stage: str, log_file: Path | None) -> Iterator[None]:
    """Turn any unexpected failure inside ``stage`` into an :class:`EngineStageError` that names
    the stage and the log; the tool's own errors (a variant mismatch, ...) pass unchanged."""
    try:
        yield
    except ScreenspotError:
        raise
    except Exception as exc:
        _append_traceback(log_file, stage, exc)
        where = f"; vLLM's log: {log_file}" if log_file is not None else ""
        raise EngineStageError(f"vLLM failed while {stage}: {_first_line(exc)}{where}") from exc
