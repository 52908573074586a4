"""vLLM's own output into a log file, so the terminal shows the tool's progress and results.

vLLM logs from three kinds of processes (front end, engine core, workers), and its children
also print outside logging (C++ warnings, Triton notices, checkpoint progress bars). Two
mechanisms catch all of it: a logging config file that vLLM reads in every process
(``VLLM_LOGGING_CONFIG_PATH``: INFO and above into the file, and to the terminal too when
verbose), and, while the engine starts, the OS-level stdout / stderr pointed at the file, so
the child processes inherit it as theirs for their whole life.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOG_FORMAT = "%(levelname)s %(asctime)s %(process)d [%(filename)s:%(lineno)d] %(message)s"


def logging_config(log_file: Path, *, verbose: bool) -> dict[str, Any]:
    handlers: dict[str, Any] = {
        "file": {
            "class": "logging.FileHandler",
            "filename": str(log_file),
            "formatter": "plain",
            "level": "INFO",
        }
    }
    if verbose:
        handlers["terminal"] = {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "plain",
            "level": "INFO",
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT, "datefmt": "%m-%d %H:%M:%S"}},
        "handlers": handlers,
        "loggers": {"vllm": {"handlers": list(handlers), "level": "INFO", "propagate": False}},
    }


@contextlib.contextmanager
def engine_output(log_file: Path | None, *, verbose: bool = False) -> Iterator[None]:
    """While an engine starts: what its child processes print goes to ``log_file`` (their
    logs go there by :func:`~screenspot_eval.backends.vllm.process_state.engine_process_state`).

    Without ``log_file`` (or when ``verbose``) nothing is redirected at the OS level.
    """
    if log_file is None or verbose:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    target = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers' progress bars off (loading and saving weights), restored after."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
