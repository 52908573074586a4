"""What goes over the wire to an OpenAI-compatible vLLM server: URLs, images, chat bodies.

Pure functions (no I/O; responses arrive already read) so the exact request a server sees can be tested without a server.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Literal

import httpx

from screenspot_eval.backends.base import Completion, GroundingRequest, SamplingSettings

ImageFormat = Literal["png", "jpeg"]
_MIME = {"png": "image/png", "jpeg": "image/jpeg"}


def server_root(url: str) -> str:
    """``http://h:8000/v1/`` -> ``http://h:8000``: vLLM's own routes (health, version) live there."""
    root = url.strip().rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    if not root.startswith(("http://", "https://")):
        raise ValueError(f"endpoint {url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000)")
    return root


def encode_image_data_url(image: Any, fmt: ImageFormat = "png") -> str:
    """A base64 ``data:`` URL of ``image`` (PIL). PNG is lossless: the server sees our pixels."""
    if fmt not in _MIME:
        raise ValueError(f"image format must be one of {sorted(_MIME)}, got {fmt!r}")
    if fmt == "jpeg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=1)  # fast; size matters less than CPU
    else:
        image.save(buffer, format="JPEG", quality=95)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:{_MIME[fmt]};base64,{encoded}"


def _with_image(messages: list[dict[str, Any]], image_item: dict[str, Any]) -> list[dict[str, Any]]:
    """Copies of ``messages`` with the single ``{"type": "image"}`` item replaced."""
    out: list[dict[str, Any]] = []
    found = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            items = []
            for item in content:
                if isinstance(item, dict) and item.get("type") == "image":
                    found += 1
                    items.append(image_item)
                else:
                    items.append(item)
            message = {**message, "content": items}
        out.append(message)
    if found != 1:
        raise ValueError(f"a grounding request needs exactly one image placeholder, found {found}")
    return out


def chat_payload(
    request: GroundingRequest,
    sampling: SamplingSettings,
    model: str,
    image_format: ImageFormat = "png",
    *,
    return_token_ids: bool = False,
    image_item: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``POST /v1/chat/completions`` body for one request.

    ``chat_template_kwargs`` and ``structured_outputs`` are vLLM extensions sent as top-level
    keys. ``structured_outputs: {"regex": ...}`` replaced ``guided_regex`` (removed in vLLM
    0.12); ``max_completion_tokens`` is the OpenAI name vLLM prefers over ``max_tokens``.
    ``return_token_ids`` (vLLM extension) makes the answer carry the prompt's token ids, from
    which the image soft tokens are counted.
    """
    if image_item is None:  # (see backends.http.media for files: file:// or their own bytes)
        image_item = {
            "type": "image_url",
            "image_url": {"url": encode_image_data_url(request.image, image_format)},
        }
    body: dict[str, Any] = {
        "model": model,
        "messages": _with_image(request.messages, image_item),
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_completion_tokens": sampling.max_tokens,
        "seed": sampling.seed,
        "n": 1,
        "stream": False,
    }
    if request.chat_template_kwargs:
        body["chat_template_kwargs"] = dict(request.chat_template_kwargs)
    if sampling.structured and request.structured_regex:
        body["structured_outputs"] = {"regex": request.structured_regex}
    if return_token_ids:
        body["return_token_ids"] = True
    return body


#: How vLLM ends a request it did not answer: ``abort`` (the engine shut down or dropped it,
#: with the text so far, often none) and ``error`` (a retryable internal error). Such a 200 is
#: no answer of the model's: it is retried like a 5xx, never recorded as the model's output.
UNANSWERED_FINISH_REASONS: frozenset[str] = frozenset({"abort", "error"})


def unanswered_reason(response: httpx.Response) -> str | None:
    """The finish reason of a 200 that carries no finished answer, else None."""
    try:
        reason = response.json()["choices"][0].get("finish_reason")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return reason if reason in UNANSWERED_FINISH_REASONS else None


def parse_chat_response(
    response: httpx.Response,
    sample_id: str,
    latency: float,
    attempts: int,
    url: str,
    image_token_id: int | None = None,
) -> Completion:
    """A 200 chat completion as a Completion; an unreadable body is a recorded failure.

    With ``image_token_id`` and the prompt's token ids in the answer (``return_token_ids``),
    the image soft tokens are counted; otherwise they are unknown (None)."""
    try:
        data: dict[str, Any] = response.json()
        text = data["choices"][0]["message"].get("content") or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        error = f"{url}: unreadable chat completion ({exc!r}): {response.text[:300]}"
        return Completion(sample_id, None, error, latency, attempts=attempts, endpoint=url)
    usage = data.get("usage") or {}
    prompt_ids = data.get("prompt_token_ids")
    soft_tokens = None
    if image_token_id is not None and isinstance(prompt_ids, list):
        soft_tokens = sum(1 for token in prompt_ids if token == image_token_id)
    return Completion(
        sample_id,
        text,
        latency_s=latency,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        attempts=attempts,
        endpoint=url,
        image_soft_tokens=soft_tokens,
    )
