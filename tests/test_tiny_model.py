"""The tiny checkpoint loads in HF transformers with the properties the tests rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")


def test_tiny_checkpoint_is_small_and_widths_differ(tiny_model_dir: Path):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["vision_config"]["hidden_size"] != config["text_config"]["hidden_size"]
    assert config["vision_config"]["default_output_length"] == 70
    size = sum(p.stat().st_size for p in tiny_model_dir.iterdir())
    assert size < 2_000_000


def test_tiny_checkpoint_runs_in_hf_with_an_image(tiny_model_dir: Path):
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Gemma4ForConditionalGeneration

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = Gemma4ForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Click."}]}
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<bos><|turn>user\n") and text.endswith("<|turn>model\n")
    inputs = processor(text=text, images=[Image.new("RGB", (300, 200), "red")], return_tensors="pt")
    assert inputs["pixel_values"].shape[0] == 1
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def test_build_is_deterministic(tmp_path: Path):
    from safetensors.torch import load_file

    from screenspot_eval.backends.vllm.tiny import build_tiny_gemma4

    a = load_file(build_tiny_gemma4(tmp_path / "a") / "model.safetensors")
    b = load_file(build_tiny_gemma4(tmp_path / "b") / "model.safetensors")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
