"""``GET /screenspot/embedder`` and ``GET /screenspot/engine`` on vLLM's OpenAI-compatible
server: the engine's own report of its embedder, and its provenance.

Installed with ``--middleware screenspot_eval.backends.vllm.server_route.embedder_report_route``
(what ``screenspot-eval serve`` passes). The report is measured inside the workers through
the engine client's ``collective_rpc("apply_model", ...)``, exactly as for the in-process
engine, so a client can prove which embedder variant a server runs. A plain ``vllm serve``
has no such route (404), which clients report as ``native``, unverified.

vLLM's own authentication guards only ``/v1`` (and a few other prefixes), so the route checks
the server's API key itself: the same keys (``--api-key``, else ``VLLM_API_KEY``), the same
``Authorization: Bearer`` header, compared in constant time; ``/screenspot/engine`` the same.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

ROUTE = "/screenspot/embedder"
ENGINE_ROUTE = "/screenspot/engine"  # the engine's provenance (backends.vllm.provenance)
MEDIA_ROUTE = "/screenspot/media"  # which folder this server reads images from itself
ROUTES = frozenset({ROUTE, ENGINE_ROUTE, MEDIA_ROUTE})


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
    """The read-only routes (one middleware, so ``--middleware`` stays one argument)."""
    if request.url.path not in ROUTES or request.method != "GET":
        return await call_next(request)
    from fastapi.responses import JSONResponse

    keys = server_api_keys(request)
    if keys and not authorized(request, keys):
        return JSONResponse({"error": "Unauthorized"}, status_code=401)
    if request.url.path == ENGINE_ROUTE:
        return await _engine_provenance(request)
    if request.url.path == MEDIA_ROUTE:
        return JSONResponse(media_info(request.app.state.engine_client))

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


async def _engine_provenance(request: Any) -> Any:
    """``GET /screenspot/engine``: the provenance read inside the workers plus the engine's
    resolved configuration, exactly as the in-process engine records it."""
    from fastapi.responses import JSONResponse

    from screenspot_eval.backends.vllm.provenance import engine_provenance, worker_provenance

    engine_client = request.app.state.engine_client
    try:
        workers = await engine_client.collective_rpc("apply_model", args=(worker_provenance,))
        return JSONResponse(engine_provenance(engine_client.vllm_config, workers))
    except Exception as exc:  # report the failure (workers disagreeing, say), not a bare 500
        return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)


def media_info(engine_client: Any) -> dict[str, Any]:
    """``GET /screenspot/media``: the folder this server loads ``file://`` images from
    (``--allowed-local-media-path``; None: it loads none), with the device and inode of that
    folder and the host name, so a client can tell it sees the same folder (not merely the same
    path on another machine behind a forwarded port) before it sends paths instead of bytes."""
    import socket
    from pathlib import Path

    model_config = getattr(getattr(engine_client, "vllm_config", None), "model_config", None)
    allowed = getattr(model_config, "allowed_local_media_path", "") or ""
    info: dict[str, Any] = {"allowed_local_media_path": None, "root_id": None}
    if allowed:
        root = Path(allowed).resolve()
        try:
            stat = root.stat()
        except OSError:
            stat = None
        if stat is not None:
            info = {
                "allowed_local_media_path": str(root),
                "root_id": f"{stat.st_dev}:{stat.st_ino}",
            }
    info["host"] = socket.gethostname()
    info["pid"] = os.getpid()  # which API-server process answered (with --api-servers N)
    return info
