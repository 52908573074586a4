"""Coordinate conventions and the Gemma 4 sent-size reproduction (checked against transformers)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from screenspot_eval.adapters.gemma4 import SOFT_TOKEN_BUDGETS as GEMMA4_SOFT_TOKEN_BUDGETS
from screenspot_eval.adapters.gemma4 import gemma4_sent_size
from screenspot_eval.protocol.coords import (
    CoordinateConvention,
    model_to_original,
    original_to_model,
)

# ScreenSpot-Pro sizes, common screens, and extreme aspect ratios (the processor's edge branches).
SIZES: list[tuple[int, int]] = [
    (1920, 1080), (2560, 1440), (2560, 1664), (2880, 1800), (3024, 1964), (3840, 2160),
    (5120, 2880), (6016, 3384), (1280, 800), (1080, 1920), (1000, 1000), (640, 480),
    (333, 777), (48, 48), (100, 30), (4000, 50), (50, 4000), (3000, 60), (7000, 40),
]  # fmt: skip


def test_conventions_have_stable_names() -> None:
    assert [c.value for c in CoordinateConvention] == [
        "yx-1000",
        "xy-1000",
        "xy-1",
        "xy-pixels-sent",
        "xy-pixels-original",
    ]


def test_model_to_original_by_hand() -> None:
    size = (2560, 1664)
    assert model_to_original(500, 250, CoordinateConvention.YX_1000, size) == (640, 832)
    assert model_to_original(250, 500, CoordinateConvention.XY_1000, size) == (640, 832)
    assert model_to_original(0.25, 0.5, CoordinateConvention.XY_1, size) == (640, 832)
    sent = gemma4_sent_size(*size, 280)
    assert sent == (960, 624)
    assert model_to_original(240, 312, CoordinateConvention.XY_PIXELS_SENT, size, sent) == (
        640,
        832,
    )
    assert model_to_original(640, 832, CoordinateConvention.XY_PIXELS_ORIGINAL, size) == (640, 832)
    with pytest.raises(ValueError, match="sent"):
        model_to_original(1, 2, CoordinateConvention.XY_PIXELS_SENT, size)


@given(
    st.sampled_from(list(CoordinateConvention)),
    st.floats(-1e4, 1e4),
    st.floats(-1e4, 1e4),
    st.integers(1, 8000),
    st.integers(1, 8000),
)
def test_model_and_original_are_inverse(
    convention: CoordinateConvention, x: float, y: float, width: int, height: int
) -> None:
    sent = (width // 3 + 1, height // 5 + 1)
    first, second = original_to_model(x, y, convention, (width, height), sent)
    back = model_to_original(first, second, convention, (width, height), sent)
    assert back == pytest.approx((x, y), abs=1e-6)


def test_sent_size_by_hand() -> None:
    # 2560x1664 at 70 tokens: factor sqrt(630*256 / 4259840) -> 498.1 x 323.8 -> 480 x 288
    assert gemma4_sent_size(2560, 1664, 70) == (480, 288)
    assert gemma4_sent_size(1920, 1080, 280) == (1056, 576)  # 1070.9 x 602.4 rounded down
    # a strip: height rounds to 0, so it becomes one 48-px row as wide as the budget allows
    assert gemma4_sent_size(4000, 50, 70) == (3360, 48)
    with pytest.raises(ValueError, match="max_soft_tokens"):
        gemma4_sent_size(1920, 1080, 300)


@given(st.integers(1, 10000), st.integers(1, 10000), st.sampled_from(GEMMA4_SOFT_TOKEN_BUDGETS))
def test_sent_size_respects_the_budget(width: int, height: int, budget: int) -> None:
    # No ValueError is expected here: at any supported budget the ideal size holds at least
    # 70 x 9 x 256 pixels, so one side is over 400 px and never rounds to 0.
    sent_w, sent_h = gemma4_sent_size(width, height, budget)
    assert sent_w >= 48 and sent_h >= 48
    assert sent_w % 48 == 0 and sent_h % 48 == 0
    assert (sent_w // 48) * (sent_h // 48) <= budget


_PROCESSOR_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from PIL import Image
    try:
        import torchvision  # noqa: F401
    except Exception:
        # A torch/torchvision pair that does not load together (see FIELD-NOTES, section 6):
        # the PIL backend does not need torchvision, so tell transformers it is absent.
        import transformers.utils as tu
        import transformers.utils.import_utils as iu
        iu.is_torchvision_available = tu.is_torchvision_available = lambda: False
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    processor = Gemma4ImageProcessorPil()
    out = []
    for width, height, budget in json.loads(sys.argv[1]):
        try:
            batch = processor(images=[Image.new("RGB", (width, height))], max_soft_tokens=budget)
        except ValueError as exc:
            out.append(["error", str(exc)])
            continue
        positions = np.asarray(batch["image_position_ids"][0])
        positions = positions[positions[:, 0] >= 0]
        cols, rows = positions.max(axis=0) + 1
        size = [int(cols) * processor.patch_size, int(rows) * processor.patch_size]
        out.append([size, int(batch["num_soft_tokens_per_image"][0])])
    print(json.dumps(out))
    """
)


def test_sent_size_matches_the_transformers_processor() -> None:
    """The resize the real Gemma4 image processor applies, for many sizes and every budget."""
    cases = [(w, h, b) for w, h in SIZES for b in GEMMA4_SOFT_TOKEN_BUDGETS]
    proc = subprocess.run(
        [sys.executable, "-c", _PROCESSOR_SCRIPT, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    compared = 0
    for (width, height, budget), result in zip(cases, results, strict=True):
        if result[0] == "error":
            with pytest.raises(ValueError):
                gemma4_sent_size(width, height, budget)
            continue
        (sent_w, sent_h), soft_tokens = result
        assert gemma4_sent_size(width, height, budget) == (sent_w, sent_h), (width, height, budget)
        assert soft_tokens == (sent_w // 48) * (sent_h // 48)
        compared += 1
    assert compared >= 0.9 * len(cases)


def test_the_pure_core_imports_neither_torch_nor_vllm() -> None:
    modules = [
        "screenspot_eval.protocol.coords",
        "screenspot_eval.protocol.parsing",
        "screenspot_eval.protocol.prompts",
        "screenspot_eval.protocol.scoring",
        "screenspot_eval.report.metrics",
        "screenspot_eval.report.official_json",
    ]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules)
    code += "print(sorted(m for m in ('torch', 'vllm', 'transformers') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
