"""The tiny Qwen-VL twins load in HF transformers with the published features and image budget.

No engine here: the vLLM checks of these twins belong to the engine's own tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

#: A 300 x 200 image under Qwen2.5-VL's published budget (3136 .. 12845056 pixels, factor 28):
#: round(300 / 28) * 28 = 308, round(200 / 28) * 28 = 196, 60368 pixels, inside the budget; a
#: 14 x 22 grid of 14-pixel patches, merged 2 x 2 into 7 x 11 = 77 image tokens.
IMAGE_SIZE = (300, 200)
SENT_SIZE = (308, 196)
GRID = [1, 14, 22]
IMAGE_TOKENS = 77


def _image():
    from PIL import Image

    image = Image.new("RGB", IMAGE_SIZE, "red")
    for x in range(0, IMAGE_SIZE[0], 20):
        image.paste((0, 0, 255), (x, 0, x + 4, IMAGE_SIZE[1]))
    return image


USER_TURN = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Click save."}]}
]


def test_the_processor_sends_the_expected_image_tokens(tiny_qwen_model: Path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_qwen_model)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessor"
    text = processor.apply_chat_template(USER_TURN, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Click save.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    inputs = processor(text=text, images=[_image()], return_tensors="pt")
    grid = inputs["image_grid_thw"][0].tolist()
    assert grid == GRID
    assert (grid[2] * 14, grid[1] * 14) == SENT_SIZE
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"][0] == pad).sum()) == IMAGE_TOKENS
    assert tuple(inputs["pixel_values"].shape) == (14 * 22, 3 * 2 * 14 * 14)


def test_the_twin_generates_in_transformers_with_an_image(tiny_qwen_model: Path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_qwen_model)
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen_model).eval()
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    text = processor.apply_chat_template(USER_TURN, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=text, images=[_image()], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def test_the_twin_keeps_the_published_switches_and_budget(tiny_qwen_model: Path):
    config = json.loads((tiny_qwen_model / "config.json").read_text())
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    vision, text = config["vision_config"], config["text_config"]
    assert vision["window_size"] == 112 and vision["fullatt_block_indexes"] == [1]
    assert vision["patch_size"] == 14 and vision["spatial_merge_size"] == 2
    rope = text["rope_parameters"]
    assert rope["mrope_section"] == [4, 6, 6]  # [16, 24, 24] over head_dim 32
    assert sum(rope["mrope_section"]) * 2 == text["hidden_size"] // text["num_attention_heads"]
    assert config["tie_word_embeddings"] is False
    tokenizer = json.loads((tiny_qwen_model / "tokenizer.json").read_text())
    added = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    assert config["image_token_id"] == added["<|image_pad|>"]
    assert config["vision_start_token_id"] == added["<|vision_start|>"]
    saved = json.loads((tiny_qwen_model / "processor_config.json").read_text())
    size = saved["image_processor"]["size"]
    assert (size["shortest_edge"], size["longest_edge"]) == (3136, 12845056)
    total = sum(p.stat().st_size for p in tiny_qwen_model.iterdir())
    assert total < 4_000_000


def test_qwen3_vl_twin_switches_on_deepstack_and_interleaved_mrope(tmp_path: Path):
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from screenspot_eval.backends.vllm.tiny_qwen import build_tiny_qwen_vl

    path = build_tiny_qwen_vl(tmp_path / "qwen3", "qwen3-vl")
    config = AutoConfig.from_pretrained(path)
    assert config.vision_config.deepstack_visual_indexes == [0, 1]
    assert config.text_config.rope_parameters["mrope_interleaved"] is True
    assert config.text_config.rope_parameters["mrope_section"] == [6, 5, 5]
    processor = AutoProcessor.from_pretrained(path)
    text = processor.apply_chat_template(USER_TURN, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>user\n")  # no default system turn
    inputs = processor(text=text, images=[_image()], return_tensors="pt")
    # 60000 pixels < 65536: scaled up to the minimum, factor 32 -> 320 x 224.
    assert inputs["image_grid_thw"][0].tolist() == [1, 14, 20]
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 2


def test_the_build_is_deterministic_and_the_seed_matters(tiny_qwen_model: Path, tmp_path: Path):
    from safetensors.torch import load_file

    from screenspot_eval.backends.vllm.tiny_qwen import build_tiny_qwen_vl

    a = load_file(tiny_qwen_model / "model.safetensors")
    b = load_file(build_tiny_qwen_vl(tmp_path / "again") / "model.safetensors")
    c = load_file(build_tiny_qwen_vl(tmp_path / "seed1", seed=1) / "model.safetensors")
    assert a.keys() == b.keys() == c.keys()
    assert all((a[k] == b[k]).all() for k in a)
    assert any((a[k] != c[k]).any() for k in a)


def test_a_smaller_budget_is_saved_and_a_wrong_one_refused(tmp_path: Path):
    from screenspot_eval.backends.vllm.tiny_qwen import build_tiny_qwen_vl

    path = build_tiny_qwen_vl(tmp_path / "small", min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)
    size = json.loads((path / "processor_config.json").read_text())["image_processor"]["size"]
    assert size == {"shortest_edge": 3136, "longest_edge": 50176}
    with pytest.raises(ValueError, match="min_pixels"):
        build_tiny_qwen_vl(tmp_path / "bad", min_pixels=100, max_pixels=50)
    with pytest.raises(ValueError, match="unknown Qwen family"):
        build_tiny_qwen_vl(tmp_path / "bad", "qwen9-vl")


def test_tiny_model_builds_each_qwen_family(tmp_path: Path):
    from typer.testing import CliRunner

    from screenspot_eval.backends.vllm.twins import TWINS
    from screenspot_eval.cli.app import app

    assert {"qwen2.5-vl", "qwen3-vl", "tiny", "12b"} <= set(TWINS)
    result = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "q"), "--family", "qwen3-vl"])
    assert result.exit_code == 0, result.output
    assert "tiny Qwen3-VL checkpoint (qwen3-vl:" in result.stdout
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config["architectures"] == ["Qwen3VLForConditionalGeneration"]
    bad = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "x"), "--family", "qwen9"])
    assert bad.exit_code != 0 and "qwen2.5-vl" in bad.output
