"""What a running vLLM server says about itself: health, version, models, embedder variant.

Synchronous and short: these calls run once before evaluation, so a plain ``httpx.Client`` is
enough. A run against servers must not be labelled with a variant nobody checked, so the
embedder report is fetched from every endpoint and they must agree.
"""

from __future__ import annotations

import time
from typing import TypeVar

import httpx
from pydantic import BaseModel

from screenspot_eval.backends.base import BackendError
from screenspot_eval.backends.http.payload import server_root
from screenspot_eval.backends.provenance import EngineProvenance
from screenspot_eval.backends.variant import (
    EmbedderReport,
    VariantMismatchError,
    unverified_report,
)

EMBEDDER_ROUTE = "/screenspot/embedder"
ENGINE_ROUTE = "/screenspot/engine"

_M = TypeVar("_M", bound=BaseModel)


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _get(base_url: str, path: str, api_key: str | None, timeout: float) -> httpx.Response:
    url = server_root(base_url) + path
    try:
        return httpx.get(url, headers=auth_headers(api_key), timeout=timeout)
    except httpx.HTTPError as exc:
        raise BackendError(f"cannot reach vLLM server {url}: {type(exc).__name__}: {exc}") from exc


def fetch_vllm_version(base_url: str, api_key: str | None = None, timeout: float = 10.0) -> str:
    """``GET /version`` (every vLLM server has it); ``"unknown"`` when it gives nothing usable."""
    response = _get(base_url, "/version", api_key, timeout)
    if response.status_code != 200:
        return "unknown"
    try:
        return str(response.json().get("version", "unknown"))
    except (ValueError, AttributeError):
        return "unknown"


def _fetch_own_route(
    base_url: str, route: str, model: type[_M], what: str, api_key: str | None, timeout: float
) -> _M | None:
    """``GET route`` of our server parsed as ``model``; None on 404 (a plain ``vllm serve``
    lacks our routes), a :class:`BackendError` naming the route for any other failure."""
    response = _get(base_url, route, api_key, timeout)
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise BackendError(
            f"{server_root(base_url)}{route} answered HTTP {response.status_code}: "
            f"{response.text[:300]}"
        )
    try:
        return model.model_validate(response.json())
    except ValueError as exc:
        raise BackendError(f"{server_root(base_url)}{route} did not return {what}: {exc}") from exc


def fetch_server_report(
    base_url: str, api_key: str | None = None, timeout: float = 30.0
) -> EmbedderReport | None:
    """The embedder report the server measured in its engine; None for a plain ``vllm serve``."""
    return _fetch_own_route(
        base_url, EMBEDDER_ROUTE, EmbedderReport, "an embedder report", api_key, timeout
    )


def fetch_engine_provenance(
    base_url: str, api_key: str | None = None, timeout: float = 30.0
) -> EngineProvenance | None:
    """The engine provenance the server read in its workers; None for a plain ``vllm serve``
    (no ``/screenspot/engine`` route: unknown)."""
    return _fetch_own_route(
        base_url, ENGINE_ROUTE, EngineProvenance, "an engine provenance", api_key, timeout
    )


def endpoint_report(
    base_url: str, api_key: str | None = None, timeout: float = 30.0
) -> EmbedderReport:
    """The server's own report, or the native-unverified one when it has no embedder route."""
    report = fetch_server_report(base_url, api_key, timeout)
    if report is None:
        report = unverified_report(fetch_vllm_version(base_url, api_key, min(timeout, 10.0)))
    return report


def _signature(report: EmbedderReport) -> tuple[object, ...]:
    """What must match across endpoints (not the probe's float errors, which vary by device)."""
    return (
        report.model_class,
        report.config_variant,
        report.effective_variant,
        report.vllm_version,
        tuple((e.attribute, e.class_path, e.measured_placement) for e in report.embedders),
    )


def agreed_report(reports: dict[str, EmbedderReport]) -> EmbedderReport:
    """The one report all endpoints share; refuse a mix, it would make one run of two models."""
    if not reports:
        raise ValueError("no endpoints")
    signatures = {url: _signature(r) for url, r in reports.items()}
    if len(set(signatures.values())) > 1:
        lines = "\n  ".join(
            f"{url}: variant {r.effective_variant}, model class {r.model_class}, "
            f"config {r.config_variant}, vLLM {r.vllm_version}"
            for url, r in reports.items()
        )
        raise VariantMismatchError(
            f"the endpoints do not run the same embedder, so their answers cannot form one "
            f"run:\n  {lines}"
        )
    return next(iter(reports.values()))


def _models(base_url: str, api_key: str | None, timeout: float) -> list[dict]:
    response = _get(base_url, "/v1/models", api_key, timeout)
    if response.status_code != 200:
        raise BackendError(
            f"{server_root(base_url)}/v1/models answered HTTP {response.status_code}: "
            f"{response.text[:300]}"
        )
    return [m for m in response.json().get("data", []) if isinstance(m, dict)]


def served_models(base_url: str, api_key: str | None = None, timeout: float = 30.0) -> list[str]:
    """The model names ``GET /v1/models`` lists (what ``model`` in a request must be)."""
    return [str(m["id"]) for m in _models(base_url, api_key, timeout)]


def served_roots(base_url: str, api_key: str | None = None, timeout: float = 30.0) -> list[str]:
    """What each served model was loaded from (vLLM's ``root``: the checkpoint path or hub id
    whatever ``--served-model-name`` says), to read its architecture."""
    return [str(m.get("root") or m["id"]) for m in _models(base_url, api_key, timeout)]


def wait_until_healthy(base_url: str, timeout_s: float = 600.0, api_key: str | None = None) -> None:
    """Poll ``GET /health`` until it answers 200 (a server loads its model before it does)."""
    url = server_root(base_url) + "/health"
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    last = "no answer yet"
    while True:
        try:
            response = httpx.get(url, headers=auth_headers(api_key), timeout=min(10.0, timeout_s))
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"vLLM server {server_root(base_url)} not healthy after {timeout_s:g} s "
                f"(last {url}: {last})"
            )
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, 2.0)
