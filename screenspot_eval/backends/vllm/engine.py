"""The in-process vLLM engine: start it with a variant, prove the variant, shut it down.

One engine can serve an A/B: :meth:`VllmEngine.switch` changes the embedder in place instead
of loading the model twice, once :meth:`VllmEngine.self_check` has proven on the probe image
that switching changes what the model computes (else the caller starts one engine per variant).
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from screenspot_eval.backends.base import (
    Backend,
    BackendError,
    Completion,
    GroundingRequest,
    SamplingSettings,
)
from screenspot_eval.backends.frontend import FrontEndStats
from screenspot_eval.backends.provenance import EngineProvenance, check_batch_invariance
from screenspot_eval.backends.sides import MIN_PROBE_DIFFERENCE, probe_difference
from screenspot_eval.backends.variant import SWITCHABLE, EmbedderReport, Variant, check_variant
from screenspot_eval.backends.vllm.compat import require_supported_vllm
from screenspot_eval.backends.vllm.engine_args import EngineSettings, llm_kwargs
from screenspot_eval.backends.vllm.failures import engine_stage
from screenspot_eval.backends.vllm.logs import engine_output
from screenspot_eval.backends.vllm.process_state import engine_process_state

if TYPE_CHECKING:  # typed for tests/vllm_release.py, which checks these calls per release
    from vllm import LLMEngine


#: The instruction that goes with :func:`probe_image` (see :meth:`VllmEngine.probe_logprobs`).
PROBE_TEXT = "Click the blue button."

#: The default window is twice the batch, for batches up to this size (memory: each queued
#: request holds its ``pixel_values`` in the engine core, 7.7 MB at 280 soft tokens).
MAX_DEFAULT_BATCH = 64


def _scheduler_max_num_seqs(llm: Any) -> int:
    """The batch size vLLM resolved (its default depends on the device)."""
    config = getattr(getattr(llm, "llm_engine", None), "vllm_config", None)
    value = getattr(getattr(config, "scheduler_config", None), "max_num_seqs", None)
    return value if isinstance(value, int) and value > 0 else 16


class VllmEngine(Backend):
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
        self.settings = settings
        self.kwargs = llm_kwargs(settings)
        self.log_file = log_file
        require_supported_vllm(settings.allow_untested_vllm)
        self._process_state = contextlib.ExitStack()  # the environment and logging, until close
        try:
            with engine_stage("starting the engine and loading the model", log_file):
                self._process_state.enter_context(
                    engine_process_state(settings, log_file, verbose=verbose)
                )
                with engine_output(log_file, verbose=verbose):
                    from vllm import LLM

                    self.llm: Any = LLM(**self.kwargs)
        except BaseException:
            self._process_state.close()
            raise
        self.max_num_seqs = settings.max_num_seqs or _scheduler_max_num_seqs(self.llm)
        self.window = window or 2 * min(self.max_num_seqs, MAX_DEFAULT_BATCH)
        self.idle_s = 0.0  # engine idle while waiting for the next input (images)
        self.stats = FrontEndStats(window=self.window, max_num_seqs=self.max_num_seqs)
        self._preparers: dict[int, Any] = {}
        try:
            self.report = self.read_embedder_report()
            with engine_stage("reading the engine's provenance", log_file):
                self.provenance: EngineProvenance | None = self.read_provenance()
                hf_config = getattr(self.llm.llm_engine.vllm_config.model_config, "hf_config", None)
            image_token = getattr(hf_config, "image_token_id", None)
            self.image_token_id: int | None = image_token if isinstance(image_token, int) else None
            check_batch_invariance(settings.batch_invariant, self.provenance)
            if verify:
                check_variant(settings.norm, self.report)
        except BaseException:
            self.close()
            raise

    def read_embedder_report(self, with_hf_reference: bool = False) -> EmbedderReport:
        from screenspot_eval.backends.vllm.probe import embedder_report

        with engine_stage("probing the embedder inside the engine", self.log_file):
            reports = self.llm.apply_model(
                partial(embedder_report, with_hf_reference=with_hf_reference)
            )
        first = reports[0]
        if any(r != first for r in reports[1:]):
            raise RuntimeError(f"workers disagree about their embedder: {reports}")
        return EmbedderReport.model_validate(first)

    def read_provenance(self) -> EngineProvenance:
        """The engine's provenance, read inside every worker and from its resolved config."""
        from screenspot_eval.backends.vllm.provenance import engine_provenance, worker_provenance

        workers = self.llm.apply_model(worker_provenance)
        config = self.llm.llm_engine.vllm_config
        return EngineProvenance.model_validate(engine_provenance(config, workers))

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
        self.stats = FrontEndStats(window=self.window, max_num_seqs=self.max_num_seqs)
        registry = getattr(getattr(self.llm, "renderer", None), "_mm_timing_registry", None)
        if registry is not None and callable(getattr(registry, "stat", None)):
            registry.stat()  # drop what earlier passes and the self-check recorded
        stop_watch = _watch_engine_core(engine)
        cpu_start = _tree_cpu_s()
        try:
            yield from self._generate(engine, requests, sampling)
        finally:
            stop_watch.set()
            if cpu_start is not None and (cpu_end := _tree_cpu_s()) is not None:
                self.stats.cpu_s = cpu_end - cpu_start

    def _generate(
        self, engine: LLMEngine, requests: Iterable[GroundingRequest], sampling: SamplingSettings
    ) -> Iterator[Completion]:
        source = iter(requests)
        # vLLM reports a request under its internal id or the one enqueue_chat returned: both
        # keys map to it, so the window counts requests (in_flight), never keys.
        pending: dict[str, tuple[str, float]] = {}
        in_flight = 0
        stats = self.stats
        exhausted = False
        while True:
            while not exhausted and in_flight < self.window:
                wait_start = time.perf_counter()
                request = next(source, None)
                stats.waited(time.perf_counter() - wait_start, in_flight)
                if not in_flight:
                    self.idle_s += time.perf_counter() - wait_start
                if request is None:
                    exhausted = True
                    break
                started = time.perf_counter()
                # Our own code builds the request outside the try: a bug there ends the run.
                messages = with_image(request.messages, request.image, request.image_uuid)
                params = sampling_params(request, sampling, self.settings.seed)
                budget = self.budget_override(request)
                try:
                    ids = self.llm.enqueue_chat(
                        messages,
                        params,
                        use_tqdm=False,
                        chat_template_kwargs=request.chat_template_kwargs,
                        mm_processor_kwargs=budget,
                    )
                except Exception as exc:  # the processor rejected this one input
                    if not _engine_alive(engine):
                        raise BackendError(f"the vLLM engine died: {exc}") from exc
                    yield Completion(request.sample_id, None, error=f"{type(exc).__name__}: {exc}")
                    continue
                stats.enqueued(time.perf_counter() - started)
                for request_id in ids:
                    in_flight += 1
                    pending[request_id] = (request.sample_id, started)
                    pending[request_id.rsplit("-", 1)[0]] = (request.sample_id, started)
                request = messages = None  # the engine has the pixels now; do not hold them
            if not pending:
                return
            stats.stepped(in_flight, exhausted)
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
                in_flight -= 1
                answer = output.outputs[0]
                yield Completion(
                    sample_id,
                    answer.text,
                    latency_s=time.perf_counter() - started,
                    prompt_tokens=len(output.prompt_token_ids or []),
                    completion_tokens=len(answer.token_ids),
                    image_soft_tokens=count_image_tokens(
                        output.prompt_token_ids, self.image_token_id
                    ),
                )

    def budget_override(self, request: GroundingRequest) -> dict[str, Any] | None:
        """The request's image budget where it differs from the one the engine was started
        with (vLLM applies processor kwargs per request, and hashes them with the image)."""
        started = self.settings.max_soft_tokens
        if request.image_budget is None or started is None or request.image_budget == started:
            return None
        return {"max_soft_tokens": request.image_budget}

    def image_preparation(self, budget: int, sizes: set[tuple[int, int]]) -> Any:
        """The decode pool's preparer for ``budget`` (one per budget for the engine's life),
        with every size in ``sizes`` planned and self-checked through vLLM's own front end
        before any sample of that size runs (see :mod:`screenspot_eval.backends.vllm.prepare`)."""
        from screenspot_eval.backends.vllm.prepare import ImagePreparer, image_processor, self_check

        if not self.report.architecture_covered:
            return None  # the preparation reproduces Gemma 4's processor only
        preparer = self._preparers.get(budget)
        if preparer is None:
            preparer = ImagePreparer(image_processor(self.llm, budget), budget)
            self._preparers[budget] = preparer
        new = {size for size in sizes if size not in preparer.plans}
        if new:
            self_check(self.llm, preparer, new)
        return preparer

    def frontend_stats(self) -> dict[str, Any]:
        """Where the driving thread's time went (window, enqueue cost, waits, queue depth)."""
        registry = getattr(getattr(self.llm, "renderer", None), "_mm_timing_registry", None)
        if registry is not None and callable(getattr(registry, "stat", None)):
            self.stats.add_stages(registry.stat())
        record = self.stats.to_record()
        record["mm_processor_cache_gb"] = self.kwargs.get("mm_processor_cache_gb")
        record["mm_processor_cache_set_by"] = (
            "user" if "mm_processor_cache_gb" in self.settings.extra else "default"
        )
        return record

    def reset_caches(self) -> None:
        """Drop every cache that holds results of the previous embedder: the processor's
        multimodal cache, the workers' encoder-output cache and the prefix (KV) cache."""
        self.llm.reset_mm_cache()
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_prefix_cache()

    # --- the EngineHandle contract (backends.engines): what several passes share ----------

    def probe_logprobs(self, k: int = 5) -> dict[int, float]:
        """Greedy first-token top-k logprobs on the probe image: what ``verify-embedder``
        prints per variant, the switch self-check compares across placements and a factor A/B
        across its two engines, to show they compute differently."""
        from vllm import SamplingParams

        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "image_pil", "image_pil": probe_image()},
                    {"type": "text", "text": PROBE_TEXT},
                ],
            }
        ]
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=k, seed=self.settings.seed)
        with engine_stage("running the probe image through the model", self.log_file):
            outputs = self.llm.chat(
                messages, params, use_tqdm=False, chat_template_kwargs={"enable_thinking": False}
            )
        top = outputs[0].outputs[0].logprobs[0]
        return {int(token): float(lp.logprob) for token, lp in top.items()}

    def read_settings(self, requested: dict[str, Any]) -> list[Any]:
        """Each requested setting as the engine built it, read from inside (``SettingReading``)."""
        from screenspot_eval.backends.vllm.settings_probe import read_settings

        with engine_stage("reading the side's settings inside the engine", self.log_file):
            return read_settings(self, requested)

    def switch(self, placement: Variant) -> EmbedderReport:
        """Set every selectable embedder to ``placement`` (pre <-> post), re-prove it from
        inside. It lives in a buffer the embedder's forward reads (``torch.where`` over both
        branches), so it reaches compiled code too; the caches are reset, else image embeddings
        or KV blocks computed under the other variant would be reused."""
        from screenspot_eval.backends.vllm.probe import set_embedder_placement

        if placement not in SWITCHABLE:
            raise ValueError(f"only pre and post can be switched in place, not {placement!r}")
        with engine_stage(f"switching the embedder to {placement}", self.log_file):
            switched = self.llm.apply_model(partial(set_embedder_placement, placement=placement))
            if not all(switched):
                raise RuntimeError(f"no selectable embedder to switch in the engine: {switched}")
            self.reset_caches()
        self.report = self.read_embedder_report()
        check_variant(placement, self.report)
        return self.report

    def self_check(self, a: Variant, b: Variant) -> tuple[bool, str]:
        """Does switching change what the model computes on the probe image? Leaves ``a``
        active; when it fails, the caller falls back to one engine per variant.

        Checks that each switch is reported from inside the engine with the right measured
        placement, that the first-token logprobs on the same probe image differ between the
        two placements, and that switching back reproduces ``a``'s logprobs (caches reset).
        """
        try:
            self.switch(a)
            first = self.probe_logprobs()
            self.switch(b)
            second = self.probe_logprobs()
            self.switch(a)
            again = self.probe_logprobs()
        except Exception as exc:  # any failure means: do not trust the switch
            return False, f"in-place switch failed: {type(exc).__name__}: {exc}"
        difference = probe_difference(first, second)
        drift = probe_difference(first, again)
        if difference < MIN_PROBE_DIFFERENCE:
            return False, f"{a} and {b} gave the same probe logprobs (max diff {difference:.2e})"
        if drift > MIN_PROBE_DIFFERENCE:
            return False, f"switching back to {a} did not reproduce its logprobs ({drift:.2e})"
        shown = "different top tokens" if difference == float("inf") else f"{difference:.3g}"
        return True, f"in-place switch verified on a probe image ({a} vs {b} logprobs: {shown})"

    def borrow(self, *, window: int | None = None, reset_prefix_cache: bool = False) -> Backend:
        """A backend view for one pass; closing it leaves this engine running."""
        return BorrowedEngine(self, window=window, reset_prefix_cache=reset_prefix_cache)

    def score(
        self, items: Iterable[tuple[Any, Any]], *, top_k: int, image_token_id: int, seed: int
    ) -> Iterator[Any]:
        """Teacher-forced logprobs of reference answers (``parity``)."""
        from screenspot_eval.backends.vllm.parity import score_with_engine

        return score_with_engine(self, items, top_k=top_k, image_token_id=image_token_id, seed=seed)

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
        self._process_state.close()

    def __enter__(self) -> VllmEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BorrowedEngine(Backend):
    """A backend view of a shared engine: ``close`` leaves the engine running for the next run.

    One pass may bound the requests in flight (``window``: the running batch can never exceed
    it, so a repeat varies the batch composition without reloading the model) and start from an
    empty prefix cache (``reset_prefix_cache``); both last for this pass only.
    """

    def __init__(
        self, engine: VllmEngine, *, window: int | None = None, reset_prefix_cache: bool = False
    ):
        self.engine = engine
        self.window = window
        if reset_prefix_cache:
            engine.llm.reset_prefix_cache()

    @property
    def report(self) -> EmbedderReport:
        return self.engine.report

    @property
    def provenance(self) -> EngineProvenance | None:
        return self.engine.provenance

    @property
    def idle_s(self) -> float:
        return self.engine.idle_s

    def image_preparation(self, budget: int, sizes: set[tuple[int, int]]) -> Any:
        return self.engine.image_preparation(budget, sizes)

    def frontend_stats(self) -> dict[str, Any]:
        return self.engine.frontend_stats()

    def generate(
        self, requests: Iterable[GroundingRequest], sampling: SamplingSettings
    ) -> Iterator[Completion]:
        own = self.engine.window
        self.engine.window = self.window or own
        try:
            yield from self.engine.generate(requests, sampling)
        finally:
            self.engine.window = own

    def close(self) -> None:
        """The owner closes the engine."""


def probe_image() -> Any:
    """A deterministic screenshot-like image with a blue button (:data:`PROBE_TEXT`): the same
    input for every variant and engine."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 200), (236, 236, 236))
    draw = ImageDraw.Draw(image)
    for i in range(0, 320, 16):
        draw.line([(i, 0), (319 - i, 199)], fill=(40 + i % 200, 90, 160), width=2)
    draw.rectangle([200, 150, 260, 180], fill=(30, 120, 220), outline=(0, 0, 0))
    return image


def count_image_tokens(token_ids: Any, image_token_id: int | None) -> int | None:
    """Image soft tokens in a prompt: how often the placeholder id occurs (None: unknown)."""
    if image_token_id is None or token_ids is None:
        return None
    return sum(1 for token in token_ids if token == image_token_id)


def with_image(
    messages: list[dict[str, Any]], image: Any, uuid: str | None = None
) -> list[dict[str, Any]]:
    """Replace the ``{"type": "image"}`` placeholder with the PIL image for ``LLM.chat``.

    With ``uuid``, vLLM keys its processor, encoder and prefix caches on it and does not hash
    the pixels (8.6 ms per 4K screenshot, 42 ms at 6016x3384)."""
    item: dict[str, Any] = {"type": "image_pil", "image_pil": image}
    if uuid is not None:
        item["uuid"] = uuid
    filled = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [dict(item) if part.get("type") == "image" else part for part in content]
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


def _tree_cpu_s() -> float | None:
    """CPU seconds used so far by this process and its children (engine core, workers)."""
    try:
        import psutil

        me = psutil.Process()
        total = 0.0
        for proc in (me, *me.children(recursive=True)):
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total
    except Exception:  # no psutil, or /proc unreadable: not measured
        return None


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
