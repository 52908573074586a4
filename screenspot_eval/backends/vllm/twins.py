"""Every tiny twin ``tiny-model --family`` builds, in one table: Gemma 4's families
(:mod:`~screenspot_eval.backends.vllm.families`) and Qwen-VL's
(:mod:`~screenspot_eval.backends.vllm.tiny_qwen`). Importing it imports neither torch nor
transformers; a twin's ``build`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from screenspot_eval.backends.vllm.families import DEFAULT_FAMILY, FAMILIES
from screenspot_eval.backends.vllm.tiny import TinyGemma4Spec, build_tiny_gemma4
from screenspot_eval.backends.vllm.tiny_qwen import QWEN_FAMILIES, build_tiny_qwen_vl


@dataclass(frozen=True)
class Twin:
    """One buildable twin: its name (``--family``), model family and features."""

    name: str
    model: str  # "Gemma 4", "Qwen2.5-VL", ...
    summary: str
    build: Callable[[Path, int], Path]  # (out_dir, seed) -> out_dir


def _gemma(name: str) -> Twin:
    def build(out_dir: Path, seed: int) -> Path:
        return build_tiny_gemma4(out_dir, TinyGemma4Spec(seed=seed), name)

    return Twin(name, "Gemma 4", FAMILIES[name].summary, build)


def _qwen(name: str) -> Twin:
    def build(out_dir: Path, seed: int) -> Path:
        return build_tiny_qwen_vl(out_dir, name, seed)

    fam = QWEN_FAMILIES[name]
    return Twin(name, fam.label, fam.summary, build)


DEFAULT_TWIN = DEFAULT_FAMILY
TWINS: dict[str, Twin] = {
    **{name: _gemma(name) for name in FAMILIES},
    **{name: _qwen(name) for name in QWEN_FAMILIES},
}
assert len(TWINS) == len(FAMILIES) + len(QWEN_FAMILIES), "a twin name is used twice"
