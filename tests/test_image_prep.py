"""The decode pool's preparation against Gemma 4's own image processor (no engine).

Where the processor's target size is a fixed point of its size rule, resizing beforehand by the
processor's own operation gives bit-identical ``pixel_values``; where it is not, the processor
resizes again and the result differs, so those sizes must go as the original. The self-check
compares what the front end makes of both and falls back to the original on any difference.
(The same check through vLLM's real front end runs before the first sample of every in-process
run: ``tests/test_run_engine.py``.)
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from screenspot_eval.backends.vllm.prepare import (
    ORIGINAL,
    PREPARED,
    ImagePreparer,
    probe_image,
    self_check,
)


@pytest.fixture(scope="module")
def image_processor(tiny_model_dir: Path) -> Any:
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(tiny_model_dir)


def pixel_values(processor: Any, image: Any, budget: int) -> Any:
    return processor(images=[image], max_soft_tokens=budget, return_tensors="pt")["pixel_values"]


@pytest.mark.parametrize(
    ("size", "budget", "path"),
    [
        ((1920, 1080), 70, PREPARED),
        ((1920, 1080), 140, ORIGINAL),  # 720x384 -> 768x432: not a fixed point
        ((2560, 1664), 280, PREPARED),
        ((2560, 1664), 1120, ORIGINAL),  # 1968x1248 -> 2016x1296
    ],
)
def test_prepared_equals_original_exactly_where_the_size_rule_has_a_fixed_point(
    image_processor: Any, size: tuple[int, int], budget: int, path: str
) -> None:
    preparer = ImagePreparer(image_processor, budget)
    plan = preparer.plan(*size)
    assert plan.path == path, plan
    probe = probe_image(*size)
    prepared = preparer.resize(probe)
    assert prepared.size == plan.target
    same = torch.equal(
        pixel_values(image_processor, probe, budget),
        pixel_values(image_processor, prepared, budget),
    )
    assert same == (path == PREPARED)  # the rule predicts exactly when preparing is safe


def test_the_fast_tensor_view_is_the_processors_own(image_processor: Any) -> None:
    preparer = ImagePreparer(image_processor, 70)
    probe = probe_image(333, 211)
    own = image_processor.process_image(probe, do_convert_rgb=True)
    mine = preparer.to_tensor(probe)
    assert torch.equal(own, mine) and own.stride() == mine.stride()


class _Elem:
    def __init__(self, data: Any) -> None:
        self.data = data


class _FrontEnd:
    """``LLM._preprocess_chat`` as far as the self-check reads it, backed by the HF processor."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.resets = 0

    def _preprocess_chat(self, conversations: Any, **kwargs: Any) -> list[dict[str, Any]]:
        image = conversations[0][0]["content"][0]["image_pil"]
        budget = kwargs["mm_processor_kwargs"]["max_soft_tokens"]
        out = self.processor(images=[image], max_soft_tokens=budget, return_tensors="pt")
        tokens = [7] * int(out["num_soft_tokens_per_image"][0])
        item = {
            "pixel_values": _Elem(out["pixel_values"][0]),
            "pixel_position_ids": _Elem(out["image_position_ids"][0]),
        }
        return [{"mm_kwargs": {"image": [item]}, "prompt_token_ids": [2, *tokens, 3]}]

    def reset_mm_cache(self) -> None:
        self.resets += 1


def test_self_check_proves_each_size_and_records_it(image_processor: Any) -> None:
    front = _FrontEnd(image_processor)
    preparer = ImagePreparer(image_processor, 70)
    self_check(front, preparer, {(640, 360), (528, 288)})
    record = preparer.record()["sizes"]
    assert record["640x360"]["path"] == PREPARED
    assert record["640x360"]["self_check"].startswith("identical")
    assert record["528x288"]["path"] == ORIGINAL  # already the processor's size
    assert front.resets == 1  # the probes leave nothing in the processor cache
    image = probe_image(640, 360)
    sent, path = preparer.prepare(image)
    assert path == PREPARED and sent.size == (528, 288)
    unseen, path = preparer.prepare(probe_image(700, 400))
    assert path == ORIGINAL and unseen.size == (700, 400)  # never prepared unchecked


def test_a_preparation_that_changes_pixels_falls_back_to_the_original(
    image_processor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    preparer = ImagePreparer(image_processor, 70)
    honest = preparer.resize

    def off_by_one(image: Any) -> Any:
        resized = honest(image)
        resized.putpixel((0, 0), tuple((v + 1) % 256 for v in resized.getpixel((0, 0))))
        return resized

    monkeypatch.setattr(preparer, "resize", off_by_one)
    self_check(_FrontEnd(image_processor), preparer, {(640, 360)})
    plan = preparer.record()["sizes"]["640x360"]
    assert plan["path"] == ORIGINAL and "pixel_values" in plan["self_check"]
    assert preparer.prepare(probe_image(640, 360))[1] == ORIGINAL


def test_a_processor_without_the_resize_is_never_prepared_for() -> None:
    preparer = ImagePreparer(SimpleNamespace(do_resize=True, pooling_kernel_size=3), 70)
    assert preparer.plan(1920, 1080).path == ORIGINAL
    assert "aspect_ratio_preserving_resize" in preparer.record()["unsupported"]
