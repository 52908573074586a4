"""The tiny checkpoint loads in HF transformers with the properties the tests rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


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


# --- the family twins and the real turn format ------------------------------------------------


def _render(family: str, messages: list[dict], **kwargs) -> str:
    from transformers import PreTrainedTokenizerFast

    from screenspot_eval.backends.vllm.families import FAMILIES
    from screenspot_eval.backends.vllm.tiny import TinyGemma4Spec, build_tokenizer, chat_template

    template = chat_template(FAMILIES[family].empty_thought_channel)
    tokenizer: PreTrainedTokenizerFast = build_tokenizer(TinyGemma4Spec(), template)
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, **kwargs
    )


PROMPT = [
    {"role": "system", "content": [{"type": "text", "text": " Be precise. "}]},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " Click save. "}]},
]


@pytest.mark.parametrize(
    ("family", "answer_opens"),
    [("e2b", ""), ("e4b", ""), ("26b-a4b", "<|channel>thought\n<channel|>"), ("12b", None)],
)
def test_the_template_has_the_real_turn_format(family: str, answer_opens: str | None):
    """As the real templates: a system turn, the image where it stands, trimmed text, and for
    26B / 31B / 12B an empty thought channel opening the answer when thinking is off."""
    from screenspot_eval.backends.vllm.families import FAMILIES

    opens = answer_opens
    if opens is None:
        opens = "<|channel>thought\n<channel|>" if FAMILIES[family].empty_thought_channel else ""
    text = _render(family, PROMPT, enable_thinking=False)
    assert text == (
        "<bos><|turn>system\nBe precise.<turn|>\n"
        "<|turn>user\n<|image|>Click save.<turn|>\n"
        f"<|turn>model\n{opens}"
    )
    thinking = _render(family, PROMPT[1:], enable_thinking=True)
    assert thinking == (
        "<bos><|turn>system\n<|think|>\n<turn|>\n<|turn>user\n<|image|>Click save.<turn|>\n"
        "<|turn>model\n"
    )


def test_the_parser_reads_an_answer_after_an_empty_thought_channel():
    from screenspot_eval.protocol.parsing import parse_click

    raw = '<|channel>thought\n<channel|>[{"box_2d": [100, 200, 300, 400], "label": "save"}]'
    parsed = parse_click(raw, "yx-1000", (1000, 1000))
    assert parsed.status == "parsed" and parsed.thinking_stripped, parsed
    assert (parsed.x, parsed.y) == (300, 200)


@pytest.mark.parametrize("family", ["e2b", "26b-a4b", "31b", "12b"])
def test_each_twin_switches_on_its_family_features(family: str, tmp_path: Path):
    """The built config carries the family's switches, as HF reads them back."""
    from transformers import AutoConfig

    from screenspot_eval.backends.vllm.families import FAMILIES
    from screenspot_eval.backends.vllm.tiny import build_tiny_gemma4

    fam = FAMILIES[family]
    config = AutoConfig.from_pretrained(build_tiny_gemma4(tmp_path / family, family_name=family))
    text = config.text_config.to_dict()
    for key, value in fam.text.items():
        if key == "num_global_key_value_heads":  # becomes per_layer_config on full layers
            full = [str(i) for i, t in enumerate(fam.layer_types) if t == "full_attention"]
            assert all(text["per_layer_config"][i]["num_key_value_heads"] == value for i in full)
            continue
        assert text[key] == value, key
    assert (config.audio_config is not None) == fam.audio
    assert type(config).__name__ == ("Gemma4UnifiedConfig" if fam.unified else "Gemma4Config")
