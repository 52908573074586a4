"""What an engine needs in this process's environment and logging, for its life only.

vLLM reads its settings from environment variables (in this process and in the engine-core
and worker processes it starts, which inherit them) and configures Python logging while it
starts. :func:`engine_environment` says what those variables must be; a server gets them as
its own environment, and :func:`engine_process_state` holds them in this process while an
in-process engine lives, then restores the environment and every logger exactly as they were,
also when the start is refused or fails.
"""

from __future__ import annotations

import contextlib
import json
import logging.config
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from screenspot_eval.backends.vllm.engine_args import (
    ENGINE_CORE_ENV,
    EngineSettings,
    engine_environment_defaults,
    resolve_engine_core,
)
from screenspot_eval.backends.vllm.logs import logging_config
from screenspot_eval.backends.vllm.provenance import (
    batch_invariant_environment,
    require_batch_invariance,
)


def engine_environment(settings: EngineSettings, *, server: bool = False) -> dict[str, str]:
    """This process's environment plus what every engine process needs.

    ``apply_model`` ships our probe function to the workers, which the multiprocess engine
    only allows with insecure serialisation enabled; on CPU builds the engine's message queue
    stays on loopback and the KV cache small unless the user chose otherwise
    (:func:`engine_environment_defaults`). An in-process engine's core goes where
    :func:`resolve_engine_core` says (``VLLM_ENABLE_V1_MULTIPROCESSING``); a server always runs
    vLLM's multiprocess engine, whatever the caller's environment says. ``batch_invariant``
    sets ``VLLM_BATCH_INVARIANT=1`` (refused here where vLLM lacks it), which the engine-core
    and worker processes inherit.
    """
    env = dict(os.environ)
    for name, value in engine_environment_defaults().items():
        env.setdefault(name, value)
    if server:
        env.pop(ENGINE_CORE_ENV, None)
    else:
        inline = resolve_engine_core(settings.engine_core, env) == "inline"
        env[ENGINE_CORE_ENV] = "0" if inline else "1"
    if settings.batch_invariant:
        require_batch_invariance()
        env.update(batch_invariant_environment(True))
    return env


@contextlib.contextmanager
def engine_process_state(
    settings: EngineSettings, log_file: Path | None = None, *, verbose: bool = False
) -> Iterator[None]:
    """For an in-process engine's life: the environment :func:`engine_environment` says
    (with vLLM's logs routed to ``log_file``, and to the terminal too when ``verbose``).

    On exit, the environment is what it was (variables set since removed, whoever set them:
    vLLM sets some of its own while it starts), every logger has its level, handlers,
    propagation and state back (vLLM's ``dictConfig`` resets all of ``vllm.*``), the handlers
    added meanwhile are closed, and vLLM's caches of both are dropped, so a later engine in
    this process starts as its own settings say. A refusal comes before anything changes.
    """
    # First: what importing vLLM sets in the environment is vLLM's own, for the process's life.
    from vllm import envs
    from vllm import logger as vllm_logger

    wanted = engine_environment(settings)
    config = None
    if log_file is not None:  # every vLLM process logs by this config file, this one too
        config = logging_config(log_file, verbose=verbose)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        config_path = log_file.with_suffix(".logging.json")
        config_path.write_text(json.dumps(config, indent=2))
        wanted.update({"VLLM_CONFIGURE_LOGGING": "1", "VLLM_LOGGING_CONFIG_PATH": str(config_path)})
    environ = dict(os.environ)
    logging.getLogger("vllm")  # a logger of its own from now on, so it is restored too
    loggers = _logger_states()
    record_factory = logging.getLogRecordFactory()
    configured = getattr(vllm_logger, "_last_configured_logging_config", None)
    try:
        _set_environ(wanted)
        _forget_cached_environment(envs)
        if config is not None:  # vLLM before 0.31 reads the file only when it is imported
            logging.config.dictConfig(config)
        yield
    finally:
        _set_environ(environ)
        _forget_cached_environment(envs)
        _restore_loggers(loggers)
        logging.setLogRecordFactory(record_factory)
        if hasattr(vllm_logger, "_last_configured_logging_config"):
            vllm_logger._last_configured_logging_config = configured


def _set_environ(target: dict[str, str]) -> None:
    for name in set(os.environ) - set(target):
        del os.environ[name]
    os.environ.update({k: v for k, v in target.items() if os.environ.get(k) != v})


def _forget_cached_environment(envs: Any) -> None:
    """A started engine core freezes ``vllm.envs`` (``enable_envs_cache``); a later engine in
    this process must read the environment it is started with."""
    disable = getattr(envs, "disable_envs_cache", None)
    if callable(disable):
        disable()


LoggerState = tuple[int, list[logging.Handler], bool, bool]


def _logger_states() -> dict[logging.Logger, LoggerState]:
    manager = logging.root.manager
    loggers = [
        logging.root,
        *(x for x in manager.loggerDict.values() if isinstance(x, logging.Logger)),
    ]
    return {x: (x.level, list(x.handlers), x.propagate, x.disabled) for x in loggers}


def _restore_loggers(states: dict[logging.Logger, LoggerState]) -> None:
    """Every logger as it was; the handlers this restores away (the log file's) closed."""
    kept = {handler for _, handlers, _, _ in states.values() for handler in handlers}
    for logger, (level, handlers, propagate, disabled) in states.items():
        for handler in logger.handlers:
            if handler not in kept:
                handler.close()
        logger.handlers = handlers
        logger.propagate, logger.disabled = propagate, disabled
        logger.setLevel(level)  # also clears every logger's cached effective level
