"""Start and stop vLLM's OpenAI-compatible server with a chosen embedder variant.

The server runs in its own process group, so stopping it reaches the API server, the engine
core and every worker: SIGTERM first (vLLM shuts its children down cleanly), SIGKILL to the
whole group if it has not exited in time. No orphan keeps a port or memory.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from screenspot_eval.backends.http.server import wait_until_healthy
from screenspot_eval.backends.vllm.compat import require_supported_vllm
from screenspot_eval.backends.vllm.engine_args import (
    LOOPBACK_HOSTS,
    EngineSettings,
    server_command,
)
from screenspot_eval.backends.vllm.process_state import engine_environment
from screenspot_eval.backends.vllm.provenance import require_batch_invariance
from screenspot_eval.errors import BackendFailure, UserError


def _terminate_with_parent() -> None:
    """Linux: the server gets SIGTERM if the launching process dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class ServerStartError(BackendFailure, RuntimeError):
    """The server exited or did not become healthy; carries the tail of its log."""


def check_host(host: str, allow_remote: bool) -> None:
    """Serving beyond loopback exposes the model to the network: only when asked explicitly."""
    if host not in LOOPBACK_HOSTS and not allow_remote:
        raise UserError(
            f"refusing to bind {host!r}: only loopback (127.0.0.1) unless --allow-remote is "
            "given; set --api-key when you do"
        )


class ServerProcess:
    """One vLLM server: ``start`` waits until it is healthy, ``stop`` ends the whole group."""

    def __init__(
        self,
        settings: EngineSettings,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        api_key: str | None = None,
        log_path: Path | None = None,
        allow_remote: bool = False,
        api_servers: int | None = None,
    ):
        check_host(host, allow_remote)
        if settings.engine_core == "inline":
            raise UserError(
                "--engine-core inline is for in-process runs: a server runs vLLM's engine core "
                "in a process of its own"
            )
        require_supported_vllm(settings.allow_untested_vllm)
        if settings.batch_invariant:
            require_batch_invariance()
        self.settings = settings
        self.host, self.port, self.api_key = host, port, api_key
        self.command = server_command(
            settings, python=sys.executable, host=host, port=port, api_server_count=api_servers
        )
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 600.0) -> str:
        """Launch and block until ``/health`` answers; returns the base URL."""
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            start_new_session=True,
            preexec_fn=_terminate_with_parent,
        )
        try:
            self._wait_healthy(timeout_s)
        except Exception as exc:
            self.stop()
            raise ServerStartError(f"vLLM server did not start: {exc}\n{self.log_tail()}") from exc
        return self.url

    def environment(self) -> dict[str, str]:
        """The server's own environment (this process's is left alone): what every engine
        process needs (:func:`engine_environment`, the routes' probes too) and the API key."""
        env = engine_environment(self.settings, server=True)
        if self.api_key:
            env["VLLM_API_KEY"] = self.api_key
        return env

    def _wait_healthy(self, timeout_s: float) -> None:
        """Poll in short slices so a server that crashed on start is noticed at once."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive():
                code = self.process.returncode if self.process else None
                raise ServerStartError(f"the server process exited with code {code}")
            try:
                wait_until_healthy(self.url, timeout_s=5.0, api_key=self.api_key)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM the process group, then SIGKILL what is left; returns the exit code."""
        process = self.process
        if process is None:
            return None
        for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
            if process.poll() is not None:
                break
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):  # children that outlived the leader
            os.killpg(process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        return process.poll()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_until_stopped(
    settings: EngineSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    log_path: Path | None = None,
    allow_remote: bool = False,
    echo: Callable[[str], None] = print,
    api_servers: int | None = None,
) -> int:
    """``screenspot-eval serve``: start the server, prove its variant through its route, and
    keep it until Ctrl-C or SIGTERM; then stop the whole process group. Returns its exit code.

    Raises :class:`ServerStartError` (and stops the server) if it exits or is not healthy,
    :class:`VariantMismatchError` if it does not run what was asked.
    """
    from screenspot_eval.backends.http.server import endpoint_report, fetch_engine_provenance
    from screenspot_eval.backends.provenance import check_batch_invariance
    from screenspot_eval.backends.variant import check_variant

    server = ServerProcess(
        settings,
        host=host,
        port=port,
        api_key=api_key,
        log_path=log_path,
        allow_remote=allow_remote,
        api_servers=api_servers,
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        echo(f"starting vLLM ({settings.norm} embedder): {shlex.join(server.command)}")
        url = server.start()
        report = endpoint_report(url, api_key)
        check_variant(settings.norm, report)
        echo(f"embedder verified inside the server: {report.effective_variant}")
        provenance = fetch_engine_provenance(url, api_key)
        check_batch_invariance(settings.batch_invariant, provenance)
        if provenance is not None:
            mode = "on" if provenance.batch_invariant else "off"
            echo(
                f"engine: {provenance.dtype}, attention {', '.join(provenance.attention_backends)}"
                f", batch-invariant mode {mode} (read inside the workers)"
            )
        echo(f"serving {settings.model} at {url}/v1  (Ctrl-C to stop)")
        while not stop.wait(1.0) and server.alive():
            pass
        if not server.alive():
            raise ServerStartError(f"the server exited unexpectedly\n{server.log_tail()}")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        code = server.stop()
        echo(f"server stopped (exit code {code})")
    return code
