"""Which server takes the next request, and whether a server that dropped us is still there.

Runs inside the HTTP backend's event loop (single-threaded, so no locks): a request takes a
slot on the least busy live server, at most ``limit`` per server. A lost connection triggers
one shared ``/health`` probe per server (not one per failed request, so a burst of failures
from one restart does not count as many); only a server that refuses every probe is dead.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx

# The connection broke or never opened: maybe nobody is listening (any HTTP answer, even
# 503, means someone is).
LOST_CONNECTION = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout)


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before retry ``attempt`` (1-based): exponential, capped, half of it jittered.

    Jitter spreads a burst of simultaneous failures; a server's ``Retry-After`` is honoured
    up to the cap.
    """
    delay = min(cap, base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def retry_after_s(response: httpx.Response) -> float | None:
    """A 429/503's ``Retry-After`` in seconds (the HTTP-date form is ignored)."""
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


class AllEndpointsDeadError(Exception):
    """Every server refuses connections; in-flight requests are abandoned, not failed."""


@dataclass(eq=False)
class Endpoint:
    url: str
    client: httpx.AsyncClient
    in_flight: int = 0
    dead: bool = False
    last_error: str | None = None
    probe: asyncio.Task[bool] | None = None


class EndpointPool:
    """Least-in-flight routing (round-robin among ties) with per-server limits and probing."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        *,
        limit: int,
        probes: int,
        backoff: Callable[[int], float],
        probe_timeout: float,
    ):
        self.endpoints = endpoints
        self.limit = limit
        self.probes = probes
        self.backoff = backoff
        self.probe_timeout = probe_timeout
        self._changed = asyncio.Event()
        self._turn = 0

    @property
    def all_dead(self) -> bool:
        return all(e.dead for e in self.endpoints)

    async def acquire(self) -> Endpoint:
        """A slot on a live server; waits while all are busy, raises when all are dead."""
        n = len(self.endpoints)
        while True:
            if self.all_dead:
                raise AllEndpointsDeadError
            free = [
                (e.in_flight, (i - self._turn) % n, i)
                for i, e in enumerate(self.endpoints)
                if not e.dead and e.in_flight < self.limit
            ]
            if free:
                index = min(free)[2]
                self._turn = (index + 1) % n
                endpoint = self.endpoints[index]
                endpoint.in_flight += 1
                return endpoint
            self._changed.clear()
            await self._changed.wait()

    def release(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
        self._changed.set()

    async def confirm_alive(self, endpoint: Endpoint) -> bool:
        """After a lost connection: is the server still there? (One probe run at a time.)"""
        if endpoint.dead:
            return False
        if endpoint.probe is None or endpoint.probe.done():
            endpoint.probe = asyncio.create_task(self._probe(endpoint))
        return await asyncio.shield(endpoint.probe)

    async def _probe(self, endpoint: Endpoint) -> bool:
        for attempt in range(1, self.probes + 1):
            try:
                await endpoint.client.get("/health", timeout=self.probe_timeout)
                return True
            except LOST_CONNECTION as exc:
                endpoint.last_error = f"/health: {type(exc).__name__} ({str(exc) or 'no detail'})"
            except httpx.TimeoutException:
                return True  # connected but slow: busy, not gone
            if attempt < self.probes:
                await asyncio.sleep(self.backoff(attempt))
        endpoint.dead = True
        self._changed.set()  # wake waiters so they see it
        return False
