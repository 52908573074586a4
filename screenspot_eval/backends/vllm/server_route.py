"""``GET /screenspot/embedder`` on vLLM's OpenAI-compatible server: the engine's own report.

Installed with ``--middleware screenspot_eval.backends.vllm.server_route.embedder_report_route``
(what ``screenspot-eval serve`` passes). The report is measured inside the workers through
the engine client's ``collective_rpc("apply_model", ...)``, exactly as for the in-process
engine, so a client can prove which embedder variant a server runs. A plain ``vllm serve``
has no such route (404), which clients report as ``native``, unverified.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

ROUTE = "/screenspot/embedder"


async def embedder_report_route(request: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    if request.url.path != ROUTE or request.method != "GET":
        return await call_next(request)
    from fastapi.responses import JSONResponse

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
