"""The in-process vLLM engine: start it with a variant, prove the variant, shut it down."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from screenspot_eval.backends.base import (
    BackendError,
    Completion,
    GroundingRequest,
    SamplingSettings,
)
from screenspot_eval.backends.variant import EmbedderReport, check_variant
from screenspot_eval.backends.vllm.engine_args import EngineSettings, is_vllm_cpu_build, llm_kwargs
from screenspot_eval.backends.vllm.logs import engine_output


def prepare_environment() -> None:
    """Environment every engine process needs; set before vLLM spawns its children.

    ``apply_model`` ships our probe function to the workers, which the multiprocess engine
    only allows with insecure serialisation enabled. On CPU builds, keep the engine's message
    queue on loopback and the KV cache small unless the user chose otherwise.
    """
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    if is_vllm_cpu_build():
        os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


class VllmEngine:
    """One ``vllm.LLM`` for a whole run, with its embedder verified before any sample runs."""

    def __init__(
        self,
        settings: EngineSettings,
        verify: bool = True,
        window: int | None = None,
        log_file: Path | None = None,
        verbose: bool = False,
    ):
        """``log_file``: where vLLM's logs and its processes' output go (the terminal stays
        the tool's); ``verbose`` shows vLLM's logs on the terminal as well."""
        prepare_environment()
        self.settings = settings
        self.kwargs = llm_kwargs(settings)
        self.log_file = log_file
        with engine_output(log_file, verbose=verbose):
            from vllm import LLM

            self.llm: Any = LLM(**self.kwargs)
        self.window = window or 2 * (settings.max_num_seqs or 16)
        self.idle_s = 0.0  # engine idle while waiting for the next input (images)
        try:
            self.report = self.read_embedder_report()
            if verify:
                check_variant(settings.norm, self.report)
        except BaseException:
            self.close()
            raise

    def read_embedder_report(self, with_hf_reference: bool = False) -> EmbedderReport:
        from functools import partial

        from screenspot_eval.backends.vllm.probe import embedder_report

        reports = self.llm.apply_model(
            partial(embedder_report, with_hf_reference=with_hf_reference)
        )
        first = reports[0]
        if any(r != first for r in reports[1:]):
            raise RuntimeError(f"workers disagree about their embedder: {reports}")
        return EmbedderReport.model_validate(first)

    def generate(
        self, requests: Iterable[GroundingRequest], sampling: SamplingSettings
    ) -> Iterator[Completion]:
        """Stream requests into the engine and yield completions as they finish.

        At most ``window`` requests are in the engine at once, so the request iterator (which
        decodes screenshots in its own threads) is consumed only as fast as the engine drains
        it: memory stays bounded, and vLLM keeps batching continuously because new requests
        join while others are still decoding. A request the processor rejects becomes a failed
        completion for that sample; a dead engine raises :class:`BackendError`.
        """
        engine = self.llm.llm_engine
        stop_watch = _watch_engine_core(engine)
        try:
            yield from self._generate(engine, requests, sampling)
        finally:
            stop_watch.set()

    def _generate(
        self, engine: Any, requests: Iterable[GroundingRequest], sampling: SamplingSettings
    ) -> Iterator[Completion]:
        source = iter(requests)
        pending: dict[str, tuple[str, float]] = {}
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.window:
                wait_start = time.perf_counter()
                request = next(source, None)
                if not pending:
                    self.idle_s += time.perf_counter() - wait_start
                if request is None:
                    exhausted = True
                    break
                started = time.perf_counter()
                try:
                    ids = self.llm.enqueue_chat(
                        with_image(request.messages, request.image),
                        sampling_params(request, sampling, self.settings.seed),
                        use_tqdm=False,
                        chat_template_kwargs=request.chat_template_kwargs,
                        mm_processor_kwargs=self.budget_override(request),
                    )
                except Exception as exc:  # the processor rejected this one input
                    if not _engine_alive(engine):
                        raise BackendError(f"the vLLM engine died: {exc}") from exc
                    yield Completion(request.sample_id, None, error=f"{type(exc).__name__}: {exc}")
                    continue
                for request_id in ids:
                    pending[request_id] = (request.sample_id, started)
                    pending[request_id.rsplit("-", 1)[0]] = (request.sample_id, started)
            if not pending:
                return
            try:
                outputs = engine.step()
            except Exception as exc:
                in_flight = sorted({sample_id for sample_id, _ in pending.values()})
                raise BackendError(
                    f"the vLLM engine failed mid-run ({type(exc).__name__}: {exc}); samples in "
                    f"flight, not recorded: {', '.join(in_flight)}"
                ) from exc
            for output in outputs:
                if not output.finished or output.request_id not in pending:
                    continue
                sample_id, started = pending.pop(output.request_id)
                pending = {k: v for k, v in pending.items() if v[0] != sample_id}
                answer = output.outputs[0]
                yield Completion(
                    sample_id,
                    answer.text,
                    latency_s=time.perf_counter() - started,
                    prompt_tokens=len(output.prompt_token_ids or []),
                    completion_tokens=len(answer.token_ids),
                )

    def budget_override(self, request: GroundingRequest) -> dict[str, Any] | None:
        """The request's image budget where it differs from the one the engine was started
        with (vLLM applies processor kwargs per request, and hashes them with the image)."""
        started = self.settings.max_soft_tokens
        if request.image_budget is None or started is None or request.image_budget == started:
            return None
        return {"max_soft_tokens": request.image_budget}

    def reset_caches(self) -> None:
        """Drop every cache that holds results of the previous embedder: the processor's
        multimodal cache, the workers' encoder-output cache and the prefix (KV) cache."""
        self.llm.reset_mm_cache()
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_prefix_cache()

    def first_token_logprobs(self, image: Any, text: str, k: int = 5) -> dict[int, float]:
        """Greedy first-token top-k logprobs for one image + instruction (a variant fingerprint)."""
        from vllm import SamplingParams

        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "image_pil", "image_pil": image},
                    {"type": "text", "text": text},
                ],
            }
        ]
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=k, seed=self.settings.seed)
        outputs = self.llm.chat(
            messages, params, use_tqdm=False, chat_template_kwargs={"enable_thinking": False}
        )
        top = outputs[0].outputs[0].logprobs[0]
        return {int(token): float(lp.logprob) for token, lp in top.items()}

    def close(self) -> None:
        """Shut the engine core and workers down and release their memory."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        self.llm = None
        del llm
        gc.collect()

    def __enter__(self) -> VllmEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def with_image(messages: list[dict[str, Any]], image: Any) -> list[dict[str, Any]]:
    """Replace the ``{"type": "image"}`` placeholder with the PIL image for ``LLM.chat``."""
    filled = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {"type": "image_pil", "image_pil": image} if item.get("type") == "image" else item
                for item in content
            ]
        filled.append({**message, "content": content})
    return filled


def sampling_params(request: GroundingRequest, sampling: SamplingSettings, seed: int) -> Any:
    """vLLM ``SamplingParams`` for one request; structured decoding only when asked for."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    structured = None
    if sampling.structured and request.structured_regex:
        structured = StructuredOutputsParams(regex=request.structured_regex)
    return SamplingParams(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        seed=sampling.seed if sampling.seed is not None else seed,
        structured_outputs=structured,
    )


def _engine_alive(engine: Any) -> bool:
    core = getattr(engine, "engine_core", None)
    resources = getattr(core, "resources", None)
    return not getattr(resources, "engine_dead", False)


def _watch_engine_core(engine: Any, interval_s: float = 1.0) -> threading.Event:
    """Unblock ``engine.step()`` when the engine-core process dies.

    vLLM 0.32's sync client marks the engine dead when its core process exits, but a
    ``step()`` already waiting on the output queue would wait forever. This watchdog puts an
    error into that queue, so the run ends with a clear error and keeps its records.
    """
    stop = threading.Event()
    queue = getattr(getattr(engine, "engine_core", None), "outputs_queue", None)

    def watch() -> None:
        while not stop.wait(interval_s):
            if not _engine_alive(engine):
                if queue is not None:
                    queue.put_nowait(RuntimeError("the vLLM engine-core process died"))
                return

    threading.Thread(target=watch, daemon=True, name="screenspot-engine-watch").start()
    return stop
