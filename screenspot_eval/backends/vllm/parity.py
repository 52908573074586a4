"""Logprobs of the same answer tokens from HF transformers (the reference) and from vLLM.

The reference (:class:`HfReference`) renders the chat prompt with the checkpoint's processor,
runs the HF processor once (prompt token ids with the image placeholder expanded, pixel values,
at the run's image budget), greedy-decodes a few answer tokens, and then scores prompt + answer
in one teacher-forced forward pass: the log-softmax of the logits at every answer position.

vLLM (:func:`score_with_engine`) gets exactly those token ids, with each expanded image run
collapsed back to the one placeholder its processor expands, and the same image as
``multi_modal_data``; ``SamplingParams(max_tokens=1, prompt_logprobs=k)`` returns the logprob of
every prompt token, so the answer positions give the teacher-forced logprobs of the same tokens.
vLLM's expanded prompt ids must equal HF's, or the comparison is refused
(:class:`TokenMismatchError`).
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from screenspot_eval.backends.vllm.logs import no_progress_bars
from screenspot_eval.errors import BackendFailure, UserError

REFERENCE_DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")


class TokenMismatchError(BackendFailure, RuntimeError):
    """vLLM's processed prompt is not the token sequence HF transformers scored."""


class ReferenceUnavailableError(UserError, RuntimeError):
    """The HF reference cannot run as asked (device or dtype)."""


@dataclass(frozen=True)
class ReferenceAnswer:
    """HF's greedy answer to one sample and its teacher-forced logprobs."""

    sample_id: str
    prompt_ids: tuple[int, ...]  # HF's processed prompt, image placeholders expanded
    engine_prompt_ids: tuple[int, ...]  # the same, each image run collapsed to one placeholder
    answer_ids: tuple[int, ...]
    logprobs: tuple[float, ...]  # logprob of each answer token
    top: tuple[dict[int, float], ...]  # top-k token -> logprob at each answer position
    cut: bool = False  # the greedy answer went on with a multimodal placeholder token (cut)


@dataclass(frozen=True)
class EngineScores:
    """vLLM's logprobs of a reference answer's tokens (teacher-forced, as prompt logprobs)."""

    sample_id: str
    logprobs: tuple[float, ...]
    top: tuple[dict[int, float], ...]  # vLLM's top-k (rank <= k) at each answer position


def collapse_image_runs(ids: Sequence[int], boi: int, image: int, eoi: int) -> list[int]:
    """``[.., boi, image x N, eoi, ..]`` -> ``[.., image, ..]``: HF's expanded prompt as the
    un-expanded prompt vLLM's processor expands itself (N >= 1; anything else stays)."""
    out: list[int] = []
    i = 0
    while i < len(ids):
        if ids[i] == boi:
            j = i + 1
            while j < len(ids) and ids[j] == image:
                j += 1
            if j > i + 1 and j < len(ids) and ids[j] == eoi:
                out.append(image)
                i = j + 1
                continue
        out.append(ids[i])
        i += 1
    return out


def _until_placeholder(ids: Sequence[int], placeholders: frozenset[int]) -> int:
    """How many leading tokens of ``ids`` are not placeholders."""
    return next((i for i, t in enumerate(ids) if t in placeholders), len(ids))


def describe_mismatch(expected: Sequence[int], got: Sequence[int], image: int) -> str:
    """Where two token sequences first differ, and how many image tokens each holds."""
    first = next(
        (i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
        min(len(expected), len(got)),
    )
    return (
        f"HF has {len(expected)} tokens ({list(expected).count(image)} image tokens), vLLM "
        f"{len(got)} ({list(got).count(image)} image tokens); first difference at index {first}: "
        f"HF {list(expected[first : first + 5])} vs vLLM {list(got[first : first + 5])}"
    )


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _top(values: Any, indices: Any) -> dict[int, float]:
    return {int(t): float(v) for v, t in zip(values.tolist(), indices.tolist(), strict=True)}


class HfReference:
    """HF transformers' Gemma 4 model (loaded once) as the reference: the class the checkpoint's
    config names (``Gemma4ForConditionalGeneration``, or ``Gemma4UnifiedForConditionalGeneration``
    for the encoder-free 12B), with ``overrides`` (dotted config keys) applied before loading."""

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        max_soft_tokens: int | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        import torch
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        from screenspot_eval.backends.overrides import apply_to_config

        if dtype not in REFERENCE_DTYPES:
            raise ReferenceUnavailableError(
                f"reference dtype must be one of {', '.join(REFERENCE_DTYPES)}, not {dtype!r}"
            )
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ReferenceUnavailableError(
                f"--reference-device {device}: torch sees no CUDA device here; use cpu"
            )
        if not (device == "cpu" or device.startswith("cuda")):
            raise ReferenceUnavailableError(
                f"reference device must be cpu or cuda[:N], not {device!r}"
            )
        self.device = device
        self.dtype = dtype
        self.max_soft_tokens = max_soft_tokens
        self.processor = AutoProcessor.from_pretrained(model, revision=revision)
        load: dict[str, Any] = {"revision": revision, "dtype": getattr(torch, dtype)}
        if device != "cpu" and importlib.util.find_spec("accelerate") is not None:
            load["device_map"] = device  # straight onto the device, not through CPU memory
        config = AutoConfig.from_pretrained(model, revision=revision)
        apply_to_config(config, overrides or {})
        with no_progress_bars():  # the terminal is the tool's: no "Loading weights" bar
            net = AutoModelForImageTextToText.from_pretrained(model, config=config, **load)
        self.model: Any = net.to(device).eval()
        tokenizer = self.processor.tokenizer
        self.image_token_id = int(self.processor.image_token_id)
        self.boi_token_id = int(tokenizer.convert_tokens_to_ids(self.processor.boi_token))
        self.eoi_token_id = int(tokenizer.convert_tokens_to_ids(self.processor.eoi_token))
        placeholders = {self.image_token_id, self.boi_token_id, self.eoi_token_id}
        for name in ("audio_token", "boa_token", "eoa_token", "video_token"):
            token = getattr(self.processor, name, None)
            if token is not None:
                placeholders.add(int(tokenizer.convert_tokens_to_ids(token)))
        #: Tokens an answer cannot hold: in a prompt they mean "an image (audio, video) here".
        self.placeholder_ids = frozenset(placeholders)

    def config_values(self, keys: Iterable[str]) -> dict[str, Any]:
        """The value of each dotted config key the loaded model has set (not None)."""
        from screenspot_eval.backends.overrides import read_value

        found = {}
        for key in keys:
            try:
                value = read_value(self.model.config, key)
            except (AttributeError, KeyError):
                continue
            if value is not None:
                found[key] = value
        return found

    def processed(
        self, messages: list[dict[str, Any]], image: Any, chat_template_kwargs: dict[str, Any]
    ) -> Any:
        """The HF processor's output for one chat prompt and its image (on the device)."""
        with _quiet_logger("transformers.processing_utils"):
            # Keys a template does not use (``enable_thinking`` in a template without
            # thinking) render the same text; transformers would warn about each of them.
            text = self.processor.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, **chat_template_kwargs
            )
        kwargs: dict[str, Any] = {}
        if self.max_soft_tokens is not None:
            kwargs["images_kwargs"] = {"max_soft_tokens": self.max_soft_tokens}
        encoded = self.processor(text=[text], images=[[image]], return_tensors="pt", **kwargs)
        return encoded.to(self.device)

    def answer(
        self,
        sample_id: str,
        messages: list[dict[str, Any]],
        image: Any,
        *,
        chat_template_kwargs: dict[str, Any],
        answer_tokens: int,
        top_k: int,
    ) -> ReferenceAnswer | None:
        """Greedy-decode up to ``answer_tokens`` tokens, then score them teacher-forced.

        An answer is cut before its first multimodal placeholder token (a random model can
        emit one; as a prompt token it would ask for another image); ``None`` when nothing is
        left."""
        import torch

        inputs = self.processed(messages, image, chat_template_kwargs)
        n_prompt = int(inputs["input_ids"].shape[1])
        with torch.inference_mode():
            generated = self.model.generate(
                **inputs,
                max_new_tokens=answer_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        answer = [int(t) for t in generated[0, n_prompt:].tolist()]
        kept = _until_placeholder(answer, self.placeholder_ids)
        if kept == 0:
            return None
        return self._teacher_forced(
            sample_id, inputs, answer[:kept], top_k=top_k, cut=kept < len(answer)
        )

    def score(
        self,
        reference: ReferenceAnswer,
        messages: list[dict[str, Any]],
        image: Any,
        *,
        chat_template_kwargs: dict[str, Any],
        top_k: int,
    ) -> ReferenceAnswer:
        """This model's teacher-forced logprobs of another reference's answer tokens (the same
        prompt and image): how far a config override moves the reference."""
        inputs = self.processed(messages, image, chat_template_kwargs)
        scored = self._teacher_forced(
            reference.sample_id, inputs, list(reference.answer_ids), top_k=top_k, cut=reference.cut
        )
        if scored.prompt_ids != reference.prompt_ids:
            raise TokenMismatchError(
                f"sample {reference.sample_id}: the overridden reference processed another prompt"
            )
        return scored

    def _teacher_forced(
        self, sample_id: str, inputs: Any, answer_ids: list[int], *, top_k: int, cut: bool
    ) -> ReferenceAnswer:
        """Prompt + answer in one forward pass: the log-softmax at every answer position."""
        import torch

        prompt = inputs["input_ids"]
        n_answer = len(answer_ids)
        answer = torch.tensor([answer_ids], dtype=prompt.dtype, device=prompt.device)
        forced = dict(inputs)
        forced["input_ids"] = torch.cat([prompt, answer], dim=1)
        if "attention_mask" in forced:
            forced["attention_mask"] = torch.ones_like(forced["input_ids"])
        if "mm_token_type_ids" in forced:
            pad = torch.zeros_like(answer, dtype=forced["mm_token_type_ids"].dtype)
            forced["mm_token_type_ids"] = torch.cat([forced["mm_token_type_ids"], pad], dim=1)
        with torch.inference_mode():
            # The last n_answer + 1 positions; the first n_answer of them predict the answer.
            logits = self.model(**forced, logits_to_keep=n_answer + 1).logits[0, :n_answer]
            logprobs = torch.log_softmax(logits.double(), dim=-1).cpu()
        values, indices = torch.topk(logprobs, k=min(top_k, logprobs.shape[-1]), dim=-1)
        prompt_ids = [int(t) for t in prompt[0].tolist()]
        return ReferenceAnswer(
            sample_id=sample_id,
            prompt_ids=tuple(prompt_ids),
            engine_prompt_ids=tuple(
                collapse_image_runs(
                    prompt_ids, self.boi_token_id, self.image_token_id, self.eoi_token_id
                )
            ),
            answer_ids=tuple(answer_ids),
            logprobs=tuple(float(logprobs[j, t]) for j, t in enumerate(answer_ids)),
            top=tuple(_top(values[j], indices[j]) for j in range(n_answer)),
            cut=cut,
        )

    def close(self) -> None:
        """Free the model (and the device memory it held) before vLLM starts."""
        import torch

        self.model = None
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def __enter__(self) -> HfReference:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def score_with_engine(
    engine: Any,
    items: Iterable[tuple[ReferenceAnswer, Any]],
    *,
    top_k: int,
    image_token_id: int,
    seed: int = 0,
    batch: int = 8,
) -> Iterator[EngineScores]:
    """vLLM's teacher-forced logprobs of each reference answer (``items``: answer and image).

    ``engine`` is a :class:`~screenspot_eval.backends.vllm.engine.VllmEngine`; requests go in
    batches of ``batch`` (images stay bounded). Raises :class:`TokenMismatchError` when vLLM's
    processed prompt differs from HF's."""
    from vllm import SamplingParams

    params = SamplingParams(
        max_tokens=1, temperature=0.0, prompt_logprobs=top_k, seed=seed, detokenize=False
    )
    chunk: list[tuple[ReferenceAnswer, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= batch:
            yield from _score_chunk(engine, chunk, params, top_k, image_token_id)
            chunk = []
    if chunk:
        yield from _score_chunk(engine, chunk, params, top_k, image_token_id)


def _score_chunk(
    engine: Any,
    chunk: list[tuple[ReferenceAnswer, Any]],
    params: Any,
    top_k: int,
    image_token_id: int,
) -> Iterator[EngineScores]:
    prompts = [
        {
            "prompt_token_ids": [*ref.engine_prompt_ids, *ref.answer_ids],
            "multi_modal_data": {"image": image},
        }
        for ref, image in chunk
    ]
    outputs = engine.llm.generate(prompts, params, use_tqdm=False)
    for (ref, _), output in zip(chunk, outputs, strict=True):
        expected = [*ref.prompt_ids, *ref.answer_ids]
        got = list(output.prompt_token_ids or [])
        if got != expected:
            raise TokenMismatchError(
                f"sample {ref.sample_id}: vLLM's processed prompt is not the one HF "
                f"transformers scored ({describe_mismatch(expected, got, image_token_id)}); "
                "the two processors expand the image differently (image budget? processor "
                "version?), so their logprobs are not comparable"
            )
        n_prompt = len(ref.prompt_ids)
        logprobs, tops = [], []
        for j, token in enumerate(ref.answer_ids):
            returned = output.prompt_logprobs[n_prompt + j]
            logprobs.append(float(returned[token].logprob))
            tops.append(
                {
                    int(t): float(lp.logprob)
                    for t, lp in returned.items()
                    if lp.rank is not None and lp.rank <= top_k
                }
            )
        yield EngineScores(ref.sample_id, tuple(logprobs), tuple(tops))
