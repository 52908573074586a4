"""The HTTP backend against small stub servers on 127.0.0.1 (no vLLM involved).

The stubs answer like vLLM's OpenAI server (chat completions, /health, /version, /v1/models and
optionally our /screenspot/embedder route) and can fail on purpose: status codes, dropped
connections, a kill mid-run.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fakes import fake_provenance, fake_report
from PIL import Image

from screenspot_eval.backends.base import BackendError, GroundingRequest, SamplingSettings
from screenspot_eval.backends.http.backend import (
    HttpBackend,
    HttpSettings,
    backoff_delay,
    chat_payload,
    encode_image_data_url,
    fetch_server_report,
    wait_until_healthy,
)
from screenspot_eval.backends.variant import (
    UNVERIFIED_MODEL_CLASS,
    EmbedderReport,
    VariantMismatchError,
    check_variant,
)
from screenspot_eval.backends.vllm.engine_args import EngineSettings
from screenspot_eval.errors import BackendFailure
from screenspot_eval.run.config import RunConfig, RuntimeSettings

DROP = "drop"  # respond() result: close the connection without an answer
IMAGE_TOKEN = 7  # the image placeholder id the stubs' prompts repeat 11 times
Responder = Callable[[int, dict[str, Any]], Any]


def _answer(n: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Echo the request's text so each completion can be matched to its request."""
    last = body["messages"][-1]["content"]
    text = next(item["text"] for item in last if item.get("type") == "text")
    return 200, {
        "choices": [{"message": {"role": "assistant", "content": f"answer: {text}"}}],
        "usage": {"prompt_tokens": 100 + n, "completion_tokens": 7},
    }


class Stub:
    """A vLLM look-alike in a thread; ``respond(n, body)`` decides the n-th chat answer."""

    def __init__(
        self,
        respond: Responder = _answer,
        *,
        delay: float = 0.0,
        embedder: dict[str, Any] | None = None,
        kill_after: int | None = None,
        engine: dict[str, Any] | None = None,
    ):
        self.respond, self.delay, self.embedder, self.kill_after = (
            respond,
            delay,
            embedder,
            kill_after,
        )
        self.engine = engine  # the /screenspot/engine answer (None: no such route)
        self.chat_count = self.active = self.max_active = 0
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.killed = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.server.stub = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def kill(self) -> None:
        """Stop listening (new connections are refused), as when the server process dies."""
        with self.lock:
            if self.killed.is_set():
                return
            self.killed.set()
        self.server.shutdown()
        self.server.server_close()

    def chat(self, body: dict[str, Any]) -> Any:
        with self.lock:
            self.chat_count += 1
            n = self.chat_count
            self.bodies.append(body)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.kill_after is not None and n > self.kill_after:
                self.kill()
                return DROP
            time.sleep(self.delay)
            return self.respond(n, body)
        finally:
            with self.lock:
                self.active -= 1


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: Any = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        stub: Stub = self.server.stub  # type: ignore[attr-defined]
        if self.path == "/health":
            self._send(200)
        elif self.path == "/version":
            self._send(200, {"version": "0.32.0"})
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "tiny-gemma4"}]})
        elif self.path == "/screenspot/embedder" and stub.embedder is not None:
            self._send(200, stub.embedder)
        elif self.path == "/screenspot/engine" and stub.engine is not None:
            self._send(200, stub.engine)
        else:
            self._send(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        stub: Stub = self.server.stub  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        result = stub.chat(body)
        if result == DROP:
            self.close_connection = True
            return
        status, payload = result
        if body.get("return_token_ids") and status == 200:  # as vLLM: the prompt's token ids
            payload = {**payload, "prompt_token_ids": [2, 5, *[IMAGE_TOKEN] * 11, 6, 300]}
        self._send(status, payload)


@pytest.fixture
def stubs() -> Iterator[Callable[..., Stub]]:
    made: list[Stub] = []

    def make(*args: Any, **kwargs: Any) -> Stub:
        made.append(Stub(*args, **kwargs))
        return made[-1]

    yield make
    for stub in made:
        stub.kill()


def _backend(*stubs: Stub, **overrides: Any) -> HttpBackend:
    settings = {"concurrency_per_endpoint": 2, "max_retries": 2, "backoff_s": 0.01, **overrides}
    return HttpBackend(HttpSettings(endpoints=tuple(s.url for s in stubs), **settings))


def _image(seed: int = 0) -> Image.Image:
    """A small RGB image whose pixels all differ, so any lossy step would show."""
    data = bytes((i * 7 + seed) % 256 for i in range(37 * 23 * 3))
    return Image.frombytes("RGB", (37, 23), data)


def _request(i: int, **kwargs: Any) -> GroundingRequest:
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "ground it"}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"s{i}"}]},
    ]
    return GroundingRequest(sample_id=f"s{i}", messages=messages, image=_image(i), **kwargs)


def _run(backend: HttpBackend, n: int) -> list[Any]:
    with backend:
        return list(backend.generate((_request(i) for i in range(n)), SamplingSettings()))


def _decode(url: str) -> Image.Image:
    header, data = url.split(",", 1)
    assert header in ("data:image/png;base64", "data:image/jpeg;base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_payload_carries_the_exact_pixels_and_vllm_extensions():
    request = _request(3, chat_template_kwargs={"enable_thinking": False}, structured_regex=r"\d+")
    sampling = SamplingSettings(structured=True, max_tokens=64, seed=5)
    body = chat_payload(request, sampling, "tiny-gemma4")
    assert body["model"] == "tiny-gemma4"
    assert body["messages"][0] == request.messages[0]
    image_item, text_item = body["messages"][1]["content"]
    assert image_item["type"] == "image_url"
    decoded = _decode(image_item["image_url"]["url"])
    assert decoded.mode == "RGB" and decoded.tobytes() == request.image.tobytes()
    assert text_item == {"type": "text", "text": "s3"}
    assert request.messages[1]["content"][0] == {"type": "image"}  # the request is not mutated
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["structured_outputs"] == {"regex": r"\d+"}
    assert (body["temperature"], body["top_p"], body["max_completion_tokens"], body["seed"]) == (
        0.0, 1.0, 64, 5,
    )  # fmt: skip
    plain = chat_payload(request, SamplingSettings(), "m")
    assert "structured_outputs" not in plain
    assert encode_image_data_url(request.image, "jpeg").startswith("data:image/jpeg;base64,")


def test_payload_needs_exactly_one_image_placeholder():
    request = GroundingRequest(
        "x", [{"role": "user", "content": [{"type": "text", "text": "t"}]}], _image()
    )
    with pytest.raises(ValueError, match="exactly one image"):
        chat_payload(request, SamplingSettings(), "m")


def test_settings_accept_urls_with_or_without_v1():
    settings = HttpSettings(endpoints=("http://h:8000/v1/", "http://g:8001"))
    assert settings.endpoints == ("http://h:8000", "http://g:8001")
    with pytest.raises(ValueError):
        HttpSettings(endpoints=("http://h:8000", "http://h:8000/v1"))


def test_backoff_grows_is_capped_and_honours_retry_after():
    assert 0.5 <= backoff_delay(1, 1.0, 10.0) <= 1.0
    assert 4.0 <= backoff_delay(4, 1.0, 10.0) <= 8.0
    assert backoff_delay(20, 1.0, 10.0) <= 10.0
    assert backoff_delay(1, 0.01, 10.0, retry_after=3.0) == 3.0


def test_completion_text_tokens_and_model_from_the_server(stubs):
    stub = stubs()
    [completion] = _run(_backend(stub), 1)
    assert completion.ok and completion.text == "answer: s0"
    assert (completion.prompt_tokens, completion.completion_tokens) == (101, 7)
    assert completion.attempts == 1 and completion.endpoint == stub.url
    assert completion.latency_s > 0
    assert stub.bodies[0]["model"] == "tiny-gemma4"  # asked /v1/models


def test_503_once_is_retried(stubs):
    stub = stubs(lambda n, body: (503, {"error": "busy"}) if n == 1 else _answer(n, body))
    [completion] = _run(_backend(stub), 1)
    assert completion.ok and completion.text == "answer: s0"
    assert completion.attempts == 2


def test_a_request_the_server_aborted_is_retried_never_recorded_as_the_answer(stubs):
    """vLLM answers 200 with finish_reason "abort" (and the text so far) for requests in flight
    when it shuts down: no answer of the model's (seen in the soak benchmark's restart)."""

    def respond(n: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if n == 1:
            aborted = {"message": {"role": "assistant", "content": ""}, "finish_reason": "abort"}
            return 200, {"choices": [aborted], "usage": {}}
        return _answer(n, body)

    stub = stubs(respond)
    [completion] = _run(_backend(stub), 1)
    assert completion.ok and completion.text == "answer: s0" and completion.attempts == 2
    always = stubs(lambda n, body: respond(1, body))
    [failed] = _run(_backend(always, max_retries=1), 1)
    assert not failed.ok and "finish_reason 'abort'" in (failed.error or "")


def test_persistent_500_is_recorded_as_failure_after_all_retries(stubs):
    stub = stubs(lambda n, body: (500, {"error": "boom"}))
    [completion] = _run(_backend(stub, max_retries=3), 1)
    assert not completion.ok and completion.text is None
    assert completion.attempts == 4 and stub.chat_count == 4
    assert "HTTP 500" in completion.error and stub.url in completion.error


def test_400_is_not_retried(stubs):
    stub = stubs(lambda n, body: (400, {"error": "bad image"}))
    [completion] = _run(_backend(stub), 1)
    assert completion.attempts == 1 and stub.chat_count == 1
    assert "HTTP 400" in completion.error and "bad image" in completion.error


def test_timeouts_are_retried_then_recorded_without_killing_the_endpoint(stubs):
    stub = stubs(delay=0.4)
    [completion] = _run(_backend(stub, timeout_s=0.1, max_retries=1), 1)
    assert completion.attempts == 2 and stub.chat_count == 2
    assert "ReadTimeout" in completion.error and stub.url in completion.error


def test_the_run_layer_builds_the_http_backend_from_the_config_runtime(stubs):
    from screenspot_eval.run.session import default_backend

    stub = stubs()
    config = RunConfig(
        engine=EngineSettings(model="m"),
        runtime=RuntimeSettings(endpoints=(stub.url + "/v1",), concurrency=3, max_retries=1),
    )
    with default_backend(config) as backend:
        assert backend.settings.endpoints == (stub.url,)
        assert backend.settings.concurrency_per_endpoint == 3
        assert backend.settings.max_retries == 1
        [completion] = backend.generate([_request(0)], SamplingSettings())
    assert completion.ok


def test_two_endpoints_share_the_load_and_every_request_comes_back_once(stubs):
    a, b = stubs(delay=0.02), stubs(delay=0.02)
    completions = _run(_backend(a, b), 12)
    assert sorted(c.sample_id for c in completions) == sorted(f"s{i}" for i in range(12))
    assert all(c.text == f"answer: {c.sample_id}" for c in completions)
    assert a.chat_count > 0 and b.chat_count > 0
    assert a.chat_count + b.chat_count == 12
    assert {c.endpoint for c in completions} == {a.url, b.url}


def test_in_flight_work_is_bounded(stubs):
    stub = stubs(delay=0.03)
    pulled = 0
    held: list[int] = []

    def requests() -> Iterator[GroundingRequest]:
        nonlocal pulled
        for i in range(15):
            pulled += 1
            yield _request(i)

    with _backend(stub, concurrency_per_endpoint=3) as backend:
        for done, _ in enumerate(backend.generate(requests(), SamplingSettings()), start=1):
            held.append(pulled - done + 1)  # pulled but not yet handed back, incl. this one
    assert 1 <= stub.max_active <= 3
    assert max(held) <= 3  # the request iterator is consumed lazily
    assert stub.chat_count == 15


def test_killed_server_yields_what_finished_then_raises(stubs):
    stub = stubs(delay=0.02, kill_after=3)
    seen: list[str] = []
    requests = (_request(i) for i in range(10))
    with _backend(stub) as backend, pytest.raises(BackendError, match=re.escape(stub.url)):
        for completion in backend.generate(requests, SamplingSettings()):
            seen.append(completion.sample_id)
            assert completion.ok
    assert len(seen) == 3 == len(set(seen))
    assert stub.killed.is_set()


def test_one_dead_endpoint_of_two_moves_its_work_to_the_other(stubs):
    a, b = stubs(delay=0.01), stubs(delay=0.01, kill_after=1)
    completions = _run(_backend(a, b), 10)
    assert sorted(c.sample_id for c in completions) == sorted(f"s{i}" for i in range(10))
    assert all(c.ok for c in completions)


def _embedder_report(variant: str) -> EmbedderReport:
    return fake_report(variant)


def test_report_from_the_server_route(stubs):
    expected = _embedder_report("post")
    a, b = (
        stubs(embedder=expected.model_dump(mode="json")),
        stubs(embedder=expected.model_dump(mode="json")),
    )
    assert fetch_server_report(a.url + "/v1") == expected
    with _backend(a, b) as backend:
        assert backend.report == expected
    check_variant("post", expected)


def test_server_without_route_is_native_unverified(stubs):
    stub = stubs()
    assert fetch_server_report(stub.url) is None
    with _backend(stub) as backend:
        report = backend.report
    assert report.model_class == UNVERIFIED_MODEL_CLASS
    assert report.vllm_version == "0.32.0"
    assert report.effective_variant == "native"
    check_variant("native", report)
    with pytest.raises(VariantMismatchError, match="does not report a variant"):
        check_variant("post", report)


def test_endpoints_that_disagree_are_refused(stubs):
    a = stubs(embedder=_embedder_report("post").model_dump(mode="json"))
    b = stubs(embedder=_embedder_report("pre").model_dump(mode="json"))
    c = stubs()
    with _backend(a, b, c) as backend, pytest.raises(VariantMismatchError) as info:
        _ = backend.report
    assert all(s.url in str(info.value) for s in (a, b, c))


def test_wait_until_healthy(stubs):
    stub = stubs()
    wait_until_healthy(stub.url + "/v1", timeout_s=5)
    stub.kill()
    with pytest.raises(TimeoutError, match="not healthy"):
        wait_until_healthy(stub.url, timeout_s=0.3)


def test_provenance_from_the_engine_route_and_soft_tokens_from_the_prompt_ids(stubs):
    from screenspot_eval.backends.http.server import fetch_engine_provenance

    provenance = fake_provenance(image_token_id=IMAGE_TOKEN)
    a, b = (stubs(engine=provenance.model_dump(mode="json")) for _ in range(2))
    assert fetch_engine_provenance(a.url + "/v1") == provenance
    completions = _run(_backend(a, b), 4)
    assert {c.image_soft_tokens for c in completions} == {11}
    assert all(body["return_token_ids"] is True for body in a.bodies + b.bodies)


def test_a_server_without_the_engine_route_has_unknown_provenance_and_soft_tokens(stubs):
    stub = stubs()
    backend = _backend(stub)
    assert backend.provenance is None
    completions = _run(backend, 2)
    assert {c.image_soft_tokens for c in completions} == {None}
    assert not any("return_token_ids" in body for body in stub.bodies)  # the request as before


def test_endpoints_whose_engines_compute_differently_are_refused(stubs):
    a = stubs(engine=fake_provenance().model_dump(mode="json"))
    b = stubs(engine=fake_provenance(dtype="bfloat16").model_dump(mode="json"))
    with _backend(a, b) as backend, pytest.raises(BackendFailure, match=r"provenance\.dtype"):
        _ = backend.provenance
