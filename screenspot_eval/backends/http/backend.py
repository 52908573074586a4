"""Backend that evaluates against one or many OpenAI-compatible vLLM servers over HTTP.

An asyncio loop in a background thread keeps up to ``concurrency_per_endpoint`` requests in
flight per server; the caller's thread pulls requests lazily, so at most that many screenshots
are held at once. Transient failures (lost connections, timeouts, 429, 5xx) are retried with
capped, jittered exponential backoff; a request that still fails is yielded as a failed
completion so the run records it. A server that stops accepting connections is confirmed dead
by probing ``/health``; when every server is dead, :meth:`HttpBackend.generate` raises
:class:`BackendError` after yielding what finished, and abandons what was in flight so a
resume runs it again instead of recording it as failed.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from screenspot_eval.backends.base import (
    Backend,
    BackendError,
    Completion,
    GroundingRequest,
    SamplingSettings,
)
from screenspot_eval.backends.http.media import (
    MediaAccess,
    Transfer,
    fetch_media_info,
    image_content,
    media_access,
    shared_root,
)
from screenspot_eval.backends.http.payload import (
    ImageFormat,
    chat_payload,
    encode_image_data_url,
    parse_chat_response,
    server_root,
    unanswered_reason,
)
from screenspot_eval.backends.http.pool import (
    LOST_CONNECTION,
    AllEndpointsDeadError,
    Endpoint,
    EndpointPool,
    backoff_delay,
    retry_after_s,
)
from screenspot_eval.backends.http.server import (
    agreed_report,
    auth_headers,
    endpoint_report,
    fetch_engine_provenance,
    fetch_server_report,
    served_models,
    wait_until_healthy,
)
from screenspot_eval.backends.provenance import EngineProvenance, agreed_provenance
from screenspot_eval.backends.variant import EmbedderReport

__all__ = [
    "HttpBackend",
    "HttpSettings",
    "backoff_delay",
    "chat_payload",
    "encode_image_data_url",
    "fetch_server_report",
    "wait_until_healthy",
]


class HttpSettings(BaseModel):
    """Where the servers are and how hard to push and retry them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoints: tuple[str, ...] = Field(min_length=1)
    api_key: str | None = Field(default=None, repr=False)
    model: str | None = None  # served model name; None: the only one /v1/models lists
    concurrency_per_endpoint: int = Field(default=8, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=30.0, ge=0)
    image_format: ImageFormat = "png"
    image_transfer: Transfer = "auto"  # see backends.http.media

    @field_validator("endpoints")
    @classmethod
    def _server_roots(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        roots = tuple(server_root(url) for url in value)
        if len(set(roots)) != len(roots):
            raise ValueError(f"endpoints listed twice: {roots}")
        return roots


class HttpBackend(Backend):
    """The :class:`~screenspot_eval.backends.base.Backend` for running vLLM servers."""

    image_input: ClassVar[Literal["decoded", "file"]] = (
        "file"  # the pipeline hands over checked files; the server decodes them
    )

    def __init__(self, settings: HttpSettings):
        self.settings = settings
        self._media: dict[str, MediaAccess] | None = None
        self._media_root: Path | None = None
        self._image_paths: dict[str, str] = {}
        self._image_s = 0.0
        self._image_n = 0
        self._report: EmbedderReport | None = None
        self._provenance: tuple[EngineProvenance | None] | None = None
        self._model: str | None = settings.model
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: EndpointPool | None = None
        self._image_token_id: int | None = None  # known from the servers' provenance

    @property
    def report(self) -> EmbedderReport:
        """Every endpoint's embedder report; they must agree (else ``VariantMismatchError``)."""
        if self._report is None:
            s = self.settings
            reports = {url: endpoint_report(url, s.api_key, s.timeout_s) for url in s.endpoints}
            self._report = agreed_report(reports)
        return self._report

    @property
    def provenance(self) -> EngineProvenance | None:
        """Every endpoint's engine provenance (``GET /screenspot/engine``); None when the
        servers have no such route (plain ``vllm serve``: unknown). Endpoints whose engines
        could answer differently are refused."""
        if self._provenance is None:
            s = self.settings
            reports = {
                url: fetch_engine_provenance(url, s.api_key, s.timeout_s) for url in s.endpoints
            }
            self._provenance = (agreed_provenance(reports),)
        return self._provenance[0]

    @property
    def served_model(self) -> str:
        """The ``model`` name requests carry: the setting, else the one the servers list."""
        if self._model is None:
            s = self.settings
            listed = {url: served_models(url, s.api_key, s.timeout_s) for url in s.endpoints}
            names = {tuple(v) for v in listed.values()}
            if len(names) != 1 or len(next(iter(names))) != 1:
                raise BackendError(
                    f"cannot tell which model to ask for (servers list {listed}); "
                    "set the served model name explicitly"
                )
            self._model = next(iter(names))[0]
        return self._model

    def generate(
        self, requests: Iterable[GroundingRequest], sampling: SamplingSettings
    ) -> Iterator[Completion]:
        """Yield a completion per request as they finish; raise when every server is gone."""
        model = self.served_model
        provenance = self.provenance
        self._image_token_id = provenance.image_token_id if provenance else None
        self._media_root = shared_root(self.media_access)
        loop = self._start()
        capacity = self.settings.concurrency_per_endpoint * len(self.settings.endpoints)
        finished: queue.Queue[Future[Completion]] = queue.Queue()
        pending: set[Future[Completion]] = set()
        source = iter(requests)
        exhausted = abandoned = False
        try:
            while True:
                while not (exhausted or abandoned) and len(pending) < capacity:
                    request = next(source, None)
                    if request is None:
                        exhausted = True
                        break
                    coro = self._complete(request, sampling, model)
                    future = asyncio.run_coroutine_threadsafe(coro, loop)
                    request = None  # the task holds the image only until it is encoded
                    pending.add(future)
                    future.add_done_callback(finished.put)
                if not pending:
                    break
                future = finished.get()
                if future not in pending:
                    continue  # cancelled after every server died
                pending.discard(future)
                try:
                    completion = future.result()
                except AllEndpointsDeadError:
                    abandoned = True
                    # Stop waiting for the rest; the ones already done still come out of the queue.
                    pending -= {f for f in pending if f.cancel()}
                    continue
                path = self._image_paths.pop(completion.sample_id, None)
                yield replace(completion, image_path=path) if path else completion
            if abandoned:
                raise BackendError(self._dead_message())
        finally:
            for future in pending:
                future.cancel()

    async def _complete(
        self, request: GroundingRequest, sampling: SamplingSettings, model: str
    ) -> Completion:
        """One request with its retries; raises ``AllEndpointsDeadError`` to abandon it."""
        s = self.settings
        pool = self._pool
        assert pool is not None
        image_token_id = self._image_token_id
        started = time.perf_counter()
        image_item, image_path = await asyncio.to_thread(
            image_content,
            request,
            transfer=s.image_transfer,
            root=self._media_root,
            image_format=s.image_format,
        )
        self._image_s += time.perf_counter() - started
        self._image_n += 1
        payload = await asyncio.to_thread(
            chat_payload,
            request,
            sampling,
            model,
            s.image_format,
            return_token_ids=image_token_id is not None,
            image_item=image_item,
        )
        self._image_paths[request.sample_id] = image_path
        sample_id = request.sample_id
        del request
        attempts = 0
        while True:
            endpoint = await pool.acquire()
            attempts += 1
            retry_after = None
            start = time.perf_counter()
            try:
                try:
                    response = await endpoint.client.post("/v1/chat/completions", json=payload)
                finally:
                    pool.release(endpoint)
                    latency = time.perf_counter() - start
            except LOST_CONNECTION as exc:
                error = f"{endpoint.url}: connection failed ({type(exc).__name__}: {exc})"
                endpoint.last_error = error
                if not await pool.confirm_alive(endpoint):
                    if pool.all_dead:
                        raise AllEndpointsDeadError from exc
                    continue  # another server takes it; a dead one's failure costs no retry
            except httpx.TransportError as exc:
                error = f"{endpoint.url}: {type(exc).__name__} ({str(exc) or 'no detail'})"
            else:
                unanswered = unanswered_reason(response) if response.status_code == 200 else None
                if response.status_code == 200 and unanswered is None:
                    return parse_chat_response(
                        response, sample_id, latency, attempts, endpoint.url, image_token_id
                    )
                error = f"{endpoint.url}: HTTP {response.status_code}: {response.text[:300]}"
                if unanswered is not None:
                    error = (
                        f"{endpoint.url}: the server ended the request unanswered "
                        f"(finish_reason {unanswered!r}, e.g. while shutting down)"
                    )
                elif response.status_code != 429 and response.status_code < 500:
                    return Completion(
                        sample_id, None, error, latency, attempts=attempts, endpoint=endpoint.url
                    )
                retry_after = retry_after_s(response)
            if attempts > s.max_retries:
                return Completion(
                    sample_id,
                    None,
                    f"{error} (gave up after {attempts} attempts)",
                    latency,
                    attempts=attempts,
                    endpoint=endpoint.url,
                )
            await asyncio.sleep(backoff_delay(attempts, s.backoff_s, s.max_backoff_s, retry_after))

    @property
    def media_access(self) -> dict[str, MediaAccess]:
        """Per endpoint: may requests carry ``file://`` paths, and why (or why not)."""
        if self._media is None:
            s = self.settings
            self._media = {
                url: media_access(url, fetch_media_info(url, s.api_key, min(10.0, s.timeout_s)))
                for url in s.endpoints
            }
        return self._media

    def frontend_stats(self) -> dict[str, Any]:
        """The client's own image cost per request and what each server can read itself."""
        n = self._image_n
        return {
            "requests": n,
            "image_content_s": round(self._image_s, 3),
            "image_content_ms_per_request": round(1000 * self._image_s / n, 2) if n else None,
            "image_transfer": self.settings.image_transfer,
            "file_root": str(self._media_root) if self._media_root else None,
            "media_access": {url: a.reason for url, a in self.media_access.items()},
        }

    def _start(self) -> asyncio.AbstractEventLoop:
        """The loop thread and one client per server, created once and kept until ``close``."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="http-backend", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
            self._pool = asyncio.run_coroutine_threadsafe(self._make_pool(), loop).result()
        return self._loop

    async def _make_pool(self) -> EndpointPool:
        s = self.settings
        endpoints = [
            Endpoint(
                url,
                httpx.AsyncClient(
                    base_url=url,
                    headers=auth_headers(s.api_key),
                    timeout=httpx.Timeout(s.timeout_s, connect=min(10.0, s.timeout_s)),
                    limits=httpx.Limits(
                        max_connections=s.concurrency_per_endpoint + 2,
                        max_keepalive_connections=s.concurrency_per_endpoint,
                    ),
                ),
            )
            for url in s.endpoints
        ]
        return EndpointPool(
            endpoints,
            limit=s.concurrency_per_endpoint,
            probes=s.max_retries + 1,
            backoff=lambda attempt: backoff_delay(attempt, s.backoff_s, s.max_backoff_s),
            probe_timeout=min(30.0, s.timeout_s),
        )

    def _dead_message(self) -> str:
        assert self._pool is not None
        lines = "\n  ".join(f"{e.url}: {e.last_error or 'no answer'}" for e in self._pool.endpoints)
        return (
            "every vLLM server stopped accepting connections (confirmed by probing /health):\n  "
            f"{lines}\nrequests that were in flight were abandoned and will run on resume"
        )

    def close(self) -> None:
        """Close the clients and stop the loop thread; safe to call twice."""
        loop, thread, pool = self._loop, self._thread, self._pool
        if loop is None or thread is None:
            return
        self._loop = self._thread = self._pool = None

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if pool is not None:
                for endpoint in pool.endpoints:
                    await endpoint.client.aclose()
            await loop.shutdown_default_executor()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()

    def __enter__(self) -> HttpBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
