"""What an engine needs in the environment and in logging: a server gets it as its own
environment (:func:`engine_environment`), an in-process engine holds it in this process for
its life only (:func:`engine_process_state`), its engine-core and workers inheriting it."""

from __future__ import annotations

import contextlib
import json
import logging.config
import os
import sys
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
    """This process's environment plus :func:`engine_environment_defaults` where unset; the
    engine core where :func:`resolve_engine_core` says (a server's: always vLLM's multiprocess
    engine); ``VLLM_BATCH_INVARIANT=1`` for ``batch_invariant`` (refused where unavailable)."""
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
    """For an engine's life: :func:`engine_environment`, vLLM's logs into ``log_file`` (and
    the terminal when ``verbose``). After, also when the start is refused or fails: the
    environment exactly as it was before (what vLLM sets while it is imported or starts removed
    too), every logger's level, handlers, propagation and flag back (vLLM's ``dictConfig``
    resets all of ``vllm.*``), the handlers added meanwhile closed, vLLM's caches dropped."""
    environ = dict(os.environ)
    logging.getLogger("vllm")  # a logger of its own from now on, so it is restored too
    loggers = _logger_states()
    record_factory = logging.getLogRecordFactory()
    envs, vllm_logger = _vllm_modules()
    configured = getattr(vllm_logger, "_last_configured_logging_config", None)
    try:  # from here on, whatever happens, the process is put back as it was
        wanted = {**_IMPORTED_ENVIRONMENT, **engine_environment(settings)}
        if log_file is not None:  # every vLLM process logs by this config file, this one too
            wanted.update(_route_logs(log_file, verbose))
        _set_environ(wanted)
        _forget_cached_environment(envs)
        if log_file is not None:  # vLLM before 0.31 reads the file only when it is imported
            logging.config.dictConfig(logging_config(log_file, verbose=verbose))
        yield
    finally:
        _set_environ(environ)
        _forget_cached_environment(envs)
        _restore_loggers(loggers)
        logging.setLogRecordFactory(record_factory)
        if hasattr(vllm_logger, "_last_configured_logging_config"):
            vllm_logger._last_configured_logging_config = configured


#: What importing vLLM set in the environment (it imports once per process): an engine gets
#: it back for its life, as if vLLM had just been imported, and takes it away after.
_IMPORTED_ENVIRONMENT: dict[str, str] = {}


def _vllm_modules() -> tuple[Any, Any]:
    """vLLM's ``envs`` and ``logger`` modules; what the first import sets in the environment
    is kept in :data:`_IMPORTED_ENVIRONMENT` and taken back out."""
    if "vllm" not in sys.modules:
        before = dict(os.environ)
        try:
            import vllm  # noqa: F401
        finally:
            changed = {k: v for k, v in os.environ.items() if before.get(k) != v}
            _IMPORTED_ENVIRONMENT.update(changed)
            _set_environ(before)
    from vllm import envs
    from vllm import logger as vllm_logger

    return envs, vllm_logger


def _route_logs(log_file: Path, verbose: bool) -> dict[str, str]:
    """The logging config file every vLLM process reads, and the variables that name it."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    config_path = log_file.with_suffix(".logging.json")
    config_path.write_text(json.dumps(logging_config(log_file, verbose=verbose), indent=2))
    return {"VLLM_CONFIGURE_LOGGING": "1", "VLLM_LOGGING_CONFIG_PATH": str(config_path)}


def _set_environ(target: dict[str, str]) -> None:
    for name in set(os.environ) - set(target):
        del os.environ[name]
    os.environ.update({k: v for k, v in target.items() if os.environ.get(k) != v})


def _forget_cached_environment(envs: Any) -> None:
    """A started engine core freezes ``vllm.envs`` (``enable_envs_cache``)."""
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
