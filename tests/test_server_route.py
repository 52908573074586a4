"""The embedder route obeys the server's API key, like vLLM's own /v1 routes.

Unit level (no engine): a request object as Starlette hands it to the middleware. The real
server with a key is exercised by the command test (docs/serving.md's ``serve ... --api-key``,
run by tests/test_readme_commands.py).
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from screenspot_eval.backends.vllm import server_route


class Engine:
    async def collective_rpc(self, method: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        return [{"model_class": "x"}]


def request(*, header: str | None, api_key: Any = None) -> Any:
    headers = {"authorization": header} if header is not None else {}
    state = SimpleNamespace(engine_client=Engine(), args=SimpleNamespace(api_key=api_key))
    return SimpleNamespace(
        url=SimpleNamespace(path=server_route.ROUTE),
        method="GET",
        headers=headers,
        app=SimpleNamespace(state=state),
    )


def call(req: Any) -> tuple[int, Any]:
    async def passed_on(_req: Any) -> Any:
        raise AssertionError("the route must answer itself")

    response = asyncio.run(server_route.embedder_report_route(req, passed_on))
    return response.status_code, json.loads(response.body)


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)


def test_without_a_key_configured_the_route_is_open() -> None:
    assert call(request(header=None)) == (200, {"model_class": "x"})


@pytest.mark.parametrize("configured", ["s3cret", ["other", "s3cret"]])
def test_with_a_key_the_route_needs_the_bearer_token(configured: Any) -> None:
    assert call(request(header=None, api_key=configured))[0] == 401
    assert call(request(header="Bearer wrong", api_key=configured))[0] == 401
    assert call(request(header="Basic s3cret", api_key=configured))[0] == 401
    assert call(request(header="Bearer s3cret", api_key=configured))[0] == 200


def test_the_environment_key_counts_when_no_flag_is_given(monkeypatch) -> None:
    monkeypatch.setenv("VLLM_API_KEY", "from-env")
    assert call(request(header=None))[0] == 401
    assert call(request(header="Bearer from-env"))[0] == 200


def test_other_paths_pass_through_untouched() -> None:
    req = request(header=None, api_key="k")
    req.url.path = "/v1/models"

    async def passed_on(_req: Any) -> str:
        return "next"

    assert asyncio.run(server_route.embedder_report_route(req, passed_on)) == "next"


class EngineWithConfig(Engine):
    """An engine client whose workers answer the provenance probe, with a resolved config."""

    vllm_config = SimpleNamespace(
        model_config=SimpleNamespace(
            dtype="torch.float32",
            quantization=None,
            enforce_eager=False,
            max_model_len=2048,
            hf_config=SimpleNamespace(image_token_id=7),
        ),
        scheduler_config=SimpleNamespace(
            max_num_seqs=1, enable_chunked_prefill=True, max_num_batched_tokens=2048
        ),
        cache_config=SimpleNamespace(cache_dtype="auto", enable_prefix_caching=True),
        compilation_config=SimpleNamespace(mode=None, cudagraph_mode=None),
        parallel_config=SimpleNamespace(
            tensor_parallel_size=1, pipeline_parallel_size=1, data_parallel_size=1
        ),
    )

    async def collective_rpc(self, method: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        assert method == "apply_model" and args[0].__name__ == "worker_provenance"
        worker = {"batch_invariant": True, "vllm_version": "0.32.0", "vllm_build": "cpu"}
        return [{**worker, "pid": 11}, {**worker, "pid": 12}]  # two workers that agree


@pytest.mark.parametrize("configured", [None, "s3cret"])
def test_the_engine_route_obeys_the_same_key(configured: Any) -> None:
    req = request(header=None, api_key=configured)
    req.url.path = server_route.ENGINE_ROUTE
    req.app.state.engine_client = EngineWithConfig()
    if configured:
        assert call(req)[0] == 401
        req.headers = {"authorization": "Bearer s3cret"}
    status, body = call(req)
    assert status == 200, body
    assert (body["batch_invariant"], body["dtype"], body["workers"]) == (True, "float32", 2)
    assert body["image_token_id"] == 7 and "pid" not in body
