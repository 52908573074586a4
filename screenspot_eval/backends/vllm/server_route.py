"""``GET /screenspot/embedder`` on vLLM's OpenAI-compatible server: the engine's own report.

Installed with ``--middleware screenspot_eval.backends.vllm.server_route.embedder_report_route``
(what ``screenspot-eval serve`` passes). The report is measured inside the workers through
the engine client's ``collective_rpc("apply_model", ...)``, exactly as for the in-process
engine, so a client can prove which embedder variant a server runs. A plain ``vllm serve``
has no such route (404), which clients report as ``native``, unverified.

vLLM's own authentication guards only ``/v1`` (and a few other prefixes), so the route checks
the server's API key itself: the same keys (``--api-key``, else ``VLLM_API_KEY``), the same
``Authorization: Bearer`` header, compared in constant time.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

ROUTE = "/screenspot/embedder"


def server_api_keys(request: Any) -> list[str]:
    """The keys the server was started with: ``--api-key`` wins over ``VLLM_API_KEY``."""
    args = getattr(request.app.state, "args", None)
    given = getattr(args, "api_key", None)
    keys = [given] if isinstance(given, str) else list(given or [])
    return [k for k in keys or [os.environ.get("VLLM_API_KEY", "")] if k]


def authorized(request: Any, keys: list[str]) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    digest = hashlib.sha256(token.encode()).digest()
    return any(secrets.compare_digest(digest, hashlib.sha256(k.encode()).digest()) for k in keys)


async def embedder_report_route(request: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    if request.url.path != ROUTE or request.method != "GET":
        return await call_next(request)
    from fastapi.responses import JSONResponse

    keys = server_api_keys(request)
    if keys and not authorized(request, keys):
        return JSONResponse({"error": "Unauthorized"}, status_code=401)

    from screenspot_eval.backends.vllm.probe import embedder_report

    engine_client = request.app.state.engine_client
    try:
        reports = await engine_client.collective_rpc("apply_model", args=(embedder_report,))
    except Exception as exc:  # report the failure instead of a bare 500
        return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)
    first = reports[0]
    if any(r != first for r in reports[1:]):
        return JSONResponse({"error": "workers disagree", "reports": reports}, status_code=500)
    return JSONResponse(first)
