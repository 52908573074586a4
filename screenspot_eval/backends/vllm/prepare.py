"""Screenshots resized once, in the decode pool, exactly as Gemma 4's processor would resize them.

vLLM runs the HF image processor on the front-end thread for every request: it copies the full
screenshot into a tensor and resizes it to the image budget (at most 2.6 MP; a 6016x3384
screenshot is 20 MP). The same resize, done beforehand by the processor's own operation
(``Gemma4ImageProcessor.aspect_ratio_preserving_resize``: torchvision bicubic with antialias on
the uint8 image), gives the processor an image it leaves alone, so ``pixel_values`` are the
same bytes. That holds only where the target size is a fixed point of the processor's size
rule (``get_aspect_ratio_preserving_size(target) == target``); where it is not (seen: 2560x1664
and 3024x1964 at 1120 soft tokens, 16:9 at 140) the processor would resize a second time, so
the original is sent instead.

Before the first sample, :func:`self_check` renders one probe image per screenshot size through
vLLM's own front end (chat template, processor, placeholder expansion), once as the original
and once prepared, and compares ``pixel_values``, position ids and prompt token ids; a size
whose two paths differ in anything is sent as the original. The plan and the check's result
are recorded in the run's manifest.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

PREPARED = "prepared"
ORIGINAL = "original"


@dataclass
class SizePlan:
    """What happens to screenshots of one size: resized to ``target`` or sent as they are."""

    path: str  # PREPARED or ORIGINAL
    target: tuple[int, int] | None = None  # (width, height) the processor resizes to
    reason: str = ""
    self_check: str = "not run"

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"path": self.path, "self_check": self.self_check}
        if self.target is not None:
            record["processor_size"] = f"{self.target[0]}x{self.target[1]}"
        if self.reason:
            record["reason"] = self.reason
        return record


@dataclass
class ImagePreparer:
    """The processor's resize, applied in the decode pool where it provably changes nothing."""

    image_processor: Any
    budget: int
    plans: dict[tuple[int, int], SizePlan] = field(default_factory=dict)
    unsupported: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        ip = self.image_processor
        if not callable(getattr(ip, "aspect_ratio_preserving_resize", None)):
            self.unsupported = f"{type(ip).__name__} has no aspect_ratio_preserving_resize"
        elif not getattr(ip, "do_resize", True):
            self.unsupported = "the processor does not resize (do_resize false)"

    @property
    def max_patches(self) -> int:
        return self.budget * self.image_processor.pooling_kernel_size**2

    def target(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the processor resizes a ``width x height`` image to (its own rule)."""
        from transformers.models.gemma4.image_processing_gemma4 import (
            get_aspect_ratio_preserving_size,
        )

        ip = self.image_processor
        h, w = get_aspect_ratio_preserving_size(
            height, width, ip.patch_size, self.max_patches, ip.pooling_kernel_size
        )
        return w, h

    def plan(self, width: int, height: int) -> SizePlan:
        """The plan for one size (before the self-check): prepare only at a fixed point."""
        if self.unsupported:
            return SizePlan(ORIGINAL, reason=self.unsupported)
        try:
            target = self.target(width, height)
            again = self.target(*target)
        except ValueError as exc:  # the processor refuses this size; let it say so itself
            return SizePlan(ORIGINAL, reason=f"size rule: {exc}")
        if target == (width, height):
            return SizePlan(ORIGINAL, target, "already the processor's size")
        if again != target:
            return SizePlan(
                ORIGINAL,
                target,
                f"not a fixed point of the size rule ({target[0]}x{target[1]} -> "
                f"{again[0]}x{again[1]})",
            )
        return SizePlan(PREPARED, target)

    def to_tensor(self, image: Any) -> Any:
        """The uint8 (C, H, W) view the processor's ``pil_to_tensor`` makes, in one copy."""
        import torch

        width, height = image.size
        with warnings.catch_warnings():  # read-only buffer; nothing writes into it
            warnings.simplefilter("ignore", UserWarning)
            flat = torch.frombuffer(image.tobytes(), dtype=torch.uint8)
        return flat.view(height, width, 3).permute(2, 0, 1)

    def resize(self, image: Any) -> Any:
        """``image`` (RGB PIL) resized by the processor's own operation, as a PIL image."""
        from PIL import Image

        ip = self.image_processor
        resized = ip.aspect_ratio_preserving_resize(
            self.to_tensor(image),
            patch_size=ip.patch_size,
            max_patches=self.max_patches,
            pooling_kernel_size=ip.pooling_kernel_size,
            resample=ip.resample,
        )
        return Image.fromarray(resized.permute(1, 2, 0).contiguous().numpy(), mode="RGB")

    def prepare(self, image: Any) -> tuple[Any, str]:
        """``(image to send, path)``: resized where the checked plan says so, else as is."""
        size = tuple(image.size)
        plan = self.plans.get(size)  # type: ignore[arg-type]
        if plan is None:  # a size the self-check did not see: never prepared unchecked
            with self._lock:
                plan = self.plans.setdefault(
                    size,  # type: ignore[arg-type]
                    SizePlan(ORIGINAL, reason="size not covered by the self-check"),
                )
        if plan.path != PREPARED or image.mode != "RGB" or _orientation(image) != 1:
            return image, ORIGINAL
        return self.resize(image), PREPARED

    def record(self) -> dict[str, Any]:
        sizes = {f"{w}x{h}": plan.to_record() for (w, h), plan in sorted(self.plans.items())}
        record: dict[str, Any] = {"budget": self.budget, "sizes": sizes}
        if self.unsupported:
            record["unsupported"] = self.unsupported
        return record


def _orientation(image: Any) -> int:
    """The EXIF orientation vLLM would apply (``exif_transpose``); 1 = none."""
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:
        return 1


def probe_image(width: int, height: int) -> Any:
    """Deterministic noise of one size: every pixel differs, so any resampling change shows."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(width * 100_003 + height)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


def rendered(llm: Any, image: Any, uuid: str, budget: int) -> tuple[Any, Any, list[int]]:
    """``(pixel_values, position ids, prompt token ids)`` vLLM's front end makes for one image
    (the offline entry point's own chat rendering and multimodal processing; nothing is run)."""
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_pil", "image_pil": image, "uuid": uuid},
                {"type": "text", "text": "Click the probe."},
            ],
        }
    ]
    (engine_input,) = llm._preprocess_chat(
        [messages],
        chat_template_kwargs={"enable_thinking": False},
        mm_processor_kwargs={"max_soft_tokens": budget},
    )
    item = engine_input["mm_kwargs"]["image"][0]
    positions = item.get("pixel_position_ids") or item.get("image_position_ids")
    return (
        item["pixel_values"].data,
        None if positions is None else positions.data,
        list(engine_input["prompt_token_ids"]),
    )


def self_check(llm: Any, preparer: ImagePreparer, sizes: set[tuple[int, int]]) -> None:
    """Fill ``preparer.plans`` for ``sizes``: a size is prepared only if, on a probe image of
    that size, the prepared image gives vLLM's front end the same ``pixel_values``, position
    ids and prompt tokens as the original. Empties the processor cache afterwards (the probes
    were never sent to the engine core, whose cache must mirror the front end's)."""
    import torch

    nonce = f"{id(preparer):x}"
    try:
        for width, height in sorted(sizes):
            plan = preparer.plan(width, height)
            preparer.plans[(width, height)] = plan
            if plan.path != PREPARED:
                continue
            try:
                probe = probe_image(width, height)
                tag = f"screenspot-probe-{nonce}-{width}x{height}"
                original = rendered(llm, probe, f"{tag}-original", preparer.budget)
                prepared = rendered(llm, preparer.resize(probe), f"{tag}-prepared", preparer.budget)
            except Exception as exc:  # whatever broke, the original is the safe path
                plan.path, plan.self_check = ORIGINAL, f"failed to run: {type(exc).__name__}"
                plan.reason = f"self-check could not run: {exc}"
                continue
            same_pixels = torch.equal(original[0], prepared[0])
            same_positions = (original[1] is None and prepared[1] is None) or (
                original[1] is not None
                and prepared[1] is not None
                and torch.equal(original[1], prepared[1])
            )
            same_tokens = original[2] == prepared[2]
            if same_pixels and same_positions and same_tokens:
                plan.self_check = "identical pixel_values, positions and prompt tokens"
            else:
                differs = [
                    name
                    for name, same in (
                        ("pixel_values", same_pixels),
                        ("positions", same_positions),
                        ("prompt tokens", same_tokens),
                    )
                    if not same
                ]
                plan.path, plan.self_check = ORIGINAL, f"differs: {', '.join(differs)}"
                plan.reason = "the prepared image does not reproduce the processor's output"
    finally:
        llm.reset_mm_cache()


def image_processor(llm: Any, budget: int) -> Any:
    """The HF image processor vLLM's front end uses for this model and budget."""
    info = llm.llm_engine.renderer.get_mm_processor().info
    return info.get_hf_processor(max_soft_tokens=budget).image_processor
