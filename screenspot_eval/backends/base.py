"""The small model contract every backend implements (in-process vLLM engine, HTTP servers).

A backend turns :class:`GroundingRequest` s into :class:`Completion` s and says which embedder
variant produced them. Everything else (prompts, parsing, scoring, records) lives outside, so a
new provider is one class. Pure: no vLLM or torch import.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from screenspot_eval.backends.provenance import EngineProvenance
from screenspot_eval.backends.variant import EmbedderReport
from screenspot_eval.data.images import ImageFile
from screenspot_eval.errors import BackendFailure


class SamplingSettings(BaseModel):
    """Decoding settings; defaults suit ScreenSpot-Pro (greedy, one short JSON answer)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = Field(default=128, ge=1)
    seed: int = 0
    structured: bool = False
    """Constrain decoding to the template's ``structured_regex`` (vLLM structured outputs)."""


@dataclass(frozen=True)
class GroundingRequest:
    """One sample's prompt: chat messages whose single ``{"type": "image"}`` item is ``image``."""

    sample_id: str
    messages: list[dict[str, Any]]
    image: Any  # PIL.Image.Image (RGB), read-only
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    structured_regex: str | None = None
    image_budget: int | None = None
    """Soft tokens this request's image gets; a backend whose engine was started with another
    budget applies it per request (one engine for a whole budget sweep)."""
    image_file: ImageFile | None = None
    """The screenshot on disk (checked, not decoded), for backends that send files: then
    ``image`` is None unless the harness decoded it anyway."""
    image_uuid: str | None = None
    """A stable id of exactly the pixels the engine gets (file sha256, budget, preparation):
    vLLM keys its caches on it instead of hashing the pixels."""
    image_path: str | None = None
    """How the image was prepared: ``prepared`` (resized to the processor's size in the
    decode pool), ``original`` (decoded, sent as is), or ``file`` (the backend sends the file)."""


@dataclass(frozen=True)
class Completion:
    """A request's result: ``text`` when the model answered, else ``error`` (after retries)."""

    sample_id: str
    text: str | None
    error: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 1
    endpoint: str | None = None
    image_soft_tokens: int | None = None
    """Image placeholder tokens in the prompt the engine ran (None: the backend cannot tell)."""
    image_path: str | None = None
    """How the image reached the engine (``prepared``, ``original``, ``file-url``,
    ``file-bytes``, ``reencoded``); None: the request's own ``image_path``."""

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class BackendError(BackendFailure, RuntimeError):
    """The backend as a whole cannot go on (engine died, every server unreachable).

    Raised from :meth:`Backend.generate`; completions yielded before it are valid and kept.
    """


class Backend(ABC):
    """What the run loop needs from a model provider: every capability it uses is declared
    here, with the default a provider without it gets (as inspect's ``ModelAPI``), so none is
    read through ``getattr`` and a renamed one fails loudly instead of switching a feature off.

    A provider sets ``report`` (the embedder it really runs, as its engine reports it) and
    implements :meth:`generate` and :meth:`close`.
    """

    #: How the pipeline hands over screenshots: ``decoded`` pixels, or checked ``file`` s that
    #: the backend sends itself (a server decodes them).
    image_input: ClassVar[Literal["decoded", "file"]] = "decoded"
    report: EmbedderReport
    #: What the engine resolved that can change outcomes (None: it cannot say).
    provenance: EngineProvenance | None = None
    #: Seconds the engine sat idle waiting for the next input (0: not measured).
    idle_s: float = 0.0

    @abstractmethod
    def generate(
        self, requests: Iterable[GroundingRequest], sampling: SamplingSettings
    ) -> Iterator[Completion]:
        """Yield one completion per request as they finish (any order), consuming lazily."""

    @abstractmethod
    def close(self) -> None:
        """Release what the backend holds (engines, connections); safe to call twice (a Ctrl-C
        during a shutdown makes the run finish it)."""

    def image_preparation(self, budget: int, sizes: set[tuple[int, int]]) -> Any:
        """A self-checked preparer that resizes decoded screenshots to the size the engine's
        processor would (``prepare(image) -> (image, path)``), or None: send them as decoded."""
        return None

    def frontend_stats(self) -> dict[str, Any] | None:
        """Where the front end's time went in the last pass (None: not measured)."""
        return None
